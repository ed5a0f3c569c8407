//! Releases of information to a named recipient, and the accounting of disclosures.
//!
//! [`record`] refuses — and records nothing — unless the patient's
//! release-of-information consent for that recipient is in force; the release names
//! the consent it relied on. Releases are append-only (a trigger refuses UPDATE,
//! DELETE and TRUNCATE). The recipient and the description of what was released are
//! one sealed payload; purposes are codes and documents are ids, so a report without
//! the keyring shows who released what to how many, never to whom.

use std::fmt;

use audit::AuditEntry;
use db::TenantTx;
use identity::keyring::Keyring;
use kernel::PatientId;
use platform::outbox::{self, Event, Outbox};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::consent::{self, ConsentError, ConsentId, Scope, to_stored_precision};
use crate::recipient::{self, Recipient, RecipientError};
use crate::{Unexpected, unexpected_from};

/// The most rows one list or report returns.
pub const RELEASES_MAX: i64 = 1_000;
/// The most documents one release names.
pub const DOCUMENTS_MAX: usize = 100;
/// The longest description of what was released, in characters.
pub const DESCRIPTION_LEN_MAX: usize = 2_000;

/// A release's id. Carries no PHI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReleaseId(Uuid);

impl ReleaseId {
    pub const fn new_unchecked(uuid: Uuid) -> Self {
        Self(uuid)
    }

    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }

    pub const fn into_uuid(self) -> Uuid {
        self.0
    }
}

impl fmt::Display for ReleaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Why information was released (`compliance.release_purpose`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Treatment,
    Payment,
    HealthcareOperations,
    PatientRequest,
    Legal,
    PublicHealth,
    Research,
    Other,
}

impl Purpose {
    pub const ALL: [Purpose; 8] = [
        Purpose::Treatment,
        Purpose::Payment,
        Purpose::HealthcareOperations,
        Purpose::PatientRequest,
        Purpose::Legal,
        Purpose::PublicHealth,
        Purpose::Research,
        Purpose::Other,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Purpose::Treatment => "treatment",
            Purpose::Payment => "payment",
            Purpose::HealthcareOperations => "healthcare_operations",
            Purpose::PatientRequest => "patient_request",
            Purpose::Legal => "legal",
            Purpose::PublicHealth => "public_health",
            Purpose::Research => "research",
            Purpose::Other => "other",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|purpose| purpose.as_str() == text)
    }
}

/// The sealed part of a release. `Debug` prints neither field.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Details {
    recipient: String,
    description: Option<String>,
}

/// What a release disclosed to whom: PHI, opened only on an audited path.
#[derive(Clone, PartialEq, Eq)]
pub struct Disclosed {
    pub recipient: Recipient,
    pub description: Option<String>,
}

impl fmt::Debug for Disclosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Disclosed([redacted])")
    }
}

/// A recorded release. `disclosed` is `None` where the reader may not see recipients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub id: ReleaseId,
    pub patient_id: PatientId,
    pub consent_id: ConsentId,
    pub purpose: Purpose,
    pub document_ids: Vec<Uuid>,
    /// The audit actor name of who released it.
    pub released_by: String,
    pub released_at: OffsetDateTime,
    pub disclosed: Option<Disclosed>,
}

/// A release to record. `Debug` prints neither recipient nor description.
#[derive(Clone)]
pub struct NewRelease {
    pub patient_id: PatientId,
    pub recipient: Recipient,
    pub purpose: Purpose,
    /// Documents of the documents context that were released.
    pub document_ids: Vec<Uuid>,
    /// What was released, in words (PHI: sealed).
    pub description: Option<String>,
    /// When; now when `None`. Never in the future.
    pub released_at: Option<OffsetDateTime>,
}

impl fmt::Debug for NewRelease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewRelease")
            .field("patient_id", &self.patient_id)
            .field("recipient", &self.recipient)
            .field("purpose", &self.purpose)
            .field("document_ids", &self.document_ids)
            .field(
                "description",
                &self.description.as_ref().map(|_| "[redacted]"),
            )
            .field("released_at", &self.released_at)
            .finish()
    }
}

/// Why a release is refused. Names no recipient and no description.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("no such patient")]
    UnknownPatient,
    #[error(transparent)]
    Recipient(#[from] RecipientError),
    #[error(
        "a release names at most {DOCUMENTS_MAX} documents and a description of at most {DESCRIPTION_LEN_MAX} characters, and says what was released"
    )]
    Content,
    #[error("released_at cannot be in the future")]
    InFuture,
    /// A named document is not a stored document of this patient (another patient's,
    /// deleted, or none at all): the accounting of disclosures must name what left.
    #[error("document_ids: {0} is not a stored document of this patient")]
    UnknownDocument(Uuid),
    /// No release-of-information consent for this recipient is in force.
    #[error(transparent)]
    Consent(ConsentError),
    #[error(transparent)]
    Unexpected(Unexpected),
}

unexpected_from!(ReleaseError);

impl From<Unexpected> for ReleaseError {
    fn from(err: Unexpected) -> Self {
        Self::Unexpected(err)
    }
}

