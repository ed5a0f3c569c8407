-- Signed notes rendered to PDF. A rendition records which PDF (its SHA-256) was
-- produced from which signed note (its version and content hash, and how many signed
-- amendments it showed); the PDF's bytes are stored by the documents context, whose
-- id `document_id` names once stored. No PHI here: hashes and ids only.

-- The patient identifiers, besides the pseudonym, a tenant lets a note's PDF show.
CREATE TYPE notes.pdf_identifier AS ENUM ('record_number', 'name', 'date_of_birth');
ALTER TABLE notes.settings
    ADD COLUMN pdf_identifiers notes.pdf_identifier[] NOT NULL DEFAULT '{}';

CREATE TABLE notes.renditions (
    tenant_id uuid NOT NULL,
    id uuid NOT NULL,
    note_id uuid NOT NULL,
    note_version integer NOT NULL CHECK (note_version >= 1),
    content_sha256 bytea NOT NULL CHECK (length(content_sha256) = 32),
    n_amendments integer NOT NULL CHECK (n_amendments >= 0),
    sha256 bytea NOT NULL CHECK (length(sha256) = 32),
    document_id uuid,
    rendered_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, note_id) REFERENCES notes.notes (tenant_id, id)
);
CREATE INDEX renditions_note ON notes.renditions (tenant_id, note_id, rendered_at);

ALTER TABLE notes.renditions ENABLE ROW LEVEL SECURITY;
ALTER TABLE notes.renditions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON notes.renditions
    USING (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid);

-- A rendition is a fact: only its document id is filled in later.
GRANT SELECT, INSERT ON notes.renditions TO tenet_app;
GRANT UPDATE (document_id) ON notes.renditions TO tenet_app;
