//! `tenet notes list|show|late`: a tenant's progress notes as metadata — status,
//! signatures, amendment chains, the late-signing list. Each runs in a transaction
//! of the tenant; nothing here decrypts or prints a note's text.

use std::process::ExitCode;

use kernel::PatientId;
use notes::listing::{self, Summary};
use notes::note::NoteId;
use time::OffsetDateTime;

use super::tenant_tx;
use crate::cli::{Global, NotesCommand};
use crate::output::say;

pub async fn run(global: &Global, command: NotesCommand) -> anyhow::Result<ExitCode> {
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
