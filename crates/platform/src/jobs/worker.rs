//! The worker: claim, run, complete, retry, rescue, heartbeat, and the loop around
//! them.
//!
//! [`Worker::try_run_one`] does one unit of work; [`Worker::run`] is the loop, with
//! `concurrency` jobs at a time. Claims, heartbeats, rescues and hand-backs run on the
//! owner pool — the one role with a policy that sees every tenant's jobs (ARCHITECTURE.md,
//! "Decisions") — and touch only `platform.jobs` and `platform.job_leases`. A job's own
//! work, its completion and its failure run on the service role's pool in a
//! [`TenantTx`] of the job's tenant.
//!
//! Leases: a claim takes its jobs under one lease per tenant (a row of
//! `platform.job_leases` listing the jobs, with their expiry), and each job names its
//! lease in `lease_id` while it runs. Heartbeats renew leases, not jobs; the rescue
//! takes back the jobs still under a lease that expired. A lease whose jobs all left it
//! (completed, failed, or lost to a rescue, cancel or hand-back) is deleted by the
//! worker's next claim. A lease with a job whose transaction failed, or that lost a
//! lease which expired and may still hold it, is renewed until its other jobs end and
//! then left to expire, so the rescue takes that job back. Completion changes no
//! indexed column of `platform.jobs` (save a unique key's), so its row version is
//! heap-only (HOT) where the page has room: the `jobs_hot` migration says how.
//!
//! Fencing: each claim gives the job a new `fencing_token`; completion and failure
//! update the job only where the token is still the one claimed, the state is still
//! `running` and (for completion) the lease has not expired. A worker that lost its
//! lease — rescued, cancelled or handed back meanwhile — therefore cannot complete,
//! and its effects roll back with its transaction.
//!
//! This module must never run a job's work outside its tenant's transaction.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use db::TenantTx;
use kernel::{JobId, TenantId};
use rand::Rng;
use sqlx::{Executor, PgPool};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use uuid::Uuid;

use super::{JobContext, JobError, Registry};

/// The most jobs one claim takes.
pub const CLAIM_BATCH_MAX: usize = 64;
/// The most jobs run in one transaction (see [`super::JobKind::BATCHABLE`]).
pub const RUN_BATCH_MAX: usize = 32;
/// The most expired leases one rescue takes (each holds at most [`CLAIM_BATCH_MAX`]
/// jobs).
pub const RESCUE_BATCH_MAX: i64 = 1000;
/// The longest `last_error` kept, in characters.
pub const LAST_ERROR_LEN_MAX: usize = 2000;
/// The most jobs a worker runs at once.
pub const CONCURRENCY_MAX: usize = 1024;

/// How a worker behaves.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Recorded on the jobs it holds: `host:pid:n`.
    pub worker_id: String,
    /// Jobs run at once.
    pub concurrency: usize,
    /// How long a claim holds a job without a heartbeat.
    pub lease: Duration,
    /// The first retry's delay; each further retry doubles it, up to `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// How long an idle worker waits before looking again.
    pub poll_interval: Duration,
    /// How often expired leases are looked for.
    pub rescue_interval: Duration,
    /// On shutdown, how long in-flight jobs get to finish before they are handed back.
    pub shutdown_grace: Duration,
    /// The most jobs of a queue running at once across every worker of the database
    /// (`queue name → limit`). Queues not named here are unlimited. Every worker
    /// enforces the limit it is given, so give every node the same limits.
    pub queue_limits: BTreeMap<String, u32>,
}

impl WorkerConfig {
    pub fn new(worker_id: impl Into<String>) -> Self {
        Self {
            worker_id: worker_id.into(),
            concurrency: 4,
            lease: Duration::from_secs(30),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(3600),
            poll_interval: Duration::from_millis(250),
            rescue_interval: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(10),
            queue_limits: BTreeMap::new(),
        }
    }

    /// Sets the lease, and looks for expired leases at least twice per lease, so a
    /// dead worker's jobs are back in at most about one and a half leases.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self.rescue_interval = self.rescue_interval.min(lease / 2);
        self
    }
}

/// A job this worker holds, with the fencing token it was claimed under.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub tenant_id: TenantId,
    pub job_id: JobId,
    pub kind: String,
    pub args_version: u32,
    pub args: serde_json::Value,
    pub attempt: u32,
    pub attempts_max: u32,
    pub fencing_token: i64,
    /// The lease (`platform.job_leases`) the job is held under: one per claim and
    /// tenant.
    pub lease_id: i64,
}

/// How one run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Its work and its `succeeded` mark committed together.
    Succeeded(JobId),
    /// It failed and will run again after its backoff.
    Retrying(JobId),
    /// It failed for the last time (or for good); `last_error` says why.
    Dead(JobId),
    /// Its lease was lost (expired, rescued, cancelled or handed back) before it
    /// completed: its effects were rolled back.
    LeaseLost(JobId),
}

/// Runs that ended in this process, by outcome, for metrics: succeeded, retrying,
/// dead, lease lost.
static OUTCOMES: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

