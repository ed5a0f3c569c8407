//! Consents, releases of information and the accounting of disclosures.
//!
//! Access follows the patient: a consent or release is reached through its patient's
//! care team (as `patients` decides), and another tenant's consent is not found.
//! Recording a release without a release-of-information consent in force for that
//! recipient is refused with 403 `consent-required` (the detail says missing, revoked
//! or expired) and records nothing. Recipients and release descriptions are PHI: they
//! travel in bodies only, never in a URL, an error or a log. The tenant-wide report is
//! for admins (with recipients) and auditors (ids, purposes and times only).

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use compliance::consent::{self, Consent, ConsentId};
use compliance::release::{self, Release, ReleaseId};
use compliance::{
    ConsentError, GrantError, NewConsent, NewRelease, Purpose, ReadError, Recipient, ReleaseError,
    RevocationReason, RevokeError, Scope, Unexpected,
};
use db::TenantTx;
use kernel::{Actor, PatientId, Role};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::idempotency::{self, Idempotency};
use super::patients::access_for;
use crate::auth::{AuditReader, PhiAccess, Session};
use crate::body::JsonBody;
use crate::{ApiError, AppState};

/// The widest tenant-wide report, in days.
pub const REPORT_DAYS_MAX: i64 = 366;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/patients/{id}/consents", post(grant).get(list))
        .route("/consents/{id}", get(read))
        .route("/consents/{id}/revoke", post(revoke))
        .route("/patients/{id}/releases", post(record_release))
        .route("/patients/{id}/disclosures", get(patient_disclosures))
        .route("/disclosures", get(disclosure_report))
}

impl From<Unexpected> for ApiError {
    fn from(err: Unexpected) -> Self {
        match err {
            Unexpected::Database(db_err) => db_err.into(),
            Unexpected::Undecryptable | Unexpected::Keyring(_) | Unexpected::Audit(_) => {
                Self::unexpected(err)
            }
        }
    }
}

impl From<GrantError> for ApiError {
    fn from(err: GrantError) -> Self {
        match err {
            // The patient was checked by `access_for` first; one deleted meanwhile is gone.
            GrantError::UnknownPatient => Self::NotFound,
            GrantError::RecipientRequired
            | GrantError::RecipientNotAllowed
            | GrantError::Recipient(_)
            | GrantError::GrantedInFuture
            | GrantError::ValidUntil
            | GrantError::EvidenceNotFound => Self::InvalidInput(err.to_string()),
            GrantError::Unexpected(err) => err.into(),
        }
    }
}

impl From<ReadError> for ApiError {
    fn from(err: ReadError) -> Self {
        match err {
            ReadError::NotFound => Self::NotFound,
            ReadError::Unexpected(err) => err.into(),
        }
    }
}

impl From<RevokeError> for ApiError {
    fn from(err: RevokeError) -> Self {
        match err {
            RevokeError::NotFound => Self::NotFound,
            RevokeError::AlreadyRevoked => Self::Conflict(err.to_string()),
            RevokeError::Unexpected(err) => err.into(),
        }
    }
}

impl From<ConsentError> for ApiError {
    fn from(err: ConsentError) -> Self {
        match err {
            ConsentError::Missing { .. }
            | ConsentError::Revoked { .. }
            | ConsentError::Expired { .. } => Self::ConsentRequired(err.to_string()),
            ConsentError::Recipient(_) => Self::InvalidInput(err.to_string()),
            ConsentError::Unexpected(err) => err.into(),
        }
    }
}

impl From<ReleaseError> for ApiError {
    fn from(err: ReleaseError) -> Self {
        match err {
            ReleaseError::UnknownPatient => Self::NotFound,
            ReleaseError::Recipient(_)
            | ReleaseError::Content
            | ReleaseError::InFuture
            | ReleaseError::UnknownDocument(_) => Self::InvalidInput(err.to_string()),
            ReleaseError::Consent(err) => err.into(),
            ReleaseError::Unexpected(err) => err.into(),
        }
    }
}

