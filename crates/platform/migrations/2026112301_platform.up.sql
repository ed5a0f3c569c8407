-- The platform context: idempotency keys and its outbox. Durable jobs, schedules and
-- relays arrive in later migrations.
CREATE SCHEMA platform;
GRANT USAGE ON SCHEMA platform TO tenet_app;

CREATE TYPE platform.outbox_status AS ENUM ('pending', 'delivered', 'dead');

-- An API write made with an Idempotency-Key: the hash of its request and what it
-- produced (a status and the resource it made, never a body: bodies may hold PHI).
CREATE TABLE platform.idempotency_keys (
    tenant_id uuid NOT NULL,
    key text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    request_hash bytea NOT NULL,
    response_code smallint NOT NULL,
    resource_kind text NOT NULL,
    resource_id uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);
ALTER TABLE platform.idempotency_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE platform.idempotency_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON platform.idempotency_keys
    USING (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE, DELETE ON platform.idempotency_keys TO tenet_app;

CREATE TABLE platform.outbox (
    tenant_id uuid NOT NULL,
    id uuid NOT NULL,
    event_type text NOT NULL,
    event_version integer NOT NULL,
    aggregate_type text NOT NULL,
    aggregate_id uuid NOT NULL,
    occurred_at timestamptz NOT NULL,
    payload jsonb NOT NULL,
    status platform.outbox_status NOT NULL DEFAULT 'pending',
    delivered_at timestamptz,
    PRIMARY KEY (tenant_id, id)
);
ALTER TABLE platform.outbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE platform.outbox FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON platform.outbox
    USING (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE ON platform.outbox TO tenet_app;
