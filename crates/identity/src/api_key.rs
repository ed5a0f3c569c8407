//! API keys: high-entropy secrets for systems, stored only as a hash.
//!
//! A key reads `tk_<tenant>.<key id>.<secret>`: the tenant and key id are public and
//! locate the row (so authentication never searches across tenants); the 256-bit
//! secret is compared in constant time against its stored SHA-256. The plaintext
//! key exists only in the response that created it.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use db::TenantTx;
use kernel::{Actor, ActorKind, ApiKeyId, Role, TenantId, UserId};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use uuid::Uuid;

const PREFIX: &str = "tk_";

/// A freshly made key, to be shown once. `Debug` redacts the secret.
pub struct NewApiKey {
    pub id: ApiKeyId,
    pub token: String,
}

impl fmt::Debug for NewApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewApiKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CreateApiKeyError {
    #[error("a key label is 1 to 200 characters")]
    InvalidLabel,
    #[error("no such user in this tenant")]
    UnknownUser,
    #[error("creating the API key")]
    Database(#[from] sqlx::Error),
}

/// Why a presented key was refused. All of them are "401" to the caller; the
/// distinction is for logs and metrics.
#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    #[error("not a Tenet API key")]
    Malformed,
    #[error("unknown API key")]
    Unknown,
    #[error("the API key was revoked")]
    Revoked,
    #[error("the tenant is not active")]
    TenantInactive,
    #[error("the user the API key was issued to is disabled")]
    UserInactive,
    #[error("looking up the API key")]
    Database(#[from] sqlx::Error),
}

fn secret_hash(secret: &[u8]) -> [u8; 32] {
    Sha256::digest(secret).into()
}

/// Creates a key in the transaction's tenant.
pub async fn create(
    tx: &mut TenantTx,
    role: Role,
    label: &str,
    user_id: Option<UserId>,
) -> Result<NewApiKey, CreateApiKeyError> {
    let label = label.trim();
    if label.is_empty() || label.chars().count() > 200 {
        return Err(CreateApiKeyError::InvalidLabel);
    }
    let id = ApiKeyId::generate();
    let secret: [u8; 32] = rand::random();
    sqlx::query(
        "INSERT INTO identity.api_keys (tenant_id, id, user_id, role, label, secret_hash)
         VALUES ($1, $2, $3, $4::identity.role, $5, $6)",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(id.as_uuid())
    .bind(user_id.map(|id| id.into_uuid()))
    .bind(role.as_str())
    .bind(label)
    .bind(&secret_hash(&secret)[..])
    .execute(&mut **tx)
    .await
    .map_err(|err| match crate::violated_constraint(&err) {
        Some("api_keys_tenant_id_user_id_fkey") => CreateApiKeyError::UnknownUser,
        _ => CreateApiKeyError::Database(err),
    })?;
    let token = format!(
        "{PREFIX}{}.{}.{}",
        tx.tenant_id().as_uuid().simple(),
        id.as_uuid().simple(),
        URL_SAFE_NO_PAD.encode(secret)
    );
    Ok(NewApiKey { id, token })
}

/// A presented key split into its parts, not yet checked against the database.
/// `Debug` never shows the secret.
pub struct ApiKeyClaim {
    pub tenant_id: TenantId,
    pub key_id: ApiKeyId,
    secret: Vec<u8>,
}

impl fmt::Debug for ApiKeyClaim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyClaim")
            .field("tenant_id", &self.tenant_id)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl ApiKeyClaim {
    /// Splits `tk_<tenant>.<key id>.<secret>`; `None` if it is not one of our keys.
    pub fn parse(token: &str) -> Option<Self> {
        let rest = token.strip_prefix(PREFIX)?;
        let mut parts = rest.splitn(3, '.');
        let tenant_id = Uuid::try_parse(parts.next()?).ok()?;
        let key_id = Uuid::try_parse(parts.next()?).ok()?;
        let secret = URL_SAFE_NO_PAD.decode(parts.next()?).ok()?;
        (secret.len() == 32).then(|| Self {
            tenant_id: TenantId::new_unchecked(tenant_id),
            key_id: ApiKeyId::new_unchecked(key_id),
            secret,
        })
    }

    /// The audit name of the actor the key claims to be.
    pub fn actor_name(&self) -> String {
        format!("api_key:{}", self.key_id)
    }
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    stored_hash: Vec<u8>,
    role: String,
    active: bool,
    user_id: Option<Uuid>,
    last_used_at: Option<OffsetDateTime>,
    tenant_active: bool,
    /// True for a key issued to no user.
    user_active: bool,
}

/// Checks a presented key in its own transaction and returns the actor it stands for.
pub async fn authenticate(pool: &PgPool, token: &str) -> Result<Actor, ApiKeyError> {
    let claim = ApiKeyClaim::parse(token).ok_or(ApiKeyError::Malformed)?;
    let mut tx = TenantTx::begin_as(pool, claim.tenant_id, &claim.actor_name(), None).await?;
    let actor = verify(&mut tx, &claim).await?;
    tx.commit().await?;
    Ok(actor)
}

/// Checks `claim` in `tx`, which must be a transaction of the claimed tenant (so the
/// lookup itself runs under row-level security), and returns the actor it stands
/// for. Records the key's last use (at most once a minute, to keep reads from
/// becoming writes); the caller's commit makes that stick.
pub async fn verify(tx: &mut TenantTx, claim: &ApiKeyClaim) -> Result<Actor, ApiKeyError> {
    assert_eq!(
        tx.tenant_id(),
        claim.tenant_id,
        "BUG: an API key verified in another tenant's transaction"
    );
    let (tenant_id, key_id, secret) = (claim.tenant_id, claim.key_id, &claim.secret);
    let row: Option<KeyRow> = sqlx::query_as(
        "SELECT k.secret_hash AS stored_hash, k.role::text AS role, k.status = 'active' AS active, k.user_id,
                k.last_used_at, t.status = 'active' AS tenant_active,
                coalesce(u.status = 'active', true) AS user_active
         FROM identity.api_keys k JOIN identity.tenants t USING (tenant_id)
         LEFT JOIN identity.users u ON u.tenant_id = k.tenant_id AND u.id = k.user_id
         WHERE k.tenant_id = $1 AND k.id = $2",
    )
    .bind(tenant_id.as_uuid())
    .bind(key_id.as_uuid())
    .fetch_optional(&mut **tx)
    .await?;
    let KeyRow {
        stored_hash,
        role,
        active,
        user_id,
        last_used_at,
        tenant_active,
        user_active,
    } = row.ok_or(ApiKeyError::Unknown)?;
    if !bool::from(secret_hash(secret).ct_eq(&stored_hash[..])) {
        return Err(ApiKeyError::Unknown);
    }
    if !active {
        return Err(ApiKeyError::Revoked);
    }
    if !tenant_active {
        return Err(ApiKeyError::TenantInactive);
    }
    // A key acts as its user: disabling the user disables their keys too.
    if !user_active {
        return Err(ApiKeyError::UserInactive);
    }
    let stale =
        last_used_at.is_none_or(|at| OffsetDateTime::now_utc() - at > time::Duration::minutes(1));
    if stale {
        sqlx::query(
            "UPDATE identity.api_keys SET last_used_at = now() WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant_id.as_uuid())
        .bind(key_id.as_uuid())
        .execute(&mut **tx)
        .await?;
    }
    Ok(Actor {
        tenant_id,
        kind: ActorKind::ApiKey(key_id),
        role: role
            .parse()
            .expect("BUG: identity.role enum and kernel::Role disagree"),
        user_id: user_id.map(UserId::new_unchecked),
    })
}

/// Revokes a key of the transaction's tenant. Returns false if there is no such key.
pub async fn revoke(tx: &mut TenantTx, key_id: ApiKeyId) -> Result<bool, sqlx::Error> {
    let n = sqlx::query(
        "UPDATE identity.api_keys SET status = 'revoked', revoked_at = coalesce(revoked_at, now())
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(key_id.as_uuid())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// A key as listed (never its secret).
#[derive(Debug, Clone)]
pub struct ApiKeyInfo {
    pub id: ApiKeyId,
    pub label: String,
    pub role: Role,
    pub user_id: Option<UserId>,
    pub active: bool,
    pub created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
}

/// Every key of the transaction's tenant.
pub async fn list(tx: &mut TenantTx) -> Result<Vec<ApiKeyInfo>, sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Row {
        id: Uuid,
        label: String,
        role: String,
        user_id: Option<Uuid>,
        active: bool,
        created_at: OffsetDateTime,
        last_used_at: Option<OffsetDateTime>,
    }
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, label, role::text AS role, user_id, status = 'active' AS active, created_at, last_used_at
         FROM identity.api_keys WHERE tenant_id = $1 ORDER BY created_at",
    )
    .bind(tx.tenant_id().as_uuid())
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| ApiKeyInfo {
            id: ApiKeyId::new_unchecked(row.id),
            label: row.label,
            role: row
                .role
                .parse()
                .expect("BUG: identity.role enum and kernel::Role disagree"),
            user_id: row.user_id.map(UserId::new_unchecked),
            active: row.active,
            created_at: row.created_at,
            last_used_at: row.last_used_at,
        })
        .collect())
}

/// The principal an audit name (`api_key:<id>` or `user:<id>`, see
/// [`Actor::audit_name`]) names in the transaction's tenant, as it stands now: `None`
/// if it is unknown, revoked or disabled, or its tenant is. For re-checking, when a
/// grant it made is used later (a signed link), that its maker may still do what the
/// grant allows.
pub async fn actor_in_force(
    tx: &mut TenantTx,
    audit_name: &str,
) -> Result<Option<Actor>, sqlx::Error> {
    let tenant_id = tx.tenant_id();
    let parsed = audit_name
        .split_once(':')
        .and_then(|(kind, id)| Some((kind, id.parse::<uuid::Uuid>().ok()?)));
    let row: Option<(String, Option<uuid::Uuid>)> = match parsed {
        Some(("api_key", key_id)) => {
            sqlx::query_as(
                "SELECT k.role::text, k.user_id
                 FROM identity.api_keys k JOIN identity.tenants t USING (tenant_id)
                 LEFT JOIN identity.users u ON u.tenant_id = k.tenant_id AND u.id = k.user_id
                 WHERE k.tenant_id = $1 AND k.id = $2 AND k.status = 'active'
                   AND t.status = 'active' AND coalesce(u.status = 'active', true)",
            )
            .bind(tenant_id.as_uuid())
            .bind(key_id)
            .fetch_optional(&mut **tx)
            .await?
        }
        Some(("user", user_id)) => {
            sqlx::query_as(
                "SELECT u.role::text, u.id
                 FROM identity.users u JOIN identity.tenants t USING (tenant_id)
                 WHERE u.tenant_id = $1 AND u.id = $2 AND u.status = 'active'
                   AND t.status = 'active'",
            )
            .bind(tenant_id.as_uuid())
            .bind(user_id)
            .fetch_optional(&mut **tx)
            .await?
        }
        _ => None,
    };
    Ok(row.map(|(role, user_id)| {
        let (kind, id) = parsed.expect("BUG: a row only for a parsed name");
        Actor {
            tenant_id,
            kind: if kind == "api_key" {
                ActorKind::ApiKey(ApiKeyId::new_unchecked(id))
            } else {
                ActorKind::User(UserId::new_unchecked(id))
            },
            role: role
                .parse()
                .expect("BUG: identity.role enum and kernel::Role disagree"),
            user_id: user_id.map(UserId::new_unchecked),
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_parses_back_into_its_parts_and_garbage_does_not() {
        let tenant_id = TenantId::generate();
        let key_id = ApiKeyId::generate();
        let token = format!(
            "tk_{}.{}.{}",
            tenant_id.as_uuid().simple(),
            key_id.as_uuid().simple(),
            URL_SAFE_NO_PAD.encode([7u8; 32])
        );
        let claim = ApiKeyClaim::parse(&token).unwrap();
        assert_eq!(
            (claim.tenant_id, claim.key_id, claim.secret),
            (tenant_id, key_id, vec![7u8; 32])
        );
        for bad in [
            "",
            "tk_",
            "Bearer x",
            &token[..token.len() - 2],
            &token.replace("tk_", "tx_"),
        ] {
            assert!(ApiKeyClaim::parse(bad).is_none(), "{bad:?} parsed");
        }
    }
}
