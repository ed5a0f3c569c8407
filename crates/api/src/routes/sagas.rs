//! A tenant's sagas, for its admins: where one stands and what each step did. Read in
//! the request's own transaction, so row-level security shows a tenant its sagas
//! only and another tenant's saga id answers 404. Sagas are started by the contexts
//! that own them, never over this API.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use platform::sagas::{self, SagaId, SagaRow, StepLogRow};
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{Session, TenantAdmin};
use crate::{ApiError, AppState};

pub fn router() -> Router<AppState> {
    Router::new().route("/sagas/{id}", get(read))
}

/// A saga: its state, where it is, its data and what each step did.
#[derive(Debug, Serialize, ToSchema)]
pub struct SagaView {
    pub id: Uuid,
    /// Dotted: `assessments.enroll_patient`.
    pub kind: String,
    /// `running`, `compensating`, `completed`, `compensated` or `failed`.
    pub state: String,
    /// The index of the step running (or being compensated) now, from 0.
    pub step: i32,
    pub n_steps: i32,
    /// What the steps share: ids and codes only, never PHI.
    pub data: serde_json::Value,
    /// Why the saga is compensating or failed.
    pub last_error: Option<String>,
    /// The job driving it, while it is running or compensating.
    pub job_id: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<OffsetDateTime>,
    /// Every step and compensation run, in order.
    pub step_log: Vec<StepLogView>,
}

/// One run of a step or of its compensation.
#[derive(Debug, Serialize, ToSchema)]
pub struct StepLogView {
    /// 1, 2, … in the order they ran.
    pub n: i32,
    pub step: i32,
    pub step_name: String,
    /// `execute` or `compensate`.
    pub action: String,
    /// `done` or `failed`.
    pub outcome: String,
    pub attempt: i32,
    pub error: Option<String>,
    pub job_id: Uuid,
}

impl From<StepLogRow> for StepLogView {
    fn from(row: StepLogRow) -> Self {
        Self {
            n: row.n,
            step: row.step,
            step_name: row.step_name,
            action: row.action,
            outcome: row.outcome,
            attempt: row.attempt,
            error: row.error,
            job_id: row.job_id,
        }
    }
}

fn saga_view(saga: SagaRow, step_log: Vec<StepLogRow>) -> SagaView {
    SagaView {
        id: saga.id,
        kind: saga.kind,
        state: saga.state,
        step: saga.step,
        n_steps: saga.n_steps,
        data: saga.data,
        last_error: saga.last_error,
        job_id: saga.job_id,
        created_at: saga.created_at,
        updated_at: saga.updated_at,
        finished_at: saga.finished_at,
        step_log: step_log.into_iter().map(StepLogView::from).collect(),
    }
}

/// One saga with its step log.
#[utoipa::path(get, path = "/v1/sagas/{id}", tag = "sagas",
    params(("id" = Uuid, Path, description = "Saga id")),
    responses((status = 200, body = SagaView), (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn read(
    State(state): State<AppState>,
    credential: TenantAdmin,
    Path(id): Path<String>,
) -> Result<Json<SagaView>, ApiError> {
    // An id that does not parse names no saga.
    let saga_id: SagaId = id.parse().map_err(|_| ApiError::NotFound)?;
    let Session { mut tx, .. } = credential.open(&state).await?;
    let saga = sagas::get(&mut tx, saga_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let step_log = sagas::step_log(&mut tx, saga_id).await?;
    tx.commit().await?;
    Ok(Json(saga_view(saga, step_log)))
}
