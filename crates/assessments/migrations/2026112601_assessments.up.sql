-- Measurement-based care: plans, enrolments, the instances they make due, and the
-- responses that answer them. No PHI column: patients, guardians and clinicians are
-- ids here (a guardian's name and contact live in the identity vault). Answers and
-- scores are health information about a pseudonymous id, like clinical observations;
-- they never leave this schema in events, job arguments, logs or URLs.
CREATE SCHEMA assessments;
GRANT USAGE ON SCHEMA assessments TO tenet_app;

CREATE TYPE assessments.plan_status AS ENUM ('active', 'retired');
CREATE TYPE assessments.enrollment_status AS ENUM ('active', 'stopped', 'completed');
CREATE TYPE assessments.respondent AS ENUM ('patient', 'guardian', 'clinician');
-- scheduled: created, not yet open; open: inside its window; completed: answered;
-- missed: its window closed unanswered; cancelled: its enrolment stopped first.
CREATE TYPE assessments.instance_status AS ENUM ('scheduled', 'open', 'completed', 'missed', 'cancelled');
CREATE TYPE assessments.safety_kind AS ENUM ('self_harm');
CREATE TYPE assessments.outbox_status AS ENUM ('pending', 'delivered', 'dead');

-- A measurement plan: which instruments, answered by whom (rules on age and
-- relationships), how often, in which window, and when to stop. `definition` is
-- `assessments::PlanDefinition` as JSON, validated by Rust before it is written.
-- Every change makes a new version; `plan_versions` keeps each one.
CREATE TABLE assessments.plans (
    tenant_id uuid NOT NULL,
    id uuid NOT NULL,
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    version integer NOT NULL DEFAULT 1 CHECK (version >= 1),
    definition jsonb NOT NULL,
    status assessments.plan_status NOT NULL DEFAULT 'active',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, name)
);

CREATE TABLE assessments.plan_versions (
    tenant_id uuid NOT NULL,
    plan_id uuid NOT NULL,
    version integer NOT NULL,
    definition jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, plan_id, version),
    FOREIGN KEY (tenant_id, plan_id) REFERENCES assessments.plans (tenant_id, id)
);

-- Who may answer for a patient: a guardian (an identity related-person id) from
-- `since` until the day before `until`. Family rules read these; so does access.
CREATE TABLE assessments.guardians (
    tenant_id uuid NOT NULL,
    patient_id uuid NOT NULL,
    person_id uuid NOT NULL,
    since date NOT NULL,
    until date,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, patient_id, person_id, since),
    CHECK (until IS NULL OR until > since)
);
-- One relationship in force per guardian: adding it again while it is open is a
-- no-op, and ending it ends it.
CREATE UNIQUE INDEX guardians_one_open ON assessments.guardians (tenant_id, patient_id, person_id)
    WHERE until IS NULL;

-- A patient on a plan. One active enrolment per patient and plan. `anchor_at` is
-- where the cadence counts from; `time_zone` (IANA) is the patient's wall clock for
-- due dates and quiet hours; `clinician_id` (an identity user) owns the due list.
-- `next_evaluation_at` is when the scheduler next looks at it (a due date, a
-- birthday threshold, a relationship change); NULL when nothing is pending.
CREATE TABLE assessments.enrollments (
    tenant_id uuid NOT NULL,
    id uuid NOT NULL,
    plan_id uuid NOT NULL,
    plan_version integer NOT NULL,
    patient_id uuid NOT NULL,
    clinician_id uuid,
    time_zone text NOT NULL,
    anchor_at timestamptz NOT NULL,
    status assessments.enrollment_status NOT NULL DEFAULT 'active',
    -- A code (`stopped_by_clinician`, `remission`, `responses_reached`, `ended`), never free text.
    stop_reason text,
    next_evaluation_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    stopped_at timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, plan_id) REFERENCES assessments.plans (tenant_id, id),
    CHECK ((status = 'active') = (stopped_at IS NULL))
);
CREATE UNIQUE INDEX enrollments_one_active ON assessments.enrollments (tenant_id, plan_id, patient_id)
    WHERE status = 'active';
CREATE INDEX enrollments_patient ON assessments.enrollments (tenant_id, patient_id);
CREATE INDEX enrollments_next_evaluation ON assessments.enrollments (next_evaluation_at)
    WHERE status = 'active' AND next_evaluation_at IS NOT NULL;

-- One due assessment: an instrument for one respondent at one slot of the cadence.
-- The unique key makes creation idempotent however many workers or backfills race
-- (`ON CONFLICT DO NOTHING`). `slot_key` is the cadence's stable key for the slot.
CREATE TABLE assessments.instances (
    tenant_id uuid NOT NULL,
    id uuid NOT NULL,
    enrollment_id uuid NOT NULL,
    patient_id uuid NOT NULL,
    clinician_id uuid,
    instrument_code text NOT NULL,
    instrument_version integer NOT NULL,
    respondent assessments.respondent NOT NULL,
    respondent_person_id uuid,
    slot_key text NOT NULL,
    due_at timestamptz NOT NULL,
    opens_at timestamptz NOT NULL,
    closes_at timestamptz NOT NULL,
    status assessments.instance_status NOT NULL DEFAULT 'scheduled',
    -- Made afterwards for a past slot: never reminded, never escalated.
    backfilled boolean NOT NULL DEFAULT false,
    escalated_at timestamptz,
    completed_at timestamptz,
    response_id uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, enrollment_id) REFERENCES assessments.enrollments (tenant_id, id),
    CHECK (opens_at <= due_at AND due_at <= closes_at),
    CHECK ((respondent = 'guardian') = (respondent_person_id IS NOT NULL)),
    CHECK ((status = 'completed') = (completed_at IS NOT NULL))
);
CREATE UNIQUE INDEX instances_slot ON assessments.instances
    (tenant_id, enrollment_id, slot_key, instrument_code, respondent, respondent_person_id) NULLS NOT DISTINCT;
