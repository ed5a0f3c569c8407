//! The durable job `notes.render_pdf`: renders a signed note to PDF and records the
//! rendition in the job's own transaction, so the hash is recorded exactly when the
//! job succeeds. Its arguments are the note's id only — never content.

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
        match store::render_and_record(tx, &self.keyring, note_id).await {
            Ok((pdf, rendition)) => {
                tracing::debug!(
                    %note_id,
                    rendition_id = %rendition.id,
                    n_pages = pdf.n_pages,
                    "note rendered to PDF"
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
