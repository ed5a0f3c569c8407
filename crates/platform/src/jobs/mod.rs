//! Durable jobs: background work that survives crashes and restarts and always ends in
//! a known state (invariants I4, I5, I6).
//!
//! - [`enqueue`] writes a job inside the caller's own [`TenantTx`]: the job exists only
//!   if that transaction commits.
//! - A [`JobKind`] names a kind of work, the version of its typed arguments and the
//!   function that does it; a [`Registry`] holds the kinds a worker runs.
//! - [`worker::Worker`] claims jobs with `FOR UPDATE SKIP LOCKED` under a lease and a
//!   fresh fencing token, runs each one in a [`TenantTx`] of the job's tenant (row-level
//!   security applies in workers too) and marks it `succeeded` in that same
//!   transaction, only while its fencing token is still the job's token.
//! - [`admin`] is what operators see and do: list, show, retry, cancel.
//!
//! Job states are the database enum `platform.job_state`:
//! `scheduled → running → succeeded | retrying → … | dead | cancelled`.
//!
//! This module must never put PHI in a job: arguments are ids and codes only, and
//! error messages stored in `last_error` must name ids and causes, never values —
//! both are read across tenants by workers and operators.

pub mod admin;
pub mod worker;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use db::TenantTx;
use kernel::{JobId, TenantId};
use serde::Serialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;

/// The longest unique key accepted.
pub const UNIQUE_KEY_LEN_MAX: usize = 255;
/// The most attempts a job may be given.
pub const ATTEMPTS_MAX: u32 = 100;

/// A kind of job: its stable name, the version of its arguments, and its work.
///
/// `run` gets the job's own [`TenantTx`]; everything it writes there commits together
/// with the job's `succeeded` mark, or not at all. Work outside the database (an HTTP
/// call) must be idempotent, since a job can run more than once when a worker dies
/// between doing it and committing.
pub trait JobKind: Send + Sync + 'static {
    /// Stable, dotted lowercase: `assessments.send_reminder`.
    const NAME: &'static str;
    /// The version of [`JobKind::Args`]; raise it when their shape changes, and teach
    /// [`JobKind::upgrade`] to read the older versions still queued.
    const VERSION: u32;
    /// Attempts before the job is `dead`, unless its [`JobSpec`] says otherwise.
    const ATTEMPTS_MAX: u32 = 10;
    /// How long one run may take. A run past it is stopped, its effects roll back and
    /// it counts as a failed attempt (retried with backoff): a hung call cannot hold a
    /// worker's slot, and its lease, forever.
    const TIMEOUT: Duration = Duration::from_secs(300);
    /// Whether runs of this kind may share one transaction with other runs of the same
    /// kind and tenant, completed together by one commit (and one WAL flush). If any
    /// run of a batch fails, the whole batch rolls back and each job runs again alone,
    /// so set it only for kinds whose work is all in the database: work outside it
    /// (an HTTP call) could happen twice.
    const BATCHABLE: bool = false;
    /// Whether operators and tenants may put this kind on a schedule. Kinds that only
    /// make sense enqueued by their own machinery (a saga's step) say no.
    const SCHEDULABLE: bool = true;

    /// Whether this run of a [`JobKind::BATCHABLE`] kind may join a batch, from its
    /// stored arguments. By default every run may; a kind whose runs sometimes wait
    /// (and would wait one after another in a batch) says which.
    fn batch_run(_args: &serde_json::Value) -> bool {
        true
    }
    /// Ids and codes only: never PHI.
    type Args: Serialize + DeserializeOwned + Send + 'static;

    fn run(
        &self,
        ctx: &JobContext,
        tx: &mut TenantTx,
        args: Self::Args,
    ) -> impl Future<Output = Result<(), JobError>> + Send;

    /// Runs in the transaction that marks a run `dead` (after [`JobError::Fail`], or an
    /// error on its last attempt), so a kind can record in its own tables that its work
    /// was given up, and they tell the same story as the dead letter. `error` is what
    /// the job's `last_error` says. When the last attempt's lease expires (its worker
    /// died), the worker that rescues it calls this in a transaction of its own, just
    /// after the rescue commits.
    fn on_dead(
        &self,
        _tx: &mut TenantTx,
        _args: Self::Args,
        _error: &str,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send {
        async { Ok(()) }
    }

    /// Reads arguments written with an older `version`. By default there is none.
    fn upgrade(version: u32, _args: serde_json::Value) -> Result<Self::Args, JobError> {
        Err(JobError::Fail(format!(
            "{} arguments of version {version} cannot be read (this worker reads version {})",
            Self::NAME,
            Self::VERSION
        )))
    }
}

