//! Related persons: a patient's parents and guardians, in the vault.
//!
//! A guardian answers questionnaires for a child and receives their reminders, so
//! Tenet needs their name and how to reach them — PHI like a patient's own identity.
//! It lives in `identity.related_person_phi`, each field sealed with AES-256-GCM under
//! the tenant's data key with `tenant || person || field` as associated data (a
//! domain tag of its own, so a patient's ciphertext never opens as a person's). Other
//! contexts hold only the [`PersonId`] (`assessments.guardians.person_id`).
//!
//! Every function that reads or writes a contact appends its audit event
//! (`related_person.create|read|update`, the person id in the details) in the same
//! transaction (I3). This module must never return a value that prints PHI through
//! `Debug`.

use std::fmt;

use audit::AuditEntry;
use db::TenantTx;
use kernel::{PersonId, TenantId};
use uuid::Uuid;

use crate::keyring::{DataKey, Keyring, KeyringError};
use crate::vault::Access;

/// A related person's name and contact details.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Contact {
    pub family_name: String,
    pub given_names: Vec<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
}

impl fmt::Debug for Contact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Contact { [redacted] }")
    }
}

/// A decrypted contact and its version (for optimistic concurrency).
#[derive(Debug, Clone)]
pub struct Record {
    pub person_id: PersonId,
    pub contact: Contact,
    pub version: i32,
}

