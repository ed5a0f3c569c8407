//! Durable jobs through the real binary, run as operators run it: worker processes
//! killed with SIGKILL mid-job, a database that crashes and restarts under load,
//! `jobs probe` and `deadletters`.
//!
//! The work is `platform.probe` jobs: each records its run in `platform.job_probes`
//! in the transaction that marks it succeeded, and that table has no unique key, so a
//! job lost or run twice in effect shows up as zero or two rows.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use db::cluster::{Cluster, SUPERUSER};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::process::{Child, Command};

use crate::{Tenet, single_line};

/// Probe jobs per run: thousands, so kills land among many jobs in flight. Half work
/// for a while, each alone (a kill finds them mid-run); half work not at all and run
/// in batches, many to a transaction (a kill finds batches mid-commit).
const N_PROBES: i64 = 3000;
/// How long each probe of the first half works.
const PROBE_WORK_MS: &str = "50";
/// The worker processes' lease: a killed worker's jobs come back within seconds.
const LEASE_SECS: &str = "2";
/// Kills in the SIGKILL run, one every 300 ms while jobs are left: many, and a bound,
/// since each restart of a debug build costs CPU the rest of the suite waits for.
const N_KILLS_MAX: usize = 40;
/// How long a run may take before the test gives up.
const RUN_TIMEOUT: Duration = Duration::from_secs(240);

/// Starts `tenet serve --role worker`: a worker process, logging to `logs/worker-N.log`.
fn spawn_worker(mut command: Command, logs: &Path, n: usize) -> Child {
    let log = std::fs::File::create(logs.join(format!("worker-{n}.log"))).unwrap();
    command
        .args([
            "serve",
            "--role",
            "worker",
            "--workers",
            "8",
            "--job-lease-secs",
            LEASE_SECS,
        ])
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("starting a worker process")
}

/// Probe jobs not yet ended.
async fn n_unfinished(admin: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM platform.jobs
         WHERE kind = 'platform.probe' AND state NOT IN ('succeeded', 'dead', 'cancelled')",
    )
    .fetch_one(admin)
    .await
}

