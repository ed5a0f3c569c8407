//! A tenant's durable jobs and dead letters, for its admins: list, inspect, retry,
//! cancel, discard. The same functions as `tenet jobs` and `tenet deadletters`, run in
//! the request's own transaction, so row-level security shows a tenant its jobs only
//! and another tenant's job id answers 404.

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use kernel::JobId;
use platform::dead_letters::{self, DeadLetterError, Detail};
use platform::jobs::admin::{self, AdminError, JobRow};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{Session, TenantAdmin};
use crate::{ApiError, AppState};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/jobs", get(list))
        .route("/jobs/{id}", get(read))
        .route("/jobs/{id}/retry", post(retry))
        .route("/jobs/{id}/cancel", post(cancel))
        .route("/dead-letters", get(dead_letters))
        .route("/dead-letters/{id}/retry", post(retry_dead_letter))
        .route("/dead-letters/{id}/discard", post(discard))
}

/// A job as its tenant's admins see it: arguments are ids and codes, never PHI.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    pub id: Uuid,
    /// Dotted: `platform.probe`.
    pub kind: String,
    pub args_version: i32,
    pub args: serde_json::Value,
    pub queue: String,
    pub priority: i16,
    /// `scheduled`, `running`, `succeeded`, `retrying`, `dead` or `cancelled`.
    pub state: String,
    pub attempts: i32,
    pub attempts_max: i32,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub run_at: OffsetDateTime,
    pub last_error: Option<String>,
    pub unique_key: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<OffsetDateTime>,
    /// When an admin took it off the dead letters.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub discarded_at: Option<OffsetDateTime>,
}

