//! The routes, one module per context, plus operations.

pub mod admin;
pub mod assessment_responses;
pub mod assessments;
pub mod audit_log;
pub mod consents;
pub mod documents;
pub mod idempotency;
pub mod jobs;
pub mod notes;
pub mod ops;
pub mod patients;
pub mod sagas;
pub mod schedules;
pub mod webhooks;

use axum::Router;

use crate::AppState;

/// Every `/v1` route.
pub fn v1() -> Router<AppState> {
    Router::new()
        .merge(patients::router())
        .merge(admin::router())
        .merge(audit_log::router())
        .merge(jobs::router())
        .merge(webhooks::router())
        .merge(schedules::router())
        .merge(sagas::router())
        .merge(assessments::router())
        .merge(assessment_responses::router())
        .merge(notes::v1_router())
        .merge(consents::router())
        .merge(documents::router())
}

/// Every `/v2` route: representations that changed shape (notes' `sections`).
pub fn v2() -> Router<AppState> {
    Router::new().merge(notes::v2_router())
}
