//! Assessment responses, score history, one-time links and safety events.
//!
//! Staff endpoints take a bearer credential and the same care-team rule as a
//! patient's record (`patients::access_for`): admins and integrations reach every
//! patient of the tenant, clinical roles their care team's (a clinician also under a
//! break-glass grant). The two link endpoints take no account: the link token
//! (`Authorization: Bearer at_…`) names its tenant and its one instance. Tokens never
//! travel in URLs; neither do answers, scores or instrument choices beyond a code.

use assessments::link::{self, LinkClaim, LinkError};
use assessments::response::{
    self, Answerer, ChangeRecord, ScoreRecord, StoredResponse, Submission, SubmitError, Submitter,
    Unexpected,
};
use assessments::safety::{self, AcknowledgeError, Filter, SafetyEvent, Scope};
use assessments::{Instrument, InstrumentCode};
use axum::extract::FromRequestParts;
use axum::extract::{Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use db::TenantTx;
use identity::vault::Access;
use kernel::{Actor, PatientId, Role};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::idempotency::{self, Idempotency};
use super::patients::{access_for, created, parse_patient_id, routine_purpose};
use crate::auth::{PhiAccess, Session};
use crate::body::JsonBody;
use crate::{ApiError, AppState, CurrentRequest};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/assessments/responses", post(submit))
        .route("/assessments/responses/{id}", get(read))
        .route("/patients/{id}/assessments/scores", get(scores))
        .route("/assessments/instances/{id}/link", post(issue_link))
        .route("/assessment-link/form", get(link_form))
        .route("/assessment-link/responses", post(link_submit))
        .route("/assessments/safety-events", get(safety_events))
        .route(
            "/assessments/safety-events/{id}/acknowledge",
            post(acknowledge),
        )
}

impl From<Unexpected> for ApiError {
    fn from(err: Unexpected) -> Self {
        match err {
            Unexpected::Database(db_err) => db_err.into(),
            other => Self::unexpected(other),
        }
    }
}

impl From<SubmitError> for ApiError {
    fn from(err: SubmitError) -> Self {
        match err {
            SubmitError::PatientNotFound | SubmitError::InstanceNotFound => Self::NotFound,
            SubmitError::UnknownInstrument { .. }
            | SubmitError::UnknownInstrumentCode { .. }
            | SubmitError::InstrumentMismatch { .. }
            | SubmitError::RespondentMismatch { .. }
            | SubmitError::RespondentRequired
            | SubmitError::TooManyAnswers
            | SubmitError::Invalid(_) => Self::InvalidInput(err.to_string()),
            SubmitError::AlreadyAnswered | SubmitError::NotOpenYet | SubmitError::Closed { .. } => {
                Self::Conflict(err.to_string())
            }
            SubmitError::NotAClinician => {
                Self::Forbidden("only a clinician may answer a clinician-rated instrument")
            }
            SubmitError::GuardianWithoutAccess => {
                Self::Forbidden("this guardian has no access to the patient's assessments")
            }
            SubmitError::Unexpected(unexpected) => unexpected.into(),
        }
    }
}

impl From<LinkError> for ApiError {
    fn from(err: LinkError) -> Self {
        match err {
            LinkError::InstanceNotFound | LinkError::Unknown => Self::NotFound,
            LinkError::InstanceClosed => Self::Conflict(err.to_string()),
            LinkError::ClinicianRated => Self::InvalidInput(err.to_string()),
            LinkError::Used => Self::Gone("this link was already used"),
            LinkError::Expired => Self::Gone("this link has expired"),
            LinkError::Submit(submit) => submit.into(),
            LinkError::Unexpected(unexpected) => unexpected.into(),
        }
    }
}

impl From<AcknowledgeError> for ApiError {
    fn from(err: AcknowledgeError) -> Self {
        match err {
            AcknowledgeError::NotFound => Self::NotFound,
            AcknowledgeError::AlreadyAcknowledged => Self::Conflict(err.to_string()),
            AcknowledgeError::Unexpected(unexpected) => unexpected.into(),
        }
    }
}

/// Who answered, as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RespondentDto {
    Patient,
    ParentGuardian,
    Clinician,
}

