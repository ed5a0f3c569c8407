//! The PHI vault: patient identity, encrypted field by field.
//!
//! Every field of `identity.patient_phi` is sealed with AES-256-GCM under the
//! tenant's data key, with `tenant || patient || field` as associated data, so a
//! ciphertext copied to another row, tenant or column does not open. Identifiers and
//! name + birth date are found through blind indexes (HMAC-SHA256 under a key derived
//! from the data key): equality search without storing plaintext.
//!
//! Every function here that reads or writes PHI appends its audit event in the same
//! transaction (invariant I3): there is no unaudited path to a patient's identity.
//! This module must never return a value that prints PHI through `Debug`.

use std::fmt;

use audit::AuditEntry;
use db::TenantTx;
use hmac::{Hmac, Mac};
use kernel::{PatientId, TenantId};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use time::Date;
use uuid::Uuid;

use crate::keyring::{DataKey, Keyring, KeyringError};

/// Administrative sex, as FHIR codes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sex {
    Female,
    Male,
    Other,
    Unknown,
}

/// A postal address.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Address {
    pub lines: Vec<String>,
    pub city: Option<String>,
    pub region: Option<String>,
    pub postal_code: Option<String>,
    pub country: Option<String>,
}

/// An identifier issued by an assigning authority (an MRN, a national id).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identifier {
    /// The assigning authority (HL7 CX-4), e.g. `GENERAL-HOSPITAL`.
    pub authority: String,
    /// The identifier type (HL7 table 0203), e.g. `MR`.
    pub kind: String,
    pub value: String,
}

/// A patient's identity: everything that is PHI about who they are.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Demographics {
    pub family_name: String,
    pub given_names: Vec<String>,
    pub birth_date: Option<Date>,
    pub sex: Option<Sex>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub address: Option<Address>,
    pub identifiers: Vec<Identifier>,
}

impl fmt::Debug for Demographics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Demographics { [redacted] }")
    }
}

impl fmt::Debug for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Identifier { [redacted] }")
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Address { [redacted] }")
    }
}

/// Why PHI is being accessed, recorded with the audit event.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// The purpose of use, e.g. `treatment`.
    pub purpose: Option<String>,
    /// Set when access rests on a break-glass grant; the reason becomes the purpose.
    pub break_glass: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("another patient of this tenant already has identifier {authority}/{kind}")]
    DuplicateIdentifier { authority: String, kind: String },
    #[error("the patient has no identity record")]
    NotFound,
    #[error("the record was changed by someone else; reload and retry")]
    VersionConflict,
    #[error("a field of the patient's record does not decrypt: it was altered or moved")]
    Undecryptable,
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    #[error("writing the audit event")]
    Audit(#[from] audit::AuditError),
    #[error("vault storage")]
    Database(#[from] sqlx::Error),
}

/// The sealed columns, in storage order. Part of the associated data.
const FIELDS: [&str; 8] = [
    "family_name",
    "given_names",
    "birth_date",
    "sex",
    "phone",
    "email",
    "address",
    "identifiers",
];

fn aad(tenant_id: TenantId, patient_id: PatientId, field: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(48 + field.len());
    aad.extend_from_slice(b"tenet-phi-v1");
    aad.extend_from_slice(tenant_id.as_uuid().as_bytes());
    aad.extend_from_slice(patient_id.as_uuid().as_bytes());
    aad.extend_from_slice(field.as_bytes());
    aad
}

/// The sealed form of one record.
struct Sealed {
    columns: [Option<Vec<u8>>; 8],
    identifier_index: Vec<Vec<u8>>,
    name_birth_index: Option<Vec<u8>>,
}

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("BUG: vault values always serialise")
}

fn blind_key(data_key: &DataKey) -> Hmac<Sha256> {
    // The index key is derived from the data key, never stored.
    let mut derive = <Hmac<Sha256> as Mac>::new_from_slice(data_key.key.as_bytes())
        .expect("BUG: HMAC takes any key");
    derive.update(b"tenet-blind-index-v1");
    let index_key = derive.finalize().into_bytes();
    <Hmac<Sha256> as Mac>::new_from_slice(&index_key).expect("BUG: HMAC takes any key")
}

fn blind(data_key: &DataKey, parts: &[&str]) -> Vec<u8> {
    let mut mac = blind_key(data_key);
    for part in parts {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part.as_bytes());
    }
    mac.finalize().into_bytes().to_vec()
}

