DROP TABLE platform.schedule_slots;
DROP TABLE platform.schedules;
DROP TYPE platform.schedule_catch_up;
