DROP TABLE assessments.reminders;
DROP TABLE assessments.reminder_preferences;
DROP TABLE assessments.reminder_settings;
DROP TYPE assessments.reminder_personalisation;
DROP TYPE assessments.reminder_state;
DROP TYPE assessments.reminder_channel;
DROP TYPE assessments.reminder_kind;
