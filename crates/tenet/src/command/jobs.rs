//! `tenet jobs list|show|retry|cancel|probe`: operators' view of durable jobs, across
//! tenants, through the owner role's `job_dispatch` policy.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use db::TenantTx;
use indicatif::{ProgressBar, ProgressStyle};
use kernel::{JobId, TenantId};
use platform::jobs::admin::{self, AdminError, JobRow};
use platform::jobs::{self, JobSpec, Probe, ProbeArgs};
use sqlx::PgPool;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::cli::{Global, JobsCommand};
use crate::output::{say, tell};

/// Probe jobs enqueued per transaction.
const PROBE_CHUNK: u32 = 1000;

pub async fn run(global: &Global, command: JobsCommand) -> anyhow::Result<ExitCode> {
    super::with_pools(global, async |owner, app| match command {
        JobsCommand::List {
            state,
            tenant,
            limit,
        } => {
            let jobs = admin::list(
                &mut *owner.acquire().await?,
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
        JobsCommand::Show { id } => {
            match admin::show(&mut *owner.acquire().await?, JobId::new_unchecked(id)).await? {
                Some(job) => {
                    print_job(&job);
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    say(format!("no job {id}"));
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        JobsCommand::Retry { id } => outcome(
            admin::retry(&mut *owner.acquire().await?, JobId::new_unchecked(id)).await,
            id,
            "scheduled to run again now",
        ),
        JobsCommand::Cancel { id } => outcome(
            admin::cancel(&mut *owner.acquire().await?, JobId::new_unchecked(id)).await,
            id,
            "cancelled",
        ),
        JobsCommand::Probe {
            tenant,
            count,
            work_ms,
            wait,
            timeout_secs,
        } => {
            let tenant_id = TenantId::new_unchecked(tenant);
            let job_ids = enqueue_probes(app, tenant_id, count, work_ms).await?;
            say(format!(
                "enqueued {} probe job(s) for tenant {tenant}",
                job_ids.len()
            ));
            if !wait {
                return Ok(ExitCode::SUCCESS);
            }
            follow_probes(
                owner,
                tenant_id,
                &job_ids,
                Duration::from_secs(timeout_secs),
            )
            .await
        }
    })
    .await
}

/// Enqueues `count` probes, a chunk per transaction, refusing an unknown tenant.
async fn enqueue_probes(
    app: &PgPool,
    tenant_id: TenantId,
    count: u32,
    work_ms: u32,
) -> anyhow::Result<Vec<Uuid>> {
    // Refuse an unknown tenant before enqueuing anything.
    super::tenant_tx(app, tenant_id.into_uuid())
        .await?
        .rollback()
        .await?;
    let bar = progress(u64::from(count), "enqueued");
    let mut job_ids = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    let mut left = count;
    while left > 0 {
        let chunk = left.min(PROBE_CHUNK);
        let mut tx = TenantTx::begin_as(app, tenant_id, "operator", None).await?;
        for _ in 0..chunk {
            let enqueued =
                jobs::enqueue(&mut tx, JobSpec::<Probe>::new(ProbeArgs { work_ms })).await?;
            job_ids.push(*enqueued.job_id().as_uuid());
        }
        tx.commit().await?;
        left -= chunk;
        bar.inc(u64::from(chunk));
    }
    bar.finish_and_clear();
    Ok(job_ids)
}

/// Follows probes until every one has ended, then checks each succeeded exactly once
/// in effect: one row in `platform.job_probes` per job.
async fn follow_probes(
    owner: &PgPool,
    tenant_id: TenantId,
    job_ids: &[Uuid],
    timeout: Duration,
) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let bar = progress(job_ids.len() as u64, "ended");
    let states = loop {
        let states: Vec<(String, i64)> = sqlx::query_as(
            "SELECT state::text, count(*) FROM platform.jobs WHERE id = ANY ($1) GROUP BY state ORDER BY state",
        )
        .bind(job_ids)
        .fetch_all(owner)
        .await?;
        let ended: i64 = states
            .iter()
            .filter(|(state, _)| matches!(state.as_str(), "succeeded" | "dead" | "cancelled"))
            .map(|(_, n)| n)
            .sum();
        bar.set_position(u64::try_from(ended).unwrap_or(0));
        if usize::try_from(ended).is_ok_and(|ended| ended == job_ids.len()) {
            break states;
        }
        if started.elapsed() > timeout {
            bar.finish_and_clear();
            tell(format!(
                "gave up after {} s: {} of {} probe(s) ended ({}); are workers running (`tenet serve --workers N`)?",
                timeout.as_secs(),
                ended,
                job_ids.len(),
                summary(&states)
            ));
            return Ok(ExitCode::FAILURE);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    bar.finish_and_clear();
    let mut tx = TenantTx::begin_as(owner, tenant_id, "operator", None).await?;
    let (lost, doubled): (i64, i64) = sqlx::query_as(
        "WITH runs AS (
             SELECT j.state,
                    (SELECT count(*) FROM platform.job_probes p
                     WHERE p.tenant_id = j.tenant_id AND p.job_id = j.id) AS n
             FROM platform.jobs j
             WHERE j.tenant_id = $2 AND j.id = ANY ($1)
         )
         SELECT count(*) FILTER (WHERE state = 'succeeded' AND n = 0),
                count(*) FILTER (WHERE n > 1 OR (state <> 'succeeded' AND n > 0))
         FROM runs",
    )
    .bind(job_ids)
    .bind(tenant_id.as_uuid())
    .fetch_one(&mut *tx)
    .await
    .context("counting probe runs")?;
    tx.rollback().await?;
    let succeeded = states
        .iter()
        .find(|(state, _)| state == "succeeded")
        .map_or(0, |(_, n)| *n);
    say(format!(
        "{} probe(s) in {:.1} s: {}; {lost} succeeded without their effect, {doubled} with an extra effect",
        job_ids.len(),
        started.elapsed().as_secs_f64(),
        summary(&states)
    ));
    Ok(
        if usize::try_from(succeeded).is_ok_and(|n| n == job_ids.len()) && lost == 0 && doubled == 0
        {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        },
    )
}

fn summary(states: &[(String, i64)]) -> String {
    states
        .iter()
        .map(|(state, n)| format!("{n} {state}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn progress(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "[{{bar:30}}] {{pos}}/{{len}} {what} ({{per_sec}})"
        ))
        .expect("BUG: progress template")
        .progress_chars("=> "),
    );
    bar
}

pub(super) fn outcome(
    result: Result<(), AdminError>,
    id: uuid::Uuid,
    done: &str,
) -> anyhow::Result<ExitCode> {
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

pub(super) fn timestamp(at: time::OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_else(|_| at.to_string())
}

pub(super) fn print_job(job: &JobRow) {
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
    if let Some(discarded_at) = job.discarded_at {
        say(format!("discarded:    {}", timestamp(discarded_at)));
    }
}
