//! Keys: one master key outside the database, one data key per tenant inside it.
//!
//! Each tenant's data-encryption key (DEK) is random, wrapped with AES-256-GCM by the
//! master key, and stored in `identity.data_keys` bound (as associated data) to its
//! tenant and id. Rotating the master key re-wraps every DEK; no record has to be
//! re-encrypted. Unwrapped DEKs are cached in memory per process.
//!
//! This module must never write a key to a log, an error or the database unwrapped.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use db::TenantTx;
use kernel::TenantId;
use sha2::{Digest, Sha256};
use uuid::Uuid;

const NONCE_LEN: usize = 12;

/// A 256-bit AES key that does not print itself.
#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey([redacted])")
    }
}

impl SecretKey {
    pub fn generate() -> Self {
        Self(rand::random())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Seals `plaintext` bound to `aad`: `nonce || ciphertext || tag`.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let cipher = Aes256Gcm::new((&self.0).into());
        let nonce: [u8; NONCE_LEN] = rand::random();
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + 16);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(
            &cipher
                .encrypt(
                    Nonce::from_slice(&nonce),
                    Payload {
                        msg: plaintext,
                        aad,
                    },
                )
                .expect("BUG: AES-GCM encryption of a bounded buffer cannot fail"),
        );
        out
    }

    /// Opens what [`seal`](Self::seal) made with the same `aad`; `None` if anything differs.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN + 16 {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        Aes256Gcm::new((&self.0).into())
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .ok()
    }
}

/// The master key and its public id (the first 16 hex digits of its SHA-256).
#[derive(Debug, Clone)]
pub struct MasterKey {
    id: String,
    key: SecretKey,
}

#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error("reading the master key from {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the master key in {source_name} is not 64 hex digits")]
    Malformed { source_name: String },
}

impl MasterKey {
    pub fn generate() -> Self {
        Self::from_secret(SecretKey::generate())
    }

    fn from_secret(key: SecretKey) -> Self {
        let id = hex::encode(&Sha256::digest(key.as_bytes())[..8]);
        Self { id, key }
    }

    /// Parses 64 hex digits.
    pub fn from_hex(text: &str, source_name: &str) -> Result<Self, MasterKeyError> {
        let bytes: [u8; 32] = hex::decode(text.trim())
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| MasterKeyError::Malformed {
                source_name: source_name.to_owned(),
            })?;
        Ok(Self::from_secret(SecretKey(bytes)))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.key.as_bytes())
    }

    pub fn from_file(path: &Path) -> Result<Self, MasterKeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| MasterKeyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_hex(&text, &path.display().to_string())
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    fn wrap_aad(tenant_id: TenantId, data_key_id: Uuid) -> Vec<u8> {
        let mut aad = b"tenet-dek-v1".to_vec();
        aad.extend_from_slice(tenant_id.as_uuid().as_bytes());
        aad.extend_from_slice(data_key_id.as_bytes());
        aad
    }

    fn wrap(&self, tenant_id: TenantId, data_key_id: Uuid, data_key: &SecretKey) -> Vec<u8> {
        self.key
            .seal(data_key.as_bytes(), &Self::wrap_aad(tenant_id, data_key_id))
    }

    fn unwrap_key(
        &self,
        tenant_id: TenantId,
        data_key_id: Uuid,
        wrapped: &[u8],
    ) -> Option<SecretKey> {
        let bytes = self
            .key
            .open(wrapped, &Self::wrap_aad(tenant_id, data_key_id))?;
        Some(SecretKey(bytes.try_into().ok()?))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("the tenant has no active data key")]
    NoDataKey,
    #[error(
        "data key {data_key_id} is wrapped by master key {wanted}, but the loaded master key is {loaded}"
    )]
    WrongMasterKey {
        data_key_id: Uuid,
        wanted: String,
        loaded: String,
    },
    #[error("data key {data_key_id} does not unwrap: it was altered or moved to another row")]
    Corrupt { data_key_id: Uuid },
    #[error("reading data keys")]
    Database(#[from] sqlx::Error),
}

/// A tenant's data key, unwrapped.
#[derive(Debug, Clone)]
pub struct DataKey {
    pub id: Uuid,
    pub key: SecretKey,
}

/// Unwrapped data keys by tenant and key id.
type DataKeyCache = HashMap<(TenantId, Uuid), Arc<DataKey>>;

/// The master key and a cache of unwrapped data keys.
#[derive(Debug, Clone)]
pub struct Keyring {
    master: Arc<MasterKey>,
    cache: Arc<RwLock<DataKeyCache>>,
    active: Arc<RwLock<HashMap<TenantId, Uuid>>>,
}

impl Keyring {
    pub fn new(master: MasterKey) -> Self {
        Self {
            master: Arc::new(master),
            cache: Arc::default(),
            active: Arc::default(),
        }
    }

    pub fn master_key_id(&self) -> &str {
        self.master.id()
    }

    /// The master key new data keys are wrapped with.
    pub fn master_key(&self) -> &MasterKey {
        &self.master
    }

