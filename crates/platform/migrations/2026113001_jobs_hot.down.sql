ALTER TABLE platform.jobs RESET (fillfactor);

DROP INDEX platform.jobs_dead_letters;
DROP INDEX platform.jobs_unique_pending;
DROP INDEX platform.jobs_runnable;
ALTER TABLE platform.jobs
    DROP COLUMN dead_letter_at, DROP COLUMN pending_unique_key, DROP COLUMN runnable;
CREATE INDEX jobs_runnable ON platform.jobs (tenant_id, priority, run_at)
    WHERE state IN ('scheduled', 'retrying');
CREATE UNIQUE INDEX jobs_unique_pending ON platform.jobs (tenant_id, unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('scheduled', 'retrying', 'running');
CREATE INDEX jobs_dead_letters ON platform.jobs (tenant_id, finished_at)
    WHERE state = 'dead' AND discarded_at IS NULL;

ALTER TABLE platform.jobs DROP CONSTRAINT jobs_running_leased;
ALTER TABLE platform.jobs ADD COLUMN lease_expires_at timestamptz;
UPDATE platform.jobs j SET lease_expires_at = l.expires_at
FROM platform.job_leases l WHERE j.lease_id = l.id AND j.state = 'running';
-- A running job whose lease row is gone (its worker died and nobody rescued it yet)
-- gets an expired lease, so the rescue takes it back.
UPDATE platform.jobs SET lease_expires_at = now()
WHERE state = 'running' AND lease_expires_at IS NULL;
ALTER TABLE platform.jobs DROP COLUMN lease_id;
ALTER TABLE platform.jobs ADD CONSTRAINT jobs_check
    CHECK ((state = 'running') = (lease_expires_at IS NOT NULL));
CREATE INDEX jobs_leased ON platform.jobs (lease_expires_at) WHERE state = 'running';

DROP TABLE platform.job_leases;
