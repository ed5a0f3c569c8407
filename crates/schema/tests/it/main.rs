//! Integration tests of Tenet's whole schema, on a real PostgreSQL cluster.
//!
//! - [`migrations`]: every context's migrations run up, all the way down and up again,
//!   and the ledger refuses an edited migration.
//! - [`check`]: `tenet check` passes on the migrated schema and catches each rule
//!   when a test breaks it on purpose.
//!
//! Each test gets a database of its own. Roles are cluster-wide and tests run in
//! parallel, so these tests must never alter `tenet_app` or `tenet_owner` themselves:
//! a test that needs a misbehaving role creates a throwaway one.

mod check;
mod migrations;
