//! Progress notes, in two representations: `/v2` sends and returns a note's
//! `sections` as an object keyed by the template's section keys; `/v1`, deprecated,
//! sends and returns them as one text `body` (`Title:` heading lines, then the text).
//! Both read and write the same notes; v1 responses carry `Deprecation`, `Sunset` and
//! a `Link` to the successor.
//!
//! Access follows the patient: a note is reached through its patient's care team
//! (as `patients` decides), and another tenant's note is not found. Writing needs a
//! clinician's personal credential; co-signing, a supervisor's. A signed note is
//! refused every edit with 409: it can only be co-signed or amended. Note content is
//! PHI: it travels in bodies only, and errors name section keys, never text.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use db::TenantTx;
use kernel::{Actor, PatientId, Role, UserId};
use notes::note::{self, AnyNote, Chain, Kind, NewNote, NoteError, NoteId};
use notes::pdf::{self, RenderError, Rendition};
use notes::{Content, Template, listing, settings};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::idempotency::{self, Idempotency};
use super::patients::access_for;
use crate::auth::{AuditReader, PhiAccess, Session, TenantAdmin};
use crate::body::JsonBody;
use crate::{ApiError, AppState};

/// When `/v1/notes` stops being served (RFC 8594 `Sunset`, an HTTP date).
pub const V1_SUNSET: &str = "Mon, 31 May 2027 00:00:00 GMT";
/// When `/v1/notes` was deprecated (RFC 9745 `Deprecation`, `@` Unix seconds):
/// 2026-11-27T00:00:00Z, when `/v2/notes` appeared.
pub const V1_DEPRECATED_AT: &str = "@1795737600";

/// The `/v1` note routes (text `body`), with deprecation headers on every response.
pub fn v1_router() -> Router<AppState> {
    Router::new()
        .route("/patients/{id}/notes", post(create_v1).get(list))
        .route("/notes/{id}", get(read_v1).put(edit_v1))
        .route("/notes/{id}/sign", post(sign_v1))
        .route("/notes/{id}/cosign", post(cosign_v1))
        .route("/notes/{id}/amendments", post(amend_v1))
        .layer(axum::middleware::map_response(deprecate_v1))
        .merge(
            Router::new()
                .route("/notes/late", get(late))
                .route("/notes/settings", put(configure))
                .route("/notes/supervisors", post(add_supervisor)),
        )
}

/// The `/v2` note routes (structured `sections`).
pub fn v2_router() -> Router<AppState> {
    Router::new()
        .route("/patients/{id}/notes", post(create_v2).get(list))
        .route("/notes/{id}", get(read_v2).put(edit_v2))
        .route("/notes/{id}/sign", post(sign_v2))
        .route("/notes/{id}/cosign", post(cosign_v2))
        .route("/notes/{id}/amendments", post(amend_v2))
        .route("/notes/{id}/pdf", post(render_pdf).get(pdf_status))
}

async fn deprecate_v1(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert("deprecation", HeaderValue::from_static(V1_DEPRECATED_AT));
    headers.insert("sunset", HeaderValue::from_static(V1_SUNSET));
    headers.insert(
        header::LINK,
        HeaderValue::from_static("</v2/notes>; rel=\"successor-version\""),
    );
    response
}

impl From<NoteError> for ApiError {
    fn from(err: NoteError) -> Self {
        match err {
            NoteError::NotFound => Self::NotFound,
            NoteError::Content(_) => Self::InvalidInput(err.to_string()),
            NoteError::NotAuthor => Self::Forbidden("only the note's author may edit or sign it"),
            NoteError::VersionConflict { .. }
            | NoteError::Signed
            | NoteError::NotSigned
            | NoteError::AlreadyCosigned => Self::Conflict(err.to_string()),
            NoteError::NotSupervisor => Self::Forbidden("only a supervisor may co-sign a note"),
            NoteError::OwnNote => {
                Self::Forbidden("a note cannot be co-signed by its author or signer")
            }
            NoteError::Undecryptable | NoteError::Keyring(_) | NoteError::Audit(_) => {
                Self::unexpected(err)
            }
            NoteError::Database(db_err) => db_err.into(),
        }
    }
}

impl From<RenderError> for ApiError {
    fn from(err: RenderError) -> Self {
        match err {
            RenderError::NotFound => Self::NotFound,
            RenderError::NotSigned => Self::Conflict(err.to_string()),
            RenderError::Note(_)
            | RenderError::Vault(_)
            | RenderError::Job(_)
            | RenderError::Audit(_)
            | RenderError::Storing(_) => Self::unexpected(err),
            RenderError::Database(db_err) => db_err.into(),
        }
    }
}

/// The signature block of a signed note.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SignatureView {
    pub signed_by: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub signed_at: OffsetDateTime,
    /// SHA-256 of the note's canonical content, hex.
    pub content_sha256: String,
    pub cosign_required: bool,
    pub cosigned_by: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub cosigned_at: Option<OffsetDateTime>,
}

