-- Reminders: one row per (instance, kind, channel) — the unique key that makes a
-- reminder go out at most once per slot and channel, however many sweepers run.
-- No PHI column: recipients are resolved from the identity vault when a reminder is
-- sent, never stored here.
CREATE TYPE assessments.reminder_kind AS ENUM ('opening', 'closing');
CREATE TYPE assessments.reminder_channel AS ENUM ('email', 'webhook');
-- pending: waiting for its due time (quiet hours); queued: its `assessment.reminder_due`
-- event is in the outbox; sending: claimed, in a committed transaction, for the SMTP
-- conversation — one still `sending` after it stopped has an unknown outcome and is
-- never retried by itself; sent: the SMTP server accepted the message (email), or the
-- event was handed to the tenant's webhook subscriptions (webhook); failed: refused
-- for good or out of attempts; unknown: the conversation broke after the message was
-- handed over; skipped: `skip_reason` says why (opted out, no address, instance closed).
CREATE TYPE assessments.reminder_state AS ENUM
    ('pending', 'queued', 'sending', 'sent', 'failed', 'unknown', 'skipped');
-- What a reminder may say about its recipient: nothing (`none`, the default), or
-- their first name (`first_name`).
CREATE TYPE assessments.reminder_personalisation AS ENUM ('none', 'first_name');

-- A tenant's reminder settings; a tenant without a row has the defaults.
CREATE TABLE assessments.reminder_settings (
    tenant_id uuid NOT NULL,
    channels assessments.reminder_channel[] NOT NULL DEFAULT '{email,webhook}',
    quiet_start time NOT NULL DEFAULT '21:00',
    quiet_end time NOT NULL DEFAULT '08:00',
    closing_lead_minutes integer NOT NULL DEFAULT 1440 CHECK (closing_lead_minutes BETWEEN 0 AND 40320),
    personalisation assessments.reminder_personalisation NOT NULL DEFAULT 'none',
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id)
);

-- A patient's own choices: channels opted out of (for every reminder about this
-- patient, whoever the respondent), and quiet hours overriding the tenant's.
CREATE TABLE assessments.reminder_preferences (
    tenant_id uuid NOT NULL,
    patient_id uuid NOT NULL,
    opted_out assessments.reminder_channel[] NOT NULL DEFAULT '{}',
    quiet_start time,
    quiet_end time,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, patient_id),
    CHECK ((quiet_start IS NULL) = (quiet_end IS NULL))
);

CREATE TABLE assessments.reminders (
    tenant_id uuid NOT NULL,
    id uuid NOT NULL,
    instance_id uuid NOT NULL,
    patient_id uuid NOT NULL,
    kind assessments.reminder_kind NOT NULL,
    channel assessments.reminder_channel NOT NULL,
    state assessments.reminder_state NOT NULL DEFAULT 'pending',
    -- When it may go out: its trigger, moved to the end of quiet hours.
    due_at timestamptz NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    -- Codes and SMTP reply codes only, never addresses or server text.
    skip_reason text,
    last_error text,
    queued_at timestamptz,
    sending_at timestamptz,
    finished_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT reminders_once UNIQUE (tenant_id, instance_id, kind, channel),
    FOREIGN KEY (tenant_id, instance_id) REFERENCES assessments.instances (tenant_id, id),
    CHECK ((state = 'skipped') = (skip_reason IS NOT NULL))
);
CREATE INDEX reminders_due ON assessments.reminders (tenant_id, due_at) WHERE state = 'pending';
CREATE INDEX reminders_attention ON assessments.reminders (sending_at)
    WHERE state IN ('sending', 'unknown', 'failed');

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['reminder_settings', 'reminder_preferences', 'reminders']
    LOOP
        EXECUTE format('ALTER TABLE assessments.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE assessments.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format($p$CREATE POLICY tenant_isolation ON assessments.%I
            USING (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid)
            WITH CHECK (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid)$p$, t);
    END LOOP;
END
$$;

GRANT SELECT, INSERT, UPDATE ON assessments.reminder_settings TO tenet_app;
GRANT SELECT, INSERT, UPDATE ON assessments.reminder_preferences TO tenet_app;
GRANT SELECT, INSERT, UPDATE ON assessments.reminders TO tenet_app;

-- `tenet check` (the owner) lists reminders that need a person across tenants:
-- read-only, like `ingest_operations`.
CREATE POLICY reminder_operations ON assessments.reminders FOR SELECT TO tenet_owner USING (true);