impl From<ConsentError> for ReleaseError {
    fn from(err: ConsentError) -> Self {
        match err {
            ConsentError::Recipient(err) => Self::Recipient(err),
            ConsentError::Unexpected(err) => Self::Unexpected(err),
            refused => Self::Consent(refused),
        }
    }
}

/// Records a release of the patient's information to `new.recipient`, after checking
/// the release-of-information consent for that recipient is in force at the release
/// time. Refused without one, writing nothing. Records `release.record` and
/// announces `release.recorded` (ids and codes only).
pub async fn record(
    tx: &mut TenantTx,
    keyring: &Keyring,
    new: NewRelease,
) -> Result<Release, ReleaseError> {
    let description = new
        .description
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty());
    if new.document_ids.len() > DOCUMENTS_MAX
        || description
            .as_ref()
            .is_some_and(|text| text.chars().count() > DESCRIPTION_LEN_MAX)
        || (new.document_ids.is_empty() && description.is_none())
    {
        return Err(ReleaseError::Content);
    }
    let now: OffsetDateTime = sqlx::query_scalar("SELECT now()")
        .fetch_one(&mut **tx)
        .await?;
    let released_at = new.released_at.map_or(now, to_stored_precision);
    if released_at > now {
        return Err(ReleaseError::InFuture);
    }
    if clinical::patient::get(tx, new.patient_id).await?.is_none() {
        return Err(ReleaseError::UnknownPatient);
    }
    // Each released document is a stored document of this patient (documents' narrow
    // API: metadata only, nothing is opened), held so that a deletion cannot commit
    // between this check and the release: the accounting names only what was stored.
    let ids: Vec<_> = new
        .document_ids
        .iter()
        .map(|&id| documents::DocumentId::new_unchecked(id))
        .collect();
    let held = documents::document::get_held(tx, &ids).await?;
    for &document_id in &new.document_ids {
        if !held.iter().any(|document| {
            *document.id.as_uuid() == document_id
                && document.patient_id == new.patient_id
                && document.status == documents::Status::Stored
        }) {
            return Err(ReleaseError::UnknownDocument(document_id));
        }
    }
    let consent_id = consent::require(
        tx,
        keyring,
        new.patient_id,
        Scope::ReleaseOfInformation,
        Some(&new.recipient),
        released_at,
    )
    .await?;
    let release_id = ReleaseId(Uuid::now_v7());
    let data_key = keyring.active_key(tx).await?;
    let details = Details {
        recipient: new.recipient.expose().to_owned(),
        description: description.clone(),
    };
    let sealed = data_key.key.seal(
        &serde_json::to_vec(&details).expect("BUG: details serialise"),
        &recipient::aad("release.details", tx.tenant_id(), release_id.0),
    );
    let released_by = tx.actor().to_owned();
    sqlx::query(
        "INSERT INTO compliance.releases (tenant_id, id, patient_id, consent_id, purpose, document_ids,
             data_key_id, details_sealed, recipient_fingerprint, released_by, released_at)
         VALUES ($1, $2, $3, $4, $5::compliance.release_purpose, $6, $7, $8, $9, $10, $11)",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(release_id.as_uuid())
    .bind(new.patient_id.as_uuid())
    .bind(consent_id.as_uuid())
    .bind(new.purpose.as_str())
    .bind(&new.document_ids)
    .bind(data_key.id)
    .bind(sealed)
    .bind(new.recipient.fingerprint(&data_key).as_slice())
    .bind(&released_by)
    .bind(released_at)
    .execute(&mut **tx)
    .await?;
    let release = Release {
        id: release_id,
        patient_id: new.patient_id,
        consent_id,
        purpose: new.purpose,
        document_ids: new.document_ids,
        released_by,
        released_at,
        disclosed: Some(Disclosed {
            recipient: new.recipient,
            description,
        }),
    };
    let mut entry =
        AuditEntry::patient("release.record", release.patient_id).purpose(release.purpose.as_str());
    entry.details = serde_json::json!({
        "release_id": release.id.as_uuid(),
        "consent_id": release.consent_id.as_uuid(),
        "n_documents": release.document_ids.len(),
    });
    audit::append(tx, entry).await?;
    outbox::emit(
        tx,
        Outbox::Compliance,
        Event {
            event_type: "release.recorded",
            event_version: 1,
            aggregate_type: "release",
            aggregate_id: release.id.into_uuid(),
            payload: serde_json::json!({
                "release_id": release.id.as_uuid(),
                "patient_id": release.patient_id.as_uuid(),
                "consent_id": release.consent_id.as_uuid(),
                "purpose": release.purpose.as_str(),
            }),
        },
    )
    .await?;
    Ok(release)
}

type ReleaseRow = (
    Uuid,
    Uuid,
    Uuid,
    String,
    Vec<Uuid>,
    Uuid,
    Vec<u8>,
    String,
    OffsetDateTime,
);

const SELECT: &str = "SELECT id, patient_id, consent_id, purpose::text, document_ids, data_key_id,
         details_sealed, released_by, released_at
     FROM compliance.releases";