/// What both representations share: no PHI.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NoteMeta {
    pub id: Uuid,
    pub patient_id: Uuid,
    pub author_id: Uuid,
    pub encounter_id: Option<Uuid>,
    pub appointment_id: Option<Uuid>,
    /// `soap`, `dap`, `birp` or `intake`.
    pub template: &'static str,
    pub template_version: u32,
    /// `original` or `amendment`.
    pub kind: &'static str,
    /// The original note an amendment corrects.
    pub amends: Option<Uuid>,
    /// `draft`, `awaiting_cosign` or `complete`.
    pub status: &'static str,
    /// Increases with every edit; send it back in `If-Match` to edit or sign safely.
    pub version: i32,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub service_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
    pub signature: Option<SignatureView>,
    /// An amendment's reason.
    pub reason: Option<String>,
}

/// A note as `/v2` shows it: sections by key.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NoteV2 {
    #[serde(flatten)]
    pub meta: NoteMeta,
    pub sections: BTreeMap<String, String>,
    /// The amendments of this note, oldest first (only when reading one note).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(no_recursion)]
    pub amendments: Vec<NoteV2>,
}

/// A note as `/v1` shows it: one text body.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NoteV1 {
    #[serde(flatten)]
    pub meta: NoteMeta,
    /// Every filled section as `Title:` on its own line, then its text; sections
    /// separated by a blank line, in the template's order.
    pub body: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(no_recursion)]
    pub amendments: Vec<NoteV1>,
}

/// A new note for `/v2`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewNoteV2 {
    pub template: String,
    /// The newest version when omitted.
    pub template_version: Option<u32>,
    pub encounter_id: Option<Uuid>,
    pub appointment_id: Option<Uuid>,
    /// When the care happened (RFC 3339); now when omitted.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub service_at: Option<OffsetDateTime>,
    #[serde(default)]
    pub sections: BTreeMap<String, String>,
}

/// A new note for `/v1`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewNoteV1 {
    pub template: String,
    pub template_version: Option<u32>,
    pub encounter_id: Option<Uuid>,
    pub appointment_id: Option<Uuid>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub service_at: Option<OffsetDateTime>,
    #[serde(default)]
    pub body: String,
}

/// A draft's new content for `/v2`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SectionsInput {
    pub sections: BTreeMap<String, String>,
    /// Required on an amendment, refused on an original.
    pub reason: Option<String>,
}

/// A draft's new content for `/v1`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BodyInput {
    pub body: String,
    pub reason: Option<String>,
}

/// The tenant's note rules.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteSettingsDto {
    pub cosign_required: bool,
    pub late_after_minutes: i32,
    /// The patient identifiers a note's PDF shows besides the pseudonym (always
    /// shown). Omitted: unchanged (none by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pdf_identifiers: Option<Vec<PdfIdentifierDto>>,
}

/// A patient identifier a note's PDF may show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PdfIdentifierDto {
    /// The medical record number (`MR`).
    RecordNumber,
    Name,
    DateOfBirth,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SupervisorInput {
    pub user_id: Uuid,
}

/// A note's metadata in a list.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NoteSummaryView {
    pub id: Uuid,
    pub patient_id: Uuid,
    pub author_id: Uuid,
    pub template: String,
    pub template_version: i32,
    pub amends: Option<Uuid>,
    pub status: &'static str,
    pub version: i32,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub service_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub signed_at: Option<OffsetDateTime>,
    /// When it became late (the late list only).
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub due_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NoteList {
    pub notes: Vec<NoteSummaryView>,
}

/// The two representations of note content.
trait Representation: Sized + Serialize {
    const PREFIX: &'static str;
    fn view(note: &AnyNote, amendments: Vec<Self>) -> Self;
}

impl Representation for NoteV2 {
    const PREFIX: &'static str = "/v2";
    fn view(note: &AnyNote, amendments: Vec<Self>) -> Self {
        NoteV2 {
            meta: meta(note),
            sections: note.content().sections().clone(),
            amendments,
        }
    }
}

impl Representation for NoteV1 {
    const PREFIX: &'static str = "/v1";
    fn view(note: &AnyNote, amendments: Vec<Self>) -> Self {
        NoteV1 {
            meta: meta(note),
            body: note.content().to_text(note.header().template),
            amendments,
        }
    }
}