impl Outcome {
    /// Stable, for metric labels.
    pub const NAMES: [&'static str; 4] = ["succeeded", "retrying", "dead", "lease_lost"];

    /// Whether the job is known to be no longer under the lease it ran under: its
    /// completion or failure cleared it. A lost lease may be one that expired and that
    /// nobody rescued yet, with the job still under it: that lease must stay, so the
    /// rescue takes the job back.
    pub fn left_its_lease(self) -> bool {
        !matches!(self, Outcome::LeaseLost(_))
    }

    /// The job it is the outcome of.
    pub fn job_id(self) -> JobId {
        match self {
            Outcome::Succeeded(id)
            | Outcome::Retrying(id)
            | Outcome::Dead(id)
            | Outcome::LeaseLost(id) => id,
        }
    }

    fn index(self) -> usize {
        match self {
            Outcome::Succeeded(_) => 0,
            Outcome::Retrying(_) => 1,
            Outcome::Dead(_) => 2,
            Outcome::LeaseLost(_) => 3,
        }
    }
}

/// How many runs ended in this process so far, by outcome, in the order of
/// [`Outcome::NAMES`].
pub fn outcomes_total() -> [u64; 4] {
    std::array::from_fn(|i| OUTCOMES[i].load(Ordering::Relaxed))
}

/// The delay before retry number `attempt` (1: after the first failure): `base ·
/// 2^(attempt-1)` capped at `max`, then "equal jitter": half of it fixed, half drawn
/// from `jitter` (in `[0, 1)`), so retries of jobs that failed together spread out.
pub fn backoff(attempt: u32, base: Duration, max: Duration, jitter: f64) -> Duration {
    assert!((0.0..1.0).contains(&jitter), "BUG: jitter is in [0, 1)");
    let exponent = attempt.saturating_sub(1).min(30);
    let delay = base.saturating_mul(1 << exponent).min(max);
    delay / 2 + delay.mul_f64(jitter / 2.0)
}

/// The claim: the first runnable jobs, in the order of the `jobs_runnable` index,
/// starting after the tenant the previous claim ended at and wrapping around, so
/// claims round-robin over tenants. Both halves scan that partial index in its own
/// order; the outer LIMIT stops the second as soon as the first filled the batch
/// (each row is locked only when it is pulled).
pub const CLAIM: &str = r#"
WITH picked AS (
    SELECT tenant_id, id FROM (
        SELECT * FROM (
            SELECT tenant_id, id FROM platform.jobs
            WHERE runnable AND tenant_id > $1
              AND run_at <= now() AND kind = ANY ($2)
              AND ($6::text[] IS NULL OR queue = ANY ($6)) AND queue <> ALL ($7)
            ORDER BY tenant_id, priority, run_at
            LIMIT $3
            FOR UPDATE SKIP LOCKED
        ) AS after_cursor
        UNION ALL
        SELECT * FROM (
            SELECT tenant_id, id FROM platform.jobs
            WHERE runnable AND tenant_id <= $1
              AND run_at <= now() AND kind = ANY ($2)
              AND ($6::text[] IS NULL OR queue = ANY ($6)) AND queue <> ALL ($7)
            ORDER BY tenant_id, priority, run_at
            LIMIT $3
            FOR UPDATE SKIP LOCKED
        ) AS from_start
    ) AS both_halves
    LIMIT $3
),
leased AS (
    INSERT INTO platform.job_leases (tenant_id, worker_id, expires_at, job_ids)
    SELECT tenant_id, $5, now() + make_interval(secs => $4), array_agg(id)
    FROM picked
    GROUP BY tenant_id
    RETURNING tenant_id, id, job_ids
),
released AS (
    DELETE FROM platform.job_leases
    WHERE (tenant_id, id) IN (SELECT * FROM unnest($8::uuid[], $9::bigint[]))
)
UPDATE platform.jobs j
SET state = 'running', attempts = j.attempts + 1, fencing_token = j.fencing_token + 1,
    lease_id = leased.id, worker_id = $5, updated_at = now()
FROM leased CROSS JOIN LATERAL unnest(leased.job_ids) AS held(id)
WHERE j.tenant_id = leased.tenant_id AND j.id = held.id
RETURNING j.tenant_id, j.id, j.kind, j.args_version, j.args, j.attempts, j.attempts_max, j.fencing_token, j.lease_id
"#;

/// Serialises the claims of one limited queue across every worker, so the count of its
/// running jobs cannot change between reading it and claiming under it.
const LOCK_QUEUE: &str =
    "SELECT pg_advisory_xact_lock(hashtextextended('tenet.jobs.queue:' || $1, 0))";

/// The jobs of a queue running now, leases expired or not (an expired one is still
/// running until it is rescued): the jobs still under the leases that list them.
const COUNT_RUNNING: &str = r#"
SELECT count(*)
FROM platform.job_leases l
CROSS JOIN LATERAL unnest(l.job_ids) AS held(id)
JOIN platform.jobs j ON j.tenant_id = l.tenant_id AND j.id = held.id AND j.lease_id = l.id
WHERE j.queue = $1
"#;

/// Planner settings for the claim's transaction. With statistics taken while the table
/// was empty, a bulk enqueue can make a sequential scan and a sort look cheap, and a
/// queue's drain speed then swings by orders of magnitude; switched off, the claim
/// always walks `jobs_runnable` in order and stops at the batch size.
///
/// The claim's commit also skips its own WAL flush (`synchronous_commit = off`): a
/// claim lost in a crash only leaves the job runnable, and any later commit that
/// depends on it — its completion — flushes the WAL up to and including the claim.
pub const CLAIM_PLANNER_SETTINGS: &str = "SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off; SET LOCAL synchronous_commit = off";

/// Completes a job in its own transaction, only under the claimed token and an
/// unexpired lease. It changes no indexed column: the new row version is heap-only
/// where its page has room (migration `jobs_hot`).
const COMPLETE: &str = r#"
UPDATE platform.jobs j
SET state = 'succeeded', lease_id = NULL, finished_at = now(), updated_at = now()
WHERE j.tenant_id = $1 AND j.id = $2 AND j.fencing_token = $3 AND j.state = 'running'
  AND EXISTS (SELECT 1 FROM platform.job_leases l
              WHERE l.tenant_id = j.tenant_id AND l.id = j.lease_id
                AND l.expires_at > clock_timestamp())
"#;

/// Completes a batch of one tenant's jobs in the transaction that did their work, only
/// where each token and lease still hold; the caller commits only if every job of the
/// batch was completed.
const COMPLETE_BATCH: &str = r#"
UPDATE platform.jobs j
SET state = 'succeeded', lease_id = NULL, finished_at = now(), updated_at = now()
FROM unnest($2::uuid[], $3::bigint[]) AS c(id, fencing_token)
WHERE j.tenant_id = $1 AND j.id = c.id AND j.fencing_token = c.fencing_token
  AND j.state = 'running'
  AND EXISTS (SELECT 1 FROM platform.job_leases l
              WHERE l.tenant_id = j.tenant_id AND l.id = j.lease_id
                AND l.expires_at > clock_timestamp())
"#;

/// Planner settings for a batch's completion, its transaction's last statement (the
/// work is done, so they change nothing else): one index lookup per job. Left to the
/// statistics of a freshly filled table, the planner scans all of the tenant's keys
/// for every batch (seen at 10 ms per batch of 32 on 100 000 queued jobs).
const COMPLETE_BATCH_PLANNER_SETTINGS: &str = "SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off";

/// Records a failed run, only under the claimed token.
const FAIL: &str = r#"
UPDATE platform.jobs
SET state = $4::platform.job_state,
    run_at = CASE WHEN $4 = 'retrying' THEN now() + make_interval(secs => $5) ELSE run_at END,
    last_error = $6, lease_id = NULL, worker_id = NULL, updated_at = now(),
    finished_at = CASE WHEN $4 = 'dead' THEN now() END
WHERE tenant_id = $1 AND id = $2 AND fencing_token = $3 AND state = 'running'
"#;

/// Extends the leases this worker holds: one row per claim and tenant, whatever
/// its number of jobs. Rows locked by their release or their rescue are skipped, so a
/// heartbeat never waits on, or deadlocks with, either (both lock several leases).
const HEARTBEAT: &str = r#"
UPDATE platform.job_leases
SET expires_at = now() + make_interval(secs => $3)
WHERE (tenant_id, id) IN (
    SELECT tenant_id, id FROM platform.job_leases
    WHERE (tenant_id, id) IN (SELECT * FROM unnest($1::uuid[], $2::bigint[]))
    FOR UPDATE SKIP LOCKED)
"#;

/// Deletes leases none of whose jobs is still held under them (every job finished, or
/// was rescued, cancelled or handed back): for leases whose jobs' fates are not all
/// known, as at shutdown. A lease with a job still under it stays, to expire and be
/// rescued.
const RELEASE_IF_EMPTY: &str = r#"
DELETE FROM platform.job_leases l
WHERE (l.tenant_id, l.id) IN (SELECT * FROM unnest($1::uuid[], $2::bigint[]))
  AND NOT EXISTS (
      SELECT 1 FROM unnest(l.job_ids) AS held(id)
      JOIN platform.jobs j ON j.tenant_id = l.tenant_id AND j.id = held.id
      WHERE j.lease_id = l.id)
"#;

/// Gives jobs back at shutdown: the attempt does not count, the token moves on.
const HAND_BACK: &str = r#"
UPDATE platform.jobs j
SET state = 'retrying', run_at = now(), attempts = greatest(j.attempts - 1, 0),
    fencing_token = j.fencing_token + 1, lease_id = NULL, worker_id = NULL,
    last_error = 'handed back at worker shutdown', updated_at = now()
FROM unnest($1::uuid[], $2::uuid[], $3::bigint[]) AS h(tenant_id, id, fencing_token)
WHERE j.tenant_id = h.tenant_id AND j.id = h.id AND j.fencing_token = h.fencing_token
  AND j.state = 'running'
"#;

/// Takes back the jobs of leases that expired (their worker died or hung), and deletes
/// those leases. The attempt counts: a job that kills its worker every time ends
/// `dead`. A job listed by an expired lease but no longer under it (it finished, or
/// was cancelled or handed back) is left alone.
const RESCUE: &str = r#"
WITH expired AS (
    DELETE FROM platform.job_leases
    WHERE (tenant_id, id) IN (
        SELECT tenant_id, id FROM platform.job_leases
        WHERE expires_at < now()
        ORDER BY expires_at
        LIMIT $1
        FOR UPDATE SKIP LOCKED)
    RETURNING tenant_id, id, job_ids
)
UPDATE platform.jobs j
SET state = CASE WHEN j.attempts >= j.attempts_max THEN 'dead' ELSE 'retrying' END::platform.job_state,
    run_at = now(), fencing_token = j.fencing_token + 1, lease_id = NULL,
    last_error = 'lease expired: worker ' || coalesce(j.worker_id, '?') || ' stopped renewing it',
    worker_id = NULL, updated_at = now(),
    finished_at = CASE WHEN j.attempts >= j.attempts_max THEN now() END
FROM expired CROSS JOIN LATERAL unnest(expired.job_ids) AS held(id)
WHERE j.tenant_id = expired.tenant_id AND j.id = held.id AND j.lease_id = expired.id
  AND j.state = 'running'
RETURNING j.tenant_id, j.kind, j.args_version, j.args, j.state = 'dead', j.last_error
"#;

/// What the rescue returns of each job: tenant, kind, args version, args, whether it
/// is dead now, its last error.
type RescuedRow = (Uuid, String, i32, serde_json::Value, bool, Option<String>);

/// What the claim returns: tenant, id, kind, args version, args, attempt,
/// attempts_max, fencing token, lease.
type ClaimRow = (
    Uuid,
    Uuid,
    String,
    i32,
    serde_json::Value,
    i32,
    i32,
    i64,
    i64,
);

/// A worker: claims and runs the kinds of its registry.
pub struct Worker {
    owner: PgPool,
    app: PgPool,
    registry: Registry,
    kinds: Vec<String>,
    config: WorkerConfig,
    /// The tenant the last claim ended at: the next claim starts after it.
    cursor: Mutex<Uuid>,
    /// Jobs running in [`Worker::run`]: id → (tenant, fencing token), for a hand-back.
    in_flight: Mutex<HashMap<Uuid, (Uuid, i64)>>,
    /// The leases this worker holds and renews.
    leases: Mutex<Leases>,
}

/// A worker's leases: how many of each lease's jobs have not ended here yet, and the
/// leases whose jobs all left them, to delete with the next claim. Only [`Worker::run`]
/// and [`Worker::try_run_one`] hold leases here, after their claim committed: a job
/// claimed through [`Worker::claim`] alone keeps its lease until the lease expires.
#[derive(Default)]
struct Leases {
    /// lease → (its tenant, jobs not ended yet, whether one ended without a recorded
    /// outcome).
    held: HashMap<i64, (Uuid, usize, bool)>,
    released: Vec<(Uuid, i64)>,
}

impl Leases {
    /// Holds the leases of jobs whose claim committed, to renew them.
    fn hold(&mut self, jobs: &[ClaimedJob]) {
        for job in jobs {
            self.held
                .entry(job.lease_id)
                .or_insert((*job.tenant_id.as_uuid(), 0, false))
                .1 += 1;
        }
    }

