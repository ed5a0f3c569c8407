//! Documents: upload, read, list, delete — content in object storage, sealed; the
//! metadata in `documents.documents`.
//!
//! **How an upload stays consistent.** The object is written first, streamed and
//! sealed frame by frame through a multipart upload that becomes visible under its
//! key only when complete; then the metadata row and its audit event are written in
//! the caller's transaction. If the upload fails, the multipart upload is aborted
//! and nothing is recorded. If the caller's transaction does not commit after the
//! object was written, the object is an orphan: no row names it, no read can reach
//! it (rows are the only way to a key), and the lifecycle job removes objects
//! without a stored row once they are older than [`crate::lifecycle::ORPHAN_AGE`].
//!
//! **Deleting** marks the row deleted (with its audit event) and then removes the
//! object, both before the caller commits; a retry after a failed commit finds the
//! object already gone and succeeds. The row stays, as the record that the document
//! existed and when it went.
//!
//! Every function takes the tenant's transaction first and writes an audit event for
//! every read or write of content in it. Nothing here knows HTTP; nothing here puts
//! content or a file name in a log, an error, an event or a job argument.

use std::sync::Arc;

use audit::AuditEntry;
use bytes::Bytes;
use db::TenantTx;
use futures::stream::FuturesUnordered;
use futures::{Stream, StreamExt};
use identity::keyring::{DataKey, Keyring, KeyringError};
use kernel::{PatientId, Phi, TenantId};
use object_store::{MultipartUpload, PutPayload, UploadPart};
use platform::outbox::{self, Event, Outbox};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::category::{Category, DocumentId};
use crate::sealing::{self, Opener, Sealer, Undecryptable};
use crate::sniff::{self, SniffError};
use crate::storage::Storage;

/// A multipart part: S3's minimum, so that only the last part may be smaller.
const PART_LEN: usize = 5 * 1024 * 1024;
/// Parts in flight at once: bounds the memory of one upload to about this many parts.
const PARTS_IN_FLIGHT_MAX: usize = 2;
/// How many plaintext bytes are gathered before the type is sniffed.
const SNIFF_LEN: usize = 512;
/// File names longer than this are refused.
pub const FILENAME_LEN_MAX: usize = 255;
/// Rows one list returns at most.
pub const LIST_LIMIT_MAX: i64 = 500;

/// What is to be stored.
#[derive(Debug, Clone)]
pub struct NewDocument {
    pub patient_id: PatientId,
    pub category: Category,
    /// The name the uploader gave: PHI-prone, sealed at rest.
    pub filename: Phi<String>,
    /// The declared content type; the bytes must agree (see [`crate::sniff`]).
    pub content_type: String,
}

/// A document's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "documents.document_status", rename_all = "snake_case")]
pub enum Status {
    Stored,
    Deleted,
}

/// Why a document was deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "documents.deletion_reason", rename_all = "snake_case")]
pub enum DeletionReason {
    Requested,
    RetentionExpired,
}

impl DeletionReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            DeletionReason::Requested => "requested",
            DeletionReason::RetentionExpired => "retention_expired",
        }
    }
}

/// A legal hold: the document cannot be deleted while it lasts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// Why (a matter or case reference); not PHI by rule, and kept short.
    pub reason: String,
    pub by: String,
    pub at: OffsetDateTime,
}

/// A document's metadata: no content, no file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub id: DocumentId,
    pub patient_id: PatientId,
    pub category: Category,
    pub content_type: String,
    pub size_bytes: i64,
    pub content_sha256: [u8; 32],
    pub status: Status,
    pub created_by: String,
    pub created_at: OffsetDateTime,
    pub deleted_at: Option<OffsetDateTime>,
    pub deletion_reason: Option<DeletionReason>,
    pub hold: Option<Hold>,
}

