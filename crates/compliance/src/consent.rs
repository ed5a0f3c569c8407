//! Consent records: a patient's permission for treatment, telehealth, research, or
//! the release of their information to one named recipient.
//!
//! A consent is recorded `granted` (from `granted_at`, until `valid_until` when set)
//! and may be revoked once; it never returns to granted — a new grant is a new
//! record. The trigger `compliance.consent_transition` refuses any other change, and
//! any deletion, whoever asks. [`require`] is the narrow check other features call
//! before they act. Every function takes the tenant's transaction first and audits
//! each read and write in it; none puts a recipient in an error, event or log.

use std::fmt;

use db::TenantTx;
use identity::keyring::Keyring;
use kernel::PatientId;
use platform::outbox::{self, Event, Outbox};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::recipient::{self, Recipient, RecipientError};
use crate::{Unexpected, unexpected_from};

/// The most consents of one patient and scope [`require`] weighs, and the most rows a
/// list returns.
pub const CONSENTS_MAX: i64 = 500;

/// A consent's id. Carries no PHI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConsentId(Uuid);

impl ConsentId {
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }

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

impl fmt::Display for ConsentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a consent permits (`compliance.consent_scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Treatment,
    Telehealth,
    /// Release of the patient's information to the consent's one recipient.
    ReleaseOfInformation,
    Research,
}

impl Scope {
    pub const ALL: [Scope; 4] = [
        Scope::Treatment,
        Scope::Telehealth,
        Scope::ReleaseOfInformation,
        Scope::Research,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::Treatment => "treatment",
            Scope::Telehealth => "telehealth",
            Scope::ReleaseOfInformation => "release_of_information",
            Scope::Research => "research",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|scope| scope.as_str() == text)
    }
}

/// Where a consent stands (`compliance.consent_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Granted,
    Revoked,
}

impl Status {
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Granted => "granted",
            Status::Revoked => "revoked",
        }
    }
}

/// Why a consent was revoked (`compliance.revocation_reason`): a code, never free
/// text, so that no PHI rides along.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationReason {
    PatientRequest,
    EnteredInError,
    Superseded,
    Other,
}

impl RevocationReason {
    pub const ALL: [RevocationReason; 4] = [
        RevocationReason::PatientRequest,
        RevocationReason::EnteredInError,
        RevocationReason::Superseded,
        RevocationReason::Other,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            RevocationReason::PatientRequest => "patient_request",
            RevocationReason::EnteredInError => "entered_in_error",
            RevocationReason::Superseded => "superseded",
            RevocationReason::Other => "other",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|reason| reason.as_str() == text)
    }
}

/// A revocation: when, by whom (an audit actor name), why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub at: OffsetDateTime,
    pub by: String,
    pub reason: RevocationReason,
}

/// A consent as stored, its recipient opened. `Debug` prints no recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    pub id: ConsentId,
    pub patient_id: PatientId,
    pub scope: Scope,
    /// Exactly for [`Scope::ReleaseOfInformation`].
    pub recipient: Option<Recipient>,
    pub granted_at: OffsetDateTime,
    /// The audit actor name of who recorded the grant.
    pub recorded_by: String,
    pub valid_until: Option<OffsetDateTime>,
    /// The signed form, a document of the documents context.
    pub evidence_document_id: Option<Uuid>,
    pub revocation: Option<Revocation>,
    pub created_at: OffsetDateTime,
}

impl Consent {
    pub fn status(&self) -> Status {
        if self.revocation.is_some() {
            Status::Revoked
        } else {
            Status::Granted
        }
    }

    /// Granted, started and not expired at `at`.
    pub fn is_in_force(&self, at: OffsetDateTime) -> bool {
        self.revocation.is_none()
            && self.granted_at <= at
            && self.valid_until.is_none_or(|until| at < until)
    }
}

/// A consent to record.
#[derive(Debug, Clone)]
pub struct NewConsent {
    pub patient_id: PatientId,
    pub scope: Scope,
    /// Required for [`Scope::ReleaseOfInformation`], refused otherwise.
    pub recipient: Option<Recipient>,
    /// When the patient gave it (a paper form signed earlier); now when `None`. Never
    /// in the future.
    pub granted_at: Option<OffsetDateTime>,
    pub valid_until: Option<OffsetDateTime>,
    pub evidence_document_id: Option<Uuid>,
}

