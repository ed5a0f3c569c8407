//! Idempotency keys: the same key and request return the first outcome; the same key
//! with a different request is refused.
//!
//! The claim is made inside the write's own transaction: the key row and the effect
//! commit together or not at all. A concurrent request with the same key blocks on
//! the first one's uncommitted row and then sees its outcome.

use db::TenantTx;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The longest idempotency key accepted.
pub const KEY_LEN_MAX: usize = 255;

/// What a previous request with the same key produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOutcome {
    pub response_code: u16,
    pub resource_kind: String,
    pub resource_id: Option<Uuid>,
}

/// The result of claiming a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is new: do the work, then [`record`] its outcome in the same transaction.
    Fresh,
    /// The same request was made before; answer with this outcome again.
    Replay(StoredOutcome),
    /// The key was used for a different request.
    Mismatch,
}

/// The fingerprint of a request: method, path and body.
pub fn request_hash(method: &str, path: &str, body: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in [method.as_bytes(), path.as_bytes(), body] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// Claims `key` for the request with `hash` in `tx`.
pub async fn claim(tx: &mut TenantTx, key: &str, hash: &[u8; 32]) -> Result<Claim, sqlx::Error> {
    assert!(
        !key.is_empty() && key.len() <= KEY_LEN_MAX,
        "BUG: idempotency key length must be validated at the edge"
    );
    // Placeholder outcome, replaced by `record` in the same transaction.
    let inserted = sqlx::query(
        "INSERT INTO platform.idempotency_keys (tenant_id, key, request_hash, response_code, resource_kind)
         VALUES ($1, $2, $3, 0, '') ON CONFLICT DO NOTHING",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(key)
    .bind(&hash[..])
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(Claim::Fresh);
    }
    let (stored_hash, response_code, resource_kind, resource_id): (
        Vec<u8>,
        i16,
        String,
        Option<Uuid>,
    ) = sqlx::query_as(
        "SELECT request_hash, response_code, resource_kind, resource_id
             FROM platform.idempotency_keys WHERE tenant_id = $1 AND key = $2",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(key)
    .fetch_one(&mut **tx)
    .await?;
    if stored_hash != hash {
        return Ok(Claim::Mismatch);
    }
    Ok(Claim::Replay(StoredOutcome {
        response_code: u16::try_from(response_code).unwrap_or(500),
        resource_kind,
        resource_id,
    }))
}

/// Records the outcome of a [`Claim::Fresh`] key.
pub async fn record(
    tx: &mut TenantTx,
    key: &str,
    outcome: &StoredOutcome,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE platform.idempotency_keys SET response_code = $3, resource_kind = $4, resource_id = $5
         WHERE tenant_id = $1 AND key = $2",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(key)
    .bind(i16::try_from(outcome.response_code).expect("BUG: HTTP status fits i16"))
    .bind(&outcome.resource_kind)
    .bind(outcome.resource_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
