-- Encounters, observations and merges: what HL7 v2 ADT and ORU messages (and later
-- the API) record about a patient. Still no PHI: patients are pseudonymous ids here.
-- Free-text observation values are not copied here (they may name people); the
-- observation points at its source, which keeps them sealed.

-- A40: the merged-away record points at the survivor; nothing is deleted.
ALTER TABLE clinical.patients ADD COLUMN merged_into uuid;
ALTER TABLE clinical.patients
    ADD CONSTRAINT patients_merged_into_fkey FOREIGN KEY (tenant_id, merged_into)
    REFERENCES clinical.patients (tenant_id, id);
ALTER TABLE clinical.patients
    ADD CONSTRAINT patients_merged_has_survivor
    CHECK ((status = 'merged') = (merged_into IS NOT NULL) AND merged_into IS DISTINCT FROM id);

CREATE TYPE clinical.encounter_status AS ENUM ('in_progress', 'finished');

CREATE TABLE clinical.encounters (
    tenant_id uuid NOT NULL,
    id uuid NOT NULL,
    patient_id uuid NOT NULL,
    status clinical.encounter_status NOT NULL,
    -- HL7 table 0004 (I inpatient, O outpatient, E emergency, ...), a code.
    class text,
    started_at timestamptz,
    ended_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, patient_id) REFERENCES clinical.patients (tenant_id, id)
);
CREATE INDEX encounters_open ON clinical.encounters (tenant_id, patient_id)
    WHERE status = 'in_progress';

CREATE TYPE clinical.observation_status AS ENUM (
    'registered', 'preliminary', 'final', 'corrected', 'cancelled', 'entered_in_error', 'unknown'
);
CREATE TYPE clinical.observation_value_kind AS ENUM ('numeric', 'coded', 'text', 'none');

CREATE TABLE clinical.observations (
    tenant_id uuid NOT NULL,
    id uuid NOT NULL,
    patient_id uuid NOT NULL,
    -- The observation's code (OBX-3): its coding system (LN for LOINC) and code.
    code_system text NOT NULL,
    code text NOT NULL,
    value_kind clinical.observation_value_kind NOT NULL,
    value_numeric numeric,
    value_code text,
    units text,
    reference_range text,
    abnormal_flags text[] NOT NULL DEFAULT '{}',
    status clinical.observation_status NOT NULL,
    effective_at timestamptz,
    critical boolean NOT NULL,
    -- Why it is critical: `flag:HH`, `range` (a configured critical range); NULL if not.
    critical_reason text,
    -- Where it came from (an `ingest` message id and the OBX's position in it): the
    -- same source is recorded once, however often it is processed.
    source_message_id uuid,
    source_index integer,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, source_message_id, source_index),
    FOREIGN KEY (tenant_id, patient_id) REFERENCES clinical.patients (tenant_id, id)
);
CREATE INDEX observations_patient ON clinical.observations (tenant_id, patient_id, effective_at);

-- Per code, the values outside which a result is critical whatever its flags say.
CREATE TABLE clinical.critical_ranges (
    tenant_id uuid NOT NULL,
    code_system text NOT NULL,
    code text NOT NULL,
    low numeric,
    high numeric,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, code_system, code),
    CHECK (low IS NOT NULL OR high IS NOT NULL),
    CHECK (low IS NULL OR high IS NULL OR low < high)
);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['encounters', 'observations', 'critical_ranges']
    LOOP
        EXECUTE format('ALTER TABLE clinical.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE clinical.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format($p$CREATE POLICY tenant_isolation ON clinical.%I
            USING (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid)
            WITH CHECK (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid)$p$, t);
    END LOOP;
END
$$;

GRANT SELECT, INSERT, UPDATE ON clinical.encounters TO tenet_app;
GRANT SELECT, INSERT ON clinical.observations TO tenet_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON clinical.critical_ranges TO tenet_app;
