-- Documents: metadata of uploaded files whose content lives in object storage,
-- sealed (AES-256-GCM, chunk by chunk) with the tenant's data key before it leaves
-- the process. Nothing readable about a document's content is kept here: the file
-- name a user gave is PHI-prone and is sealed like the content; the object key is
-- made of the tenant id and the document id only.
CREATE SCHEMA documents;
GRANT USAGE ON SCHEMA documents TO tenet_app;

-- What a document is: permission scopes and retention rules are set per category.
CREATE TYPE documents.category AS ENUM (
    'clinical_note', 'intake_form', 'consent_form', 'lab_result', 'imaging',
    'correspondence', 'identification', 'other'
);
-- stored: content in object storage; deleted: content removed, metadata kept as the
-- record that the document existed and when it went.
CREATE TYPE documents.document_status AS ENUM ('stored', 'deleted');
-- Why a document was deleted: by a user, or by the lifecycle job when its retention
-- period ended.
CREATE TYPE documents.deletion_reason AS ENUM ('requested', 'retention_expired');
-- The roles of identity, mirrored: a context never uses another schema's types.
CREATE TYPE documents.role AS ENUM ('admin', 'clinician', 'care_coordinator', 'auditor', 'integration');
CREATE TYPE documents.permission AS ENUM ('none', 'read', 'write', 'delete');
CREATE TYPE documents.retention_anchor AS ENUM ('last_encounter', 'created');
CREATE TYPE documents.outbox_status AS ENUM ('pending', 'delivered', 'dead');

CREATE TABLE documents.documents (
    tenant_id uuid NOT NULL,
    id uuid NOT NULL,
    patient_id uuid NOT NULL,
    category documents.category NOT NULL,
    -- The name the uploader gave, sealed (bound to tenant and document).
    filename_sealed bytea NOT NULL,
    content_type text NOT NULL CHECK (content_type ~ '^[a-z]+/[a-z0-9.+-]+$'),
    size_bytes bigint NOT NULL CHECK (size_bytes >= 0),
    -- SHA-256 of the plaintext content.
    content_sha256 bytea NOT NULL CHECK (length(content_sha256) = 32),
    data_key_id uuid NOT NULL,
    object_key text NOT NULL,
    status documents.document_status NOT NULL DEFAULT 'stored',
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    deleted_by text,
    deletion_reason documents.deletion_reason,
    legal_hold boolean NOT NULL DEFAULT false,
    legal_hold_reason text CHECK (legal_hold_reason IS NULL OR length(legal_hold_reason) BETWEEN 1 AND 500),
    legal_hold_by text,
    legal_hold_at timestamptz,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, object_key),
    CHECK ((status = 'deleted') = (deleted_at IS NOT NULL)),
    CHECK ((deleted_at IS NULL) = (deletion_reason IS NULL)),
    CHECK (legal_hold = (legal_hold_reason IS NOT NULL)),
    -- A held document is never deleted, by anyone.
    CHECK (NOT (legal_hold AND status = 'deleted'))
);
CREATE INDEX documents_patient ON documents.documents (tenant_id, patient_id, created_at);
CREATE INDEX documents_stored ON documents.documents (tenant_id, category, created_at) WHERE status = 'stored';

-- A tenant's override of the default permission of a role on a category, for care-team
-- members (`on_care_team`) or for everyone else.
CREATE TABLE documents.scope_rules (
    tenant_id uuid NOT NULL,
    role documents.role NOT NULL,
    category documents.category NOT NULL,
    on_care_team boolean NOT NULL,
    permission documents.permission NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, role, category, on_care_team)
);

-- How long a category is kept: `keep_days` after the patient's last encounter (or the
-- document's creation when the patient has none), or after creation. A category
-- without a rule is kept for ever.
CREATE TABLE documents.retention_rules (
    tenant_id uuid NOT NULL,
    category documents.category NOT NULL,
    anchor documents.retention_anchor NOT NULL,
    keep_days integer NOT NULL CHECK (keep_days BETWEEN 1 AND 73000),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, category)
);

CREATE TABLE documents.outbox (
    tenant_id uuid NOT NULL,
    id uuid NOT NULL,
    event_type text NOT NULL,
    event_version integer NOT NULL,
    aggregate_type text NOT NULL,
    aggregate_id uuid NOT NULL,
    occurred_at timestamptz NOT NULL,
    payload jsonb NOT NULL,
    status documents.outbox_status NOT NULL DEFAULT 'pending',
    delivered_at timestamptz,
    PRIMARY KEY (tenant_id, id)
);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['documents', 'scope_rules', 'retention_rules', 'outbox']
    LOOP
        EXECUTE format('ALTER TABLE documents.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE documents.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format($p$CREATE POLICY tenant_isolation ON documents.%I
            USING (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid)
            WITH CHECK (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid)$p$, t);
    END LOOP;
END
$$;

-- No DELETE on documents: a deleted document keeps its metadata row (status
-- `deleted`), the record of what existed and when it went.
GRANT SELECT, INSERT, UPDATE ON documents.documents TO tenet_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON documents.scope_rules TO tenet_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON documents.retention_rules TO tenet_app;
GRANT SELECT, INSERT, UPDATE ON documents.outbox TO tenet_app;

CREATE POLICY relay_dispatch ON documents.outbox TO tenet_owner USING (true) WITH CHECK (true);
CREATE INDEX outbox_pending ON documents.outbox (occurred_at, id) WHERE status = 'pending';
