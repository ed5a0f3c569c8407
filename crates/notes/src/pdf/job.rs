//! The durable job `notes.render_pdf`: renders a signed note to PDF, stores the PDF
//! as a document of the patient (category `clinical_note`, through the documents
//! context's narrow API: sealed before it reaches object storage) and records the
//! rendition with its hash and document id — all in the job's own transaction, so
//! the rendition exists exactly when the job succeeds. Its arguments are the note's
//! id only — never content.

use std::time::Duration;

use db::TenantTx;
use identity::keyring::Keyring;
use kernel::JobId;
use platform::jobs::{self, JobContext, JobError, JobKind, JobSpec};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::store::{self, RenderError};
use crate::note::NoteId;

/// The render job's arguments: an id, no PHI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenderPdfArgs {
    pub note_id: Uuid,
}

/// The job kind `notes.render_pdf`.
#[derive(Debug, Clone)]
pub struct RenderPdf {
    pub keyring: Keyring,
    /// Where the rendered PDF is stored, as a document.
    pub storage: documents::Storage,
}

impl JobKind for RenderPdf {
    const NAME: &'static str = "notes.render_pdf";
    const VERSION: u32 = 1;
    const ATTEMPTS_MAX: u32 = 5;
    const TIMEOUT: Duration = Duration::from_secs(120);
    // Enqueued for one note when asked, never on a timetable.
    const SCHEDULABLE: bool = false;
    type Args = RenderPdfArgs;

    async fn run(
        &self,
        _ctx: &JobContext,
        tx: &mut TenantTx,
        args: RenderPdfArgs,
    ) -> Result<(), JobError> {
        let note_id = NoteId::new_unchecked(args.note_id);
        match render_and_store(tx, &self.keyring, &self.storage, note_id).await {
            Ok((n_pages, rendition)) => {
                tracing::debug!(
                    %note_id,
                    rendition_id = %rendition.id,
                    n_pages,
                    "note rendered to PDF and stored"
                );
                Ok(())
            }
            // Retrying cannot make a draft signed or a missing note appear.
            Err(err @ (RenderError::NotFound | RenderError::NotSigned)) => {
                Err(JobError::Fail(format!("note {note_id}: {err}")))
            }
            Err(RenderError::Database(err)) => Err(JobError::Database(err)),
            // Messages name the note and the cause, never content.
            Err(err) => Err(JobError::Retry(format!("note {note_id}: {err}"))),
        }
    }
}

/// Renders the signed note, stores the PDF as a `clinical_note` document of its
/// patient (file name `note-<id>.pdf`: no PHI) and records the rendition pointing at
/// it, in `tx`. Returns the page count and the rendition.
pub async fn render_and_store(
    tx: &mut TenantTx,
    keyring: &Keyring,
    storage: &documents::Storage,
    note_id: NoteId,
) -> Result<(usize, store::Rendition), RenderError> {
    let pdf = store::render_signed(tx, keyring, note_id).await?;
    let patient_id = crate::listing::patient_of(tx, note_id)
        .await?
        .ok_or(RenderError::NotFound)?;
    let document = documents::put_bytes(
        tx,
        keyring,
        storage,
        documents::NewDocument {
            patient_id,
            category: documents::Category::ClinicalNote,
            filename: kernel::Phi::from(format!("note-{note_id}.pdf")),
            content_type: "application/pdf".to_owned(),
        },
        bytes::Bytes::from(pdf.bytes),
    )
    .await
    .map_err(RenderError::Storing)?;
    let rendition =
        store::record_rendition(tx, note_id, pdf.sha256, Some(document.id.into_uuid())).await?;
    Ok((pdf.n_pages, rendition))
}

/// Enqueues `notes.render_pdf` for the signed note `note_id` in `tx`; a render
/// already pending for it is reused. [`RenderError::NotSigned`] for a draft.
pub async fn enqueue(tx: &mut TenantTx, note_id: NoteId) -> Result<JobId, RenderError> {
    match crate::listing::chain(tx, note_id).await? {
        None => return Err(RenderError::NotFound),
        Some((summary, _)) if summary.status == crate::Status::Draft => {
            return Err(RenderError::NotSigned);
        }
        Some(_) => {}
    }
    let spec = JobSpec::<RenderPdf>::new(RenderPdfArgs {
        note_id: note_id.into_uuid(),
    })
    .unique_key(format!("{}:{note_id}", RenderPdf::NAME));
    Ok(jobs::enqueue(tx, spec).await?.job_id())
}
