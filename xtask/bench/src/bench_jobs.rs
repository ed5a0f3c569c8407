//! `cargo xtask bench jobs`: enqueue + run + complete of N trivial jobs
//! (`platform.noop`, spread round-robin over T tenants) by 2 worker processes
//! (`tenet serve --role worker --workers W`), on the peers' PostgreSQL
//! (`../shared/peers/pg.sh start`, fsync and synchronous_commit on), beside
//! graphile-worker on the same cluster with its default and its tuned perf-test
//! settings (`../shared/peers/jobs/graphile/run.sh`), and Celery with Redis
//! (`../shared/peers/jobs/celery/run.sh`: tasks enqueued one by one, end to end).
//!
//! Like the peer, the jobs are bulk-enqueued by one SQL statement; the drain is timed
//! from the first completion to the last, in the database's clock.
//! Statistics are deliberately left stale after the bulk enqueue (the peer script
//! has to `ANALYZE`; our claim must not care).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::bench::println_line;
use crate::{release_bin, root};

const DATABASE: &str = "tenet_jobs_bench";
/// How long the drain may take before the run is declared stuck.
const DRAIN_SECS_MAX: u64 = 600;

/// The peer scripts, beside the workspace.
pub(crate) fn peers_dir() -> PathBuf {
    root().join("../shared/peers")
}

/// PostgreSQL's own `psql`, not Debian's `/usr/bin/psql`: that one is a Perl wrapper
/// whose start-up costs tens of milliseconds of CPU, taken from the drain a
/// benchmark's polling measures (seen at 8 % of the machine while polling every
/// 250 ms).
fn psql_bin() -> PathBuf {
    std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major: u32 = entry.file_name().to_str()?.parse().ok()?;
            let psql = entry.path().join("bin/psql");
            psql.is_file().then_some((major, psql))
        })
        .max()
        .map_or_else(|| PathBuf::from("psql"), |(_, psql)| psql)
}

/// The port of the peers' PostgreSQL (`pg.sh` reads the same variable).
pub(crate) fn pg_port() -> String {
    std::env::var("PGPORT").unwrap_or_else(|_| "55432".to_owned())
}

