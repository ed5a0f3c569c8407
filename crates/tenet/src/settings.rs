//! Where the database and the keys come from.
//!
//! Without `DATABASE_URL`, Tenet runs its own PostgreSQL cluster under `--home`
//! (default `./.tenet/`) and keeps its master key and checkpoint-signing key there.
//! With `DATABASE_URL`, that database is used as the owner role, and keys must be
//! given explicitly (`TENET_MASTER_KEY` or `TENET_MASTER_KEY_FILE`): a production
//! installation never gets a key generated behind its back.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, bail};
use db::DatabaseConfig;
use db::cluster::{Cluster, SUPERUSER, Startup};
use db::roles::{APP_ROLE, OWNER_ROLE};
use identity::keyring::MasterKey;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::cli::Global;

/// The embedded cluster's database name.
pub const EMBEDDED_DATABASE: &str = "tenet";

/// A database ready to connect to, and the embedded cluster if we run one.
pub struct Database {
    pub config: DatabaseConfig,
    pub cluster: Option<(Cluster, Startup)>,
}

impl Database {
    /// Stops the embedded cluster if this command started it; one that was already
    /// running (a `tenet up` in another terminal) is left alone.
    pub async fn finish(&self) -> anyhow::Result<()> {
        if let Some((cluster, startup)) = &self.cluster
            && *startup != Startup::AlreadyRunning
        {
            cluster
                .stop()
                .await
                .context("stopping the embedded PostgreSQL")?;
            tracing::info!("embedded PostgreSQL stopped");
        }
        Ok(())
    }
}

/// Resolves the database: `DATABASE_URL`, or the embedded cluster (started if needed).
pub async fn database(global: &Global) -> anyhow::Result<Database> {
    if let Some(url) = &global.database_url {
        let owner =
            PgConnectOptions::from_str(url).context("DATABASE_URL is not a PostgreSQL URL")?;
        let app = match &global.app_database_url {
            Some(url) => PgConnectOptions::from_str(url)
                .context("TENET_APP_DATABASE_URL is not a PostgreSQL URL")?,
            None => {
                let mut app = owner.clone().username(APP_ROLE);
                if let Ok(password) = std::env::var("TENET_APP_PASSWORD") {
                    app = app.password(&password);
                }
                app
            }
        };
        return Ok(Database {
            config: DatabaseConfig { owner, app },
            cluster: None,
        });
    }
    let mut cluster = Cluster::at(&global.home)?;
    let startup = cluster
        .ensure_running()
        .await
        .context("starting the embedded PostgreSQL")?;
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(cluster.connect_options(SUPERUSER, "postgres"))
        .await
        .context("connecting to the embedded PostgreSQL")?;
    db::roles::ensure_roles(&admin)
        .await
        .context("creating the database roles")?;
    db::roles::ensure_database(&admin, EMBEDDED_DATABASE, None)
        .await
        .context("creating the database")?;
    admin.close().await;
    Ok(Database {
        config: DatabaseConfig {
            owner: cluster.connect_options(OWNER_ROLE, EMBEDDED_DATABASE),
            app: cluster.connect_options(APP_ROLE, EMBEDDED_DATABASE),
        },
        cluster: Some((cluster, startup)),
    })
}

/// Where the master key lives when it is a file.
pub fn master_key_path(global: &Global) -> Option<PathBuf> {
    if std::env::var_os("TENET_MASTER_KEY").is_some() {
        return None;
    }
    if let Some(path) = std::env::var_os("TENET_MASTER_KEY_FILE") {
        return Some(PathBuf::from(path));
    }
    global
        .database_url
        .is_none()
        .then(|| global.home.join("master.key"))
}

/// The master key: `TENET_MASTER_KEY` (64 hex digits), `TENET_MASTER_KEY_FILE`, or
/// for the embedded default `<home>/master.key`, generated on first use.
pub fn master_key(global: &Global) -> anyhow::Result<MasterKey> {
    if let Ok(hex) = std::env::var("TENET_MASTER_KEY") {
        return Ok(MasterKey::from_hex(&hex, "TENET_MASTER_KEY")?);
    }
    let Some(path) = master_key_path(global) else {
        bail!("no master key: set TENET_MASTER_KEY (64 hex digits) or TENET_MASTER_KEY_FILE");
    };
    if path.with_extension("key.next").exists() {
        bail!(
            "a master key rotation was interrupted ({} exists); run `tenet keys rotate` again to finish it",
            path.with_extension("key.next").display()
        );
    }
    if !path.exists() {
        if global.database_url.is_some() {
            bail!("the master key file {} does not exist", path.display());
        }
        let key = MasterKey::generate();
        std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
        audit::checkpoint::write_secret_file(&path, &key.to_hex())
            .with_context(|| format!("writing the new master key to {}", path.display()))?;
        tracing::info!(path = %path.display(), key_id = key.id(), "generated a master key");
        return Ok(key);
    }
    Ok(MasterKey::from_file(&path)?)
}

/// The checkpoint-signing key: `TENET_CHECKPOINT_KEY_FILE` or `<home>/audit-signing.key`,
/// generated on first use.
pub fn checkpoint_key(global: &Global) -> anyhow::Result<audit::CheckpointKey> {
    let path = std::env::var_os("TENET_CHECKPOINT_KEY_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| global.home.join("audit-signing.key"));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    Ok(audit::CheckpointKey::load_or_create(&path)?)
}

/// The SMTP server reminders are sent through, if one is configured: its URL and
/// sender checked now, so a mistake stops the start instead of every email.
pub fn smtp(
    args: &crate::cli::ServeArgs,
) -> anyhow::Result<Option<assessments::reminder::SmtpConfig>> {
    let (Some(url), Some(from)) = (&args.smtp_url, &args.smtp_from) else {
        return Ok(None);
    };
    let link_base = args.reminder_link_base.as_deref().unwrap_or("");
    // A link carries a one-time bearer token: never over cleartext, except to this
    // machine (a development answer page).
    let local = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
        .iter()
        .any(|prefix| link_base.starts_with(prefix));
    if !link_base.starts_with("https://") && !local {
        bail!(
            "--reminder-link-base must be an https URL where respondents answer (http only for localhost)"
        );
    }
    // The URL may hold a password: the error names the rule, never the value.
    let config = assessments::reminder::SmtpConfig::from_url(url, from)
        .map_err(|err| anyhow::anyhow!("--smtp-url/--smtp-from: {err}"))?;
    Ok(Some(config))
}

/// The document store: `--documents-store` (a path, `file:///path` or
/// `s3://bucket[/prefix]`), by default `<home>/documents`, with the upload limit.
pub fn documents_storage(global: &Global) -> anyhow::Result<documents::Storage> {
    let storage = match &global.documents_store {
        Some(url) => documents::Storage::from_url(url),
        None => documents::Storage::local(&global.home.join("documents")),
    }
    .context("opening the document store")?;
    Ok(storage.with_size_max_bytes(global.documents_size_max_bytes))
}
