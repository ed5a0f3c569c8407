DROP TABLE platform.jobs;
DROP TYPE platform.job_state;
