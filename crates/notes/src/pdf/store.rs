//! The audited path to a signed note's PDF, and `notes.renditions`: which PDF (by
//! SHA-256) was produced from which signed note, and where it is stored.
//!
//! [`render_signed`] opens the note and its amendments in the tenant's transaction,
//! recording `note.read` for each (as every note read does), and `patient.read` when
//! the tenant lets the PDF show vault identifiers. [`record_rendition`] records the
//! hash (and `note.render` in the audit log). Nothing here keeps the PDF's bytes:
//! storing them is the documents context's job, whose id a rendition then names.

use db::TenantTx;
use identity::keyring::Keyring;
use identity::vault::{self, Access, VaultError};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Identifiers, RenderedPdf, render};
use crate::note::{self, AnyNote, NoteError, NoteId};
use crate::settings;

/// The HL7 identifier type of a medical record number, the one a PDF may show.
const RECORD_NUMBER_KIND: &str = "MR";

/// Why a note could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("no such note")]
    NotFound,
    #[error("the note is a draft: sign it first")]
    NotSigned,
    #[error("reading the note")]
    Note(#[source] NoteError),
    #[error("reading the patient's identifiers")]
    Vault(#[from] VaultError),
    #[error("writing the render job")]
    Job(#[from] platform::jobs::EnqueueError),
    #[error("writing the audit event")]
    Audit(#[from] audit::AuditError),
    #[error("storing the PDF as a document: {0}")]
    Storing(#[source] documents::PutError),
    #[error("reading or writing renditions")]
    Database(#[from] sqlx::Error),
}

impl From<NoteError> for RenderError {
    fn from(err: NoteError) -> Self {
        match err {
            NoteError::NotFound => Self::NotFound,
            NoteError::NotSigned => Self::NotSigned,
            NoteError::Database(err) => Self::Database(err),
            other => Self::Note(other),
        }
    }
}

/// A PDF produced from a signed note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendition {
    pub id: Uuid,
    pub note_id: NoteId,
    /// The note's version and content hash: what its signature fixed.
    pub note_version: i32,
    pub content_sha256: [u8; 32],
    /// How many signed amendments the PDF includes.
    pub n_amendments: i32,
    /// The PDF's SHA-256.
    pub sha256: [u8; 32],
    /// The stored document, once the PDF is stored.
    pub document_id: Option<Uuid>,
    pub rendered_at: OffsetDateTime,
}

/// The identifiers the tenant lets a PDF show for `patient_id`: the pseudonym
/// always; the others read from the identity vault (audited `patient.read`) only
/// when the tenant allows one. A patient without a vault record shows the pseudonym.
async fn identifiers(
    tx: &mut TenantTx,
    keyring: &Keyring,
    patient_id: kernel::PatientId,
) -> Result<Identifiers, RenderError> {
    let allowed = settings::pdf_identifiers(tx).await?;
    let mut identifiers = Identifiers::pseudonym(patient_id);
    if allowed == settings::PdfIdentifiers::default() {
        return Ok(identifiers);
    }
    let access = Access {
        purpose: Some("treatment".to_owned()),
        break_glass: false,
    };
    let record = match vault::read(tx, keyring, patient_id, &access).await {
        Ok(record) => record,
        Err(VaultError::NotFound) => return Ok(identifiers),
        Err(err) => return Err(err.into()),
    };
    let demographics = record.demographics;
    if allowed.record_number {
        identifiers.record_number = demographics
            .identifiers
            .iter()
            .find(|identifier| identifier.kind == RECORD_NUMBER_KIND)
            .map(|identifier| identifier.value.clone());
    }
    if allowed.name {
        let name = demographics
            .given_names
            .iter()
            .chain(std::iter::once(&demographics.family_name))
            .filter(|part| !part.is_empty())
            .cloned()
            .collect::<Vec<_>>()
            .join(" ");
        identifiers.name = Some(name).filter(|name| !name.is_empty());
    }
    if allowed.birth_date {
        identifiers.birth_date = demographics.birth_date;
    }
    Ok(identifiers)
}

/// Renders the signed note `note_id` with its signed amendments (drafts of
/// amendments are not part of the record and are left out). Records `note.read`
/// for each note opened; [`RenderError::NotSigned`] for a draft.
pub async fn render_signed(
    tx: &mut TenantTx,
    keyring: &Keyring,
    note_id: NoteId,
) -> Result<RenderedPdf, RenderError> {
    // Refuse a draft before opening (and auditing a read of) anything.
    match crate::listing::chain(tx, note_id).await? {
        None => return Err(RenderError::NotFound),
        Some((summary, _)) if summary.status == crate::Status::Draft => {
            return Err(RenderError::NotSigned);
        }
        Some(_) => {}
    }
    let chain = note::read_chain(tx, keyring, note_id).await?;
    let AnyNote::Signed(note) = chain.note else {
        return Err(RenderError::NotSigned);
    };
    let amendments: Vec<_> = chain
        .amendments
        .into_iter()
        .filter_map(|amendment| match amendment {
            AnyNote::Signed(amendment) => Some(amendment),
            AnyNote::Draft(_) => None,
        })
        .collect();
    let identifiers = identifiers(tx, keyring, note.header().patient_id).await?;
    Ok(render(&note, &amendments, &identifiers))
}

type RenditionRow = (
    Uuid,
    Uuid,
    i32,
    Vec<u8>,
    i32,
    Vec<u8>,
    Option<Uuid>,
    OffsetDateTime,
);

const RENDITION: &str =
    "id, note_id, note_version, content_sha256, n_amendments, sha256, document_id, rendered_at";

fn rendition(row: RenditionRow) -> Rendition {
    let (id, note_id, note_version, content_sha256, n_amendments, sha256, document_id, rendered_at) =
        row;
    Rendition {
        id,
        note_id: NoteId::new_unchecked(note_id),
        note_version,
        content_sha256: content_sha256
            .try_into()
            .expect("BUG: the table checks a 32-byte hash"),
        n_amendments,
        sha256: sha256
            .try_into()
            .expect("BUG: the table checks a 32-byte hash"),
        document_id,
        rendered_at,
    }
}

/// Records that the signed note `note_id` was rendered to the PDF whose SHA-256 is
/// `sha256`, stored as `document_id` once the documents context holds it. The
/// note's version, content hash and signed amendments are read in this statement,
/// so the row says exactly which signed record the PDF shows. Records `note.render`.
pub async fn record_rendition(
    tx: &mut TenantTx,
    note_id: NoteId,
    sha256: [u8; 32],
    document_id: Option<Uuid>,
) -> Result<Rendition, RenderError> {
    let row: Option<RenditionRow> = sqlx::query_as(&format!(
        "INSERT INTO notes.renditions
             (tenant_id, id, note_id, note_version, content_sha256, n_amendments, sha256, document_id)
         SELECT n.tenant_id, $3, n.id, n.version, n.content_sha256,
             (SELECT count(*)::int FROM notes.notes a
              WHERE a.tenant_id = n.tenant_id AND a.amends_id = n.id AND a.status = 'signed'),
             $4, $5
         FROM notes.notes n
         WHERE n.tenant_id = $1 AND n.id = $2 AND n.status = 'signed'
         RETURNING {RENDITION}"
    ))
    .bind(tx.tenant_id().as_uuid())
    .bind(note_id.as_uuid())
    .bind(Uuid::now_v7())
    .bind(sha256.as_slice())
    .bind(document_id)
    .fetch_optional(&mut **tx)
    .await?;
    let patient_id = crate::listing::patient_of(tx, note_id)
        .await?
        .ok_or(RenderError::NotFound)?;
    let Some(row) = row else {
        return Err(RenderError::NotSigned);
    };
    let rendition = rendition(row);
    let mut entry = audit::AuditEntry::patient("note.render", patient_id).purpose("treatment");
    entry.details = serde_json::json!({
        "note_id": note_id.as_uuid(),
        "version": rendition.note_version,
        "rendition_id": rendition.id,
        "sha256": hex::encode(rendition.sha256),
    });
    audit::append(tx, entry).await?;
    Ok(rendition)
}

/// Renders the signed note and records the rendition, in `tx`: what the render job
/// and `tenet notes pdf` do.
pub async fn render_and_record(
    tx: &mut TenantTx,
    keyring: &Keyring,
    note_id: NoteId,
) -> Result<(RenderedPdf, Rendition), RenderError> {
    let pdf = render_signed(tx, keyring, note_id).await?;
    let rendition = record_rendition(tx, note_id, pdf.sha256, None).await?;
    Ok((pdf, rendition))
}

/// The newest rendition of `note_id`, if any.
pub async fn latest_rendition(
    tx: &mut TenantTx,
    note_id: NoteId,
) -> Result<Option<Rendition>, sqlx::Error> {
    let row: Option<RenditionRow> = sqlx::query_as(&format!(
        "SELECT {RENDITION} FROM notes.renditions WHERE tenant_id = $1 AND note_id = $2
         ORDER BY rendered_at DESC, id DESC LIMIT 1"
    ))
    .bind(tx.tenant_id().as_uuid())
    .bind(note_id.as_uuid())
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(rendition))
}
