//! Authentication and permission, at the handler boundary.
//!
//! A bearer credential is either a Tenet API key (`tk_…`) or an OIDC JWT from the
//! configured issuer, mapped to a user of the tenant named in the token. Every
//! refusal is the same 401 to the caller; the reason is logged (without the token).
//!
//! Permission is a type: each extractor below admits only certain roles, so a
//! handler's signature says who may call it, and a handler that takes
//! [`PhiAccess`] cannot run for an auditor.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use db::TenantTx;
use kernel::{Actor, ActorKind, Role, UserId};

use crate::{ApiError, AppState};

/// Any authenticated principal.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Actor);

async fn authenticate(parts: &Parts, state: &AppState) -> Result<Actor, ApiError> {
    let header = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .ok_or(ApiError::Unauthenticated)?;
    let token = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
        .ok_or(ApiError::Unauthenticated)?;
    if token.starts_with("tk_") {
        return identity::api_key::authenticate(&state.pool, token)
            .await
            .map_err(|err| {
                use identity::api_key::ApiKeyError;
                match err {
                    ApiKeyError::Malformed
                    | ApiKeyError::Unknown
                    | ApiKeyError::Revoked
                    | ApiKeyError::TenantInactive
                    | ApiKeyError::UserInactive => {
                        tracing::info!(reason = %err, "API key refused");
                        ApiError::Unauthenticated
                    }
                    ApiKeyError::Database(db_err) => db_err.into(),
                }
            });
    }
    let Some(verifier) = &state.oidc else {
        tracing::info!("bearer token refused: OIDC is not configured");
        return Err(ApiError::Unauthenticated);
    };
    let verified = verifier.verify(token).await.map_err(|err| {
        tracing::info!(reason = %err, "bearer token refused");
        ApiError::Unauthenticated
    })?;
    let mut tx = TenantTx::begin_as(&state.pool, verified.tenant_id, "system", None).await?;
    if !identity::tenant::is_active(&mut tx).await? {
        tracing::info!("bearer token refused: tenant unknown or inactive");
        return Err(ApiError::Unauthenticated);
    }
    let user = identity::user::find_by_subject(&mut tx, &verified.subject).await?;
    tx.commit().await?;
    match user {
        Some(user) if user.active => Ok(Actor {
            tenant_id: verified.tenant_id,
            kind: ActorKind::User(user.id),
            role: user.role,
            user_id: Some(user.id),
        }),
        _ => {
            tracing::info!("bearer token refused: no active user for its subject");
            Err(ApiError::Unauthenticated)
        }
    }
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(actor) = parts.extensions.get::<Actor>() {
            return Ok(Self(actor.clone()));
        }
        let actor = authenticate(parts, state).await?;
        parts.extensions.insert(actor.clone());
        Ok(Self(actor))
    }
}

macro_rules! permission {
    ($(#[$meta:meta])* $name:ident, [$($role:ident),+], $why:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone)]
        pub struct $name(pub Actor);

        impl $name {
            pub const ROLES: &'static [Role] = &[$(Role::$role),+];
        }

        impl FromRequestParts<AppState> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
                let Authenticated(actor) = Authenticated::from_request_parts(parts, state).await?;
                if Self::ROLES.contains(&actor.role) {
                    Ok(Self(actor))
                } else {
                    Err(ApiError::Forbidden($why))
                }
            }
        }
    };
}

permission!(
    /// May read and write patient identity, subject to the care relationship.
    PhiAccess,
    [Admin, Clinician, CareCoordinator, Integration],
    "this role does not access patient records"
);
permission!(
    /// Manages users, keys and settings of the tenant.
    TenantAdmin,
    [Admin],
    "only an admin may do this"
);
permission!(
    /// Reads audit logs and access reports.
    AuditReader,
    [Admin, Auditor],
    "only an admin or auditor may read the audit log"
);
permission!(
    /// Adds members to care teams.
    CareTeamManager,
    [Admin, CareCoordinator],
    "only an admin or care coordinator may manage care teams"
);

/// A clinician acting as a user (break-glass is personal: it needs a user).
#[derive(Debug, Clone)]
pub struct Clinician(pub Actor, pub UserId);

impl FromRequestParts<AppState> for Clinician {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Authenticated(actor) = Authenticated::from_request_parts(parts, state).await?;
        match (actor.role, actor.user_id) {
            (Role::Clinician, Some(user_id)) => Ok(Self(actor, user_id)),
            (Role::Clinician, None) => Err(ApiError::Forbidden(
                "break-glass needs a personal credential, not a shared key",
            )),
            _ => Err(ApiError::Forbidden("only a clinician may break the glass")),
        }
    }
}
