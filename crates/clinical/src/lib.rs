//! The clinical context: patients as pseudonymous records, and who cares for them.
//!
//! A patient here is an id, a status and timestamps; everything that identifies the
//! person lives in the identity vault. Encounters, observations and units arrive with
//! later migrations.
//!
//! This crate must never hold PHI: no names, birth dates, contact details or
//! identifiers in its tables, events or errors.

pub mod care_team;
pub mod patient;

use db::Migration;

/// The clinical context's migrations.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 2026112303,
    context: "clinical",
    name: "clinical",
    up: include_str!("../migrations/2026112303_clinical.up.sql"),
    down: include_str!("../migrations/2026112303_clinical.down.sql"),
}];
