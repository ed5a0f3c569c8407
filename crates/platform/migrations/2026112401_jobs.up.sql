-- Durable jobs (issue 4, first slice). A job is enqueued by the caller's own
-- transaction and marked succeeded by the transaction that commits its effects.
--
-- `args` holds ids and codes only, never PHI (invariant I2): job rows are read
-- across tenants by workers and operators, and show up in `tenet jobs show`.
CREATE TYPE platform.job_state AS ENUM
    ('scheduled', 'running', 'succeeded', 'retrying', 'dead', 'cancelled');

CREATE TABLE platform.jobs (
    tenant_id uuid NOT NULL,
    id uuid NOT NULL,
    kind text NOT NULL CHECK (length(kind) BETWEEN 1 AND 100),
    args_version integer NOT NULL,
    -- Ids only: never PHI.
    args jsonb NOT NULL,
    queue text NOT NULL DEFAULT 'default' CHECK (length(queue) BETWEEN 1 AND 100),
    -- Lower runs first, within a tenant.
    priority smallint NOT NULL DEFAULT 0,
    run_at timestamptz NOT NULL DEFAULT now(),
    state platform.job_state NOT NULL DEFAULT 'scheduled',
    attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    attempts_max integer NOT NULL CHECK (attempts_max >= 1),
    lease_expires_at timestamptz,
    -- Incremented by every claim (and every rescue or hand-back): a worker completes
    -- a job only while the token it claimed is still the job's token.
    fencing_token bigint NOT NULL DEFAULT 0,
    worker_id text,
    last_error text,
    unique_key text CHECK (length(unique_key) BETWEEN 1 AND 255),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    PRIMARY KEY (tenant_id, id),
    CHECK ((state = 'running') = (lease_expires_at IS NOT NULL)),
    CHECK ((state IN ('succeeded', 'dead', 'cancelled')) = (finished_at IS NOT NULL))
);

-- At most one pending job per (tenant, unique key). A running job is pending too: a
-- rescued job goes back to `retrying` and must not collide with a newer twin.
CREATE UNIQUE INDEX jobs_unique_pending ON platform.jobs (tenant_id, unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('scheduled', 'retrying', 'running');

-- The claim reads only this index, in its order (tenant first: claims round-robin
-- over tenants, so one tenant's backfill cannot starve the others). Partial, so it
-- holds only runnable jobs and stays small however many finished jobs the table has;
-- the claim also switches off sequential scans and sorts, so stale statistics after
-- a bulk enqueue cannot turn it into a scan of the whole table.
CREATE INDEX jobs_runnable ON platform.jobs (tenant_id, priority, run_at)
    WHERE state IN ('scheduled', 'retrying');

-- Rescue of expired leases.
CREATE INDEX jobs_leased ON platform.jobs (lease_expires_at) WHERE state = 'running';

ALTER TABLE platform.jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE platform.jobs FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON platform.jobs
    USING (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid);
-- Cross-tenant claiming (ARCHITECTURE.md, "Decisions"): only the owner role, which
-- owns this table and could switch its row-level security off anyway, sees every
-- tenant's jobs, to claim, heartbeat and rescue them and for operator commands. The
-- service role gets nothing wider than its tenant, and a job's own work runs in a
-- TenantTx of the job's tenant as the service role.
CREATE POLICY job_dispatch ON platform.jobs TO tenet_owner
    USING (true) WITH CHECK (true);
-- No DELETE: a job's history is kept.
GRANT SELECT, INSERT, UPDATE ON platform.jobs TO tenet_app;
