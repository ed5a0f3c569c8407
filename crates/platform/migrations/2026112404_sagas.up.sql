-- Sagas (issue 4, part 4): workflows of steps with compensations, driven by durable
-- jobs, their state persisted in the same transaction as each step's effects.
--
-- `data` holds ids and codes only, never PHI (invariant I2): sagas are read across
-- tenants by operators and `tenet check`.
CREATE TYPE platform.saga_state AS ENUM
    ('running', 'compensating', 'completed', 'compensated', 'failed');
CREATE TYPE platform.saga_action AS ENUM ('execute', 'compensate');
CREATE TYPE platform.saga_step_outcome AS ENUM ('done', 'failed');

CREATE TABLE platform.sagas (
    tenant_id uuid NOT NULL,
    id uuid NOT NULL,
    kind text NOT NULL CHECK (length(kind) BETWEEN 1 AND 100),
    state platform.saga_state NOT NULL DEFAULT 'running',
    -- Running: the step to execute next. Compensating: the step to compensate next
    -- (counting down). Ended: where it ended.
    step integer NOT NULL DEFAULT 0 CHECK (step >= 0),
    n_steps integer NOT NULL CHECK (n_steps >= 1),
    -- Ids only: never PHI.
    data jsonb NOT NULL,
    last_error text,
    -- The job that drives the saga now: set exactly while it has not ended.
    job_id uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    PRIMARY KEY (tenant_id, id),
    CHECK ((state IN ('running', 'compensating')) = (job_id IS NOT NULL)),
    CHECK ((state IN ('completed', 'compensated', 'failed')) = (finished_at IS NOT NULL)),
    CHECK (state <> 'failed' OR last_error IS NOT NULL)
);
-- `tenet check` looks for unfinished sagas.
CREATE INDEX sagas_unfinished ON platform.sagas (updated_at)
    WHERE state IN ('running', 'compensating');

-- What each step did: one row per execution or compensation that ended, with the
-- job attempt it took and, for a failure, why (never PHI).
CREATE TABLE platform.saga_steps (
    tenant_id uuid NOT NULL,
    saga_id uuid NOT NULL,
    n integer NOT NULL CHECK (n >= 1),
    step integer NOT NULL CHECK (step >= 0),
    step_name text NOT NULL,
    action platform.saga_action NOT NULL,
    outcome platform.saga_step_outcome NOT NULL,
    attempt integer NOT NULL CHECK (attempt >= 1),
    error text,
    job_id uuid NOT NULL,
    at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, saga_id, n),
    FOREIGN KEY (tenant_id, saga_id) REFERENCES platform.sagas (tenant_id, id)
);

ALTER TABLE platform.sagas ENABLE ROW LEVEL SECURITY;
ALTER TABLE platform.sagas FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON platform.sagas
    USING (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid);
-- Operators and `tenet check` read sagas across tenants, as `job_dispatch` on
-- platform.jobs (ARCHITECTURE.md, "Decisions"). Steps run as the service role.
CREATE POLICY saga_dispatch ON platform.sagas TO tenet_owner
    USING (true) WITH CHECK (true);
-- No DELETE: a saga's history is kept.
GRANT SELECT, INSERT, UPDATE ON platform.sagas TO tenet_app;

ALTER TABLE platform.saga_steps ENABLE ROW LEVEL SECURITY;
ALTER TABLE platform.saga_steps FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON platform.saga_steps
    USING (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid);
CREATE POLICY saga_dispatch ON platform.saga_steps TO tenet_owner
    USING (true) WITH CHECK (true);
-- Append-only: a step's record is never rewritten.
GRANT SELECT, INSERT ON platform.saga_steps TO tenet_app;
