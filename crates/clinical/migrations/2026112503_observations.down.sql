DROP TABLE clinical.critical_ranges;
DROP TABLE clinical.observations;
DROP TYPE clinical.observation_value_kind;
DROP TYPE clinical.observation_status;
DROP TABLE clinical.encounters;
DROP TYPE clinical.encounter_status;
ALTER TABLE clinical.patients DROP CONSTRAINT patients_merged_has_survivor;
ALTER TABLE clinical.patients DROP CONSTRAINT patients_merged_into_fkey;
ALTER TABLE clinical.patients DROP COLUMN merged_into;
