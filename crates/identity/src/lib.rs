//! The identity context: who may act, for which tenant, and the vault that holds
//! every patient's identity.
//!
//! - [`tenant`], [`user`], [`api_key`]: tenants and their principals.
//! - [`keyring`]: the master key (outside the database) and each tenant's data keys
//!   (inside it, wrapped by the master key).
//! - [`vault`]: patient PHI, encrypted field by field, read and written only through
//!   functions that append the audit event in the same transaction.
//! - [`related_person`]: a patient's parents and guardians — name, email and phone —
//!   sealed and audited like the vault.
//! - [`break_glass`]: time-boxed emergency access, flagged in the audit log.
//!
//! This crate must never return or log a PHI value outside a [`kernel::Phi`] or a
//! [`vault::Demographics`] or [`related_person::Contact`] (whose `Debug` redacts), and
//! never write PHI outside `identity.patient_phi` and `identity.related_person_phi`.

pub mod api_key;
pub mod break_glass;
pub mod keyring;
pub mod related_person;
pub mod tenant;
pub mod user;
pub mod vault;

use db::Migration;

/// The identity context's migrations.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 2026112302,
        context: "identity",
        name: "identity",
        up: include_str!("../migrations/2026112302_identity.up.sql"),
        down: include_str!("../migrations/2026112302_identity.down.sql"),
    },
    Migration {
        version: 2026112604,
        context: "identity",
        name: "related_persons",
        up: include_str!("../migrations/2026112604_related_persons.up.sql"),
        down: include_str!("../migrations/2026112604_related_persons.down.sql"),
    },
];

/// Maps a unique or foreign-key violation to the constraint it names.
pub(crate) fn violated_constraint(err: &sqlx::Error) -> Option<&str> {
    match err {
        sqlx::Error::Database(db_err)
            if matches!(
                db_err.kind(),
                sqlx::error::ErrorKind::UniqueViolation
                    | sqlx::error::ErrorKind::ForeignKeyViolation
            ) =>
        {
            db_err.constraint()
        }
        _ => None,
    }
}
