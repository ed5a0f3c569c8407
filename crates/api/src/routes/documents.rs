//! Documents: upload, download, list, delete, signed links, legal holds, and the
//! tenant's retention rules and permission scopes.
//!
//! An upload is the raw request body (streamed, never buffered whole), its declared
//! type in `Content-Type`, its category in the query and its file name in the
//! `Document-Filename` header (never in the URL: a file name can be PHI). Access is
//! decided by the documents context's scope — role × category × care-team membership
//! (a clinician's active break-glass grant counts as membership, and is recorded) —
//! and another tenant's document is not found. A signed link is a short-lived bearer
//! URL that carries ids and an expiry only; a download through it is audited as the
//! user who made it. Content travels only in bodies; errors never name a file.

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use db::TenantTx;
use documents::document::{self, DeleteError, Document, NewDocument, OpenError, PutError};
use documents::link::{self, Claims, LinkError};
use documents::retention::{self, Anchor, HoldError, RetentionRule, RuleError};
use documents::scope::{self, ScopeRule};
use documents::sniff::SniffError;
use documents::{Category, DocumentId, Permission};
use futures::StreamExt;
use kernel::{Actor, PatientId, Phi, Role};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::idempotency::{self, Idempotency};
use super::patients::routine_purpose;
use crate::auth::{PhiAccess, Session, TenantAdmin};
use crate::body::JsonBody;
use crate::{ApiError, AppState};

/// The header that carries an upload's file name.
pub const FILENAME_HEADER: &str = "document-filename";

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/patients/{id}/documents",
            // The documents context enforces its own, larger limit while streaming.
            post(upload).layer(DefaultBodyLimit::disable()).get(list),
        )
        .route("/documents/{id}", get(read).delete(remove))
        .route("/documents/{id}/content", get(download))
        .route("/documents/{id}/link", post(create_link))
        .route(
            "/documents/{id}/hold",
            post(place_hold).delete(release_hold),
        )
        .route("/document-links/{token}", get(download_by_link))
        .route("/document-retention-rules", get(retention_rules))
        .route(
            "/document-retention-rules/{category}",
            put(set_retention_rule).delete(clear_retention_rule),
        )
        .route(
            "/document-scope-rules",
            get(scope_rules).put(set_scope_rule),
        )
}

impl From<PutError> for ApiError {
    fn from(err: PutError) -> Self {
        match err {
            PutError::TooLarge { limit_bytes } => Self::DocumentTooLarge(limit_bytes),
            PutError::ContentType(SniffError::NotAllowed(_))
            | PutError::ContentType(SniffError::Unrecognised)
            | PutError::ContentType(SniffError::Mismatch { .. }) => {
                Self::UnsupportedDocumentType(err.to_string())
            }
            PutError::InvalidFilename => Self::InvalidInput(err.to_string()),
            PutError::Body(_) => Self::InvalidInput("the upload was interrupted".to_owned()),
            PutError::Storage(_) | PutError::Keyring(_) | PutError::Audit(_) => {
                Self::unexpected(err)
            }
            PutError::Database(db_err) => db_err.into(),
        }
    }
}

impl From<OpenError> for ApiError {
    fn from(err: OpenError) -> Self {
        match err {
            OpenError::NotFound => Self::NotFound,
            OpenError::Deleted => Self::Gone("the document was deleted"),
            OpenError::ContentMissing
            | OpenError::Storage(_)
            | OpenError::Undecryptable(_)
            | OpenError::Keyring(_)
            | OpenError::Audit(_) => Self::unexpected(err),
            OpenError::Database(db_err) => db_err.into(),
        }
    }
}

impl From<DeleteError> for ApiError {
    fn from(err: DeleteError) -> Self {
        match err {
            DeleteError::NotFound => Self::NotFound,
            DeleteError::AlreadyDeleted => Self::Gone("the document was already deleted"),
            DeleteError::OnHold => Self::Conflict(err.to_string()),
            DeleteError::Storage(_) | DeleteError::Audit(_) => Self::unexpected(err),
            DeleteError::Database(db_err) => db_err.into(),
        }
    }
}

