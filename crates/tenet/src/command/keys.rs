//! `tenet keys rotate`: replace the master key.
//!
//! The new key is written next to the old one first (`master.key.next`), then every
//! tenant's data keys are re-wrapped tenant by tenant, and only then does the new key
//! take the old one's place (the old one is kept as `master.key.retired-<id>`). An
//! interrupted rotation resumes from `master.key.next`; until it finishes, the server
//! refuses to start rather than run with half the tenants unreadable.

use std::process::ExitCode;

use anyhow::{Context, bail};
use db::TenantTx;
use identity::keyring::MasterKey;
use indicatif::ProgressBar;

use crate::cli::{Global, KeysCommand};
use crate::output::say;
use crate::settings;

pub async fn run(global: &Global, command: KeysCommand) -> anyhow::Result<ExitCode> {
    let KeysCommand::Rotate = command;
    let Some(path) = settings::master_key_path(global) else {
        bail!(
            "the master key comes from TENET_MASTER_KEY; rotate by setting TENET_MASTER_KEY_FILE to a key file (or unset it for the embedded default)"
        );
    };
    let next_path = path.with_extension("key.next");
    let old = MasterKey::from_file(&path)?;
    let new = if next_path.exists() {
        MasterKey::from_file(&next_path)?
    } else {
        let new = MasterKey::generate();
        audit::checkpoint::write_secret_file(&next_path, &new.to_hex())
            .with_context(|| format!("writing {}", next_path.display()))?;
        new
    };
    let (n_tenants, n_rewrapped) = super::with_pools(global, async |owner, _app| {
        let tenants = identity::tenant::list_all(owner).await?;
        let bar = ProgressBar::new(tenants.len() as u64);
        let mut n_rewrapped = 0;
        for tenant in &tenants {
            let mut tx = TenantTx::begin_as(owner, tenant.tenant_id, "system", None).await?;
            n_rewrapped += identity::keyring::rewrap_tenant(&mut tx, &old, &new).await?;
            tx.commit().await?;
            bar.inc(1);
        }
        bar.finish_and_clear();
        Ok((tenants.len(), n_rewrapped))
    })
    .await?;
    let retired = path.with_extension(format!("key.retired-{}", old.id()));
    std::fs::rename(&path, &retired).with_context(|| format!("retiring {}", path.display()))?;
    std::fs::rename(&next_path, &path).with_context(|| format!("installing {}", path.display()))?;
    say(format!(
        "master key rotated: {} -> {}; {} data key(s) of {} tenant(s) re-wrapped; the old key is kept at {} (delete it once backups no longer need it)",
        old.id(),
        new.id(),
        n_rewrapped,
        n_tenants,
        retired.display()
    ));
    Ok(ExitCode::SUCCESS)
}