fn normalize(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

fn identifier_index(data_key: &DataKey, authority: &str, value: &str) -> Vec<u8> {
    blind(
        data_key,
        &["identifier", &authority.trim().to_uppercase(), value.trim()],
    )
}

/// A keyed hash naming a patient identifier (assigning authority + value) without
/// revealing it: what inbound messages about one patient are ordered by. A domain of
/// its own, so it never equals the identifier's blind index in the vault. It changes
/// when the tenant's data key rotates.
pub fn ordering_key(data_key: &DataKey, authority: &str, value: &str) -> Vec<u8> {
    blind(
        data_key,
        &["ordering", &authority.trim().to_uppercase(), value.trim()],
    )
}

fn name_birth_index(
    data_key: &DataKey,
    family_name: &str,
    given_name: &str,
    birth_date: Date,
) -> Vec<u8> {
    blind(
        data_key,
        &[
            "name-birth",
            &normalize(family_name),
            &normalize(given_name),
            &birth_date.to_string(),
        ],
    )
}

fn seal(
    data_key: &DataKey,
    tenant_id: TenantId,
    patient_id: PatientId,
    d: &Demographics,
) -> Sealed {
    let plain: [Option<Vec<u8>>; 8] = [
        Some(d.family_name.as_bytes().to_vec()),
        Some(json(&d.given_names)),
        d.birth_date.map(|date| date.to_string().into_bytes()),
        d.sex.map(|sex| json(&sex)),
        d.phone.as_ref().map(|phone| phone.as_bytes().to_vec()),
        d.email.as_ref().map(|email| email.as_bytes().to_vec()),
        d.address.as_ref().map(json),
        Some(json(&d.identifiers)),
    ];
    let mut columns: [Option<Vec<u8>>; 8] = Default::default();
    for (i, value) in plain.into_iter().enumerate() {
        columns[i] = value.map(|bytes| {
            data_key
                .key
                .seal(&bytes, &aad(tenant_id, patient_id, FIELDS[i]))
        });
    }
    Sealed {
        columns,
        identifier_index: d
            .identifiers
            .iter()
            .map(|identifier| identifier_index(data_key, &identifier.authority, &identifier.value))
            .collect(),
        name_birth_index: match (d.given_names.first(), d.birth_date) {
            (Some(given), Some(birth_date)) => Some(name_birth_index(
                data_key,
                &d.family_name,
                given,
                birth_date,
            )),
            _ => None,
        },
    }
}

fn parse<T: serde::de::DeserializeOwned>(bytes: Vec<u8>) -> Result<T, VaultError> {
    serde_json::from_slice(&bytes).map_err(|_| VaultError::Undecryptable)
}

fn open(
    data_key: &DataKey,
    tenant_id: TenantId,
    patient_id: PatientId,
    columns: [Option<Vec<u8>>; 8],
) -> Result<Demographics, VaultError> {
    let mut plain: [Option<Vec<u8>>; 8] = Default::default();
    for (i, sealed) in columns.into_iter().enumerate() {
        plain[i] = match sealed {
            None => None,
            Some(sealed) => Some(
                data_key
                    .key
                    .open(&sealed, &aad(tenant_id, patient_id, FIELDS[i]))
                    .ok_or(VaultError::Undecryptable)?,
            ),
        };
    }
    let [
        family_name,
        given_names,
        birth_date,
        sex,
        phone,
        email,
        address,
        identifiers,
    ] = plain;
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).map_err(|_| VaultError::Undecryptable);
    Ok(Demographics {
        family_name: text(family_name.ok_or(VaultError::Undecryptable)?)?,
        given_names: parse(given_names.ok_or(VaultError::Undecryptable)?)?,
        birth_date: birth_date
            .map(|bytes| {
                let text = text(bytes)?;
                Date::parse(
                    &text,
                    time::macros::format_description!("[year]-[month]-[day]"),
                )
                .map_err(|_| VaultError::Undecryptable)
            })
            .transpose()?,
        sex: sex.map(parse).transpose()?,
        phone: phone.map(text).transpose()?,
        email: email.map(text).transpose()?,
        address: address.map(parse).transpose()?,
        identifiers: parse(identifiers.ok_or(VaultError::Undecryptable)?)?,
    })
}

fn duplicate_identifier(
    err: sqlx::Error,
    d: &Demographics,
    sealed: &Sealed,
    failed_index: usize,
) -> VaultError {
    if crate::violated_constraint(&err) == Some("patient_identifier_index_pkey") {
        let identifier =
            &d.identifiers[failed_index.min(sealed.identifier_index.len().saturating_sub(1))];
        return VaultError::DuplicateIdentifier {
            authority: identifier.authority.clone(),
            kind: identifier.kind.clone(),
        };
    }
    VaultError::Database(err)
}

