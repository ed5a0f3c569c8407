//! A tenant's webhook subscriptions, for its admins: create, list, show, disable,
//! enable. The same functions as the relay's admin library, run in the request's own
//! transaction, so row-level security shows a tenant its subscriptions only and
//! another tenant's subscription id answers 404.
//!
//! A URL is checked by [`crate::egress`] before anything is written: Tenet must not
//! become a tenant's way into its own network. Errors name the `url` field, never
//! its value.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use platform::relay::admin::{self, NewSubscription, Subscription, SubscriptionError};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::admin::created;
use super::idempotency::{self, Idempotency};
use crate::auth::{Session, TenantAdmin};
use crate::body::JsonBody;
use crate::egress::{self, UrlRefusal};
use crate::{ApiError, AppState};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/webhooks", post(create).get(list))
        .route("/webhooks/{id}", get(read))
        .route("/webhooks/{id}/disable", post(disable))
        .route("/webhooks/{id}/enable", post(enable))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookInput {
    /// Where events are POSTed: `https://` (or `http://`), no user info, and a public
    /// host — localhost, loopback, private, link-local and cloud metadata addresses
    /// are refused.
    pub url: String,
    /// Dotted lowercase event types (`patient.created`); empty: every event type.
    pub event_types: Vec<String>,
}

/// A webhook subscription, without its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    pub id: Uuid,
    pub url: String,
    /// Empty: every event type.
    pub event_types: Vec<String>,
    /// `active` or `disabled`.
    pub state: String,
    /// Failed deliveries in a row; the relay disables a subscription that keeps
    /// failing.
    pub consecutive_failures: i32,
    /// Who or what disabled it.
    pub disabled_reason: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

impl From<Subscription> for WebhookView {
    fn from(subscription: Subscription) -> Self {
        Self {
            id: subscription.id,
            url: subscription.url,
            event_types: subscription.event_types,
            state: subscription.state,
            consecutive_failures: subscription.consecutive_failures,
            disabled_reason: subscription.disabled_reason,
            created_at: subscription.created_at,
            updated_at: subscription.updated_at,
        }
    }
}

/// A subscription just made, with the secret that signs its deliveries.
#[derive(Debug, Serialize, ToSchema)]
pub struct NewWebhookView {
    #[serde(flatten)]
    pub webhook: WebhookView,
    /// The HMAC key of the deliveries' signatures (`whsec_…`). Shown only in the
    /// response that created the subscription — never by a later read, and absent on
    /// an idempotent replay: give it to the receiver now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl From<UrlRefusal> for ApiError {
    fn from(refusal: UrlRefusal) -> Self {
        match refusal {
            UrlRefusal::Malformed
            | UrlRefusal::UserInfo
            | UrlRefusal::BadHost
            | UrlRefusal::PrivateHost => ApiError::InvalidInput(format!("url: {refusal}")),
        }
    }
}

impl From<SubscriptionError> for ApiError {
    fn from(err: SubscriptionError) -> Self {
        match err {
            SubscriptionError::InvalidUrl => ApiError::InvalidInput(format!("url: {err}")),
            SubscriptionError::InvalidEventTypes => {
                ApiError::InvalidInput(format!("event_types: {err}"))
            }
            SubscriptionError::Unexpected(err) => err.into(),
        }
    }
}

