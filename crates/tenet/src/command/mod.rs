//! One module per subcommand. Each prints for a human on stdout; logs go to stderr.

mod assessment_responses;
mod assessments;
mod audit_log;
mod check;
mod consents;
mod critical_ranges;
mod database;
mod deadletters;
mod documents;
mod hl7;
mod ingest;
mod jobs;
mod keys;
mod migrate;
mod notes;
mod principals;
mod reminders;
mod sagas;
mod schedules;
mod up;
mod webhooks;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;

use crate::cli::{Cli, Command, Global};
use crate::settings;

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let global = &cli.global;
    match cli.command {
        Command::Up(args) => up::up(global, &args).await,
        Command::Serve(args) => up::serve(global, &args).await,
        Command::Migrate { direction } => migrate::run(global, direction).await,
        Command::Tenant { command } => principals::tenant(global, command).await,
        Command::User { command } => principals::user(global, command).await,
        Command::Apikey { command } => principals::api_key(global, command).await,
        Command::Audit { command } => audit_log::run(global, command).await,
        Command::Check {
            json,
            lease_grace_secs,
            overdue_secs,
            slot_late_secs,
            saga_idle_secs,
        } => {
            let config = platform::health::HealthConfig {
                lease_grace: Duration::from_secs(lease_grace_secs),
                overdue_after: Duration::from_secs(overdue_secs),
                slot_late_after: Duration::from_secs(slot_late_secs),
                saga_idle_after: Duration::from_secs(saga_idle_secs),
            };
            check::run(global, json, &config).await
        }
        Command::Keys { command } => keys::run(global, command).await,
        Command::Db { command } => database::run(global, command).await,
        Command::Jobs { command } => jobs::run(global, command).await,
        Command::Deadletters { command } => deadletters::run(global, command).await,
        Command::Webhooks { command } => webhooks::run(global, command).await,
        Command::Schedules { command } => schedules::run(global, command).await,
        Command::Sagas { command } => sagas::run(global, command).await,
        Command::Assessments { command } => assessments::run(global, command).await,
        Command::CriticalRanges { command } => critical_ranges::run(global, command).await,
        Command::Reminders { command } => reminders::run(global, command).await,
        Command::Notes { command } => notes::run(global, command).await,
        Command::Consents { command } => consents::consents(global, command).await,
        Command::Releases { command } => consents::releases(global, command).await,
        Command::Documents { command } => documents::run(global, command).await,
        Command::Ingest { command } => ingest::run(global, command).await,
        // No database: these read files and talk MLLP.
        Command::Hl7 { command } => hl7::run(command).await,
    }
}

/// Runs an operator command with pools (owner, service role), stopping the
/// embedded cluster afterwards if the command had to start it.
async fn with_pools<T>(
    global: &Global,
    f: impl AsyncFnOnce(&PgPool, &PgPool) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let database = settings::database(global).await?;
    let (owner, app) = database
        .config
        .connect(4)
        .await
        .context("connecting to the database")?;
    let result = f(&owner, &app).await;
    owner.close().await;
    app.close().await;
    database.finish().await?;
    result
}

/// A transaction of `tenant` as the service role, refusing an unknown tenant.
pub(super) async fn tenant_tx(
    app: &sqlx::PgPool,
    tenant: uuid::Uuid,
) -> anyhow::Result<db::TenantTx> {
    let tenant_id = kernel::TenantId::new_unchecked(tenant);
    let mut tx = db::TenantTx::begin_as(app, tenant_id, "operator", None).await?;
    if !identity::tenant::is_active(&mut tx).await? {
        anyhow::bail!("no active tenant {tenant_id}");
    }
    Ok(tx)
}