    /// One job of `lease` ended: `settled` when it is known to have left the lease
    /// (see [`Outcome::left_its_lease`]). A lease whose jobs all settled is released;
    /// one with a job that did not (its transaction failed, it panicked, it lost an
    /// expired lease nobody rescued yet) is renewed until its other jobs end, then
    /// expires, and the rescue takes that job back.
    fn ended(&mut self, lease: i64, settled: bool) {
        let Some((tenant_id, left, unsettled)) = self.held.get_mut(&lease) else {
            return;
        };
        *left = left.saturating_sub(1);
        *unsettled |= !settled;
        if *left == 0 {
            let (tenant_id, unsettled) = (*tenant_id, *unsettled);
            self.held.remove(&lease);
            if !unsettled {
                self.released.push((tenant_id, lease));
            }
        }
    }

    /// The leases still held, as the (tenants, ids) arrays a statement binds.
    fn held(&self) -> (Vec<Uuid>, Vec<i64>) {
        self.held
            .iter()
            .map(|(id, (tenant_id, _, _))| (*tenant_id, *id))
            .unzip()
    }
}

impl Worker {
    /// `owner` claims, heartbeats and rescues; `app` runs the jobs' work.
    pub fn new(owner: PgPool, app: PgPool, registry: Registry, config: WorkerConfig) -> Self {
        assert!(
            (1..=CONCURRENCY_MAX).contains(&config.concurrency),
            "BUG: worker concurrency must be 1..={CONCURRENCY_MAX}"
        );
        assert!(
            config.lease >= Duration::from_millis(100),
            "BUG: a lease shorter than 100 ms cannot be renewed in time"
        );
        let kinds = registry.names();
        Self {
            owner,
            app,
            registry,
            kinds,
            config,
            cursor: Mutex::new(Uuid::nil()),
            in_flight: Mutex::new(HashMap::new()),
            leases: Mutex::new(Leases::default()),
        }
    }