impl From<HoldError> for ApiError {
    fn from(err: HoldError) -> Self {
        match err {
            HoldError::NotFound => Self::NotFound,
            HoldError::Deleted => Self::Gone("the document was deleted"),
            HoldError::AlreadyHeld | HoldError::NotHeld => Self::Conflict(err.to_string()),
            HoldError::InvalidReason => Self::InvalidInput(err.to_string()),
            HoldError::Audit(_) => Self::unexpected(err),
            HoldError::Database(db_err) => db_err.into(),
        }
    }
}

impl From<RuleError> for ApiError {
    fn from(err: RuleError) -> Self {
        match err {
            RuleError::InvalidKeepDays => Self::InvalidInput(err.to_string()),
            RuleError::Database(db_err) => db_err.into(),
        }
    }
}

impl From<LinkError> for ApiError {
    fn from(err: LinkError) -> Self {
        match err {
            LinkError::Invalid => Self::LinkRefused { expired: false },
            LinkError::Expired => Self::LinkRefused { expired: true },
            LinkError::InvalidTtl => Self::InvalidInput(err.to_string()),
            LinkError::Keyring(_) => Self::unexpected(err),
        }
    }
}

/// A document's metadata: no content, no file name.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DocumentView {
    pub id: Uuid,
    pub patient_id: Uuid,
    /// `clinical_note`, `intake_form`, `consent_form`, `lab_result`, `imaging`,
    /// `correspondence`, `identification` or `other`.
    pub category: String,
    /// As sniffed from the content.
    pub content_type: String,
    pub size_bytes: i64,
    /// SHA-256 of the content, hex.
    pub content_sha256: String,
    /// `stored` or `deleted`.
    pub status: String,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub deleted_at: Option<OffsetDateTime>,
    pub legal_hold: Option<HoldView>,
}

/// A legal hold.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HoldView {
    pub reason: String,
    pub placed_by: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub placed_at: OffsetDateTime,
}

fn view(document: &Document) -> DocumentView {
    DocumentView {
        id: document.id.into_uuid(),
        patient_id: document.patient_id.into_uuid(),
        category: document.category.as_str().to_owned(),
        content_type: document.content_type.clone(),
        size_bytes: document.size_bytes,
        content_sha256: hex_lower(&document.content_sha256),
        status: match document.status {
            documents::Status::Stored => "stored",
            documents::Status::Deleted => "deleted",
        }
        .to_owned(),
        created_by: document.created_by.clone(),
        created_at: document.created_at,
        deleted_at: document.deleted_at,
        legal_hold: document.hold.as_ref().map(|hold| HoldView {
            reason: hold.reason.clone(),
            placed_by: hold.by.clone(),
            placed_at: hold.at,
        }),
    }
}

fn hex_lower(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, byte| {
            let _ = write!(out, "{byte:02x}");
            out
        })
}

fn parse_document_id(text: &str) -> Result<DocumentId, ApiError> {
    // A malformed id names no document: the same 404 as an unknown one.
    text.parse().map_err(|_| ApiError::NotFound)
}

fn parse_category(text: &str) -> Result<Category, ApiError> {
    text.parse()
        .map_err(|err: documents::category::UnknownCategory| {
            ApiError::InvalidInput(err.to_string())
        })
}

/// How the actor stands to a patient: on the care team (or through break-glass), and
/// the purpose to record.
struct Standing {
    on_care_team: bool,
    purpose: String,
    break_glass: bool,
}

/// The actor's standing with the patient; another tenant's patient is not found.
async fn standing(
    tx: &mut TenantTx,
    actor: &Actor,
    patient_id: PatientId,
) -> Result<Standing, ApiError> {
    if clinical::patient::get(tx, patient_id).await?.is_none() {
        return Err(ApiError::NotFound);
    }
    let routine = |on_care_team| Standing {
        on_care_team,
        purpose: routine_purpose(actor.role).to_owned(),
        break_glass: false,
    };
    let Some(user_id) = actor.user_id else {
        return match actor.role {
            Role::Clinician | Role::CareCoordinator => Err(ApiError::Forbidden(
                "a clinical role needs a personal credential to open patient records",
            )),
            Role::Admin | Role::Integration | Role::Auditor => Ok(routine(false)),
        };
    };
    if clinical::care_team::is_member(tx, patient_id, user_id).await? {
        return Ok(routine(true));
    }
    if actor.role == Role::Clinician
        && let Some(grant) = identity::break_glass::active_grant(tx, user_id, patient_id).await?
    {
        return Ok(Standing {
            on_care_team: true,
            purpose: grant.reason,
            break_glass: true,
        });
    }
    Ok(routine(false))
}

