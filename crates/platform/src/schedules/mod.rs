//! Schedules.
pub mod cron;