fn respondent_dto(answerer: Answerer) -> (RespondentDto, Option<Uuid>) {
    match answerer {
        Answerer::Patient => (RespondentDto::Patient, None),
        Answerer::Guardian(person_id) => (RespondentDto::ParentGuardian, Some(person_id)),
        Answerer::Clinician => (RespondentDto::Clinician, None),
    }
}

/// One answer: an item code and the value of the option chosen.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerDto {
    pub item: String,
    pub value: u8,
}

/// A questionnaire to submit.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResponseInput {
    pub patient_id: Uuid,
    /// The due instance answered; omit for an unscheduled response.
    pub instance_id: Option<Uuid>,
    /// The instrument code, e.g. `phq-9`.
    pub instrument: String,
    /// The instrument version; the instance's, or the latest, when omitted.
    pub version: Option<u16>,
    /// Who answered; the instance's respondent when omitted (required without one).
    pub respondent: Option<RespondentDto>,
    /// The guardian (an identity related-person id), for `parent_guardian`.
    pub respondent_person_id: Option<Uuid>,
    /// Unanswered items are left out.
    pub answers: Vec<AnswerDto>,
}

/// A change between two scores.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChangeView {
    /// Later minus earlier: negative is fewer symptoms.
    pub delta: i32,
    /// `reliably_improved`, `reliably_deteriorated` or `not_reliable`.
    pub reliability: &'static str,
}

fn change_view(change: ChangeRecord) -> ChangeView {
    ChangeView {
        delta: change.delta,
        reliability: change.reliability.as_str(),
    }
}

/// Progress since the patient's first response on the instrument (PHQ-9, GAD-7).
#[derive(Debug, Serialize, ToSchema)]
pub struct ProgressView {
    pub baseline_response_id: Uuid,
    pub since_baseline: ChangeView,
    pub previous_response_id: Option<Uuid>,
    pub since_previous: Option<ChangeView>,
    /// At least a 50% fall from the baseline.
    pub response: bool,
    /// Below the instrument's remission threshold (5).
    pub remission: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SubscaleView {
    pub code: String,
    pub total: u16,
    pub n_endorsed: u8,
    pub criterion_met: Option<bool>,
    pub positive_screen: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ScoreView {
    pub total: u16,
    pub band: String,
    pub band_label: String,
    pub positive_screen: Option<bool>,
    pub subscales: Vec<SubscaleView>,
    pub provisional_diagnosis: Option<bool>,
    /// `self_harm`, `suicide_attempt_history`, `safety_item_unanswered`.
    pub flags: Vec<String>,
    pub prorated_items: Vec<String>,
    pub unanswered_items: Vec<String>,
    pub progress: Option<ProgressView>,
}

fn progress_view(record: response::ProgressRecord) -> ProgressView {
    ProgressView {
        baseline_response_id: record.baseline_response_id,
        since_baseline: change_view(record.since_baseline),
        previous_response_id: record.previous_response_id,
        since_previous: record.since_previous.map(change_view),
        response: record.response,
        remission: record.remission,
    }
}

fn score_view(record: ScoreRecord) -> ScoreView {
    ScoreView {
        total: record.total,
        band: record.band,
        band_label: record.band_label,
        positive_screen: record.positive_screen,
        subscales: record
            .subscales
            .into_iter()
            .map(|subscale| SubscaleView {
                code: subscale.code,
                total: subscale.total,
                n_endorsed: subscale.n_endorsed,
                criterion_met: subscale.criterion_met,
                positive_screen: subscale.positive_screen,
            })
            .collect(),
        provisional_diagnosis: record.provisional_diagnosis,
        flags: record.flags,
        prorated_items: record.prorated_items,
        unanswered_items: record.unanswered_items,
        progress: record.progress.map(progress_view),
    }
}

/// A stored response, scored.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResponseView {
    pub id: Uuid,
    pub patient_id: Uuid,
    pub instance_id: Option<Uuid>,
    pub instrument: String,
    pub version: u16,
    pub respondent: RespondentDto,
    pub respondent_person_id: Option<Uuid>,
    /// `user:<id>`, `api_key:<id>` or `link:<id>`.
    pub submitted_by: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub submitted_at: OffsetDateTime,
    pub answers: Vec<AnswerDto>,
    pub score: ScoreView,
    /// The open safety event this response raised, if any.
    pub safety_event_id: Option<Uuid>,
}

fn response_view(stored: StoredResponse, safety_event_id: Option<Uuid>) -> ResponseView {
    let (respondent, respondent_person_id) = respondent_dto(stored.answerer);
    ResponseView {
        id: stored.id,
        patient_id: stored.patient_id.into_uuid(),
        instance_id: stored.instance_id,
        instrument: stored.instrument,
        version: stored.version,
        respondent,
        respondent_person_id,
        submitted_by: stored.submitted_by,
        submitted_at: stored.submitted_at,
        answers: stored
            .answers
            .into_iter()
            .map(|(item, value)| AnswerDto { item, value })
            .collect(),
        score: score_view(stored.score),
        safety_event_id,
    }
}

fn parse_id(text: &str) -> Result<Uuid, ApiError> {
    // A malformed id names nothing: the same 404 as an unknown one.
    Uuid::try_parse(text).map_err(|_| ApiError::NotFound)
}

fn parse_instrument(text: &str) -> Result<InstrumentCode, ApiError> {
    InstrumentCode::parse(text).map_err(|_| {
        ApiError::InvalidInput("instrument must be an instrument code such as phq-9".into())
    })
}

fn answers_of(answers: Vec<AnswerDto>) -> Vec<(String, u8)> {
    answers
        .into_iter()
        .map(|answer| (answer.item, answer.value))
        .collect()
}

/// The safety event a response raised (read in the request's transaction).
async fn safety_event_of(tx: &mut TenantTx, response_id: Uuid) -> Result<Option<Uuid>, ApiError> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM assessments.safety_events WHERE tenant_id = $1 AND response_id = $2",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(response_id)
    .fetch_optional(&mut **tx)
    .await?)
}