impl From<JobRow> for JobView {
    fn from(job: JobRow) -> Self {
        Self {
            id: job.id,
            kind: job.kind,
            args_version: job.args_version,
            args: job.args,
            queue: job.queue,
            priority: job.priority,
            state: job.state,
            attempts: job.attempts,
            attempts_max: job.attempts_max,
            run_at: job.run_at,
            last_error: job.last_error,
            unique_key: job.unique_key,
            created_at: job.created_at,
            finished_at: job.finished_at,
            discarded_at: job.discarded_at,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct JobsQuery {
    /// Only jobs in this state.
    pub state: Option<String>,
    /// At most this many, 1 to 1000 (default 50).
    pub limit: Option<i64>,
}

type QueryResult<T> = Result<Query<T>, axum::extract::rejection::QueryRejection>;

fn limit(limit: Option<i64>) -> Result<i64, ApiError> {
    let limit = limit.unwrap_or(50);
    if (1..=admin::LIST_LEN_MAX).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::InvalidInput("limit must be 1 to 1000".into()))
    }
}

impl From<AdminError> for ApiError {
    fn from(err: AdminError) -> Self {
        match err {
            AdminError::NotFound(_) => ApiError::NotFound,
            AdminError::WrongState { .. } | AdminError::UniqueKeyTaken(_) => {
                ApiError::Conflict(err.to_string())
            }
            AdminError::Unexpected(err) => err.into(),
        }
    }
}

/// The tenant's jobs, newest first.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(JobsQuery),
    responses((status = 200, body = Vec<JobView>), (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    credential: TenantAdmin,
    query: QueryResult<JobsQuery>,
) -> Result<Json<Vec<JobView>>, ApiError> {
    let Query(query) = query.map_err(|_| {
        ApiError::InvalidInput("query parameters are `state` and `limit` (1 to 1000)".into())
    })?;
    let job_state = match query.state.as_deref() {
        Some(job_state) if !admin::STATES.contains(&job_state) => {
            return Err(ApiError::InvalidInput(format!(
                "state must be one of {}",
                admin::STATES.join(", ")
            )));
        }
        job_state => job_state,
    };
    let limit = limit(query.limit)?;
    let Session { mut tx, .. } = credential.open(&state).await?;
    let jobs = admin::list(&mut tx, job_state, None, limit).await?;
    tx.commit().await?;
    Ok(Json(jobs.into_iter().map(JobView::from).collect()))
}

/// One job: its arguments, attempts and last error.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = Uuid, Path, description = "Job id")),
    responses((status = 200, body = JobView), (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn read(
    State(state): State<AppState>,
    credential: TenantAdmin,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let job_id = parse_job_id(&id)?;
    let Session { mut tx, .. } = credential.open(&state).await?;
    let job = admin::show(&mut tx, job_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    tx.commit().await?;
    Ok(Json(job.into()))
}

/// Run a dead, cancelled or retrying job again now, with its attempts reset.
#[utoipa::path(post, path = "/v1/jobs/{id}/retry", tag = "jobs",
    params(("id" = Uuid, Path, description = "Job id")),
    responses((status = 200, body = JobView), (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn retry(
    State(state): State<AppState>,
    credential: TenantAdmin,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    act(state, credential, parse_job_id(&id)?, Action::Retry).await
}

/// Cancel a job that has not finished; a running job's effects roll back.
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs",
    params(("id" = Uuid, Path, description = "Job id")),
    responses((status = 200, body = JobView), (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn cancel(
    State(state): State<AppState>,
    credential: TenantAdmin,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    act(state, credential, parse_job_id(&id)?, Action::Cancel).await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeadLettersQuery {
    /// At most this many, 1 to 1000 (default 50).
    pub limit: Option<i64>,
}

/// Work that failed past its attempts: a job, or an event's delivery to a webhook, a
/// handler or NATS.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterView {
    /// The job's or the delivery's id.
    pub id: Uuid,
    /// `job` or `delivery`.
    pub source: String,
    /// The job's kind, or the delivery's consumer and event type.
    pub what: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub dead_since: Option<OffsetDateTime>,
}

/// What became of a dead letter an admin acted on.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterOutcome {
    pub id: Uuid,
    /// `job` or `delivery`.
    pub source: String,
    /// Its state now: `scheduled` or `pending` after a retry; `dead` (a job, kept
    /// off the list) or `discarded` (a delivery) after a discard.
    pub state: String,
}

impl From<DeadLetterError> for ApiError {
    fn from(err: DeadLetterError) -> Self {
        match err {
            DeadLetterError::NotFound(_) => ApiError::NotFound,
            DeadLetterError::NotDead(..) => ApiError::Conflict(err.to_string()),
            DeadLetterError::Job(err) => err.into(),
            DeadLetterError::Unexpected(err) => err.into(),
        }
    }
}

/// Dead jobs and deliveries not discarded, most recently dead first.
#[utoipa::path(get, path = "/v1/dead-letters", tag = "jobs", params(DeadLettersQuery),
    responses((status = 200, body = Vec<DeadLetterView>), (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn dead_letters(
    State(state): State<AppState>,
    credential: TenantAdmin,
    query: QueryResult<DeadLettersQuery>,
) -> Result<Json<Vec<DeadLetterView>>, ApiError> {
    let Query(query) = query
        .map_err(|_| ApiError::InvalidInput("the query parameter is `limit` (1 to 1000)".into()))?;
    let limit = limit(query.limit)?;
    let Session { mut tx, .. } = credential.open(&state).await?;
    let letters = dead_letters::list(&mut tx, None, limit).await?;
    tx.commit().await?;
    Ok(Json(
        letters
            .into_iter()
            .map(|letter| DeadLetterView {
                id: letter.id,
                source: letter.source.to_string(),
                what: letter.what,
                attempts: letter.attempts,
                last_error: letter.last_error,
                dead_since: letter.dead_since,
            })
            .collect(),
    ))
}

/// Run a dead letter again now, with fresh attempts.
#[utoipa::path(post, path = "/v1/dead-letters/{id}/retry", tag = "jobs",
    params(("id" = Uuid, Path, description = "The dead job's or delivery's id")),
    responses((status = 200, body = DeadLetterOutcome), (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn retry_dead_letter(
    State(state): State<AppState>,
    credential: TenantAdmin,
    Path(id): Path<String>,
) -> Result<Json<DeadLetterOutcome>, ApiError> {
    act_on_dead_letter(state, credential, &id, DeadLetterAction::Retry).await
}

/// Take a dead letter off the list; it stays recorded.
#[utoipa::path(post, path = "/v1/dead-letters/{id}/discard", tag = "jobs",
    params(("id" = Uuid, Path, description = "The dead job's or delivery's id")),
    responses((status = 200, body = DeadLetterOutcome), (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn discard(
    State(state): State<AppState>,
    credential: TenantAdmin,
    Path(id): Path<String>,
) -> Result<Json<DeadLetterOutcome>, ApiError> {
    act_on_dead_letter(state, credential, &id, DeadLetterAction::Discard).await
}

#[derive(Debug, Clone, Copy)]
enum DeadLetterAction {
    Retry,
    Discard,
}

/// Does `action` to the tenant's dead letter `id` and answers what became of it.
async fn act_on_dead_letter(
    state: AppState,
    credential: TenantAdmin,
    id: &str,
    action: DeadLetterAction,
) -> Result<Json<DeadLetterOutcome>, ApiError> {
    let id = *parse_job_id(id)?.as_uuid();
    let Session { mut tx, .. } = credential.open(&state).await?;
    match action {
        DeadLetterAction::Retry => dead_letters::retry(&mut tx, id).await?,
        DeadLetterAction::Discard => dead_letters::discard(&mut tx, id).await?,
    };
    let outcome = outcome(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(outcome))
}

async fn outcome(tx: &mut db::TenantTx, id: Uuid) -> Result<DeadLetterOutcome, ApiError> {
    Ok(
        match dead_letters::show(tx, id)
            .await?
            .ok_or(ApiError::NotFound)?
        {
            Detail::Job(job) => DeadLetterOutcome {
                id,
                source: "job".to_owned(),
                state: job.state,
            },
            Detail::Delivery(detail) => DeadLetterOutcome {
                id,
                source: "delivery".to_owned(),
                state: detail.delivery.state,
            },
        },
    )
}

/// A job id from the path: one that does not parse names no job.
fn parse_job_id(id: &str) -> Result<JobId, ApiError> {
    id.parse::<Uuid>()
        .map(JobId::new_unchecked)
        .map_err(|_| ApiError::NotFound)
}

#[derive(Debug, Clone, Copy)]
enum Action {
    Retry,
    Cancel,
}

/// Does `action` to the tenant's job `id` and answers the job as it is now.
async fn act(
    state: AppState,
    credential: TenantAdmin,
    job_id: JobId,
    action: Action,
) -> Result<Json<JobView>, ApiError> {
    let Session { mut tx, .. } = credential.open(&state).await?;
    match action {
        Action::Retry => admin::retry(&mut tx, job_id).await?,
        Action::Cancel => admin::cancel(&mut tx, job_id).await?,
    }
    let job = admin::show(&mut tx, job_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    tx.commit().await?;
    Ok(Json(job.into()))
}
