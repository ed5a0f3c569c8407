-- The outbox relay (issue 4, "Outbox and events"). ARCHITECTURE.md, "The outbox
-- relay", tells the whole story; in short:
--
-- 1. Fan-out: a relay takes a context's pending outbox rows (one relay per context at a
--    time, under an advisory lock), copies each event once into `relay_events`, writes
--    one `relay_deliveries` row per subscriber (an in-process handler, a webhook
--    subscription, the NATS stream) and marks the outbox row `delivered`, all in one
--    transaction. `delivered` on an outbox row therefore means "handed to durable
--    per-subscriber deliveries"; each delivery then has its own state.
-- 2. Delivery: a relay claims the oldest pending delivery of each (subscriber,
--    aggregate) under a lease, sends it, and marks it `delivered` only after the sink
--    confirmed (a 2xx, a JetStream PubAck, a committed handler transaction). Failures
--    back off; past their attempts a delivery is `dead` and no longer holds back the
--    deliveries behind it.
--
-- Nothing here holds PHI: events carry ids and codes only (invariant I2), response
-- excerpts come from the receiver, and errors name causes.

CREATE TYPE platform.relay_sink AS ENUM ('handler', 'webhook', 'nats');
CREATE TYPE platform.relay_delivery_state AS ENUM ('pending', 'delivered', 'dead', 'discarded');
CREATE TYPE platform.webhook_subscription_state AS ENUM ('active', 'disabled');

-- A tenant's webhook endpoint. The secret signs each delivery (HMAC-SHA256); it must
-- be readable to sign with, so it is stored as given back once at creation.
CREATE TABLE platform.webhook_subscriptions (
    tenant_id uuid NOT NULL,
    id uuid NOT NULL,
    url text NOT NULL CHECK (length(url) BETWEEN 8 AND 2000),
    -- Empty: every event type.
    event_types text[] NOT NULL DEFAULT '{}',
    secret text NOT NULL CHECK (length(secret) BETWEEN 16 AND 200),
    state platform.webhook_subscription_state NOT NULL DEFAULT 'active',
    -- Failed attempts since the last success; at the relay's threshold the
    -- subscription is disabled.
    consecutive_failures integer NOT NULL DEFAULT 0 CHECK (consecutive_failures >= 0),
    disabled_reason text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);

-- An event as the relay delivers it: the envelope, copied once from its context's
-- outbox at fan-out, whatever the number of its deliveries.
CREATE TABLE platform.relay_events (
    tenant_id uuid NOT NULL,
    id uuid NOT NULL,
    -- The schema whose outbox it came from.
    context text NOT NULL,
    event_type text NOT NULL,
    event_version integer NOT NULL,
    aggregate_type text NOT NULL,
    aggregate_id uuid NOT NULL,
    occurred_at timestamptz NOT NULL,
    payload jsonb NOT NULL,
    fanned_out_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);

-- One event to one subscriber. `consumer` names the subscriber: a handler's stable
-- name, `webhook:<subscription id>` or `nats`. The aggregate and the occurrence are
-- copied from the event so the claim can find the head of each (consumer, aggregate)
-- queue from one index.
CREATE TABLE platform.relay_deliveries (
    tenant_id uuid NOT NULL,
    id uuid NOT NULL,
    event_id uuid NOT NULL,
    sink platform.relay_sink NOT NULL,
    consumer text NOT NULL CHECK (length(consumer) BETWEEN 1 AND 200),
    subscription_id uuid,
    aggregate_type text NOT NULL,
    aggregate_id uuid NOT NULL,
    occurred_at timestamptz NOT NULL,
    state platform.relay_delivery_state NOT NULL DEFAULT 'pending',
    attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    attempts_max integer NOT NULL CHECK (attempts_max >= 1),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- A claim holds a delivery until `leased_until`; each claim moves the token on,
    -- and only the holder of the current token records the outcome.
    leased_until timestamptz,
    lease_token bigint NOT NULL DEFAULT 0,
    relay_id text,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, event_id, consumer),
    FOREIGN KEY (tenant_id, event_id) REFERENCES platform.relay_events (tenant_id, id),
    FOREIGN KEY (tenant_id, subscription_id) REFERENCES platform.webhook_subscriptions (tenant_id, id),
    CHECK ((sink = 'webhook') = (subscription_id IS NOT NULL)),
    CHECK ((state = 'pending') = (finished_at IS NULL))
);

