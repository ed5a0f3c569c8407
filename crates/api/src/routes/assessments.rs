//! Measurement-based care, automated: plans (admins), enrolments one at a time or in
//! batches, guardianships, backfills and the clinician's due and overdue lists.
//!
//! Everything runs in the tenant's transaction (another tenant's plan, patient or
//! enrolment is 404), is audited by the `assessments` context, and answers problem
//! JSON on bad input. Writes that make one resource take `Idempotency-Key`; batch
//! enrolment and backfill are idempotent by themselves (the same file resumes the
//! same batch; a backfill re-run creates nothing new). Responses carry ids, codes
//! and instants only.

use assessments::PlanDefinition;
use assessments::backfill::{self, BackfillError, BackfillOptions};
use assessments::batch::{self, BatchError, BatchRow, Defaults, FileFormat, RunOptions};
use assessments::due::{self, DueError, DueItem, DueList};
use assessments::enrollment::{self, EnrollError, Enrolled, Enrollment, NewEnrollment, StopError};
use assessments::guardian::{self, GuardianError};
use assessments::plan_store::{self, PlanStoreError, StoredPlan};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use kernel::{Actor, PatientId, Role, UserId};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::admin::created;
use super::idempotency::{self, Idempotency};
use super::patients::access_for;
use crate::auth::{PhiAccess, Session, TenantAdmin};
use crate::body::JsonBody;
use crate::{ApiError, AppState};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/assessments/plans", post(create_plan).get(list_plans))
        .route("/assessments/plans/{id}", get(read_plan).put(update_plan))
        .route("/assessments/plans/{id}/retire", post(retire_plan))
        .route("/assessments/enrollments", post(enroll))
        .route("/assessments/enrollments/batch", post(enroll_batch))
        .route("/assessments/enrollments/{id}", get(read_enrollment))
        .route("/assessments/enrollments/{id}/stop", post(stop_enrollment))
        .route("/assessments/guardians", post(add_guardian))
        .route("/assessments/guardians/end", post(end_guardian))
        .route("/assessments/backfills", post(run_backfill))
        .route("/assessments/due", get(due_list))
}

impl From<PlanStoreError> for ApiError {
    fn from(err: PlanStoreError) -> Self {
        match err {
            PlanStoreError::Invalid(_)
            | PlanStoreError::InvalidName
            | PlanStoreError::InvalidGrace => ApiError::InvalidInput(err.to_string()),
            PlanStoreError::NameTaken => ApiError::Conflict(err.to_string()),
            PlanStoreError::NotFound => ApiError::NotFound,
            PlanStoreError::Retired => ApiError::Conflict(err.to_string()),
            PlanStoreError::Audit(err) => err.into(),
            PlanStoreError::Unexpected(err) => err.into(),
        }
    }
}

impl From<EnrollError> for ApiError {
    fn from(err: EnrollError) -> Self {
        match err {
            EnrollError::PlanNotFound | EnrollError::PatientNotFound => ApiError::NotFound,
            EnrollError::PlanRetired => ApiError::Conflict(err.to_string()),
            EnrollError::InvalidTimeZone => ApiError::InvalidInput(err.to_string()),
            EnrollError::Audit(err) => err.into(),
            EnrollError::Unexpected(err) => err.into(),
        }
    }
}

impl From<StopError> for ApiError {
    fn from(err: StopError) -> Self {
        match err {
            StopError::NotFound => ApiError::NotFound,
            StopError::NotActive => ApiError::Conflict(err.to_string()),
            StopError::Audit(err) => err.into(),
            StopError::Unexpected(err) => err.into(),
        }
    }
}

impl From<GuardianError> for ApiError {
    fn from(err: GuardianError) -> Self {
        match err {
            GuardianError::PatientNotFound | GuardianError::NotFound => ApiError::NotFound,
            GuardianError::EndsBeforeStart | GuardianError::PersonNotFound => {
                ApiError::InvalidInput(err.to_string())
            }
            GuardianError::Audit(err) => err.into(),
            GuardianError::Unexpected(err) => err.into(),
        }
    }
}

impl From<BatchError> for ApiError {
    fn from(err: BatchError) -> Self {
        match err {
            BatchError::PlanNotFound => ApiError::NotFound,
            BatchError::Enroll(err) => err.into(),
            BatchError::Unexpected(err) => err.into(),
        }
    }
}

