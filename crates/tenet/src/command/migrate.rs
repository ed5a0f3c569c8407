//! `tenet migrate [up|down|status]`.

use std::process::ExitCode;

use crate::cli::{Global, MigrateDirection};

#[allow(clippy::print_stdout, reason = "command output")]
pub async fn run(global: &Global, direction: Option<MigrateDirection>) -> anyhow::Result<ExitCode> {
    let (owner, _app) = super::pools(global).await?;
    let migrator = schema::migrator();
    match direction.unwrap_or(MigrateDirection::Up) {
        MigrateDirection::Up => {
            let n = migrator.up(&owner).await?;
            println!("{n} migration(s) applied; the schema is current");
        }
        MigrateDirection::Down { steps } => {
            let n = migrator.down(&owner, steps).await?;
            println!("{n} migration(s) reverted");
        }
        MigrateDirection::Status => {
            let status = migrator.status(&owner).await?;
            for migration in migrator.migrations() {
                let state = if status.applied.contains(&migration.version) {
                    "applied"
                } else {
                    "pending"
                };
                println!(
                    "{}  {:<10} {:<8} {}",
                    migration.version, migration.context, state, migration.name
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