fn meta(note: &AnyNote) -> NoteMeta {
    let header = note.header();
    let signed = note.signed();
    NoteMeta {
        id: header.id.into_uuid(),
        patient_id: header.patient_id.into_uuid(),
        author_id: header.author_id.into_uuid(),
        encounter_id: header.encounter_id,
        appointment_id: header.appointment_id,
        template: header.template.code,
        template_version: header.template.version,
        kind: match header.kind {
            Kind::Original => "original",
            Kind::Amendment { .. } => "amendment",
        },
        amends: match header.kind {
            Kind::Original => None,
            Kind::Amendment { amends } => Some(amends.into_uuid()),
        },
        status: match signed {
            None => listing::Status::Draft,
            Some(signed) if signed.cosign_required && signed.cosignature.is_none() => {
                listing::Status::AwaitingCosign
            }
            Some(_) => listing::Status::Complete,
        }
        .as_str(),
        version: header.version,
        service_at: header.service_at,
        created_at: header.created_at,
        updated_at: header.updated_at,
        signature: signed.map(|signed| SignatureView {
            signed_by: signed.signed_by.into_uuid(),
            signed_at: signed.signed_at,
            content_sha256: hex_encode(&signed.content_sha256),
            cosign_required: signed.cosign_required,
            cosigned_by: signed.cosignature.as_ref().map(|c| c.by.into_uuid()),
            cosigned_at: signed.cosignature.as_ref().map(|c| c.at),
        }),
        reason: note.content().reason().map(str::to_owned),
    }
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn chain_view<R: Representation>(chain: &Chain) -> R {
    let amendments = chain
        .amendments
        .iter()
        .map(|amendment| R::view(amendment, Vec::new()))
        .collect();
    R::view(&chain.note, amendments)
}

/// Parses a v1 `body`: a line holding exactly a section's title and a colon starts
/// that section; text before the first heading is refused. The inverse of
/// [`Content::to_text`].
fn parse_body(template: &Template, body: &str) -> Result<Content, ApiError> {
    let mut sections: Vec<(&'static str, Vec<&str>)> = Vec::new();
    for line in body.lines() {
        let heading = template
            .sections
            .iter()
            .find(|section| line.trim_end().strip_suffix(':') == Some(section.title));
        match (heading, sections.last_mut()) {
            (Some(section), _) => {
                if sections.iter().any(|(key, _)| *key == section.key) {
                    return Err(ApiError::InvalidInput(format!(
                        "body has the section `{}` twice",
                        section.title
                    )));
                }
                sections.push((section.key, Vec::new()));
            }
            (None, Some((_, lines))) => lines.push(line),
            (None, None) if line.trim().is_empty() => {}
            (None, None) => {
                return Err(ApiError::InvalidInput(format!(
                    "body must start with a section heading line such as `{}:`",
                    template.sections[0].title
                )));
            }
        }
    }
    Ok(Content::from_sections(sections.into_iter().map(
        |(key, lines)| (key, lines.join("\n").trim().to_owned()),
    )))
}

fn parse_note_id(text: &str) -> Result<NoteId, ApiError> {
    // A malformed id names no note: the same 404 as an unknown one.
    text.parse::<Uuid>()
        .map(NoteId::new_unchecked)
        .map_err(|_| ApiError::NotFound)
}

fn parse_if_match(headers: &HeaderMap) -> Result<Option<i32>, ApiError> {
    match headers.get(header::IF_MATCH) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .ok()
            .map(|text| text.trim().trim_start_matches("W/").trim_matches('"'))
            .and_then(|text| text.parse::<i32>().ok())
            .map(Some)
            .ok_or_else(|| {
                ApiError::InvalidInput("If-Match must be a quoted version number".into())
            }),
    }
}

/// The writer of a note: a clinician acting as themself.
fn clinician_user(actor: &Actor) -> Result<UserId, ApiError> {
    match (actor.role, actor.user_id) {
        (Role::Clinician, Some(user_id)) => Ok(user_id),
        (Role::Clinician, None) => Err(ApiError::Forbidden(
            "notes are written with a personal credential, not a shared key",
        )),
        _ => Err(ApiError::Forbidden("only a clinician writes notes")),
    }
}

/// Checks `actor` may reach the note's patient; another tenant's note is not found.
async fn authorize_note(
    tx: &mut TenantTx,
    actor: &Actor,
    note_id: NoteId,
) -> Result<PatientId, ApiError> {
    let patient_id = listing::patient_of(tx, note_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    access_for(tx, actor, patient_id).await?;
    Ok(patient_id)
}

fn respond<R: Representation>(status: StatusCode, location: Option<String>, body: R) -> Response {
    let mut response = (status, Json(body)).into_response();
    if let Some(location) = location
        && let Ok(value) = HeaderValue::from_str(&location)
    {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

async fn chain_response<R: Representation>(
    tx: &mut TenantTx,
    state: &AppState,
    note_id: NoteId,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let chain = note::read_chain(tx, &state.keyring, note_id).await?;
    let location =
        (status == StatusCode::CREATED).then(|| format!("{}/notes/{note_id}", R::PREFIX));
    Ok(respond(status, location, chain_view::<R>(&chain)))
}

struct NewNoteFields {
    template: String,
    template_version: Option<u32>,
    encounter_id: Option<Uuid>,
    appointment_id: Option<Uuid>,
    service_at: Option<OffsetDateTime>,
}

fn find_template(code: &str, version: Option<u32>) -> Result<&'static Template, ApiError> {
    match version {
        Some(version) => Template::find(code, version),
        None => Template::latest(code),
    }
    .ok_or_else(|| {
        ApiError::InvalidInput(
            "template must be one of soap, dap, birp, intake at a published version".into(),
        )
    })
}

async fn create<R: Representation>(
    state: AppState,
    credential: PhiAccess,
    patient: String,
    headers: HeaderMap,
    bytes: &[u8],
    fields: NewNoteFields,
    content: impl FnOnce(&'static Template) -> Result<Content, ApiError>,
) -> Result<Response, ApiError> {
    let patient_id: PatientId = patient.parse().map_err(|_| ApiError::NotFound)?;
    let template = find_template(&fields.template, fields.template_version)?;
    let content = content(template)?;
    let Session { actor, mut tx } = credential.open(&state).await?;
    let author_id = clinician_user(&actor)?;
    access_for(&mut tx, &actor, patient_id).await?;
    let path = format!("/patients/{patient_id}/notes");
    let idempotency = idempotency::claim(&mut tx, &headers, &path, bytes).await?;
    if let Idempotency::Replay(outcome) = &idempotency {
        let note_id = NoteId::new_unchecked(outcome.resource_id.ok_or(ApiError::NotFound)?);
        let response = chain_response::<R>(&mut tx, &state, note_id, StatusCode::CREATED).await?;
        tx.commit().await?;
        return Ok(response);
    }
    let draft = note::create(
        &mut tx,
        &state.keyring,
        NewNote {
            patient_id,
            author_id,
            template,
            encounter_id: fields.encounter_id,
            appointment_id: fields.appointment_id,
            service_at: fields.service_at,
            content,
        },
    )
    .await?;
    idempotency
        .record(&mut tx, 201, "note", Some(draft.id().into_uuid()))
        .await?;
    tx.commit().await?;
    let view = R::view(&AnyNote::Draft(draft.clone()), Vec::new());
    Ok(respond(
        StatusCode::CREATED,
        Some(format!("{}/notes/{}", R::PREFIX, draft.id())),
        view,
    ))
}

async fn read<R: Representation>(
    state: AppState,
    credential: PhiAccess,
    id: String,
) -> Result<Response, ApiError> {
    let note_id = parse_note_id(&id)?;
    let Session { actor, mut tx } = credential.open(&state).await?;
    authorize_note(&mut tx, &actor, note_id).await?;
    let response = chain_response::<R>(&mut tx, &state, note_id, StatusCode::OK).await?;
    tx.commit().await?;
    Ok(response)
}

async fn edit<R: Representation>(
    state: AppState,
    credential: PhiAccess,
    id: String,
    headers: HeaderMap,
    content: impl FnOnce(&'static Template) -> Result<Content, ApiError>,
) -> Result<Response, ApiError> {
    let note_id = parse_note_id(&id)?;
    let expected_version = parse_if_match(&headers)?;
    let Session { actor, mut tx } = credential.open(&state).await?;
    let editor_id = clinician_user(&actor)?;
    authorize_note(&mut tx, &actor, note_id).await?;
    let draft = note::load_draft(&mut tx, &state.keyring, note_id).await?;
    if let Some(expected) = expected_version {
        draft.expect_version(expected)?;
    }
    let content = content(draft.header().template)?;
    let edited = draft
        .edit(&mut tx, &state.keyring, editor_id, content)
        .await?;
    tx.commit().await?;
    Ok(respond(
        StatusCode::OK,
        None,
        R::view(&AnyNote::Draft(edited), Vec::new()),
    ))
}

async fn sign<R: Representation>(
    state: AppState,
    credential: PhiAccess,
    id: String,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let note_id = parse_note_id(&id)?;
    let expected_version = parse_if_match(&headers)?;
    let Session { actor, mut tx } = credential.open(&state).await?;
    let signer_id = clinician_user(&actor)?;
    authorize_note(&mut tx, &actor, note_id).await?;
    let draft = note::load_draft(&mut tx, &state.keyring, note_id).await?;
    if let Some(expected) = expected_version {
        draft.expect_version(expected)?;
    }
    let signed = draft.sign(&mut tx, signer_id).await?;
    tx.commit().await?;
    Ok(respond(
        StatusCode::OK,
        None,
        R::view(&AnyNote::Signed(signed), Vec::new()),
    ))
}

async fn cosign<R: Representation>(
    state: AppState,
    credential: PhiAccess,
    id: String,
) -> Result<Response, ApiError> {
    let note_id = parse_note_id(&id)?;
    let Session { actor, mut tx } = credential.open(&state).await?;
    let Some(supervisor_id) = actor.user_id else {
        return Err(ApiError::Forbidden(
            "co-signing needs a personal credential",
        ));
    };
    authorize_note(&mut tx, &actor, note_id).await?;
    let signed = note::load_signed(&mut tx, &state.keyring, note_id).await?;
    let cosigned = signed.cosign(&mut tx, supervisor_id).await?;
    tx.commit().await?;
    Ok(respond(
        StatusCode::OK,
        None,
        R::view(&AnyNote::Signed(cosigned), Vec::new()),
    ))
}

async fn amend<R: Representation>(
    state: AppState,
    credential: PhiAccess,
    id: String,
    headers: HeaderMap,
    bytes: &[u8],
    content: impl FnOnce(&'static Template) -> Result<Content, ApiError>,
) -> Result<Response, ApiError> {
    let note_id = parse_note_id(&id)?;
    let Session { actor, mut tx } = credential.open(&state).await?;
    let author_id = clinician_user(&actor)?;
    authorize_note(&mut tx, &actor, note_id).await?;
    let path = format!("/notes/{note_id}/amendments");
    let idempotency = idempotency::claim(&mut tx, &headers, &path, bytes).await?;
    if let Idempotency::Replay(outcome) = &idempotency {
        let amendment_id = NoteId::new_unchecked(outcome.resource_id.ok_or(ApiError::NotFound)?);
        let response =
            chain_response::<R>(&mut tx, &state, amendment_id, StatusCode::CREATED).await?;
        tx.commit().await?;
        return Ok(response);
    }
    let signed = note::load_signed(&mut tx, &state.keyring, note_id).await?;
    let content = content(signed.header().template)?;
    let amendment = signed
        .amend(&mut tx, &state.keyring, author_id, content)
        .await?;
    idempotency
        .record(&mut tx, 201, "note", Some(amendment.id().into_uuid()))
        .await?;
    tx.commit().await?;
    let view = R::view(&AnyNote::Draft(amendment.clone()), Vec::new());
    Ok(respond(
        StatusCode::CREATED,
        Some(format!("{}/notes/{}", R::PREFIX, amendment.id())),
        view,
    ))
}

fn with_reason(content: Content, reason: Option<String>) -> Content {
    match reason {
        Some(reason) => content.with_reason(reason),
        None => content,
    }
}

/// Start a note for a patient (v2: structured sections).
#[utoipa::path(post, path = "/v2/patients/{id}/notes", tag = "notes",
    params(("id" = Uuid, Path, description = "Patient id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: the same key and body return the first response")),
    request_body = NewNoteV2,
    responses(
        (status = 201, description = "A draft", body = NoteV2),
        (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem),
        (status = 422, description = "Unknown template or section", body = crate::error::Problem),
    ),
    security(("bearer" = [])))]
pub async fn create_v2(
    State(state): State<AppState>,
    credential: PhiAccess,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: JsonBody<NewNoteV2>,
) -> Result<Response, ApiError> {
    let input = body.value;
    let fields = NewNoteFields {
        template: input.template,
        template_version: input.template_version,
        encounter_id: input.encounter_id,
        appointment_id: input.appointment_id,
        service_at: input.service_at,
    };
    let sections = input.sections;
    create::<NoteV2>(state, credential, id, headers, &body.bytes, fields, |_| {
        Ok(Content::from_sections(sections))
    })
    .await
}

/// Start a note for a patient (v1, deprecated: one text body).
#[utoipa::path(post, path = "/v1/patients/{id}/notes", tag = "notes-v1",
    params(("id" = Uuid, Path, description = "Patient id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: the same key and body return the first response")),
    request_body = NewNoteV1,
    responses(
        (status = 201, description = "A draft", body = NoteV1),
        (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem),
        (status = 422, description = "Unknown template, or a body without section headings", body = crate::error::Problem),
    ),
    security(("bearer" = [])))]
pub async fn create_v1(
    State(state): State<AppState>,
    credential: PhiAccess,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: JsonBody<NewNoteV1>,
) -> Result<Response, ApiError> {
    let input = body.value;
    let fields = NewNoteFields {
        template: input.template,
        template_version: input.template_version,
        encounter_id: input.encounter_id,
        appointment_id: input.appointment_id,
        service_at: input.service_at,
    };
    let text = input.body;
    create::<NoteV1>(
        state,
        credential,
        id,
        headers,
        &body.bytes,
        fields,
        |template| parse_body(template, &text),
    )
    .await
}

/// Read a note with its amendment chain (v2).
#[utoipa::path(get, path = "/v2/notes/{id}", tag = "notes",
    params(("id" = Uuid, Path, description = "Note id")),
    responses((status = 200, body = NoteV2), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn read_v2(
    State(state): State<AppState>,
    credential: PhiAccess,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    read::<NoteV2>(state, credential, id).await
}

/// Read a note with its amendment chain (v1, deprecated).
#[utoipa::path(get, path = "/v1/notes/{id}", tag = "notes-v1",
    params(("id" = Uuid, Path, description = "Note id")),
    responses((status = 200, body = NoteV1), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn read_v1(
    State(state): State<AppState>,
    credential: PhiAccess,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    read::<NoteV1>(state, credential, id).await
}

/// Replace a draft's content, as its author (v2). Send `If-Match: "<version>"`.
#[utoipa::path(put, path = "/v2/notes/{id}", tag = "notes",
    params(("id" = Uuid, Path, description = "Note id"), ("If-Match" = Option<String>, Header, description = "The version last read, quoted")),
    request_body = SectionsInput,
    responses(
        (status = 200, body = NoteV2),
        (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem),
        (status = 409, description = "Stale version, or the note is signed", body = crate::error::Problem),
        (status = 422, body = crate::error::Problem),
    ),
    security(("bearer" = [])))]
pub async fn edit_v2(
    State(state): State<AppState>,
    credential: PhiAccess,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: JsonBody<SectionsInput>,
) -> Result<Response, ApiError> {
    let input = body.value;
    edit::<NoteV2>(state, credential, id, headers, |_| {
        Ok(with_reason(
            Content::from_sections(input.sections),
            input.reason,
        ))
    })
    .await
}

/// Replace a draft's content, as its author (v1, deprecated).
#[utoipa::path(put, path = "/v1/notes/{id}", tag = "notes-v1",
    params(("id" = Uuid, Path, description = "Note id"), ("If-Match" = Option<String>, Header, description = "The version last read, quoted")),
    request_body = BodyInput,
    responses(
        (status = 200, body = NoteV1),
        (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem),
        (status = 409, description = "Stale version, or the note is signed", body = crate::error::Problem),
        (status = 422, body = crate::error::Problem),
    ),
    security(("bearer" = [])))]