/// What a running job knows about itself.
#[derive(Debug, Clone)]
pub struct JobContext {
    pub tenant_id: TenantId,
    pub job_id: JobId,
    /// 1 on the first run.
    pub attempt: u32,
    pub attempts_max: u32,
}

/// Why a job's work did not succeed. Messages are stored in `last_error` and shown to
/// operators: name ids and causes, never PHI.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Try again later (with backoff), while attempts remain.
    #[error("{0}")]
    Retry(String),
    /// Retrying cannot help: the job is `dead` now.
    #[error("{0}")]
    Fail(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// A job to enqueue: a kind's arguments and how to run them.
#[derive(Debug, Clone)]
pub struct JobSpec<K: JobKind> {
    pub args: K::Args,
    pub queue: String,
    /// Lower runs first, within a tenant.
    pub priority: i16,
    /// Not before this instant (default: now).
    pub run_at: Option<OffsetDateTime>,
    pub attempts_max: u32,
    /// At most one pending (`scheduled`, `retrying` or `running`) job per tenant and key.
    pub unique_key: Option<String>,
}

impl<K: JobKind> JobSpec<K> {
    pub fn new(args: K::Args) -> Self {
        Self {
            args,
            queue: "default".to_owned(),
            priority: 0,
            run_at: None,
            attempts_max: K::ATTEMPTS_MAX,
            unique_key: None,
        }
    }

    pub fn priority(mut self, priority: i16) -> Self {
        self.priority = priority;
        self
    }

    pub fn run_at(mut self, run_at: OffsetDateTime) -> Self {
        self.run_at = Some(run_at);
        self
    }

    pub fn attempts_max(mut self, attempts_max: u32) -> Self {
        self.attempts_max = attempts_max;
        self
    }

    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }

    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = queue.into();
        self
    }
}

/// What [`enqueue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    New(JobId),
    /// A pending job with the same unique key exists; nothing was added.
    Duplicate(JobId),
}