/// Checks that the actor may do `needed` with `category` for the patient.
async fn authorize(
    tx: &mut TenantTx,
    actor: &Actor,
    patient_id: PatientId,
    category: Category,
    needed: Permission,
) -> Result<Standing, ApiError> {
    let standing = standing(tx, actor, patient_id).await?;
    let granted = scope::permission(tx, actor.role, category, standing.on_care_team).await?;
    if granted >= needed {
        // What the documents context audits its writes with in this transaction.
        tx.set_purpose_of_use(db::PurposeOfUse {
            purpose: Some(standing.purpose.clone()),
            break_glass: standing.break_glass,
        });
        return Ok(standing);
    }
    if actor.role == Role::Clinician && !standing.on_care_team {
        return Err(ApiError::BreakGlassRequired);
    }
    Err(ApiError::Forbidden(match needed {
        Permission::None | Permission::Read => "your role may not read documents of this category",
        Permission::Write => "your role may not upload documents of this category",
        Permission::Delete => "your role may not delete documents of this category",
    }))
}

/// The document and the actor's standing, if the actor may do `needed` with it.
async fn authorize_document(
    tx: &mut TenantTx,
    actor: &Actor,
    document_id: DocumentId,
    needed: Permission,
) -> Result<(Document, Standing), ApiError> {
    let document = document::get(tx, document_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let standing = authorize(tx, actor, document.patient_id, document.category, needed).await?;
    Ok((document, standing))
}

/// Where an upload goes.
#[derive(Debug, Deserialize, IntoParams)]
pub struct UploadQuery {
    /// The document's category.
    pub category: String,
}

/// Upload a document for a patient: the raw body is the content.
#[utoipa::path(post, path = "/v1/patients/{id}/documents", tag = "documents",
    params(("id" = Uuid, Path, description = "Patient id"), UploadQuery,
        ("Content-Type" = String, Header, description = "The declared type; the content's magic bytes must agree. Accepted: application/pdf, image/png, image/jpeg, image/gif, image/tiff, application/zip, .docx, text/plain"),
        ("Document-Filename" = String, Header, description = "The file name (UTF-8), sealed at rest; never put it in the URL"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: the same key, category, type and file name return the first document without storing the body again")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The content, streamed"),
    responses(
        (status = 201, description = "Stored", body = DocumentView),
        (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem),
        (status = 413, description = "Larger than the store's limit", body = crate::error::Problem),
        (status = 415, description = "A type not accepted, or content that contradicts the declared type", body = crate::error::Problem),
        (status = 422, body = crate::error::Problem),
        (status = 503, description = "Too many uploads streaming at once; try again shortly", body = crate::error::Problem),
    ),
    security(("bearer" = [])))]