pub async fn edit_v1(
    State(state): State<AppState>,
    credential: PhiAccess,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: JsonBody<BodyInput>,
) -> Result<Response, ApiError> {
    let input = body.value;
    edit::<NoteV1>(state, credential, id, headers, |template| {
        Ok(with_reason(
            parse_body(template, &input.body)?,
            input.reason,
        ))
    })
    .await
}

/// Sign a draft as its author (v2): it is frozen from now on.
#[utoipa::path(post, path = "/v2/notes/{id}/sign", tag = "notes",
    params(("id" = Uuid, Path, description = "Note id"), ("If-Match" = Option<String>, Header, description = "The version last read, quoted")),
    responses(
        (status = 200, body = NoteV2),
        (status = 409, description = "Stale version, or already signed", body = crate::error::Problem),
        (status = 422, description = "A required section is empty", body = crate::error::Problem),
    ),
    security(("bearer" = [])))]
pub async fn sign_v2(
    State(state): State<AppState>,
    credential: PhiAccess,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    sign::<NoteV2>(state, credential, id, headers).await
}

/// Sign a draft as its author (v1, deprecated).
#[utoipa::path(post, path = "/v1/notes/{id}/sign", tag = "notes-v1",
    params(("id" = Uuid, Path, description = "Note id"), ("If-Match" = Option<String>, Header, description = "The version last read, quoted")),
    responses(
        (status = 200, body = NoteV1),
        (status = 409, description = "Stale version, or already signed", body = crate::error::Problem),
        (status = 422, description = "A required section is empty", body = crate::error::Problem),
    ),
    security(("bearer" = [])))]