async fn write_identifier_index(
    tx: &mut TenantTx,
    patient_id: PatientId,
    d: &Demographics,
    sealed: &Sealed,
) -> Result<(), VaultError> {
    for (i, index) in sealed.identifier_index.iter().enumerate() {
        sqlx::query(
            "INSERT INTO identity.patient_identifier_index (tenant_id, blind_index, patient_id) VALUES ($1, $2, $3)",
        )
        .bind(tx.tenant_id().as_uuid())
        .bind(index)
        .bind(patient_id.as_uuid())
        .execute(&mut **tx)
        .await
        .map_err(|err| duplicate_identifier(err, d, sealed, i))?;
    }
    Ok(())
}

/// Binds a sealed record to `sql`, whose parameters are: `$1` tenant, `$2` patient,
/// `$3` data key, `$4`..`$11` the sealed columns in [`FIELDS`] order, `$12` the
/// name + birth-date index.
fn sealed_query<'q>(
    sql: &'q str,
    tenant_id: TenantId,
    patient_id: PatientId,
    data_key: &DataKey,
    sealed: &'q Sealed,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let mut query = sqlx::query(sql)
        .bind(tenant_id.into_uuid())
        .bind(patient_id.into_uuid())
        .bind(data_key.id);
    for column in &sealed.columns {
        query = query.bind(column);
    }
    query.bind(&sealed.name_birth_index)
}

/// Stores a new patient's identity and records `patient.create`.
pub async fn insert(
    tx: &mut TenantTx,
    keyring: &Keyring,
    patient_id: PatientId,
    demographics: &Demographics,
    access: &Access,
) -> Result<(), VaultError> {
    let tenant_id = tx.tenant_id();
    let data_key = keyring.active_key(tx).await?;
    let sealed = seal(&data_key, tenant_id, patient_id, demographics);
    sealed_query(
        "INSERT INTO identity.patient_phi (tenant_id, patient_id, data_key_id, family_name, given_names, birth_date,
             sex, phone, email, address, identifiers, name_birth_index)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        tenant_id,
        patient_id,
        &data_key,
        &sealed,
    )
    .execute(&mut **tx)
    .await?;
    write_identifier_index(tx, patient_id, demographics, &sealed).await?;
    audit_access(tx, "patient.create", patient_id, access).await
}

/// A decrypted record and its version (for optimistic concurrency).
#[derive(Debug, Clone)]
pub struct Record {
    pub patient_id: PatientId,
    pub demographics: Demographics,
    pub version: i32,
}

type SealedRow = (
    Uuid,
    Uuid,
    i32,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
);

const SELECT_SEALED: &str = "SELECT patient_id, data_key_id, version, family_name, given_names, birth_date, sex, phone, email, address, identifiers
     FROM identity.patient_phi WHERE tenant_id = $1 AND patient_id = ANY($2)";

async fn open_rows(
    tx: &mut TenantTx,
    keyring: &Keyring,
    rows: Vec<SealedRow>,
) -> Result<Vec<Record>, VaultError> {
    let tenant_id = tx.tenant_id();
    let mut records = Vec::with_capacity(rows.len());
    for (patient_id, data_key_id, version, c0, c1, c2, c3, c4, c5, c6, c7) in rows {
        let patient_id = PatientId::new_unchecked(patient_id);
        let data_key = keyring.key(tx, data_key_id).await?;
        let demographics = open(
            &data_key,
            tenant_id,
            patient_id,
            [c0, c1, c2, c3, c4, c5, c6, c7],
        )?;
        records.push(Record {
            patient_id,
            demographics,
            version,
        });
    }
    Ok(records)
}

/// Reads one patient's identity and records `patient.read`.
pub async fn read(
    tx: &mut TenantTx,
    keyring: &Keyring,
    patient_id: PatientId,
    access: &Access,
) -> Result<Record, VaultError> {
    let rows: Vec<SealedRow> = sqlx::query_as(SELECT_SEALED)
        .bind(tx.tenant_id().as_uuid())
        .bind(vec![patient_id.into_uuid()])
        .fetch_all(&mut **tx)
        .await?;
    let record = open_rows(tx, keyring, rows)
        .await?
        .pop()
        .ok_or(VaultError::NotFound)?;
    audit_access(tx, "patient.read", patient_id, access).await?;
    Ok(record)
}

/// Reads several patients' identities (a list or a search result), recording one
/// `patient.read` per patient disclosed. Returns them in the order asked.
pub async fn read_many(
    tx: &mut TenantTx,
    keyring: &Keyring,
    patient_ids: &[PatientId],
    access: &Access,
) -> Result<Vec<Record>, VaultError> {
    let ids: Vec<Uuid> = patient_ids.iter().map(|id| id.into_uuid()).collect();
    let rows: Vec<SealedRow> = sqlx::query_as(SELECT_SEALED)
        .bind(tx.tenant_id().as_uuid())
        .bind(&ids)
        .fetch_all(&mut **tx)
        .await?;
    let mut records = open_rows(tx, keyring, rows).await?;
    records.sort_by_key(|record| patient_ids.iter().position(|id| *id == record.patient_id));
    for record in &records {
        audit_access(tx, "patient.read", record.patient_id, access).await?;
    }
    Ok(records)
}