pub async fn upload(
    State(state): State<AppState>,
    credential: PhiAccess,
    Path(id): Path<String>,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let patient_id: PatientId = id.parse().map_err(|_| ApiError::NotFound)?;
    let category = parse_category(&query.category)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .ok_or_else(|| {
            ApiError::UnsupportedDocumentType("send the document's Content-Type".to_owned())
        })?
        .to_owned();
    let filename = headers
        .get(FILENAME_HEADER)
        .and_then(|value| std::str::from_utf8(value.as_bytes()).ok())
        .map(str::to_owned)
        .ok_or_else(|| {
            ApiError::InvalidInput("send the file name in the Document-Filename header".to_owned())
        })?;
    // Three steps, so that no database connection waits on a slow client: check the
    // credential and the permission (and answer a replay) in one short transaction;
    // stream the body into the store with none open; then check both again and record
    // the document in a second. Whatever is streamed but not recorded is removed.
    // Uploads streaming at once are bounded (each buffers up to a few parts): past the
    // bound, a clear 503 rather than memory without limit.
    let _slot = UPLOADS.try_acquire().map_err(|_| ApiError::Unavailable)?;
    let Session { actor, mut tx } = credential.open(&state).await?;
    let request_id = tx.request_id();
    authorize(&mut tx, &actor, patient_id, category, Permission::Write).await?;
    // The key covers what identifies the upload, not the streamed body.
    let path = format!("/patients/{patient_id}/documents");
    let fingerprint = format!("{category}\n{content_type}\n{filename}");
    if let Some(replayed) = replay(&mut tx, &headers, &path, &fingerprint).await? {
        tx.commit().await?;
        return Ok(created(&replayed));
    }
    let data_key = state
        .keyring
        .active_key(&mut tx)
        .await
        .map_err(PutError::from)?;
    tx.rollback().await?;

    let staged = documents::stage(
        &state.documents,
        actor.tenant_id,
        &data_key,
        NewDocument {
            patient_id,
            category,
            filename: Phi::from(filename),
            content_type,
        },
        body.into_data_stream(),
    )
    .await?;

    // The second transaction. Its commit is the upload's point of no return: an error
    // before it leaves the object unnamed, and it is removed now; an error from the
    // commit itself may hide a commit that happened, so that object is left to the
    // sweep, which removes it only if no stored row names it.
    let mut committing = false;
    let recorded: Result<(Document, bool), ApiError> = async {
        // The principal as it stands now: a key revoked or a user disabled while the
        // body streamed stores nothing. (A token that merely expired meanwhile was
        // valid when the upload began, so it is not asked for again.)
        let mut tx = TenantTx::begin(&state.pool, &actor, request_id).await?;
        let actor = identity::api_key::actor_in_force(&mut tx, &actor.audit_name())
            .await?
            .ok_or(ApiError::Unauthenticated)?;
        authorize(&mut tx, &actor, patient_id, category, Permission::Write).await?;
        let idempotency =
            idempotency::claim(&mut tx, &headers, &path, fingerprint.as_bytes()).await?;
        if let Idempotency::Replay(outcome) = &idempotency {
            // A retry of the same upload was recorded while this one streamed.
            let document = replayed_document(&mut tx, outcome).await?;
            tx.commit().await?;
            return Ok((document, false));
        }
        let document = documents::record(&mut tx, &staged).await?;
        idempotency
            .record(&mut tx, 201, "document", Some(document.id.into_uuid()))
            .await?;
        committing = true;
        tx.commit().await?;
        Ok((document, true))
    }
    .await;
    match recorded {
        Ok((document, true)) => Ok(created(&document)),
        Ok((document, false)) => {
            documents::discard(&state.documents, staged).await;
            Ok(created(&document))
        }
        Err(err) => {
            if !committing {
                documents::discard(&state.documents, staged).await;
            }
            Err(err)
        }
    }
}

/// Uploads streaming at once in this process, at most.
pub const UPLOADS_MAX: usize = 64;
static UPLOADS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(UPLOADS_MAX);

/// The document an earlier request with the same idempotency key created.
async fn replayed_document(
    tx: &mut TenantTx,
    outcome: &platform::idempotency::StoredOutcome,
) -> Result<Document, ApiError> {
    let document_id = DocumentId::new_unchecked(outcome.resource_id.ok_or(ApiError::NotFound)?);
    document::get(tx, document_id)
        .await?
        .ok_or(ApiError::NotFound)
}

/// Answers a retried upload from its first transaction, before any body is read.
async fn replay(
    tx: &mut TenantTx,
    headers: &HeaderMap,
    path: &str,
    fingerprint: &str,
) -> Result<Option<Document>, ApiError> {
    // Claiming here only peeks: the caller rolls this transaction back, and with it a
    // fresh claim; the key is claimed for good in the transaction that records.
    match idempotency::claim(tx, headers, path, fingerprint.as_bytes()).await? {
        Idempotency::Replay(outcome) => replayed_document(tx, &outcome).await.map(Some),
        Idempotency::None | Idempotency::Fresh(_) => Ok(None),
    }
}

fn created(document: &Document) -> Response {
    let mut response = (StatusCode::CREATED, Json(view(document))).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/documents/{}", document.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// Which documents to list.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ListQuery {
    /// Include deleted documents (metadata only).
    #[serde(default)]
    pub include_deleted: bool,
    /// At most this many (default 100, at most 500).
    pub limit: Option<i64>,
}

/// The listed documents.
#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentList {
    pub documents: Vec<DocumentView>,
}