pub async fn sign_v1(
    State(state): State<AppState>,
    credential: PhiAccess,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    sign::<NoteV1>(state, credential, id, headers).await
}

/// Co-sign a signed note as a supervisor who did not write it (v2).
#[utoipa::path(post, path = "/v2/notes/{id}/cosign", tag = "notes",
    params(("id" = Uuid, Path, description = "Note id")),
    responses(
        (status = 200, body = NoteV2),
        (status = 403, description = "Not a supervisor, or the note's own author", body = crate::error::Problem),
        (status = 409, description = "A draft, or already co-signed", body = crate::error::Problem),
    ),
    security(("bearer" = [])))]
pub async fn cosign_v2(
    State(state): State<AppState>,
    credential: PhiAccess,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    cosign::<NoteV2>(state, credential, id).await
}

/// Co-sign a signed note (v1, deprecated).
#[utoipa::path(post, path = "/v1/notes/{id}/cosign", tag = "notes-v1",
    params(("id" = Uuid, Path, description = "Note id")),
    responses(
        (status = 200, body = NoteV1),
        (status = 403, description = "Not a supervisor, or the note's own author", body = crate::error::Problem),
        (status = 409, description = "A draft, or already co-signed", body = crate::error::Problem),
    ),
    security(("bearer" = [])))]