impl From<BackfillError> for ApiError {
    fn from(err: BackfillError) -> Self {
        match err {
            BackfillError::PlanNotFound => ApiError::NotFound,
            BackfillError::InvalidWindow => ApiError::InvalidInput(err.to_string()),
            BackfillError::Vault(err) => err.into(),
            BackfillError::Audit(err) => err.into(),
            BackfillError::Unexpected(err) => err.into(),
        }
    }
}

impl From<DueError> for ApiError {
    fn from(err: DueError) -> Self {
        match err {
            DueError::Audit(err) => err.into(),
            DueError::Unexpected(err) => err.into(),
        }
    }
}

fn definition(value: serde_json::Value) -> Result<PlanDefinition, ApiError> {
    serde_json::from_value(value).map_err(|err| {
        // serde names the field and what it expected; plans hold no PHI.
        ApiError::InvalidInput(format!("definition: {err}"))
    })
}

/// A measurement plan to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanInput {
    /// Unique within the tenant.
    pub name: String,
    /// A plan definition: rules, cadence, window, local_time, stop,
    /// guardian_access_until_age (see the README).
    #[schema(value_type = Object)]
    pub definition: serde_json::Value,
    /// Hours an instance may stay open past due before the care team is told;
    /// absent: the tenant's default (48).
    pub overdue_grace_hours: Option<u32>,
}

/// A new version of a plan.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanChangeInput {
    #[schema(value_type = Object)]
    pub definition: serde_json::Value,
    pub overdue_grace_hours: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlanView {
    pub id: Uuid,
    pub name: String,
    pub version: i32,
    #[schema(value_type = Object)]
    pub definition: serde_json::Value,
    /// `active` or `retired`.
    pub status: &'static str,
    pub overdue_grace_hours: Option<u32>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

impl From<StoredPlan> for PlanView {
    fn from(plan: StoredPlan) -> Self {
        Self {
            id: plan.id,
            name: plan.name,
            version: plan.version,
            definition: serde_json::to_value(&plan.definition).expect("BUG: a plan serialises"),
            status: if plan.retired { "retired" } else { "active" },
            overdue_grace_hours: plan.overdue_grace_hours,
            updated_at: plan.updated_at,
        }
    }
}

/// Create a measurement plan (version 1).
#[utoipa::path(post, path = "/v1/assessments/plans", tag = "assessments",
    request_body = PlanInput,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses(
        (status = 201, body = PlanView),
        (status = 409, description = "A plan of that name exists", body = crate::error::Problem),
        (status = 422, description = "The plan cannot be carried out as written; the detail names the field", body = crate::error::Problem),
    ),
    security(("bearer" = [])))]
pub async fn create_plan(
    State(state): State<AppState>,
    credential: TenantAdmin,
    headers: HeaderMap,
    body: JsonBody<PlanInput>,
) -> Result<Response, ApiError> {
    let input = body.value;
    let def = definition(input.definition)?;
    let Session { mut tx, .. } = credential.open(&state).await?;
    let path = "/v1/assessments/plans";
    let idempotency = idempotency::claim(&mut tx, &headers, path, &body.bytes).await?;
    if let Idempotency::Replay(outcome) = &idempotency {
        let plan_id = outcome.resource_id.ok_or(ApiError::NotFound)?;
        let plan = plan_store::get(&mut tx, plan_id)
            .await?
            .ok_or(ApiError::NotFound)?;
        tx.commit().await?;
        return Ok(created(format!("{path}/{plan_id}"), PlanView::from(plan)));
    }
    let plan = plan_store::create(
        &mut tx,
        &input.name,
        &def,
        input.overdue_grace_hours,
        OffsetDateTime::now_utc(),
    )
    .await?;
    idempotency
        .record(&mut tx, 201, "assessment_plan", Some(plan.id))
        .await?;
    tx.commit().await?;
    Ok(created(format!("{path}/{}", plan.id), PlanView::from(plan)))
}

/// The tenant's plans.
#[utoipa::path(get, path = "/v1/assessments/plans", tag = "assessments",
    responses((status = 200, body = [PlanView])),
    security(("bearer" = [])))]
pub async fn list_plans(
    State(state): State<AppState>,
    credential: PhiAccess,
) -> Result<Json<Vec<PlanView>>, ApiError> {
    let Session { mut tx, .. } = credential.open(&state).await?;
    let plans = plan_store::list(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(plans.into_iter().map(PlanView::from).collect()))
}

