DROP TABLE platform.job_probes;
DROP INDEX platform.jobs_dead_letters;
ALTER TABLE platform.jobs DROP CONSTRAINT jobs_discarded_only_dead;
ALTER TABLE platform.jobs DROP COLUMN discarded_at;
