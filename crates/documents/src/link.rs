//! Short-lived signed download links.
//!
//! A link's token is `base64url(payload || HMAC-SHA256(payload))`. The payload binds
//! the format version, the tenant, the document, the expiry, the data key whose
//! derived MAC key signed it, and the actor who made the link (downloads through it
//! are audited as that actor). The MAC key is derived from the tenant's data key, so
//! a token of one tenant cannot be made or checked with another's key, and no new
//! secret has to be configured. A token is a bearer credential: its `Debug` hides it,
//! and it names no PHI (ids and a time only).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use db::TenantTx;
use hmac::{Hmac, Mac};
use identity::keyring::{Keyring, KeyringError, SecretKey};
use kernel::TenantId;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::category::DocumentId;

/// A link's lifetime when none is asked for.
pub const TTL_DEFAULT: time::Duration = time::Duration::minutes(5);
/// The longest lifetime a link may be given.
pub const TTL_MAX: time::Duration = time::Duration::hours(1);
const VERSION: u8 = 1;
const MAC_LEN: usize = 32;
const ACTOR_LEN_MAX: usize = 200;

/// A signed token, as issued.
#[derive(Clone, PartialEq, Eq)]
pub struct LinkToken(String);

impl std::fmt::Debug for LinkToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkToken([redacted])")
    }
}

impl LinkToken {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("the link is malformed or its signature does not match")]
    Invalid,
    #[error("the link has expired")]
    Expired,
    #[error("a link lives between 1 second and {} seconds", TTL_MAX.whole_seconds())]
    InvalidTtl,
    #[error(transparent)]
    Keyring(#[from] KeyringError),
}

/// What a token says, before its signature is checked: enough to open the right
/// tenant's transaction as the right actor. Its `Debug` leaves out the payload and
/// MAC, which together are the bearer token.
#[derive(Clone, PartialEq, Eq)]
pub struct Claims {
    pub tenant_id: TenantId,
    pub document_id: DocumentId,
    pub expires_at: OffsetDateTime,
    pub actor: String,
    data_key_id: Uuid,
    payload: Vec<u8>,
    mac: Vec<u8>,
}

impl std::fmt::Debug for Claims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claims")
            .field("tenant_id", &self.tenant_id)
            .field("document_id", &self.document_id)
            .field("expires_at", &self.expires_at)
            .field("actor", &self.actor)
            .finish_non_exhaustive()
    }
}

fn mac_key(key: &SecretKey) -> Hmac<Sha256> {
    // A key of its own for links, derived from the data key: HMAC(data key, label).
    let mut derive = <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes())
        .expect("BUG: HMAC takes a key of any length");
    derive.update(b"tenet-document-link-v1");
    let derived = derive.finalize().into_bytes();
    <Hmac<Sha256> as Mac>::new_from_slice(&derived).expect("BUG: HMAC takes a key of any length")
}

/// Issues a link token for a document of the transaction's tenant, valid for `ttl`
/// from `now`, downloads through which are audited as the transaction's actor.
pub async fn issue(
    tx: &mut TenantTx,
    keyring: &Keyring,
    document_id: DocumentId,
    ttl: time::Duration,
    now: OffsetDateTime,
) -> Result<(LinkToken, OffsetDateTime), LinkError> {
    if ttl < time::Duration::seconds(1) || ttl > TTL_MAX {
        return Err(LinkError::InvalidTtl);
    }
    let actor = tx.actor().to_owned();
    assert!(
        actor.len() <= ACTOR_LEN_MAX,
        "BUG: an actor name of {} bytes",
        actor.len()
    );
    let data_key = keyring.active_key(tx).await?;
    let expires_at = (now + ttl)
        .replace_nanosecond(0)
        .expect("BUG: zero nanoseconds");
    let mut payload = Vec::with_capacity(1 + 16 + 16 + 16 + 8 + 1 + actor.len());
    payload.push(VERSION);
    payload.extend_from_slice(tx.tenant_id().as_uuid().as_bytes());
    payload.extend_from_slice(document_id.as_uuid().as_bytes());
    payload.extend_from_slice(data_key.id.as_bytes());
    payload.extend_from_slice(&expires_at.unix_timestamp().to_be_bytes());
    payload.push(u8::try_from(actor.len()).expect("BUG: bounded above"));
    payload.extend_from_slice(actor.as_bytes());
    let mut mac = mac_key(&data_key.key);
    mac.update(&payload);
    payload.extend_from_slice(&mac.finalize().into_bytes());
    Ok((LinkToken(URL_SAFE_NO_PAD.encode(payload)), expires_at))
}

impl Claims {
    /// Reads a token without trusting it.
    pub fn parse(token: &str) -> Result<Self, LinkError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| LinkError::Invalid)?;
        let fixed = 1 + 16 + 16 + 16 + 8 + 1;
        if bytes.len() < fixed + MAC_LEN || bytes[0] != VERSION {
            return Err(LinkError::Invalid);
        }
        let uuid_at = |at: usize| Uuid::from_slice(&bytes[at..at + 16]).expect("BUG: 16 bytes");
        let actor_len = usize::from(bytes[fixed - 1]);
        if bytes.len() != fixed + actor_len + MAC_LEN {
            return Err(LinkError::Invalid);
        }
        let actor = std::str::from_utf8(&bytes[fixed..fixed + actor_len])
            .map_err(|_| LinkError::Invalid)?
            .to_owned();
        let expires_unix = i64::from_be_bytes(bytes[49..57].try_into().expect("BUG: 8 bytes"));
        let expires_at =
            OffsetDateTime::from_unix_timestamp(expires_unix).map_err(|_| LinkError::Invalid)?;
        let (payload, mac) = bytes.split_at(fixed + actor_len);
        Ok(Self {
            tenant_id: TenantId::new_unchecked(uuid_at(1)),
            document_id: DocumentId::new_unchecked(uuid_at(17)),
            data_key_id: uuid_at(33),
            expires_at,
            actor,
            payload: payload.to_vec(),
            mac: mac.to_vec(),
        })
    }

    /// Checks the signature with the tenant's key and the expiry at `now`. `tx` must
    /// be the claimed tenant's.
    pub async fn verify(
        &self,
        tx: &mut TenantTx,
        keyring: &Keyring,
        now: OffsetDateTime,
    ) -> Result<DocumentId, LinkError> {
        assert_eq!(
            tx.tenant_id(),
            self.tenant_id,
            "BUG: verify a link in its tenant's transaction"
        );
        let data_key = match keyring.key(tx, self.data_key_id).await {
            Ok(data_key) => data_key,
            // A key id the tenant does not have: a forged or foreign token.
            Err(KeyringError::NoDataKey) => return Err(LinkError::Invalid),
            Err(err) => return Err(err.into()),
        };
        let mut mac = mac_key(&data_key.key);
        mac.update(&self.payload);
        let expected = mac.finalize().into_bytes();
        if !bool::from(expected.as_slice().ct_eq(&self.mac)) {
            return Err(LinkError::Invalid);
        }
        if now >= self.expires_at {
            return Err(LinkError::Expired);
        }
        Ok(self.document_id)
    }
}