    pub fn config(&self) -> &WorkerConfig {
        &self.config
    }

    /// Claims up to `n` runnable jobs under a lease and a new fencing token each: first
    /// from each limited queue as far as its limit leaves room (capped by their
    /// limits, they cannot starve the others; taken last, they would starve behind any
    /// backlog), then from the unlimited queues. Jobs already claimed are never
    /// dropped: if a later step fails, the claim returns what it has.
    pub async fn claim(&self, n: usize) -> Result<Vec<ClaimedJob>, sqlx::Error> {
        let n = n.clamp(1, CLAIM_BATCH_MAX);
        let mut jobs = Vec::new();
        for (queue, limit) in &self.config.queue_limits {
            if jobs.len() >= n {
                break;
            }
            match self.claim_limited(queue, *limit, n - jobs.len()).await {
                Ok(claimed) => jobs.extend(claimed),
                Err(err) if !jobs.is_empty() => {
                    tracing::warn!(error = %err, queue = %queue, "claiming from a limited queue failed; running what was claimed");
                    return Ok(jobs);
                }
                Err(err) => return Err(err),
            }
        }
        if jobs.len() < n {
            let limited: Vec<String> = self.config.queue_limits.keys().cloned().collect();
            match self.claim_unlimited(n - jobs.len(), &limited).await {
                Ok(claimed) => jobs.extend(claimed),
                Err(err) if !jobs.is_empty() => {
                    tracing::warn!(error = %err, "claiming failed; running what was claimed");
                }
                Err(err) => return Err(err),
            }
        }
        Ok(jobs)
    }

    async fn claim_unlimited(
        &self,
        n: usize,
        limited: &[String],
    ) -> Result<Vec<ClaimedJob>, sqlx::Error> {
        let mut tx = self.owner.begin().await?;
        (&mut *tx).execute(CLAIM_PLANNER_SETTINGS).await?;
        let jobs = self.claim_in(&mut tx, n, None, limited).await?;
        tx.commit().await?;
        Ok(jobs)
    }

    /// Claims up to `n` jobs of `queue`, as far as `limit` leaves room across every
    /// worker of the database.
    async fn claim_limited(
        &self,
        queue: &str,
        limit: u32,
        n: usize,
    ) -> Result<Vec<ClaimedJob>, sqlx::Error> {
        let mut tx = self.owner.begin().await?;
        (&mut *tx).execute(CLAIM_PLANNER_SETTINGS).await?;
        sqlx::query(LOCK_QUEUE)
            .bind(queue)
            .execute(&mut *tx)
            .await?;
        let running: i64 = sqlx::query_scalar(COUNT_RUNNING)
            .bind(queue)
            .fetch_one(&mut *tx)
            .await?;
        let room = usize::try_from(i64::from(limit) - running).unwrap_or(0);
        let want = room.min(n);
        let mut jobs = Vec::new();
        if want > 0 {
            let only = [queue.to_owned()];
            jobs = self.claim_in(&mut tx, want, Some(&only), &[]).await?;
        }
        tx.commit().await?;
        Ok(jobs)
    }

