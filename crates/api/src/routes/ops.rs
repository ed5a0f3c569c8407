//! Operations endpoints: liveness, readiness, metrics and the OpenAPI document.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
}

/// The process is up.
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// The database is reachable and its schema is the one this build expects.
async fn readyz(State(state): State<AppState>) -> Response {
    let applied: Result<Option<i64>, sqlx::Error> =
        sqlx::query_scalar("SELECT max(version) FROM public.tenet_schema_migrations")
            .fetch_one(&state.pool)
            .await;
    match applied {
        Ok(Some(version)) if version == state.settings.schema_version => {
            Json(json!({ "status": "ready", "schema_version": version })).into_response()
        }
        Ok(version) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "migrations pending",
                "schema_version": version,
                "expected_schema_version": state.settings.schema_version,
            })),
        )
            .into_response(),
        Err(err) => {
            tracing::warn!(error = %err, "readiness check: database unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "database unreachable" })),
            )
                .into_response()
        }
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(&state.pool),
    )
        .into_response()
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::document_json(),
    )
        .into_response()
}
