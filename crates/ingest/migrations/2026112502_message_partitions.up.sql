-- Raw HL7 messages in daily partitions (issue 5, part 6): retention drops whole days
-- of `ingest.messages` instead of deleting rows, so expiring old messages leaves no
-- dead tuples behind and costs no vacuum. A unique constraint on a partitioned table
-- must include the partition key, so de-duplication (I6) moves to a small table of
-- its own, `ingest.message_keys`.
--
-- Partitions are made and dropped only by the owner role — this migration, and the
-- partition maintenance of `tenet serve` and `tenet ingest retention` on their owner
-- connection — through the functions below. The service role cannot call them
-- (EXECUTE is revoked from PUBLIC), cannot create or drop tables, and owns nothing
-- (I1). They are plain (SECURITY INVOKER) functions: nothing the service role can
-- reach runs with the owner's rights. ARCHITECTURE.md, "Ingest partitions", says why.

ALTER TABLE ingest.messages RENAME TO messages_unpartitioned;
-- Index names are per schema: the new table's primary key takes the old name.
ALTER TABLE ingest.messages_unpartitioned RENAME CONSTRAINT messages_pkey TO messages_unpartitioned_pkey;
-- The owner reads the old rows below (its own policies would hide every tenant's).
ALTER TABLE ingest.messages_unpartitioned NO FORCE ROW LEVEL SECURITY;

-- The parent: later migrations ALTER this table, and its partitions follow.
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
    -- The id first: a lookup by id alone (an operator's `tenet ingest show`) is one
    -- index probe per partition it reaches, and the ids are time-ordered (UUIDv7), so
    -- each day's index grows at its right edge. `received_at` because the key of a
    -- partitioned table must contain its partition key.
    PRIMARY KEY (id, tenant_id, received_at)
) PARTITION BY RANGE (received_at);

-- The safety net: a message for a day with no partition yet lands here rather than
-- failing its insert (an acknowledged-to-be message is never lost). Partition
-- maintenance moves such messages into their day's partition when it creates it;
-- `tenet check` reports any found here.
CREATE TABLE ingest.messages_default PARTITION OF ingest.messages DEFAULT;

-- De-duplication (I6): one row per sender and MSH-10, written in the transaction
-- that stores the message, holding the answer the first message got. Messages that
-- did not parse have no key and are never duplicates. A key lives as long as its
-- message: retention deletes the keys of the messages it dropped, so a resend is
-- recognised within the retention window, and accepted as new after it.
CREATE TABLE ingest.message_keys (
    tenant_id uuid NOT NULL,
    sending_application text NOT NULL,
    sending_facility text NOT NULL,
    control_id text NOT NULL,
    message_id uuid NOT NULL,
    ack_code text NOT NULL CHECK (ack_code IN ('AA', 'AE', 'AR', 'CA', 'CE', 'CR')),
    received_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, sending_application, sending_facility, control_id)
);
-- Retention deletes expired keys oldest first, in bounded batches.
CREATE INDEX message_keys_received_at ON ingest.message_keys (received_at);

