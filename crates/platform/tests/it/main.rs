//! Durable jobs on a real PostgreSQL: enqueue in the caller's transaction, completion
//! in the work's transaction, retries, leases and fencing, unique keys, fairness,
//! concurrency and row-level security in workers. The outbox relay's tests are in
//! [`relay`].

mod relay;

mod sagas;
mod schedules;

use std::sync::Arc;
use std::time::Duration;

use db::TenantTx;
use db::testing::TestDb;
use kernel::{JobId, TenantId};
use platform::jobs::worker::{CLAIM_PLANNER_SETTINGS, Outcome, Worker, WorkerConfig};
use platform::jobs::{self, Enqueued, JobContext, JobError, JobKind, JobSpec, Registry, admin};
use serde::{Deserialize, Serialize};
use sqlx::{Executor, PgPool};
use tokio::sync::watch;
use uuid::Uuid;

/// Writes a row keyed by its job id into `public.effects`; optionally fails after
/// writing it on its first attempt.
struct Effect;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct EffectArgs {
    fail_first: bool,
    sleep_ms: u64,
}

impl JobKind for Effect {
    const NAME: &'static str = "test.effect";
    const VERSION: u32 = 1;
    type Args = EffectArgs;

    async fn run(
        &self,
        ctx: &JobContext,
        tx: &mut TenantTx,
        args: EffectArgs,
    ) -> Result<(), JobError> {
        if args.sleep_ms > 0 {
            tokio::time::sleep(Duration::from_millis(args.sleep_ms)).await;
        }
        sqlx::query("INSERT INTO public.effects (tenant_id, job_id) VALUES ($1, $2)")
            .bind(ctx.tenant_id.as_uuid())
            .bind(ctx.job_id.as_uuid())
            .execute(&mut **tx)
            .await?;
        if args.fail_first && ctx.attempt == 1 {
            return Err(JobError::Retry("failed after its effect".to_owned()));
        }
        Ok(())
    }
}

/// Always fails.
struct Poison;

impl JobKind for Poison {
    const NAME: &'static str = "test.poison";
    const VERSION: u32 = 1;
    type Args = ();

    async fn run(&self, ctx: &JobContext, _tx: &mut TenantTx, _args: ()) -> Result<(), JobError> {
        Err(JobError::Retry(format!("poison, attempt {}", ctx.attempt)))
    }
}

/// Looks for another tenant's effect row and job; fails if it sees either.
struct Snoop;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SnoopArgs {
    other_tenant_id: Uuid,
    other_job_id: Uuid,
}

impl JobKind for Snoop {
    const NAME: &'static str = "test.snoop";
    const VERSION: u32 = 1;
    type Args = SnoopArgs;

    async fn run(
        &self,
        ctx: &JobContext,
        tx: &mut TenantTx,
        args: SnoopArgs,
    ) -> Result<(), JobError> {
        let n_effects: i64 =
            sqlx::query_scalar("SELECT count(*) FROM public.effects WHERE tenant_id = $1")
                .bind(args.other_tenant_id)
                .fetch_one(&mut **tx)
                .await?;
        let n_jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM platform.jobs WHERE id = $1")
            .bind(args.other_job_id)
            .fetch_one(&mut **tx)
            .await?;
        let n_updated = sqlx::query("UPDATE platform.jobs SET priority = 9 WHERE id = $1")
            .bind(args.other_job_id)
            .execute(&mut **tx)
            .await?
            .rows_affected();
        // Leases: the other tenant's by its tenant id, by its job, or any lease of a
        // tenant other than ours; and our own, which this very run is under.
        let (n_other_leases, n_own_leases): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE tenant_id = $1 OR $2 = ANY(job_ids) OR tenant_id <> $3),
                    count(*) FILTER (WHERE tenant_id = $3 AND $4 = ANY(job_ids))
             FROM platform.job_leases",
        )
        .bind(args.other_tenant_id)
        .bind(args.other_job_id)
        .bind(ctx.tenant_id.as_uuid())
        .bind(ctx.job_id.as_uuid())
        .fetch_one(&mut **tx)
        .await?;
        if n_own_leases != 1 {
            return Err(JobError::Fail(format!(
                "saw {n_own_leases} leases of its own run"
            )));
        }
        if n_effects + n_jobs + n_other_leases + i64::try_from(n_updated).unwrap() > 0 {
            return Err(JobError::Fail("saw another tenant's rows".to_owned()));
        }
        sqlx::query("INSERT INTO public.effects (tenant_id, job_id) VALUES ($1, $2)")
            .bind(ctx.tenant_id.as_uuid())
            .bind(ctx.job_id.as_uuid())
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

/// Writes its effect, then hangs past its kind's timeout.
struct Hang;

impl JobKind for Hang {
    const NAME: &'static str = "test.hang";
    const VERSION: u32 = 1;
    const TIMEOUT: Duration = Duration::from_millis(200);
    type Args = ();

    async fn run(&self, ctx: &JobContext, tx: &mut TenantTx, _args: ()) -> Result<(), JobError> {
        sqlx::query("INSERT INTO public.effects (tenant_id, job_id) VALUES ($1, $2)")
            .bind(ctx.tenant_id.as_uuid())
            .bind(ctx.job_id.as_uuid())
            .execute(&mut **tx)
            .await?;
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok(())
    }
}

/// Like [`Effect`], but its runs may share a transaction.
struct BatchEffect;

impl JobKind for BatchEffect {
    const NAME: &'static str = "test.batch_effect";
    const VERSION: u32 = 1;
    const BATCHABLE: bool = true;
    type Args = EffectArgs;

    async fn run(
        &self,
        ctx: &JobContext,
        tx: &mut TenantTx,
        args: EffectArgs,
    ) -> Result<(), JobError> {
        Effect.run(ctx, tx, args).await
    }
}

/// Hangs inside the database, past its kind's timeout.
struct SqlHang;