/// Submit a questionnaire for a patient (entered by staff, or clinician-rated).
#[utoipa::path(post, path = "/v1/assessments/responses", tag = "assessments",
    request_body = ResponseInput,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: the same key and body return the first response")),
    responses(
        (status = 201, description = "Stored and scored; a self-harm answer has raised a safety event", body = ResponseView),
        (status = 403, description = "Not on the care team, a guardian without access, or a clinician-rated form from a non-clinician", body = crate::error::Problem),
        (status = 404, description = "No such patient or instance", body = crate::error::Problem),
        (status = 409, description = "The instance was already answered, is closed or not open yet", body = crate::error::Problem),
        (status = 422, description = "Answers that cannot be scored (the detail names the items), an unknown instrument", body = crate::error::Problem),
    ),
    security(("bearer" = [])))]
pub async fn submit(
    State(state): State<AppState>,
    credential: PhiAccess,
    headers: HeaderMap,
    body: JsonBody<ResponseInput>,
) -> Result<Response, ApiError> {
    let input = body.value;
    let patient_id = PatientId::new_unchecked(input.patient_id);
    let instrument = parse_instrument(&input.instrument)?;
    let answerer = match (input.respondent, input.respondent_person_id) {
        (None, None) => None,
        (Some(RespondentDto::Patient), None) => Some(Answerer::Patient),
        (Some(RespondentDto::Clinician), None) => Some(Answerer::Clinician),
        (Some(RespondentDto::ParentGuardian), Some(person_id)) => {
            Some(Answerer::Guardian(person_id))
        }
        _ => {
            return Err(ApiError::InvalidInput(
                "respondent_person_id goes with respondent parent_guardian, and only with it"
                    .into(),
            ));
        }
    };
    let Session { actor, mut tx } = credential.open(&state).await?;
    let (_, access) = access_for(&mut tx, &actor, patient_id).await?;
    let path = "/v1/assessments/responses";
    let idempotency = idempotency::claim(&mut tx, &headers, path, &body.bytes).await?;
    let view = if let Idempotency::Replay(outcome) = &idempotency {
        let response_id = outcome.resource_id.ok_or(ApiError::NotFound)?;
        let stored = response::get(&mut tx, response_id, &access)
            .await?
            .ok_or(ApiError::NotFound)?;
        let safety_event_id = safety_event_of(&mut tx, response_id).await?;
        response_view(stored, safety_event_id)
    } else {
        let submitted = response::submit(
            &mut tx,
            &state.keyring,
            &Submitter::Staff(actor.clone()),
            Submission {
                patient_id,
                instance_id: input.instance_id,
                instrument,
                version: input.version,
                answerer,
                answers: answers_of(input.answers),
            },
        )
        .await?;
        idempotency
            .record(
                &mut tx,
                201,
                "assessment_response",
                Some(submitted.response_id),
            )
            .await?;
        let stored = response::get(&mut tx, submitted.response_id, &access)
            .await?
            .ok_or(ApiError::NotFound)?;
        response_view(stored, submitted.safety_event_id)
    };
    tx.commit().await?;
    Ok(created(format!("{path}/{}", view.id), view))
}