-- The partitions of ingest.messages (the default partition aside) with their bounds,
-- oldest first. Bounds are read back from the catalog, so a partition made by hand
-- counts too; the function's own TimeZone and DateStyle make that text exact.
CREATE FUNCTION ingest.message_partitions()
RETURNS TABLE (partition_name text, lower_bound timestamptz, upper_bound timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, YMD'
AS $$
    SELECT c.relname::text, b.m[1]::timestamptz, b.m[2]::timestamptz
    FROM pg_catalog.pg_inherits i
    JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
    CROSS JOIN LATERAL (
        SELECT pg_catalog.regexp_match(pg_catalog.pg_get_expr(c.relpartbound, c.oid),
                                       '^FOR VALUES FROM \(''([^'']+)''\) TO \(''([^'']+)''\)$') AS m
    ) b
    WHERE i.inhparent = 'ingest.messages'::regclass AND b.m IS NOT NULL
    ORDER BY 2
$$;

-- Creates the partition of one UTC day, unless a partition already covers it; returns
-- its name, or NULL. The table is made like the parent (so it has every column later
-- migrations added), gets the messages of its day that sit in the default partition,
-- its row-level security (enabled, forced, the tenant policy: the catalog rules hold
-- for each partition), and is then attached. ATTACH takes only a SHARE UPDATE
-- EXCLUSIVE lock on the parent, so inserts into other days go on meanwhile; the
-- default partition is locked until commit, so no message of the day slips into it
-- between the move and the attach. The parent's indexes are created on it by ATTACH.
CREATE FUNCTION ingest.create_partition(day date)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
    from_at timestamptz := day::timestamp AT TIME ZONE 'UTC';
    to_at timestamptz := (day + 1)::timestamp AT TIME ZONE 'UTC';
    name text := 'messages_' || to_char(day, 'YYYYMMDD');
    columns text;
BEGIN
    -- One maintainer at a time, whichever node or command it runs in.
    PERFORM pg_advisory_xact_lock(7346020002);
    IF EXISTS (SELECT 1 FROM ingest.message_partitions() p
               WHERE p.lower_bound < to_at AND p.upper_bound > from_at) THEN
        RETURN NULL;
    END IF;
    LOCK TABLE ingest.messages_default IN ACCESS EXCLUSIVE MODE;
    EXECUTE format('CREATE TABLE ingest.%I (LIKE ingest.messages INCLUDING DEFAULTS INCLUDING CONSTRAINTS '
                   'INCLUDING GENERATED INCLUDING STORAGE INCLUDING COMPRESSION)', name);
    SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO columns
    FROM pg_attribute a
    WHERE a.attrelid = 'ingest.messages'::regclass AND a.attnum > 0 AND NOT a.attisdropped
      AND a.attgenerated = '';
    -- Row-level security is switched on after the move: the owner writes the rows.
    EXECUTE format('WITH moved AS (DELETE FROM ingest.messages_default WHERE received_at >= $1 AND received_at < $2 RETURNING %s) '
                   'INSERT INTO ingest.%I (%s) SELECT %s FROM moved', columns, name, columns, columns)
        USING from_at, to_at;
    EXECUTE format('ALTER TABLE ingest.%I ENABLE ROW LEVEL SECURITY', name);
    EXECUTE format('ALTER TABLE ingest.%I FORCE ROW LEVEL SECURITY', name);
    EXECUTE format($p$CREATE POLICY tenant_isolation ON ingest.%I
        USING (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid)
        WITH CHECK (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid)$p$, name);
    EXECUTE format('ALTER TABLE ingest.messages ATTACH PARTITION ingest.%I FOR VALUES FROM (%L) TO (%L)',
                   name, from_at, to_at);
    RETURN name;
END
$$;

-- Makes sure every UTC day from today to `days_ahead` days ahead has its partition,
-- and first gives a partition to each day that has messages in the default partition
-- (moving them in). Returns the partitions it created.
CREATE FUNCTION ingest.ensure_partitions(days_ahead integer)
RETURNS SETOF text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
AS $$
DECLARE
    today date := (now() AT TIME ZONE 'UTC')::date;
    days date[];
    day date;
    created text;
BEGIN
    IF days_ahead IS NULL OR days_ahead < 0 OR days_ahead > 366 THEN
        RAISE EXCEPTION 'days_ahead must be 0 to 366, not %', days_ahead
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pg_advisory_xact_lock(7346020002);
    -- Read in full before the first partition is attached: ATTACH refuses a default
    -- partition that an open cursor of this session still reads.
    SELECT coalesce(array_agg(DISTINCT (m.received_at AT TIME ZONE 'UTC')::date), '{}') INTO days
    FROM ingest.messages_default m;
    days := days || ARRAY(SELECT today + n FROM generate_series(0, days_ahead) AS n);
    FOREACH day IN ARRAY days LOOP
        created := ingest.create_partition(day);
        IF created IS NOT NULL THEN
            RETURN NEXT created;
        END IF;
    END LOOP;
END
$$;

-- Drops (or with `dry_run` only lists) at most `partitions_max` partitions that end
-- on or before the start of UTC day `cutoff`, oldest first: whole days, never part of
-- one. Messages in the default partition are never dropped here: partition
-- maintenance first moves them into a partition of their own day.
CREATE FUNCTION ingest.drop_partitions_before(cutoff date, dry_run boolean, partitions_max integer)
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
        -- `ingest.messages` gains one (migration 2026112504 does), add here:
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

-- Deletes at most `batch_max` de-duplication keys received before the start of UTC
-- day `cutoff` whose message is gone (dropped with its partition); returns how many.
-- A key whose message is still stored (in a partition the processing guard kept) is
-- kept with it.
CREATE FUNCTION ingest.delete_expired_keys(cutoff date, batch_max integer)
RETURNS integer
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
AS $$
    WITH expired AS (
        SELECT k.tenant_id, k.sending_application, k.sending_facility, k.control_id
        FROM ingest.message_keys k
        WHERE k.received_at < cutoff::timestamp AT TIME ZONE 'UTC'
          AND NOT EXISTS (
              SELECT 1 FROM ingest.messages m
              WHERE m.id = k.message_id AND m.tenant_id = k.tenant_id
                AND m.received_at = k.received_at)
        ORDER BY k.received_at
        LIMIT batch_max
    ),
    deleted AS (
        DELETE FROM ingest.message_keys k
        USING expired e
        WHERE k.tenant_id = e.tenant_id AND k.sending_application = e.sending_application
          AND k.sending_facility = e.sending_facility AND k.control_id = e.control_id
        RETURNING 1
    )
    SELECT count(*)::integer FROM deleted
$$;

REVOKE EXECUTE ON FUNCTION ingest.message_partitions(), ingest.create_partition(date),
    ingest.ensure_partitions(integer), ingest.drop_partitions_before(date, boolean, integer),
    ingest.delete_expired_keys(date, integer) FROM PUBLIC;

-- The existing messages: a partition for each day they were received on, then the
-- rows and their keys (unique already, under the old constraint).
SELECT ingest.create_partition(d)
FROM (SELECT DISTINCT (received_at AT TIME ZONE 'UTC')::date AS d FROM ingest.messages_unpartitioned) days;
SELECT ingest.ensure_partitions(7);
INSERT INTO ingest.messages (tenant_id, id, received_at, listener, sending_application,
        sending_facility, control_id, message_type, trigger_event, processing_id, version,
        ack_mode, status, ack_code, error, raw_sealed, data_key_id)
    SELECT tenant_id, id, received_at, listener, sending_application, sending_facility,
           control_id, message_type, trigger_event, processing_id, version, ack_mode,
           status, ack_code, error, raw_sealed, data_key_id
    FROM ingest.messages_unpartitioned;
INSERT INTO ingest.message_keys (tenant_id, sending_application, sending_facility, control_id,
        message_id, ack_code, received_at)
    SELECT tenant_id, sending_application, sending_facility, control_id, id, ack_code, received_at
    FROM ingest.messages_unpartitioned
    WHERE sending_application IS NOT NULL AND sending_facility IS NOT NULL AND control_id IS NOT NULL;
DROP TABLE ingest.messages_unpartitioned;

-- Row-level security, forced, on the parent, the default partition and the keys (each
-- daily partition gets its own in ingest.create_partition).
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['messages', 'messages_default', 'message_keys']
    LOOP
        EXECUTE format('ALTER TABLE ingest.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE ingest.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format($p$CREATE POLICY tenant_isolation ON ingest.%I
            USING (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid)
            WITH CHECK (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid)$p$, t);
    END LOOP;
END
$$;

-- Partition maintenance and operator commands read across tenants (like `job_dispatch`:
-- only the owner role, which owns these tables and could switch their row-level
-- security off anyway): listing messages and finding which keys lost their message
-- through the parent; moving rows out of the default partition, and `tenet check`
-- counting them, on that partition itself; deleting expired keys. The service role
-- gets nothing wider than its tenant.
CREATE POLICY ingest_operations ON ingest.messages FOR SELECT TO tenet_owner USING (true);
CREATE POLICY ingest_operations ON ingest.messages_default FOR SELECT TO tenet_owner USING (true);
CREATE POLICY ingest_moves ON ingest.messages_default FOR DELETE TO tenet_owner USING (true);
CREATE POLICY ingest_operations ON ingest.message_keys FOR SELECT TO tenet_owner USING (true);
CREATE POLICY ingest_retention ON ingest.message_keys FOR DELETE TO tenet_owner USING (true);

-- Through the parent only: no grant on a partition, so the service role cannot name
-- one (and each partition's own forced policy would still hold it to its tenant).
GRANT SELECT, INSERT ON ingest.messages TO tenet_app;
GRANT SELECT, INSERT ON ingest.message_keys TO tenet_app;
