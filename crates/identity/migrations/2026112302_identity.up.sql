-- The identity context: tenants, users, API keys, the PHI vault and its keys.
CREATE SCHEMA identity;
GRANT USAGE ON SCHEMA identity TO tenet_app;

CREATE TYPE identity.role AS ENUM ('admin', 'clinician', 'care_coordinator', 'auditor', 'integration');
CREATE TYPE identity.tenant_status AS ENUM ('active', 'suspended');
CREATE TYPE identity.user_status AS ENUM ('active', 'disabled');
CREATE TYPE identity.api_key_status AS ENUM ('active', 'revoked');
CREATE TYPE identity.data_key_status AS ENUM ('active', 'retired');
CREATE TYPE identity.outbox_status AS ENUM ('pending', 'delivered', 'dead');

CREATE TABLE identity.tenants (
    tenant_id uuid PRIMARY KEY,
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    status identity.tenant_status NOT NULL DEFAULT 'active',
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE identity.users (
    tenant_id uuid NOT NULL REFERENCES identity.tenants (tenant_id),
    id uuid NOT NULL,
    handle text NOT NULL CHECK (length(handle) BETWEEN 1 AND 200),
    role identity.role NOT NULL,
    status identity.user_status NOT NULL DEFAULT 'active',
    oidc_subject text,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, handle),
    UNIQUE (tenant_id, oidc_subject)
);

-- The secret half of a key is never stored: only its SHA-256.
CREATE TABLE identity.api_keys (
    tenant_id uuid NOT NULL REFERENCES identity.tenants (tenant_id),
    id uuid NOT NULL,
    user_id uuid,
    role identity.role NOT NULL,
    label text NOT NULL CHECK (length(label) BETWEEN 1 AND 200),
    secret_hash bytea NOT NULL CHECK (length(secret_hash) = 32),
    status identity.api_key_status NOT NULL DEFAULT 'active',
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    last_used_at timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES identity.users (tenant_id, id)
);

-- A tenant's data-encryption keys, each wrapped (AES-256-GCM) by a master key that
-- never enters the database.
CREATE TABLE identity.data_keys (
    tenant_id uuid NOT NULL REFERENCES identity.tenants (tenant_id),
    id uuid NOT NULL,
    wrapped_key bytea NOT NULL,
    master_key_id text NOT NULL,
    status identity.data_key_status NOT NULL DEFAULT 'active',
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX data_keys_one_active ON identity.data_keys (tenant_id) WHERE status = 'active';

-- The PHI vault: every column is AES-256-GCM ciphertext (nonce || ciphertext || tag)
-- bound to tenant, patient and field; the indexes are keyed hashes (blind indexes).
CREATE TABLE identity.patient_phi (
    tenant_id uuid NOT NULL,
    patient_id uuid NOT NULL,
    data_key_id uuid NOT NULL,
    family_name bytea NOT NULL,
    given_names bytea NOT NULL,
    birth_date bytea,
    sex bytea,
    phone bytea,
    email bytea,
    address bytea,
    identifiers bytea NOT NULL,
    name_birth_index bytea,
    version integer NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, patient_id),
    FOREIGN KEY (tenant_id, data_key_id) REFERENCES identity.data_keys (tenant_id, id)
);
CREATE INDEX patient_phi_name_birth ON identity.patient_phi (tenant_id, name_birth_index);

-- One row per identifier (MRN + assigning authority), found by its keyed hash. An
-- identifier belongs to one patient of a tenant.
CREATE TABLE identity.patient_identifier_index (
    tenant_id uuid NOT NULL,
    blind_index bytea NOT NULL,
    patient_id uuid NOT NULL,
    PRIMARY KEY (tenant_id, blind_index),
    FOREIGN KEY (tenant_id, patient_id) REFERENCES identity.patient_phi (tenant_id, patient_id) ON DELETE CASCADE
);
CREATE INDEX patient_identifier_index_patient ON identity.patient_identifier_index (tenant_id, patient_id);

-- A clinician's time-boxed access to a patient outside their care team.
CREATE TABLE identity.break_glass_grants (
    tenant_id uuid NOT NULL,
    id uuid NOT NULL,
    patient_id uuid NOT NULL,
    user_id uuid NOT NULL,
    reason text NOT NULL CHECK (length(reason) BETWEEN 10 AND 500),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, patient_id) REFERENCES identity.patient_phi (tenant_id, patient_id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES identity.users (tenant_id, id)
);
CREATE INDEX break_glass_grants_lookup ON identity.break_glass_grants (tenant_id, patient_id, user_id, expires_at);

CREATE TABLE identity.outbox (
    tenant_id uuid NOT NULL REFERENCES identity.tenants (tenant_id),
    id uuid NOT NULL,
    event_type text NOT NULL,
    event_version integer NOT NULL,
    aggregate_type text NOT NULL,
    aggregate_id uuid NOT NULL,
    occurred_at timestamptz NOT NULL,
    payload jsonb NOT NULL,
    status identity.outbox_status NOT NULL DEFAULT 'pending',
    delivered_at timestamptz,
    PRIMARY KEY (tenant_id, id)
);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['tenants', 'users', 'api_keys', 'data_keys', 'patient_phi',
                             'patient_identifier_index', 'break_glass_grants', 'outbox']
    LOOP
        EXECUTE format('ALTER TABLE identity.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE identity.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format($p$CREATE POLICY tenant_isolation ON identity.%I
            USING (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid)
            WITH CHECK (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid)$p$, t);
    END LOOP;
END
$$;

-- Operator commands that span tenants (key rotation, audit verification) list the
-- tenants as the owner; the service role never sees another tenant's row.
CREATE POLICY operator_directory ON identity.tenants FOR SELECT TO tenet_owner USING (true);

GRANT SELECT, INSERT, UPDATE ON identity.tenants TO tenet_app;
GRANT SELECT, INSERT, UPDATE ON identity.users TO tenet_app;
GRANT SELECT, INSERT, UPDATE ON identity.api_keys TO tenet_app;
GRANT SELECT, INSERT ON identity.data_keys TO tenet_app;
GRANT SELECT, INSERT, UPDATE ON identity.patient_phi TO tenet_app;
GRANT SELECT, INSERT, DELETE ON identity.patient_identifier_index TO tenet_app;
GRANT SELECT, INSERT ON identity.break_glass_grants TO tenet_app;
GRANT SELECT, INSERT, UPDATE ON identity.outbox TO tenet_app;