/// The outcomes of an upload.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    #[error("the document is larger than {limit_bytes} bytes")]
    TooLarge { limit_bytes: u64 },
    #[error(transparent)]
    ContentType(#[from] SniffError),
    #[error("the file name must be 1 to {FILENAME_LEN_MAX} characters without control characters")]
    InvalidFilename,
    #[error("reading the upload")]
    Body(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("writing to the document store")]
    Storage(#[from] object_store::Error),
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    #[error("writing the audit event")]
    Audit(#[from] audit::AuditError),
    #[error("writing document metadata")]
    Database(#[from] sqlx::Error),
}

/// The outcomes of reading a document.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("no such document")]
    NotFound,
    #[error("the document was deleted")]
    Deleted,
    #[error("the document's content is missing from the store")]
    ContentMissing,
    #[error("reading from the document store")]
    Storage(#[source] object_store::Error),
    #[error(transparent)]
    Undecryptable(#[from] Undecryptable),
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    #[error("writing the audit event")]
    Audit(#[from] audit::AuditError),
    #[error("reading document metadata")]
    Database(#[from] sqlx::Error),
}

/// The outcomes of deleting a document.
#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    #[error("no such document")]
    NotFound,
    #[error("the document was already deleted")]
    AlreadyDeleted,
    #[error("the document is under legal hold and cannot be deleted")]
    OnHold,
    #[error("removing from the document store")]
    Storage(#[from] object_store::Error),
    #[error("writing the audit event")]
    Audit(#[from] audit::AuditError),
    #[error("writing document metadata")]
    Database(#[from] sqlx::Error),
}

/// A document's content as it is decrypted, chunk by chunk. The last item checks
/// the content's length and SHA-256 against what was recorded at upload.
pub type ContentStream = futures::stream::BoxStream<'static, Result<Bytes, OpenError>>;

/// An open document: its metadata, its file name (PHI) and its content.
pub struct Opened {
    pub document: Document,
    pub filename: Phi<String>,
    pub content: ContentStream,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("document", &self.document)
            .finish_non_exhaustive()
    }
}

fn filename_aad(tenant_id: TenantId, document_id: DocumentId) -> Vec<u8> {
    let mut aad = Vec::with_capacity(22 + 32);
    aad.extend_from_slice(b"tenet-document-name-v1");
    aad.extend_from_slice(tenant_id.as_uuid().as_bytes());
    aad.extend_from_slice(document_id.as_uuid().as_bytes());
    aad
}

fn check_filename(filename: &str) -> Result<(), PutError> {
    let n_chars = filename.chars().count();
    if n_chars == 0 || n_chars > FILENAME_LEN_MAX || filename.chars().any(char::is_control) {
        return Err(PutError::InvalidFilename);
    }
    Ok(())
}

/// Stores `content` (already in memory: a rendered PDF, a test file) as a document.
pub async fn put_bytes(
    tx: &mut TenantTx,
    keyring: &Keyring,
    storage: &Storage,
    new: NewDocument,
    content: Bytes,
) -> Result<Document, PutError> {
    let body = futures::stream::iter([Ok::<_, std::io::Error>(content)]);
    put(tx, keyring, storage, new, body).await
}

/// Streams `body` into the store, sealed, refusing it once it passes the store's size
/// limit or when its bytes contradict the declared type; then records the metadata and
/// the audit event in `tx`. The upload is never held whole in memory. `tx` stays open
/// while the body streams: for a body from the network, use [`stage`] with no
/// transaction open and [`record`] afterwards.
pub async fn put<S, E>(
    tx: &mut TenantTx,
    keyring: &Keyring,
    storage: &Storage,
    new: NewDocument,
    body: S,
) -> Result<Document, PutError>
where
    S: Stream<Item = Result<Bytes, E>> + Send,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let data_key = keyring.active_key(tx).await?;
    let staged = stage(storage, tx.tenant_id(), &data_key, new, body).await?;
    record(tx, &staged).await
}

/// Content in the store, sealed, that no row names yet: [`record`] makes it a
/// document; dropped unrecorded, its object is an orphan the lifecycle sweep removes
/// after [`crate::lifecycle::ORPHAN_AGE`] (or [`discard`] removes it now).
#[must_use = "a staged upload is recorded or discarded"]
pub struct Staged {
    tenant_id: TenantId,
    document_id: DocumentId,
    patient_id: PatientId,
    category: Category,
    content_type: &'static str,
    size_bytes: i64,
    content_sha256: [u8; 32],
    filename_sealed: Vec<u8>,
    data_key_id: Uuid,
    object_key: object_store::path::Path,
}

impl std::fmt::Debug for Staged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Staged")
            .field("document_id", &self.document_id)
            .field("category", &self.category)
            .field("size_bytes", &self.size_bytes)
            .finish_non_exhaustive()
    }
}

/// Streams `body` into the store, sealed with `data_key` (the tenant's active key),
/// refusing it once it passes the store's size limit or when its bytes contradict the
/// declared type. Holds no database connection: a slow upload ties up nothing shared.
pub async fn stage<S, E>(
    storage: &Storage,
    tenant_id: TenantId,
    data_key: &DataKey,
    new: NewDocument,
    body: S,
) -> Result<Staged, PutError>
where
    S: Stream<Item = Result<Bytes, E>> + Send,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    check_filename(new.filename.expose())?;
    let document_id = DocumentId::generate();
    let object_key = Storage::object_key(tenant_id, document_id);
    // Fused: a short body ends during the sniffing and is asked again after it.
    let mut body = std::pin::pin!(body.fuse());
    // Gather the first bytes and sniff them before anything is written.
    let mut head: Vec<u8> = Vec::with_capacity(SNIFF_LEN);
    let mut rest: Option<Bytes> = None;
    while head.len() < SNIFF_LEN {
        match body.next().await {
            Some(chunk) => {
                let chunk = chunk.map_err(|err| PutError::Body(err.into()))?;
                let take = (SNIFF_LEN - head.len()).min(chunk.len());
                head.extend_from_slice(&chunk[..take]);
                if take < chunk.len() {
                    rest = Some(chunk.slice(take..));
                }
            }
            None => break,
        }
    }
    let content_type = sniff::check(&new.content_type, &head)?;

    let mut writer = Parts::new(storage.store().put_multipart(&object_key).await?);
    let mut sealer = Sealer::new(data_key.key.clone(), tenant_id, document_id);
    let mut sha256 = Sha256::new();
    let mut size_bytes: u64 = 0;
    let limit_bytes = storage.size_max_bytes();

    let streamed: Result<(), PutError> = async {
        let mut next = Some(Bytes::from(head));
        loop {
            let chunk = match next.take().or_else(|| rest.take()) {
                Some(chunk) => chunk,
                None => match body.next().await {
                    Some(chunk) => chunk.map_err(|err| PutError::Body(err.into()))?,
                    None => break,
                },
            };
            size_bytes += chunk.len() as u64;
            if size_bytes > limit_bytes {
                return Err(PutError::TooLarge { limit_bytes });
            }
            sha256.update(&chunk);
            let sealed = sealer.push(&chunk);
            writer.write(&sealed).await?;
        }
        Ok(())
    }
    .await;
    if let Err(err) = streamed {
        // Nothing of a refused upload stays; an abort that fails leaves parts the
        // store's own expiry (S3 lifecycle) or the orphan sweep removes.
        writer.abort().await;
        return Err(err);
    }
    if let Err(err) = writer.write(&sealer.finish()).await {
        writer.abort().await;
        return Err(err.into());
    }
    writer.finish().await?;

    let filename_sealed = data_key.key.seal(
        new.filename.expose().as_bytes(),
        &filename_aad(tenant_id, document_id),
    );
    Ok(Staged {
        tenant_id,
        document_id,
        patient_id: new.patient_id,
        category: new.category,
        content_type,
        size_bytes: i64::try_from(size_bytes).expect("BUG: size bounded by the limit"),
        content_sha256: sha256.finalize().into(),
        filename_sealed,
        data_key_id: data_key.id,
        object_key,
    })
}

/// A multipart upload sent in parts of [`PART_LEN`], at most [`PARTS_IN_FLIGHT_MAX`]
/// in flight, and aborted whenever it fails. (`object_store::WriteMultipart` 0.12
/// sends the last part from its `finish`, which aborts a failed completion but leaves
/// the parts behind when that last part fails.)
struct Parts {
    upload: Box<dyn MultipartUpload>,
    buffer: Vec<u8>,
    in_flight: FuturesUnordered<UploadPart>,
}

impl Parts {
    fn new(upload: Box<dyn MultipartUpload>) -> Self {
        Self {
            upload,
            buffer: Vec::with_capacity(PART_LEN),
            in_flight: FuturesUnordered::new(),
        }
    }

    /// Buffers `data`, sending each full part, and waits while too many are in flight.
    async fn write(&mut self, mut data: &[u8]) -> object_store::Result<()> {
        while !data.is_empty() {
            let take = (PART_LEN - self.buffer.len()).min(data.len());
            self.buffer.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buffer.len() == PART_LEN {
                self.send();
                while self.in_flight.len() > PARTS_IN_FLIGHT_MAX {
                    if let Some(part) = self.in_flight.next().await {
                        part?;
                    }
                }
            }
        }
        Ok(())
    }

    fn send(&mut self) {
        let part = std::mem::replace(&mut self.buffer, Vec::with_capacity(PART_LEN));
        self.in_flight
            .push(self.upload.put_part(PutPayload::from(part)));
    }

    /// Sends the last part, waits for every part and completes the upload; aborts it
    /// on any failure.
    async fn finish(mut self) -> object_store::Result<()> {
        let finished = async {
            if !self.buffer.is_empty() {
                self.send();
            }
            while let Some(part) = self.in_flight.next().await {
                part?;
            }
            self.upload.complete().await.map(|_| ())
        }
        .await;
        if finished.is_err() {
            self.abort().await;
        }
        finished
    }

    /// Gives the upload up. An abort that fails leaves parts the store's own expiry
    /// (S3 lifecycle) or the orphan sweep removes.
    async fn abort(mut self) {
        self.in_flight = FuturesUnordered::new();
        let _ = self.upload.abort().await;
    }
}

/// Records `staged` as a document in `tx`, with its audit event and its outbox event.
/// The caller re-checks in `tx` that the actor may still upload for the patient. If
/// `tx` does not commit, [`discard`] the object (or leave it to the sweep).
pub async fn record(tx: &mut TenantTx, staged: &Staged) -> Result<Document, PutError> {
    assert_eq!(
        tx.tenant_id(),
        staged.tenant_id,
        "BUG: an upload recorded in another tenant's transaction"
    );
    let created_by = tx.actor().to_owned();
    let created_at: OffsetDateTime = sqlx::query_scalar(
        "INSERT INTO documents.documents
             (tenant_id, id, patient_id, category, filename_sealed, content_type, size_bytes,
              content_sha256, data_key_id, object_key, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         RETURNING created_at",
    )
    .bind(staged.tenant_id.as_uuid())
    .bind(staged.document_id.as_uuid())
    .bind(staged.patient_id.as_uuid())
    .bind(staged.category)
    .bind(&staged.filename_sealed)
    .bind(staged.content_type)
    .bind(staged.size_bytes)
    .bind(&staged.content_sha256[..])
    .bind(staged.data_key_id)
    .bind(staged.object_key.as_ref())
    .bind(&created_by)
    .fetch_one(&mut **tx)
    .await?;
    let document = Document {
        id: staged.document_id,
        patient_id: staged.patient_id,
        category: staged.category,
        content_type: staged.content_type.to_owned(),
        size_bytes: staged.size_bytes,
        content_sha256: staged.content_sha256,
        status: Status::Stored,
        created_by,
        created_at,
        deleted_at: None,
        deletion_reason: None,
        hold: None,
    };
    audit_document(tx, "document.create", &document, None).await?;
    emit(tx, "document.stored", &document).await?;
    // The tenant's first document starts its lifecycle sweep, which removes the
    // objects of uploads that never committed even before any retention rule exists.
    crate::lifecycle::ensure_schedule(tx, created_at).await?;
    Ok(document)
}

/// Removes the object of an upload that was not recorded (refused on the re-check, or
/// its transaction failed). Best effort: what fails here the sweep removes later.
pub async fn discard(storage: &Storage, staged: Staged) {
    if let Err(err) = storage.store().delete(&staged.object_key).await {
        tracing::warn!(document_id = %staged.document_id, error = %err, "an unrecorded upload's object was not removed; the lifecycle sweep will");
    }
}

pub(crate) async fn audit_document(
    tx: &mut TenantTx,
    action: &'static str,
    document: &Document,
    reason: Option<DeletionReason>,
) -> Result<(), audit::AuditError> {
    // The purpose the edge recorded for the transaction (a break-glass grant's
    // reason, flagged), else treatment; a lifecycle deletion is for retention.
    let purpose_of_use = tx.purpose_of_use().clone();
    let purpose = match reason {
        Some(DeletionReason::RetentionExpired) => "retention".to_owned(),
        _ => purpose_of_use
            .purpose
            .unwrap_or_else(|| "treatment".to_owned()),
    };
    let mut entry = AuditEntry::patient(action, document.patient_id)
        .purpose(purpose)
        .break_glass(purpose_of_use.break_glass);
    entry.details = serde_json::json!({
        "document_id": document.id.as_uuid(),
        "category": document.category.as_str(),
    });
    if let Some(reason) = reason {
        entry.details["reason"] = reason.as_str().into();
    }
    audit::append(tx, entry).await?;
    Ok(())
}

pub(crate) async fn emit(
    tx: &mut TenantTx,
    event_type: &'static str,
    document: &Document,
) -> Result<(), sqlx::Error> {
    outbox::emit(
        tx,
        Outbox::Documents,
        Event {
            event_type,
            event_version: 1,
            aggregate_type: "document",
            aggregate_id: document.id.into_uuid(),
            payload: serde_json::json!({
                "document_id": document.id.as_uuid(),
                "patient_id": document.patient_id.as_uuid(),
                "category": document.category.as_str(),
            }),
        },
    )
    .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
pub(crate) struct Row {
    id: Uuid,
    patient_id: Uuid,
    category: Category,
    content_type: String,
    size_bytes: i64,
    content_sha256: Vec<u8>,
    status: Status,
    created_by: String,
    created_at: OffsetDateTime,
    deleted_at: Option<OffsetDateTime>,
    deletion_reason: Option<DeletionReason>,
    legal_hold_reason: Option<String>,
    legal_hold_by: Option<String>,
    legal_hold_at: Option<OffsetDateTime>,
}

pub(crate) const COLUMNS: &str = "id, patient_id, category, content_type, size_bytes, content_sha256, status, \
     created_by, created_at, deleted_at, deletion_reason, legal_hold_reason, legal_hold_by, legal_hold_at";

impl From<Row> for Document {
    fn from(row: Row) -> Self {
        let hold = match (row.legal_hold_reason, row.legal_hold_by, row.legal_hold_at) {
            (Some(reason), Some(by), Some(at)) => Some(Hold { reason, by, at }),
            _ => None,
        };
        Document {
            id: DocumentId::new_unchecked(row.id),
            patient_id: PatientId::new_unchecked(row.patient_id),
            category: row.category,
            content_type: row.content_type,
            size_bytes: row.size_bytes,
            content_sha256: row
                .content_sha256
                .try_into()
                .expect("BUG: the table checks a 32-byte hash"),
            status: row.status,
            created_by: row.created_by,
            created_at: row.created_at,
            deleted_at: row.deleted_at,
            deletion_reason: row.deletion_reason,
            hold,
        }
    }
}

/// A document's metadata (no content, no file name, no audit event: metadata is not
/// PHI), deleted ones included; `None` when the tenant has no such document.
pub async fn get(
    tx: &mut TenantTx,
    document_id: DocumentId,
) -> Result<Option<Document>, sqlx::Error> {
    read_one(tx, document_id, "").await
}

/// One document's row, read with `locking` (`FOR UPDATE` or nothing).
async fn read_one(
    tx: &mut TenantTx,
    document_id: DocumentId,
    locking: &'static str,
) -> Result<Option<Document>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM documents.documents WHERE tenant_id = $1 AND id = $2 {locking}"
    ))
    .bind(tx.tenant_id().as_uuid())
    .bind(document_id.as_uuid())
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(Document::from))
}

/// Documents' metadata, held against change until the caller's transaction ends
/// (`FOR SHARE`): for contexts that record something about documents as they stand (a
/// release names what left, a consent its evidence). A deletion committed first is seen
/// (the document reads `deleted`); one that comes later waits for the caller's commit.
/// The rows are locked in the order the retention sweep locks them (`created_at, id`),
/// so the two cannot deadlock. Ids the tenant does not have are absent from the result.
pub async fn get_held(
    tx: &mut TenantTx,
    document_ids: &[DocumentId],
) -> Result<Vec<Document>, sqlx::Error> {
    let ids: Vec<Uuid> = document_ids.iter().map(|id| *id.as_uuid()).collect();
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM documents.documents WHERE tenant_id = $1 AND id = ANY ($2)
         ORDER BY created_at, id FOR SHARE"
    ))
    .bind(tx.tenant_id().as_uuid())
    .bind(&ids)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows.into_iter().map(Document::from).collect())
}

