//! A tenant's schedules, for its admins: create, list, show, change, enable, disable,
//! delete. The same functions as `tenet schedules`, run in the request's own
//! transaction, so row-level security shows a tenant its schedules only and another
//! tenant's schedule id answers 404.
//!
//! A schedule may name only a job kind this deployment runs ([`AppState::jobs`]),
//! with arguments that kind accepts: a schedule that could never run is refused when
//! it is made, not found dead later. Slots are computed from the database's clock,
//! so every node agrees on them.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use platform::jobs::JobError;
use platform::schedules::cron::CronError;
use platform::schedules::{
    self, CatchUp, ErasedScheduleSpec, ScheduleChange, ScheduleError, ScheduleId, ScheduleRow,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::admin::created;
use super::idempotency::{self, Idempotency};
use crate::auth::{Session, TenantAdmin};
use crate::body::JsonBody;
use crate::{ApiError, AppState};

/// A schedule's job's attempts when the request does not say: the job kinds'
/// usual default.
pub const ATTEMPTS_MAX_DEFAULT: u32 = 10;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/schedules", post(create).get(list))
        .route("/schedules/{id}", get(read).patch(update).delete(remove))
        .route("/schedules/{id}/enable", post(enable))
        .route("/schedules/{id}/disable", post(disable))
}

/// What a scheduler does with slots it reaches late.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CatchUpDto {
    /// Fire only the most recent missed slot (the default).
    Skip,
    /// Fire every missed slot, oldest first (at most the 100 most recent).
    All,
    /// Fire none of the missed slots.
    None,
}

impl From<CatchUpDto> for CatchUp {
    fn from(catch_up: CatchUpDto) -> Self {
        match catch_up {
            CatchUpDto::Skip => CatchUp::Skip,
            CatchUpDto::All => CatchUp::All,
            CatchUpDto::None => CatchUp::None,
        }
    }
}