    async fn claim_in(
        &self,
        tx: &mut sqlx::PgConnection,
        n: usize,
        only: Option<&[String]>,
        excluded: &[String],
    ) -> Result<Vec<ClaimedJob>, sqlx::Error> {
        let cursor = *self.cursor.lock().expect("BUG: cursor lock poisoned");
        // Leases released since the last claim are deleted by this one. Should it fail,
        // they expire, and the rescue deletes them without touching a job.
        let (released_tenants, released): (Vec<Uuid>, Vec<i64>) =
            std::mem::take(&mut self.leases().released)
                .into_iter()
                .unzip();
        let rows: Vec<ClaimRow> = sqlx::query_as(CLAIM)
            .bind(cursor)
            .bind(&self.kinds)
            .bind(i64::try_from(n).expect("BUG: batch fits i64"))
            .bind(self.config.lease.as_secs_f64())
            .bind(&self.config.worker_id)
            .bind(only)
            .bind(excluded)
            .bind(&released_tenants)
            .bind(&released)
            .fetch_all(&mut *tx)
            .await?;
        // Round-robin: continue after the last tenant served (the rows of an UPDATE
        // come back in no particular order, so take the one the scan reached last).
        if let Some(last) = last_tenant(&rows.iter().map(|row| row.0).collect::<Vec<_>>(), cursor) {
            *self.cursor.lock().expect("BUG: cursor lock poisoned") = last;
        }
        Ok(rows
            .into_iter()
            .map(
                |(
                    tenant_id,
                    id,
                    kind,
                    args_version,
                    args,
                    attempt,
                    attempts_max,
                    fencing_token,
                    lease_id,
                )| {
                    ClaimedJob {
                        tenant_id: TenantId::new_unchecked(tenant_id),
                        job_id: JobId::new_unchecked(id),
                        kind,
                        args_version: u32::try_from(args_version).unwrap_or(0),
                        args,
                        attempt: u32::try_from(attempt).unwrap_or(0),
                        attempts_max: u32::try_from(attempts_max).unwrap_or(1),
                        fencing_token,
                        lease_id,
                    }
                },
            )
            .collect())
    }

    /// Runs a claimed job in its tenant's transaction and completes it there, or
    /// records its failure. An `Err` is a database failure around the job (not of the
    /// job): the job stays `running` until its lease expires and it is rescued.
    pub async fn run_claimed(&self, job: ClaimedJob) -> Result<Outcome, sqlx::Error> {
        let outcome = self.run_claimed_inner(job).await?;
        OUTCOMES[outcome.index()].fetch_add(1, Ordering::Relaxed);
        Ok(outcome)
    }

    async fn run_claimed_inner(&self, job: ClaimedJob) -> Result<Outcome, sqlx::Error> {
        let kind = self
            .registry
            .get(&job.kind)
            .expect("BUG: a worker claims only kinds it has registered")
            .clone();
        let ctx = JobContext {
            tenant_id: job.tenant_id,
            job_id: job.job_id,
            attempt: job.attempt,
            attempts_max: job.attempts_max,
        };
        let actor = format!("job:{}", job.kind);
        let timeout = kind.timeout();
        let mut tx = TenantTx::begin_as_bounded(&self.app, job.tenant_id, &actor, timeout).await?;
        let run = kind.run(&ctx, &mut tx, job.args_version, job.args.clone());
        let result = match tokio::time::timeout(timeout, run).await {
            Ok(result) => result,
            // The run is dropped where it stood; its effects roll back with `tx`.
            Err(_) => Err(JobError::Retry(format!(
                "timed out after {:.1} s",
                timeout.as_secs_f64()
            ))),
        };
        match result {
            Ok(()) => {
                let completed = sqlx::query(COMPLETE)
                    .bind(job.tenant_id.as_uuid())
                    .bind(job.job_id.as_uuid())
                    .bind(job.fencing_token)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if completed == 1 {
                    tx.commit().await?;
                    Ok(Outcome::Succeeded(job.job_id))
                } else {
                    tx.rollback().await?;
                    tracing::warn!(job_id = %job.job_id, kind = %job.kind, "job lost its lease before completing; its effects were rolled back");
                    Ok(Outcome::LeaseLost(job.job_id))
                }
            }
            Err(err) => {
                // The work's effects go; the failure is recorded in a transaction of
                // its own (the work's may be aborted). The rollback may report the
                // error of a statement the timeout abandoned (the server cancels it
                // at the same deadline): the transaction is gone either way, and the
                // failure must still be recorded, so its error is not the job's fate.
                if let Err(rollback) = tx.rollback().await {
                    tracing::debug!(error = %rollback, job_id = %job.job_id, "rolling back a failed run reported an error");
                }
                self.record_failure(&job, &err).await
            }
        }
    }

