//! The clinical context: patients as pseudonymous records, and who cares for them.
//!
//! A patient here is an id, a status and timestamps; everything that identifies the
//! person lives in the identity vault. Encounters (admission to discharge) and
//! observations (results, with whether they are critical) hang off that id; a merged
//! patient points at the record that survived.
//!
//! This crate must never hold PHI: no names, birth dates, contact details or
//! identifiers in its tables, events or errors.

pub mod care_team;
pub mod critical_range;
pub mod encounter;
pub mod observation;
pub mod patient;

use db::Migration;

/// The clinical context's migrations.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 2026112303,
        context: "clinical",
        name: "clinical",
        up: include_str!("../migrations/2026112303_clinical.up.sql"),
        down: include_str!("../migrations/2026112303_clinical.down.sql"),
    },
    Migration {
        version: 2026112503,
        context: "clinical",
        name: "observations",
        up: include_str!("../migrations/2026112503_observations.up.sql"),
        down: include_str!("../migrations/2026112503_observations.down.sql"),
    },
];
