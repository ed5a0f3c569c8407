//! One-time links: a patient or guardian answers one instance without an account.
//!
//! A link token reads `at_<tenant>.<token id>.<secret>`: the tenant and id are public
//! and locate the row (so a link never searches across tenants), the 256-bit secret is
//! compared in constant time with its stored SHA-256 (the pattern of
//! `identity::api_key`). The plaintext token exists only in what [`issue`] returns.
//! A token expires when its instance's window closes and is spent by the first
//! submission that uses it ([`submit`]); the token, the response and the completed
//! instance commit together, so a link answers at most once however often it is
//! posted.
//!
//! An unknown token, another tenant's, and a known id with the wrong secret are the
//! same [`LinkError::Unknown`]: the caller cannot tell which ids exist. Only a holder
//! of the right secret learns that the link was used or has expired.
//!
//! This module must never log a token or put one into an error or event.

use std::fmt;

use audit::AuditEntry;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use db::TenantTx;
use identity::keyring::Keyring;
use kernel::{PatientId, TenantId};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::instrument::{Instrument, InstrumentCode};
use crate::response::{self, Answerer, Submission, SubmitError, Submitted, Submitter, Unexpected};

const PREFIX: &str = "at_";

/// A fresh link, to be sent once. `Debug` redacts the token.
pub struct NewLink {
    pub id: Uuid,
    pub token: String,
    pub expires_at: OffsetDateTime,
}

impl fmt::Debug for NewLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewLink")
            .field("id", &self.id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A presented token split into its parts, not yet checked. `Debug` hides the secret.
pub struct LinkClaim {
    pub tenant_id: TenantId,
    pub token_id: Uuid,
    secret: Vec<u8>,
}

impl fmt::Debug for LinkClaim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkClaim")
            .field("tenant_id", &self.tenant_id)
            .field("token_id", &self.token_id)
            .finish_non_exhaustive()
    }
}

impl LinkClaim {
    /// Splits `at_<tenant>.<id>.<secret>`; `None` if it is not a link token.
    pub fn parse(token: &str) -> Option<Self> {
        let rest = token.strip_prefix(PREFIX)?;
        let mut parts = rest.splitn(3, '.');
        let tenant_id = Uuid::try_parse(parts.next()?).ok()?;
        let token_id = Uuid::try_parse(parts.next()?).ok()?;
        let secret = URL_SAFE_NO_PAD.decode(parts.next()?).ok()?;
        (secret.len() == 32).then(|| Self {
            tenant_id: TenantId::new_unchecked(tenant_id),
            token_id,
            secret,
        })
    }

    /// The audit name of the actor a link stands for.
    pub fn actor_name(&self) -> String {
        format!("link:{}", self.token_id)
    }
}

fn secret_hash(secret: &[u8]) -> [u8; 32] {
    Sha256::digest(secret).into()
}

