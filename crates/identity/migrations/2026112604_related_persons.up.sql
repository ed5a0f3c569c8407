-- Related persons: a patient's parents and guardians, who answer questionnaires for
-- them and receive reminders. Their name and contact details are PHI and live here,
-- in the vault, sealed like `patient_phi` (AES-256-GCM under the tenant's data key,
-- associated data = tenant || person || field). Other contexts refer to a person by
-- `person_id` only (`assessments.guardians.person_id`).
CREATE TABLE identity.related_person_phi (
    tenant_id uuid NOT NULL,
    person_id uuid NOT NULL,
    data_key_id uuid NOT NULL,
    family_name bytea NOT NULL,
    given_names bytea NOT NULL,
    email bytea,
    phone bytea,
    version integer NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, person_id),
    FOREIGN KEY (tenant_id, data_key_id) REFERENCES identity.data_keys (tenant_id, id)
);

ALTER TABLE identity.related_person_phi ENABLE ROW LEVEL SECURITY;
ALTER TABLE identity.related_person_phi FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON identity.related_person_phi
    USING (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid);

GRANT SELECT, INSERT, UPDATE ON identity.related_person_phi TO tenet_app;
