//! placeholder

use db::Migration;

/// The clinical context's migrations.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 2026112303,
    context: "clinical",
    name: "clinical",
    up: include_str!("../migrations/2026112303_clinical.up.sql"),
    down: include_str!("../migrations/2026112303_clinical.down.sql"),
}];
