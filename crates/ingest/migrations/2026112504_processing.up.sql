-- Processing: accepted ADT and ORU messages become patients, encounters and
-- observations through durable jobs (`ingest.process`), in order per patient.
--
-- `processing` is NULL for a message that is not processed (kept as rejected),
-- `pending` until its job ran, `processed` once its effects committed, `failed` when
-- its job gave up (the job is a dead letter with the reason; reprocessing retries it).
CREATE TYPE ingest.processing_state AS ENUM ('pending', 'processed', 'failed');

ALTER TABLE ingest.messages
    ADD COLUMN processing ingest.processing_state,
    -- Why processing failed: rule names and field positions, never field contents.
    ADD COLUMN processing_error text,
    ADD COLUMN processed_at timestamptz,
    -- A keyed hash of the patient identifier (PID-3) the message is about: messages
    -- with one key are processed in the order they were received. Not PHI: it cannot
    -- be reversed without the tenant's data key.
    ADD COLUMN order_key bytea,
    -- Enhanced mode: when the sender wants an application acknowledgement (MSH-16,
    -- table 0155) and where its listener for them is (the receiving listener's
    -- configured reply address); when one was delivered, and its code.
    ADD COLUMN application_ack_type text CHECK (application_ack_type IN ('AL', 'NE', 'ER', 'SU')),
    ADD COLUMN reply_to text,
    ADD COLUMN application_ack_code text CHECK (application_ack_code IN ('AA', 'AE', 'AR')),
    ADD COLUMN application_acked_at timestamptz;

CREATE INDEX messages_pending_by_order_key ON ingest.messages (tenant_id, order_key, id)
    WHERE processing = 'pending';

GRANT UPDATE (processing, processing_error, processed_at, application_ack_code, application_acked_at)
    ON ingest.messages TO tenet_app;

-- Operator commands (`tenet ingest list|show|reprocess`) run on the owner role across
-- tenants, as they do for jobs; writes still go through a tenant's transaction.
CREATE POLICY operator_read ON ingest.messages FOR SELECT TO tenet_owner USING (true);