impl JobKind for SqlHang {
    const NAME: &'static str = "test.sql_hang";
    const VERSION: u32 = 1;
    const TIMEOUT: Duration = Duration::from_millis(300);
    type Args = ();

    async fn run(&self, _ctx: &JobContext, tx: &mut TenantTx, _args: ()) -> Result<(), JobError> {
        sqlx::query("SELECT pg_sleep(30)")
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

fn registry() -> Registry {
    Registry::new()
        .register(SqlHang)
        .register(BatchEffect)
        .register(Effect)
        .register(Poison)
        .register(Snoop)
        .register(Hang)
}

async fn setup() -> TestDb {
    let db = TestDb::migrated(&schema::migrator()).await;
    // A tenant table of the test's own, under the same rules as ours. No key on
    // purpose: a job that ran twice in effect shows up as two rows.
    db.admin
        .execute(
            "CREATE TABLE public.effects (tenant_id uuid NOT NULL, job_id uuid NOT NULL);
             ALTER TABLE public.effects ENABLE ROW LEVEL SECURITY;
             ALTER TABLE public.effects FORCE ROW LEVEL SECURITY;
             CREATE POLICY tenant_isolation ON public.effects
                 USING (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid)
                 WITH CHECK (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid);
             GRANT SELECT, INSERT ON public.effects TO tenet_app;",
        )
        .await
        .unwrap();
    db
}

fn config(name: &str) -> WorkerConfig {
    let mut config = WorkerConfig::new(name);
    config.backoff_base = Duration::ZERO;
    config.backoff_max = Duration::ZERO;
    config.poll_interval = Duration::from_millis(20);
    config.rescue_interval = Duration::from_millis(100);
    config
}

fn worker(db: &TestDb, config: WorkerConfig) -> Worker {
    Worker::new(db.owner.clone(), db.app.clone(), registry(), config)
}

async fn enqueue<K: JobKind>(db: &TestDb, tenant_id: TenantId, spec: JobSpec<K>) -> JobId {
    let mut tx = TenantTx::begin_as(&db.app, tenant_id, "system", None)
        .await
        .unwrap();
    let enqueued = jobs::enqueue(&mut tx, spec).await.unwrap();
    tx.commit().await.unwrap();
    enqueued.job_id()
}

fn effect(fail_first: bool) -> JobSpec<Effect> {
    JobSpec::new(EffectArgs {
        fail_first,
        sleep_ms: 0,
    })
}

/// A [`Snoop`] for `other_job` of `other_tenant`.
fn snoop(other_tenant: TenantId, other_job: JobId) -> JobSpec<Snoop> {
    JobSpec::new(SnoopArgs {
        other_tenant_id: *other_tenant.as_uuid(),
        other_job_id: *other_job.as_uuid(),
    })
}

/// An [`Effect`] that takes `sleep_ms` before writing its row.
fn slow_effect(sleep_ms: u64) -> JobSpec<Effect> {
    JobSpec::new(EffectArgs {
        fail_first: false,
        sleep_ms,
    })
}

/// Runs one job on `worker` in a task of its own.
fn run_one_in_background(worker: &Arc<Worker>) -> tokio::task::JoinHandle<Option<Outcome>> {
    let worker = worker.clone();
    tokio::spawn(async move { worker.try_run_one().await.unwrap() })
}

async fn n_effects(db: &TestDb, job_id: JobId) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM public.effects WHERE job_id = $1")
        .bind(job_id.as_uuid())
        .fetch_one(&db.admin)
        .await
        .unwrap()
}

async fn job(db: &TestDb, job_id: JobId) -> admin::JobRow {
    admin::show(&mut db.owner.acquire().await.unwrap(), job_id)
        .await
        .unwrap()
        .expect("the job exists")
}

async fn expire_lease(admin: &PgPool, job_id: JobId) {
    sqlx::query(
        "UPDATE platform.job_leases SET expires_at = now() - interval '1 second'
         WHERE (tenant_id, id) = (SELECT tenant_id, lease_id FROM platform.jobs WHERE id = $1)",
    )
    .bind(job_id.as_uuid())
    .execute(admin)
    .await
    .unwrap();
}

#[tokio::test]
async fn a_job_enqueued_in_a_rolled_back_transaction_does_not_exist() {
    let db = setup().await;
    let mut tx = TenantTx::begin_as(&db.app, TenantId::generate(), "system", None)
        .await
        .unwrap();
    let job_id = jobs::enqueue(&mut tx, effect(false))
        .await
        .unwrap()
        .job_id();
    tx.rollback().await.unwrap();

    assert!(
        admin::show(&mut db.owner.acquire().await.unwrap(), job_id)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(worker(&db, config("w")).try_run_one().await.unwrap(), None);
}

#[tokio::test]
async fn a_jobs_effect_and_its_success_commit_together() {
    let db = setup().await;
    let mut config = config("w");
    config.backoff_base = Duration::from_secs(60);
    config.backoff_max = Duration::from_secs(60);
    let worker = worker(&db, config);
    let job_id = enqueue(&db, TenantId::generate(), effect(true)).await;

    // The first run writes its effect, then fails: the effect rolls back with it.
    assert_eq!(
        worker.try_run_one().await.unwrap(),
        Some(Outcome::Retrying(job_id))
    );
    assert_eq!(n_effects(&db, job_id).await, 0);
    let failed = job(&db, job_id).await;
    assert_eq!(failed.state, "retrying");
    assert_eq!(failed.attempts, 1);
    assert_eq!(
        failed.last_error.as_deref(),
        Some("failed after its effect")
    );
    // The backoff is stored in the database: half of 60 s fixed, half jittered.
    let delay_secs = (failed.run_at - failed.updated_at).as_seconds_f64();
    assert!((29.0..=61.0).contains(&delay_secs), "{delay_secs}");
    assert_eq!(
        worker.try_run_one().await.unwrap(),
        None,
        "not before its run_at"
    );

    sqlx::query("UPDATE platform.jobs SET run_at = now() WHERE id = $1")
        .bind(job_id.as_uuid())
        .execute(&db.admin)
        .await
        .unwrap();
    assert_eq!(
        worker.try_run_one().await.unwrap(),
        Some(Outcome::Succeeded(job_id))
    );
    assert_eq!(n_effects(&db, job_id).await, 1);
    let done = job(&db, job_id).await;
    assert_eq!((done.state.as_str(), done.attempts), ("succeeded", 2));
    assert!(done.finished_at.is_some() && done.lease_expires_at.is_none());
}

#[tokio::test]
async fn a_poison_job_is_dead_after_its_attempts_and_never_blocks_the_jobs_behind_it() {
    let db = setup().await;
    let worker = worker(&db, config("w"));
    let tenant_id = TenantId::generate();
    // First in line (highest priority, earliest).
    let poison = enqueue(
        &db,
        tenant_id,
        JobSpec::<Poison>::new(()).priority(-1).attempts_max(3),
    )
    .await;
    let mut good = Vec::new();
    for _ in 0..5 {
        good.push(enqueue(&db, tenant_id, effect(false)).await);
    }

    let mut outcomes = Vec::new();
    while let Some(outcome) = worker.try_run_one().await.unwrap() {
        outcomes.push(outcome);
        assert!(outcomes.len() <= 8, "{outcomes:?}");
    }
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Succeeded(_)))
            .count(),
        5,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == Outcome::Dead(poison))
            .count(),
        1
    );
    let dead = job(&db, poison).await;
    assert_eq!((dead.state.as_str(), dead.attempts), ("dead", 3));
    assert_eq!(dead.last_error.as_deref(), Some("poison, attempt 3"));
    for job_id in good {
        assert_eq!(job(&db, job_id).await.state, "succeeded");
        assert_eq!(n_effects(&db, job_id).await, 1);
    }
}

