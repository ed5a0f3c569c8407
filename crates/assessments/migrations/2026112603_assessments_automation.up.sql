-- Automation of measurement plans: the overdue grace per plan, batch enrolments that
-- can be resumed row by row, and backfills that can be resumed enrolment by
-- enrolment. No PHI: rows are ids, row numbers and outcome codes.

-- How long an open instance may stay past its due time before the care team is told
-- (`assessment.overdue`); NULL takes the tenant's default (the materialise job's
-- argument).
ALTER TABLE assessments.plans ADD COLUMN overdue_grace_hours integer
    CHECK (overdue_grace_hours BETWEEN 0 AND 8784);

CREATE TYPE assessments.batch_status AS ENUM ('running', 'done');
CREATE TYPE assessments.batch_outcome AS ENUM ('enrolled', 'already_enrolled', 'invalid');

-- One batch enrolment of a file into a plan. The file is known by its SHA-256 only:
-- the same file into the same plan is the same batch, so a re-run resumes it.
CREATE TABLE assessments.enrollment_batches (
    tenant_id uuid NOT NULL,
    id uuid NOT NULL,
    plan_id uuid NOT NULL,
    file_sha256 bytea NOT NULL CHECK (length(file_sha256) = 32),
    n_rows integer NOT NULL CHECK (n_rows >= 0),
    status assessments.batch_status NOT NULL DEFAULT 'running',
    created_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, plan_id, file_sha256),
    FOREIGN KEY (tenant_id, plan_id) REFERENCES assessments.plans (tenant_id, id),
    CHECK ((status = 'done') = (finished_at IS NOT NULL))
);

-- Each row's outcome, written in the transaction that enrolled it: a row with an
-- outcome is done and is skipped by a resumed run. `reason` is a code
-- (`patient_not_found`, `invalid_time_zone`, ...), never the row's text.
CREATE TABLE assessments.enrollment_batch_rows (
    tenant_id uuid NOT NULL,
    batch_id uuid NOT NULL,
    row_number integer NOT NULL CHECK (row_number >= 1),
    outcome assessments.batch_outcome NOT NULL,
    reason text,
    enrollment_id uuid,
    PRIMARY KEY (tenant_id, batch_id, row_number),
    FOREIGN KEY (tenant_id, batch_id) REFERENCES assessments.enrollment_batches (tenant_id, id),
    CHECK ((outcome = 'invalid') = (reason IS NOT NULL))
);

-- One backfill of a plan's past slots over [from_at, until_at): resumed after the
-- last enrolment it finished (`after_enrollment_id`, enrolments in id order).
CREATE TABLE assessments.backfills (
    tenant_id uuid NOT NULL,
    id uuid NOT NULL,
    plan_id uuid NOT NULL,
    from_at timestamptz NOT NULL,
    until_at timestamptz NOT NULL,
    status assessments.batch_status NOT NULL DEFAULT 'running',
    after_enrollment_id uuid,
    n_enrollments integer NOT NULL DEFAULT 0,
    n_created bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, plan_id) REFERENCES assessments.plans (tenant_id, id),
    CHECK (from_at < until_at),
    CHECK ((status = 'done') = (finished_at IS NOT NULL))
);
CREATE UNIQUE INDEX backfills_one_running ON assessments.backfills (tenant_id, plan_id, from_at, until_at)
    WHERE status = 'running';

-- The materialiser's transitions: scheduled instances to open, unfinished ones to
-- escalate (backfilled ones never are).
CREATE INDEX instances_to_open ON assessments.instances (tenant_id, opens_at)
    WHERE status = 'scheduled';
CREATE INDEX instances_to_escalate ON assessments.instances (tenant_id, due_at)
    WHERE escalated_at IS NULL AND NOT backfilled AND status IN ('open', 'missed');
CREATE INDEX instances_enrollment ON assessments.instances (tenant_id, enrollment_id, status);
CREATE INDEX enrollments_plan ON assessments.enrollments (tenant_id, plan_id, id);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['enrollment_batches', 'enrollment_batch_rows', 'backfills']
    LOOP
        EXECUTE format('ALTER TABLE assessments.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE assessments.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format($p$CREATE POLICY tenant_isolation ON assessments.%I
            USING (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid)
            WITH CHECK (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid)$p$, t);
    END LOOP;
END
$$;

GRANT SELECT, INSERT, UPDATE ON assessments.enrollment_batches TO tenet_app;
GRANT SELECT, INSERT ON assessments.enrollment_batch_rows TO tenet_app;
GRANT SELECT, INSERT, UPDATE ON assessments.backfills TO tenet_app;
