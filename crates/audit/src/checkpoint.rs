//! Signed checkpoints of each tenant's chain heads.
//!
//! A superuser can rewrite a whole chain consistently; what they cannot do is sign.
//! A checkpoint is an Ed25519 signature, by a key kept outside the database, over
//! every lane head of one tenant at one moment. Verification then proves the chain
//! up to each checkpoint is the one that was signed, and that nothing signed was
//! later cut off.

use std::path::Path;

use db::TenantTx;
pub use ed25519_dalek::VerifyingKey;
use ed25519_dalek::{Signer, SigningKey, Verifier};
use kernel::TenantId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::chain::{micros, to_stored_precision};

/// The signing key for checkpoints, and its public id.
pub struct CheckpointKey {
    signing: SigningKey,
    key_id: String,
}

impl std::fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("reading the checkpoint key {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the checkpoint key {path} is not 64 hex digits (an Ed25519 seed)")]
    Malformed { path: String },
}

impl CheckpointKey {
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(&seed);
        let key_id = key_id(&signing.verifying_key());
        Self { signing, key_id }
    }

    pub fn generate() -> Self {
        Self::from_seed(rand::random())
    }

    /// Reads the key from `path`, creating it (mode 0600) if it does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyFileError> {
        let io = |source| KeyFileError::Io {
            path: path.display().to_string(),
            source,
        };
        if !path.exists() {
            let key = Self::generate();
            write_secret_file(path, &hex::encode(key.signing.to_bytes())).map_err(io)?;
            return Ok(key);
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        let seed: [u8; 32] = hex::decode(text.trim())
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| KeyFileError::Malformed {
                path: path.display().to_string(),
            })?;
        Ok(Self::from_seed(seed))
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }
}

/// Writes `contents` to a new file readable only by us.
pub fn write_secret_file(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

/// The public id of a verifying key: the first 16 hex digits of its SHA-256.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

/// One lane's head, as signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaneHead {
    pub lane: i16,
    pub seq: i64,
    #[serde(with = "hex_bytes")]
    pub hash: [u8; 32],
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        hex::decode(text)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
    }
}

/// A checkpoint as stored.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub tenant_id: TenantId,
    pub id: Uuid,
    pub created_at: OffsetDateTime,
    pub heads: Vec<LaneHead>,
    pub key_id: String,
    pub signature: Vec<u8>,
}

impl Checkpoint {
    /// The bytes that are signed.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(64 + self.heads.len() * 42);
        buf.extend_from_slice(b"tenet-checkpoint-v1");
        buf.extend_from_slice(self.tenant_id.as_uuid().as_bytes());
        buf.extend_from_slice(self.id.as_bytes());
        buf.extend_from_slice(&micros(self.created_at).to_be_bytes());
        buf.extend_from_slice(
            &u32::try_from(self.heads.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        for head in &self.heads {
            buf.extend_from_slice(&head.lane.to_be_bytes());
            buf.extend_from_slice(&head.seq.to_be_bytes());
            buf.extend_from_slice(&head.hash);
        }
        buf
    }

    /// Whether `key` signed exactly this checkpoint.
    pub fn signature_is_valid(&self, key: &VerifyingKey) -> bool {
        let Ok(signature) = ed25519_dalek::Signature::from_slice(&self.signature) else {
            return false;
        };
        key.verify(&self.signed_bytes(), &signature).is_ok()
    }
}

/// Signs and stores the current heads of the transaction's tenant. Returns `None`
/// when nothing was appended since the last checkpoint.
pub async fn write_checkpoint(
    tx: &mut TenantTx,
    key: &CheckpointKey,
) -> Result<Option<Checkpoint>, sqlx::Error> {
    let tenant_id = tx.tenant_id();
    let rows: Vec<(i16, i64, Vec<u8>)> = sqlx::query_as(
        "SELECT lane, seq, hash FROM audit.chain_heads WHERE tenant_id = $1 ORDER BY lane",
    )
    .bind(tenant_id.as_uuid())
    .fetch_all(&mut **tx)
    .await?;
    let heads: Vec<LaneHead> = rows
        .into_iter()
        .filter_map(|(lane, seq, hash)| {
            Some(LaneHead {
                lane,
                seq,
                hash: hash.try_into().ok()?,
            })
        })
        .collect();
    let last: Option<serde_json::Value> = sqlx::query_scalar(
        "SELECT heads FROM audit.checkpoints WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC LIMIT 1",
    )
    .bind(tenant_id.as_uuid())
    .fetch_optional(&mut **tx)
    .await?;
    let heads_json = serde_json::to_value(&heads).expect("BUG: heads serialise");
    if last.as_ref() == Some(&heads_json) {
        return Ok(None);
    }
    let mut checkpoint = Checkpoint {
        tenant_id,
        id: Uuid::now_v7(),
        created_at: to_stored_precision(OffsetDateTime::now_utc()),
        heads,
        key_id: key.key_id.clone(),
        signature: Vec::new(),
    };
    checkpoint.signature = key
        .signing
        .sign(&checkpoint.signed_bytes())
        .to_bytes()
        .to_vec();
    sqlx::query(
        "INSERT INTO audit.checkpoints (tenant_id, id, created_at, heads, key_id, signature)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(tenant_id.as_uuid())
    .bind(checkpoint.id)
    .bind(checkpoint.created_at)
    .bind(&heads_json)
    .bind(&checkpoint.key_id)
    .bind(&checkpoint.signature)
    .execute(&mut **tx)
    .await?;
    Ok(Some(checkpoint))
}

/// Every checkpoint of the transaction's tenant, oldest first. A checkpoint whose
/// heads cannot be read is returned with no heads (its signature then fails).
pub async fn checkpoints(tx: &mut TenantTx) -> Result<Vec<Checkpoint>, sqlx::Error> {
    let rows: Vec<(Uuid, OffsetDateTime, serde_json::Value, String, Vec<u8>)> = sqlx::query_as(
        "SELECT id, created_at, heads, key_id, signature FROM audit.checkpoints
         WHERE tenant_id = $1 ORDER BY created_at, id",
    )
    .bind(tx.tenant_id().as_uuid())
    .fetch_all(&mut **tx)
    .await?;
    let tenant_id = tx.tenant_id();
    Ok(rows
        .into_iter()
        .map(|(id, created_at, heads, key_id, signature)| Checkpoint {
            tenant_id,
            id,
            created_at,
            heads: serde_json::from_value(heads).unwrap_or_default(),
            key_id,
            signature,
        })
        .collect())
}