/// A consent to record.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewConsentInput {
    /// `treatment`, `telehealth`, `release_of_information` or `research`.
    pub scope: String,
    /// The person or organisation information may be released to: required for
    /// `release_of_information`, refused otherwise. PHI.
    pub recipient: Option<String>,
    /// When the patient gave it (RFC 3339, not in the future); now when omitted.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub granted_at: Option<OffsetDateTime>,
    /// When it lapses (RFC 3339); never when omitted.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub valid_until: Option<OffsetDateTime>,
    /// The signed consent form, a document id.
    pub evidence_document_id: Option<Uuid>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeInput {
    /// `patient_request`, `entered_in_error`, `superseded` or `other`.
    pub reason: String,
}

/// A consent.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConsentView {
    pub id: Uuid,
    pub patient_id: Uuid,
    pub scope: &'static str,
    /// For `release_of_information` only. PHI.
    pub recipient: Option<String>,
    /// `granted` or `revoked`.
    pub status: &'static str,
    /// Granted, started and not expired now.
    pub in_force: bool,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub granted_at: OffsetDateTime,
    /// Who recorded it (`user:…`, `api_key:…`, `operator`).
    pub recorded_by: String,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub valid_until: Option<OffsetDateTime>,
    pub evidence_document_id: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<OffsetDateTime>,
    pub revoked_by: Option<String>,
    pub revocation_reason: Option<&'static str>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConsentList {
    pub consents: Vec<ConsentView>,
}

/// A release of information to record.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewReleaseInput {
    /// Whom it goes to; must match a `release_of_information` consent in force (case
    /// and spacing aside). PHI.
    pub recipient: String,
    /// `treatment`, `payment`, `healthcare_operations`, `patient_request`, `legal`,
    /// `public_health`, `research` or `other`.
    pub purpose: String,
    /// The documents released (up to 100).
    #[serde(default)]
    pub document_ids: Vec<Uuid>,
    /// What was released, in words (up to 2000 characters). PHI. Needed when no
    /// document is named.
    pub description: Option<String>,
    /// When it was released (RFC 3339, not in the future); now when omitted.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub released_at: Option<OffsetDateTime>,
}

/// A release of information. `recipient` and `description` are absent in an
/// auditor's report.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReleaseView {
    pub id: Uuid,
    pub patient_id: Uuid,
    /// The consent it relied on.
    pub consent_id: Uuid,
    pub purpose: &'static str,
    pub document_ids: Vec<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub released_by: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub released_at: OffsetDateTime,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DisclosureList {
    pub releases: Vec<ReleaseView>,
}

/// The tenant's releases in a period.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DisclosureReport {
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub from: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub to: OffsetDateTime,
    pub n_releases: usize,
    /// Whether `recipient` and `description` are shown (admins: yes; auditors: no).
    pub recipients_included: bool,
    pub releases: Vec<ReleaseView>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    /// The start, included (RFC 3339).
    pub from: String,
    /// The end, excluded (RFC 3339); at most 366 days after `from`.
    pub to: String,
}

fn consent_view(consent: &Consent) -> ConsentView {
    let now = OffsetDateTime::now_utc();
    ConsentView {
        id: consent.id.into_uuid(),
        patient_id: consent.patient_id.into_uuid(),
        scope: consent.scope.as_str(),
        recipient: consent
            .recipient
            .as_ref()
            .map(|recipient| recipient.expose().to_owned()),
        status: consent.status().as_str(),
        in_force: consent.is_in_force(now),
        granted_at: consent.granted_at,
        recorded_by: consent.recorded_by.clone(),
        valid_until: consent.valid_until,
        evidence_document_id: consent.evidence_document_id,
        revoked_at: consent.revocation.as_ref().map(|r| r.at),
        revoked_by: consent.revocation.as_ref().map(|r| r.by.clone()),
        revocation_reason: consent.revocation.as_ref().map(|r| r.reason.as_str()),
        created_at: consent.created_at,
    }
}