pub async fn cosign_v1(
    State(state): State<AppState>,
    credential: PhiAccess,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    cosign::<NoteV1>(state, credential, id).await
}

/// Start an amendment of a signed note, with a reason (v2). The amendment is a
/// draft to edit and sign like a note.
#[utoipa::path(post, path = "/v2/notes/{id}/amendments", tag = "notes",
    params(("id" = Uuid, Path, description = "The signed note's id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    request_body = SectionsInput,
    responses(
        (status = 201, body = NoteV2),
        (status = 409, description = "The note is a draft: edit it instead", body = crate::error::Problem),
        (status = 422, description = "No reason, or an unknown section", body = crate::error::Problem),
    ),
    security(("bearer" = [])))]
pub async fn amend_v2(
    State(state): State<AppState>,
    credential: PhiAccess,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: JsonBody<SectionsInput>,
) -> Result<Response, ApiError> {
    let input = body.value;
    amend::<NoteV2>(state, credential, id, headers, &body.bytes, |_| {
        Ok(with_reason(
            Content::from_sections(input.sections),
            input.reason,
        ))
    })
    .await
}

/// Start an amendment of a signed note (v1, deprecated).
#[utoipa::path(post, path = "/v1/notes/{id}/amendments", tag = "notes-v1",
    params(("id" = Uuid, Path, description = "The signed note's id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    request_body = BodyInput,
    responses(
        (status = 201, body = NoteV1),
        (status = 409, description = "The note is a draft: edit it instead", body = crate::error::Problem),
        (status = 422, description = "No reason, or a body without section headings", body = crate::error::Problem),
    ),
    security(("bearer" = [])))]
