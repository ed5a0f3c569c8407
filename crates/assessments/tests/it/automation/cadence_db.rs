//! cadence_db