pub(crate) fn psql(user: &str, database: &str, sql: &str) -> anyhow::Result<String> {
    let out = Command::new(psql_bin())
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &pg_port(),
            "-U",
            user,
            "-d",
            database,
        ])
        .args(["-Atq", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .context("running psql (is ../shared/peers/pg.sh started?)")?;
    if !out.status.success() {
        bail!("psql failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

struct Workers(Vec<Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            // SIGTERM: the worker stops claiming and finishes what it holds.
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }
}

/// Runs ours, then the peers, for each N, and prints each with the ratios.
pub fn run(
    ns: &[u64],
    n_processes: usize,
    workers: u16,
    tenants: u64,
    peers: bool,
) -> anyhow::Result<()> {
    for &n_jobs in ns {
        let ours = ours(n_jobs, n_processes, workers, tenants)?;
        println_line(&format!(
            "tenet jobs: N={n_jobs} tenants={tenants} processes={n_processes} workers={workers} jobs_per_s={ours:.0}"
        ));
        if !peers {
            continue;
        }
        for mode in ["default", "perf"] {
            match peer(
                "jobs/graphile/run.sh",
                &[("N", n_jobs.to_string()), ("MODE", mode.to_owned())],
                "graphile-worker",
                "jobs_per_s=",
            ) {
                Ok(theirs) => println_line(&format!(
                    "graphile-worker mode={mode}: N={n_jobs} jobs_per_s={theirs:.0}  tenet/graphile = {:.2}x",
                    ours / theirs
                )),
                Err(err) => println_line(&format!(
                    "graphile-worker mode={mode}: not measured ({err:#})"
                )),
            }
        }
        match peer(
            "jobs/celery/run.sh",
            &[("N", n_jobs.to_string())],
            "celery",
            "tasks_per_s=",
        ) {
            Ok(theirs) => println_line(&format!(
                "celery+redis: N={n_jobs} tasks_per_s={theirs:.0}  tenet/celery = {:.1}x",
                ours / theirs
            )),
            Err(err) => println_line(&format!("celery+redis: not measured ({err:#})")),
        }
    }
    Ok(())
}

/// A fresh, migrated Tenet database on the peers' PostgreSQL, and what a `tenet`
/// process needs in its environment to use it.
pub(crate) struct TenetDatabase {
    url: String,
    log_filter: String,
    home: PathBuf,
    key_file: PathBuf,
}

impl TenetDatabase {
    /// Drops and re-creates `name`, then migrates it with the release `tenet`.
    pub(crate) fn fresh(name: &str) -> anyhow::Result<Self> {
        // Roles are cluster-wide; the database is made fresh for every run.
        psql(
            "postgres",
            "postgres",
            "DO $$ BEGIN
               IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tenet_owner') THEN
                 CREATE ROLE tenet_owner LOGIN NOSUPERUSER NOBYPASSRLS; END IF;
               IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tenet_app') THEN
                 CREATE ROLE tenet_app LOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT; END IF;
             END $$",
        )?;
        psql(
            "postgres",
            "postgres",
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        )?;
        psql(
            "postgres",
            "postgres",
            &format!("CREATE DATABASE {name} OWNER tenet_owner"),
        )?;
        let home = std::env::temp_dir().join(name.replace('_', "-"));
        std::fs::create_dir_all(&home)?;
        let key_file = home.join("master.key");
        std::fs::write(&key_file, "00".repeat(32))?;
        let database = Self {
            url: format!("postgres://tenet_owner@127.0.0.1:{}/{name}", pg_port()),
            // Warnings and errors only, unless asked for more: a benchmark's output is
            // its figures.
            log_filter: std::env::var("TENET_LOG").unwrap_or_else(|_| "warn".to_owned()),
            home,
            key_file,
        };
        let status = Command::new(release_bin("tenet"))
            .arg("migrate")
            .envs(database.env())
            .stdout(Stdio::null())
            .status()
            .context("running tenet migrate (build with `cargo build --release -p tenet`)")?;
        if !status.success() {
            bail!("tenet migrate failed");
        }
        Ok(database)
    }

    /// The environment of a `tenet` process on this database.
    pub(crate) fn env(&self) -> [(&'static str, &str); 5] {
        [
            ("DATABASE_URL", self.url.as_str()),
            ("TENET_HOME", self.home.to_str().expect("BUG: UTF-8 path")),
            (
                "TENET_MASTER_KEY_FILE",
                self.key_file.to_str().expect("BUG: UTF-8 path"),
            ),
            ("TENET_LOG_FORMAT", "json"),
            ("TENET_LOG", self.log_filter.as_str()),
        ]
    }
}

fn ours(n_jobs: u64, n_processes: usize, workers: u16, tenants: u64) -> anyhow::Result<f64> {
    let database = TenetDatabase::fresh(DATABASE)?;
    let env = database.env();
    let tenet = release_bin("tenet");
    // One statement, like the peer's bulk `add_job`; statistics stay those of the
    // empty table.
    psql(
        "tenet_owner",
        DATABASE,
        &format!(
            "INSERT INTO platform.jobs (tenant_id, id, kind, args_version, args, attempts_max)
             SELECT md5('tenant ' || (i % {tenants}))::uuid, gen_random_uuid(), 'platform.noop', 1,
                    json_build_object('id', i), 10
             FROM generate_series(1, {n_jobs}) i"
        ),
    )?;
    let mut children = Workers(Vec::new());
    for _ in 0..n_processes {
        children.0.push(
            Command::new(&tenet)
                .args(["serve", "--role", "worker", "--checkpoint-secs", "0"])
                .args(["--workers", &workers.to_string()])
                .envs(env)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting a worker process")?,
        );
    }
    drain(&database.url, n_jobs)?;
    // From the first completion to the last, in the database's clock: process
    // start-up is left out, as the peer script leaves it out.
    let secs: f64 = psql(
        "tenet_owner",
        DATABASE,
        "SELECT extract(epoch FROM max(finished_at) - min(finished_at)) FROM platform.jobs",
    )?
    .parse()?;
    // How many of the row updates (a claim and a completion per job) wrote no index
    // entry: the statistics reach the view within a second or so of the last update.
    std::thread::sleep(Duration::from_millis(1500));
    let updates = psql(
        "tenet_owner",
        DATABASE,
        "SELECT n_tup_upd || ' ' || n_tup_hot_upd FROM pg_stat_user_tables
         WHERE relid = 'platform.jobs'::regclass",
    )?;
    if let Some((all, hot)) = updates.split_once(' ') {
        let (all, hot): (f64, f64) = (all.parse()?, hot.parse()?);
        println_line(&format!(
            "tenet jobs: {all:.0} row updates, {hot:.0} heap-only ({:.0} %)",
            100.0 * hot / all.max(1.0)
        ));
    }
    drop(children);
    Ok(n_jobs as f64 / secs)
}

/// Waits until none of the jobs is runnable or running, then checks that every one
/// succeeded. One connection for the whole wait, and a question the runnable index and
/// the leases answer: a fresh `psql` every poll, counting through the table, took ~15 %
/// of a core from the drain it measured (a backend forked each time, and a scan of
/// every row version).
fn drain(url: &str, n_jobs: u64) -> anyhow::Result<()> {
    use sqlx::{Connection, Executor};
    const PENDING: &str = "SELECT EXISTS (SELECT 1 FROM platform.jobs WHERE runnable)
         OR EXISTS (SELECT 1 FROM platform.job_leases l
                    CROSS JOIN LATERAL unnest(l.job_ids) AS held(id)
                    JOIN platform.jobs j
                      ON j.tenant_id = l.tenant_id AND j.id = held.id AND j.lease_id = l.id)";
    let started = Instant::now();
    tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(async {
            let mut conn = sqlx::PgConnection::connect(url).await?;
            // Statistics are stale on purpose; the question must not become a scan.
            conn.execute("SET enable_seqscan = off; SET enable_bitmapscan = off")
                .await?;
            loop {
                let pending: bool = sqlx::query_scalar(PENDING).fetch_one(&mut conn).await?;
                if !pending {
                    break;
                }
                if started.elapsed() > Duration::from_secs(DRAIN_SECS_MAX) {
                    bail!("jobs still pending after {DRAIN_SECS_MAX} s");
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            let done: i64 =
                sqlx::query_scalar("SELECT count(*) FROM platform.jobs WHERE state = 'succeeded'")
                    .fetch_one(&mut conn)
                    .await?;
            if u64::try_from(done)? != n_jobs {
                bail!("only {done} of {n_jobs} jobs succeeded");
            }
            Ok(())
        })
    })
}

/// Runs a peer script and reads its figure: the `key` field of its line starting with
/// `prefix`.
fn peer(script: &str, env: &[(&str, String)], prefix: &str, key: &str) -> anyhow::Result<f64> {
    let out = Command::new("bash")
        .arg(peers_dir().join(script))
        .envs(env.iter().map(|(name, value)| (name, value)))
        .output()
        .with_context(|| format!("running {script}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|line| line.starts_with(prefix))
        .with_context(|| format!("no result line: {}", String::from_utf8_lossy(&out.stderr)))?;
    line.split_whitespace()
        .find_map(|field| field.strip_prefix(key))
        .with_context(|| format!("no {key} in the peer's output"))?
        .parse()
        .with_context(|| format!("{key} is not a number"))
}