    /// Runs claimed jobs of one tenant and one batchable kind in one transaction and
    /// completes them together. If any run fails, times out or lost its lease, the
    /// batch rolls back and each job runs again alone ([`Worker::run_claimed`]), so
    /// every job still ends with exactly its own outcome.
    pub async fn run_batch(&self, jobs: Vec<ClaimedJob>) -> Result<Vec<Outcome>, sqlx::Error> {
        let Some(first) = jobs.first() else {
            return Ok(Vec::new());
        };
        assert!(
            jobs.iter()
                .all(|job| job.tenant_id == first.tenant_id && job.kind == first.kind),
            "BUG: a batch is of one tenant and one kind"
        );
        if jobs.len() == 1 {
            let job = jobs.into_iter().next().expect("BUG: one job");
            return Ok(vec![self.run_claimed(job).await?]);
        }
        let kind = self
            .registry
            .get(&first.kind)
            .expect("BUG: a worker claims only kinds it has registered")
            .clone();
        let actor = format!("job:{}", first.kind);
        let mut tx =
            TenantTx::begin_as_bounded(&self.app, first.tenant_id, &actor, kind.timeout()).await?;
        let mut all_ran = true;
        for job in &jobs {
            let ctx = JobContext {
                tenant_id: job.tenant_id,
                job_id: job.job_id,
                attempt: job.attempt,
                attempts_max: job.attempts_max,
            };
            let run = kind.run(&ctx, &mut tx, job.args_version, job.args.clone());
            if !matches!(tokio::time::timeout(kind.timeout(), run).await, Ok(Ok(()))) {
                all_ran = false;
                break;
            }
        }
        if all_ran {
            match self.complete_batch(tx, &jobs).await {
                Ok(true) => {
                    OUTCOMES[Outcome::Succeeded(first.job_id).index()]
                        .fetch_add(jobs.len() as u64, Ordering::Relaxed);
                    return Ok(jobs
                        .iter()
                        .map(|job| Outcome::Succeeded(job.job_id))
                        .collect());
                }
                Ok(false) => {}
                // Even a commit that failed after it reached the database is safe to
                // follow with lone runs: fencing turns each into `LeaseLost`.
                Err(err) => {
                    tracing::warn!(error = %err, n_jobs = jobs.len(), "completing a batch failed; running its jobs alone")
                }
            }
        } else {
            // Dropping the transaction rolls it back; an explicit rollback that fails
            // changes nothing for the lone runs below.
            let _ = tx.rollback().await;
        }
        let mut outcomes = Vec::with_capacity(jobs.len());
        for job in jobs {
            let job_id = job.job_id;
            match self.run_claimed(job).await {
                Ok(outcome) => outcomes.push(outcome),
                // This job stays `running` until its lease expires and it is rescued;
                // the jobs after it still run now.
                Err(err) => {
                    tracing::warn!(error = %err, %job_id, "a job's transaction failed; its lease will expire and it will be rescued")
                }
            }
        }
        Ok(outcomes)
    }

    /// Completes every job of a batch in the transaction that did their work and
    /// commits; `false` (rolled back) if any token or lease no longer held.
    async fn complete_batch(
        &self,
        mut tx: TenantTx,
        jobs: &[ClaimedJob],
    ) -> Result<bool, sqlx::Error> {
        let ids: Vec<Uuid> = jobs.iter().map(|job| *job.job_id.as_uuid()).collect();
        let tokens: Vec<i64> = jobs.iter().map(|job| job.fencing_token).collect();
        (&mut *tx).execute(COMPLETE_BATCH_PLANNER_SETTINGS).await?;
        let completed = sqlx::query(COMPLETE_BATCH)
            .bind(jobs[0].tenant_id.as_uuid())
            .bind(&ids)
            .bind(&tokens)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if usize::try_from(completed).is_ok_and(|n| n == jobs.len()) {
            tx.commit().await?;
            Ok(true)
        } else {
            tx.rollback().await?;
            Ok(false)
        }
    }

    async fn record_failure(
        &self,
        job: &ClaimedJob,
        err: &JobError,
    ) -> Result<Outcome, sqlx::Error> {
        let dead = matches!(err, JobError::Fail(_)) || job.attempt >= job.attempts_max;
        let delay = backoff(
            job.attempt,
            self.config.backoff_base,
            self.config.backoff_max,
            rand::thread_rng().gen_range(0.0..1.0),
        );
        let message: String = err.to_string().chars().take(LAST_ERROR_LEN_MAX).collect();
        let mut tx =
            TenantTx::begin_as(&self.app, job.tenant_id, &format!("job:{}", job.kind), None)
                .await?;
        let updated = sqlx::query(FAIL)
            .bind(job.tenant_id.as_uuid())
            .bind(job.job_id.as_uuid())
            .bind(job.fencing_token)
            .bind(if dead { "dead" } else { "retrying" })
            .bind(delay.as_secs_f64())
            .bind(&message)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if dead
            && updated == 1
            && let Some(kind) = self.registry.get(&job.kind)
        {
            kind.on_dead(&mut tx, job.args_version, job.args.clone(), &message)
                .await?;
        }
        tx.commit().await?;
        tracing::info!(job_id = %job.job_id, kind = %job.kind, attempt = job.attempt, dead, error = %message, "job failed");
        Ok(match (updated, dead) {
            (0, _) => Outcome::LeaseLost(job.job_id),
            (_, true) => Outcome::Dead(job.job_id),
            (_, false) => Outcome::Retrying(job.job_id),
        })
    }

    /// One unit of work: rescue expired leases, claim one job, run it. `None` when
    /// nothing is runnable.
    pub async fn try_run_one(&self) -> Result<Option<Outcome>, sqlx::Error> {
        self.rescue_expired().await?;
        let Some(job) = self.claim(1).await?.pop() else {
            return Ok(None);
        };
        let lease_id = job.lease_id;
        self.leases().hold(std::slice::from_ref(&job));
        let outcome = self.run_claimed(job).await;
        let settled = outcome
            .as_ref()
            .is_ok_and(|outcome| outcome.left_its_lease());
        self.leases().ended(lease_id, settled);
        outcome.map(Some)
    }

    fn leases(&self) -> std::sync::MutexGuard<'_, Leases> {
        self.leases.lock().expect("BUG: leases lock poisoned")
    }