/// Subscribe a URL to the tenant's events. The response carries the signing secret,
/// shown this once and never again: store it with the receiver now.
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", request_body = WebhookInput,
    responses(
        (status = 201, body = NewWebhookView, description = "Subscribed. `secret` is shown only here, never by a later read (and not on an idempotent replay)."),
        (status = 422, body = crate::error::Problem, description = "A bad or refused URL (not http/https, user info, or a non-public host), or bad event types")),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    credential: TenantAdmin,
    headers: HeaderMap,
    body: JsonBody<WebhookInput>,
) -> Result<Response, ApiError> {
    let Session { mut tx, .. } = credential.open(&state).await?;
    let input = &body.value;
    egress::check_webhook_url(&input.url, state.settings.webhook_allow_private_hosts)?;
    let idempotency = idempotency::claim(&mut tx, &headers, "/v1/webhooks", &body.bytes).await?;
    let view = match &idempotency {
        Idempotency::Replay(outcome) => {
            let id = outcome.resource_id.ok_or(ApiError::NotFound)?;
            let subscription = admin::show_subscription(&mut tx, id)
                .await?
                .ok_or(ApiError::NotFound)?;
            NewWebhookView {
                webhook: subscription.into(),
                secret: None,
            }
        }
        Idempotency::None | Idempotency::Fresh(_) => {
            let created = admin::create_subscription(
                &mut tx,
                NewSubscription {
                    url: input.url.clone(),
                    event_types: input.event_types.clone(),
                },
            )
            .await?;
            idempotency
                .record(
                    &mut tx,
                    201,
                    "webhook_subscription",
                    Some(created.subscription.id),
                )
                .await?;
            NewWebhookView {
                webhook: created.subscription.into(),
                secret: Some(created.secret),
            }
        }
    };
    tx.commit().await?;
    Ok(created(format!("/v1/webhooks/{}", view.webhook.id), view))
}

/// The tenant's webhook subscriptions, oldest first (never their secrets).
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks",
    responses((status = 200, body = Vec<WebhookView>)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    credential: TenantAdmin,
) -> Result<Json<Vec<WebhookView>>, ApiError> {
    let Session { mut tx, .. } = credential.open(&state).await?;
    let subscriptions = admin::list_subscriptions(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(
        subscriptions.into_iter().map(WebhookView::from).collect(),
    ))
}

/// One webhook subscription (never its secret).
#[utoipa::path(get, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = Uuid, Path, description = "Subscription id")),
    responses((status = 200, body = WebhookView), (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn read(
    State(state): State<AppState>,
    credential: TenantAdmin,
    Path(id): Path<String>,
) -> Result<Json<WebhookView>, ApiError> {
    let id = parse_id(&id)?;
    let Session { mut tx, .. } = credential.open(&state).await?;
    let subscription = admin::show_subscription(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    tx.commit().await?;
    Ok(Json(subscription.into()))
}

/// Stop deliveries to a subscription: new events are not queued for it, and its
/// pending deliveries wait.
#[utoipa::path(post, path = "/v1/webhooks/{id}/disable", tag = "webhooks",
    params(("id" = Uuid, Path, description = "Subscription id")),
    responses((status = 200, body = WebhookView), (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn disable(
    State(state): State<AppState>,
    credential: TenantAdmin,
    Path(id): Path<String>,
) -> Result<Json<WebhookView>, ApiError> {
    act(state, credential, parse_id(&id)?, Action::Disable).await
}

/// Resume a subscription with a clean run of failures: its waiting deliveries go out.
#[utoipa::path(post, path = "/v1/webhooks/{id}/enable", tag = "webhooks",
    params(("id" = Uuid, Path, description = "Subscription id")),
    responses((status = 200, body = WebhookView), (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn enable(
    State(state): State<AppState>,
    credential: TenantAdmin,
    Path(id): Path<String>,
) -> Result<Json<WebhookView>, ApiError> {
    act(state, credential, parse_id(&id)?, Action::Enable).await
}

/// A subscription id from the path: one that does not parse names no subscription.
fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    id.parse::<Uuid>().map_err(|_| ApiError::NotFound)
}

#[derive(Debug, Clone, Copy)]
enum Action {
    Disable,
    Enable,
}

/// Does `action` to the tenant's subscription `id` and answers it as it is now.
async fn act(
    state: AppState,
    credential: TenantAdmin,
    id: Uuid,
    action: Action,
) -> Result<Json<WebhookView>, ApiError> {
    let Session { mut tx, .. } = credential.open(&state).await?;
    let found = match action {
        Action::Disable => admin::disable_subscription(&mut tx, id).await?,
        Action::Enable => admin::enable_subscription(&mut tx, id).await?,
    };
    if !found {
        return Err(ApiError::NotFound);
    }
    let subscription = admin::show_subscription(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    tx.commit().await?;
    Ok(Json(subscription.into()))
}
