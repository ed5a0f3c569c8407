//! `tenet documents …`: a tenant's documents from the operator's seat — metadata,
//! uploads and downloads of files (sealed and audited as `operator`), deletion, legal
//! holds, retention rules, permission scopes and a lifecycle pass on demand. Each runs
//! in a transaction of the tenant; nothing here prints a document's content or name.

use std::process::ExitCode;

use anyhow::Context;
use documents::document::{self, Document, NewDocument};
use documents::retention::{self, Anchor, RetentionRule};
use documents::scope::{self, ScopeRule};
use documents::{Category, DocumentId, Permission};
use futures::StreamExt;
use kernel::{PatientId, Phi, Role};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::tenant_tx;
use crate::cli::{DocumentsCommand, Global};
use crate::output::say;
use crate::settings;

pub async fn run(global: &Global, command: DocumentsCommand) -> anyhow::Result<ExitCode> {
    let storage = settings::documents_storage(global)?;
    let keyring = identity::keyring::Keyring::new(settings::master_key(global)?);
    super::with_pools(global, async |_owner, app| match command {
        DocumentsCommand::List {
            tenant,
            patient,
            deleted,
        } => {
            let mut tx = tenant_tx(app, tenant).await?;
            let listed = document::list_for_patient(
                &mut tx,
                PatientId::new_unchecked(patient),
                &Category::ALL,
                deleted,
                document::LIST_LIMIT_MAX,
            )
            .await?;
            tx.commit().await?;
            if listed.is_empty() {
                say("no documents for this patient");
            }
            for document in &listed {
                say(line(document));
            }
            Ok(ExitCode::SUCCESS)
        }
        DocumentsCommand::Show { tenant, document } => {
            let mut tx = tenant_tx(app, tenant).await?;
            let found = document::get(&mut tx, DocumentId::new_unchecked(document)).await?;
            tx.commit().await?;
            let Some(found) = found else {
                anyhow::bail!("no document {document} in tenant {tenant}");
            };
            say(line(&found));
            say(format!(
                "patient {} sha256 {} created by {}",
                found.patient_id,
                hex::encode(found.content_sha256),
                found.created_by
            ));
            if let Some(hold) = &found.hold {
                say(format!("legal hold since {} by {}: {}", hold.at, hold.by, hold.reason));
            }
            Ok(ExitCode::SUCCESS)
        }
        DocumentsCommand::Upload {
            tenant,
            patient,
            category,
            content_type,
            file,
        } => {
            let category: Category = category.parse()?;
            let filename = file
                .file_name()
                .and_then(|name| name.to_str())
                .context("the file needs a UTF-8 name")?
                .to_owned();
            let opened = tokio::fs::File::open(&file)
                .await
                .with_context(|| format!("opening {}", file.display()))?;
            let body = file_chunks(opened);
            let mut tx = tenant_tx(app, tenant).await?;
            if clinical::patient::get(&mut tx, PatientId::new_unchecked(patient))
                .await?
                .is_none()
            {
                anyhow::bail!("no patient {patient} in tenant {tenant}");
            }
            let stored = documents::put(
                &mut tx,
                &keyring,
                &storage,
                NewDocument {
                    patient_id: PatientId::new_unchecked(patient),
                    category,
                    filename: Phi::from(filename),
                    content_type,
                },
                body,
            )
            .await?;
            tx.commit().await?;
            say(line(&stored));
            Ok(ExitCode::SUCCESS)
        }
        DocumentsCommand::Download {
            tenant,
            document,
            out,
        } => {
            let mut tx = tenant_tx(app, tenant).await?;
            let mut opened = documents::open(
                &mut tx,
                &keyring,
                &storage,
                DocumentId::new_unchecked(document),
                "operations",
                false,
            )
            .await?;
            tx.commit().await?;
            let mut file = tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&out)
                .await
                .with_context(|| format!("creating {}", out.display()))?;
            while let Some(chunk) = opened.content.next().await {
                file.write_all(&chunk?).await?;
            }
            file.flush().await?;
            say(format!(
                "wrote {} bytes to {}",
                opened.document.size_bytes,
                out.display()
            ));
            Ok(ExitCode::SUCCESS)
        }
        DocumentsCommand::Delete { tenant, document } => {
            let mut tx = tenant_tx(app, tenant).await?;
            let document_id = DocumentId::new_unchecked(document);
            let deleted = document::delete(&mut tx, document_id).await?;
            let tenant_id = tx.tenant_id();
            tx.commit().await?;
            // After the commit; the lifecycle sweep removes it if this fails.
            if let Err(err) = document::remove_content(&storage, tenant_id, document_id).await {
                tracing::warn!(%document_id, error = %err, "the content stays until the lifecycle sweep");
            }
            say(line(&deleted));
            Ok(ExitCode::SUCCESS)
        }
        DocumentsCommand::Hold {
            tenant,
            document,
            reason,
        } => {
            let mut tx = tenant_tx(app, tenant).await?;
            let held =
                retention::place_hold(&mut tx, DocumentId::new_unchecked(document), &reason)
                    .await?;
            tx.commit().await?;
            say(line(&held));
            Ok(ExitCode::SUCCESS)
        }
        DocumentsCommand::Release { tenant, document } => {
            let mut tx = tenant_tx(app, tenant).await?;
            let released =
                retention::release_hold(&mut tx, DocumentId::new_unchecked(document)).await?;
            tx.commit().await?;
            say(line(&released));
            Ok(ExitCode::SUCCESS)
        }
        DocumentsCommand::Retention {
            tenant,
            category,
            keep_days,
            anchor,
            clear,
        } => {
            let mut tx = tenant_tx(app, tenant).await?;
            if let Some(category) = category {
                let category: Category = category.parse()?;
                if clear {
                    if !retention::clear_rule(&mut tx, category).await? {
                        anyhow::bail!("{category} has no retention rule");
                    }
                } else {
                    let keep_days =
                        keep_days.context("give --keep-days to set a rule, or --clear")?;
                    let anchor: Anchor = anchor.parse().map_err(anyhow::Error::msg)?;
                    retention::set_rule(
                        &mut tx,
                        RetentionRule {
                            category,
                            anchor,
                            keep_days,
                        },
                    )
                    .await?;
                    documents::lifecycle::ensure_schedule(&mut tx, OffsetDateTime::now_utc())
                        .await?;
                }
            }
            let rules = retention::rules(&mut tx).await?;
            tx.commit().await?;
            if rules.is_empty() {
                say("no retention rules: every document is kept");
            }
            for rule in rules {
                say(format!(
                    "{:<15} keep {} days after {}",
                    rule.category.as_str(),
                    rule.keep_days,
                    rule.anchor.as_str()
                ));
            }
            Ok(ExitCode::SUCCESS)
        }
        DocumentsCommand::Scopes {
            tenant,
            role,
            category,
            on_care_team,
            permission,
        } => {
            let mut tx = tenant_tx(app, tenant).await?;
            if let (Some(role), Some(category), Some(permission)) = (role, category, permission) {
                let role: Role = role.parse()?;
                let category: Category = category.parse()?;
                let permission: Permission = permission.parse()?;
                scope::set_rule(
                    &mut tx,
                    ScopeRule {
                        role,
                        category,
                        on_care_team,
                        permission,
                    },
                )
                .await?;
            }
            let rules = scope::effective(&mut tx).await?;
            tx.commit().await?;
            for rule in rules {
                say(format!(
                    "{:<17} {:<15} {:<12} {}",
                    rule.role.as_str(),
                    rule.category.as_str(),
                    if rule.on_care_team { "care team" } else { "others" },
                    rule.permission.as_str()
                ));
            }
            Ok(ExitCode::SUCCESS)
        }
        DocumentsCommand::Sweep { tenant } => {
            let tenant_id = kernel::TenantId::new_unchecked(tenant);
            // The lifecycle deletes as the system, like its scheduled job.
            let mut tx = db::TenantTx::begin_as(app, tenant_id, "system", None).await?;
            let report =
                documents::lifecycle::try_run_once(&mut tx, &storage, OffsetDateTime::now_utc())
                    .await?;
            tx.commit().await?;
            for document_id in &report.deleted {
                say(format!("deleted {document_id} (retention expired)"));
            }
            say(format!(
                "{} deleted, {} expired but held, {} kept for a patient in care, {} orphaned objects removed",
                report.deleted.len(),
                report.n_held,
                report.n_active_patient,
                report.n_orphans_removed
            ));
            Ok(ExitCode::SUCCESS)
        }
    })
    .await
}

fn line(document: &Document) -> String {
    format!(
        "{} {:<15} {:<24} {:>10} bytes {:<7} {}{}",
        document.id,
        document.category.as_str(),
        document.content_type,
        document.size_bytes,
        match document.status {
            documents::Status::Stored => "stored",
            documents::Status::Deleted => "deleted",
        },
        document.created_at,
        if document.hold.is_some() { " HELD" } else { "" }
    )
}

/// A file as a stream of chunks, read as the upload needs them.
fn file_chunks(
    file: tokio::fs::File,
) -> impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send {
    const CHUNK_LEN: usize = 64 * 1024;
    futures::stream::try_unfold(file, |mut file| async move {
        let mut chunk = vec![0u8; CHUNK_LEN];
        let n = file.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        chunk.truncate(n);
        Ok(Some((bytes::Bytes::from(chunk), file)))
    })
}
