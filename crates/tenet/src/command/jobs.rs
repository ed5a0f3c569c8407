//! `tenet jobs list|show|retry|cancel`: operators' view of durable jobs, across
//! tenants, through the owner role's `job_dispatch` policy.

use std::process::ExitCode;

use kernel::{JobId, TenantId};
use platform::jobs::admin::{self, AdminError, JobRow};
use time::format_description::well_known::Rfc3339;

use crate::cli::{Global, JobsCommand};
use crate::output::say;

pub async fn run(global: &Global, command: JobsCommand) -> anyhow::Result<ExitCode> {
    super::with_pools(global, async |owner, _app| match command {
        JobsCommand::List {
            state,
            tenant,
            limit,
        } => {
            let jobs = admin::list(
                owner,
                state.map(|state| state.as_str()),
                tenant.map(TenantId::new_unchecked),
                limit,
            )
            .await?;
            say(format!(
                "{:<36}  {:<36}  {:<24}  {:<9}  {:>8}  run_at",
                "id", "tenant", "kind", "state", "attempts"
            ));
            for job in &jobs {
                say(format!(
                    "{:<36}  {:<36}  {:<24}  {:<9}  {:>4}/{:<3}  {}",
                    job.id,
                    job.tenant_id,
                    job.kind,
                    job.state,
                    job.attempts,
                    job.attempts_max,
                    timestamp(job.run_at)
                ));
            }
            say(format!("{} job(s)", jobs.len()));
            Ok(ExitCode::SUCCESS)
        }
        JobsCommand::Show { id } => match admin::show(owner, JobId::new_unchecked(id)).await? {
            Some(job) => {
                print_job(&job);
                Ok(ExitCode::SUCCESS)
            }
            None => {
                say(format!("no job {id}"));
                Ok(ExitCode::FAILURE)
            }
        },
        JobsCommand::Retry { id } => outcome(
            admin::retry(owner, JobId::new_unchecked(id)).await,
            id,
            "scheduled to run again now",
        ),
        JobsCommand::Cancel { id } => outcome(
            admin::cancel(owner, JobId::new_unchecked(id)).await,
            id,
            "cancelled",
        ),
    })
    .await
}

fn outcome(result: Result<(), AdminError>, id: uuid::Uuid, done: &str) -> anyhow::Result<ExitCode> {
    match result {
        Ok(()) => {
            say(format!("job {id} {done}"));
            Ok(ExitCode::SUCCESS)
        }
        Err(AdminError::Unexpected(err)) => Err(err.into()),
        Err(err) => {
            say(err);
            Ok(ExitCode::FAILURE)
        }
    }
}

fn timestamp(at: time::OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_else(|_| at.to_string())
}

fn print_job(job: &JobRow) {
    let optional =
        |at: Option<time::OffsetDateTime>| at.map(timestamp).unwrap_or_else(|| "-".to_owned());
    say(format!("id:           {}", job.id));
    say(format!("tenant:       {}", job.tenant_id));
    say(format!(
        "kind:         {} (arguments v{})",
        job.kind, job.args_version
    ));
    say(format!("arguments:    {}", job.args));
    say(format!(
        "queue:        {} (priority {})",
        job.queue, job.priority
    ));
    say(format!("state:        {}", job.state));
    say(format!(
        "attempts:     {} of {}",
        job.attempts, job.attempts_max
    ));
    say(format!("run at:       {}", timestamp(job.run_at)));
    say(format!(
        "lease:        {} (worker {}, fencing token {})",
        optional(job.lease_expires_at),
        job.worker_id.as_deref().unwrap_or("-"),
        job.fencing_token
    ));
    say(format!(
        "unique key:   {}",
        job.unique_key.as_deref().unwrap_or("-")
    ));
    say(format!(
        "last error:   {}",
        job.last_error.as_deref().unwrap_or("-")
    ));
    say(format!("created:      {}", timestamp(job.created_at)));
    say(format!("updated:      {}", timestamp(job.updated_at)));
    say(format!("finished:     {}", optional(job.finished_at)));
}