    /// Creates the first data key of the transaction's (new) tenant.
    pub async fn create_data_key(&self, tx: &mut TenantTx) -> Result<Arc<DataKey>, KeyringError> {
        let tenant_id = tx.tenant_id();
        let data_key = Arc::new(DataKey {
            id: Uuid::now_v7(),
            key: SecretKey::generate(),
        });
        sqlx::query(
            "INSERT INTO identity.data_keys (tenant_id, id, wrapped_key, master_key_id) VALUES ($1, $2, $3, $4)",
        )
        .bind(tenant_id.as_uuid())
        .bind(data_key.id)
        .bind(self.master.wrap(tenant_id, data_key.id, &data_key.key))
        .bind(self.master.id())
        .execute(&mut **tx)
        .await?;
        Ok(data_key)
    }

    /// The data key new records of the transaction's tenant are sealed with.
    pub async fn active_key(&self, tx: &mut TenantTx) -> Result<Arc<DataKey>, KeyringError> {
        let tenant_id = tx.tenant_id();
        let cached = self
            .active
            .read()
            .expect("BUG: keyring lock poisoned")
            .get(&tenant_id)
            .copied();
        if let Some(data_key_id) = cached {
            return self.key(tx, data_key_id).await;
        }
        let data_key_id: Uuid = sqlx::query_scalar(
            "SELECT id FROM identity.data_keys WHERE tenant_id = $1 AND status = 'active'",
        )
        .bind(tenant_id.as_uuid())
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(KeyringError::NoDataKey)?;
        self.active
            .write()
            .expect("BUG: keyring lock poisoned")
            .insert(tenant_id, data_key_id);
        self.key(tx, data_key_id).await
    }

    /// A data key of the transaction's tenant by id.
    pub async fn key(
        &self,
        tx: &mut TenantTx,
        data_key_id: Uuid,
    ) -> Result<Arc<DataKey>, KeyringError> {
        let tenant_id = tx.tenant_id();
        if let Some(data_key) = self
            .cache
            .read()
            .expect("BUG: keyring lock poisoned")
            .get(&(tenant_id, data_key_id))
        {
            return Ok(data_key.clone());
        }
        let (wrapped, master_key_id): (Vec<u8>, String) = sqlx::query_as(
            "SELECT wrapped_key, master_key_id FROM identity.data_keys WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant_id.as_uuid())
        .bind(data_key_id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(KeyringError::NoDataKey)?;
        if master_key_id != self.master.id() {
            return Err(KeyringError::WrongMasterKey {
                data_key_id,
                wanted: master_key_id,
                loaded: self.master.id().to_owned(),
            });
        }
        let key = self
            .master
            .unwrap_key(tenant_id, data_key_id, &wrapped)
            .ok_or(KeyringError::Corrupt { data_key_id })?;
        let data_key = Arc::new(DataKey {
            id: data_key_id,
            key,
        });
        self.cache
            .write()
            .expect("BUG: keyring lock poisoned")
            .insert((tenant_id, data_key_id), data_key.clone());
        Ok(data_key)
    }
}

/// Re-wraps every data key of the transaction's tenant from `old` to `new`.
/// Returns how many keys were re-wrapped. Runs in the caller's transaction so a
/// rotation of many tenants can commit tenant by tenant.
pub async fn rewrap_tenant(
    tx: &mut TenantTx,
    old: &MasterKey,
    new: &MasterKey,
) -> Result<u64, KeyringError> {
    let tenant_id = tx.tenant_id();
    let rows: Vec<(Uuid, Vec<u8>, String)> = sqlx::query_as(
        "SELECT id, wrapped_key, master_key_id FROM identity.data_keys WHERE tenant_id = $1 FOR UPDATE",
    )
    .bind(tenant_id.as_uuid())
    .fetch_all(&mut **tx)
    .await?;
    let mut n_rewrapped = 0;
    for (data_key_id, wrapped, master_key_id) in rows {
        if master_key_id == new.id() {
            continue;
        }
        if master_key_id != old.id() {
            return Err(KeyringError::WrongMasterKey {
                data_key_id,
                wanted: master_key_id,
                loaded: old.id().to_owned(),
            });
        }
        let key = old
            .unwrap_key(tenant_id, data_key_id, &wrapped)
            .ok_or(KeyringError::Corrupt { data_key_id })?;
        sqlx::query("UPDATE identity.data_keys SET wrapped_key = $3, master_key_id = $4 WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id.as_uuid())
            .bind(data_key_id)
            .bind(new.wrap(tenant_id, data_key_id, &key))
            .bind(new.id())
            .execute(&mut **tx)
            .await?;
        n_rewrapped += 1;
    }
    Ok(n_rewrapped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_bytes_open_only_with_the_same_associated_data() {
        let key = SecretKey::generate();
        let sealed = key.seal(b"Jane Canary", b"tenant-a/patient-1/family_name");
        assert_eq!(
            key.open(&sealed, b"tenant-a/patient-1/family_name")
                .unwrap(),
            b"Jane Canary"
        );
        assert!(
            key.open(&sealed, b"tenant-a/patient-2/family_name")
                .is_none()
        );
        assert!(
            SecretKey::generate()
                .open(&sealed, b"tenant-a/patient-1/family_name")
                .is_none()
        );
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(
            key.open(&flipped, b"tenant-a/patient-1/family_name")
                .is_none()
        );
    }

    #[test]
    fn keys_never_print() {
        let master = MasterKey::generate();
        let printed = format!("{master:?}");
        assert!(!printed.contains(&master.to_hex()));
    }
}
