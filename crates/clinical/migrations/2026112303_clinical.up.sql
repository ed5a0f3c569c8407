-- The clinical context: pseudonymous patients and their care teams. No PHI here:
-- names, birth dates and identifiers live in the identity vault.
CREATE SCHEMA clinical;
GRANT USAGE ON SCHEMA clinical TO tenet_app;

CREATE TYPE clinical.patient_status AS ENUM ('active', 'inactive', 'merged');
CREATE TYPE clinical.outbox_status AS ENUM ('pending', 'delivered', 'dead');

CREATE TABLE clinical.patients (
    tenant_id uuid NOT NULL,
    id uuid NOT NULL,
    status clinical.patient_status NOT NULL DEFAULT 'active',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);

-- Who has a care relationship with a patient. user_id names an identity user; it is
-- not a foreign key because contexts do not reference each other's tables.
CREATE TABLE clinical.care_team_members (
    tenant_id uuid NOT NULL,
    patient_id uuid NOT NULL,
    user_id uuid NOT NULL,
    added_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, patient_id, user_id),
    FOREIGN KEY (tenant_id, patient_id) REFERENCES clinical.patients (tenant_id, id)
);

CREATE TABLE clinical.outbox (
    tenant_id uuid NOT NULL,
    id uuid NOT NULL,
    event_type text NOT NULL,
    event_version integer NOT NULL,
    aggregate_type text NOT NULL,
    aggregate_id uuid NOT NULL,
    occurred_at timestamptz NOT NULL,
    payload jsonb NOT NULL,
    status clinical.outbox_status NOT NULL DEFAULT 'pending',
    delivered_at timestamptz,
    PRIMARY KEY (tenant_id, id)
);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['patients', 'care_team_members', 'outbox']
    LOOP
        EXECUTE format('ALTER TABLE clinical.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE clinical.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format($p$CREATE POLICY tenant_isolation ON clinical.%I
            USING (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid)
            WITH CHECK (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid)$p$, t);
    END LOOP;
END
$$;

GRANT SELECT, INSERT, UPDATE ON clinical.patients TO tenet_app;
GRANT SELECT, INSERT, DELETE ON clinical.care_team_members TO tenet_app;
GRANT SELECT, INSERT, UPDATE ON clinical.outbox TO tenet_app;