fn release_view(release: &Release) -> ReleaseView {
    ReleaseView {
        id: release.id.into_uuid(),
        patient_id: release.patient_id.into_uuid(),
        consent_id: release.consent_id.into_uuid(),
        purpose: release.purpose.as_str(),
        document_ids: release.document_ids.clone(),
        recipient: release
            .disclosed
            .as_ref()
            .map(|d| d.recipient.expose().to_owned()),
        description: release
            .disclosed
            .as_ref()
            .and_then(|d| d.description.clone()),
        released_by: release.released_by.clone(),
        released_at: release.released_at,
    }
}

fn created<T: Serialize>(location: String, body: T) -> Response {
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

fn parse_patient(text: &str) -> Result<PatientId, ApiError> {
    // A malformed id names no patient: the same 404 as an unknown one.
    text.parse().map_err(|_| ApiError::NotFound)
}

fn parse_consent_id(text: &str) -> Result<ConsentId, ApiError> {
    text.parse::<Uuid>()
        .map(ConsentId::new_unchecked)
        .map_err(|_| ApiError::NotFound)
}

/// Checks `actor` may reach the consent's patient; another tenant's consent is not
/// found.
async fn authorize_consent(
    tx: &mut TenantTx,
    actor: &Actor,
    consent_id: ConsentId,
) -> Result<(), ApiError> {
    let patient_id = consent::patient_of(tx, consent_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    access_for(tx, actor, patient_id).await?;
    Ok(())
}

/// Record a patient's consent.
#[utoipa::path(post, path = "/v1/patients/{id}/consents", tag = "consents",
    params(("id" = Uuid, Path, description = "Patient id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: the same key and body return the first response")),
    request_body = NewConsentInput,
    responses(
        (status = 201, description = "Granted", body = ConsentView),
        (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem),
        (status = 422, description = "Unknown scope, a recipient missing or out of place, bad times", body = crate::error::Problem),
    ),
    security(("bearer" = [])))]
pub async fn grant(
    State(state): State<AppState>,
    credential: PhiAccess,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: JsonBody<NewConsentInput>,
) -> Result<Response, ApiError> {
    let patient_id = parse_patient(&id)?;
    let input = body.value;
    let scope = Scope::parse(&input.scope).ok_or_else(|| {
        ApiError::InvalidInput(
            "scope must be treatment, telehealth, release_of_information or research".into(),
        )
    })?;
    let recipient = input
        .recipient
        .as_deref()
        .map(Recipient::parse)
        .transpose()
        .map_err(|err| ApiError::InvalidInput(err.to_string()))?;
    let Session { actor, mut tx } = credential.open(&state).await?;
    access_for(&mut tx, &actor, patient_id).await?;
    let path = format!("/patients/{patient_id}/consents");
    let idempotency = idempotency::claim(&mut tx, &headers, &path, &body.bytes).await?;
    let consent = match &idempotency {
        Idempotency::Replay(outcome) => {
            let consent_id =
                ConsentId::new_unchecked(outcome.resource_id.ok_or(ApiError::NotFound)?);
            consent::read(&mut tx, &state.keyring, consent_id).await?
        }
        Idempotency::None | Idempotency::Fresh(_) => {
            let consent = consent::grant(
                &mut tx,
                &state.keyring,
                NewConsent {
                    patient_id,
                    scope,
                    recipient,
                    granted_at: input.granted_at,
                    valid_until: input.valid_until,
                    evidence_document_id: input.evidence_document_id,
                },
            )
            .await?;
            idempotency
                .record(&mut tx, 201, "consent", Some(consent.id.into_uuid()))
                .await?;
            consent
        }
    };
    tx.commit().await?;
    Ok(created(
        format!("/v1/consents/{}", consent.id),
        consent_view(&consent),
    ))
}

/// A patient's consents, newest grant first.
#[utoipa::path(get, path = "/v1/patients/{id}/consents", tag = "consents",
    params(("id" = Uuid, Path, description = "Patient id")),
    responses((status = 200, body = ConsentList), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    credential: PhiAccess,
    Path(id): Path<String>,
) -> Result<Json<ConsentList>, ApiError> {
    let patient_id = parse_patient(&id)?;
    let Session { actor, mut tx } = credential.open(&state).await?;
    access_for(&mut tx, &actor, patient_id).await?;
    let consents = consent::for_patient(&mut tx, &state.keyring, patient_id).await?;
    tx.commit().await?;
    Ok(Json(ConsentList {
        consents: consents.iter().map(consent_view).collect(),
    }))
}