/// Replaces a patient's identity if its version is still `expected_version`; records
/// `patient.update`. Returns the new version.
pub async fn update(
    tx: &mut TenantTx,
    keyring: &Keyring,
    patient_id: PatientId,
    demographics: &Demographics,
    expected_version: Option<i32>,
    access: &Access,
) -> Result<i32, VaultError> {
    let tenant_id = tx.tenant_id();
    let current: Option<i32> = sqlx::query_scalar(
        "SELECT version FROM identity.patient_phi WHERE tenant_id = $1 AND patient_id = $2 FOR UPDATE",
    )
    .bind(tenant_id.as_uuid())
    .bind(patient_id.as_uuid())
    .fetch_optional(&mut **tx)
    .await?;
    let current = current.ok_or(VaultError::NotFound)?;
    if expected_version.is_some_and(|expected| expected != current) {
        return Err(VaultError::VersionConflict);
    }
    let data_key = keyring.active_key(tx).await?;
    let sealed = seal(&data_key, tenant_id, patient_id, demographics);
    sealed_query(
        "UPDATE identity.patient_phi SET data_key_id = $3, family_name = $4, given_names = $5, birth_date = $6,
             sex = $7, phone = $8, email = $9, address = $10, identifiers = $11, name_birth_index = $12,
             version = version + 1, updated_at = now()
         WHERE tenant_id = $1 AND patient_id = $2",
        tenant_id,
        patient_id,
        &data_key,
        &sealed,
    )
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "DELETE FROM identity.patient_identifier_index WHERE tenant_id = $1 AND patient_id = $2",
    )
    .bind(tenant_id.as_uuid())
    .bind(patient_id.as_uuid())
    .execute(&mut **tx)
    .await?;
    write_identifier_index(tx, patient_id, demographics, &sealed).await?;
    audit_access(tx, "patient.update", patient_id, access).await?;
    Ok(current + 1)
}

/// The patient holding identifier `value` from `authority`, if any. Finding a patient
/// by identifier is not itself a disclosure; reading them is.
pub async fn find_by_identifier(
    tx: &mut TenantTx,
    keyring: &Keyring,
    authority: &str,
    value: &str,
) -> Result<Option<PatientId>, VaultError> {
    let data_key = keyring.active_key(tx).await?;
    let found: Option<Uuid> = sqlx::query_scalar(
        "SELECT patient_id FROM identity.patient_identifier_index WHERE tenant_id = $1 AND blind_index = $2",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(identifier_index(&data_key, authority, value))
    .fetch_optional(&mut **tx)
    .await?;
    Ok(found.map(PatientId::new_unchecked))
}

/// The patients whose family name, first given name and birth date match exactly
/// (case and spacing ignored).
pub async fn find_by_name_birth(
    tx: &mut TenantTx,
    keyring: &Keyring,
    family_name: &str,
    given_name: &str,
    birth_date: Date,
) -> Result<Vec<PatientId>, VaultError> {
    let data_key = keyring.active_key(tx).await?;
    let found: Vec<Uuid> = sqlx::query_scalar(
        "SELECT patient_id FROM identity.patient_phi WHERE tenant_id = $1 AND name_birth_index = $2
         ORDER BY patient_id LIMIT 100",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(name_birth_index(
        &data_key,
        family_name,
        given_name,
        birth_date,
    ))
    .fetch_all(&mut **tx)
    .await?;
    Ok(found.into_iter().map(PatientId::new_unchecked).collect())
}

/// Whether the patient has an identity record in the transaction's tenant.
pub async fn exists(tx: &mut TenantTx, patient_id: PatientId) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM identity.patient_phi WHERE tenant_id = $1 AND patient_id = $2)")
        .bind(tx.tenant_id().as_uuid())
        .bind(patient_id.as_uuid())
        .fetch_one(&mut **tx)
        .await
}

async fn audit_access(
    tx: &mut TenantTx,
    action: &'static str,
    patient_id: PatientId,
    access: &Access,
) -> Result<(), VaultError> {
    let mut entry = AuditEntry::patient(action, patient_id).break_glass(access.break_glass);
    entry.purpose = access.purpose.clone();
    audit::append(tx, entry).await?;
    Ok(())
}