/// A patient's documents, newest first: metadata only, and only of the categories the
/// caller may read.
#[utoipa::path(get, path = "/v1/patients/{id}/documents", tag = "documents",
    params(("id" = Uuid, Path, description = "Patient id"), ListQuery),
    responses(
        (status = 200, body = DocumentList),
        (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem),
    ),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    credential: PhiAccess,
    Path(id): Path<String>,
    Query(query): Query<ListQuery>,
) -> Result<Json<DocumentList>, ApiError> {
    let patient_id: PatientId = id.parse().map_err(|_| ApiError::NotFound)?;
    let Session { actor, mut tx } = credential.open(&state).await?;
    let standing = standing(&mut tx, &actor, patient_id).await?;
    let readable = scope::readable(&mut tx, actor.role, standing.on_care_team).await?;
    if readable.is_empty() {
        return Err(if actor.role == Role::Clinician && !standing.on_care_team {
            ApiError::BreakGlassRequired
        } else {
            ApiError::Forbidden("your role may not read this patient's documents")
        });
    }
    let listed = document::list_for_patient(
        &mut tx,
        patient_id,
        &readable,
        query.include_deleted,
        query.limit.unwrap_or(100),
    )
    .await?;
    let mut entry = audit::AuditEntry::patient("document.list", patient_id)
        .purpose(standing.purpose)
        .break_glass(standing.break_glass);
    entry.details = serde_json::json!({ "n_documents": listed.len() });
    audit::append(&mut tx, entry)
        .await
        .map_err(ApiError::unexpected)?;
    tx.commit().await?;
    Ok(Json(DocumentList {
        documents: listed.iter().map(view).collect(),
    }))
}

/// A document's metadata.
#[utoipa::path(get, path = "/v1/documents/{id}", tag = "documents",
    params(("id" = Uuid, Path, description = "Document id")),
    responses(
        (status = 200, body = DocumentView),
        (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem),
    ),
    security(("bearer" = [])))]
pub async fn read(
    State(state): State<AppState>,
    credential: PhiAccess,
    Path(id): Path<String>,
) -> Result<Json<DocumentView>, ApiError> {
    let document_id = parse_document_id(&id)?;
    let Session { actor, mut tx } = credential.open(&state).await?;
    let (document, _) = authorize_document(&mut tx, &actor, document_id, Permission::Read).await?;
    tx.commit().await?;
    Ok(Json(view(&document)))
}

/// Download a document's content (streamed, decrypted chunk by chunk).
#[utoipa::path(get, path = "/v1/documents/{id}/content", tag = "documents",
    params(("id" = Uuid, Path, description = "Document id")),
    responses(
        (status = 200, description = "The content, with its sniffed Content-Type", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem),
        (status = 410, description = "Deleted", body = crate::error::Problem),
    ),
    security(("bearer" = [])))]
pub async fn download(
    State(state): State<AppState>,
    credential: PhiAccess,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let document_id = parse_document_id(&id)?;
    let Session { actor, mut tx } = credential.open(&state).await?;
    let (_, standing) = authorize_document(&mut tx, &actor, document_id, Permission::Read).await?;
    stream(
        tx,
        &state,
        document_id,
        &standing.purpose,
        standing.break_glass,
    )
    .await
}

/// Opens the document in `tx`, commits its audit event, then streams the content.
async fn stream(
    mut tx: TenantTx,
    state: &AppState,
    document_id: DocumentId,
    purpose: &str,
    break_glass: bool,
) -> Result<Response, ApiError> {
    let opened = documents::open(
        &mut tx,
        &state.keyring,
        &state.documents,
        document_id,
        purpose,
        break_glass,
    )
    .await?;
    tx.commit().await?;
    let content = opened.content.map(|chunk| {
        chunk.map_err(|err| {
            // The status is sent; a broken stream is all the client can be told.
            tracing::error!(error = %crate::error::cause_chain(&err), "document content failed mid-stream");
            std::io::Error::other("document content failed")
        })
    });
    let mut response = Response::new(Body::from_stream(content));
    let headers = response.headers_mut();
    if let Ok(content_type) = HeaderValue::from_str(&opened.document.content_type) {
        headers.insert(header::CONTENT_TYPE, content_type);
    }
    headers.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(opened.document.size_bytes),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(disposition) = HeaderValue::from_str(&format!(
        "attachment; filename*=UTF-8''{}",
        percent_encode(opened.filename.expose())
    )) {
        headers.insert(header::CONTENT_DISPOSITION, disposition);
    }
    Ok(response)
}