impl Enqueued {
    pub fn job_id(self) -> JobId {
        match self {
            Enqueued::New(job_id) | Enqueued::Duplicate(job_id) => job_id,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error("job arguments do not serialize: {0}")]
    Arguments(#[source] serde_json::Error),
    #[error(transparent)]
    Unexpected(#[from] sqlx::Error),
}

/// Enqueues a job in `tx`: it exists only if `tx` commits.
pub async fn enqueue<K: JobKind>(
    tx: &mut TenantTx,
    spec: JobSpec<K>,
) -> Result<Enqueued, EnqueueError> {
    assert!(
        (1..=ATTEMPTS_MAX).contains(&spec.attempts_max),
        "BUG: attempts_max must be 1..={ATTEMPTS_MAX}"
    );
    assert!(
        spec.unique_key
            .as_ref()
            .is_none_or(|key| !key.is_empty() && key.len() <= UNIQUE_KEY_LEN_MAX),
        "BUG: unique key length must be 1..={UNIQUE_KEY_LEN_MAX}"
    );
    let args = serde_json::to_value(&spec.args).map_err(EnqueueError::Arguments)?;
    enqueue_erased(
        tx,
        ErasedJob {
            job_id: JobId::generate(),
            kind: K::NAME,
            args_version: K::VERSION,
            args: &args,
            queue: &spec.queue,
            priority: spec.priority,
            run_at: spec.run_at,
            attempts_max: spec.attempts_max,
            unique_key: spec.unique_key.as_deref(),
        },
    )
    .await
}

/// How many jobs one [`enqueue_many`] call inserts at most.
pub const ENQUEUE_MANY_MAX: usize = 1024;

/// Enqueues several jobs of one kind in `tx` with one statement: what a caller that
/// stores many records at once (a group of HL7 messages) uses. Unique keys are not
/// supported here (use [`enqueue`]). Returns the new jobs' ids, in order.
pub async fn enqueue_many<K: JobKind>(
    tx: &mut TenantTx,
    specs: Vec<JobSpec<K>>,
) -> Result<Vec<JobId>, EnqueueError> {
    assert!(
        specs.len() <= ENQUEUE_MANY_MAX,
        "BUG: enqueue_many takes at most {ENQUEUE_MANY_MAX} jobs"
    );
    let mut ids = Vec::with_capacity(specs.len());
    let mut args = Vec::with_capacity(specs.len());
    let mut queues = Vec::with_capacity(specs.len());
    let mut priorities = Vec::with_capacity(specs.len());
    let mut run_ats = Vec::with_capacity(specs.len());
    let mut attempts = Vec::with_capacity(specs.len());
    for spec in specs {
        assert!(
            spec.unique_key.is_none(),
            "BUG: enqueue_many does not take unique keys"
        );
        assert!(
            (1..=ATTEMPTS_MAX).contains(&spec.attempts_max),
            "BUG: attempts_max must be 1..={ATTEMPTS_MAX}"
        );
        ids.push(JobId::generate());
        args.push(serde_json::to_value(&spec.args).map_err(EnqueueError::Arguments)?);
        queues.push(spec.queue);
        priorities.push(spec.priority);
        run_ats.push(spec.run_at);
        attempts.push(i32::try_from(spec.attempts_max).expect("BUG: attempts_max is bounded"));
    }
    if ids.is_empty() {
        return Ok(ids);
    }
    sqlx::query(
        "INSERT INTO platform.jobs
             (tenant_id, id, kind, args_version, args, queue, priority, run_at, attempts_max)
         SELECT $1, u.id, $2, $3, u.args, u.queue, u.priority, coalesce(u.run_at, now()), u.attempts_max
         FROM unnest($4::uuid[], $5::jsonb[], $6::text[], $7::smallint[], $8::timestamptz[], $9::int[])
             AS u(id, args, queue, priority, run_at, attempts_max)",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(K::NAME)
    .bind(i32::try_from(K::VERSION).expect("BUG: job args version fits i32"))
    .bind(ids.iter().map(|id| id.into_uuid()).collect::<Vec<_>>())
    .bind(&args)
    .bind(&queues)
    .bind(&priorities)
    .bind(&run_ats)
    .bind(&attempts)
    .execute(&mut **tx)
    .await?;
    Ok(ids)
}

/// A job whose kind is known by name only: what schedules and sagas enqueue, having
/// stored a kind's arguments as JSON when they were defined.
pub(crate) struct ErasedJob<'a> {
    pub job_id: JobId,
    pub kind: &'a str,
    pub args_version: u32,
    pub args: &'a serde_json::Value,
    pub queue: &'a str,
    pub priority: i16,
    pub run_at: Option<OffsetDateTime>,
    pub attempts_max: u32,
    pub unique_key: Option<&'a str>,
}

/// Enqueues `job` in `tx`: [`enqueue`] once the arguments are JSON.
pub(crate) async fn enqueue_erased(
    tx: &mut TenantTx,
    job: ErasedJob<'_>,
) -> Result<Enqueued, EnqueueError> {
    assert!(
        (1..=ATTEMPTS_MAX).contains(&job.attempts_max),
        "BUG: attempts_max must be 1..={ATTEMPTS_MAX}"
    );
    // Two tries: a twin found by the conflict may finish before we read it.
    for _ in 0..2 {
        let inserted: Option<uuid::Uuid> = sqlx::query_scalar(
            "INSERT INTO platform.jobs
                 (tenant_id, id, kind, args_version, args, queue, priority, run_at, attempts_max, unique_key)
             VALUES ($1, $2, $3, $4, $5, $6, $7, coalesce($8, now()), $9, $10)
             ON CONFLICT (tenant_id, pending_unique_key) WHERE pending_unique_key IS NOT NULL
                 DO NOTHING
             RETURNING id",
        )
        .bind(tx.tenant_id().as_uuid())
        .bind(job.job_id.as_uuid())
        .bind(job.kind)
        .bind(i32::try_from(job.args_version).expect("BUG: job args version fits i32"))
        .bind(job.args)
        .bind(job.queue)
        .bind(job.priority)
        .bind(job.run_at)
        .bind(i32::try_from(job.attempts_max).expect("BUG: attempts_max is bounded"))
        .bind(job.unique_key)
        .fetch_optional(&mut **tx)
        .await?;
        if inserted.is_some() {
            return Ok(Enqueued::New(job.job_id));
        }
        let twin: Option<uuid::Uuid> = sqlx::query_scalar(
            "SELECT id FROM platform.jobs
             WHERE tenant_id = $1 AND pending_unique_key = $2",
        )
        .bind(tx.tenant_id().as_uuid())
        .bind(job.unique_key)
        .fetch_optional(&mut **tx)
        .await?;
        if let Some(twin) = twin {
            return Ok(Enqueued::Duplicate(JobId::new_unchecked(twin)));
        }
    }
    Err(EnqueueError::Unexpected(sqlx::Error::Protocol(
        "a job's unique key kept conflicting with jobs that finished".to_owned(),
    )))
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A kind with its argument type erased, so one registry holds every kind.
trait ErasedKind: Send + Sync {
    fn check_args(&self, args_version: u32, args: serde_json::Value) -> Result<(), JobError>;

    fn version(&self) -> u32;

    fn schedulable(&self) -> bool;

    fn run<'a>(
        &'a self,
        ctx: &'a JobContext,
        tx: &'a mut TenantTx,
        args_version: u32,
        args: serde_json::Value,
    ) -> BoxFuture<'a, Result<(), JobError>>;

    fn on_dead<'a>(
        &'a self,
        tx: &'a mut TenantTx,
        args_version: u32,
        args: serde_json::Value,
        error: &'a str,
    ) -> BoxFuture<'a, Result<(), sqlx::Error>>;

    fn timeout(&self) -> Duration;

    fn batchable(&self, args: &serde_json::Value) -> bool;
}

struct Erased<K>(K);

impl<K: JobKind> ErasedKind for Erased<K> {
    fn check_args(&self, args_version: u32, args: serde_json::Value) -> Result<(), JobError> {
        parse_args::<K>(args_version, args).map(drop)
    }

    fn version(&self) -> u32 {
        K::VERSION
    }

    fn schedulable(&self) -> bool {
        K::SCHEDULABLE
    }

    fn run<'a>(
        &'a self,
        ctx: &'a JobContext,
        tx: &'a mut TenantTx,
        args_version: u32,
        args: serde_json::Value,
    ) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let args = parse_args::<K>(args_version, args)?;
            self.0.run(ctx, tx, args).await
        })
    }

    fn on_dead<'a>(
        &'a self,
        tx: &'a mut TenantTx,
        args_version: u32,
        args: serde_json::Value,
        error: &'a str,
    ) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        Box::pin(async move {
            // Arguments that no longer parse have nothing to tell the kind's tables.
            match parse_args::<K>(args_version, args) {
                Ok(args) => self.0.on_dead(tx, args, error).await,
                Err(_) => Ok(()),
            }
        })
    }

    fn timeout(&self) -> Duration {
        K::TIMEOUT
    }

    fn batchable(&self, args: &serde_json::Value) -> bool {
        K::BATCHABLE && K::batch_run(args)
    }
}

