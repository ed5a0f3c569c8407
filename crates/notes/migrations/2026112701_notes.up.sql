-- Progress notes: drafts, signatures, co-signatures and amendments. Note bodies are
-- PHI (I2): a note's sections (and an amendment's reason) are one sealed payload,
-- AES-256-GCM under the tenant's data key, bound to tenant, note and version. Patients,
-- authors, signers and supervisors are ids here; nothing readable leaves this schema.
CREATE SCHEMA notes;
GRANT USAGE ON SCHEMA notes TO tenet_app;

-- draft: edited by its author; signed: frozen for good (the trigger below).
CREATE TYPE notes.note_status AS ENUM ('draft', 'signed');
-- original: a note of an encounter or appointment; amendment: a correction of a
-- signed note, pointing at it.
CREATE TYPE notes.note_kind AS ENUM ('original', 'amendment');
CREATE TYPE notes.outbox_status AS ENUM ('pending', 'delivered', 'dead');

-- A tenant's note rules; a tenant without a row has the defaults: no co-signature,
-- late after 72 hours.
CREATE TABLE notes.settings (
    tenant_id uuid NOT NULL,
    cosign_required boolean NOT NULL DEFAULT false,
    late_after_minutes integer NOT NULL DEFAULT 4320 CHECK (late_after_minutes BETWEEN 1 AND 525600),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id)
);

-- The users (identity user ids) who may co-sign another author's notes.
CREATE TABLE notes.supervisors (
    tenant_id uuid NOT NULL,
    user_id uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, user_id)
);

-- One note or amendment. `version` counts content edits (optimistic concurrency) and
-- is part of the sealed body's associated data; signing and co-signing keep it.
-- `service_at` is when the documented care happened (the encounter or appointment,
-- or the note's creation): the late-signing rule counts from it. `content_sha256`
-- is the SHA-256 of the canonical plaintext payload, fixed at signing.
-- `cosign_required` is the tenant's rule when the note was signed.
CREATE TABLE notes.notes (
    tenant_id uuid NOT NULL,
    id uuid NOT NULL,
    patient_id uuid NOT NULL,
    author_id uuid NOT NULL,
    encounter_id uuid,
    appointment_id uuid,
    template_code text NOT NULL CHECK (template_code ~ '^[a-z][a-z0-9_]{0,39}$'),
    template_version integer NOT NULL CHECK (template_version >= 1),
    kind notes.note_kind NOT NULL DEFAULT 'original',
    amends_id uuid,
    status notes.note_status NOT NULL DEFAULT 'draft',
    version integer NOT NULL DEFAULT 1 CHECK (version >= 1),
    data_key_id uuid NOT NULL,
    body_sealed bytea NOT NULL,
    service_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    signed_by uuid,
    signed_at timestamptz,
    content_sha256 bytea,
    cosign_required boolean NOT NULL DEFAULT false,
    cosigned_by uuid,
    cosigned_at timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, amends_id) REFERENCES notes.notes (tenant_id, id),
    CHECK ((kind = 'amendment') = (amends_id IS NOT NULL)),
    CHECK ((status = 'signed') = (signed_by IS NOT NULL AND signed_at IS NOT NULL AND content_sha256 IS NOT NULL)),
    CHECK (status = 'signed' OR signed_by IS NULL AND signed_at IS NULL AND content_sha256 IS NULL),
    CHECK (content_sha256 IS NULL OR length(content_sha256) = 32),
    CHECK ((cosigned_by IS NULL) = (cosigned_at IS NULL)),
    CHECK (cosigned_at IS NULL OR status = 'signed')
);
CREATE INDEX notes_patient ON notes.notes (tenant_id, patient_id, service_at);
CREATE INDEX notes_amendments ON notes.notes (tenant_id, amends_id) WHERE amends_id IS NOT NULL;
CREATE INDEX notes_unsigned ON notes.notes (tenant_id, service_at) WHERE status = 'draft';

