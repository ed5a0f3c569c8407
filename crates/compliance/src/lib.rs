//! The compliance context: what a patient has consented to, and every release of
//! their information to a named recipient (the accounting of disclosures).
//!
//! - [`mod@recipient`]: a recipient's name (PHI): sealed at rest, matched by a keyed
//!   fingerprint; `Debug` prints no name.
//! - [`mod@consent`]: consent records — granted, then possibly revoked, never back —
//!   and [`consent::require`], the one check other features call before they act.
//! - [`mod@release`]: recording a release (refused, and nothing recorded, without a
//!   valid release-of-information consent for that recipient) and the disclosure
//!   reports.
//!
//! Every read or write of a consent or release is audited in its transaction. This
//! crate never knows HTTP, never logs a recipient or description, and never puts one
//! in an event, an error or a job argument. Patients are validated through the
//! clinical context's Rust API; documents are held as ids only.

pub mod consent;
pub mod recipient;
pub mod release;

pub use consent::{
    Consent, ConsentError, ConsentId, GrantError, NewConsent, ReadError, RevocationReason,
    RevokeError, Scope, Status,
};
pub use recipient::{Recipient, RecipientError};
pub use release::{NewRelease, Purpose, Release, ReleaseError, ReleaseId};

use db::Migration;

/// The compliance context's migrations: schema `compliance`.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 2026112902,
    context: "compliance",
    name: "compliance",
    up: include_str!("../migrations/2026112902_compliance.up.sql"),
    down: include_str!("../migrations/2026112902_compliance.down.sql"),
}];

/// What no caller can act on: the database, the audit log or the keyring failed, or a
/// sealed value no longer opens. Carries no PHI.
#[derive(Debug, thiserror::Error)]
pub enum Unexpected {
    #[error("a sealed recipient does not decrypt: it was altered or moved")]
    Undecryptable,
    #[error(transparent)]
    Keyring(#[from] identity::keyring::KeyringError),
    #[error("writing the audit event")]
    Audit(#[from] audit::AuditError),
    #[error("reading or writing compliance records")]
    Database(#[from] sqlx::Error),
}

/// `From` the unexpected errors' sources for an operation's error enum, so `?` works
/// on a query, an audit append or a key lookup alike.
macro_rules! unexpected_from {
    ($($error:ty),+ $(,)?) => {$(
        impl From<sqlx::Error> for $error {
            fn from(err: sqlx::Error) -> Self {
                Self::Unexpected(err.into())
            }
        }
        impl From<audit::AuditError> for $error {
            fn from(err: audit::AuditError) -> Self {
                Self::Unexpected(err.into())
            }
        }
        impl From<identity::keyring::KeyringError> for $error {
            fn from(err: identity::keyring::KeyringError) -> Self {
                Self::Unexpected(err.into())
            }
        }
    )+};
}
pub(crate) use unexpected_from;

/// An audit entry about the patient with the purpose the edge recorded for the
/// transaction (a break-glass grant's reason, flagged), else `operations`.
pub(crate) fn audit_entry(
    tx: &db::TenantTx,
    action: &'static str,
    patient_id: kernel::PatientId,
) -> audit::AuditEntry {
    let purpose_of_use = tx.purpose_of_use();
    audit::AuditEntry::patient(action, patient_id)
        .purpose(
            purpose_of_use
                .purpose
                .clone()
                .unwrap_or_else(|| "operations".to_owned()),
        )
        .break_glass(purpose_of_use.break_glass)
}