pub async fn amend_v1(
    State(state): State<AppState>,
    credential: PhiAccess,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: JsonBody<BodyInput>,
) -> Result<Response, ApiError> {
    let input = body.value;
    amend::<NoteV1>(state, credential, id, headers, &body.bytes, |template| {
        Ok(with_reason(
            parse_body(template, &input.body)?,
            input.reason,
        ))
    })
    .await
}

fn summary_view(summary: listing::Summary, due_at: Option<OffsetDateTime>) -> NoteSummaryView {
    NoteSummaryView {
        id: summary.id.into_uuid(),
        patient_id: summary.patient_id.into_uuid(),
        author_id: summary.author_id.into_uuid(),
        template: summary.template_code,
        template_version: summary.template_version,
        amends: summary.amends.map(NoteId::into_uuid),
        status: summary.status.as_str(),
        version: summary.version,
        service_at: summary.service_at,
        signed_at: summary.signed_at,
        due_at,
    }
}

/// A patient's notes and amendments, without content (the same in v1 and v2).
#[utoipa::path(get, path = "/v2/patients/{id}/notes", tag = "notes",
    params(("id" = Uuid, Path, description = "Patient id")),
    responses((status = 200, body = NoteList), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    credential: PhiAccess,
    Path(id): Path<String>,
) -> Result<Json<NoteList>, ApiError> {
    let patient_id: PatientId = id.parse().map_err(|_| ApiError::NotFound)?;
    let Session { actor, mut tx } = credential.open(&state).await?;
    access_for(&mut tx, &actor, patient_id).await?;
    let summaries = listing::for_patient(&mut tx, patient_id).await?;
    tx.commit().await?;
    Ok(Json(NoteList {
        notes: summaries
            .into_iter()
            .map(|s| summary_view(s, None))
            .collect(),
    }))
}

