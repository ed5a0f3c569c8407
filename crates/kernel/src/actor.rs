//! Who is acting: the authenticated principal of a request, job or operator command.

use crate::{ApiKeyId, Role, TenantId, UserId};

/// How the actor proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorKind {
    /// An OIDC bearer token mapped to a user.
    User(UserId),
    /// An API key.
    ApiKey(ApiKeyId),
    /// The operator CLI or a background process acting for the system.
    System,
}

/// An authenticated principal within one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub tenant_id: TenantId,
    pub kind: ActorKind,
    pub role: Role,
    /// The user this actor acts as: the token's user, or the user an API key was
    /// issued to. Care-team membership is checked against it.
    pub user_id: Option<UserId>,
}

impl Actor {
    /// The stable string recorded in the audit log and in `tenet.actor`:
    /// `user:<uuid>`, `api_key:<uuid>` or `system`.
    pub fn audit_name(&self) -> String {
        match self.kind {
            ActorKind::User(user_id) => format!("user:{user_id}"),
            ActorKind::ApiKey(api_key_id) => format!("api_key:{api_key_id}"),
            ActorKind::System => "system".to_owned(),
        }
    }

    /// The operator or a background process acting for the system within a tenant.
    pub fn system(tenant_id: TenantId) -> Self {
        Self {
            tenant_id,
            kind: ActorKind::System,
            role: Role::Admin,
            user_id: None,
        }
    }
}
