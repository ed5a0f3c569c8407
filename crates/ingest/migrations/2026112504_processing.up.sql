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
-- What `tenet check` and the retention guard look for: unfinished processing, by day.
CREATE INDEX messages_unfinished ON ingest.messages (received_at)
    WHERE processing IN ('pending', 'failed');

-- The instant a message id (a UUIDv7: its first 48 bits are milliseconds since the
-- epoch) carries. `received_at` comes from the same clock a moment later, so a lookup
-- by id bounds `received_at` to a day either side of it and PostgreSQL prunes every
-- other daily partition.
CREATE FUNCTION ingest.id_instant(id uuid) RETURNS timestamptz
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT pg_catalog.to_timestamp(
        (('x' || pg_catalog.substr(pg_catalog.replace(id::text, '-', ''), 1, 12))::bit(48)::bigint) / 1000.0)
$$;

GRANT UPDATE (processing, processing_error, processed_at, application_ack_code, application_acked_at)
    ON ingest.messages TO tenet_app;

-- Retention never drops a day that still holds a message whose processing is not
-- finished.
CREATE OR REPLACE FUNCTION ingest.drop_partitions_before(cutoff date, dry_run boolean, partitions_max integer)
RETURNS TABLE (partition_name text, lower_bound timestamptz, upper_bound timestamptz)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
    cutoff_at timestamptz := cutoff::timestamp AT TIME ZONE 'UTC';
    p record;
BEGIN
    PERFORM pg_advisory_xact_lock(7346020002);
    FOR p IN
        SELECT m.partition_name AS name, m.lower_bound AS from_at, m.upper_bound AS to_at
        FROM ingest.message_partitions() m
        WHERE m.upper_bound <= cutoff_at
        ORDER BY m.lower_bound
        LIMIT partitions_max
    LOOP
        -- Processing guard: a partition that still holds a message whose processing
        -- is not finished (pending, or failed and waiting on an operator) is kept,
        -- and tried again at the next round. Queried through the parent (pruned to
        -- this partition by the bounds): the owner sees every tenant's rows only
        -- through the parent's `ingest_operations` policy.
        CONTINUE WHEN EXISTS (
            SELECT 1 FROM ingest.messages
            WHERE received_at >= p.from_at AND received_at < p.to_at
              AND processing IN ('pending', 'failed'));
        IF NOT dry_run THEN
            EXECUTE format('DROP TABLE ingest.%I', p.name);
        END IF;
        partition_name := p.name;
        lower_bound := p.from_at;
        upper_bound := p.to_at;
        RETURN NEXT;
    END LOOP;
END
$$;