/// Notes past the tenant's signing deadline: unsigned, or awaiting a required
/// co-signature (the compliance view; no content).
#[utoipa::path(get, path = "/v1/notes/late", tag = "notes",
    responses((status = 200, body = NoteList), (status = 403, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn late(
    State(state): State<AppState>,
    credential: AuditReader,
) -> Result<Json<NoteList>, ApiError> {
    let Session { mut tx, .. } = credential.open(&state).await?;
    let late = listing::late(&mut tx, OffsetDateTime::now_utc()).await?;
    tx.commit().await?;
    Ok(Json(NoteList {
        notes: late
            .into_iter()
            .map(|late| summary_view(late.summary, Some(late.due_at)))
            .collect(),
    }))
}

/// Set the tenant's note rules: co-signature required, late-signing deadline, and
/// which patient identifiers a note's PDF shows besides the pseudonym.
#[utoipa::path(put, path = "/v1/notes/settings", tag = "notes",
    request_body = NoteSettingsDto,
    responses((status = 200, body = NoteSettingsDto), (status = 403, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn configure(
    State(state): State<AppState>,
    credential: TenantAdmin,
    body: JsonBody<NoteSettingsDto>,
) -> Result<Json<NoteSettingsDto>, ApiError> {
    let Session { mut tx, .. } = credential.open(&state).await?;
    let input = body.value;
    settings::configure(
        &mut tx,
        &settings::Settings {
            cosign_required: input.cosign_required,
            late_after_minutes: input.late_after_minutes,
        },
    )
    .await
    .map_err(|err| match err {
        settings::SettingsError::LateAfter => ApiError::InvalidInput(err.to_string()),
        settings::SettingsError::Database(db_err) => db_err.into(),
    })?;
    if let Some(identifiers) = &input.pdf_identifiers {
        let has = |wanted| identifiers.contains(&wanted);
        settings::configure_pdf_identifiers(
            &mut tx,
            settings::PdfIdentifiers {
                record_number: has(PdfIdentifierDto::RecordNumber),
                name: has(PdfIdentifierDto::Name),
                birth_date: has(PdfIdentifierDto::DateOfBirth),
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Json(input))
}

/// Let a user of the tenant co-sign other authors' notes.
#[utoipa::path(post, path = "/v1/notes/supervisors", tag = "notes",
    request_body = SupervisorInput,
    responses((status = 204), (status = 403, body = crate::error::Problem), (status = 422, description = "No such user", body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn add_supervisor(
    State(state): State<AppState>,
    credential: TenantAdmin,
    body: JsonBody<SupervisorInput>,
) -> Result<StatusCode, ApiError> {
    let Session { mut tx, .. } = credential.open(&state).await?;
    let user_id = UserId::new_unchecked(body.value.user_id);
    if identity::user::get(&mut tx, user_id).await?.is_none() {
        return Err(ApiError::InvalidInput(
            "user_id names no user of this tenant".into(),
        ));
    }
    settings::add_supervisor(&mut tx, user_id).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A render of a note's PDF, queued.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PdfJobView {
    pub note_id: Uuid,
    /// The job `notes.render_pdf`; follow it at `/v1/jobs/{job_id}`.
    pub job_id: Uuid,
}

/// A PDF rendered from a signed note: its hash, and its document once stored.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RenditionView {
    pub id: Uuid,
    /// SHA-256 of the PDF's bytes, hex: the same note always renders to the same bytes.
    pub sha256: String,
    /// The note version and content hash the PDF shows.
    pub note_version: i32,
    pub content_sha256: String,
    /// Signed amendments included.
    pub n_amendments: i32,
    /// The stored PDF, once stored.
    pub document_id: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub rendered_at: OffsetDateTime,
}

/// Where a note's PDF stands.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PdfStatusView {
    pub note_id: Uuid,
    /// `none` (never rendered), `rendered` (hash recorded) or `stored` (a document).
    pub status: &'static str,
    /// The newest rendition.
    pub rendition: Option<RenditionView>,
}

fn rendition_view(rendition: Rendition) -> RenditionView {
    RenditionView {
        id: rendition.id,
        sha256: hex_encode(&rendition.sha256),
        note_version: rendition.note_version,
        content_sha256: hex_encode(&rendition.content_sha256),
        n_amendments: rendition.n_amendments,
        document_id: rendition.document_id,
        rendered_at: rendition.rendered_at,
    }
}

/// Render a signed note (with its signed amendments) to PDF, as a durable job:
/// 202 with the job's id. A draft has no PDF: 409.
#[utoipa::path(post, path = "/v2/notes/{id}/pdf", tag = "notes",
    params(("id" = Uuid, Path, description = "Note id")),
    responses((status = 202, body = PdfJobView), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem), (status = 409, description = "The note is a draft", body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn render_pdf(
    State(state): State<AppState>,
    credential: PhiAccess,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let note_id = parse_note_id(&id)?;
    let Session { actor, mut tx } = credential.open(&state).await?;
    authorize_note(&mut tx, &actor, note_id).await?;
    let job_id = pdf::job::enqueue(&mut tx, note_id).await?;
    tx.commit().await?;
    let mut response = (
        StatusCode::ACCEPTED,
        Json(PdfJobView {
            note_id: note_id.into_uuid(),
            job_id: job_id.into_uuid(),
        }),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("/v2/notes/{note_id}/pdf")) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// The newest PDF rendition of a signed note: its hash, and its document once
/// stored. A draft has none: 409.
#[utoipa::path(get, path = "/v2/notes/{id}/pdf", tag = "notes",
    params(("id" = Uuid, Path, description = "Note id")),
    responses((status = 200, body = PdfStatusView), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem), (status = 409, description = "The note is a draft", body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn pdf_status(
    State(state): State<AppState>,
    credential: PhiAccess,
    Path(id): Path<String>,
) -> Result<Json<PdfStatusView>, ApiError> {
    let note_id = parse_note_id(&id)?;
    let Session { actor, mut tx } = credential.open(&state).await?;
    authorize_note(&mut tx, &actor, note_id).await?;
    let (summary, _) = listing::chain(&mut tx, note_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    if summary.status == listing::Status::Draft {
        return Err(RenderError::NotSigned.into());
    }
    let rendition = pdf::latest_rendition(&mut tx, note_id).await?;
    tx.commit().await?;
    Ok(Json(PdfStatusView {
        note_id: note_id.into_uuid(),
        status: match &rendition {
            None => "none",
            Some(rendition) if rendition.document_id.is_some() => "stored",
            Some(_) => "rendered",
        },
        rendition: rendition.map(rendition_view),
    }))
}
