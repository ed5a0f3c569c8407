//! The `Idempotency-Key` header on POST requests.
//!
//! The key is claimed in the request's own transaction; see `platform::idempotency`.
//! A replay answers with the first outcome, re-rendered from the resource it made
//! (responses are not stored: they may contain PHI).

use axum::http::{HeaderMap, Method};
use db::TenantTx;
use platform::idempotency::{self, Claim, KEY_LEN_MAX, StoredOutcome};

use crate::ApiError;

/// What the handler should do.
pub enum Idempotency {
    /// No key was sent.
    None,
    /// A new key: do the work, then `record`.
    Fresh(String),
    /// The same request was made before.
    Replay(StoredOutcome),
}

/// Reads and claims the request's idempotency key, if any.
pub async fn claim(
    tx: &mut TenantTx,
    headers: &HeaderMap,
    path: &str,
    body: &[u8],
) -> Result<Idempotency, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(Idempotency::None);
    };
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|key| {
            !key.is_empty() && key.len() <= KEY_LEN_MAX && key.chars().all(|c| c.is_ascii_graphic())
        })
        .ok_or_else(|| {
            ApiError::InvalidInput(format!(
                "Idempotency-Key must be 1 to {KEY_LEN_MAX} visible ASCII characters"
            ))
        })?;
    let hash = idempotency::request_hash(Method::POST.as_str(), path, body);
    match idempotency::claim(tx, key, &hash).await? {
        Claim::Fresh => Ok(Idempotency::Fresh(key.to_owned())),
        Claim::Replay(outcome) => Ok(Idempotency::Replay(outcome)),
        Claim::Mismatch => Err(ApiError::IdempotencyKeyReused),
    }
}

impl Idempotency {
    /// Records the outcome of a fresh key; a no-op otherwise.
    pub async fn record(
        &self,
        tx: &mut TenantTx,
        response_code: u16,
        resource_kind: &str,
        resource_id: Option<uuid::Uuid>,
    ) -> Result<(), ApiError> {
        if let Self::Fresh(key) = self {
            idempotency::record(
                tx,
                key,
                &StoredOutcome {
                    response_code,
                    resource_kind: resource_kind.to_owned(),
                    resource_id,
                },
            )
            .await?;
        }
        Ok(())
    }
}
