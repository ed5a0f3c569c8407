//! `tenet notes list|show|late|pdf`: a tenant's progress notes as metadata — status,
//! signatures, amendment chains, the late-signing list — and a signed note rendered
//! to a PDF file. Each runs in a transaction of the tenant; nothing here prints a
//! note's text (`pdf` writes it only into the file asked for, audited).

use std::process::ExitCode;

use anyhow::Context;
use identity::keyring::Keyring;
use kernel::PatientId;
use notes::listing::{self, Summary};
use notes::note::NoteId;
use notes::pdf::RenderError;
use time::OffsetDateTime;

use super::tenant_tx;
use crate::cli::{Global, NotesCommand};
use crate::output::{say, tell};
use crate::settings;

pub async fn run(global: &Global, command: NotesCommand) -> anyhow::Result<ExitCode> {
    let keyring = match &command {
        NotesCommand::Pdf { .. } => Some(Keyring::new(settings::master_key(global)?)),
        _ => None,
    };
    super::with_pools(global, async |_owner, app| match command {
        NotesCommand::List { tenant, patient } => {
            let mut tx = tenant_tx(app, tenant).await?;
            let summaries =
                listing::for_patient(&mut tx, PatientId::new_unchecked(patient)).await?;
            tx.commit().await?;
            if summaries.is_empty() {
                say("no notes for this patient");
            }
            for summary in &summaries {
                say(line(summary));
            }
            Ok(ExitCode::SUCCESS)
        }
        NotesCommand::Show { tenant, note } => {
            let mut tx = tenant_tx(app, tenant).await?;
            let chain = listing::chain(&mut tx, NoteId::new_unchecked(note)).await?;
            tx.commit().await?;
            let Some((note, amendments)) = chain else {
                anyhow::bail!("no note {note} in tenant {tenant}");
            };
            say(line(&note));
            say(format!(
                "patient {} author {}",
                note.patient_id, note.author_id
            ));
            for amendment in &amendments {
                say(format!("  amended by {}", line(amendment)));
            }
            Ok(ExitCode::SUCCESS)
        }
        NotesCommand::Late { tenant } => {
            let mut tx = tenant_tx(app, tenant).await?;
            let late = listing::late(&mut tx, OffsetDateTime::now_utc()).await?;
            tx.commit().await?;
            if late.is_empty() {
                say("no late notes");
                return Ok(ExitCode::SUCCESS);
            }
            for note in &late {
                say(format!(
                    "{} late since {}",
                    line(&note.summary),
                    note.due_at
                ));
            }
            Ok(ExitCode::FAILURE)
        }
        NotesCommand::Pdf { tenant, note, out } => {
            let keyring = keyring.expect("BUG: loaded for pdf");
            let mut tx = tenant_tx(app, tenant).await?;
            let note_id = NoteId::new_unchecked(note);
            let (pdf, rendition) =
                match notes::pdf::render_and_record(&mut tx, &keyring, note_id).await {
                    Ok(rendered) => rendered,
                    Err(err @ (RenderError::NotFound | RenderError::NotSigned)) => {
                        tell(format!("note {note}: {err}"));
                        return Ok(ExitCode::FAILURE);
                    }
                    Err(err) => return Err(err.into()),
                };
            // The file first: a rendition is recorded only for a PDF that was written.
            std::fs::write(&out, &pdf.bytes)
                .with_context(|| format!("writing {}", out.display()))?;
            tx.commit().await?;
            say(format!(
                "{} {} pages sha256 {} rendition {}",
                out.display(),
                pdf.n_pages,
                pdf.sha256
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>(),
                rendition.id
            ));
            Ok(ExitCode::SUCCESS)
        }
    })
    .await
}

fn line(summary: &Summary) -> String {
    format!(
        "{} {}-v{} {:<15} version {} care {} signed {}",
        summary.id,
        summary.template_code,
        summary.template_version,
        summary.status.as_str(),
        summary.version,
        summary.service_at,
        summary
            .signed_at
            .map_or_else(|| "-".to_owned(), |at| at.to_string()),
    )
}
