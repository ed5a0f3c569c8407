//! The audit log over HTTP: on-demand checkpoints of the tenant's chain.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{AuditReader, Session};
use crate::{ApiError, AppState};

pub fn router() -> Router<AppState> {
    Router::new().route("/audit/checkpoints", post(checkpoint))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CheckpointView {
    /// Absent when nothing was appended since the last checkpoint.
    pub id: Option<Uuid>,
    pub key_id: Option<String>,
    /// Events covered, summed over the chain's lanes.
    pub n_events: i64,
}

/// Sign the tenant's current chain heads now.
#[utoipa::path(post, path = "/v1/audit/checkpoints", tag = "audit",
    responses((status = 201, body = CheckpointView), (status = 200, description = "Nothing new to sign", body = CheckpointView)),
    security(("bearer" = [])))]
pub async fn checkpoint(
    State(state): State<AppState>,
    credential: AuditReader,
) -> Result<(StatusCode, Json<CheckpointView>), ApiError> {
    let key = state.checkpoint_key.as_ref().ok_or(ApiError::Unavailable)?;
    let Session { mut tx, .. } = credential.open(&state).await?;
    let checkpoint = audit::write_checkpoint(&mut tx, key).await?;
    tx.commit().await?;
    Ok(match checkpoint {
        Some(checkpoint) => (
            StatusCode::CREATED,
            Json(CheckpointView {
                id: Some(checkpoint.id),
                key_id: Some(checkpoint.key_id),
                n_events: checkpoint.heads.iter().map(|head| head.seq).sum(),
            }),
        ),
        None => (
            StatusCode::OK,
            Json(CheckpointView {
                id: None,
                key_id: None,
                n_events: 0,
            }),
        ),
    })
}