-- The claim: pending deliveries in queue order, and the "is an earlier one of the same
-- consumer and aggregate still pending?" probe. Partial, so it stays small.
CREATE INDEX relay_deliveries_queue ON platform.relay_deliveries
    (tenant_id, consumer, aggregate_type, aggregate_id, occurred_at, event_id)
    WHERE state = 'pending';
CREATE INDEX relay_deliveries_due ON platform.relay_deliveries (next_attempt_at)
    WHERE state = 'pending';
-- Operators list dead letters.
CREATE INDEX relay_deliveries_dead ON platform.relay_deliveries (finished_at)
    WHERE state = 'dead';

-- Every attempt of a delivery and what came back: the evidence for "why did my
-- webhook not arrive?".
CREATE TABLE platform.relay_attempts (
    tenant_id uuid NOT NULL,
    delivery_id uuid NOT NULL,
    attempt integer NOT NULL CHECK (attempt >= 1),
    relay_id text NOT NULL,
    started_at timestamptz NOT NULL,
    duration_ms integer NOT NULL CHECK (duration_ms >= 0),
    succeeded boolean NOT NULL,
    -- HTTP only.
    status_code smallint,
    -- The first bytes of the receiver's answer (webhooks), never our payload.
    response_excerpt text,
    error text,
    -- When the next attempt was scheduled for, after a failure that is retried.
    retry_at timestamptz,
    PRIMARY KEY (tenant_id, delivery_id, attempt),
    FOREIGN KEY (tenant_id, delivery_id) REFERENCES platform.relay_deliveries (tenant_id, id)
);

-- What an in-process consumer has processed: written by the framework in the same
-- transaction as the handler's effect, so a redelivered event is skipped (I6).
CREATE TABLE platform.processed_events (
    tenant_id uuid NOT NULL,
    consumer text NOT NULL CHECK (length(consumer) BETWEEN 1 AND 200),
    event_id uuid NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, consumer, event_id)
);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['webhook_subscriptions', 'relay_events', 'relay_deliveries',
                             'relay_attempts', 'processed_events']
    LOOP
        EXECUTE format('ALTER TABLE platform.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE platform.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format($p$CREATE POLICY tenant_isolation ON platform.%I
            USING (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid)
            WITH CHECK (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid)$p$, t);
    END LOOP;
END
$$;

-- Cross-tenant relaying (ARCHITECTURE.md, "Decisions", like `job_dispatch`): only the
-- owner role, which owns these tables and could switch their row-level security off
-- anyway, sees every tenant's outbox rows and deliveries, to fan out, claim and
-- record outcomes, and for operator commands. The service role gets nothing wider
-- than its tenant; handlers run in a TenantTx of the event's tenant as the service role.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['identity.outbox', 'clinical.outbox', 'audit.outbox', 'platform.outbox',
                             'platform.webhook_subscriptions', 'platform.relay_events',
                             'platform.relay_deliveries', 'platform.relay_attempts']
    LOOP
        EXECUTE format('CREATE POLICY relay_dispatch ON %s TO tenet_owner USING (true) WITH CHECK (true)', t);
    END LOOP;
END
$$;

-- The fan-out reads each outbox's pending rows in occurrence order.
CREATE INDEX outbox_pending ON identity.outbox (occurred_at, id) WHERE status = 'pending';
CREATE INDEX outbox_pending ON clinical.outbox (occurred_at, id) WHERE status = 'pending';
CREATE INDEX outbox_pending ON audit.outbox (occurred_at, id) WHERE status = 'pending';
CREATE INDEX outbox_pending ON platform.outbox (occurred_at, id) WHERE status = 'pending';

-- Tenants manage their own webhook subscriptions (in their TenantTx) and may read
-- their own delivery history (a "recent deliveries" view), row-level security keeping
-- them to their tenant; handlers record what they processed. Writing events,
-- deliveries and attempts is the relay's (owner) alone.
GRANT SELECT, INSERT, UPDATE ON platform.webhook_subscriptions TO tenet_app;
GRANT SELECT ON platform.relay_events, platform.relay_deliveries, platform.relay_attempts TO tenet_app;
GRANT SELECT, INSERT ON platform.processed_events TO tenet_app;
