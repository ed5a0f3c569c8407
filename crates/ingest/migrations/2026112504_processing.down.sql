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
        -- is not finished must be kept, and is tried again at the next round. No
        -- message has a processing state yet, so nothing is refused. When
        -- `ingest.messages` gains one (migration 2026112503), add here:
        --
        --     CONTINUE WHEN EXISTS (
        --         SELECT 1 FROM ingest.messages
        --         WHERE received_at >= p.from_at AND received_at < p.to_at
        --           AND <processing is not finished>);
        --
        -- querying the parent (pruned to this partition by the bounds), because the
        -- owner sees every tenant's rows only through the parent's `ingest_operations`
        -- policy; a partition's own policy shows it nothing.
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
REVOKE UPDATE (processing, processing_error, processed_at, application_ack_code, application_acked_at)
    ON ingest.messages FROM tenet_app;
DROP INDEX ingest.messages_pending_by_order_key;
DROP INDEX ingest.messages_unfinished;
DROP FUNCTION ingest.id_instant(uuid);
ALTER TABLE ingest.messages
    DROP COLUMN processing,
    DROP COLUMN processing_error,
    DROP COLUMN processed_at,
    DROP COLUMN order_key,
    DROP COLUMN application_ack_type,
    DROP COLUMN reply_to,
    DROP COLUMN application_ack_code,
    DROP COLUMN application_acked_at;
DROP TYPE ingest.processing_state;
