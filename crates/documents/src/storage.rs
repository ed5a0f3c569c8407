//! Where sealed content is kept: an `object_store` behind one [`Storage`] handle,
//! chosen by a URL-like setting.
//!
//! - `file:///var/lib/tenet/documents` (or a plain path): the local filesystem, the
//!   default (`./.tenet/documents`). A multipart upload is written to a temporary
//!   file and renamed into place when complete, so a half-written object is never
//!   seen under its key.
//! - `s3://bucket` or `s3://bucket/prefix`: S3 or an S3-compatible server, configured
//!   from the standard `AWS_*` environment variables (`AWS_REGION`,
//!   `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_ENDPOINT`
//!   for a non-AWS server, `AWS_ALLOW_HTTP=true` for one without TLS).
//!
//! Object keys are `<tenant id>/<document id>`: no PHI, nothing a user typed. This
//! module only moves ciphertext; it never sees a key or plaintext.

use std::path::Path;
use std::sync::Arc;

use kernel::TenantId;
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;

use crate::category::DocumentId;

/// The default upper bound of one document's content.
pub const SIZE_MAX_BYTES_DEFAULT: u64 = 25 * 1024 * 1024;

/// The object store and the upload limit.
#[derive(Debug, Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    /// What the store is, for logs: a path or a bucket, never a credential.
    description: String,
    size_max_bytes: u64,
}

/// A storage setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StorageConfigError {
    #[error(
        "unsupported document store {0:?}: expected file:///path, a path, or s3://bucket[/prefix]"
    )]
    Unsupported(String),
    #[error("creating the document directory {path}")]
    Directory {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("configuring the document store")]
    Store(#[from] object_store::Error),
}

impl Storage {
    /// The store named by `url` (see the module documentation).
    pub fn from_url(url: &str) -> Result<Self, StorageConfigError> {
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(StorageConfigError::Unsupported(url.to_owned()));
            }
            let s3 = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .build()?;
            let description = format!("s3://{bucket}/{prefix}");
            let store: Arc<dyn ObjectStore> = if prefix.trim_matches('/').is_empty() {
                Arc::new(s3)
            } else {
                Arc::new(PrefixStore::new(s3, prefix.trim_matches('/')))
            };
            return Ok(Self::new(store, description));
        }
        let path = url.strip_prefix("file://").unwrap_or(url);
        if path.is_empty() || url.contains("://") && !url.starts_with("file://") {
            return Err(StorageConfigError::Unsupported(url.to_owned()));
        }
        Self::local(Path::new(path))
    }

    /// The local filesystem under `dir`, created if missing.
    pub fn local(dir: &Path) -> Result<Self, StorageConfigError> {
        std::fs::create_dir_all(dir).map_err(|source| StorageConfigError::Directory {
            path: dir.display().to_string(),
            source,
        })?;
        let dir = dir
            .canonicalize()
            .map_err(|source| StorageConfigError::Directory {
                path: dir.display().to_string(),
                source,
            })?;
        let store = LocalFileSystem::new_with_prefix(&dir)?;
        Ok(Self::new(Arc::new(store), dir.display().to_string()))
    }

    /// Any object store (tests use an S3 client pointed at a local server).
    pub fn new(store: Arc<dyn ObjectStore>, description: String) -> Self {
        Self {
            store,
            description,
            size_max_bytes: SIZE_MAX_BYTES_DEFAULT,
        }
    }

    /// A store in process memory, for what needs a `Storage` but never stores (a job
    /// registry read for its kinds only).
    pub fn in_memory() -> Self {
        Self::new(
            Arc::new(object_store::memory::InMemory::new()),
            "memory".to_owned(),
        )
    }

    /// The same store with another upload limit.
    pub fn with_size_max_bytes(mut self, size_max_bytes: u64) -> Self {
        assert!(size_max_bytes > 0, "BUG: a zero document size limit");
        self.size_max_bytes = size_max_bytes;
        self
    }

    pub fn size_max_bytes(&self) -> u64 {
        self.size_max_bytes
    }

    pub fn description(&self) -> &str {
        &self.description
    }

    pub(crate) fn store(&self) -> &dyn ObjectStore {
        self.store.as_ref()
    }

    /// The key of a document's object.
    pub fn object_key(tenant_id: TenantId, document_id: DocumentId) -> ObjectPath {
        ObjectPath::from(format!("{tenant_id}/{document_id}"))
    }

    /// The prefix of a tenant's objects.
    pub(crate) fn tenant_prefix(tenant_id: TenantId) -> ObjectPath {
        ObjectPath::from(tenant_id.to_string())
    }
}
