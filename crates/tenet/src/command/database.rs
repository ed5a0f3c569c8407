//! `tenet db start|stop|status`: the embedded PostgreSQL cluster by hand.

use std::process::ExitCode;

use anyhow::bail;
use db::cluster::Cluster;

use crate::cli::{DbCommand, Global};
use crate::output::say;

pub async fn run(global: &Global, command: DbCommand) -> anyhow::Result<ExitCode> {
    if global.database_url.is_some() {
        bail!("DATABASE_URL is set: Tenet is not managing a database of its own");
    }
    let mut cluster = Cluster::at(&global.home)?;
    match command {
        DbCommand::Start => {
            let startup = cluster.ensure_running().await?;
            say(format!(
                "embedded PostgreSQL running ({startup:?}); socket in {}",
                cluster.socket_dir().display()
            ));
        }
        DbCommand::Stop => {
            cluster.stop().await?;
            say("embedded PostgreSQL stopped");
        }
        DbCommand::Status => {
            let running = cluster.is_running().await?;
            say(format!(
                "embedded PostgreSQL at {}: {}",
                cluster.data_dir().display(),
                if running { "running" } else { "stopped" }
            ));
            return Ok(if running {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}
