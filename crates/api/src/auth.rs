//! Authentication and permission, at the handler boundary.
//!
//! A bearer credential is either a Tenet API key (`tk_…`) or an OIDC JWT from the
//! configured issuer, mapped to a user of the tenant named in the token. Every
//! refusal is the same 401 to the caller; the reason is logged (without the token).
//!
//! The extractors below only read the header (a missing or garbled credential is a
//! 401 before anything else). The credential is checked when the handler calls
//! `open`, **inside the request's own transaction**: the key lookup, the work and the
//! audit event share one transaction and one snapshot, and no pooled connection is
//! held while a client is still sending its body.
//!
//! Permission is a type: each extractor admits only certain roles, so a handler's
//! signature says who may call it, and a handler that takes [`PhiAccess`] cannot run
//! for an auditor.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use db::TenantTx;
use identity::api_key::{ApiKeyClaim, ApiKeyError};
use kernel::{Actor, ActorKind, RequestId, Role, UserId};

use crate::{ApiError, AppState, CurrentRequest};

/// An authenticated actor and the request's transaction, in which the credential was
/// checked. Commit it to make the request's work (and its audit events) stick.
pub struct Session {
    pub actor: Actor,
    pub tx: TenantTx,
}

enum Bearer {
    ApiKey(ApiKeyClaim),
    Jwt(String),
}

/// A bearer credential read from the request, not yet checked.
pub struct Credential {
    bearer: Bearer,
    request_id: Option<RequestId>,
}

impl FromRequestParts<AppState> for Credential {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .ok_or(ApiError::Unauthenticated)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .ok_or(ApiError::Unauthenticated)?;
        let bearer = if token.starts_with("tk_") {
            Bearer::ApiKey(ApiKeyClaim::parse(token).ok_or_else(|| {
                tracing::info!(reason = %ApiKeyError::Malformed, "API key refused");
                ApiError::Unauthenticated
            })?)
        } else {
            Bearer::Jwt(token.to_owned())
        };
        Ok(Self {
            bearer,
            request_id: parts
                .extensions
                .get::<CurrentRequest>()
                .map(|current| current.0),
        })
    }
}

impl Credential {
    /// Checks the credential in a new transaction of its tenant.
    pub async fn open(self, state: &AppState) -> Result<Session, ApiError> {
        match self.bearer {
            Bearer::ApiKey(claim) => {
                let mut tx = TenantTx::begin_as(
                    &state.pool,
                    claim.tenant_id,
                    &claim.actor_name(),
                    self.request_id,
                )
                .await?;
                let actor = identity::api_key::verify(&mut tx, &claim)
                    .await
                    .map_err(|err| match err {
                        ApiKeyError::Malformed
                        | ApiKeyError::Unknown
                        | ApiKeyError::Revoked
                        | ApiKeyError::TenantInactive
                        | ApiKeyError::UserInactive => {
                            tracing::info!(reason = %err, "API key refused");
                            ApiError::Unauthenticated
                        }
                        ApiKeyError::Database(db_err) => db_err.into(),
                    })?;
                Ok(Session { actor, tx })
            }
            Bearer::Jwt(token) => {
                let Some(verifier) = &state.oidc else {
                    tracing::info!("bearer token refused: OIDC is not configured");
                    return Err(ApiError::Unauthenticated);
                };
                let verified = verifier.verify(&token).await.map_err(|err| {
                    tracing::info!(reason = %err, "bearer token refused");
                    ApiError::Unauthenticated
                })?;
                let mut tx =
                    TenantTx::begin_as(&state.pool, verified.tenant_id, "oidc", self.request_id)
                        .await?;
                if !identity::tenant::is_active(&mut tx).await? {
                    tracing::info!("bearer token refused: tenant unknown or inactive");
                    return Err(ApiError::Unauthenticated);
                }
                let user = identity::user::find_by_subject(&mut tx, &verified.subject).await?;
                let Some(user) = user.filter(|user| user.active) else {
                    tracing::info!("bearer token refused: no active user for its subject");
                    return Err(ApiError::Unauthenticated);
                };
                let actor = Actor {
                    tenant_id: verified.tenant_id,
                    kind: ActorKind::User(user.id),
                    role: user.role,
                    user_id: Some(user.id),
                };
                tx.set_actor(&actor.audit_name()).await?;
                Ok(Session { actor, tx })
            }
        }
    }

    /// Checks the credential and that its role is one of `roles`.
    async fn open_as(
        self,
        state: &AppState,
        roles: &[Role],
        why: &'static str,
    ) -> Result<Session, ApiError> {
        let session = self.open(state).await?;
        if roles.contains(&session.actor.role) {
            Ok(session)
        } else {
            Err(ApiError::Forbidden(why))
        }
    }
}

/// Any authenticated principal.
pub struct Authenticated(pub Credential);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Credential::from_request_parts(parts, state).await.map(Self)
    }
}

impl Authenticated {
    pub async fn open(self, state: &AppState) -> Result<Session, ApiError> {
        self.0.open(state).await
    }
}

macro_rules! permission {
    ($(#[$meta:meta])* $name:ident, [$($role:ident),+], $why:literal) => {
        $(#[$meta])*
        pub struct $name(Credential);

        impl $name {
            pub const ROLES: &'static [Role] = &[$(Role::$role),+];

            /// Checks the credential and the role; the session's transaction is the request's.
            pub async fn open(self, state: &AppState) -> Result<Session, ApiError> {
                self.0.open_as(state, Self::ROLES, $why).await
            }
        }

        impl FromRequestParts<AppState> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
                Credential::from_request_parts(parts, state).await.map(Self)
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
pub struct Clinician(Credential);

impl FromRequestParts<AppState> for Clinician {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Credential::from_request_parts(parts, state).await.map(Self)
    }
}

impl Clinician {
    /// Checks the credential, the role and that it is a personal credential.
    pub async fn open(self, state: &AppState) -> Result<(Session, UserId), ApiError> {
        let session = self.0.open(state).await?;
        match (session.actor.role, session.actor.user_id) {
            (Role::Clinician, Some(user_id)) => Ok((session, user_id)),
            (Role::Clinician, None) => Err(ApiError::Forbidden(
                "break-glass needs a personal credential, not a shared key",
            )),
            _ => Err(ApiError::Forbidden("only a clinician may break the glass")),
        }
    }
}
