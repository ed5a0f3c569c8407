REVOKE UPDATE (state, attempts, next_attempt_at, leased_until, finished_at, updated_at)
    ON platform.relay_deliveries FROM tenet_app;