/// Read one consent.
#[utoipa::path(get, path = "/v1/consents/{id}", tag = "consents",
    params(("id" = Uuid, Path, description = "Consent id")),
    responses((status = 200, body = ConsentView), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn read(
    State(state): State<AppState>,
    credential: PhiAccess,
    Path(id): Path<String>,
) -> Result<Json<ConsentView>, ApiError> {
    let consent_id = parse_consent_id(&id)?;
    let Session { actor, mut tx } = credential.open(&state).await?;
    authorize_consent(&mut tx, &actor, consent_id).await?;
    let consent = consent::read(&mut tx, &state.keyring, consent_id).await?;
    tx.commit().await?;
    Ok(Json(consent_view(&consent)))
}

/// Revoke a consent. A revoked consent stays revoked (a second revocation is 409); a
/// new grant is a new consent.
#[utoipa::path(post, path = "/v1/consents/{id}/revoke", tag = "consents",
    params(("id" = Uuid, Path, description = "Consent id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: the same key and body return the first response")),
    request_body = RevokeInput,
    responses(
        (status = 200, description = "Revoked", body = ConsentView),
        (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem),
        (status = 409, description = "Already revoked", body = crate::error::Problem),
        (status = 422, description = "Unknown reason", body = crate::error::Problem),
    ),
    security(("bearer" = [])))]
pub async fn revoke(
    State(state): State<AppState>,
    credential: PhiAccess,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: JsonBody<RevokeInput>,
) -> Result<Json<ConsentView>, ApiError> {
    let consent_id = parse_consent_id(&id)?;
    let reason = RevocationReason::parse(&body.value.reason).ok_or_else(|| {
        ApiError::InvalidInput(
            "reason must be patient_request, entered_in_error, superseded or other".into(),
        )
    })?;
    let Session { actor, mut tx } = credential.open(&state).await?;
    authorize_consent(&mut tx, &actor, consent_id).await?;
    let path = format!("/consents/{consent_id}/revoke");
    let idempotency = idempotency::claim(&mut tx, &headers, &path, &body.bytes).await?;
    let consent = match &idempotency {
        Idempotency::Replay(_) => consent::read(&mut tx, &state.keyring, consent_id).await?,
        Idempotency::None | Idempotency::Fresh(_) => {
            let consent = consent::revoke(&mut tx, &state.keyring, consent_id, reason).await?;
            idempotency
                .record(&mut tx, 200, "consent", Some(consent_id.into_uuid()))
                .await?;
            consent
        }
    };
    tx.commit().await?;
    Ok(Json(consent_view(&consent)))
}

/// Record a release of a patient's information to a named recipient. Refused with 403
/// `consent-required`, recording nothing, unless a `release_of_information` consent
/// for that recipient is in force at the release time.
#[utoipa::path(post, path = "/v1/patients/{id}/releases", tag = "consents",
    params(("id" = Uuid, Path, description = "Patient id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: the same key and body return the first response")),
    request_body = NewReleaseInput,
    responses(
        (status = 201, description = "Recorded", body = ReleaseView),
        (status = 403, description = "`consent-required`: no consent in force for this recipient (missing, revoked or expired); or `forbidden`", body = crate::error::Problem),
        (status = 404, body = crate::error::Problem),
        (status = 422, description = "Unknown purpose, bad recipient, nothing said of what was released", body = crate::error::Problem),
    ),
    security(("bearer" = [])))]