/// A kind's arguments from their stored JSON, of this version or an older one.
fn parse_args<K: JobKind>(args_version: u32, args: serde_json::Value) -> Result<K::Args, JobError> {
    if args_version == K::VERSION {
        // The serde error names the field and what was expected, not the value.
        serde_json::from_value(args)
            .map_err(|err| JobError::Fail(format!("{} arguments do not parse: {err}", K::NAME)))
    } else {
        K::upgrade(args_version, args)
    }
}

/// The job kinds a worker runs, by name. Cheap to clone (the API's state holds one,
/// and is cloned for every request): clones share the table.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: Arc<HashMap<&'static str, Arc<dyn ErasedKind>>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a kind. Registering a name twice is a wiring mistake and panics.
    pub fn register<K: JobKind>(mut self, kind: K) -> Self {
        let previous = Arc::make_mut(&mut self.kinds).insert(K::NAME, Arc::new(Erased(kind)));
        assert!(
            previous.is_none(),
            "BUG: job kind {} registered twice",
            K::NAME
        );
        self
    }

    /// The registered names: a worker claims only these, so a rolling deploy's older
    /// workers leave newer kinds to the workers that know them.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.kinds.keys().map(|name| (*name).to_owned()).collect();
        names.sort();
        names
    }

    /// Whether `kind` is registered and may be put on a schedule.
    pub fn is_schedulable(&self, kind: &str) -> bool {
        self.get(kind).is_some_and(|erased| erased.schedulable())
    }

    /// The current arguments version of `kind`, if it is registered.
    pub fn version(&self, kind: &str) -> Option<u32> {
        self.get(kind).map(|erased| erased.version())
    }

    /// Whether `args` are arguments a worker of this registry can run as `kind`:
    /// for the CLI and the admin API, before they store arguments as JSON (a
    /// schedule's), so a typo fails at once instead of in every job.
    pub fn check_args(
        &self,
        kind: &str,
        args_version: u32,
        args: serde_json::Value,
    ) -> Result<(), JobError> {
        match self.get(kind) {
            Some(erased) => erased.check_args(args_version, args),
            None => Err(JobError::Fail(format!("no job kind is named {kind}"))),
        }
    }

    fn get(&self, name: &str) -> Option<&Arc<dyn ErasedKind>> {
        self.kinds.get(name)
    }
}

