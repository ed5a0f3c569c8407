-- A tenant's admins retry and discard their own dead deliveries (`/v1/dead-letters`),
-- as the service role under row-level security: only the columns that does touches.
GRANT UPDATE (state, attempts, next_attempt_at, leased_until, finished_at, updated_at)
    ON platform.relay_deliveries TO tenet_app;