/// Waits until every probe job has ended, whatever the database is going through.
async fn wait_for_the_run(admin: &PgPool) {
    let started = Instant::now();
    loop {
        // A query may fail while the database restarts: ask again.
        if let Ok(0) = n_unfinished(admin).await {
            return;
        }
        assert!(
            started.elapsed() < RUN_TIMEOUT,
            "the run did not finish in {RUN_TIMEOUT:?}: {:?} probe job(s) left",
            n_unfinished(admin).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the run left, read as the superuser (past row-level security).
#[derive(Debug, PartialEq, Eq)]
struct RunReport {
    n_jobs: i64,
    n_succeeded: i64,
    /// Succeeded without their effect.
    n_lost: i64,
    /// More than one effect, or an effect without success.
    n_doubled: i64,
}

async fn report(admin: &PgPool) -> RunReport {
    let (n_jobs, n_succeeded, n_lost, n_doubled): (i64, i64, i64, i64) = sqlx::query_as(
        "WITH runs AS (
             SELECT j.state,
                    (SELECT count(*) FROM platform.job_probes p
                     WHERE p.tenant_id = j.tenant_id AND p.job_id = j.id) AS n
             FROM platform.jobs j WHERE j.kind = 'platform.probe'
         )
         SELECT count(*),
                count(*) FILTER (WHERE state = 'succeeded'),
                count(*) FILTER (WHERE state = 'succeeded' AND n = 0),
                count(*) FILTER (WHERE n > 1 OR (state <> 'succeeded' AND n > 0))
         FROM runs",
    )
    .fetch_one(admin)
    .await
    .unwrap();
    RunReport {
        n_jobs,
        n_succeeded,
        n_lost,
        n_doubled,
    }
}

/// Probe jobs whose lease expired under a worker that stopped: the kills landed mid-job.
async fn n_rescued(admin: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM platform.jobs
         WHERE kind = 'platform.probe' AND last_error LIKE 'lease expired%'",
    )
    .fetch_one(admin)
    .await
    .unwrap()
}

/// `tenet args...` on the embedded cluster under `home` (no `DATABASE_URL`): a cluster
/// of the test's own, which it may crash without cutting other tests.
pub(crate) fn embedded_command(home: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tenet"));
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("TENET_HOME", home)
        .env("TENET_LOG_FORMAT", "json")
        .current_dir(home);
    command
}

pub(crate) async fn create_tenant(run: impl AsyncFn(&[&str]) -> crate::Run) -> String {
    single_line(run(&["tenant", "create", "Crash Drill Clinic"]).await.ok()).to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_killed_mid_job_lose_nothing_and_double_nothing() {
    let tenet = Tenet::new().await;
    let tenant = create_tenant(async |args| tenet.run(args).await).await;
    let enqueued = tenet
        .run(&[
            "jobs",
            "probe",
            "--tenant",
            &tenant,
            "--count",
            &N_PROBES.to_string(),
            "--work-ms",
            PROBE_WORK_MS,
        ])
        .await;
    assert!(
        enqueued
            .ok()
            .contains(&format!("enqueued {N_PROBES} probe job(s)"))
    );
    let logs = tenet.home.path();
    let mut workers = vec![
        spawn_worker(tenet.command(&[]), logs, 0),
        spawn_worker(tenet.command(&[]), logs, 1),
    ];
    let mut n_spawned = 2;

    // Kill a worker with SIGKILL every 300 ms, alternately, and start a new one,
    // while jobs are left, up to N_KILLS_MAX times; count the kills that found the
    // victim holding jobs.
    let (mut n_kills, mut n_kills_mid_job) = (0, 0);
    while n_kills < N_KILLS_MAX && n_unfinished(&tenet.db.admin).await.unwrap() > N_PROBES / 10 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let victim = &mut workers[n_kills % 2];
        let pid = victim.id().expect("the worker is running");
        let held: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM platform.jobs WHERE state = 'running' AND worker_id LIKE '%:' || $1",
        )
        .bind(pid.to_string())
        .fetch_one(&tenet.db.admin)
        .await
        .unwrap();
        victim.start_kill().unwrap();
        victim.wait().await.unwrap();
        n_kills += 1;
        if held > 0 {
            n_kills_mid_job += 1;
        }
        *victim = spawn_worker(tenet.command(&[]), logs, n_spawned);
        n_spawned += 1;
    }
    wait_for_the_run(&tenet.db.admin).await;
    for worker in &mut workers {
        worker.start_kill().unwrap();
        worker.wait().await.unwrap();
    }

    assert_eq!(
        report(&tenet.db.admin).await,
        RunReport {
            n_jobs: N_PROBES,
            n_succeeded: N_PROBES,
            n_lost: 0,
            n_doubled: 0,
        }
    );
    assert!(
        n_kills_mid_job >= 3,
        "only {n_kills_mid_job} of {n_kills} kills found jobs in flight"
    );
    assert!(
        n_rescued(&tenet.db.admin).await > 0,
        "no job was rescued from a killed worker"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_ride_out_a_database_crash_and_restart_losing_and_doubling_nothing() {
    // A durable cluster of the test's own (an immediate stop of the shared test
    // cluster would cut every other test): the embedded one, under a home of its own.
    let home = tempfile::tempdir().unwrap();
    let command = |args: &[&str]| embedded_command(home.path(), args);
    let run = async |args: &[&str]| {
        let output = command(args).output().await.expect("running tenet");
        crate::Run::new(args, output)
    };
    run(&["db", "start"]).await.ok();
    run(&["migrate"]).await.ok();
    let tenant = create_tenant(run).await;
    for work_ms in [PROBE_WORK_MS, "0"] {
        run(&[
            "jobs",
            "probe",
            "--tenant",
            &tenant,
            "--count",
            &(N_PROBES / 2).to_string(),
            "--work-ms",
            work_ms,
        ])
        .await
        .ok();
    }
    let mut cluster = Cluster::at(home.path()).unwrap();
    let admin = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(cluster.connect_options(SUPERUSER, "tenet"))
        .await
        .unwrap();
    let mut workers = vec![
        spawn_worker(command(&[]), home.path(), 0),
        spawn_worker(command(&[]), home.path(), 1),
    ];

    // Crash the database once the run is under way, with jobs in flight.
    let started = Instant::now();
    while n_unfinished(&admin).await.unwrap() > N_PROBES * 3 / 4 {
        assert!(
            started.elapsed() < RUN_TIMEOUT,
            "the workers never got going"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.restart_immediate().await.unwrap();
    wait_for_the_run(&admin).await;
    for worker in &mut workers {
        worker.start_kill().unwrap();
        worker.wait().await.unwrap();
    }

    assert_eq!(
        report(&admin).await,
        RunReport {
            n_jobs: N_PROBES,
            n_succeeded: N_PROBES,
            n_lost: 0,
            n_doubled: 0,
        }
    );
    admin.close().await;
    run(&["db", "stop"]).await.ok();
}

#[tokio::test]
async fn jobs_probe_waits_for_its_probes_and_reports_each_ran_once() {
    let tenet = Tenet::new().await;
    let tenant = create_tenant(async |args| tenet.run(args).await).await;
    let mut worker = spawn_worker(tenet.command(&[]), tenet.home.path(), 0);
    let probe = tenet
        .run(&[
            "jobs", "probe", "--tenant", &tenant, "--count", "50", "--wait",
        ])
        .await;
    worker.start_kill().unwrap();
    worker.wait().await.unwrap();
    let out = probe.ok();
    assert!(out.contains("50 succeeded"), "{probe}");
    assert!(
        out.contains("0 succeeded without their effect, 0 with an extra effect"),
        "{probe}"
    );

    // With no worker running, --wait gives up and says why, non-zero.
    let stalled = tenet
        .run(&[
            "jobs",
            "probe",
            "--tenant",
            &tenant,
            "--wait",
            "--timeout-secs",
            "1",
        ])
        .await;
    stalled.failed();
    assert!(stalled.stderr.contains("are workers running"), "{stalled}");

    let unknown = tenet
        .run(&[
            "jobs",
            "probe",
            "--tenant",
            "00000000-0000-7000-8000-000000000000",
        ])
        .await;
    unknown.failed();
    assert!(unknown.stderr.contains("no active tenant"), "{unknown}");
}

#[tokio::test]
async fn a_dead_letter_is_listed_shown_discarded_and_retried_to_success() {
    let tenet = Tenet::new().await;
    let tenant = create_tenant(async |args| tenet.run(args).await).await;
    let enqueued = tenet
        .run(&["jobs", "probe", "--tenant", &tenant, "--count", "2"])
        .await;
    enqueued.ok();
    // The jobs died (what a vendor outage past every retry leaves).
    let mut job_ids: Vec<uuid::Uuid> = sqlx::query_scalar(
        "UPDATE platform.jobs SET state = 'dead', attempts = attempts_max, finished_at = now(),
             last_error = 'vendor answered 503 on every attempt'
         WHERE kind = 'platform.probe' RETURNING id",
    )
    .fetch_all(&tenet.db.admin)
    .await
    .unwrap();
    job_ids.sort();
    let (id, other) = (job_ids[0].to_string(), job_ids[1].to_string());

    let listed = tenet.run(&["deadletters", "list"]).await;
    assert!(listed.ok().contains(&id), "{listed}");
    assert!(listed.ok().contains("vendor answered 503"), "{listed}");
    assert!(listed.ok().contains("2 dead letter(s)"), "{listed}");
    let shown = tenet.run(&["deadletters", "show", &id]).await;
    assert!(shown.ok().contains("platform.probe"), "{shown}");

    tenet.run(&["deadletters", "discard", &id]).await.ok();
    let listed = tenet.run(&["deadletters", "list"]).await;
    assert!(listed.ok().contains("1 dead letter(s)"), "{listed}");
    assert!(!listed.ok().contains(&id), "{listed}");
    let again = tenet.run(&["deadletters", "discard", &id]).await;
    again.failed();
    assert!(
        again
            .stdout
            .contains("is not a dead letter: its job is discarded"),
        "{again}"
    );

    // Discarded, it is no dead letter any more: it is retried as the job it is. The
    // other is retried as a dead letter.
    tenet.run(&["deadletters", "retry", &id]).await.failed();
    tenet.run(&["jobs", "retry", &id]).await.ok();
    let retried = tenet.run(&["deadletters", "retry", &other]).await;
    assert!(retried.ok().contains("runs again now"), "{retried}");
    let mut worker = spawn_worker(tenet.command(&[]), tenet.home.path(), 0);
    let started = Instant::now();
    while n_unfinished(&tenet.db.admin).await.unwrap() > 0 {
        assert!(started.elapsed() < RUN_TIMEOUT, "the retried job never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    worker.start_kill().unwrap();
    worker.wait().await.unwrap();
    for id in [&id, &other] {
        let shown = tenet.run(&["jobs", "show", id]).await;
        assert!(shown.ok().contains("state:        succeeded"), "{shown}");
    }
}

/// A free port on 127.0.0.1 (free when asked; the server binds it right after).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `tenet serve` with `workers` on a free port; returns it and its metrics URL
/// once it answers.
pub(crate) async fn serve(tenet: &Tenet, workers: &str, n: usize) -> (Child, String) {
    let port = free_port();
    let log = std::fs::File::create(tenet.home.path().join(format!("serve-{n}.log"))).unwrap();
    let child = tenet
        .command(&[
            "serve",
            "--http",
            &format!("127.0.0.1:{port}"),
            "--workers",
            workers,
        ])
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while reqwest::get(format!("{base}/healthz")).await.is_err() {
        assert!(
            started.elapsed() < RUN_TIMEOUT,
            "tenet serve never answered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (child, format!("{base}/metrics"))
}

/// The value of the sample `name{labels}` in a metrics page.
pub(crate) fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test]
async fn metrics_show_queue_depth_and_age_and_runs_by_outcome() {
    let tenet = Tenet::new().await;
    let tenant = create_tenant(async |args| tenet.run(args).await).await;
    tenet
        .run(&["jobs", "probe", "--tenant", &tenant, "--count", "5"])
        .await
        .ok();

    // A node that runs no jobs samples the queue at start.
    let (mut idle, metrics_url) = serve(&tenet, "0", 0).await;
    let metrics = reqwest::get(&metrics_url)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    idle.start_kill().unwrap();
    idle.wait().await.unwrap();
    assert_eq!(
        sample(
            &metrics,
            r#"tenet_job_queue_depth{queue="default",state="scheduled"}"#
        ),
        Some(5.0),
        "{metrics}"
    );
    assert!(
        sample(
            &metrics,
            r#"tenet_job_queue_oldest_seconds{queue="default",state="scheduled"}"#
        )
        .is_some_and(|age| age >= 0.0),
        "{metrics}"
    );

    // A node that runs them counts their runs.
    let (mut busy, metrics_url) = serve(&tenet, "4", 1).await;
    let started = Instant::now();
    while n_unfinished(&tenet.db.admin).await.unwrap() > 0 {
        assert!(started.elapsed() < RUN_TIMEOUT, "the probes never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = reqwest::get(&metrics_url)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    busy.start_kill().unwrap();
    busy.wait().await.unwrap();
    assert_eq!(
        sample(&metrics, r#"tenet_job_runs_total{outcome="succeeded"}"#),
        Some(5.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, r#"tenet_job_runs_total{outcome="dead"}"#),
        Some(0.0),
        "{metrics}"
    );
}