-- I7: a signed note never changes. Its content, hash, signature and identity columns
-- are refused to every role that can write the table — the service role and the owner
-- alike — and so is deleting it; the one change allowed is the first co-signature.
-- The owner role (and a superuser) can disable this trigger: that is an operator's
-- act outside the application, visible in the catalog (`tenet check` reads triggers),
-- and the content hash recorded at signing shows any body changed meanwhile.
CREATE FUNCTION notes.refuse_signed_change() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        RAISE EXCEPTION 'signed notes cannot be truncated'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    -- A note is born a draft: a row written already signed would carry a signature
    -- nobody gave.
    IF TG_OP = 'INSERT' THEN
        IF NEW.status <> 'draft' OR NEW.cosigned_by IS NOT NULL THEN
            RAISE EXCEPTION 'a note is written as a draft and signed afterwards'
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
        RETURN NEW;
    END IF;
    IF OLD.status <> 'signed' THEN
        IF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
        -- Even a draft keeps whose, by whom and what it amends.
        IF (NEW.tenant_id, NEW.id, NEW.patient_id, NEW.author_id, NEW.kind, NEW.amends_id, NEW.created_at)
           IS DISTINCT FROM
           (OLD.tenant_id, OLD.id, OLD.patient_id, OLD.author_id, OLD.kind, OLD.amends_id, OLD.created_at)
        THEN
            RAISE EXCEPTION 'note %: its patient, author and what it amends never change', OLD.id
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
        RETURN NEW;
    END IF;
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'note % is signed: it cannot be deleted, only amended', OLD.id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF (NEW.tenant_id, NEW.id, NEW.patient_id, NEW.author_id, NEW.encounter_id, NEW.appointment_id,
        NEW.template_code, NEW.template_version, NEW.kind, NEW.amends_id, NEW.status, NEW.version,
        NEW.data_key_id, NEW.body_sealed, NEW.service_at, NEW.created_at, NEW.signed_by,
        NEW.signed_at, NEW.content_sha256, NEW.cosign_required)
       IS DISTINCT FROM
       (OLD.tenant_id, OLD.id, OLD.patient_id, OLD.author_id, OLD.encounter_id, OLD.appointment_id,
        OLD.template_code, OLD.template_version, OLD.kind, OLD.amends_id, OLD.status, OLD.version,
        OLD.data_key_id, OLD.body_sealed, OLD.service_at, OLD.created_at, OLD.signed_by,
        OLD.signed_at, OLD.content_sha256, OLD.cosign_required)
       OR (OLD.cosigned_at IS NOT NULL
           AND (NEW.cosigned_by, NEW.cosigned_at) IS DISTINCT FROM (OLD.cosigned_by, OLD.cosigned_at))
    THEN
        RAISE EXCEPTION 'note % is signed: it cannot be changed, only amended', OLD.id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER notes_signed_immutable BEFORE INSERT OR UPDATE OR DELETE ON notes.notes
    FOR EACH ROW EXECUTE FUNCTION notes.refuse_signed_change();
CREATE TRIGGER notes_no_truncate BEFORE TRUNCATE ON notes.notes
    FOR EACH STATEMENT EXECUTE FUNCTION notes.refuse_signed_change();
REVOKE ALL ON FUNCTION notes.refuse_signed_change() FROM PUBLIC;

CREATE TABLE notes.outbox (
    tenant_id uuid NOT NULL,
    id uuid NOT NULL,
    event_type text NOT NULL,
    event_version integer NOT NULL,
    aggregate_type text NOT NULL,
    aggregate_id uuid NOT NULL,
    occurred_at timestamptz NOT NULL,
    payload jsonb NOT NULL,
    status notes.outbox_status NOT NULL DEFAULT 'pending',
    delivered_at timestamptz,
    PRIMARY KEY (tenant_id, id)
);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['settings', 'supervisors', 'notes', 'outbox']
    LOOP
        EXECUTE format('ALTER TABLE notes.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE notes.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format($p$CREATE POLICY tenant_isolation ON notes.%I
            USING (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid)
            WITH CHECK (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid)$p$, t);
    END LOOP;
END
$$;

GRANT SELECT, INSERT, UPDATE ON notes.settings TO tenet_app;
GRANT SELECT, INSERT, DELETE ON notes.supervisors TO tenet_app;
-- UPDATE for drafts and the co-signature; DELETE too, so that the trigger, not a
-- missing grant, is what keeps a signed note (a draft may be discarded).
GRANT SELECT, INSERT, UPDATE, DELETE ON notes.notes TO tenet_app;
GRANT SELECT, INSERT, UPDATE ON notes.outbox TO tenet_app;

-- The outbox relay (owner role) reads and marks every tenant's rows, like the other
-- contexts' outboxes (platform's relay migration).
CREATE POLICY relay_dispatch ON notes.outbox TO tenet_owner USING (true) WITH CHECK (true);
CREATE INDEX outbox_pending ON notes.outbox (occurred_at, id) WHERE status = 'pending';