/// Whether the tenant has this document, stored (not deleted). A context that records
/// something about the document takes [`get_held`] instead, which holds it.
pub async fn exists(tx: &mut TenantTx, document_id: DocumentId) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM documents.documents WHERE tenant_id = $1 AND id = $2 AND status = 'stored')",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(document_id.as_uuid())
    .fetch_one(&mut **tx)
    .await
}

/// A patient's documents, newest first, `categories` only; metadata only.
pub async fn list_for_patient(
    tx: &mut TenantTx,
    patient_id: PatientId,
    categories: &[Category],
    include_deleted: bool,
    limit: i64,
) -> Result<Vec<Document>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM documents.documents
         WHERE tenant_id = $1 AND patient_id = $2 AND category = ANY ($3)
           AND ($4 OR status = 'stored')
         ORDER BY created_at DESC, id DESC LIMIT $5"
    ))
    .bind(tx.tenant_id().as_uuid())
    .bind(patient_id.as_uuid())
    .bind(categories)
    .bind(include_deleted)
    .bind(limit.clamp(1, LIST_LIMIT_MAX))
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows.into_iter().map(Document::from).collect())
}

/// Opens a stored document for reading: writes the `document.read` audit event in
/// `tx` (commit it before sending content) and returns the file name and a stream
/// that decrypts the object chunk by chunk. `purpose` and `break_glass` are recorded
/// with the event.
pub async fn open(
    tx: &mut TenantTx,
    keyring: &Keyring,
    storage: &Storage,
    document_id: DocumentId,
    purpose: &str,
    break_glass: bool,
) -> Result<Opened, OpenError> {
    let tenant_id = tx.tenant_id();
    let row: Option<(Vec<u8>, Uuid, String)> = sqlx::query_as(
        "SELECT filename_sealed, data_key_id, object_key FROM documents.documents WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant_id.as_uuid())
    .bind(document_id.as_uuid())
    .fetch_optional(&mut **tx)
    .await?;
    let (filename_sealed, data_key_id, object_key) = row.ok_or(OpenError::NotFound)?;
    let document = get(tx, document_id).await?.ok_or(OpenError::NotFound)?;
    if document.status == Status::Deleted {
        return Err(OpenError::Deleted);
    }
    let data_key = keyring.key(tx, data_key_id).await?;
    let filename = data_key
        .key
        .open(&filename_sealed, &filename_aad(tenant_id, document_id))
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or(OpenError::Undecryptable(Undecryptable))?;
    let object = match storage
        .store()
        .get(&object_store::path::Path::from(object_key))
        .await
    {
        Ok(object) => object,
        Err(object_store::Error::NotFound { .. }) => return Err(OpenError::ContentMissing),
        Err(err) => return Err(OpenError::Storage(err)),
    };
    let mut entry = AuditEntry::patient("document.read", document.patient_id)
        .purpose(purpose)
        .break_glass(break_glass);
    entry.details = serde_json::json!({
        "document_id": document.id.as_uuid(),
        "category": document.category.as_str(),
    });
    audit::append(tx, entry).await?;
    let content = decrypting(object.into_stream(), data_key, tenant_id, &document);
    Ok(Opened {
        document,
        filename: Phi::from(filename),
        content,
    })
}

/// Opens and reads the whole content: for small documents and tests.
pub async fn read_bytes(
    tx: &mut TenantTx,
    keyring: &Keyring,
    storage: &Storage,
    document_id: DocumentId,
    purpose: &str,
) -> Result<(Document, Phi<Vec<u8>>), OpenError> {
    let mut opened = open(tx, keyring, storage, document_id, purpose, false).await?;
    let mut content = Vec::with_capacity(usize::try_from(opened.document.size_bytes).unwrap_or(0));
    while let Some(chunk) = opened.content.next().await {
        content.extend_from_slice(&chunk?);
    }
    Ok((opened.document, Phi::from(content)))
}

struct Decrypting {
    inner: futures::stream::BoxStream<'static, object_store::Result<Bytes>>,
    opener: Option<Opener>,
    sha256: Sha256,
    size_bytes: u64,
    expected_sha256: [u8; 32],
    expected_size_bytes: u64,
    ready: std::collections::VecDeque<Bytes>,
}

fn decrypting(
    inner: futures::stream::BoxStream<'static, object_store::Result<Bytes>>,
    data_key: Arc<DataKey>,
    tenant_id: TenantId,
    document: &Document,
) -> ContentStream {
    let state = Decrypting {
        inner,
        opener: Some(Opener::new(data_key.key.clone(), tenant_id, document.id)),
        sha256: Sha256::new(),
        size_bytes: 0,
        expected_sha256: document.content_sha256,
        expected_size_bytes: u64::try_from(document.size_bytes).unwrap_or(0),
        ready: Default::default(),
    };
    futures::stream::unfold(Some(state), |state| async move {
        let mut state = state?;
        loop {
            if let Some(chunk) = state.ready.pop_front() {
                return Some((Ok(chunk), Some(state)));
            }
            let opener = state.opener.as_mut()?;
            match state.inner.next().await {
                Some(Ok(ciphertext)) => match opener.push(&ciphertext) {
                    Ok(chunks) => {
                        for chunk in chunks {
                            state.account(&chunk);
                            state.ready.push_back(chunk);
                        }
                    }
                    Err(err) => return Some((Err(err.into()), None)),
                },
                Some(Err(err)) => return Some((Err(OpenError::Storage(err)), None)),
                None => {
                    let opener = state.opener.take().expect("BUG: checked above");
                    let last = match opener.finish() {
                        Ok(last) => last,
                        Err(err) => return Some((Err(err.into()), None)),
                    };
                    state.account(&last);
                    let sha256: [u8; 32] = std::mem::take(&mut state.sha256).finalize().into();
                    if sha256 != state.expected_sha256
                        || state.size_bytes != state.expected_size_bytes
                    {
                        return Some((Err(Undecryptable.into()), None));
                    }
                    return Some((Ok(last), Some(state)));
                }
            }
        }
    })
    .boxed()
}

impl Decrypting {
    fn account(&mut self, chunk: &Bytes) {
        self.sha256.update(chunk);
        self.size_bytes += chunk.len() as u64;
    }
}

/// Deletes a document on request: refused while it is under legal hold.
pub async fn delete(tx: &mut TenantTx, document_id: DocumentId) -> Result<Document, DeleteError> {
    let document = lock(tx, document_id).await?.ok_or(DeleteError::NotFound)?;
    if document.status == Status::Deleted {
        return Err(DeleteError::AlreadyDeleted);
    }
    if document.hold.is_some() {
        return Err(DeleteError::OnHold);
    }
    remove(tx, document, DeletionReason::Requested).await
}

/// Removes a deleted document's sealed content from the store: call it after the
/// deletion committed. Idempotent; the lifecycle sweep removes whatever a failure here
/// leaves behind.
pub async fn remove_content(
    storage: &Storage,
    tenant_id: kernel::TenantId,
    document_id: DocumentId,
) -> Result<(), object_store::Error> {
    match storage
        .store()
        .delete(&Storage::object_key(tenant_id, document_id))
        .await
    {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(err) => Err(err),
    }
}

/// Locks a document's row for a change.
pub(crate) async fn lock(
    tx: &mut TenantTx,
    document_id: DocumentId,
) -> Result<Option<Document>, sqlx::Error> {
    read_one(tx, document_id, "FOR UPDATE").await
}

/// Marks a locked, stored, unheld document deleted and audits it. The object is not
/// touched here: removing it before the transaction commits would leave a `stored`
/// row without content if the commit failed. The caller removes it after commit
/// ([`remove_content`]), and the lifecycle's orphan sweep removes what that missed.
pub(crate) async fn remove(
    tx: &mut TenantTx,
    document: Document,
    reason: DeletionReason,
) -> Result<Document, DeleteError> {
    let deleted_at: OffsetDateTime = sqlx::query_scalar(
        "UPDATE documents.documents
         SET status = 'deleted', deleted_at = now(), deleted_by = $3, deletion_reason = $4
         WHERE tenant_id = $1 AND id = $2 AND status = 'stored' AND NOT legal_hold
         RETURNING deleted_at",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(document.id.as_uuid())
    .bind(tx.actor().to_owned())
    .bind(reason)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(DeleteError::OnHold)?;
    let document = Document {
        status: Status::Deleted,
        deleted_at: Some(deleted_at),
        deletion_reason: Some(reason),
        ..document
    };
    audit_document(tx, "document.delete", &document, Some(reason)).await?;
    emit(tx, "document.deleted", &document).await?;
    Ok(document)
}

/// The ciphertext length of a stored document (for `Content-Length`-free proxies and tests).
pub fn sealed_len(document: &Document) -> u64 {
    sealing::sealed_len(u64::try_from(document.size_bytes).unwrap_or(0))
}