    /// Splits claimed jobs into what runs together: runs of a batchable kind, by tenant
    /// and kind, up to [`RUN_BATCH_MAX`] each; every other job alone.
    fn batches(&self, jobs: Vec<ClaimedJob>) -> Vec<Vec<ClaimedJob>> {
        let mut batches: Vec<Vec<ClaimedJob>> = Vec::new();
        let mut open: HashMap<(TenantId, String), usize> = HashMap::new();
        for job in jobs {
            let batchable = self
                .registry
                .get(&job.kind)
                .is_some_and(|kind| kind.batchable(&job.args));
            if !batchable {
                batches.push(vec![job]);
                continue;
            }
            let key = (job.tenant_id, job.kind.clone());
            match open.get(&key) {
                Some(&i) if batches[i].len() < RUN_BATCH_MAX => batches[i].push(job),
                _ => {
                    open.insert(key, batches.len());
                    batches.push(vec![job]);
                }
            }
        }
        batches
    }

    /// Takes back jobs whose lease expired; returns how many.
    pub async fn rescue_expired(&self) -> Result<u64, sqlx::Error> {
        let rescued: Vec<RescuedRow> = sqlx::query_as(RESCUE)
            .bind(RESCUE_BATCH_MAX)
            .fetch_all(&self.owner)
            .await?;
        let n_rescued = u64::try_from(rescued.len()).expect("BUG: a batch fits u64");
        if n_rescued > 0 {
            tracing::warn!(n_rescued, "rescued jobs whose lease expired");
        }
        // A job whose last attempt's lease expired is dead now: its kind hears of it,
        // in a transaction of its own tenant (the rescue spans tenants). A crash right
        // here leaves that untold; `tenet check` still shows the dead job.
        for (tenant_id, kind, args_version, args, dead, last_error) in rescued {
            let Some(erased) = self.registry.get(&kind).filter(|_| dead) else {
                continue;
            };
            let tenant_id = TenantId::new_unchecked(tenant_id);
            let mut tx =
                TenantTx::begin_as(&self.app, tenant_id, &format!("job:{kind}"), None).await?;
            erased
                .on_dead(
                    &mut tx,
                    u32::try_from(args_version).unwrap_or(0),
                    args,
                    last_error.as_deref().unwrap_or("lease expired"),
                )
                .await?;
            tx.commit().await?;
        }
        Ok(n_rescued)
    }

    /// Extends the leases this worker holds jobs under; returns how many it extended.
    pub async fn heartbeat(&self) -> Result<u64, sqlx::Error> {
        let (tenants, held) = self.leases().held();
        if held.is_empty() {
            return Ok(0);
        }
        Ok(sqlx::query(HEARTBEAT)
            .bind(tenants)
            .bind(held)
            .bind(self.config.lease.as_secs_f64())
            .execute(&self.owner)
            .await?
            .rows_affected())
    }

    /// At shutdown: deletes every lease this worker knows of, and `also` (the leases of
    /// handed-back jobs), that no job is still under. A lease may still hold a job
    /// whose transaction failed; it stays, to expire and be rescued.
    async fn release_all(&self, also: (Vec<Uuid>, Vec<i64>)) -> Result<u64, sqlx::Error> {
        let (mut tenants, mut ids) = also;
        {
            let mut leases = self.leases();
            let (held_tenants, held) = leases.held();
            leases.held.clear();
            for (tenant_id, id) in leases.released.drain(..) {
                tenants.push(tenant_id);
                ids.push(id);
            }
            tenants.extend(held_tenants);
            ids.extend(held);
        }
        if ids.is_empty() {
            return Ok(0);
        }
        Ok(sqlx::query(RELEASE_IF_EMPTY)
            .bind(tenants)
            .bind(ids)
            .execute(&self.owner)
            .await?
            .rows_affected())
    }

    fn in_flight_arrays(&self) -> (Vec<Uuid>, Vec<Uuid>, Vec<i64>) {
        let in_flight = self.in_flight.lock().expect("BUG: in-flight lock poisoned");
        let mut arrays = (Vec::new(), Vec::new(), Vec::new());
        for (id, (tenant_id, token)) in in_flight.iter() {
            arrays.0.push(*tenant_id);
            arrays.1.push(*id);
            arrays.2.push(*token);
        }
        arrays
    }

