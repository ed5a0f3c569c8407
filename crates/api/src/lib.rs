//! Tenet's HTTP JSON API: the only crate that knows HTTP.
//!
//! - [`router`] builds the axum router: routes per context under `/v1`, operations
//!   endpoints, request ids, metrics, body limits; `/v2` where a representation
//!   changed shape (notes), with the deprecated `/v1` shape still served.
//! - [`auth`] turns a bearer credential into an [`kernel::Actor`], and permission
//!   into types: a handler that takes [`auth::PhiReader`] cannot run for an auditor.
//! - [`error`] maps every domain error, exhaustively, to RFC 9457 problem JSON.
//! - [`body`] reads JSON bodies with a size limit and errors that never echo input.
//! - [`egress`] decides which webhook URLs a tenant may register (the SSRF guard).
//!
//! This crate must never put PHI in a log line, a metric label, an error body or a
//! URL: searches take their criteria in the body, and logs name routes, not paths.

pub mod auth;
pub mod body;
pub mod egress;
pub mod error;
pub mod metrics;
pub mod openapi;
pub mod routes;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::Response;
use identity::keyring::Keyring;
use kernel::RequestId;
use sqlx::PgPool;

pub use error::ApiError;

/// The largest request body accepted.
pub const BODY_LEN_MAX: usize = 64 * 1024;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub keyring: Keyring,
    pub oidc: Option<oidc::OidcVerifier>,
    pub checkpoint_key: Option<Arc<audit::CheckpointKey>>,
    pub metrics: metrics::Metrics,
    pub settings: Settings,
    /// The job kinds this deployment runs: a schedule may name only these, with
    /// arguments they accept.
    pub jobs: platform::jobs::Registry,
    /// Where document content is stored, and the upload limit.
    pub documents: documents::Storage,
}

/// Tunables of the API.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a break-glass grant lasts.
    pub break_glass_secs: i64,
    /// The newest migration version this build expects (for `/readyz`).
    pub schema_version: i64,
    /// Accept webhook URLs whose host is localhost or a loopback, private or
    /// link-local address (see [`egress`]). Off in production: for development
    /// setups whose receiver runs beside Tenet.
    pub webhook_allow_private_hosts: bool,
}

/// The request id of the current request, set by the request-id middleware.
#[derive(Debug, Clone, Copy)]
pub struct CurrentRequest(pub RequestId);

/// Builds the router over `state`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(routes::ops::router())
        .nest("/v1", routes::v1())
        .nest("/v2", routes::v2())
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(BODY_LEN_MAX))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// The operations endpoints alone (`/healthz`, `/readyz`, `/metrics`,
/// `/openapi.json`), for a port of their own: a node without the API, or scraping
/// kept off the API's port.
pub fn ops_router(state: AppState) -> Router {
    Router::new()
        .merge(routes::ops::router())
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
}

/// Assigns a request id, logs one line per request (route template, never the raw
/// path or query) and records metrics.
async fn observe(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let request_id = RequestId::generate();
    request.extensions_mut().insert(CurrentRequest(request_id));
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().clone();
    let started = tokio::time::Instant::now();
    let span =
        tracing::info_span!("request", request_id = %request_id, method = %method, route = %route);
    let mut response = tracing::Instrument::instrument(next.run(request), span.clone()).await;
    let elapsed: Duration = started.elapsed();
    let status = response.status().as_u16();
    state
        .metrics
        .observe_request(method.as_str(), &route, status, elapsed);
    span.in_scope(|| {
        tracing::info!(
            status,
            latency_ms = elapsed.as_secs_f64() * 1e3,
            "request served"
        );
    });
    if let Ok(value) = HeaderValue::from_str(&request_id.to_string()) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}
