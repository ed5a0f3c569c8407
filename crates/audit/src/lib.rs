//! The audit context: who touched which patient's data, when and why — in a log
//! nobody can quietly edit.
//!
//! - [`append`] writes one event in the caller's transaction, so the event exists
//!   exactly when the access it records was committed (invariant I3).
//! - [`chain`] defines the canonical bytes and the SHA-256 chain.
//! - [`checkpoint`] signs each tenant's chain heads with an Ed25519 key kept outside
//!   the database.
//! - [`verify`] re-walks every chain and checkpoint and reports any edit, deletion,
//!   insertion, reordering or truncation.
//! - [`access`] is the access report a patient is entitled to.
//!
//! This crate must never update or delete an audit row, and never record PHI values
//! in an event: ids, actions and purposes only.

pub mod access;
pub mod append;
pub mod chain;
pub mod checkpoint;
pub mod verify;

pub use access::{AccessEntry, access_log};
pub use append::{AuditEntry, AuditError, append, init_tenant_chain};
pub use checkpoint::{CheckpointKey, write_checkpoint};
pub use verify::{Problem, ProblemKind, VerifyOptions, VerifyReport, verify_tenant};

/// How many independent chains ("lanes") each tenant's log has. Concurrent requests
/// of one tenant lock different lanes instead of queueing behind one row.
pub const LANES: i16 = 8;

static APPENDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many events this process has appended (including any whose transaction later
/// rolled back), for the metrics endpoint.
pub fn appends_total() -> u64 {
    APPENDS.load(std::sync::atomic::Ordering::Relaxed)
}

use db::Migration;

/// The audit context's migrations.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 2026112304,
    context: "audit",
    name: "audit",
    up: include_str!("../migrations/2026112304_audit.up.sql"),
    down: include_str!("../migrations/2026112304_audit.down.sql"),
}];