#[derive(Debug, thiserror::Error)]
pub enum RelatedPersonError {
    #[error("a related person with this id already exists")]
    AlreadyExists,
    #[error("no such related person")]
    NotFound,
    #[error("the record was changed by someone else; reload and retry")]
    VersionConflict,
    #[error("a field of the related person's record does not decrypt: it was altered or moved")]
    Undecryptable,
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    #[error("writing the audit event")]
    Audit(#[from] audit::AuditError),
    #[error("vault storage")]
    Database(#[from] sqlx::Error),
}

/// The sealed columns, in storage order. Part of the associated data.
const FIELDS: [&str; 4] = ["family_name", "given_names", "email", "phone"];

fn aad(tenant_id: TenantId, person_id: PersonId, field: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(52 + field.len());
    aad.extend_from_slice(b"tenet-person-v1");
    aad.extend_from_slice(tenant_id.as_uuid().as_bytes());
    aad.extend_from_slice(person_id.as_uuid().as_bytes());
    aad.extend_from_slice(field.as_bytes());
    aad
}

fn seal(
    data_key: &DataKey,
    tenant_id: TenantId,
    person_id: PersonId,
    contact: &Contact,
) -> [Option<Vec<u8>>; 4] {
    let plain: [Option<Vec<u8>>; 4] = [
        Some(contact.family_name.as_bytes().to_vec()),
        Some(serde_json::to_vec(&contact.given_names).expect("BUG: names always serialise")),
        contact
            .email
            .as_ref()
            .map(|email| email.as_bytes().to_vec()),
        contact
            .phone
            .as_ref()
            .map(|phone| phone.as_bytes().to_vec()),
    ];
    let mut sealed: [Option<Vec<u8>>; 4] = Default::default();
    for (i, value) in plain.into_iter().enumerate() {
        sealed[i] = value.map(|bytes| {
            data_key
                .key
                .seal(&bytes, &aad(tenant_id, person_id, FIELDS[i]))
        });
    }
    sealed
}

fn open(
    data_key: &DataKey,
    tenant_id: TenantId,
    person_id: PersonId,
    columns: [Option<Vec<u8>>; 4],
) -> Result<Contact, RelatedPersonError> {
    let mut plain: [Option<String>; 4] = Default::default();
    for (i, sealed) in columns.into_iter().enumerate() {
        plain[i] = match sealed {
            None => None,
            Some(sealed) => {
                let bytes = data_key
                    .key
                    .open(&sealed, &aad(tenant_id, person_id, FIELDS[i]))
                    .ok_or(RelatedPersonError::Undecryptable)?;
                Some(String::from_utf8(bytes).map_err(|_| RelatedPersonError::Undecryptable)?)
            }
        };
    }
    let [family_name, given_names, email, phone] = plain;
    Ok(Contact {
        family_name: family_name.ok_or(RelatedPersonError::Undecryptable)?,
        given_names: serde_json::from_str(&given_names.ok_or(RelatedPersonError::Undecryptable)?)
            .map_err(|_| RelatedPersonError::Undecryptable)?,
        email,
        phone,
    })
}

/// Stores a new related person's contact and records `related_person.create`.
pub async fn create(
    tx: &mut TenantTx,
    keyring: &Keyring,
    person_id: PersonId,
    contact: &Contact,
    access: &Access,
) -> Result<(), RelatedPersonError> {
    let tenant_id = tx.tenant_id();
    let data_key = keyring.active_key(tx).await?;
    let [family_name, given_names, email, phone] = seal(&data_key, tenant_id, person_id, contact);
    let n = sqlx::query(
        "INSERT INTO identity.related_person_phi
             (tenant_id, person_id, data_key_id, family_name, given_names, email, phone)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (tenant_id, person_id) DO NOTHING",
    )
    .bind(tenant_id.as_uuid())
    .bind(person_id.as_uuid())
    .bind(data_key.id)
    .bind(family_name)
    .bind(given_names)
    .bind(email)
    .bind(phone)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if n == 0 {
        return Err(RelatedPersonError::AlreadyExists);
    }
    audit_access(tx, "related_person.create", person_id, access).await
}

/// Reads a related person's contact and records `related_person.read`.
pub async fn read(
    tx: &mut TenantTx,
    keyring: &Keyring,
    person_id: PersonId,
    access: &Access,
) -> Result<Record, RelatedPersonError> {
    type Row = (
        Uuid,
        i32,
        Vec<u8>,
        Vec<u8>,
        Option<Vec<u8>>,
        Option<Vec<u8>>,
    );
    let row: Option<Row> = sqlx::query_as(
        "SELECT data_key_id, version, family_name, given_names, email, phone
         FROM identity.related_person_phi WHERE tenant_id = $1 AND person_id = $2",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(person_id.as_uuid())
    .fetch_optional(&mut **tx)
    .await?;
    let (data_key_id, version, family_name, given_names, email, phone) =
        row.ok_or(RelatedPersonError::NotFound)?;
    let data_key = keyring.key(tx, data_key_id).await?;
    let contact = open(
        &data_key,
        tx.tenant_id(),
        person_id,
        [Some(family_name), Some(given_names), email, phone],
    )?;
    audit_access(tx, "related_person.read", person_id, access).await?;
    Ok(Record {
        person_id,
        contact,
        version,
    })
}

/// Replaces a related person's contact if its version is still `expected_version`
/// (any version when `None`); records `related_person.update`. Returns the new version.
pub async fn update(
    tx: &mut TenantTx,
    keyring: &Keyring,
    person_id: PersonId,
    contact: &Contact,
    expected_version: Option<i32>,
    access: &Access,
) -> Result<i32, RelatedPersonError> {
    let tenant_id = tx.tenant_id();
    let current: Option<i32> = sqlx::query_scalar(
        "SELECT version FROM identity.related_person_phi
         WHERE tenant_id = $1 AND person_id = $2 FOR UPDATE",
    )
    .bind(tenant_id.as_uuid())
    .bind(person_id.as_uuid())
    .fetch_optional(&mut **tx)
    .await?;
    let current = current.ok_or(RelatedPersonError::NotFound)?;
    if expected_version.is_some_and(|expected| expected != current) {
        return Err(RelatedPersonError::VersionConflict);
    }
    let data_key = keyring.active_key(tx).await?;
    let [family_name, given_names, email, phone] = seal(&data_key, tenant_id, person_id, contact);
    sqlx::query(
        "UPDATE identity.related_person_phi
         SET data_key_id = $3, family_name = $4, given_names = $5, email = $6, phone = $7,
             version = version + 1, updated_at = now()
         WHERE tenant_id = $1 AND person_id = $2",
    )
    .bind(tenant_id.as_uuid())
    .bind(person_id.as_uuid())
    .bind(data_key.id)
    .bind(family_name)
    .bind(given_names)
    .bind(email)
    .bind(phone)
    .execute(&mut **tx)
    .await?;
    audit_access(tx, "related_person.update", person_id, access).await?;
    Ok(current + 1)
}

/// Whether the related person has a record in the transaction's tenant (not a
/// disclosure: no field is read).
pub async fn exists(tx: &mut TenantTx, person_id: PersonId) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM identity.related_person_phi WHERE tenant_id = $1 AND person_id = $2)",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(person_id.as_uuid())
    .fetch_one(&mut **tx)
    .await
}

async fn audit_access(
    tx: &mut TenantTx,
    action: &'static str,
    person_id: PersonId,
    access: &Access,
) -> Result<(), RelatedPersonError> {
    let entry = AuditEntry {
        action,
        patient_id: None,
        purpose: access.purpose.clone(),
        break_glass: access.break_glass,
        details: serde_json::json!({ "person_id": person_id.as_uuid() }),
    };
    audit::append(tx, entry).await?;
    Ok(())
}