pub async fn record_release(
    State(state): State<AppState>,
    credential: PhiAccess,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: JsonBody<NewReleaseInput>,
) -> Result<Response, ApiError> {
    let patient_id = parse_patient(&id)?;
    let input = body.value;
    let purpose = Purpose::parse(&input.purpose).ok_or_else(|| {
        ApiError::InvalidInput(
            "purpose must be treatment, payment, healthcare_operations, patient_request, legal, public_health, research or other".into(),
        )
    })?;
    let recipient = Recipient::parse(&input.recipient)
        .map_err(|err| ApiError::InvalidInput(err.to_string()))?;
    let Session { actor, mut tx } = credential.open(&state).await?;
    access_for(&mut tx, &actor, patient_id).await?;
    let path = format!("/patients/{patient_id}/releases");
    let idempotency = idempotency::claim(&mut tx, &headers, &path, &body.bytes).await?;
    let release = match &idempotency {
        Idempotency::Replay(outcome) => {
            let release_id =
                ReleaseId::new_unchecked(outcome.resource_id.ok_or(ApiError::NotFound)?);
            release::read(&mut tx, &state.keyring, release_id)
                .await?
                .ok_or(ApiError::NotFound)?
        }
        Idempotency::None | Idempotency::Fresh(_) => {
            let release = release::record(
                &mut tx,
                &state.keyring,
                NewRelease {
                    patient_id,
                    recipient,
                    purpose,
                    document_ids: input.document_ids,
                    description: input.description,
                    released_at: input.released_at,
                },
            )
            .await?;
            idempotency
                .record(&mut tx, 201, "release", Some(release.id.into_uuid()))
                .await?;
            release
        }
    };
    tx.commit().await?;
    Ok(created(
        format!("/v1/patients/{patient_id}/disclosures"),
        release_view(&release),
    ))
}

/// A patient's accounting of disclosures: every release of their information, newest
/// first, with recipients.
#[utoipa::path(get, path = "/v1/patients/{id}/disclosures", tag = "consents",
    params(("id" = Uuid, Path, description = "Patient id")),
    responses((status = 200, body = DisclosureList), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn patient_disclosures(
    State(state): State<AppState>,
    credential: PhiAccess,
    Path(id): Path<String>,
) -> Result<Json<DisclosureList>, ApiError> {
    let patient_id = parse_patient(&id)?;
    let Session { actor, mut tx } = credential.open(&state).await?;
    access_for(&mut tx, &actor, patient_id).await?;
    let releases = release::for_patient(&mut tx, &state.keyring, patient_id).await?;
    tx.commit().await?;
    Ok(Json(DisclosureList {
        releases: releases.iter().map(release_view).collect(),
    }))
}

/// The tenant's releases of information in `[from, to)`, oldest first. Admins see
/// recipients and descriptions; auditors see ids, purposes, documents and times only.
#[utoipa::path(get, path = "/v1/disclosures", tag = "consents", params(ReportQuery),
    responses((status = 200, body = DisclosureReport), (status = 403, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn disclosure_report(
    State(state): State<AppState>,
    credential: AuditReader,
    query: Result<Query<ReportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<DisclosureReport>, ApiError> {
    let bad_period = || {
        ApiError::InvalidInput(format!(
            "query parameters are `from` and `to`, RFC 3339 times, `from` before `to`, at most {REPORT_DAYS_MAX} days apart"
        ))
    };
    let Query(query) = query.map_err(|_| bad_period())?;
    let from = OffsetDateTime::parse(&query.from, &Rfc3339).map_err(|_| bad_period())?;
    let to = OffsetDateTime::parse(&query.to, &Rfc3339).map_err(|_| bad_period())?;
    if to <= from || to - from > time::Duration::days(REPORT_DAYS_MAX) {
        return Err(bad_period());
    }
    let Session { actor, mut tx } = credential.open(&state).await?;
    // Recipients are PHI: an auditor reviews the accounting, not whom it names.
    let reveal = (actor.role == Role::Admin).then_some(&state.keyring);
    let releases = release::report(&mut tx, reveal, from, to).await?;
    tx.commit().await?;
    Ok(Json(DisclosureReport {
        from,
        to,
        n_releases: releases.len(),
        recipients_included: reveal.is_some(),
        releases: releases.iter().map(release_view).collect(),
    }))
}
