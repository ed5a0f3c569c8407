//! `tenet deadletters list|show|retry|discard`: work that failed past its attempts,
//! across tenants, as the owner role.

use std::process::ExitCode;

use kernel::{JobId, TenantId};
use platform::jobs::admin;

use super::jobs::{outcome, print_job, timestamp};
use crate::cli::{DeadLettersCommand, Global};
use crate::output::say;

pub async fn run(global: &Global, command: DeadLettersCommand) -> anyhow::Result<ExitCode> {
    super::with_pools(global, async |owner, _app| {
        let mut conn = owner.acquire().await?;
        match command {
            DeadLettersCommand::List { tenant, limit } => {
                let dead =
                    admin::dead_letters(&mut conn, tenant.map(TenantId::new_unchecked), limit)
                        .await?;
                say(format!(
                    "{:<36}  {:<36}  {:<24}  {:<25}  last error",
                    "id", "tenant", "kind", "dead since"
                ));
                for job in &dead {
                    let error = job.last_error.as_deref().unwrap_or("-");
                    say(format!(
                        "{:<36}  {:<36}  {:<24}  {:<25}  {}",
                        job.id,
                        job.tenant_id,
                        job.kind,
                        job.finished_at.map(timestamp).unwrap_or_default(),
                        error.chars().take(80).collect::<String>()
                    ));
                }
                say(format!("{} dead letter(s)", dead.len()));
                Ok(ExitCode::SUCCESS)
            }
            DeadLettersCommand::Show { id } => {
                match admin::show(&mut conn, JobId::new_unchecked(id)).await? {
                    Some(job) if job.state == "dead" => {
                        print_job(&job);
                        Ok(ExitCode::SUCCESS)
                    }
                    Some(job) => {
                        say(format!(
                            "{id} is not a dead letter: the job is {}",
                            job.state
                        ));
                        Ok(ExitCode::FAILURE)
                    }
                    None => {
                        say(format!("no dead letter {id}"));
                        Ok(ExitCode::FAILURE)
                    }
                }
            }
            DeadLettersCommand::Retry { id } => outcome(
                admin::retry(&mut conn, JobId::new_unchecked(id)).await,
                id,
                "scheduled to run again now",
            ),
            DeadLettersCommand::Discard { id } => outcome(
                admin::discard(&mut conn, JobId::new_unchecked(id)).await,
                id,
                "discarded (kept as dead, off the list)",
            ),
        }
    })
    .await
}
