//! Tenant administration: users, API keys, and who am I.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use kernel::{ActorKind, ApiKeyId, Role, UserId};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::idempotency::{self, Idempotency};
use crate::auth::{Authenticated, Session, TenantAdmin};
use crate::body::JsonBody;
use crate::{ApiError, AppState};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/me", get(me))
        .route("/users", post(create_user).get(list_users))
        .route("/api-keys", post(create_api_key).get(list_api_keys))
        .route("/api-keys/{id}", delete(revoke_api_key))
}

/// A role within the tenant.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RoleDto {
    Admin,
    Clinician,
    CareCoordinator,
    Auditor,
    Integration,
}

impl From<RoleDto> for Role {
    fn from(role: RoleDto) -> Self {
        match role {
            RoleDto::Admin => Role::Admin,
            RoleDto::Clinician => Role::Clinician,
            RoleDto::CareCoordinator => Role::CareCoordinator,
            RoleDto::Auditor => Role::Auditor,
            RoleDto::Integration => Role::Integration,
        }
    }
}

impl From<Role> for RoleDto {
    fn from(role: Role) -> Self {
        match role {
            Role::Admin => RoleDto::Admin,
            Role::Clinician => RoleDto::Clinician,
            Role::CareCoordinator => RoleDto::CareCoordinator,
            Role::Auditor => RoleDto::Auditor,
            Role::Integration => RoleDto::Integration,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    pub tenant_id: Uuid,
    pub role: RoleDto,
    /// `user:<id>` or `api_key:<id>`.
    pub actor: String,
    pub user_id: Option<Uuid>,
}

/// Who the credential stands for.
#[utoipa::path(get, path = "/v1/me", tag = "admin", responses((status = 200, body = Me), (status = 401, body = crate::error::Problem)), security(("bearer" = [])))]
pub async fn me(
    State(state): State<AppState>,
    credential: Authenticated,
) -> Result<Json<Me>, ApiError> {
    let Session { actor, tx } = credential.open(&state).await?;
    // Commit: checking an API key may record its last use.
    tx.commit().await?;
    Ok(Json(Me {
        tenant_id: actor.tenant_id.into_uuid(),
        role: actor.role.into(),
        actor: actor.audit_name(),
        user_id: actor.user_id.map(UserId::into_uuid),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserInput {
    /// A login handle, unique in the tenant (not PHI: staff, not patients).
    pub handle: String,
    pub role: RoleDto,
    /// The `sub` claim of this user's OIDC tokens.
    pub oidc_subject: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub id: Uuid,
    pub handle: String,
    pub role: RoleDto,
    pub active: bool,
}

fn user_view(user: identity::user::User) -> UserView {
    UserView {
        id: user.id.into_uuid(),
        handle: user.handle,
        role: user.role.into(),
        active: user.active,
    }
}

/// A 201 with a `Location` header and `body`.
pub(super) fn created(location: String, body: impl Serialize) -> Response {
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// Create a user.
#[utoipa::path(post, path = "/v1/users", tag = "admin", request_body = UserInput,
    responses((status = 201, body = UserView), (status = 409, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn create_user(
    State(state): State<AppState>,
    credential: TenantAdmin,
    headers: HeaderMap,
    body: JsonBody<UserInput>,
) -> Result<Response, ApiError> {
    let Session { mut tx, .. } = credential.open(&state).await?;
    let idempotency = idempotency::claim(&mut tx, &headers, "/v1/users", &body.bytes).await?;
    let user_id = match &idempotency {
        Idempotency::Replay(outcome) => {
            UserId::new_unchecked(outcome.resource_id.ok_or(ApiError::NotFound)?)
        }
        Idempotency::None | Idempotency::Fresh(_) => {
            let input = &body.value;
            let user_id = identity::user::create(
                &mut tx,
                &input.handle,
                input.role.into(),
                input.oidc_subject.as_deref(),
            )
            .await?;
            idempotency
                .record(&mut tx, 201, "user", Some(user_id.into_uuid()))
                .await?;
            user_id
        }
    };
    let user = identity::user::get(&mut tx, user_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    tx.commit().await?;
    Ok(created(format!("/v1/users/{user_id}"), user_view(user)))
}

/// List the tenant's users.
#[utoipa::path(get, path = "/v1/users", tag = "admin", responses((status = 200, body = Vec<UserView>)), security(("bearer" = [])))]
pub async fn list_users(
    State(state): State<AppState>,
    credential: TenantAdmin,
) -> Result<Json<Vec<UserView>>, ApiError> {
    let Session { mut tx, .. } = credential.open(&state).await?;
    let users = identity::user::list(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(users.into_iter().map(user_view).collect()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyInput {
    pub role: RoleDto,
    /// What the key is for, e.g. `lab interface`.
    pub label: String,
    /// The user the key acts as (needed for clinical roles' care-team access).
    pub user_id: Option<Uuid>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyView {
    pub id: Uuid,
    pub label: String,
    pub role: RoleDto,
    pub user_id: Option<Uuid>,
    pub active: bool,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<OffsetDateTime>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NewApiKeyView {
    pub id: Uuid,
    /// The key itself. Shown only in the response that created it (absent on an
    /// idempotent replay): store it now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    pub role: RoleDto,
    pub label: String,
}

/// Create an API key. The key is shown once.
#[utoipa::path(post, path = "/v1/api-keys", tag = "admin", request_body = ApiKeyInput,
    responses((status = 201, body = NewApiKeyView), (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn create_api_key(
    State(state): State<AppState>,
    credential: TenantAdmin,
    headers: HeaderMap,
    body: JsonBody<ApiKeyInput>,
) -> Result<Response, ApiError> {
    let input = &body.value;
    let Session { mut tx, .. } = credential.open(&state).await?;
    let idempotency = idempotency::claim(&mut tx, &headers, "/v1/api-keys", &body.bytes).await?;
    let (id, token) = match &idempotency {
        Idempotency::Replay(outcome) => (outcome.resource_id.ok_or(ApiError::NotFound)?, None),
        Idempotency::None | Idempotency::Fresh(_) => {
            let key = identity::api_key::create(
                &mut tx,
                input.role.into(),
                &input.label,
                input.user_id.map(UserId::new_unchecked),
            )
            .await?;
            idempotency
                .record(&mut tx, 201, "api_key", Some(key.id.into_uuid()))
                .await?;
            (key.id.into_uuid(), Some(key.token))
        }
    };
    tx.commit().await?;
    Ok(created(
        format!("/v1/api-keys/{id}"),
        NewApiKeyView {
            id,
            token,
            role: input.role,
            label: input.label.trim().to_owned(),
        },
    ))
}

/// List the tenant's API keys (never their secrets).
#[utoipa::path(get, path = "/v1/api-keys", tag = "admin", responses((status = 200, body = Vec<ApiKeyView>)), security(("bearer" = [])))]
pub async fn list_api_keys(
    State(state): State<AppState>,
    credential: TenantAdmin,
) -> Result<Json<Vec<ApiKeyView>>, ApiError> {
    let Session { mut tx, .. } = credential.open(&state).await?;
    let keys = identity::api_key::list(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(
        keys.into_iter()
            .map(|key| ApiKeyView {
                id: key.id.into_uuid(),
                label: key.label,
                role: key.role.into(),
                user_id: key.user_id.map(UserId::into_uuid),
                active: key.active,
                created_at: key.created_at,
                last_used_at: key.last_used_at,
            })
            .collect(),
    ))
}

/// Revoke an API key. It stops working at once.
#[utoipa::path(delete, path = "/v1/api-keys/{id}", tag = "admin", params(("id" = Uuid, Path, description = "API key id")),
    responses((status = 204), (status = 404, body = crate::error::Problem)), security(("bearer" = [])))]
pub async fn revoke_api_key(
    State(state): State<AppState>,
    credential: TenantAdmin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let key_id: ApiKeyId = id.parse().map_err(|_| ApiError::NotFound)?;
    let Session { actor, mut tx } = credential.open(&state).await?;
    if actor.kind == ActorKind::ApiKey(key_id) {
        return Err(ApiError::Conflict(
            "a key cannot revoke itself; use another admin credential".into(),
        ));
    }
    if !identity::api_key::revoke(&mut tx, key_id).await? {
        return Err(ApiError::NotFound);
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
