-- The audit context: an append-only, hash-chained log per tenant, and signed
-- checkpoints of its chain heads.
CREATE SCHEMA audit;
GRANT USAGE ON SCHEMA audit TO tenet_app;

CREATE TYPE audit.outbox_status AS ENUM ('pending', 'delivered', 'dead');

-- Each tenant's log is a few independent chains ("lanes") so concurrent requests of
-- one tenant do not queue behind a single row lock; each lane is a strict chain.
CREATE TABLE audit.chain_heads (
    tenant_id uuid NOT NULL,
    lane smallint NOT NULL CHECK (lane >= 0),
    seq bigint NOT NULL CHECK (seq >= 0),
    hash bytea NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (tenant_id, lane)
);

CREATE TABLE audit.events (
    tenant_id uuid NOT NULL,
    lane smallint NOT NULL,
    seq bigint NOT NULL CHECK (seq >= 1),
    id uuid NOT NULL,
    occurred_at timestamptz NOT NULL,
    actor text NOT NULL,
    action text NOT NULL CHECK (action ~ '^[a-z_]+(\.[a-z_]+)*$'),
    patient_id uuid,
    purpose text,
    request_id uuid,
    break_glass boolean NOT NULL DEFAULT false,
    details jsonb NOT NULL DEFAULT '{}',
    prev_hash bytea NOT NULL CHECK (length(prev_hash) = 32),
    hash bytea NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (tenant_id, lane, seq),
    UNIQUE (tenant_id, id)
);
CREATE INDEX events_patient ON audit.events (tenant_id, patient_id, occurred_at) WHERE patient_id IS NOT NULL;

-- A signed statement of every lane head of one tenant at one moment.
CREATE TABLE audit.checkpoints (
    tenant_id uuid NOT NULL,
    id uuid NOT NULL,
    created_at timestamptz NOT NULL,
    heads jsonb NOT NULL,
    key_id text NOT NULL,
    signature bytea NOT NULL CHECK (length(signature) = 64),
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE audit.outbox (
    tenant_id uuid NOT NULL,
    id uuid NOT NULL,
    event_type text NOT NULL,
    event_version integer NOT NULL,
    aggregate_type text NOT NULL,
    aggregate_id uuid NOT NULL,
    occurred_at timestamptz NOT NULL,
    payload jsonb NOT NULL,
    status audit.outbox_status NOT NULL DEFAULT 'pending',
    delivered_at timestamptz,
    PRIMARY KEY (tenant_id, id)
);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['chain_heads', 'events', 'checkpoints', 'outbox']
    LOOP
        EXECUTE format('ALTER TABLE audit.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE audit.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format($p$CREATE POLICY tenant_isolation ON audit.%I
            USING (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid)
            WITH CHECK (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid)$p$, t);
    END LOOP;
END
$$;

-- Append-only, for everyone: the service role has no UPDATE/DELETE/TRUNCATE grant,
-- and these triggers refuse them for any role that does (the owner, a superuser).
-- A superuser can still disable the trigger; the hash chain is what detects that.
CREATE FUNCTION audit.refuse_change() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only: % on %.% refused', TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON audit.events
    FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON audit.events
    FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();
CREATE TRIGGER checkpoints_append_only BEFORE UPDATE OR DELETE ON audit.checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();
CREATE TRIGGER checkpoints_no_truncate BEFORE TRUNCATE ON audit.checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();
REVOKE ALL ON FUNCTION audit.refuse_change() FROM PUBLIC;

GRANT SELECT, INSERT, UPDATE ON audit.chain_heads TO tenet_app;
GRANT SELECT, INSERT ON audit.events TO tenet_app;
GRANT SELECT, INSERT ON audit.checkpoints TO tenet_app;
GRANT SELECT, INSERT, UPDATE ON audit.outbox TO tenet_app;
