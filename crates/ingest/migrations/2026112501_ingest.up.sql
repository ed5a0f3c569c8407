-- HL7 v2 ingestion: every message received over MLLP, stored before it is
-- acknowledged. `raw_sealed` holds the message as received, encrypted (it is PHI); no
-- other column holds PHI: only MSH routing fields, codes and rule names.
CREATE SCHEMA ingest;
GRANT USAGE ON SCHEMA ingest TO tenet_app;

CREATE TYPE ingest.message_status AS ENUM ('accepted', 'rejected');
CREATE TYPE ingest.ack_mode AS ENUM ('original', 'enhanced');
CREATE TYPE ingest.outbox_status AS ENUM ('pending', 'delivered', 'dead');

CREATE TABLE ingest.messages (
    tenant_id uuid NOT NULL,
    id uuid NOT NULL,
    received_at timestamptz NOT NULL,
    listener text NOT NULL,
    -- MSH-3.1, MSH-4.1 and MSH-10; NULL when the message could not be parsed (it has
    -- no reliable key, so it is never a duplicate).
    sending_application text,
    sending_facility text,
    control_id text,
    message_type text,
    trigger_event text,
    processing_id text,
    version text,
    ack_mode ingest.ack_mode NOT NULL,
    status ingest.message_status NOT NULL,
    ack_code text NOT NULL CHECK (ack_code IN ('AA', 'AE', 'AR', 'CA', 'CE', 'CR')),
    -- Why it was rejected: rule names and field positions, never field contents.
    error text,
    -- The message as received, sealed with AES-256-GCM under the tenant's data key
    -- `data_key_id` and bound to tenant and id: it is PHI (invariant I2).
    raw_sealed bytea NOT NULL,
    data_key_id uuid NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, sending_application, sending_facility, control_id)
);

CREATE TABLE ingest.outbox (
    tenant_id uuid NOT NULL,
    id uuid NOT NULL,
    event_type text NOT NULL,
    event_version integer NOT NULL,
    aggregate_type text NOT NULL,
    aggregate_id uuid NOT NULL,
    occurred_at timestamptz NOT NULL,
    payload jsonb NOT NULL,
    status ingest.outbox_status NOT NULL DEFAULT 'pending',
    delivered_at timestamptz,
    PRIMARY KEY (tenant_id, id)
);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['messages', 'outbox']
    LOOP
        EXECUTE format('ALTER TABLE ingest.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE ingest.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format($p$CREATE POLICY tenant_isolation ON ingest.%I
            USING (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid)
            WITH CHECK (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid)$p$, t);
    END LOOP;
END
$$;

GRANT SELECT, INSERT ON ingest.messages TO tenet_app;
GRANT SELECT, INSERT, UPDATE ON ingest.outbox TO tenet_app;