/// RFC 5987 `attr-char`s stay; every other byte is percent-encoded.
fn percent_encode(text: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// Delete a document: its content is removed, its metadata kept as deleted. Refused
/// while it is under legal hold.
#[utoipa::path(delete, path = "/v1/documents/{id}", tag = "documents",
    params(("id" = Uuid, Path, description = "Document id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem),
        (status = 409, description = "Under legal hold", body = crate::error::Problem),
        (status = 410, description = "Already deleted", body = crate::error::Problem),
    ),
    security(("bearer" = [])))]
pub async fn remove(
    State(state): State<AppState>,
    credential: PhiAccess,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let document_id = parse_document_id(&id)?;
    let Session { actor, mut tx } = credential.open(&state).await?;
    authorize_document(&mut tx, &actor, document_id, Permission::Delete).await?;
    document::delete(&mut tx, document_id).await?;
    let tenant_id = tx.tenant_id();
    tx.commit().await?;
    // After the commit: the deletion is final, so its content may go. A failure here
    // leaves sealed content for the lifecycle's orphan sweep, never a stored row
    // without content.
    if let Err(err) = document::remove_content(&state.documents, tenant_id, document_id).await {
        tracing::warn!(%document_id, error = %err, "a deleted document's content stays until the lifecycle sweep");
    }
    Ok(StatusCode::NO_CONTENT)
}

/// How long a link lives.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLink {
    /// Seconds; default 300, at most 3600.
    pub ttl_secs: Option<i64>,
}

/// A signed download link.
#[derive(Debug, Serialize, ToSchema)]
pub struct LinkView {
    /// The path to GET, relative to the API's origin; it is the credential.
    pub url: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
}

/// Make a short-lived signed link to a document's content: whoever holds it may
/// download the content until it expires, audited as the link's maker, and only while
/// the maker may still read the document.
#[utoipa::path(post, path = "/v1/documents/{id}/link", tag = "documents",
    params(("id" = Uuid, Path, description = "Document id")),
    request_body = NewLink,
    responses(
        (status = 201, body = LinkView),
        (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem),
    ),
    security(("bearer" = [])))]
pub async fn create_link(
    State(state): State<AppState>,
    credential: PhiAccess,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<LinkView>), ApiError> {
    let document_id = parse_document_id(&id)?;
    // The body is optional: none asks for the default lifetime.
    let input: NewLink = if body.iter().all(u8::is_ascii_whitespace) {
        NewLink::default()
    } else {
        serde_json::from_slice(&body).map_err(|err| ApiError::MalformedJson(err.to_string()))?
    };
    let ttl = input
        .ttl_secs
        .map_or(link::TTL_DEFAULT, time::Duration::seconds);
    let Session { actor, mut tx } = credential.open(&state).await?;
    let (document, _) = authorize_document(&mut tx, &actor, document_id, Permission::Read).await?;
    if document.status == documents::Status::Deleted {
        return Err(ApiError::Gone("the document was deleted"));
    }
    let (token, expires_at) = link::issue(
        &mut tx,
        &state.keyring,
        document_id,
        ttl,
        OffsetDateTime::now_utc(),
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(LinkView {
            url: format!("/v1/document-links/{}", token.as_str()),
            expires_at,
        }),
    ))
}

/// Download through a signed link: no other credential.
#[utoipa::path(get, path = "/v1/document-links/{token}", tag = "documents",
    params(("token" = String, Path, description = "The link's signed token")),
    responses(
        (status = 200, description = "The content", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 403, description = "A link that was altered, or expired", body = crate::error::Problem),
        (status = 404, body = crate::error::Problem),
        (status = 410, description = "Deleted", body = crate::error::Problem),
    ))]
