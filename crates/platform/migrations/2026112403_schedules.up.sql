-- Schedules (issue 4, part 3): cron-like recurring jobs, read on a time zone's wall
-- clock, fired exactly once per slot by any number of schedulers.
--
-- `args` holds ids and codes only, never PHI (invariant I2), as on platform.jobs:
-- schedules are read across tenants by schedulers and operators.
CREATE TYPE platform.schedule_catch_up AS ENUM ('skip', 'all', 'none');

CREATE TABLE platform.schedules (
    tenant_id uuid NOT NULL,
    id uuid NOT NULL,
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    cron text NOT NULL CHECK (length(cron) BETWEEN 1 AND 200),
    -- An IANA name (America/New_York); slots are read on its wall clock.
    time_zone text NOT NULL CHECK (length(time_zone) BETWEEN 1 AND 64),
    job_kind text NOT NULL CHECK (length(job_kind) BETWEEN 1 AND 100),
    args_version integer NOT NULL,
    -- Ids only: never PHI.
    args jsonb NOT NULL,
    queue text NOT NULL DEFAULT 'default' CHECK (length(queue) BETWEEN 1 AND 100),
    priority smallint NOT NULL DEFAULT 0,
    attempts_max integer NOT NULL CHECK (attempts_max BETWEEN 1 AND 100),
    catch_up platform.schedule_catch_up NOT NULL DEFAULT 'skip',
    enabled boolean NOT NULL DEFAULT true,
    -- The slot due next; NULL only while disabled.
    next_slot_at timestamptz,
    -- The last slot fired, and when.
    last_slot_at timestamptz,
    last_fired_at timestamptz,
    -- A scheduler holds a due schedule while it fires it: until `claimed_until`,
    -- under `claim_token`. Firing advances the schedule only while the token is
    -- still the one it claimed; an operator's change moves the token on.
    claimed_until timestamptz,
    claim_token bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, name),
    CHECK (NOT enabled OR next_slot_at IS NOT NULL)
);

-- Due schedules, in the order schedulers take them.
CREATE INDEX schedules_due ON platform.schedules (next_slot_at) WHERE enabled;

-- The slot ledger: a slot fires once, ever. The jobs' unique index covers only
-- pending jobs, so it cannot remember a slot whose job already finished; this table
-- can, and its primary key is the last line of defence against a second firing.
CREATE TABLE platform.schedule_slots (
    tenant_id uuid NOT NULL,
    schedule_id uuid NOT NULL,
    slot_at timestamptz NOT NULL,
    job_id uuid NOT NULL,
    fired_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, schedule_id, slot_at),
    FOREIGN KEY (tenant_id, schedule_id) REFERENCES platform.schedules (tenant_id, id)
        ON DELETE CASCADE
);
-- A job asks which slot it runs for.
CREATE INDEX schedule_slots_job ON platform.schedule_slots (tenant_id, job_id);

ALTER TABLE platform.schedules ENABLE ROW LEVEL SECURITY;
ALTER TABLE platform.schedules FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON platform.schedules
    USING (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid);
-- Cross-tenant claiming of due schedules and the operator's view, as `job_dispatch`
-- on platform.jobs (ARCHITECTURE.md, "Decisions"): only the owner role, which owns the
-- table anyway. Firing itself runs as the service role in the schedule's tenant.
CREATE POLICY schedule_dispatch ON platform.schedules TO tenet_owner
    USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON platform.schedules TO tenet_app;

ALTER TABLE platform.schedule_slots ENABLE ROW LEVEL SECURITY;
ALTER TABLE platform.schedule_slots FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON platform.schedule_slots
    USING (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid);
-- Operators read the ledger across tenants.
CREATE POLICY schedule_dispatch ON platform.schedule_slots TO tenet_owner
    USING (true) WITH CHECK (true);
-- No UPDATE or DELETE: a fired slot stays fired (rows go only with their schedule).
GRANT SELECT, INSERT ON platform.schedule_slots TO tenet_app;