#[tokio::test]
async fn a_worker_that_lost_its_lease_cannot_complete_and_the_rescuer_runs_the_job_once() {
    let db = setup().await;
    let paused = worker(&db, config("paused"));
    let rescuer = worker(&db, config("rescuer"));
    let job_id = enqueue(&db, TenantId::generate(), effect(false)).await;

    let claimed = paused.claim(1).await.unwrap().pop().unwrap();
    assert_eq!(claimed.job_id, job_id);
    // The paused worker's lease runs out; a live worker rescues and runs the job.
    expire_lease(&db.admin, job_id).await;
    assert_eq!(
        rescuer.try_run_one().await.unwrap(),
        Some(Outcome::Succeeded(job_id))
    );
    // The paused worker wakes up and does its work: it cannot complete.
    assert_eq!(
        paused.run_claimed(claimed).await.unwrap(),
        Outcome::LeaseLost(job_id)
    );

    assert_eq!(n_effects(&db, job_id).await, 1);
    let done = job(&db, job_id).await;
    assert_eq!(
        (done.state.as_str(), done.attempts, done.fencing_token),
        ("succeeded", 2, 3)
    );
    assert_eq!(done.worker_id.as_deref(), Some("rescuer"));
}

#[tokio::test]
async fn an_expired_lease_cannot_complete_even_before_anyone_rescues_it() {
    let db = setup().await;
    let worker = worker(&db, config("w"));
    let job_id = enqueue(&db, TenantId::generate(), effect(false)).await;
    let claimed = worker.claim(1).await.unwrap().pop().unwrap();
    expire_lease(&db.admin, job_id).await;

    assert_eq!(
        worker.run_claimed(claimed).await.unwrap(),
        Outcome::LeaseLost(job_id)
    );
    assert_eq!(n_effects(&db, job_id).await, 0);
    rescue_and_run_once(&db, &worker, job_id).await;
}

/// The rescue takes `job_id` back, and the job then runs, once in effect.
async fn rescue_and_run_once(db: &TestDb, worker: &Worker, job_id: JobId) {
    assert_eq!(worker.rescue_expired().await.unwrap(), 1);
    assert_eq!(
        worker.try_run_one().await.unwrap(),
        Some(Outcome::Succeeded(job_id))
    );
    assert_eq!(n_effects(db, job_id).await, 1);
}

#[tokio::test]
async fn a_job_that_keeps_killing_its_worker_is_dead_after_its_attempts() {
    let db = setup().await;
    let worker = worker(&db, config("w"));
    let job_id = enqueue(&db, TenantId::generate(), effect(false).attempts_max(2)).await;
    for _ in 0..2 {
        // Claimed, then the worker "dies": its lease runs out.
        assert_eq!(worker.claim(1).await.unwrap().len(), 1);
        expire_lease(&db.admin, job_id).await;
        assert_eq!(worker.rescue_expired().await.unwrap(), 1);
    }
    let dead = job(&db, job_id).await;
    assert_eq!((dead.state.as_str(), dead.attempts), ("dead", 2));
    assert!(
        dead.last_error
            .unwrap()
            .starts_with("lease expired: worker w")
    );
    assert_eq!(worker.try_run_one().await.unwrap(), None);
}