/// Why a link could not be issued or used. Names states, never a token.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("no such assessment instance")]
    InstanceNotFound,
    #[error("this instance can no longer be answered")]
    InstanceClosed,
    #[error("a clinician-rated instrument is not answered through a link")]
    ClinicianRated,
    /// Unknown, another tenant's, or the wrong secret: indistinguishable on purpose.
    #[error("this link is not valid")]
    Unknown,
    #[error("this link was already used")]
    Used,
    #[error("this link has expired")]
    Expired,
    #[error(transparent)]
    Submit(#[from] SubmitError),
    #[error(transparent)]
    Unexpected(#[from] Unexpected),
}

crate::response::unexpected_from!(LinkError: sqlx::Error, audit::AuditError);

/// Issues a one-time link for an open or scheduled instance answered by the patient
/// or a guardian; it expires when the instance closes. Audited.
pub async fn issue(tx: &mut TenantTx, instance_id: Uuid) -> Result<NewLink, LinkError> {
    let instance: Option<(Uuid, String, bool, OffsetDateTime)> = sqlx::query_as(
        "SELECT patient_id, respondent::text, status IN ('scheduled', 'open') AND now() < closes_at, closes_at
         FROM assessments.instances WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(instance_id)
    .fetch_optional(&mut **tx)
    .await?;
    let (patient_id, respondent, answerable, closes_at) =
        instance.ok_or(LinkError::InstanceNotFound)?;
    if respondent == "clinician" {
        return Err(LinkError::ClinicianRated);
    }
    if !answerable {
        return Err(LinkError::InstanceClosed);
    }
    let new_link = mint(tx, instance_id, closes_at).await?;
    let patient_id = PatientId::new_unchecked(patient_id);
    let mut entry = AuditEntry::patient("assessment_link.issue", patient_id).purpose("treatment");
    entry.details = json!({ "link_id": new_link.id, "instance_id": instance_id });
    audit::append(tx, entry).await?;
    Ok(new_link)
}

/// Makes a link token for `instance_id` that expires at `expires_at`: the row with
/// the secret's hash, and the token. No checks and no audit event: for callers that
/// have checked the instance themselves ([`issue`], reminders).
pub async fn mint(
    tx: &mut TenantTx,
    instance_id: Uuid,
    expires_at: OffsetDateTime,
) -> Result<NewLink, sqlx::Error> {
    let id = Uuid::now_v7();
    let secret: [u8; 32] = rand::random();
    sqlx::query(
        "INSERT INTO assessments.link_tokens (tenant_id, id, instance_id, secret_sha256, expires_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(id)
    .bind(instance_id)
    .bind(&secret_hash(&secret)[..])
    .bind(expires_at)
    .execute(&mut **tx)
    .await?;
    let token = format!(
        "{PREFIX}{}.{}.{}",
        tx.tenant_id().as_uuid().simple(),
        id.simple(),
        URL_SAFE_NO_PAD.encode(secret)
    );
    Ok(NewLink {
        id,
        token,
        expires_at,
    })
}

/// The patient an instance is for, without disclosing anything (for access checks).
pub async fn instance_patient(
    tx: &mut TenantTx,
    instance_id: Uuid,
) -> Result<Option<PatientId>, sqlx::Error> {
    let patient_id: Option<Uuid> = sqlx::query_scalar(
        "SELECT patient_id FROM assessments.instances WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(instance_id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(patient_id.map(PatientId::new_unchecked))
}

/// What a valid link opens: the instance to answer. No PHI: ids and the instrument.
#[derive(Debug, Clone)]
pub struct LinkedInstance {
    pub token_id: Uuid,
    pub instance_id: Uuid,
    pub patient_id: PatientId,
    pub instrument: &'static Instrument,
    pub answerer: Answerer,
    pub expires_at: OffsetDateTime,
}

/// A token and the instance it opens.
#[derive(sqlx::FromRow)]
struct TokenRow {
    secret_sha256: Vec<u8>,
    used: bool,
    expired: bool,
    expires_at: OffsetDateTime,
    instance_id: Uuid,
    patient_id: Uuid,
    instrument_code: String,
    instrument_version: i32,
    respondent: String,
    respondent_person_id: Option<Uuid>,
    answerable: bool,
}

/// Checks `claim` in `tx` (a transaction of the claimed tenant) and returns the
/// instance it opens. With `lock`, the token row stays locked until the transaction
/// ends, so two submissions of one link run one after the other.
async fn check(
    tx: &mut TenantTx,
    claim: &LinkClaim,
    lock: bool,
) -> Result<LinkedInstance, LinkError> {
    assert_eq!(
        tx.tenant_id(),
        claim.tenant_id,
        "BUG: a link checked in another tenant's transaction"
    );
    let row: Option<TokenRow> = sqlx::query_as(&format!(
        "SELECT t.secret_sha256, t.used_at IS NOT NULL AS used, now() >= t.expires_at AS expired,
                t.expires_at, i.id AS instance_id, i.patient_id, i.instrument_code,
                i.instrument_version, i.respondent::text AS respondent, i.respondent_person_id,
                i.status IN ('scheduled', 'open') AS answerable
         FROM assessments.link_tokens t
         JOIN assessments.instances i ON i.tenant_id = t.tenant_id AND i.id = t.instance_id
         WHERE t.tenant_id = $1 AND t.id = $2 {}",
        if lock { "FOR UPDATE OF t" } else { "" }
    ))
    .bind(claim.tenant_id.as_uuid())
    .bind(claim.token_id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(TokenRow {
        secret_sha256: stored_hash,
        used,
        expired,
        expires_at,
        instance_id,
        patient_id,
        instrument_code: code,
        instrument_version: version,
        respondent,
        respondent_person_id: person_id,
        answerable,
    }) = row
    else {
        return Err(LinkError::Unknown);
    };
    if !bool::from(secret_hash(&claim.secret).ct_eq(&stored_hash[..])) {
        return Err(LinkError::Unknown);
    }
    if used {
        return Err(LinkError::Used);
    }
    if expired {
        return Err(LinkError::Expired);
    }
    // Answered by other means, missed or cancelled since the link was sent.
    if !answerable {
        return Err(LinkError::InstanceClosed);
    }
    let code = InstrumentCode::parse(&code).expect("BUG: an instance names an invalid instrument");
    let version = u16::try_from(version).expect("BUG: an instance's version is out of range");
    let instrument = Instrument::by_code(&code, version)
        .expect("BUG: an instance names an instrument version the catalogue lacks");
    let answerer = match (respondent.as_str(), person_id) {
        ("guardian", Some(person_id)) => Answerer::Guardian(person_id),
        ("patient", _) => Answerer::Patient,
        _ => return Err(LinkError::ClinicianRated),
    };
    Ok(LinkedInstance {
        token_id: claim.token_id,
        instance_id,
        patient_id: PatientId::new_unchecked(patient_id),
        instrument,
        answerer,
        expires_at,
    })
}

/// Whether `claim` names a link of the transaction's tenant with the right secret,
/// used or not (for answering a replayed request): [`LinkError::Unknown`] otherwise.
pub async fn authenticate(tx: &mut TenantTx, claim: &LinkClaim) -> Result<(), LinkError> {
    let stored_hash: Option<Vec<u8>> = sqlx::query_scalar(
        "SELECT secret_sha256 FROM assessments.link_tokens WHERE tenant_id = $1 AND id = $2",
    )
    .bind(claim.tenant_id.as_uuid())
    .bind(claim.token_id)
    .fetch_optional(&mut **tx)
    .await?;
    match stored_hash {
        Some(stored_hash) if bool::from(secret_hash(&claim.secret).ct_eq(&stored_hash[..])) => {
            Ok(())
        }
        _ => Err(LinkError::Unknown),
    }
}

/// Opens the form of a link without spending it; records `assessment_link.open`.
pub async fn open(tx: &mut TenantTx, claim: &LinkClaim) -> Result<LinkedInstance, LinkError> {
    let linked = check(tx, claim, false).await?;
    let mut entry =
        AuditEntry::patient("assessment_link.open", linked.patient_id).purpose("treatment");
    entry.details = json!({ "link_id": linked.token_id, "instance_id": linked.instance_id });
    audit::append(tx, entry).await?;
    Ok(linked)
}

/// Submits `answers` through a link: checks and spends the token, then
/// [`response::submit`]s for the instance's respondent, all in `tx`. A refused
/// submission (invalid answers, a guardian who lost access) leaves the link unspent
/// when the caller rolls back.
pub async fn submit(
    tx: &mut TenantTx,
    keyring: &Keyring,
    claim: &LinkClaim,
    answers: Vec<(String, u8)>,
) -> Result<Submitted, LinkError> {
    let linked = check(tx, claim, true).await?;
    sqlx::query(
        "UPDATE assessments.link_tokens SET used_at = now() WHERE tenant_id = $1 AND id = $2",
    )
    .bind(claim.tenant_id.as_uuid())
    .bind(claim.token_id)
    .execute(&mut **tx)
    .await?;
    let submitted = response::submit(
        tx,
        keyring,
        &Submitter::Link(linked.token_id),
        Submission {
            patient_id: linked.patient_id,
            instance_id: Some(linked.instance_id),
            instrument: linked.instrument.code().clone(),
            version: Some(linked.instrument.version()),
            answerer: Some(linked.answerer),
            answers,
        },
    )
    .await?;
    Ok(submitted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_token_parses_back_into_its_parts_and_garbage_does_not() {
        let tenant = Uuid::now_v7();
        let id = Uuid::now_v7();
        let token = format!(
            "at_{}.{}.{}",
            tenant.simple(),
            id.simple(),
            URL_SAFE_NO_PAD.encode([9u8; 32])
        );
        let claim = LinkClaim::parse(&token).unwrap();
        assert_eq!((*claim.tenant_id.as_uuid(), claim.token_id), (tenant, id));
        assert!(!format!("{claim:?}").contains(&URL_SAFE_NO_PAD.encode([9u8; 32])));
        for bad in [
            "",
            "at_",
            &token.replace("at_", "tk_"),
            &token[..token.len() - 3],
        ] {
            assert!(LinkClaim::parse(bad).is_none(), "{bad:?} parsed");
        }
    }
}