/// A job that does nothing: for smoke tests and the jobs benchmark.
pub struct Noop;

impl JobKind for Noop {
    const NAME: &'static str = "platform.noop";
    const VERSION: u32 = 1;
    const BATCHABLE: bool = true;
    type Args = serde_json::Value;

    async fn run(
        &self,
        _ctx: &JobContext,
        _tx: &mut TenantTx,
        _args: Self::Args,
    ) -> Result<(), JobError> {
        Ok(())
    }
}

/// A job that proves a fleet of workers runs jobs end to end (`tenet jobs probe`): it
/// waits `work_ms` (a stand-in for real work, so a crash can land mid-job) and records
/// its run in `platform.job_probes` in its own transaction. A job that succeeded has
/// exactly one probe row; two would be a doubled effect.
pub struct Probe {
    /// Recorded with each run: which process ran it.
    pub worker_id: String,
}

/// The arguments of a [`Probe`].
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct ProbeArgs {
    /// How long the job works before recording its run, in milliseconds.
    pub work_ms: u32,
}

/// The longest a probe may work.
pub const PROBE_WORK_MS_MAX: u32 = 60_000;

impl JobKind for Probe {
    const NAME: &'static str = "platform.probe";
    const VERSION: u32 = 1;
    // Its work is all in the database; batches are what the crash tests must cover.
    const BATCHABLE: bool = true;
    type Args = ProbeArgs;

    /// A probe that waits runs alone: in a batch its waits would add up.
    fn batch_run(args: &serde_json::Value) -> bool {
        args.get("work_ms")
            .and_then(serde_json::Value::as_u64)
            .is_none_or(|work_ms| work_ms == 0)
    }

    async fn run(
        &self,
        ctx: &JobContext,
        tx: &mut TenantTx,
        args: ProbeArgs,
    ) -> Result<(), JobError> {
        let work = Duration::from_millis(u64::from(args.work_ms.min(PROBE_WORK_MS_MAX)));
        if !work.is_zero() {
            tokio::time::sleep(work).await;
        }
        sqlx::query(
            "INSERT INTO platform.job_probes (tenant_id, job_id, attempt, worker_id) VALUES ($1, $2, $3, $4)",
        )
        .bind(ctx.tenant_id.as_uuid())
        .bind(ctx.job_id.as_uuid())
        .bind(i32::try_from(ctx.attempt).unwrap_or(i32::MAX))
        .bind(&self.worker_id)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}
