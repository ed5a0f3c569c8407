-- Operating durable jobs: dead letters that operators have dealt with, and the probe
-- jobs that check a fleet of workers end to end (`tenet jobs probe`).

-- A dead job stays `dead` (its history is kept); discarding it only takes it off the
-- dead-letter view.
ALTER TABLE platform.jobs ADD COLUMN discarded_at timestamptz;
ALTER TABLE platform.jobs ADD CONSTRAINT jobs_discarded_only_dead
    CHECK (discarded_at IS NULL OR state = 'dead');

-- Dead letters are found without reading the finished jobs around them.
CREATE INDEX jobs_dead_letters ON platform.jobs (tenant_id, finished_at)
    WHERE state = 'dead' AND discarded_at IS NULL;

-- One row per run of a probe job that committed: written by the job's own transaction,
-- so a job that succeeded has exactly one row, whatever crashed around it. No unique
-- key on purpose: a second row would be the proof of a doubled effect.
CREATE TABLE platform.job_probes (
    tenant_id uuid NOT NULL,
    job_id uuid NOT NULL,
    attempt integer NOT NULL,
    worker_id text NOT NULL,
    ran_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX job_probes_job ON platform.job_probes (tenant_id, job_id);
ALTER TABLE platform.job_probes ENABLE ROW LEVEL SECURITY;
ALTER TABLE platform.job_probes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON platform.job_probes
    USING (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT ON platform.job_probes TO tenet_app;
