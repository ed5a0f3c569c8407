//! `tenet migrate [up|down|status]`.

use std::process::ExitCode;

use crate::cli::{Global, MigrateDirection};
use crate::output::say;

pub async fn run(global: &Global, direction: Option<MigrateDirection>) -> anyhow::Result<ExitCode> {
    super::with_pools(global, async |owner, _app| migrate(owner, direction).await).await
}

async fn migrate(
    owner: &sqlx::PgPool,
    direction: Option<MigrateDirection>,
) -> anyhow::Result<ExitCode> {
    let migrator = schema::migrator();
    match direction.unwrap_or(MigrateDirection::Up) {
        MigrateDirection::Up => {
            let n = migrator.up(owner).await?;
            say(format!("{n} migration(s) applied; the schema is current"));
        }
        MigrateDirection::Down { steps } => {
            let n = migrator.down(owner, steps).await?;
            say(format!("{n} migration(s) reverted"));
        }
        MigrateDirection::Status => {
            let status = migrator.status(owner).await?;
            for migration in migrator.migrations() {
                let state = if status.applied.contains(&migration.version) {
                    "applied"
                } else {
                    "pending"
                };
                say(format!(
                    "{}  {:<10} {:<8} {}",
                    migration.version, migration.context, state, migration.name
                ));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