/// Why a grant is refused.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error("no such patient")]
    UnknownPatient,
    #[error("a release-of-information consent names its recipient")]
    RecipientRequired,
    #[error("only a release-of-information consent names a recipient")]
    RecipientNotAllowed,
    #[error(transparent)]
    Recipient(#[from] RecipientError),
    #[error("granted_at cannot be in the future")]
    GrantedInFuture,
    #[error("valid_until must be after granted_at")]
    ValidUntil,
    #[error("evidence_document_id: no such document of this patient")]
    EvidenceNotFound,
    #[error(transparent)]
    Unexpected(Unexpected),
}

/// Why a consent cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("no such consent")]
    NotFound,
    #[error(transparent)]
    Unexpected(Unexpected),
}

/// Why a revocation is refused.
#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    #[error("no such consent")]
    NotFound,
    #[error("the consent is already revoked")]
    AlreadyRevoked,
    #[error(transparent)]
    Unexpected(Unexpected),
}

/// Why [`require`] found no consent in force. Names no recipient.
#[derive(Debug, thiserror::Error)]
pub enum ConsentError {
    #[error("the patient has not consented to {}", scope.as_str())]
    Missing { scope: Scope },
    #[error("the patient's consent to {} was revoked", scope.as_str())]
    Revoked { scope: Scope, consent_id: ConsentId },
    #[error("the patient's consent to {} has expired", scope.as_str())]
    Expired { scope: Scope, consent_id: ConsentId },
    #[error(transparent)]
    Recipient(#[from] RecipientError),
    #[error(transparent)]
    Unexpected(Unexpected),
}

unexpected_from!(GrantError, ReadError, RevokeError, ConsentError);

impl From<Unexpected> for ConsentError {
    fn from(err: Unexpected) -> Self {
        Self::Unexpected(err)
    }
}

impl From<Unexpected> for ReadError {
    fn from(err: Unexpected) -> Self {
        Self::Unexpected(err)
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    patient_id: Uuid,
    scope: String,
    data_key_id: Option<Uuid>,
    recipient_sealed: Option<Vec<u8>>,
    granted_at: OffsetDateTime,
    recorded_by: String,
    valid_until: Option<OffsetDateTime>,
    evidence_document_id: Option<Uuid>,
    revoked_at: Option<OffsetDateTime>,
    revoked_by: Option<String>,
    revocation_reason: Option<String>,
    created_at: OffsetDateTime,
}

const COLUMNS: &str =
    "id, patient_id, scope::text AS scope, data_key_id, recipient_sealed, granted_at,
     recorded_by, valid_until, evidence_document_id, revoked_at, revoked_by,
     revocation_reason::text AS revocation_reason, created_at";

async fn open_row(tx: &mut TenantTx, keyring: &Keyring, row: Row) -> Result<Consent, Unexpected> {
    let recipient = match (row.data_key_id, row.recipient_sealed) {
        (Some(data_key_id), Some(sealed)) => {
            let data_key = keyring.key(tx, data_key_id).await?;
            let plaintext = data_key
                .key
                .open(
                    &sealed,
                    &recipient::aad("consent.recipient", tx.tenant_id(), row.id),
                )
                .ok_or(Unexpected::Undecryptable)?;
            let text = String::from_utf8(plaintext).map_err(|_| Unexpected::Undecryptable)?;
            Some(Recipient::parse(&text).map_err(|_| Unexpected::Undecryptable)?)
        }
        _ => None,
    };
    Ok(Consent {
        id: ConsentId(row.id),
        patient_id: PatientId::new_unchecked(row.patient_id),
        scope: Scope::parse(&row.scope).expect("BUG: the enum matches Scope"),
        recipient,
        granted_at: row.granted_at,
        recorded_by: row.recorded_by,
        valid_until: row.valid_until,
        evidence_document_id: row.evidence_document_id,
        revocation: match (row.revoked_at, row.revoked_by, row.revocation_reason) {
            (Some(at), Some(by), Some(reason)) => Some(Revocation {
                at,
                by,
                reason: RevocationReason::parse(&reason)
                    .expect("BUG: the enum matches RevocationReason"),
            }),
            _ => None,
        },
        created_at: row.created_at,
    })
}

async fn audit_consent(
    tx: &mut TenantTx,
    action: &'static str,
    consent: &Consent,
) -> Result<(), audit::AuditError> {
    let mut entry = crate::audit_entry(tx, action, consent.patient_id);
    entry.details = serde_json::json!({
        "consent_id": consent.id.as_uuid(),
        "scope": consent.scope.as_str(),
    });
    audit::append(tx, entry).await?;
    Ok(())
}

async fn emit(
    tx: &mut TenantTx,
    event_type: &'static str,
    consent: &Consent,
) -> Result<(), sqlx::Error> {
    outbox::emit(
        tx,
        Outbox::Compliance,
        Event {
            event_type,
            event_version: 1,
            aggregate_type: "consent",
            aggregate_id: consent.id.into_uuid(),
            payload: serde_json::json!({
                "consent_id": consent.id.as_uuid(),
                "patient_id": consent.patient_id.as_uuid(),
                "scope": consent.scope.as_str(),
            }),
        },
    )
    .await?;
    Ok(())
}

/// `t` at PostgreSQL's microsecond precision, so a returned consent equals its row.
pub(crate) fn to_stored_precision(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(t.nanosecond() / 1_000 * 1_000)
        .expect("BUG: a truncated nanosecond is in range")
}

/// Records a granted consent of an existing patient, recording `consent.grant` and
/// announcing `consent.granted`.
pub async fn grant(
    tx: &mut TenantTx,
    keyring: &Keyring,
    new: NewConsent,
) -> Result<Consent, GrantError> {
    match (new.scope, &new.recipient) {
        (Scope::ReleaseOfInformation, None) => return Err(GrantError::RecipientRequired),
        (Scope::Treatment | Scope::Telehealth | Scope::Research, Some(_)) => {
            return Err(GrantError::RecipientNotAllowed);
        }
        _ => {}
    }
    let now: OffsetDateTime = sqlx::query_scalar("SELECT now()")
        .fetch_one(&mut **tx)
        .await?;
    let granted_at = new.granted_at.map_or(now, to_stored_precision);
    if granted_at > now {
        return Err(GrantError::GrantedInFuture);
    }
    let valid_until = new.valid_until.map(to_stored_precision);
    if valid_until.is_some_and(|until| until <= granted_at) {
        return Err(GrantError::ValidUntil);
    }
    if clinical::patient::get(tx, new.patient_id).await?.is_none() {
        return Err(GrantError::UnknownPatient);
    }
    // The evidence is a stored document of the same patient (documents' narrow API:
    // metadata only, nothing is opened), held until the grant commits.
    if let Some(document_id) = new.evidence_document_id {
        let document =
            documents::document::get_held(tx, &[documents::DocumentId::new_unchecked(document_id)])
                .await?
                .pop();
        if !document.is_some_and(|document| {
            document.patient_id == new.patient_id && document.status == documents::Status::Stored
        }) {
            return Err(GrantError::EvidenceNotFound);
        }
    }
    let consent = Consent {
        id: ConsentId::generate(),
        patient_id: new.patient_id,
        scope: new.scope,
        recipient: new.recipient,
        granted_at,
        recorded_by: tx.actor().to_owned(),
        valid_until,
        evidence_document_id: new.evidence_document_id,
        revocation: None,
        created_at: now,
    };
    let (data_key_id, sealed, fingerprint) = match &consent.recipient {
        Some(recipient) => {
            let data_key = keyring.active_key(tx).await?;
            let sealed = data_key.key.seal(
                recipient.expose().as_bytes(),
                &recipient::aad("consent.recipient", tx.tenant_id(), consent.id.0),
            );
            (
                Some(data_key.id),
                Some(sealed),
                Some(recipient.fingerprint(&data_key).to_vec()),
            )
        }
        None => (None, None, None),
    };
    sqlx::query(
        "INSERT INTO compliance.consents (tenant_id, id, patient_id, scope, data_key_id, recipient_sealed,
             recipient_fingerprint, granted_at, recorded_by, valid_until, evidence_document_id, created_at)
         VALUES ($1, $2, $3, $4::compliance.consent_scope, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(consent.id.as_uuid())
    .bind(consent.patient_id.as_uuid())
    .bind(consent.scope.as_str())
    .bind(data_key_id)
    .bind(sealed)
    .bind(fingerprint)
    .bind(consent.granted_at)
    .bind(&consent.recorded_by)
    .bind(consent.valid_until)
    .bind(consent.evidence_document_id)
    .bind(consent.created_at)
    .execute(&mut **tx)
    .await?;
    audit_consent(tx, "consent.grant", &consent).await?;
    emit(tx, "consent.granted", &consent).await?;
    Ok(consent)
}

async fn fetch(
    tx: &mut TenantTx,
    keyring: &Keyring,
    consent_id: ConsentId,
    for_update: bool,
) -> Result<Consent, ReadError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM compliance.consents WHERE tenant_id = $1 AND id = $2{}",
        if for_update { " FOR UPDATE" } else { "" }
    );
    let row: Row = sqlx::query_as(&sql)
        .bind(tx.tenant_id().as_uuid())
        .bind(consent_id.as_uuid())
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(ReadError::NotFound)?;
    Ok(open_row(tx, keyring, row).await?)
}

/// Reads one consent, recording `consent.read`.
pub async fn read(
    tx: &mut TenantTx,
    keyring: &Keyring,
    consent_id: ConsentId,
) -> Result<Consent, ReadError> {
    let consent = fetch(tx, keyring, consent_id, false).await?;
    audit_consent(tx, "consent.read", &consent).await?;
    Ok(consent)
}

/// The patient a consent is about, without opening it: what an API checks access
/// against first. `None` if the tenant has no such consent.
pub async fn patient_of(
    tx: &mut TenantTx,
    consent_id: ConsentId,
) -> Result<Option<PatientId>, sqlx::Error> {
    let patient_id: Option<Uuid> = sqlx::query_scalar(
        "SELECT patient_id FROM compliance.consents WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(consent_id.as_uuid())
    .fetch_optional(&mut **tx)
    .await?;
    Ok(patient_id.map(PatientId::new_unchecked))
}

/// A patient's consents, newest grant first (at most [`CONSENTS_MAX`]), recording one
/// `consent.list`.
pub async fn for_patient(
    tx: &mut TenantTx,
    keyring: &Keyring,
    patient_id: PatientId,
) -> Result<Vec<Consent>, ReadError> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM compliance.consents WHERE tenant_id = $1 AND patient_id = $2
         ORDER BY granted_at DESC, id DESC LIMIT $3"
    ))
    .bind(tx.tenant_id().as_uuid())
    .bind(patient_id.as_uuid())
    .bind(CONSENTS_MAX)
    .fetch_all(&mut **tx)
    .await?;
    let mut consents = Vec::with_capacity(rows.len());
    for row in rows {
        consents.push(open_row(tx, keyring, row).await?);
    }
    let mut entry = crate::audit_entry(tx, "consent.list", patient_id);
    entry.details = serde_json::json!({ "n_consents": consents.len() });
    audit::append(tx, entry).await?;
    Ok(consents)
}