async fn to_release(
    tx: &mut TenantTx,
    keyring: Option<&Keyring>,
    row: ReleaseRow,
) -> Result<Release, Unexpected> {
    let (
        id,
        patient_id,
        consent_id,
        purpose,
        document_ids,
        data_key_id,
        sealed,
        released_by,
        released_at,
    ) = row;
    let disclosed = match keyring {
        Some(keyring) => {
            let data_key = keyring.key(tx, data_key_id).await?;
            let details: Details = data_key
                .key
                .open(
                    &sealed,
                    &recipient::aad("release.details", tx.tenant_id(), id),
                )
                .and_then(|plaintext| serde_json::from_slice(&plaintext).ok())
                .ok_or(Unexpected::Undecryptable)?;
            Some(Disclosed {
                recipient: Recipient::parse(&details.recipient)
                    .map_err(|_| Unexpected::Undecryptable)?,
                description: details.description,
            })
        }
        None => None,
    };
    Ok(Release {
        id: ReleaseId(id),
        patient_id: PatientId::new_unchecked(patient_id),
        consent_id: ConsentId::new_unchecked(consent_id),
        purpose: Purpose::parse(&purpose).expect("BUG: the enum matches Purpose"),
        document_ids,
        released_by,
        released_at,
        disclosed,
    })
}

/// Every release of a patient's information, newest first (at most
/// [`RELEASES_MAX`]), recipients and descriptions opened: the patient's accounting of
/// disclosures. Records `disclosure.list`.
pub async fn for_patient(
    tx: &mut TenantTx,
    keyring: &Keyring,
    patient_id: PatientId,
) -> Result<Vec<Release>, Unexpected> {
    let rows: Vec<ReleaseRow> = sqlx::query_as(&format!(
        "{SELECT} WHERE tenant_id = $1 AND patient_id = $2 ORDER BY released_at DESC, id DESC LIMIT $3"
    ))
    .bind(tx.tenant_id().as_uuid())
    .bind(patient_id.as_uuid())
    .bind(RELEASES_MAX)
    .fetch_all(&mut **tx)
    .await?;
    let mut releases = Vec::with_capacity(rows.len());
    for row in rows {
        releases.push(to_release(tx, Some(keyring), row).await?);
    }
    let mut entry = crate::audit_entry(tx, "disclosure.list", patient_id);
    entry.details = serde_json::json!({ "n_releases": releases.len() });
    audit::append(tx, entry).await?;
    Ok(releases)
}

/// The tenant's releases in `[from, to)`, oldest first (at most [`RELEASES_MAX`]).
/// With a keyring, recipients and descriptions are opened and each patient disclosed
/// gets a `disclosure.read` audit event; without one, nothing is decrypted. Records
/// `disclosure.report` either way.
pub async fn report(
    tx: &mut TenantTx,
    reveal: Option<&Keyring>,
    from: OffsetDateTime,
    to: OffsetDateTime,
) -> Result<Vec<Release>, Unexpected> {
    let rows: Vec<ReleaseRow> = sqlx::query_as(&format!(
        "{SELECT} WHERE tenant_id = $1 AND released_at >= $2 AND released_at < $3
         ORDER BY released_at, id LIMIT $4"
    ))
    .bind(tx.tenant_id().as_uuid())
    .bind(from)
    .bind(to)
    .bind(RELEASES_MAX)
    .fetch_all(&mut **tx)
    .await?;
    let mut releases = Vec::with_capacity(rows.len());
    for row in rows {
        releases.push(to_release(tx, reveal, row).await?);
    }
    audit::append(
        tx,
        AuditEntry {
            action: "disclosure.report",
            patient_id: None,
            purpose: Some("operations".to_owned()),
            break_glass: false,
            details: serde_json::json!({
                "n_releases": releases.len(),
                "recipients_revealed": reveal.is_some(),
            }),
        },
    )
    .await?;
    if reveal.is_some() {
        let mut patient_ids: Vec<PatientId> =
            releases.iter().map(|release| release.patient_id).collect();
        patient_ids.sort_unstable();
        patient_ids.dedup();
        for patient_id in patient_ids {
            audit::append(tx, crate::audit_entry(tx, "disclosure.read", patient_id)).await?;
        }
    }
    Ok(releases)
}

/// One release with its recipient and description opened, recording
/// `disclosure.read`; `None` if the tenant has no such release.
pub async fn read(
    tx: &mut TenantTx,
    keyring: &Keyring,
    release_id: ReleaseId,
) -> Result<Option<Release>, Unexpected> {
    let row: Option<ReleaseRow> =
        sqlx::query_as(&format!("{SELECT} WHERE tenant_id = $1 AND id = $2"))
            .bind(tx.tenant_id().as_uuid())
            .bind(release_id.as_uuid())
            .fetch_optional(&mut **tx)
            .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let release = to_release(tx, Some(keyring), row).await?;
    let mut entry = crate::audit_entry(tx, "disclosure.read", release.patient_id);
    entry.details = serde_json::json!({ "release_id": release.id.as_uuid() });
    audit::append(tx, entry).await?;
    Ok(Some(release))
}
