//! placeholder

use db::Migration;

/// The identity context's migrations.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 2026112302,
    context: "identity",
    name: "identity",
    up: include_str!("../migrations/2026112302_identity.up.sql"),
    down: include_str!("../migrations/2026112302_identity.down.sql"),
}];