/// Revokes a granted consent, recording `consent.revoke` and announcing
/// `consent.revoked`. A revoked consent stays revoked: a second revocation is
/// [`RevokeError::AlreadyRevoked`].
pub async fn revoke(
    tx: &mut TenantTx,
    keyring: &Keyring,
    consent_id: ConsentId,
    reason: RevocationReason,
) -> Result<Consent, RevokeError> {
    let consent = match fetch(tx, keyring, consent_id, true).await {
        Ok(consent) => consent,
        Err(ReadError::NotFound) => return Err(RevokeError::NotFound),
        Err(ReadError::Unexpected(err)) => return Err(RevokeError::Unexpected(err)),
    };
    if consent.revocation.is_some() {
        return Err(RevokeError::AlreadyRevoked);
    }
    let revoked_by = tx.actor().to_owned();
    let revoked_at: Option<OffsetDateTime> = sqlx::query_scalar(
        "UPDATE compliance.consents
         SET status = 'revoked', revoked_at = now(), revoked_by = $3,
             revocation_reason = $4::compliance.revocation_reason
         WHERE tenant_id = $1 AND id = $2 AND status = 'granted'
         RETURNING revoked_at",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(consent_id.as_uuid())
    .bind(&revoked_by)
    .bind(reason.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    let Some(at) = revoked_at else {
        return Err(RevokeError::AlreadyRevoked);
    };
    let consent = Consent {
        revocation: Some(Revocation {
            at,
            by: revoked_by,
            reason,
        }),
        ..consent
    };
    audit_consent(tx, "consent.revoke", &consent).await?;
    emit(tx, "consent.revoked", &consent).await?;
    Ok(consent)
}

/// The consent in force at `at` for `scope` — and, for a release of information, for
/// exactly this recipient (case and spacing aside) — or why there is none: the newest
/// matching record was revoked, or expired, or there is none. Records `consent.check`
/// with the outcome. Features call this before they act, in the transaction that acts.
pub async fn require(
    tx: &mut TenantTx,
    keyring: &Keyring,
    patient_id: PatientId,
    scope: Scope,
    recipient: Option<&Recipient>,
    at: OffsetDateTime,
) -> Result<ConsentId, ConsentError> {
    type Candidate = (
        Uuid,
        Option<Uuid>,
        Option<Vec<u8>>,
        OffsetDateTime,
        Option<OffsetDateTime>,
        Option<OffsetDateTime>,
    );
    let candidates: Vec<Candidate> = sqlx::query_as(
        "SELECT id, data_key_id, recipient_fingerprint, granted_at, valid_until, revoked_at
         FROM compliance.consents
         WHERE tenant_id = $1 AND patient_id = $2 AND scope = $3::compliance.consent_scope
         ORDER BY granted_at DESC, id DESC LIMIT $4",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(patient_id.as_uuid())
    .bind(scope.as_str())
    .bind(CONSENTS_MAX)
    .fetch_all(&mut **tx)
    .await?;
    let mut in_force = None;
    let mut newest_lapsed: Option<ConsentError> = None;
    for (id, data_key_id, fingerprint, granted_at, valid_until, revoked_at) in candidates {
        let consent_id = ConsentId(id);
        if scope == Scope::ReleaseOfInformation {
            // A recipient is matched with the key its consent was sealed with.
            let (Some(recipient), Some(data_key_id), Some(fingerprint)) =
                (recipient, data_key_id, fingerprint)
            else {
                continue;
            };
            let data_key = keyring.key(tx, data_key_id).await?;
            if recipient.fingerprint(&data_key).as_slice() != fingerprint.as_slice() {
                continue;
            }
        }
        if granted_at > at {
            continue;
        }
        if revoked_at.is_some_and(|revoked_at| revoked_at <= at) {
            // A revocation withdraws the patient's consent to this scope (and
            // recipient) as of then: an older grant does not come back into force.
            newest_lapsed.get_or_insert(ConsentError::Revoked { scope, consent_id });
            break;
        } else if valid_until.is_some_and(|until| until <= at) {
            newest_lapsed.get_or_insert(ConsentError::Expired { scope, consent_id });
        } else {
            in_force = Some(consent_id);
            break;
        }
    }
    let outcome = match (&in_force, &newest_lapsed) {
        (Some(_), _) => "in_force",
        (None, Some(ConsentError::Revoked { .. })) => "revoked",
        (None, Some(ConsentError::Expired { .. })) => "expired",
        (None, _) => "missing",
    };
    let mut entry = crate::audit_entry(tx, "consent.check", patient_id);
    entry.details = serde_json::json!({
        "scope": scope.as_str(),
        "outcome": outcome,
        "consent_id": in_force.map(ConsentId::into_uuid),
    });
    audit::append(tx, entry).await?;
    match in_force {
        Some(consent_id) => Ok(consent_id),
        None => Err(newest_lapsed.unwrap_or(ConsentError::Missing { scope })),
    }
}
