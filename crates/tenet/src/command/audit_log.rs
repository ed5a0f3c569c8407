//! `tenet audit verify` and `tenet audit checkpoint`.

use std::process::ExitCode;
use std::time::Instant;

use db::TenantTx;
use indicatif::{ProgressBar, ProgressStyle};
use kernel::TenantId;

use crate::cli::{AuditCommand, Global};
use crate::output::say;
use crate::{settings, wiring};

pub async fn run(global: &Global, command: AuditCommand) -> anyhow::Result<ExitCode> {
    let key = settings::checkpoint_key(global)?;
    super::with_pools(global, async |owner, _app| audit(owner, key, command).await).await
}

async fn audit(
    owner: &sqlx::PgPool,
    key: audit::CheckpointKey,
    command: AuditCommand,
) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::Checkpoint { tenant } => {
            let n =
                wiring::checkpoint_all(owner, &key, tenant.map(TenantId::new_unchecked)).await?;
            say(format!(
                "{n} checkpoint(s) written (tenants whose log did not move since their last checkpoint were skipped)"
            ));
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Verify { tenant, streams } => {
            let mut options = audit::VerifyOptions::default();
            if let Some(streams) = streams {
                options.streams = usize::from(streams);
            }
            let mut keys = vec![key.verifying_key()];
            // Keys retired from signing still verify the checkpoints they made.
            if let Ok(list) = std::env::var("TENET_CHECKPOINT_PUBLIC_KEYS") {
                for hex in list.split(',').map(str::trim).filter(|hex| !hex.is_empty()) {
                    let bytes: [u8; 32] = hex_decode(hex).ok_or_else(|| {
                        anyhow::anyhow!(
                            "TENET_CHECKPOINT_PUBLIC_KEYS holds a key that is not 64 hex digits"
                        )
                    })?;
                    keys.push(ed25519_dalek_key(&bytes)?);
                }
            }
            let tenants = identity::tenant::list_all(owner).await?;
            let started = Instant::now();
            let mut n_events = 0u64;
            let mut n_checkpoints = 0u64;
            let mut problems = Vec::new();
            let mut n_tenants = 0;
            for tenant_entry in tenants {
                if tenant.is_some_and(|only| only != tenant_entry.tenant_id.into_uuid()) {
                    continue;
                }
                n_tenants += 1;
                let mut tx =
                    TenantTx::begin_as(owner, tenant_entry.tenant_id, "system", None).await?;
                let total: i64 =
                    sqlx::query_scalar("SELECT coalesce(sum(seq), 0)::bigint FROM audit.chain_heads WHERE tenant_id = $1")
                        .bind(tenant_entry.tenant_id.as_uuid())
                        .fetch_one(&mut *tx)
                        .await?;
                tx.rollback().await?;
                let bar = ProgressBar::new(u64::try_from(total).unwrap_or(0));
                bar.set_style(
                    ProgressStyle::with_template(
                        "{prefix} [{bar:30}] {pos}/{len} events ({per_sec})",
                    )
                    .expect("BUG: progress template")
                    .progress_chars("=> "),
                );
                bar.set_prefix(tenant_entry.tenant_id.to_string());
                let report =
                    audit::verify_tenant(owner, tenant_entry.tenant_id, &keys, options, |n| {
                        bar.set_position(n)
                    })
                    .await?;
                bar.finish_and_clear();
                n_events += report.n_events;
                n_checkpoints += report.n_checkpoints;
                problems.extend(report.problems);
            }
            // A mistyped tenant must not read as an intact log.
            if let Some(only) = tenant
                && n_tenants == 0
            {
                anyhow::bail!("no tenant {only}");
            }
            let secs = started.elapsed().as_secs_f64();
            for problem in &problems {
                say(format!("TAMPERED {problem}"));
            }
            say(format!(
                "{} event(s) and {} checkpoint(s) of {} tenant(s) verified in {:.2}s ({:.0} events/s): {}",
                n_events,
                n_checkpoints,
                n_tenants,
                secs,
                n_events as f64 / secs.max(1e-9),
                if problems.is_empty() {
                    "intact".to_owned()
                } else {
                    format!("{} problem(s)", problems.len())
                }
            ));
            Ok(if problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

fn hex_decode(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

fn ed25519_dalek_key(bytes: &[u8; 32]) -> anyhow::Result<audit::checkpoint::VerifyingKey> {
    audit::checkpoint::VerifyingKey::from_bytes(bytes)
        .map_err(|_| anyhow::anyhow!("not an Ed25519 public key"))
}