/// A plan, its current version.
#[utoipa::path(get, path = "/v1/assessments/plans/{id}", tag = "assessments",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = PlanView), (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn read_plan(
    State(state): State<AppState>,
    credential: PhiAccess,
    Path(plan_id): Path<Uuid>,
) -> Result<Json<PlanView>, ApiError> {
    let Session { mut tx, .. } = credential.open(&state).await?;
    let plan = plan_store::get(&mut tx, plan_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    tx.commit().await?;
    Ok(Json(plan.into()))
}

/// Replace a plan's definition: a new version, which its active enrolments follow.
#[utoipa::path(put, path = "/v1/assessments/plans/{id}", tag = "assessments",
    params(("id" = Uuid, Path)),
    request_body = PlanChangeInput,
    responses((status = 200, body = PlanView), (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn update_plan(
    State(state): State<AppState>,
    credential: TenantAdmin,
    Path(plan_id): Path<Uuid>,
    body: JsonBody<PlanChangeInput>,
) -> Result<Json<PlanView>, ApiError> {
    let input = body.value;
    let def = definition(input.definition)?;
    let Session { mut tx, .. } = credential.open(&state).await?;
    let plan = plan_store::update(&mut tx, plan_id, &def, input.overdue_grace_hours).await?;
    tx.commit().await?;
    Ok(Json(plan.into()))
}

/// Retire a plan: no new enrolments; existing ones run on.
#[utoipa::path(post, path = "/v1/assessments/plans/{id}/retire", tag = "assessments",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = PlanView), (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn retire_plan(
    State(state): State<AppState>,
    credential: TenantAdmin,
    Path(plan_id): Path<Uuid>,
) -> Result<Json<PlanView>, ApiError> {
    let Session { mut tx, .. } = credential.open(&state).await?;
    let plan = plan_store::retire(&mut tx, plan_id).await?;
    tx.commit().await?;
    Ok(Json(plan.into()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollmentInput {
    pub plan_id: Uuid,
    pub patient_id: Uuid,
    /// Whose due list the instances go to.
    pub clinician_id: Option<Uuid>,
    /// IANA name: `America/New_York`.
    pub time_zone: String,
    /// Where the cadence counts from; default now.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub anchor_at: Option<OffsetDateTime>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EnrollmentView {
    pub id: Uuid,
    pub plan_id: Uuid,
    pub plan_version: i32,
    pub patient_id: Uuid,
    pub clinician_id: Option<Uuid>,
    pub time_zone: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub anchor_at: OffsetDateTime,
    /// `active`, `stopped` or `completed`.
    pub status: String,
    /// A code: `stopped_by_clinician`, `remission`, `responses_reached`, `ended`.
    pub stop_reason: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_evaluation_at: Option<OffsetDateTime>,
}

impl From<Enrollment> for EnrollmentView {
    fn from(e: Enrollment) -> Self {
        Self {
            id: e.id,
            plan_id: e.plan_id,
            plan_version: e.plan_version,
            patient_id: e.patient_id,
            clinician_id: e.clinician_id,
            time_zone: e.time_zone,
            anchor_at: e.anchor_at,
            status: e.status,
            stop_reason: e.stop_reason,
            next_evaluation_at: e.next_evaluation_at,
        }
    }
}

/// Enrol a patient into a plan. 201 for a new enrolment; 200 with the active one when
/// the patient is already enrolled.
#[utoipa::path(post, path = "/v1/assessments/enrollments", tag = "assessments",
    request_body = EnrollmentInput,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses(
        (status = 201, description = "Enrolled", body = EnrollmentView),
        (status = 200, description = "Already enrolled: the active enrolment", body = EnrollmentView),
        (status = 404, description = "No such plan or patient", body = crate::error::Problem),
        (status = 409, description = "The plan is retired", body = crate::error::Problem),
        (status = 422, description = "Invalid input (a time zone that is not IANA)", body = crate::error::Problem),
    ),
    security(("bearer" = [])))]
pub async fn enroll(
    State(state): State<AppState>,
    credential: PhiAccess,
    headers: HeaderMap,
    body: JsonBody<EnrollmentInput>,
) -> Result<Response, ApiError> {
    let input = body.value;
    let Session { mut tx, actor } = credential.open(&state).await?;
    access_for(&mut tx, &actor, PatientId::new_unchecked(input.patient_id)).await?;
    let path = "/v1/assessments/enrollments";
    let idempotency = idempotency::claim(&mut tx, &headers, path, &body.bytes).await?;
    if let Idempotency::Replay(outcome) = &idempotency {
        let id = outcome.resource_id.ok_or(ApiError::NotFound)?;
        let view = enrollment::get(&mut tx, id)
            .await?
            .ok_or(ApiError::NotFound)?;
        tx.commit().await?;
        return Ok(created(format!("{path}/{id}"), EnrollmentView::from(view)));
    }
    let new = NewEnrollment {
        plan_id: input.plan_id,
        patient_id: PatientId::new_unchecked(input.patient_id),
        clinician_id: input.clinician_id.map(UserId::new_unchecked),
        time_zone: input.time_zone,
        anchor_at: input.anchor_at,
    };
    let enrolled = enrollment::enroll_one(&mut tx, &new, OffsetDateTime::now_utc()).await?;
    let id = enrolled.enrollment_id();
    let view = enrollment::get(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    match enrolled {
        Enrolled::New(_) => {
            idempotency
                .record(&mut tx, 201, "assessment_enrollment", Some(id))
                .await?;
            tx.commit().await?;
            Ok(created(format!("{path}/{id}"), EnrollmentView::from(view)))
        }
        Enrolled::Already(_) => {
            tx.commit().await?;
            Ok((StatusCode::OK, Json(EnrollmentView::from(view))).into_response())
        }
    }
}

/// An enrolment.
#[utoipa::path(get, path = "/v1/assessments/enrollments/{id}", tag = "assessments",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = EnrollmentView), (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn read_enrollment(
    State(state): State<AppState>,
    credential: PhiAccess,
    Path(id): Path<Uuid>,
) -> Result<Json<EnrollmentView>, ApiError> {
    let Session { mut tx, actor } = credential.open(&state).await?;
    let view = enrollment::get(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    access_for(&mut tx, &actor, PatientId::new_unchecked(view.patient_id)).await?;
    tx.commit().await?;
    Ok(Json(view.into()))
}

/// Stop an enrolment: its unanswered instances are cancelled.
#[utoipa::path(post, path = "/v1/assessments/enrollments/{id}/stop", tag = "assessments",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = EnrollmentView), (status = 404, body = crate::error::Problem), (status = 409, description = "Already ended", body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn stop_enrollment(
    State(state): State<AppState>,
    credential: PhiAccess,
    Path(id): Path<Uuid>,
) -> Result<Json<EnrollmentView>, ApiError> {
    let Session { mut tx, actor } = credential.open(&state).await?;
    let enrolled = enrollment::get(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    access_for(
        &mut tx,
        &actor,
        PatientId::new_unchecked(enrolled.patient_id),
    )
    .await?;
    enrollment::stop(&mut tx, id, OffsetDateTime::now_utc()).await?;
    let view = enrollment::get(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    tx.commit().await?;
    Ok(Json(view.into()))
}

/// One row of a batch.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRowInput {
    pub patient_id: Option<String>,
    pub clinician_id: Option<String>,
    pub time_zone: Option<String>,
    pub anchor_at: Option<String>,
}

/// Patients to enrol: `csv` (the file's text) or `rows`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchInput {
    pub plan_id: Uuid,
    /// A CSV file's text: a header (`patient_id`, optional `clinician_id`,
    /// `time_zone`, `anchor_at`), a row per line.
    pub csv: Option<String>,
    pub rows: Option<Vec<BatchRowInput>>,
    /// For rows that name none. Default `UTC`.
    pub time_zone: Option<String>,
    pub clinician_id: Option<Uuid>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub anchor_at: Option<OffsetDateTime>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InvalidRowView {
    /// 1 is the first data row.
    pub row: usize,
    /// `invalid_patient_id`, `patient_not_found`, `invalid_time_zone`, ...
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchView {
    pub batch_id: Uuid,
    pub n_rows: usize,
    pub n_enrolled: usize,
    pub n_already_enrolled: usize,
    /// Rows done by an earlier request with the same content.
    pub n_skipped: usize,
    pub invalid: Vec<InvalidRowView>,
    pub finished: bool,
}

/// Enrol many patients: each row is enrolled, already enrolled, or invalid (by row
/// number, with a code). The same content again resumes (and then repeats) the same
/// batch: every row is enrolled once.
#[utoipa::path(post, path = "/v1/assessments/enrollments/batch", tag = "assessments",
    request_body = BatchInput,
    responses((status = 200, body = BatchView), (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn enroll_batch(
    State(state): State<AppState>,
    credential: PhiAccess,
    body: JsonBody<BatchInput>,
) -> Result<Json<BatchView>, ApiError> {
    let input = body.value;
    let (rows, bytes) = match (input.csv, input.rows) {
        (Some(csv), None) => {
            let rows = batch::parse(csv.as_bytes(), FileFormat::Csv)
                .map_err(|err| ApiError::InvalidInput(format!("csv: {err}")))?;
            (rows, csv.into_bytes())
        }
        (None, Some(rows)) => {
            let rows: Vec<BatchRow> = rows
                .into_iter()
                .map(|row| BatchRow {
                    patient_id: row.patient_id,
                    clinician_id: row.clinician_id,
                    time_zone: row.time_zone,
                    anchor_at: row.anchor_at,
                })
                .collect();
            (rows, body.bytes.to_vec())
        }
        _ => {
            return Err(ApiError::InvalidInput(
                "give exactly one of csv and rows".to_owned(),
            ));
        }
    };
    if rows.len() > batch::ROWS_MAX {
        return Err(ApiError::InvalidInput(format!(
            "at most {} rows",
            batch::ROWS_MAX
        )));
    }
    let Session { actor, tx } = credential.open(&state).await?;
    tx.commit().await?;
    // Rows name any patient of the tenant: a tenant-wide act, not a care team's.
    if !matches!(actor.role, Role::Admin | Role::Integration) {
        return Err(ApiError::Forbidden(
            "batch enrolment is for admins and integrations",
        ));
    }
    let defaults = Defaults {
        time_zone: input.time_zone.unwrap_or_else(|| "UTC".to_owned()),
        clinician_id: input.clinician_id.map(UserId::new_unchecked),
        anchor_at: input.anchor_at,
    };
    let report = batch::run(
        &state.pool,
        actor.tenant_id,
        &actor.audit_name(),
        input.plan_id,
        batch::file_sha256(&bytes),
        &rows,
        &defaults,
        RunOptions::default(),
        OffsetDateTime::now_utc(),
        |_| {},
    )
    .await?;
    Ok(Json(BatchView {
        batch_id: report.batch_id,
        n_rows: report.n_rows,
        n_enrolled: report.n_enrolled,
        n_already_enrolled: report.n_already_enrolled,
        n_skipped: report.n_skipped,
        invalid: report
            .invalid
            .into_iter()
            .map(|(row, reason)| InvalidRowView { row, reason })
            .collect(),
        finished: report.finished,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GuardianInput {
    pub patient_id: Uuid,
    /// An identity related-person id.
    pub person_id: Uuid,
    /// `YYYY-MM-DD`: for `add` the first day, for `end` the first day without.
    #[schema(value_type = String, format = Date)]
    pub date: String,
}

fn civil_date(text: &str) -> Result<jiff::civil::Date, ApiError> {
    text.parse()
        .map_err(|_| ApiError::InvalidInput("date: expected YYYY-MM-DD".to_owned()))
}

/// Record a guardianship from `date`; the patient's enrolments are re-evaluated.
#[utoipa::path(post, path = "/v1/assessments/guardians", tag = "assessments",
    request_body = GuardianInput,
    responses((status = 204), (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn add_guardian(
    State(state): State<AppState>,
    credential: PhiAccess,
    body: JsonBody<GuardianInput>,
) -> Result<StatusCode, ApiError> {
    let input = body.value;
    let since = civil_date(&input.date)?;
    let Session { mut tx, actor } = credential.open(&state).await?;
    access_for(&mut tx, &actor, PatientId::new_unchecked(input.patient_id)).await?;
    guardian::add(
        &mut tx,
        PatientId::new_unchecked(input.patient_id),
        input.person_id,
        since,
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// End a guardianship from `date`; the patient's enrolments are re-evaluated.
#[utoipa::path(post, path = "/v1/assessments/guardians/end", tag = "assessments",
    request_body = GuardianInput,
    responses((status = 204), (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn end_guardian(
    State(state): State<AppState>,
    credential: PhiAccess,
    body: JsonBody<GuardianInput>,
) -> Result<StatusCode, ApiError> {
    let input = body.value;
    let until = civil_date(&input.date)?;
    let Session { mut tx, actor } = credential.open(&state).await?;
    access_for(&mut tx, &actor, PatientId::new_unchecked(input.patient_id)).await?;
    guardian::end(
        &mut tx,
        PatientId::new_unchecked(input.patient_id),
        input.person_id,
        until,
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackfillInput {
    pub plan_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub from: OffsetDateTime,
    /// Default now.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub until: Option<OffsetDateTime>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BackfillView {
    pub backfill_id: Uuid,
    pub n_enrollments: i64,
    pub n_created: i64,
    pub finished: bool,
}

/// Make the instances the plan's enrolments should have had over a past window
/// (backfilled: never reminded or escalated). A re-run creates nothing new.
#[utoipa::path(post, path = "/v1/assessments/backfills", tag = "assessments",
    request_body = BackfillInput,
    responses((status = 200, body = BackfillView), (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn run_backfill(
    State(state): State<AppState>,
    credential: TenantAdmin,
    body: JsonBody<BackfillInput>,
) -> Result<Json<BackfillView>, ApiError> {
    let input = body.value;
    let Session { actor, tx } = credential.open(&state).await?;
    tx.commit().await?;
    let now = OffsetDateTime::now_utc();
    let report = backfill::run(
        &state.pool,
        &state.keyring,
        actor.tenant_id,
        &actor.audit_name(),
        input.plan_id,
        input.from,
        input.until.unwrap_or(now),
        now,
        BackfillOptions::default(),
        |_| {},
    )
    .await?;
    Ok(Json(BackfillView {
        backfill_id: report.backfill_id,
        n_enrollments: report.n_enrollments,
        n_created: report.n_created,
        finished: report.finished,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DueQuery {
    /// The clinician whose list this is.
    pub clinician: Uuid,
    /// The overdue list instead: open past due, or missed in the last 30 days.
    #[serde(default)]
    pub overdue: bool,
    /// Due within this many days (default 7).
    pub days: Option<i64>,
    /// At most this many rows (default 100, at most 500).
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DueItemView {
    pub instance_id: Uuid,
    pub enrollment_id: Uuid,
    pub patient_id: Uuid,
    pub instrument: String,
    /// `patient`, `guardian` or `clinician`.
    pub respondent: String,
    pub respondent_person_id: Option<Uuid>,
    /// `scheduled`, `open` or `missed`.
    pub status: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub due_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub opens_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub closes_at: OffsetDateTime,
    pub escalated: bool,
}

impl From<DueItem> for DueItemView {
    fn from(item: DueItem) -> Self {
        Self {
            instance_id: item.instance_id,
            enrollment_id: item.enrollment_id,
            patient_id: item.patient_id,
            instrument: item.instrument_code,
            respondent: item.respondent,
            respondent_person_id: item.respondent_person_id,
            status: item.status,
            due_at: item.due_at,
            opens_at: item.opens_at,
            closes_at: item.closes_at,
            escalated: item.escalated_at.is_some(),
        }
    }
}

/// A clinician's due (or overdue) list, oldest due first. Each patient listed is
/// audited.
#[utoipa::path(get, path = "/v1/assessments/due", tag = "assessments",
    params(DueQuery),
    responses((status = 200, body = [DueItemView]), (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn due_list(
    State(state): State<AppState>,
    credential: PhiAccess,
    Query(query): Query<DueQuery>,
) -> Result<Json<Vec<DueItemView>>, ApiError> {
    let days = query.days.unwrap_or(7);
    if !(0..=366).contains(&days) {
        return Err(ApiError::InvalidInput("days: 0 to 366".to_owned()));
    }
    let now = OffsetDateTime::now_utc();
    let which = if query.overdue {
        DueList::Overdue
    } else {
        DueList::Due {
            until: now + time::Duration::days(days),
        }
    };
    let Session { mut tx, actor } = credential.open(&state).await?;
    let clinician = UserId::new_unchecked(query.clinician);
    own_due_list(&actor, clinician)?;
    let items = due::list(&mut tx, clinician, which, now, query.limit.unwrap_or(100)).await?;
    tx.commit().await?;
    Ok(Json(items.into_iter().map(DueItemView::from).collect()))
}

/// A clinical role reads its own due list only; admins and integrations any
/// clinician's (the list names patients, so it is scoped like a patient record).
fn own_due_list(actor: &Actor, clinician: UserId) -> Result<(), ApiError> {
    match actor.role {
        Role::Admin | Role::Integration => Ok(()),
        _ if actor.user_id == Some(clinician) => Ok(()),
        _ => Err(ApiError::Forbidden(
            "a clinical role reads its own due list only",
        )),
    }
}
