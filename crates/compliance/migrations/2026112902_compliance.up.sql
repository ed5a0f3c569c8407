-- Consents and the releases of information that rely on them. A consent's recipient
-- (a named person or organisation) and a release's recipient and description can
-- reveal a patient's relationships: they are PHI (I2), sealed with AES-256-GCM under
-- the tenant's data key, bound to tenant, row and field. `recipient_fingerprint` is
-- an HMAC of the normalised recipient under a key derived from the same data key:
-- equality matching without plaintext. Patients, documents and actors are ids here.
CREATE SCHEMA compliance;
GRANT USAGE ON SCHEMA compliance TO tenet_app;

-- What a consent permits.
CREATE TYPE compliance.consent_scope AS ENUM
    ('treatment', 'telehealth', 'release_of_information', 'research');
-- granted: in force (until valid_until, when set); revoked: withdrawn for good. A
-- new grant is a new record.
CREATE TYPE compliance.consent_status AS ENUM ('granted', 'revoked');
CREATE TYPE compliance.revocation_reason AS ENUM
    ('patient_request', 'entered_in_error', 'superseded', 'other');
-- Why information was released (the accounting-of-disclosures purposes).
CREATE TYPE compliance.release_purpose AS ENUM
    ('treatment', 'payment', 'healthcare_operations', 'patient_request', 'legal',
     'public_health', 'research', 'other');
CREATE TYPE compliance.outbox_status AS ENUM ('pending', 'delivered', 'dead');

-- One consent. `recorded_by`/`revoked_by` are audit actor names (`user:…`,
-- `api_key:…`, `operator`). `evidence_document_id` names a document of the
-- documents context (the signed form); no foreign key across schemas.
CREATE TABLE compliance.consents (
    tenant_id uuid NOT NULL,
    id uuid NOT NULL,
    patient_id uuid NOT NULL,
    scope compliance.consent_scope NOT NULL,
    data_key_id uuid,
    recipient_sealed bytea,
    recipient_fingerprint bytea,
    status compliance.consent_status NOT NULL DEFAULT 'granted',
    granted_at timestamptz NOT NULL,
    recorded_by text NOT NULL CHECK (length(recorded_by) BETWEEN 1 AND 200),
    valid_until timestamptz,
    evidence_document_id uuid,
    revoked_at timestamptz,
    revoked_by text CHECK (length(revoked_by) BETWEEN 1 AND 200),
    revocation_reason compliance.revocation_reason,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    -- A recipient exactly when the scope is a release of information.
    CHECK ((scope = 'release_of_information')
           = (recipient_sealed IS NOT NULL AND recipient_fingerprint IS NOT NULL AND data_key_id IS NOT NULL)),
    CHECK (scope = 'release_of_information'
           OR (recipient_sealed IS NULL AND recipient_fingerprint IS NULL AND data_key_id IS NULL)),
    CHECK (recipient_fingerprint IS NULL OR length(recipient_fingerprint) = 32),
    CHECK (valid_until IS NULL OR valid_until > granted_at),
    CHECK ((status = 'revoked')
           = (revoked_at IS NOT NULL AND revoked_by IS NOT NULL AND revocation_reason IS NOT NULL)),
    CHECK (status = 'revoked' OR (revoked_at IS NULL AND revoked_by IS NULL AND revocation_reason IS NULL))
);
CREATE INDEX consents_patient ON compliance.consents (tenant_id, patient_id, scope, granted_at);

-- A consent is born granted and changes once, to revoked, and never back; it is never
-- deleted. Refused to every role that can write the table, the owner included; an
-- operator who disables the trigger does so visibly in the catalog.
CREATE FUNCTION compliance.consent_transition() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' OR TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'consents are never deleted; revoke one instead'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF TG_OP = 'INSERT' THEN
        IF NEW.status <> 'granted' THEN
            RAISE EXCEPTION 'a consent is recorded as granted and revoked afterwards'
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
        RETURN NEW;
    END IF;
    IF OLD.status <> 'granted' OR NEW.status <> 'revoked'
       OR (NEW.tenant_id, NEW.id, NEW.patient_id, NEW.scope, NEW.data_key_id, NEW.recipient_sealed,
           NEW.recipient_fingerprint, NEW.granted_at, NEW.recorded_by, NEW.valid_until,
           NEW.evidence_document_id, NEW.created_at)
          IS DISTINCT FROM
          (OLD.tenant_id, OLD.id, OLD.patient_id, OLD.scope, OLD.data_key_id, OLD.recipient_sealed,
           OLD.recipient_fingerprint, OLD.granted_at, OLD.recorded_by, OLD.valid_until,
           OLD.evidence_document_id, OLD.created_at)
    THEN
        RAISE EXCEPTION 'consent %: the only change is granted to revoked', OLD.id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER consents_transition BEFORE INSERT OR UPDATE OR DELETE ON compliance.consents
    FOR EACH ROW EXECUTE FUNCTION compliance.consent_transition();
