//! Tenet's whole database schema, seen from above.
//!
//! - [`migrator`] puts every context's migrations into one global order, so the
//!   binary, the tests and `tenet check` all build exactly the same schema.
//! - [`check`] is `tenet check`: it reads the live catalog and lists every place where
//!   the schema breaks tenant isolation (invariant I1) or its own rules (invariant I8).
//!
//! This crate owns no table and no migration of its own, and must never change the
//! schema it inspects: contexts own their tables, this crate only orders and audits them.

pub mod check;

/// Every context's migrations, ordered by version.
///
/// A new context adds its `MIGRATIONS` here; the order of the list does not matter,
/// because [`db::Migrator::new`] sorts by version (and panics on a duplicate version,
/// a wiring mistake caught at start-up).
pub fn migrator() -> db::Migrator {
    let contexts: [&[db::Migration]; 9] = [
        platform::MIGRATIONS,
        identity::MIGRATIONS,
        clinical::MIGRATIONS,
        audit::MIGRATIONS,
        ingest::MIGRATIONS,
        assessments::MIGRATIONS,
        notes::MIGRATIONS,
        compliance::MIGRATIONS,
        documents::MIGRATIONS,
    ];
    db::Migrator::new(contexts.concat())
}