pub async fn download_by_link(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    let claims = Claims::parse(&token)?;
    let mut tx = TenantTx::begin_as(&state.pool, claims.tenant_id, &claims.actor, None).await?;
    let document_id = claims
        .verify(&mut tx, &state.keyring, OffsetDateTime::now_utc())
        .await?;
    // The link carries its maker's access, not more: a maker revoked or disabled
    // since, or who may no longer read this document (off the care team, a break-glass
    // grant run out, a narrowed scope), makes the link void.
    let maker = identity::api_key::actor_in_force(&mut tx, &claims.actor)
        .await?
        .ok_or(ApiError::LinkRefused { expired: false })?;
    let (_, standing) = authorize_document(&mut tx, &maker, document_id, Permission::Read)
        .await
        .map_err(|err| match err {
            ApiError::Forbidden(_) | ApiError::BreakGlassRequired | ApiError::NotFound => {
                ApiError::LinkRefused { expired: false }
            }
            err => err,
        })?;
    stream(
        tx,
        &state,
        document_id,
        &standing.purpose,
        standing.break_glass,
    )
    .await
}

/// Why a document is held.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewHold {
    /// A matter or case reference (1 to 500 characters); not PHI.
    pub reason: String,
}

/// Place a legal hold: the document cannot be deleted, by anyone or by retention,
/// until it is released.
#[utoipa::path(post, path = "/v1/documents/{id}/hold", tag = "documents",
    params(("id" = Uuid, Path, description = "Document id")),
    request_body = NewHold,
    responses(
        (status = 200, body = DocumentView),
        (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem),
        (status = 409, description = "Already held", body = crate::error::Problem),
    ),
    security(("bearer" = [])))]
pub async fn place_hold(
    State(state): State<AppState>,
    credential: TenantAdmin,
    Path(id): Path<String>,
    body: JsonBody<NewHold>,
) -> Result<Json<DocumentView>, ApiError> {
    let document_id = parse_document_id(&id)?;
    let Session { mut tx, .. } = credential.open(&state).await?;
    let document = retention::place_hold(&mut tx, document_id, &body.value.reason).await?;
    tx.commit().await?;
    Ok(Json(view(&document)))
}

/// Release a legal hold.
#[utoipa::path(delete, path = "/v1/documents/{id}/hold", tag = "documents",
    params(("id" = Uuid, Path, description = "Document id")),
    responses(
        (status = 200, body = DocumentView),
        (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem),
        (status = 409, description = "Not held", body = crate::error::Problem),
    ),
    security(("bearer" = [])))]
pub async fn release_hold(
    State(state): State<AppState>,
    credential: TenantAdmin,
    Path(id): Path<String>,
) -> Result<Json<DocumentView>, ApiError> {
    let document_id = parse_document_id(&id)?;
    let Session { mut tx, .. } = credential.open(&state).await?;
    let document = retention::release_hold(&mut tx, document_id).await?;
    tx.commit().await?;
    Ok(Json(view(&document)))
}

/// A category's retention rule.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RetentionRuleView {
    pub category: String,
    /// `last_encounter` (the later of the patient's last encounter and the document's
    /// creation) or `created`.
    pub anchor: String,
    pub keep_days: i32,
}

/// The tenant's retention rules (a category without one is kept for ever).
#[derive(Debug, Serialize, ToSchema)]
pub struct RetentionRules {
    pub rules: Vec<RetentionRuleView>,
}

/// The tenant's retention rules.
#[utoipa::path(get, path = "/v1/document-retention-rules", tag = "documents",
    responses((status = 200, body = RetentionRules), (status = 403, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn retention_rules(
    State(state): State<AppState>,
    credential: TenantAdmin,
) -> Result<Json<RetentionRules>, ApiError> {
    let Session { mut tx, .. } = credential.open(&state).await?;
    let rules = retention::rules(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(RetentionRules {
        rules: rules
            .into_iter()
            .map(|rule| RetentionRuleView {
                category: rule.category.as_str().to_owned(),
                anchor: rule.anchor.as_str().to_owned(),
                keep_days: rule.keep_days,
            })
            .collect(),
    }))
}

/// A category's rule, as set.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRetentionRule {
    /// `last_encounter` or `created`.
    pub anchor: String,
    /// 1 to 73000.
    pub keep_days: i32,
}

/// Set a category's retention rule; the daily lifecycle job deletes what it expires.
#[utoipa::path(put, path = "/v1/document-retention-rules/{category}", tag = "documents",
    params(("category" = String, Path, description = "Document category")),
    request_body = NewRetentionRule,
    responses(
        (status = 200, body = RetentionRuleView),
        (status = 403, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem),
    ),
    security(("bearer" = [])))]