    /// Runs jobs, `concurrency` at a time, until `shutdown` turns true; then stops
    /// claiming, lets in-flight jobs finish for `shutdown_grace`, and hands back the
    /// ones still running.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let permits = Arc::new(Semaphore::new(self.config.concurrency));
        let mut tasks = JoinSet::new();
        let heartbeat = tokio::spawn(heartbeat_loop(self.clone(), shutdown.clone()));
        let mut rescued_at: Option<Instant> = None;
        tracing::info!(worker_id = %self.config.worker_id, concurrency = self.config.concurrency, kinds = ?self.kinds, "job worker started");
        loop {
            if *shutdown.borrow() {
                break;
            }
            while let Some(joined) = tasks.try_join_next() {
                log_joined(joined);
            }
            if rescued_at.is_none_or(|at| at.elapsed() >= self.config.rescue_interval) {
                rescued_at = Some(Instant::now());
                if let Err(err) = self.rescue_expired().await {
                    tracing::warn!(error = %err, "rescuing expired leases failed");
                }
            }
            let free = permits.available_permits();
            // Claim in batches: while jobs run, wait until a quarter of the slots are
            // free instead of paying a claim per finished job.
            let batch_min = (self.config.concurrency / 4).clamp(1, CLAIM_BATCH_MAX);
            if free == 0 || (free < batch_min && !tasks.is_empty()) {
                // Every held permit belongs to a task: wait for one to end.
                tokio::select! {
                    joined = tasks.join_next() => {
                        if let Some(joined) = joined {
                            log_joined(joined);
                        }
                    }
                    _ = shutdown.wait_for(|stop| *stop) => break,
                }
                continue;
            }
            match self.claim(free).await {
                Ok(jobs) if jobs.is_empty() => {
                    tokio::select! {
                        () = tokio::time::sleep(self.config.poll_interval) => {}
                        _ = shutdown.wait_for(|stop| *stop) => break,
                    }
                }
                Ok(jobs) => {
                    // Committed: from here the heartbeat renews their leases.
                    self.leases().hold(&jobs);
                    for batch in self.batches(jobs) {
                        let permits = permits
                            .clone()
                            .try_acquire_many_owned(
                                u32::try_from(batch.len()).expect("BUG: a batch is small"),
                            )
                            .expect("BUG: claimed more jobs than free permits");
                        let mut guards = Vec::with_capacity(batch.len());
                        for job in &batch {
                            self.in_flight
                                .lock()
                                .expect("BUG: in-flight lock poisoned")
                                .insert(
                                    *job.job_id.as_uuid(),
                                    (*job.tenant_id.as_uuid(), job.fencing_token),
                                );
                            guards.push(InFlight {
                                worker: self.clone(),
                                job_id: job.job_id,
                                lease_id: job.lease_id,
                                settled: false,
                            });
                        }
                        let worker = self.clone();
                        tasks.spawn(async move {
                            let _permits = permits;
                            let mut in_flight = guards;
                            let outcomes = worker.run_batch(batch).await?;
                            for guard in &mut in_flight {
                                guard.settled = outcomes.iter().any(|outcome| {
                                    outcome.job_id() == guard.job_id && outcome.left_its_lease()
                                });
                            }
                            Ok(())
                        });
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "claiming jobs failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(self.config.poll_interval) => {}
                        _ = shutdown.wait_for(|stop| *stop) => break,
                    }
                }
            }
        }
        tracing::info!(
            n_in_flight = tasks.len(),
            "job worker stopping: finishing in-flight jobs"
        );
        let drained = tokio::time::timeout(self.config.shutdown_grace, async {
            while let Some(joined) = tasks.join_next().await {
                log_joined(joined);
            }
        })
        .await;
        // The leases of the jobs handed back, to delete once those jobs left them.
        let mut handed_back = (Vec::new(), Vec::new());
        if drained.is_err() {
            // Their transactions roll back as the tasks are dropped; the hand-back
            // moves the token on, so nothing they did can still complete.
            // Read the sets first: an aborted task leaves them as it drops (its lease
            // counts as not settled, so it is no longer held).
            let (tenants, ids, tokens) = self.in_flight_arrays();
            handed_back = self.leases().held();
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
            match sqlx::query(HAND_BACK)
                .bind(tenants)
                .bind(ids)
                .bind(tokens)
                .execute(&self.owner)
                .await
            {
                Ok(done) => tracing::info!(
                    n_handed_back = done.rows_affected(),
                    "handed back unfinished jobs"
                ),
                Err(err) => {
                    tracing::warn!(error = %err, "handing back jobs failed; their leases will expire and they will be rescued")
                }
            }
        }
        heartbeat.abort();
        let _ = heartbeat.await;
        if let Err(err) = self.release_all(handed_back).await {
            tracing::warn!(error = %err, "deleting finished leases failed; they expire and the rescue deletes them");
        }
        tracing::info!(worker_id = %self.config.worker_id, "job worker stopped");
    }
}

/// A job running in [`Worker::run`]; dropped when its task ends, however it ends.
struct InFlight {
    worker: Arc<Worker>,
    job_id: JobId,
    lease_id: i64,
    /// Its outcome was recorded: it is no longer under its lease.
    settled: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut in_flight) = self.worker.in_flight.lock() {
            in_flight.remove(self.job_id.as_uuid());
        }
        if let Ok(mut leases) = self.worker.leases.lock() {
            leases.ended(self.lease_id, self.settled);
        }
    }
}

fn log_joined(joined: Result<Result<(), sqlx::Error>, tokio::task::JoinError>) {
    match joined {
        Ok(Ok(_)) => {}
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "a job's transaction failed; its lease will expire and it will be rescued")
        }
        Err(err) if err.is_cancelled() => {}
        Err(err) => {
            tracing::error!(error = %err, "a job panicked; its lease will expire and it will be rescued")
        }
    }
}

async fn heartbeat_loop(worker: Arc<Worker>, mut shutdown: watch::Receiver<bool>) {
    let every = worker.config.lease / 3;
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            // In-flight jobs keep their leases through the shutdown grace period; the
            // loop ends when `run` aborts it.
            _ = shutdown.wait_for(|stop| *stop) => {}
        }
        if let Err(err) = worker.heartbeat().await {
            tracing::warn!(error = %err, "extending job leases failed");
        }
    }
}

/// The tenant a claim ended at: the last one after `cursor` if any (the scan went
/// there last), else the last one at or before it (it wrapped around).
fn last_tenant(tenants: &[Uuid], cursor: Uuid) -> Option<Uuid> {
    let after = tenants.iter().filter(|t| **t > cursor).max();
    let wrapped = tenants.iter().filter(|t| **t <= cursor).max();
    wrapped.or(after).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_per_attempt_up_to_the_maximum_with_half_of_it_jittered() {
        let base = Duration::from_secs(2);
        let max = Duration::from_secs(60);
        assert_eq!(backoff(1, base, max, 0.0), Duration::from_secs(1));
        assert_eq!(backoff(2, base, max, 0.0), Duration::from_secs(2));
        assert_eq!(backoff(3, base, max, 0.0), Duration::from_secs(4));
        assert!(backoff(3, base, max, 0.999) < Duration::from_secs(8));
        assert!(backoff(3, base, max, 0.5) > Duration::from_secs(5));
        assert_eq!(backoff(40, base, max, 0.0), Duration::from_secs(30));
        assert!(backoff(u32::MAX, base, max, 0.999) <= max);
    }

    #[test]
    fn the_claim_cursor_continues_after_the_last_tenant_served() {
        let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        assert_eq!(last_tenant(&[b, c], a), Some(c));
        // Wrapped around: the scan served c (after the cursor b), then a.
        assert_eq!(last_tenant(&[c, a], b), Some(a));
        assert_eq!(last_tenant(&[], b), None);
    }
}