#[tokio::test]
async fn a_second_pending_job_with_the_same_unique_key_is_merged_into_the_first() {
    let db = setup().await;
    let tenant_id = TenantId::generate();
    let other_tenant_id = TenantId::generate();
    let first = enqueue(&db, tenant_id, effect(false).unique_key("reminder:42")).await;

    let mut tx = TenantTx::begin_as(&db.app, tenant_id, "system", None)
        .await
        .unwrap();
    let again = jobs::enqueue(&mut tx, effect(false).unique_key("reminder:42"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(again, Enqueued::Duplicate(first));
    // Keys are per tenant.
    let elsewhere = enqueue(
        &db,
        other_tenant_id,
        effect(false).unique_key("reminder:42"),
    )
    .await;
    assert_ne!(elsewhere, first);

    let worker = worker(&db, config("w"));
    while worker.try_run_one().await.unwrap().is_some() {}
    // Once the first has finished, the key is free again.
    let mut tx = TenantTx::begin_as(&db.app, tenant_id, "system", None)
        .await
        .unwrap();
    let later = jobs::enqueue(&mut tx, effect(false).unique_key("reminder:42"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(
        matches!(later, Enqueued::New(id) if id != first),
        "{later:?}"
    );
}

#[tokio::test]
async fn a_cancelled_job_never_runs_and_a_cancelled_running_job_cannot_complete() {
    let db = setup().await;
    let worker = worker(&db, config("w"));
    let tenant_id = TenantId::generate();
    let waiting = enqueue(&db, tenant_id, effect(false)).await;
    admin::cancel(&mut db.owner.acquire().await.unwrap(), waiting)
        .await
        .unwrap();
    assert_eq!(worker.try_run_one().await.unwrap(), None);
    assert_eq!(job(&db, waiting).await.state, "cancelled");
    assert!(matches!(
        admin::cancel(&mut db.owner.acquire().await.unwrap(), waiting).await,
        Err(admin::AdminError::WrongState { .. })
    ));

    let running = enqueue(&db, tenant_id, effect(false)).await;
    let claimed = worker.claim(1).await.unwrap().pop().unwrap();
    admin::cancel(&mut db.owner.acquire().await.unwrap(), running)
        .await
        .unwrap();
    assert_eq!(
        worker.run_claimed(claimed).await.unwrap(),
        Outcome::LeaseLost(running)
    );
    assert_eq!(n_effects(&db, running).await, 0);
    assert_eq!(job(&db, running).await.state, "cancelled");

    // An operator's retry runs it after all.
    admin::retry(&mut db.owner.acquire().await.unwrap(), running)
        .await
        .unwrap();
    assert_eq!(
        worker.try_run_one().await.unwrap(),
        Some(Outcome::Succeeded(running))
    );
    assert!(matches!(
        admin::retry(&mut db.owner.acquire().await.unwrap(), JobId::generate()).await,
        Err(admin::AdminError::NotFound(_))
    ));
}

#[tokio::test]
async fn one_tenants_backlog_does_not_starve_another_tenant() {
    let db = setup().await;
    let worker = worker(&db, config("w"));
    let busy = TenantId::generate();
    let quiet = TenantId::generate();
    let mut tx = TenantTx::begin_as(&db.app, busy, "system", None)
        .await
        .unwrap();
    for _ in 0..300 {
        jobs::enqueue(&mut tx, effect(false)).await.unwrap();
    }
    tx.commit().await.unwrap();
    let quiet_job = enqueue(&db, quiet, effect(false)).await;

    let mut n_runs = 0;
    loop {
        n_runs += 1;
        if worker.try_run_one().await.unwrap() == Some(Outcome::Succeeded(quiet_job)) {
            break;
        }
        assert!(
            n_runs < 3,
            "the quiet tenant's job waited behind the backlog"
        );
    }
}

#[tokio::test]
async fn a_job_runs_under_its_tenants_row_level_security() {
    let db = setup().await;
    let worker = worker(&db, config("w"));
    let tenant_a = TenantId::generate();
    let tenant_b = TenantId::generate();
    let job_b = enqueue(&db, tenant_b, effect(false)).await;
    assert_eq!(
        worker.try_run_one().await.unwrap(),
        Some(Outcome::Succeeded(job_b))
    );
    assert_eq!(n_effects(&db, job_b).await, 1);

    let snoop = enqueue(&db, tenant_a, snoop(tenant_b, job_b)).await;
    assert_eq!(
        worker.try_run_one().await.unwrap(),
        Some(Outcome::Succeeded(snoop))
    );
    assert_eq!(job(&db, job_b).await.priority, 0);
}

#[tokio::test]
async fn a_job_cannot_see_or_touch_another_tenants_live_lease() {
    let db = setup().await;
    let tenant_a = TenantId::generate();
    let tenant_b = TenantId::generate();
    let slow_b = enqueue(&db, tenant_b, slow_effect(1500)).await;
    let holder = Arc::new(worker(&db, config("holder")));
    let holding = run_one_in_background(&holder);
    wait_until(
        &db,
        "SELECT count(*) = 1 FROM platform.job_leases l JOIN platform.jobs j
             ON (j.tenant_id, j.lease_id) = (l.tenant_id, l.id) AND j.state = 'running'",
    )
    .await;

    // Tenant A's job, run by another worker while B's lease is live, finds no lease
    // but its own ...
    let snoop = enqueue(&db, tenant_a, snoop(tenant_b, slow_b)).await;
    let snooper = worker(&db, config("snooper"));
    assert_eq!(
        snooper.try_run_one().await.unwrap(),
        Some(Outcome::Succeeded(snoop))
    );
    // ... and the service role, even in B's own transaction, cannot shorten or drop
    // a lease: only the worker's owner role writes them.
    for statement in [
        "UPDATE platform.job_leases SET expires_at = now() - interval '1 hour'",
        "DELETE FROM platform.job_leases",
    ] {
        let mut tx = TenantTx::begin_as(&db.app, tenant_b, "system", None)
            .await
            .unwrap();
        let err = sqlx::query(statement)
            .execute(&mut *tx)
            .await
            .expect_err("the service role may only read leases");
        assert_eq!(
            err.as_database_error().and_then(|e| e.code()).as_deref(),
            Some("42501"),
            "{statement}: {err}"
        );
    }
    assert_eq!(
        holding.await.unwrap(),
        Some(Outcome::Succeeded(slow_b)),
        "B's job kept its lease and completed under it"
    );
    assert_eq!(n_effects(&db, slow_b).await, 1);
}

#[tokio::test]
async fn a_heartbeat_keeps_a_slow_jobs_lease_and_shutdown_hands_back_what_cannot_finish() {
    let db = setup().await;
    let tenant_id = TenantId::generate();
    let slow = enqueue(&db, tenant_id, slow_effect(1500)).await;
    let mut config = config("slow");
    config.lease = Duration::from_millis(400);
    let worker = Arc::new(worker(&db, config));
    // A second worker, which runs no kind itself, rescues expired leases all along.
    let rescuer = Arc::new(Worker::new(
        db.owner.clone(),
        db.app.clone(),
        Registry::new(),
        self::config("rescuer"),
    ));
    let (stop, stopped) = watch::channel(false);
    let running = tokio::spawn(worker.clone().run(stopped.clone()));
    let rescuing = tokio::spawn(rescuer.clone().run(stopped.clone()));
    wait_until(
        &db,
        "SELECT count(*) = 1 FROM platform.jobs WHERE state = 'succeeded'",
    )
    .await;
    let done = job(&db, slow).await;
    assert_eq!(
        (done.attempts, done.worker_id.as_deref()),
        (1, Some("slow")),
        "rescued while alive"
    );
    assert_eq!(n_effects(&db, slow).await, 1);

    // A job that cannot finish within the shutdown grace is handed back.
    let endless = enqueue(&db, tenant_id, slow_effect(60_000)).await;
    wait_until(
        &db,
        "SELECT count(*) = 1 FROM platform.jobs WHERE state = 'running'",
    )
    .await;
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(30), async {
        running.await.unwrap();
        rescuing.await.unwrap();
    })
    .await
    .expect("workers stop within their grace period");
    let handed_back = job(&db, endless).await;
    assert_eq!(
        (handed_back.state.as_str(), handed_back.attempts),
        ("retrying", 0)
    );
    assert_eq!(n_effects(&db, endless).await, 0);
    let n_leases: i64 = sqlx::query_scalar("SELECT count(*) FROM platform.job_leases")
        .fetch_one(&db.admin)
        .await
        .unwrap();
    assert_eq!(
        n_leases, 0,
        "the leases of finished and handed-back jobs are deleted"
    );
}

#[tokio::test]
async fn a_job_that_lost_an_expired_lease_nobody_rescued_yet_is_still_rescued() {
    let db = setup().await;
    let job_id = enqueue(&db, TenantId::generate(), slow_effect(1000)).await;
    let worker = Arc::new(worker(&db, config("w")));
    let running = run_one_in_background(&worker);
    wait_until(
        &db,
        "SELECT count(*) = 1 FROM platform.jobs WHERE state = 'running'",
    )
    .await;
    // Its heartbeat failed, say: the lease runs out while the job runs, and its
    // completion is refused.
    expire_lease(&db.admin, job_id).await;
    assert_eq!(running.await.unwrap(), Some(Outcome::LeaseLost(job_id)));
    assert_eq!(job(&db, job_id).await.state, "running");
    // The worker claims again before anyone rescues: the lease the job is still under
    // must survive that claim ...
    assert!(worker.claim(1).await.unwrap().is_empty());
    // ... so the rescue takes the job back, and it runs once.
    rescue_and_run_once(&db, &worker, job_id).await;
}

#[tokio::test]
async fn completing_jobs_writes_no_index_entries_and_a_drained_worker_leaves_no_lease() {
    let db = setup().await;
    const PER_TENANT: usize = 150;
    for _ in 0..2 {
        enqueue_batch(&db, TenantId::generate(), &[false; PER_TENANT]).await;
    }
    let mut config = config("w");
    config.concurrency = 64;
    let worker = Arc::new(worker(&db, config));
    let (stop, stopped) = watch::channel(false);
    let running = tokio::spawn(worker.clone().run(stopped));
    wait_until(
        &db,
        &format!(
            "SELECT count(*) = {} FROM platform.jobs WHERE state = 'succeeded'",
            2 * PER_TENANT
        ),
    )
    .await;
    stop.send(true).unwrap();
    running.await.unwrap();
    let n_leases: i64 = sqlx::query_scalar("SELECT count(*) FROM platform.job_leases")
        .fetch_one(&db.admin)
        .await
        .unwrap();
    assert_eq!(n_leases, 0, "a worker deletes the leases it is done with");

    // Each job was updated twice, by its claim and by its completion. The claim
    // takes the job out of the runnable index, so it needs a new index entry; the
    // completion must not (a heap-only update), save where the page had no room.
    let n_updates = 2 * 2 * PER_TENANT as i64;
    let mut updates = (0, 0);
    for _ in 0..300 {
        updates = sqlx::query_as(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables
             WHERE relid = 'platform.jobs'::regclass",
        )
        .fetch_one(&db.admin)
        .await
        .unwrap();
        if updates.0 >= n_updates {
            break;
        }
        // Backends report their statistics when idle, at most once a second.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (all, hot): (i64, i64) = updates;
    assert_eq!(all, n_updates, "{updates:?}");
    // Many completions (none before `jobs_hot`): a page whose room went to other
    // versions forces an index entry, and so does one that other transactions' open
    // snapshots keep from being pruned (the benchmark, alone, sees ~95 % heap-only;
    // beside the other tests, fewer).
    assert!(
        hot >= n_updates / 2 / 4,
        "only {hot} of {all} updates were heap-only"
    );
}

async fn wait_until(db: &TestDb, condition: &str) {
    for _ in 0..600 {
        let holds: bool = sqlx::query_scalar(condition)
            .fetch_one(&db.admin)
            .await
            .unwrap();
        if holds {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for: {condition}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_workers_run_two_thousand_jobs_each_exactly_once_in_effect() {
    const N_JOBS: usize = 2000;
    let db = setup().await;
    let tenants = [
        TenantId::generate(),
        TenantId::generate(),
        TenantId::generate(),
    ];
    for (i, chunk) in (0..N_JOBS).collect::<Vec<_>>().chunks(250).enumerate() {
        let mut tx = TenantTx::begin_as(&db.app, tenants[i % 3], "system", None)
            .await
            .unwrap();
        for n in chunk {
            // One in ten fails after its effect on its first attempt.
            jobs::enqueue(&mut tx, effect(n % 10 == 0)).await.unwrap();
        }
        tx.commit().await.unwrap();
    }
    let (stop, stopped) = watch::channel(false);
    let workers: Vec<_> = (0..4)
        .map(|n| {
            let mut config = config(&format!("w{n}"));
            config.concurrency = 4;
            tokio::spawn(Arc::new(worker(&db, config)).run(stopped.clone()))
        })
        .collect();
    wait_until(
        &db,
        &format!("SELECT count(*) = {N_JOBS} FROM platform.jobs WHERE state = 'succeeded'"),
    )
    .await;
    stop.send(true).unwrap();
    for worker in workers {
        worker.await.unwrap();
    }

    let states: Vec<(String, i64)> =
        sqlx::query_as("SELECT state::text, count(*) FROM platform.jobs GROUP BY 1")
            .fetch_all(&db.admin)
            .await
            .unwrap();
    assert_eq!(states, [("succeeded".to_owned(), N_JOBS as i64)]);
    let (n_jobs_with_effect, n_doubled): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE n > 1)
         FROM (SELECT job_id, count(*) AS n FROM public.effects GROUP BY job_id) e",
    )
    .fetch_one(&db.admin)
    .await
    .unwrap();
    assert_eq!((n_jobs_with_effect, n_doubled), (N_JOBS as i64, 0));
    let n_retried: i64 =
        sqlx::query_scalar("SELECT count(*) FROM platform.jobs WHERE attempts > 1")
            .fetch_one(&db.admin)
            .await
            .unwrap();
    assert!(n_retried >= (N_JOBS / 10) as i64, "{n_retried}");
}

#[tokio::test]
async fn the_claim_walks_the_runnable_index_even_with_statistics_from_an_empty_table() {
    let db = setup().await;
    db.admin.execute("ANALYZE platform.jobs").await.unwrap();
    let tenant_id = TenantId::generate();
    let mut tx = TenantTx::begin_as(&db.app, tenant_id, "system", None)
        .await
        .unwrap();
    for _ in 0..3000 {
        jobs::enqueue(&mut tx, effect(false)).await.unwrap();
    }
    tx.commit().await.unwrap();

    let mut tx = db.owner.begin().await.unwrap();
    sqlx::raw_sql(CLAIM_PLANNER_SETTINGS)
        .execute(&mut *tx)
        .await
        .unwrap();
    let plan: Vec<String> =
        sqlx::query_scalar(&format!("EXPLAIN {}", platform::jobs::worker::CLAIM))
            .bind(Uuid::nil())
            .bind(vec!["test.effect".to_owned()])
            .bind(32_i64)
            .bind(30.0_f64)
            .bind("w")
            .bind(None::<Vec<String>>)
            .bind(vec!["narrow".to_owned()])
            .bind(Vec::<Uuid>::new())
            .bind(Vec::<i64>::new())
            .fetch_all(&mut *tx)
            .await
            .unwrap();
    let plan = plan.join("\n");
    assert_eq!(
        plan.matches("Index Scan using jobs_runnable").count(),
        2,
        "{plan}"
    );
    assert!(
        !plan.contains("Seq Scan") && !plan.contains("Sort"),
        "{plan}"
    );
}

#[tokio::test]
async fn the_migrated_schema_with_jobs_passes_tenet_check() {
    let db = TestDb::migrated(&schema::migrator()).await;
    let violations = schema::check::run(&db.owner).await.unwrap();
    assert!(
        violations.is_empty(),
        "{}",
        schema::check::render_text(&violations)
    );
}

#[tokio::test]
async fn the_lease_migration_moves_running_jobs_under_leases_and_back() {
    const JOBS_HOT: i64 = 2026113001;
    let db = TestDb::empty().await;
    let all = schema::migrator();
    let before = db::Migrator::new(
        all.migrations()
            .iter()
            .filter(|migration| migration.version < JOBS_HOT)
            .copied()
            .collect(),
    );
    before.up(&db.owner).await.unwrap();
    let n_later = all
        .migrations()
        .iter()
        .filter(|migration| migration.version >= JOBS_HOT)
        .count();
    // Two jobs running under one worker's claim, one waiting.
    let tenant_id = Uuid::new_v4();
    let (running, waiting) = ([Uuid::new_v4(), Uuid::new_v4()], Uuid::new_v4());
    let expires_at: time::OffsetDateTime = sqlx::query_scalar(
        "INSERT INTO platform.jobs
             (tenant_id, id, kind, args_version, args, attempts_max, state, attempts,
              lease_expires_at, worker_id, fencing_token)
         SELECT $1, id, 'test.effect', 1, '{}', 3, 'running', 1,
                date_trunc('second', now()) + interval '20 seconds', 'node-1:7', 1
         FROM unnest($2::uuid[]) AS ids(id)
         RETURNING lease_expires_at",
    )
    .bind(tenant_id)
    .bind(running.to_vec())
    .fetch_all(&db.admin)
    .await
    .unwrap()[0];
    sqlx::query(
        "INSERT INTO platform.jobs (tenant_id, id, kind, args_version, args, attempts_max)
         VALUES ($1, $2, 'test.effect', 1, '{}', 3)",
    )
    .bind(tenant_id)
    .bind(waiting)
    .execute(&db.admin)
    .await
    .unwrap();

    assert_eq!(all.up(&db.owner).await.unwrap(), n_later);
    let leases: Vec<(Uuid, String, time::OffsetDateTime, Vec<Uuid>)> =
        sqlx::query_as("SELECT tenant_id, worker_id, expires_at, job_ids FROM platform.job_leases")
            .fetch_all(&db.admin)
            .await
            .unwrap();
    assert_eq!(leases.len(), 1, "one lease for the one claim");
    let (lease_tenant, worker_id, lease_expires_at, mut job_ids) = leases[0].clone();
    job_ids.sort();
    let mut expected = running.to_vec();
    expected.sort();
    assert_eq!(
        (lease_tenant, worker_id.as_str(), lease_expires_at, job_ids),
        (tenant_id, "node-1:7", expires_at, expected)
    );
    let held: Vec<(Uuid, bool, bool)> = sqlx::query_as(
        "SELECT j.id, j.lease_id IS NOT DISTINCT FROM l.id, j.runnable
         FROM platform.jobs j LEFT JOIN platform.job_leases l ON true ORDER BY j.id = $1",
    )
    .bind(waiting)
    .fetch_all(&db.admin)
    .await
    .unwrap();
    assert_eq!(
        held.iter()
            .map(|(_, leased, runnable)| (*leased, *runnable))
            .collect::<Vec<_>>(),
        [(true, false), (true, false), (false, true)],
        "{held:?}"
    );
    // The job admin view still shows the lease's expiry.
    let shown = job(&db, JobId::new_unchecked(running[0])).await;
    assert_eq!(shown.lease_expires_at, Some(expires_at));

    // And back: the running jobs get their lease's expiry again.
    assert_eq!(all.down(&db.owner, n_later).await.unwrap(), n_later);
    let restored: Vec<Option<time::OffsetDateTime>> =
        sqlx::query_scalar("SELECT lease_expires_at FROM platform.jobs ORDER BY id = $1")
            .bind(waiting)
            .fetch_all(&db.admin)
            .await
            .unwrap();
    assert_eq!(restored, [Some(expires_at), Some(expires_at), None]);
    assert_eq!(all.up(&db.owner).await.unwrap(), n_later);
}

#[tokio::test]
async fn a_run_past_its_timeout_is_stopped_its_effects_rolled_back_and_retried() {
    let db = setup().await;
    let mut config = config("w");
    config.backoff_base = Duration::from_secs(60);
    config.backoff_max = Duration::from_secs(60);
    let worker = worker(&db, config);
    let job_id = enqueue(&db, TenantId::generate(), JobSpec::<Hang>::new(())).await;

    let started = std::time::Instant::now();
    assert_eq!(
        worker.try_run_one().await.unwrap(),
        Some(Outcome::Retrying(job_id))
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the run was not stopped"
    );
    assert_eq!(n_effects(&db, job_id).await, 0);
    let failed = job(&db, job_id).await;
    assert_eq!(failed.state, "retrying");
    assert_eq!(failed.last_error.as_deref(), Some("timed out after 0.2 s"));
    assert!(failed.lease_expires_at.is_none() && failed.worker_id.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_queue_limit_holds_across_workers_and_other_queues_keep_flowing() {
    const N_EACH: usize = 24;
    let db = setup().await;
    let tenant_id = TenantId::generate();
    let mut tx = TenantTx::begin_as(&db.app, tenant_id, "system", None)
        .await
        .unwrap();
    for _ in 0..N_EACH {
        let slow = EffectArgs {
            fail_first: false,
            sleep_ms: 60,
        };
        jobs::enqueue(
            &mut tx,
            JobSpec::<Effect>::new(slow.clone()).queue("narrow"),
        )
        .await
        .unwrap();
        jobs::enqueue(&mut tx, JobSpec::<Effect>::new(slow))
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut handles = Vec::new();
    for i in 0..3 {
        let mut config = config(&format!("w{i}"));
        config.concurrency = 8;
        config.queue_limits.insert("narrow".to_owned(), 2);
        let worker = Arc::new(worker(&db, config));
        handles.push(tokio::spawn(worker.run(stop_rx.clone())));
    }
    let (mut narrow_max, mut default_max) = (0_i64, 0_i64);
    loop {
        let (narrow, default, left): (i64, i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE state = 'running' AND queue = 'narrow'),
                    count(*) FILTER (WHERE state = 'running' AND queue = 'default'),
                    count(*) FILTER (WHERE state <> 'succeeded')
             FROM platform.jobs",
        )
        .fetch_one(&db.admin)
        .await
        .unwrap();
        narrow_max = narrow_max.max(narrow);
        default_max = default_max.max(default);
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop_tx.send(true).unwrap();
    for handle in handles {
        handle.await.unwrap();
    }

    assert!(
        narrow_max <= 2,
        "{narrow_max} narrow jobs ran at once; the limit is 2"
    );
    assert_eq!(narrow_max, 2, "the limit's room was never used");
    assert!(
        default_max > 2,
        "the unlimited queue ran only {default_max} at once"
    );
    let n_effects: i64 = sqlx::query_scalar("SELECT count(*) FROM public.effects")
        .fetch_one(&db.admin)
        .await
        .unwrap();
    assert_eq!(n_effects, i64::try_from(2 * N_EACH).unwrap());
}

#[tokio::test]
async fn a_dead_letter_is_listed_for_its_tenant_only_and_can_be_discarded_and_retried() {
    let db = setup().await;
    let worker = worker(&db, config("w"));
    let (tenant_id, other_tenant_id) = (TenantId::generate(), TenantId::generate());
    let poison = enqueue(&db, tenant_id, JobSpec::<Poison>::new(()).attempts_max(1)).await;
    let other_poison = enqueue(
        &db,
        other_tenant_id,
        JobSpec::<Poison>::new(()).attempts_max(1),
    )
    .await;
    while worker.try_run_one().await.unwrap().is_some() {}

    // The operator sees both; a tenant's transaction sees its own only.
    let ids = |rows: Vec<admin::JobRow>| rows.into_iter().map(|row| row.id).collect::<Vec<_>>();
    let mut owner = db.owner.acquire().await.unwrap();
    let mut all = ids(admin::dead_letters(&mut owner, None, 100).await.unwrap());
    all.sort();
    let mut expected = vec![*poison.as_uuid(), *other_poison.as_uuid()];
    expected.sort();
    assert_eq!(all, expected);
    let mut tx = TenantTx::begin_as(&db.app, tenant_id, "system", None)
        .await
        .unwrap();
    assert_eq!(
        ids(admin::dead_letters(&mut tx, None, 100).await.unwrap()),
        vec![*poison.as_uuid()]
    );
    assert!(matches!(
        admin::discard(&mut tx, other_poison).await,
        Err(admin::AdminError::NotFound(_))
    ));
    tx.rollback().await.unwrap();

    admin::discard(&mut owner, poison).await.unwrap();
    assert_eq!(
        ids(admin::dead_letters(&mut owner, None, 100).await.unwrap()),
        vec![*other_poison.as_uuid()]
    );
    let discarded = job(&db, poison).await;
    assert_eq!(
        discarded.state, "dead",
        "a discarded job stays dead, for the record"
    );
    assert!(discarded.discarded_at.is_some());
    assert!(matches!(
        admin::discard(&mut owner, poison).await,
        Err(admin::AdminError::WrongState { .. })
    ));

    admin::retry(&mut owner, poison).await.unwrap();
    let retried = job(&db, poison).await;
    assert_eq!((retried.state.as_str(), retried.attempts), ("scheduled", 0));
    assert!(retried.discarded_at.is_none());
}

async fn enqueue_batch(db: &TestDb, tenant_id: TenantId, fail_first: &[bool]) -> Vec<JobId> {
    let mut tx = TenantTx::begin_as(&db.app, tenant_id, "system", None)
        .await
        .unwrap();
    let mut job_ids = Vec::new();
    for &fail_first in fail_first {
        let args = EffectArgs {
            fail_first,
            sleep_ms: 0,
        };
        let enqueued = jobs::enqueue(&mut tx, JobSpec::<BatchEffect>::new(args))
            .await
            .unwrap();
        job_ids.push(enqueued.job_id());
    }
    tx.commit().await.unwrap();
    job_ids
}

#[tokio::test]
async fn a_batch_of_one_tenants_jobs_commits_its_effects_and_marks_in_one_transaction() {
    let db = setup().await;
    let worker = worker(&db, config("w"));
    let job_ids = enqueue_batch(&db, TenantId::generate(), &[false; 10]).await;

    let claimed = worker.claim(10).await.unwrap();
    assert_eq!(claimed.len(), 10);
    let outcomes = worker.run_batch(claimed).await.unwrap();
    assert_eq!(outcomes.len(), 10);
    assert!(
        outcomes.iter().all(|o| matches!(o, Outcome::Succeeded(_))),
        "{outcomes:?}"
    );
    for job_id in &job_ids {
        assert_eq!(n_effects(&db, *job_id).await, 1);
        assert_eq!(job(&db, *job_id).await.state, "succeeded");
    }
    // One transaction wrote every mark and every effect.
    let n_transactions: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT xmin::text) FROM (
             SELECT xmin FROM platform.jobs UNION ALL SELECT xmin FROM public.effects) AS rows",
    )
    .fetch_one(&db.admin)
    .await
    .unwrap();
    assert_eq!(n_transactions, 1);
}

#[tokio::test]
async fn a_failing_run_rolls_its_batch_back_and_every_job_gets_its_own_outcome() {
    let db = setup().await;
    let mut config = config("w");
    config.backoff_base = Duration::from_secs(60);
    config.backoff_max = Duration::from_secs(60);
    let worker = worker(&db, config);
    let mut fail_first = [false; 8];
    fail_first[5] = true;
    let job_ids = enqueue_batch(&db, TenantId::generate(), &fail_first).await;

    let claimed = worker.claim(8).await.unwrap();
    let outcomes = worker.run_batch(claimed).await.unwrap();
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Succeeded(_)))
            .count(),
        7
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == Outcome::Retrying(job_ids[5]))
            .count(),
        1,
        "{outcomes:?}"
    );
    for (i, job_id) in job_ids.iter().enumerate() {
        let expected = if i == 5 {
            (0, "retrying")
        } else {
            (1, "succeeded")
        };
        assert_eq!(
            (
                n_effects(&db, *job_id).await,
                job(&db, *job_id).await.state.as_str()
            ),
            expected,
            "job {i}"
        );
    }
}

#[tokio::test]
async fn a_job_cancelled_mid_batch_cannot_complete_and_the_rest_still_do() {
    let db = setup().await;
    let worker = worker(&db, config("w"));
    let job_ids = enqueue_batch(&db, TenantId::generate(), &[false; 6]).await;

    let claimed = worker.claim(6).await.unwrap();
    admin::cancel(&mut db.owner.acquire().await.unwrap(), job_ids[2])
        .await
        .unwrap();
    let outcomes = worker.run_batch(claimed).await.unwrap();
    assert!(
        outcomes.contains(&Outcome::LeaseLost(job_ids[2])),
        "{outcomes:?}"
    );
    for (i, job_id) in job_ids.iter().enumerate() {
        let expected = if i == 2 {
            (0, "cancelled")
        } else {
            (1, "succeeded")
        };
        assert_eq!(
            (
                n_effects(&db, *job_id).await,
                job(&db, *job_id).await.state.as_str()
            ),
            expected,
            "job {i}"
        );
    }
}

#[tokio::test]
async fn a_run_hung_inside_the_database_is_cancelled_by_the_server_at_its_timeout() {
    let db = setup().await;
    let mut config = config("w");
    config.backoff_base = Duration::from_secs(60);
    config.backoff_max = Duration::from_secs(60);
    let worker = worker(&db, config);
    let job_id = enqueue(&db, TenantId::generate(), JobSpec::<SqlHang>::new(())).await;

    // Dropping a hung future does not stop the server's query; the transaction's own
    // statement timeout does, so the worker gets its connection back in time.
    let started = std::time::Instant::now();
    assert_eq!(
        worker.try_run_one().await.unwrap(),
        Some(Outcome::Retrying(job_id))
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let failed = job(&db, job_id).await;
    assert_eq!(failed.state, "retrying");
    let n_sleeping: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'",
    )
    .fetch_one(&db.admin)
    .await
    .unwrap();
    assert_eq!(n_sleeping, 0, "the server still runs the hung query");
}