pub async fn set_retention_rule(
    State(state): State<AppState>,
    credential: TenantAdmin,
    Path(category): Path<String>,
    body: JsonBody<NewRetentionRule>,
) -> Result<Json<RetentionRuleView>, ApiError> {
    let category = parse_category(&category)?;
    let anchor: Anchor = body.value.anchor.parse().map_err(ApiError::InvalidInput)?;
    let Session { mut tx, .. } = credential.open(&state).await?;
    let rule = RetentionRule {
        category,
        anchor,
        keep_days: body.value.keep_days,
    };
    retention::set_rule(&mut tx, rule).await?;
    documents::lifecycle::ensure_schedule(&mut tx, OffsetDateTime::now_utc()).await?;
    tx.commit().await?;
    Ok(Json(RetentionRuleView {
        category: category.as_str().to_owned(),
        anchor: anchor.as_str().to_owned(),
        keep_days: rule.keep_days,
    }))
}

/// Remove a category's retention rule: its documents are kept for ever again.
#[utoipa::path(delete, path = "/v1/document-retention-rules/{category}", tag = "documents",
    params(("category" = String, Path, description = "Document category")),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, body = crate::error::Problem),
        (status = 404, description = "No rule for this category", body = crate::error::Problem),
    ),
    security(("bearer" = [])))]
pub async fn clear_retention_rule(
    State(state): State<AppState>,
    credential: TenantAdmin,
    Path(category): Path<String>,
) -> Result<StatusCode, ApiError> {
    let category = parse_category(&category)?;
    let Session { mut tx, .. } = credential.open(&state).await?;
    if !retention::clear_rule(&mut tx, category).await? {
        return Err(ApiError::NotFound);
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One cell of the permission scope.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScopeRuleView {
    /// `admin`, `clinician`, `care_coordinator`, `auditor` or `integration`.
    pub role: String,
    pub category: String,
    /// For the patient's care team (and break-glass), or for everyone else.
    pub on_care_team: bool,
    /// `none`, `read`, `write` (read and upload) or `delete` (all three).
    pub permission: String,
}

/// The tenant's effective scope: every role × category × care-team cell.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScopeRules {
    pub rules: Vec<ScopeRuleView>,
}

/// The tenant's effective document permission scope.
#[utoipa::path(get, path = "/v1/document-scope-rules", tag = "documents",
    responses((status = 200, body = ScopeRules), (status = 403, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn scope_rules(
    State(state): State<AppState>,
    credential: TenantAdmin,
) -> Result<Json<ScopeRules>, ApiError> {
    let Session { mut tx, .. } = credential.open(&state).await?;
    let rules = scope::effective(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(ScopeRules {
        rules: rules
            .into_iter()
            .map(|rule| ScopeRuleView {
                role: rule.role.as_str().to_owned(),
                category: rule.category.as_str().to_owned(),
                on_care_team: rule.on_care_team,
                permission: rule.permission.as_str().to_owned(),
            })
            .collect(),
    }))
}

/// Override one cell of the tenant's document permission scope.
#[utoipa::path(put, path = "/v1/document-scope-rules", tag = "documents",
    request_body = ScopeRuleView,
    responses(
        (status = 200, body = ScopeRuleView),
        (status = 403, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem),
    ),
    security(("bearer" = [])))]
pub async fn set_scope_rule(
    State(state): State<AppState>,
    credential: TenantAdmin,
    body: JsonBody<ScopeRuleView>,
) -> Result<Json<ScopeRuleView>, ApiError> {
    let input = body.value;
    let role: Role = input
        .role
        .parse()
        .map_err(|err: kernel::role::UnknownRole| ApiError::InvalidInput(err.to_string()))?;
    let category = parse_category(&input.category)?;
    let permission: Permission =
        input
            .permission
            .parse()
            .map_err(|err: documents::category::UnknownPermission| {
                ApiError::InvalidInput(err.to_string())
            })?;
    let Session { mut tx, .. } = credential.open(&state).await?;
    scope::set_rule(
        &mut tx,
        ScopeRule {
            role,
            category,
            on_care_team: input.on_care_team,
            permission,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Json(input))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_name_is_percent_encoded_for_content_disposition() {
        assert_eq!(percent_encode("scan 1.pdf"), "scan%201.pdf");
        assert_eq!(percent_encode("café\"x"), "caf%C3%A9%22x");
    }
}