/// Read a response: answers, score and progress.
#[utoipa::path(get, path = "/v1/assessments/responses/{id}", tag = "assessments",
    params(("id" = Uuid, Path, description = "Response id")),
    responses((status = 200, body = ResponseView), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn read(
    State(state): State<AppState>,
    credential: PhiAccess,
    Path(id): Path<String>,
) -> Result<Json<ResponseView>, ApiError> {
    let response_id = parse_id(&id)?;
    let Session { actor, mut tx } = credential.open(&state).await?;
    let patient_id = response::patient_of(&mut tx, response_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let (_, access) = access_for(&mut tx, &actor, patient_id).await?;
    let stored = response::get(&mut tx, response_id, &access)
        .await?
        .ok_or(ApiError::NotFound)?;
    let safety_event_id = safety_event_of(&mut tx, response_id).await?;
    tx.commit().await?;
    Ok(Json(response_view(stored, safety_event_id)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ScoresQuery {
    /// An instrument code, e.g. `phq-9`; every instrument when omitted.
    pub instrument: Option<String>,
}

/// One point of a score history.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScorePointView {
    pub response_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
    pub instrument: String,
    pub version: u16,
    pub respondent: RespondentDto,
    pub total: u16,
    pub band: String,
    pub flags: Vec<String>,
    /// Change since the baseline and the previous response, with response and
    /// remission; only for instruments that define them (PHQ-9, GAD-7).
    pub progress: Option<ProgressView>,
}

/// A patient's score history, oldest first: ready for a chart.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScoreHistory {
    pub patient_id: Uuid,
    pub instrument: Option<String>,
    pub points: Vec<ScorePointView>,
}

/// A patient's scores over time (the latest 500), oldest first.
#[utoipa::path(get, path = "/v1/patients/{id}/assessments/scores", tag = "assessments",
    params(("id" = Uuid, Path, description = "Patient id"), ScoresQuery),
    responses((status = 200, body = ScoreHistory), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn scores(
    State(state): State<AppState>,
    credential: PhiAccess,
    Path(id): Path<String>,
    query: Result<Query<ScoresQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ScoreHistory>, ApiError> {
    let patient_id = parse_patient_id(&id)?;
    let Query(query) = query.map_err(|_| {
        ApiError::InvalidInput("the query parameter is `instrument` (an instrument code)".into())
    })?;
    let instrument = query
        .instrument
        .as_deref()
        .map(parse_instrument)
        .transpose()?;
    let Session { actor, mut tx } = credential.open(&state).await?;
    let (_, access) = access_for(&mut tx, &actor, patient_id).await?;
    let points = response::history(&mut tx, patient_id, instrument.as_ref(), &access).await?;
    tx.commit().await?;
    Ok(Json(ScoreHistory {
        patient_id: patient_id.into_uuid(),
        instrument: instrument.map(|code| code.as_str().to_owned()),
        points: points
            .into_iter()
            .map(|point| ScorePointView {
                response_id: point.response_id,
                at: point.submitted_at,
                instrument: point.instrument,
                version: point.version,
                respondent: respondent_dto(point.respondent).0,
                total: point.total,
                band: point.band,
                flags: point.flags,
                progress: point.progress.map(progress_view),
            })
            .collect(),
    }))
}

/// A one-time link, shown once.
#[derive(Debug, Serialize, ToSchema)]
pub struct LinkView {
    pub id: Uuid,
    pub instance_id: Uuid,
    /// `at_…`: send it to the respondent (in a URL fragment, never a query string);
    /// absent on an idempotent replay, since only its hash is kept.
    pub token: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
}

/// Issue a one-time link for an instance answered by the patient or a guardian.
#[utoipa::path(post, path = "/v1/assessments/instances/{id}/link", tag = "assessments",
    params(("id" = Uuid, Path, description = "Instance id"), ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe; a replay does not show the token again")),
    responses((status = 201, body = LinkView), (status = 404, body = crate::error::Problem), (status = 409, description = "The instance can no longer be answered", body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn issue_link(
    State(state): State<AppState>,
    credential: PhiAccess,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let instance_id = parse_id(&id)?;
    let Session { actor, mut tx } = credential.open(&state).await?;
    let patient_id = link::instance_patient(&mut tx, instance_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    access_for(&mut tx, &actor, patient_id).await?;
    let path = format!("/v1/assessments/instances/{instance_id}/link");
    let idempotency = idempotency::claim(&mut tx, &headers, &path, b"").await?;
    let view = if let Idempotency::Replay(outcome) = &idempotency {
        let link_id = outcome.resource_id.ok_or(ApiError::NotFound)?;
        let expires_at: OffsetDateTime = sqlx::query_scalar(
            "SELECT expires_at FROM assessments.link_tokens WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tx.tenant_id().as_uuid())
        .bind(link_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(ApiError::NotFound)?;
        LinkView {
            id: link_id,
            instance_id,
            token: None,
            expires_at,
        }
    } else {
        let new_link = link::issue(&mut tx, instance_id).await?;
        idempotency
            .record(&mut tx, 201, "assessment_link", Some(new_link.id))
            .await?;
        LinkView {
            id: new_link.id,
            instance_id,
            token: Some(new_link.token),
            expires_at: new_link.expires_at,
        }
    };
    tx.commit().await?;
    Ok(created(path, view))
}

/// A link token from `Authorization: Bearer at_…`, not yet checked.
pub struct LinkToken {
    claim: LinkClaim,
    request_id: Option<kernel::RequestId>,
}

impl FromRequestParts<AppState> for LinkToken {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let claim = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                value
                    .strip_prefix("Bearer ")
                    .or_else(|| value.strip_prefix("bearer "))
            })
            .and_then(|token| LinkClaim::parse(token.trim()))
            // A garbled token names no link: the same answer as an unknown one.
            .ok_or(ApiError::NotFound)?;
        Ok(Self {
            claim,
            request_id: parts
                .extensions
                .get::<CurrentRequest>()
                .map(|current| current.0),
        })
    }
}

impl LinkToken {
    /// A transaction of the token's tenant, acting as the link.
    async fn begin(&self, state: &AppState) -> Result<TenantTx, ApiError> {
        let mut tx = TenantTx::begin_as(
            &state.pool,
            self.claim.tenant_id,
            &self.claim.actor_name(),
            self.request_id,
        )
        .await?;
        if !identity::tenant::is_active(&mut tx).await? {
            return Err(ApiError::NotFound);
        }
        Ok(tx)
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OptionView {
    pub value: u8,
    pub label: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ItemView {
    pub code: &'static str,
    pub text: &'static str,
    pub options: Vec<OptionView>,
}

/// The form a link opens: the instrument, never anything about the patient.
#[derive(Debug, Serialize, ToSchema)]
pub struct FormView {
    pub instrument: String,
    pub version: u16,
    pub title: &'static str,
    pub prompt: &'static str,
    pub respondent: RespondentDto,
    pub items: Vec<ItemView>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
}

fn form_view(
    instrument: &'static Instrument,
    answerer: Answerer,
    expires_at: OffsetDateTime,
) -> FormView {
    FormView {
        instrument: instrument.code().as_str().to_owned(),
        version: instrument.version(),
        title: instrument.title(),
        prompt: instrument.prompt(),
        respondent: respondent_dto(answerer).0,
        items: instrument
            .items()
            .iter()
            .map(|item| ItemView {
                code: item.code(),
                text: item.text(),
                options: item
                    .options()
                    .iter()
                    .map(|option| OptionView {
                        value: option.value(),
                        label: option.label(),
                    })
                    .collect(),
            })
            .collect(),
        expires_at,
    }
}

/// The questionnaire a one-time link opens (no account: the link is the credential).
#[utoipa::path(get, path = "/v1/assessment-link/form", tag = "assessments",
    responses(
        (status = 200, body = FormView),
        (status = 404, description = "Not a valid link", body = crate::error::Problem),
        (status = 410, description = "The link was used or has expired", body = crate::error::Problem),
    ),
    security(("link" = [])))]
pub async fn link_form(
    State(state): State<AppState>,
    token: LinkToken,
) -> Result<Json<FormView>, ApiError> {
    let mut tx = token.begin(&state).await?;
    let linked = link::open(&mut tx, &token.claim).await?;
    tx.commit().await?;
    Ok(Json(form_view(
        linked.instrument,
        linked.answerer,
        linked.expires_at,
    )))
}

/// The longest `Idempotency-Key` a link submission accepts (the stored key adds the
/// link's id in front).
const LINK_KEY_LEN_MAX: usize = 200;

/// Claims the request's `Idempotency-Key` in the link's own namespace: respondents
/// share a tenant but not keys, so one respondent's key never answers (or refuses)
/// another's request.
async fn claim_for_link(
    tx: &mut TenantTx,
    headers: &HeaderMap,
    claim: &LinkClaim,
    body: &[u8],
) -> Result<Idempotency, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(Idempotency::None);
    };
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|key| {
            !key.is_empty()
                && key.len() <= LINK_KEY_LEN_MAX
                && key.chars().all(|c| c.is_ascii_graphic())
        })
        .ok_or_else(|| {
            ApiError::InvalidInput(format!(
                "Idempotency-Key must be 1 to {LINK_KEY_LEN_MAX} visible ASCII characters"
            ))
        })?;
    let scoped = format!("link:{}:{key}", claim.token_id.simple());
    let hash = platform::idempotency::request_hash("POST", "/v1/assessment-link/responses", body);
    match platform::idempotency::claim(tx, &scoped, &hash).await? {
        platform::idempotency::Claim::Fresh => Ok(Idempotency::Fresh(scoped)),
        platform::idempotency::Claim::Replay(outcome) => Ok(Idempotency::Replay(outcome)),
        platform::idempotency::Claim::Mismatch => Err(ApiError::IdempotencyKeyReused),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkAnswersInput {
    pub answers: Vec<AnswerDto>,
}

/// What the respondent is told: that it was received, not how it scored.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReceivedView {
    pub response_id: Uuid,
}

/// Submit the answers of a one-time link. The link is spent only when they are stored.
#[utoipa::path(post, path = "/v1/assessment-link/responses", tag = "assessments",
    request_body = LinkAnswersInput,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: the same key and body return the first response")),
    responses(
        (status = 201, body = ReceivedView),
        (status = 403, description = "The guardian no longer has access", body = crate::error::Problem),
        (status = 404, description = "Not a valid link", body = crate::error::Problem),
        (status = 409, description = "The instance was answered or closed", body = crate::error::Problem),
        (status = 410, description = "The link was used or has expired", body = crate::error::Problem),
        (status = 422, description = "Answers that cannot be scored (the detail names the items)", body = crate::error::Problem),
    ),
    security(("link" = [])))]
pub async fn link_submit(
    State(state): State<AppState>,
    token: LinkToken,
    headers: HeaderMap,
    body: JsonBody<LinkAnswersInput>,
) -> Result<Response, ApiError> {
    let mut tx = token.begin(&state).await?;
    // The secret first: a replay answers only the link's holder.
    link::authenticate(&mut tx, &token.claim).await?;
    let idempotency = claim_for_link(&mut tx, &headers, &token.claim, &body.bytes).await?;
    let response_id = if let Idempotency::Replay(outcome) = &idempotency {
        outcome.resource_id.ok_or(ApiError::NotFound)?
    } else {
        let submitted = link::submit(
            &mut tx,
            &state.keyring,
            &token.claim,
            answers_of(body.value.answers),
        )
        .await?;
        idempotency
            .record(
                &mut tx,
                201,
                "assessment_response",
                Some(submitted.response_id),
            )
            .await?;
        submitted.response_id
    };
    tx.commit().await?;
    Ok(axum::response::IntoResponse::into_response((
        StatusCode::CREATED,
        Json(ReceivedView { response_id }),
    )))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SafetyQuery {
    /// `open` (the default) or `all`.
    pub status: Option<String>,
    pub patient_id: Option<Uuid>,
    /// 1 to 200 (default 50).
    pub limit: Option<i64>,
}

/// An urgent safety event: ids and times only.
#[derive(Debug, Serialize, ToSchema)]
pub struct SafetyEventView {
    pub id: Uuid,
    pub patient_id: Uuid,
    pub response_id: Uuid,
    /// `self_harm`.
    pub kind: &'static str,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub raised_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub acknowledged_at: Option<OffsetDateTime>,
    pub acknowledged_by: Option<Uuid>,
}

impl From<SafetyEvent> for SafetyEventView {
    fn from(event: SafetyEvent) -> Self {
        Self {
            id: event.id,
            patient_id: event.patient_id.into_uuid(),
            response_id: event.response_id,
            kind: event.kind.as_str(),
            raised_at: event.raised_at,
            acknowledged_at: event.acknowledged_at,
            acknowledged_by: event.acknowledged_by.map(|id| id.into_uuid()),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SafetyEventList {
    pub events: Vec<SafetyEventView>,
}

fn scope_of(actor: &Actor) -> Result<Scope, ApiError> {
    match (actor.role, actor.user_id) {
        (Role::Admin | Role::Integration, _) => Ok(Scope::Tenant),
        (Role::Clinician | Role::CareCoordinator, Some(user_id)) => Ok(Scope::CareTeamOf(user_id)),
        (Role::Clinician | Role::CareCoordinator, None) => Err(ApiError::Forbidden(
            "a clinical role needs a personal credential to see safety events",
        )),
        (Role::Auditor, _) => Err(ApiError::Forbidden(
            "this role does not access patient records",
        )),
    }
}

/// Safety events, newest first: the tenant's for admins and integrations, one's care
/// team's patients' for clinical roles.
#[utoipa::path(get, path = "/v1/assessments/safety-events", tag = "assessments", params(SafetyQuery),
    responses((status = 200, body = SafetyEventList), (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn safety_events(
    State(state): State<AppState>,
    credential: PhiAccess,
    query: Result<Query<SafetyQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SafetyEventList>, ApiError> {
    let Query(query) = query.map_err(|_| {
        ApiError::InvalidInput(
            "query parameters are `status` (open or all), `patient_id` and `limit` (1 to 200)"
                .into(),
        )
    })?;
    let open_only = match query.status.as_deref() {
        None | Some("open") => true,
        Some("all") => false,
        Some(_) => return Err(ApiError::InvalidInput("status must be open or all".into())),
    };
    let limit = query.limit.unwrap_or(50);
    if !(1..=safety::LIST_LEN_MAX).contains(&limit) {
        return Err(ApiError::InvalidInput("limit must be 1 to 200".into()));
    }
    let Session { actor, mut tx } = credential.open(&state).await?;
    let scope = scope_of(&actor)?;
    let access = Access {
        purpose: Some(routine_purpose(actor.role).to_owned()),
        break_glass: false,
    };
    let events = safety::list(
        &mut tx,
        scope,
        Filter {
            open_only,
            patient_id: query.patient_id.map(PatientId::new_unchecked),
            limit,
        },
        &access,
    )
    .await?;
    tx.commit().await?;
    Ok(Json(SafetyEventList {
        events: events.into_iter().map(SafetyEventView::from).collect(),
    }))
}

/// Acknowledge a safety event: you have taken charge of it.
#[utoipa::path(post, path = "/v1/assessments/safety-events/{id}/acknowledge", tag = "assessments",
    params(("id" = Uuid, Path, description = "Safety event id"), ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses((status = 200, body = SafetyEventView), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem), (status = 409, description = "Already acknowledged", body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn acknowledge(
    State(state): State<AppState>,
    credential: PhiAccess,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<SafetyEventView>, ApiError> {
    let event_id = parse_id(&id)?;
    let Session { actor, mut tx } = credential.open(&state).await?;
    let patient_id = safety::patient_of(&mut tx, event_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let (_, access) = access_for(&mut tx, &actor, patient_id).await?;
    let Some(user_id) = actor.user_id else {
        return Err(ApiError::Forbidden(
            "acknowledging is personal: use a credential of a user",
        ));
    };
    let path = format!("/v1/assessments/safety-events/{event_id}/acknowledge");
    let idempotency = idempotency::claim(&mut tx, &headers, &path, b"").await?;
    let event = if let Idempotency::Replay(_) = &idempotency {
        safety::get(&mut tx, event_id, &access)
            .await?
            .ok_or(ApiError::NotFound)?
    } else {
        let event = safety::acknowledge(&mut tx, event_id, user_id).await?;
        idempotency
            .record(&mut tx, 200, "assessment_safety_event", Some(event_id))
            .await?;
        event
    };
    tx.commit().await?;
    Ok(Json(event.into()))
}