CREATE TRIGGER consents_no_truncate BEFORE TRUNCATE ON compliance.consents
    FOR EACH STATEMENT EXECUTE FUNCTION compliance.consent_transition();
REVOKE ALL ON FUNCTION compliance.consent_transition() FROM PUBLIC;

-- One release of information to a named recipient: the accounting of disclosures.
-- Append-only. `details_sealed` holds the recipient and the description of what was
-- released; `document_ids` name documents of the documents context.
CREATE TABLE compliance.releases (
    tenant_id uuid NOT NULL,
    id uuid NOT NULL,
    patient_id uuid NOT NULL,
    consent_id uuid NOT NULL,
    purpose compliance.release_purpose NOT NULL,
    document_ids uuid[] NOT NULL DEFAULT '{}',
    data_key_id uuid NOT NULL,
    details_sealed bytea NOT NULL,
    recipient_fingerprint bytea NOT NULL CHECK (length(recipient_fingerprint) = 32),
    released_by text NOT NULL CHECK (length(released_by) BETWEEN 1 AND 200),
    released_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, consent_id) REFERENCES compliance.consents (tenant_id, id),
    CHECK (cardinality(document_ids) <= 100)
);
CREATE INDEX releases_patient ON compliance.releases (tenant_id, patient_id, released_at);
CREATE INDEX releases_time ON compliance.releases (tenant_id, released_at);

CREATE FUNCTION compliance.refuse_release_change() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    RAISE EXCEPTION 'the accounting of disclosures is append-only'
        USING ERRCODE = 'object_not_in_prerequisite_state';
END
$$;
CREATE TRIGGER releases_append_only BEFORE UPDATE OR DELETE ON compliance.releases
    FOR EACH ROW EXECUTE FUNCTION compliance.refuse_release_change();
CREATE TRIGGER releases_no_truncate BEFORE TRUNCATE ON compliance.releases
    FOR EACH STATEMENT EXECUTE FUNCTION compliance.refuse_release_change();
REVOKE ALL ON FUNCTION compliance.refuse_release_change() FROM PUBLIC;

CREATE TABLE compliance.outbox (
    tenant_id uuid NOT NULL,
    id uuid NOT NULL,
    event_type text NOT NULL,
    event_version integer NOT NULL,
    aggregate_type text NOT NULL,
    aggregate_id uuid NOT NULL,
    occurred_at timestamptz NOT NULL,
    payload jsonb NOT NULL,
    status compliance.outbox_status NOT NULL DEFAULT 'pending',
    delivered_at timestamptz,
    PRIMARY KEY (tenant_id, id)
);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['consents', 'releases', 'outbox']
    LOOP
        EXECUTE format('ALTER TABLE compliance.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE compliance.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format($p$CREATE POLICY tenant_isolation ON compliance.%I
            USING (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid)
            WITH CHECK (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid)$p$, t);
    END LOOP;
END
$$;

-- UPDATE for the revocation only (the trigger refuses anything else); DELETE too, so
-- that the trigger, not a missing grant, is what keeps a consent.
GRANT SELECT, INSERT, UPDATE, DELETE ON compliance.consents TO tenet_app;
GRANT SELECT, INSERT ON compliance.releases TO tenet_app;
GRANT SELECT, INSERT, UPDATE ON compliance.outbox TO tenet_app;

-- The outbox relay (owner role) reads and marks every tenant's rows, like the other
-- contexts' outboxes (platform's relay migration).
CREATE POLICY relay_dispatch ON compliance.outbox TO tenet_owner USING (true) WITH CHECK (true);
CREATE INDEX outbox_pending ON compliance.outbox (occurred_at, id) WHERE status = 'pending';