impl From<CatchUp> for CatchUpDto {
    fn from(catch_up: CatchUp) -> Self {
        match catch_up {
            CatchUp::Skip => CatchUpDto::Skip,
            CatchUp::All => CatchUpDto::All,
            CatchUp::None => CatchUpDto::None,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleInput {
    /// Unique within the tenant: `nightly-reassessments`.
    pub name: String,
    /// Five fields (minute hour day-of-month month day-of-week) or a macro (`@daily`),
    /// read on the zone's wall clock.
    pub cron: String,
    /// IANA name: `America/New_York`.
    pub time_zone: String,
    /// A job kind this deployment runs: `platform.noop`.
    pub job_kind: String,
    pub args_version: u32,
    /// The job's arguments, as that kind and version read them. Ids and codes only:
    /// never PHI.
    pub args: serde_json::Value,
    /// Default `default`; 1 to 100 of a-z, 0-9, `.`, `_` and `-`.
    pub queue: Option<String>,
    /// Default 0; lower runs first, within the tenant.
    pub priority: Option<i16>,
    /// Attempts of each job before it is dead, 1 to 100 (default 10).
    pub attempts_max: Option<u32>,
    /// Default `skip`.
    pub catch_up: Option<CatchUpDto>,
    /// Default true.
    pub enabled: Option<bool>,
}

/// A change to a schedule's timing or handling; an absent field stays as it is. A
/// new cron or zone drops the old definition's pending slot.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleChangeInput {
    pub cron: Option<String>,
    pub time_zone: Option<String>,
    pub catch_up: Option<CatchUpDto>,
    pub queue: Option<String>,
    pub priority: Option<i16>,
    pub attempts_max: Option<u32>,
}

/// A schedule, with its next and last slots.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleView {
    pub id: Uuid,
    pub name: String,
    /// As written, trimmed.
    pub cron: String,
    pub time_zone: String,
    pub job_kind: String,
    pub args_version: i32,
    pub args: serde_json::Value,
    pub queue: String,
    pub priority: i16,
    pub attempts_max: i32,
    pub catch_up: CatchUpDto,
    pub enabled: bool,
    /// The slot due next; absent while disabled.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_slot_at: Option<OffsetDateTime>,
    /// The last slot fired.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_slot_at: Option<OffsetDateTime>,
    /// When the last slot was fired.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_fired_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

impl From<ScheduleRow> for ScheduleView {
    fn from(row: ScheduleRow) -> Self {
        Self {
            catch_up: row.catch_up().into(),
            id: row.id,
            name: row.name,
            cron: row.cron,
            time_zone: row.time_zone,
            job_kind: row.job_kind,
            args_version: row.args_version,
            args: row.args,
            queue: row.queue,
            priority: row.priority,
            attempts_max: row.attempts_max,
            enabled: row.enabled,
            next_slot_at: row.next_slot_at,
            last_slot_at: row.last_slot_at,
            last_fired_at: row.last_fired_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

impl From<ScheduleError> for ApiError {
    fn from(err: ScheduleError) -> Self {
        match err {
            ScheduleError::Cron(CronError::UnknownTimeZone(_)) => {
                ApiError::InvalidInput(format!("time_zone: {err}"))
            }
            ScheduleError::Cron(
                CronError::FieldCount(_)
                | CronError::Field { .. }
                | CronError::UnknownMacro(_)
                | CronError::TooLong
                | CronError::NeverMatches,
            ) => ApiError::InvalidInput(format!("cron: {err}")),
            ScheduleError::InvalidName => ApiError::InvalidInput(format!("name: {err}")),
            ScheduleError::InvalidQueue => ApiError::InvalidInput(format!("queue: {err}")),
            ScheduleError::InvalidAttempts => {
                ApiError::InvalidInput(format!("attempts_max: {err}"))
            }
            ScheduleError::InvalidKind => ApiError::InvalidInput(format!("job_kind: {err}")),
            ScheduleError::NameTaken => ApiError::Conflict(err.to_string()),
            ScheduleError::NotFound => ApiError::NotFound,
            // Only typed arguments are serialised, never the API's JSON ones.
            ScheduleError::Arguments(_) => ApiError::unexpected(err),
            ScheduleError::Unexpected(err) => err.into(),
        }
    }
}

/// Checks that this deployment runs `job_kind` and that it accepts `args`. The
/// messages name the kind (a registered name) but never echo the arguments.
fn check_job(
    state: &AppState,
    job_kind: &str,
    args_version: u32,
    args: &serde_json::Value,
) -> Result<(), ApiError> {
    if !state.jobs.names().iter().any(|name| name == job_kind) {
        return Err(ApiError::InvalidInput(
            "job_kind: this deployment runs no job kind of that name".into(),
        ));
    }
    if !state.jobs.is_schedulable(job_kind) {
        return Err(ApiError::InvalidInput(format!(
            "job_kind: {job_kind} is run by its own machinery and cannot be scheduled"
        )));
    }
    match state.jobs.check_args(job_kind, args_version, args.clone()) {
        Ok(()) => Ok(()),
        Err(JobError::Retry(_) | JobError::Fail(_)) => Err(ApiError::InvalidInput(format!(
            "args: not arguments of {job_kind} version {args_version}"
        ))),
        Err(JobError::Database(err)) => Err(err.into()),
    }
}

/// The database's clock: every node computes slots from the same one.
async fn database_now(tx: &mut db::TenantTx) -> Result<OffsetDateTime, ApiError> {
    Ok(sqlx::query_scalar("SELECT now()")
        .fetch_one(&mut **tx)
        .await?)
}

/// Create a schedule. Its first slot is the first after now.
#[utoipa::path(post, path = "/v1/schedules", tag = "schedules", request_body = ScheduleInput,
    responses(
        (status = 201, body = ScheduleView),
        (status = 409, body = crate::error::Problem, description = "The tenant has a schedule of that name"),
        (status = 422, body = crate::error::Problem, description = "A bad cron or zone (with the parser's message), an unknown job kind, or arguments it does not accept")),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    credential: TenantAdmin,
    headers: HeaderMap,
    body: JsonBody<ScheduleInput>,
) -> Result<Response, ApiError> {
    let Session { mut tx, .. } = credential.open(&state).await?;
    let input = &body.value;
    let idempotency = idempotency::claim(&mut tx, &headers, "/v1/schedules", &body.bytes).await?;
    let schedule_id = match &idempotency {
        Idempotency::Replay(outcome) => {
            ScheduleId::new_unchecked(outcome.resource_id.ok_or(ApiError::NotFound)?)
        }
        Idempotency::None | Idempotency::Fresh(_) => {
            check_job(&state, &input.job_kind, input.args_version, &input.args)?;
            let now = database_now(&mut tx).await?;
            let schedule_id = schedules::create_erased(
                &mut tx,
                ErasedScheduleSpec {
                    name: input.name.clone(),
                    cron: input.cron.clone(),
                    time_zone: input.time_zone.clone(),
                    job_kind: input.job_kind.clone(),
                    args_version: input.args_version,
                    args: input.args.clone(),
                    queue: input.queue.clone().unwrap_or_else(|| "default".to_owned()),
                    priority: input.priority.unwrap_or(0),
                    attempts_max: input.attempts_max.unwrap_or(ATTEMPTS_MAX_DEFAULT),
                    catch_up: input.catch_up.map_or(CatchUp::default(), CatchUp::from),
                    enabled: input.enabled.unwrap_or(true),
                },
                now,
            )
            .await?;
            idempotency
                .record(&mut tx, 201, "schedule", Some(*schedule_id.as_uuid()))
                .await?;
            schedule_id
        }
    };
    let schedule = schedules::get(&mut tx, schedule_id).await?;
    tx.commit().await?;
    Ok(created(
        format!("/v1/schedules/{schedule_id}"),
        ScheduleView::from(schedule),
    ))
}

/// The tenant's schedules by name, with their next and last slots.
#[utoipa::path(get, path = "/v1/schedules", tag = "schedules",
    responses((status = 200, body = Vec<ScheduleView>)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    credential: TenantAdmin,
) -> Result<Json<Vec<ScheduleView>>, ApiError> {
    let Session { mut tx, .. } = credential.open(&state).await?;
    let rows = schedules::list(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(rows.into_iter().map(ScheduleView::from).collect()))
}

/// One schedule.
#[utoipa::path(get, path = "/v1/schedules/{id}", tag = "schedules",
    params(("id" = Uuid, Path, description = "Schedule id")),
    responses((status = 200, body = ScheduleView), (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn read(
    State(state): State<AppState>,
    credential: TenantAdmin,
    Path(id): Path<String>,
) -> Result<Json<ScheduleView>, ApiError> {
    let schedule_id = parse_id(&id)?;
    let Session { mut tx, .. } = credential.open(&state).await?;
    let schedule = schedules::get(&mut tx, schedule_id).await?;
    tx.commit().await?;
    Ok(Json(schedule.into()))
}

/// Change a schedule's cron, zone, catch-up policy, queue, priority or attempts. A
/// new cron or zone takes effect from its first slot after now.
#[utoipa::path(patch, path = "/v1/schedules/{id}", tag = "schedules", request_body = ScheduleChangeInput,
    params(("id" = Uuid, Path, description = "Schedule id")),
    responses((status = 200, body = ScheduleView), (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    credential: TenantAdmin,
    Path(id): Path<String>,
    body: JsonBody<ScheduleChangeInput>,
) -> Result<Json<ScheduleView>, ApiError> {
    let schedule_id = parse_id(&id)?;
    let Session { mut tx, .. } = credential.open(&state).await?;
    let input = body.value;
    let now = database_now(&mut tx).await?;
    let schedule = schedules::update(
        &mut tx,
        schedule_id,
        ScheduleChange {
            cron: input.cron,
            time_zone: input.time_zone,
            catch_up: input.catch_up.map(CatchUp::from),
            queue: input.queue,
            priority: input.priority,
            attempts_max: input.attempts_max,
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(Json(schedule.into()))
}

/// Start a disabled schedule again from its first slot after now; slots that came
/// while it was disabled are not fired.
#[utoipa::path(post, path = "/v1/schedules/{id}/enable", tag = "schedules",
    params(("id" = Uuid, Path, description = "Schedule id")),
    responses((status = 200, body = ScheduleView), (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn enable(
    State(state): State<AppState>,
    credential: TenantAdmin,
    Path(id): Path<String>,
) -> Result<Json<ScheduleView>, ApiError> {
    let schedule_id = parse_id(&id)?;
    let Session { mut tx, .. } = credential.open(&state).await?;
    let now = database_now(&mut tx).await?;
    schedules::enable(&mut tx, schedule_id, now).await?;
    let schedule = schedules::get(&mut tx, schedule_id).await?;
    tx.commit().await?;
    Ok(Json(schedule.into()))
}

/// Stop a schedule firing. What it fired stays recorded.
#[utoipa::path(post, path = "/v1/schedules/{id}/disable", tag = "schedules",
    params(("id" = Uuid, Path, description = "Schedule id")),
    responses((status = 200, body = ScheduleView), (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn disable(
    State(state): State<AppState>,
    credential: TenantAdmin,
    Path(id): Path<String>,
) -> Result<Json<ScheduleView>, ApiError> {
    let schedule_id = parse_id(&id)?;
    let Session { mut tx, .. } = credential.open(&state).await?;
    schedules::disable(&mut tx, schedule_id).await?;
    let schedule = schedules::get(&mut tx, schedule_id).await?;
    tx.commit().await?;
    Ok(Json(schedule.into()))
}

/// Delete a schedule and its record of fired slots. Jobs it fired stay. Prefer
/// disabling where that record matters.
#[utoipa::path(delete, path = "/v1/schedules/{id}", tag = "schedules",
    params(("id" = Uuid, Path, description = "Schedule id")),
    responses((status = 204), (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn remove(
    State(state): State<AppState>,
    credential: TenantAdmin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let schedule_id = parse_id(&id)?;
    let Session { mut tx, .. } = credential.open(&state).await?;
    schedules::delete(&mut tx, schedule_id).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A schedule id from the path: one that does not parse names no schedule.
fn parse_id(id: &str) -> Result<ScheduleId, ApiError> {
    id.parse::<ScheduleId>().map_err(|_| ApiError::NotFound)
}
