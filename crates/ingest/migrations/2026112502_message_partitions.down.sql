-- Back to one unpartitioned table with de-duplication by a unique constraint. The
-- keys table guaranteed that constraint holds for every message still stored.
-- The owner reads every tenant's messages through its `ingest_operations` policy.

CREATE TABLE ingest.messages_unpartitioned (
    tenant_id uuid NOT NULL,
    id uuid NOT NULL,
    received_at timestamptz NOT NULL,
    listener text NOT NULL,
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
    error text,
    raw_sealed bytea NOT NULL,
    data_key_id uuid NOT NULL,
    CONSTRAINT messages_unpartitioned_pkey PRIMARY KEY (tenant_id, id),
    CONSTRAINT messages_tenant_id_sending_application_sending_facility_con_key
        UNIQUE (tenant_id, sending_application, sending_facility, control_id)
);
INSERT INTO ingest.messages_unpartitioned (tenant_id, id, received_at, listener,
        sending_application, sending_facility, control_id, message_type, trigger_event,
        processing_id, version, ack_mode, status, ack_code, error, raw_sealed, data_key_id)
    SELECT tenant_id, id, received_at, listener, sending_application, sending_facility,
           control_id, message_type, trigger_event, processing_id, version, ack_mode,
           status, ack_code, error, raw_sealed, data_key_id
    FROM ingest.messages;

DROP FUNCTION ingest.delete_expired_keys(date, integer);
DROP FUNCTION ingest.drop_partitions_before(date, boolean, integer);
DROP FUNCTION ingest.ensure_partitions(integer);
DROP FUNCTION ingest.create_partition(date);
DROP FUNCTION ingest.message_partitions();
DROP TABLE ingest.messages;
DROP TABLE ingest.message_keys;

ALTER TABLE ingest.messages_unpartitioned RENAME TO messages;
ALTER TABLE ingest.messages RENAME CONSTRAINT messages_unpartitioned_pkey TO messages_pkey;
ALTER TABLE ingest.messages ENABLE ROW LEVEL SECURITY;
ALTER TABLE ingest.messages FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON ingest.messages
    USING (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT ON ingest.messages TO tenet_app;
