DROP TABLE platform.saga_steps;
DROP TABLE platform.sagas;
DROP TYPE platform.saga_step_outcome;
DROP TYPE platform.saga_action;
DROP TYPE platform.saga_state;