CREATE INDEX instances_due_list ON assessments.instances (tenant_id, clinician_id, status, due_at);
CREATE INDEX instances_patient ON assessments.instances (tenant_id, patient_id, due_at);
CREATE INDEX instances_unfinished ON assessments.instances (closes_at)
    WHERE status IN ('scheduled', 'open');

-- A submitted questionnaire, scored. Never updated: a correction is a new response.
-- `answers` and `score` are the `assessments` crate's types as JSON.
CREATE TABLE assessments.responses (
    tenant_id uuid NOT NULL,
    id uuid NOT NULL,
    patient_id uuid NOT NULL,
    instance_id uuid,
    instrument_code text NOT NULL,
    instrument_version integer NOT NULL,
    respondent assessments.respondent NOT NULL,
    respondent_person_id uuid,
    -- The actor who submitted: `user:<id>`, `link:<token id>`.
    submitted_by text NOT NULL,
    answers jsonb NOT NULL,
    total numeric,
    band text,
    score jsonb NOT NULL,
    flags text[] NOT NULL DEFAULT '{}',
    submitted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, instance_id) REFERENCES assessments.instances (tenant_id, id)
);
CREATE INDEX responses_history ON assessments.responses (tenant_id, patient_id, instrument_code, submitted_at);
CREATE UNIQUE INDEX responses_one_per_instance ON assessments.responses (tenant_id, instance_id)
    WHERE instance_id IS NOT NULL;

-- A one-time link for a patient or guardian to answer one instance without an
-- account: the token is `at_<tenant>.<id>.<secret>`; only the secret's SHA-256 is kept.
CREATE TABLE assessments.link_tokens (
    tenant_id uuid NOT NULL,
    id uuid NOT NULL,
    instance_id uuid NOT NULL,
    secret_sha256 bytea NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, instance_id) REFERENCES assessments.instances (tenant_id, id)
);

-- An urgent safety event (PHQ-9 item 9 answered above zero, ...): raised in the
-- response's transaction, escalated to the care team until acknowledged.
CREATE TABLE assessments.safety_events (
    tenant_id uuid NOT NULL,
    id uuid NOT NULL,
    patient_id uuid NOT NULL,
    response_id uuid NOT NULL,
    kind assessments.safety_kind NOT NULL,
    raised_at timestamptz NOT NULL DEFAULT now(),
    acknowledged_at timestamptz,
    acknowledged_by uuid,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, response_id, kind),
    FOREIGN KEY (tenant_id, response_id) REFERENCES assessments.responses (tenant_id, id),
    CHECK ((acknowledged_at IS NULL) = (acknowledged_by IS NULL))
);
CREATE INDEX safety_events_open ON assessments.safety_events (tenant_id, raised_at)
    WHERE acknowledged_at IS NULL;

CREATE TABLE assessments.outbox (
    tenant_id uuid NOT NULL,
    id uuid NOT NULL,
    event_type text NOT NULL,
    event_version integer NOT NULL,
    aggregate_type text NOT NULL,
    aggregate_id uuid NOT NULL,
    occurred_at timestamptz NOT NULL,
    payload jsonb NOT NULL,
    status assessments.outbox_status NOT NULL DEFAULT 'pending',
    delivered_at timestamptz,
    PRIMARY KEY (tenant_id, id)
);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['plans', 'plan_versions', 'guardians', 'enrollments', 'instances',
                             'responses', 'link_tokens', 'safety_events', 'outbox']
    LOOP
        EXECUTE format('ALTER TABLE assessments.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE assessments.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format($p$CREATE POLICY tenant_isolation ON assessments.%I
            USING (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid)
            WITH CHECK (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid)$p$, t);
    END LOOP;
END
$$;

GRANT SELECT, INSERT, UPDATE ON assessments.plans TO tenet_app;
GRANT SELECT, INSERT ON assessments.plan_versions TO tenet_app;
GRANT SELECT, INSERT, UPDATE ON assessments.guardians TO tenet_app;
GRANT SELECT, INSERT, UPDATE ON assessments.enrollments TO tenet_app;
GRANT SELECT, INSERT, UPDATE ON assessments.instances TO tenet_app;
GRANT SELECT, INSERT ON assessments.responses TO tenet_app;
GRANT SELECT, INSERT, UPDATE ON assessments.link_tokens TO tenet_app;
GRANT SELECT, INSERT, UPDATE ON assessments.safety_events TO tenet_app;
GRANT SELECT, INSERT, UPDATE ON assessments.outbox TO tenet_app;

-- The outbox relay (owner role) reads and marks every tenant's rows, like the other
-- contexts' outboxes (platform's relay migration).
CREATE POLICY relay_dispatch ON assessments.outbox TO tenet_owner USING (true) WITH CHECK (true);
CREATE INDEX outbox_pending ON assessments.outbox (occurred_at, id) WHERE status = 'pending';
