//! Sagas: workflows of steps with compensations that always end in a known state
//! (issue 4, part 4; invariant I5).
//!
//! A [`Saga`] is an ordered list of steps, each with an `execute` and a `compensate`
//! that run in a [`TenantTx`] of the saga's tenant. [`start`] writes the saga and the
//! job for its first step in the caller's transaction: the saga exists only if that
//! commits. From then on the saga rides on durable jobs of one kind, [`SagaStep`]
//! (`platform.saga_step`), and inherits their leases, fencing, retries with backoff and
//! rescue after a crash:
//!
//! - A step job locks the saga's row, runs one step inside a savepoint, and in the same
//!   transaction records the step, stores the saga's data and state, and enqueues the
//!   job for the next step — which commits together with the job's own `succeeded`
//!   mark, or not at all. A worker that lost its lease therefore leaves nothing behind,
//!   and the step runs again on the rescuing worker: effects apply exactly once.
//! - A step that fails is retried by the job's backoff up to
//!   [`Saga::STEP_ATTEMPTS_MAX`] attempts. Its last failure (or a [`StepError::Fail`])
//!   undoes its own effects (the savepoint) and switches the saga to `compensating`:
//!   the steps that completed are compensated one job each, in reverse order.
//! - A compensation that fails past its attempts ends the saga `failed` with the
//!   reason. Compensation stops there: the steps before it are left as they are, for
//!   a person to look at, because undoing them around a step that could not be
//!   undone may make things worse.
//!
//! States are the database enum `platform.saga_state`:
//! `running → completed | compensating → compensated | failed`. While a saga is
//! `running` or `compensating` its row names the job that drives it, and that job is
//! pending: every change of the row commits with the enqueue of the next job, so no
//! transaction can observe a stopped saga in between. Each step job gets one attempt
//! more than the step's budget, held back for the bookkeeping of giving up, so a step
//! that kills its worker every time still ends the saga in a known state.
//! [`stuck_sagas`] lists any saga that breaks this — it must never list one.
//!
//! This module must never put PHI in a saga: its data is ids and codes, its errors
//! name steps and causes.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use db::TenantTx;
use kernel::{JobId, TenantId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::jobs::worker::LAST_ERROR_LEN_MAX;
use crate::jobs::{
    ATTEMPTS_MAX, EnqueueError, ErasedJob, JobContext, JobError, JobKind, enqueue_erased,
};

/// The most steps a saga may have.
pub const STEPS_MAX: usize = 100;
/// The most sagas one listing returns.
pub const LIST_LEN_MAX: i64 = 1000;

pub use kernel::SagaId;

/// What a running step knows about its saga.
#[derive(Debug, Clone)]
pub struct SagaContext {
    pub tenant_id: TenantId,
    pub saga_id: SagaId,
    /// The step's index in [`Saga::STEPS`].
    pub step: usize,
    /// 1 on the first attempt of this step (or compensation).
    pub attempt: u32,
    pub job_id: JobId,
}

/// Why a step or compensation did not succeed. Stored in the step log and the saga's
/// `last_error`, read by operators: name ids and causes, never PHI.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// Try again after the job's backoff, while attempts remain.
    #[error("{0}")]
    Retry(String),
    /// Retrying cannot help: give up on this step now.
    #[error("{0}")]
    Fail(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// A kind of saga: its stable name, its steps, and what each does and undoes.
///
/// `execute` and `compensate` get the step's index and the saga's data, which they may
/// change (to remember the id of what a step made, for its compensation); the data is
/// stored with the step's effects. Both run in the step job's [`TenantTx`]: everything
/// they write there commits with the saga's progress, or not at all. Work outside the
/// database must be idempotent, as for any job. A compensation must undo its step
/// whether or not later steps ran, and be safe to retry.
pub trait Saga: Send + Sync + 'static {
    /// Stable, dotted lowercase: `assessments.enroll_patient`.
    const NAME: &'static str;
    /// The steps' names, in order; they appear in the step log.
    const STEPS: &'static [&'static str];
    /// Attempts of each step (and each compensation) before giving up on it.
    const STEP_ATTEMPTS_MAX: u32 = 5;
    /// Ids and codes only: never PHI.
    type Data: Serialize + DeserializeOwned + Send + Sync + 'static;

    fn execute(
        &self,
        ctx: &SagaContext,
        tx: &mut TenantTx,
        data: &mut Self::Data,
    ) -> impl Future<Output = Result<(), StepError>> + Send;

    fn compensate(
        &self,
        ctx: &SagaContext,
        tx: &mut TenantTx,
        data: &mut Self::Data,
    ) -> impl Future<Output = Result<(), StepError>> + Send;
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A saga with its data type erased, so one registry holds every kind.
trait ErasedSaga: Send + Sync {
    fn steps(&self) -> &'static [&'static str];
    fn step_attempts_max(&self) -> u32;
    fn run<'a>(
        &'a self,
        compensate: bool,
        ctx: &'a SagaContext,
        tx: &'a mut TenantTx,
        data: &'a mut serde_json::Value,
    ) -> BoxFuture<'a, Result<(), StepError>>;
}

struct Erased<S>(S);

impl<S: Saga> ErasedSaga for Erased<S> {
    fn steps(&self) -> &'static [&'static str] {
        S::STEPS
    }

    fn step_attempts_max(&self) -> u32 {
        S::STEP_ATTEMPTS_MAX
    }

    fn run<'a>(
        &'a self,
        compensate: bool,
        ctx: &'a SagaContext,
        tx: &'a mut TenantTx,
        data: &'a mut serde_json::Value,
    ) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move {
            // The serde error names the field and what was expected, not the value.
            let mut typed: S::Data = serde_json::from_value(data.clone()).map_err(|err| {
                StepError::Fail(format!("{} data does not parse: {err}", S::NAME))
            })?;
            if compensate {
                self.0.compensate(ctx, tx, &mut typed).await?;
            } else {
                self.0.execute(ctx, tx, &mut typed).await?;
            }
            *data = serde_json::to_value(&typed).map_err(|err| {
                StepError::Fail(format!("{} data does not serialize: {err}", S::NAME))
            })?;
            Ok(())
        })
    }
}

/// The saga kinds a worker drives, by name.
#[derive(Clone, Default)]
pub struct SagaRegistry {
    sagas: HashMap<&'static str, Arc<dyn ErasedSaga>>,
}

impl SagaRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a saga kind. A name registered twice, or a saga without steps or with
    /// too many, is a wiring mistake and panics.
    pub fn register<S: Saga>(mut self, saga: S) -> Self {
        assert!(
            (1..=STEPS_MAX).contains(&S::STEPS.len()),
            "BUG: saga {} must have 1..={STEPS_MAX} steps",
            S::NAME
        );
        assert!(
            (1..ATTEMPTS_MAX).contains(&S::STEP_ATTEMPTS_MAX),
            "BUG: saga {} step attempts must be 1..{ATTEMPTS_MAX}",
            S::NAME
        );
        let previous = self.sagas.insert(S::NAME, Arc::new(Erased(saga)));
        assert!(previous.is_none(), "BUG: saga {} registered twice", S::NAME);
        self
    }

    fn get(&self, name: &str) -> Option<&Arc<dyn ErasedSaga>> {
        self.sagas.get(name)
    }
}

/// The job kind that drives every saga: register it in the worker's
/// [`crate::jobs::Registry`] with the sagas it runs.
pub struct SagaStep {
    registry: Arc<SagaRegistry>,
}

impl SagaStep {
    pub fn new(registry: SagaRegistry) -> Self {
        Self {
            registry: Arc::new(registry),
        }
    }
}

/// A saga step job's arguments: the saga, and nothing else (its data is in its row).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SagaStepArgs {
    pub saga_id: SagaId,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("saga data does not serialize: {0}")]
    Data(#[source] serde_json::Error),
    #[error(transparent)]
    Unexpected(#[from] sqlx::Error),
}

impl From<EnqueueError> for StartError {
    fn from(err: EnqueueError) -> Self {
        match err {
            EnqueueError::Arguments(err) => StartError::Data(err),
            EnqueueError::Unexpected(err) => StartError::Unexpected(err),
        }
    }
}

/// Enqueues the job for the saga's next step (or compensation) in `tx`.
async fn enqueue_step(
    tx: &mut TenantTx,
    saga_id: SagaId,
    attempts_max: u32,
) -> Result<JobId, EnqueueError> {
    let args = serde_json::to_value(SagaStepArgs { saga_id }).map_err(EnqueueError::Arguments)?;
    let enqueued = enqueue_erased(
        tx,
        ErasedJob {
            job_id: JobId::generate(),
            kind: SagaStep::NAME,
            args_version: SagaStep::VERSION,
            args: &args,
            queue: "default",
            priority: 0,
            run_at: None,
            // One attempt more than the step's own: the last is kept for giving up.
            attempts_max: attempts_max + 1,
            unique_key: None,
        },
    )
    .await?;
    Ok(enqueued.job_id())
}

/// Starts a saga of kind `S` in the caller's transaction: it exists, and its first
/// step runs, only if `tx` commits.
pub async fn start<S: Saga>(tx: &mut TenantTx, data: S::Data) -> Result<SagaId, StartError> {
    assert!(
        (1..=STEPS_MAX).contains(&S::STEPS.len()),
        "BUG: saga {} must have 1..={STEPS_MAX} steps",
        S::NAME
    );
    assert!(
        (1..ATTEMPTS_MAX).contains(&S::STEP_ATTEMPTS_MAX),
        "BUG: saga {} step attempts must be 1..{ATTEMPTS_MAX}",
        S::NAME
    );
    let data = serde_json::to_value(&data).map_err(StartError::Data)?;
    let saga_id = SagaId::generate();
    let job_id = enqueue_step(tx, saga_id, S::STEP_ATTEMPTS_MAX).await?;
    sqlx::query(
        "INSERT INTO platform.sagas (tenant_id, id, kind, n_steps, data, job_id)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(saga_id.as_uuid())
    .bind(S::NAME)
    .bind(i32::try_from(S::STEPS.len()).expect("BUG: steps are bounded"))
    .bind(&data)
    .bind(job_id.as_uuid())
    .execute(&mut **tx)
    .await?;
    Ok(saga_id)
}

/// A saga's state, as the database enum `platform.saga_state` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SagaState {
    Running,
    Compensating,
    Completed,
    Compensated,
    Failed,
}

impl SagaState {
    pub fn as_str(self) -> &'static str {
        match self {
            SagaState::Running => "running",
            SagaState::Compensating => "compensating",
            SagaState::Completed => "completed",
            SagaState::Compensated => "compensated",
            SagaState::Failed => "failed",
        }
    }

    fn parse(text: &str) -> Self {
        Self::from_name(text).expect("BUG: the database enum matches SagaState")
    }

    /// The state named `text`, as the database enum spells it.
    pub fn from_name(text: &str) -> Option<Self> {
        Some(match text {
            "running" => SagaState::Running,
            "compensating" => SagaState::Compensating,
            "completed" => SagaState::Completed,
            "compensated" => SagaState::Compensated,
            "failed" => SagaState::Failed,
            _ => return None,
        })
    }

    /// Whether the saga has stopped for good.
    pub fn is_ended(self) -> bool {
        matches!(
            self,
            SagaState::Completed | SagaState::Compensated | SagaState::Failed
        )
    }
}

/// A saga as its tenant and operators see it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SagaRow {
    pub tenant_id: Uuid,
    pub id: Uuid,
    pub kind: String,
    pub state: String,
    pub step: i32,
    pub n_steps: i32,
    pub data: serde_json::Value,
    pub last_error: Option<String>,
    pub job_id: Option<Uuid>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub finished_at: Option<OffsetDateTime>,
}

impl SagaRow {
    pub fn state(&self) -> SagaState {
        SagaState::parse(&self.state)
    }
}

const COLUMNS: &str = "tenant_id, id, kind, state::text AS state, step, n_steps, data, last_error, job_id, created_at, updated_at, finished_at";

/// One line of a saga's step log.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StepLogRow {
    pub n: i32,
    pub step: i32,
    pub step_name: String,
    /// `execute` or `compensate`.
    pub action: String,
    /// `done` or `failed`.
    pub outcome: String,
    pub attempt: i32,
    pub error: Option<String>,
    pub job_id: Uuid,
}

pub async fn get(tx: &mut TenantTx, saga_id: SagaId) -> Result<Option<SagaRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM platform.sagas WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tx.tenant_id().as_uuid())
    .bind(saga_id.as_uuid())
    .fetch_optional(&mut **tx)
    .await
}

/// The saga's step log, in order.
pub async fn step_log(tx: &mut TenantTx, saga_id: SagaId) -> Result<Vec<StepLogRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT n, step, step_name, action::text AS action, outcome::text AS outcome, attempt, error, job_id
         FROM platform.saga_steps WHERE tenant_id = $1 AND saga_id = $2 ORDER BY n",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(saga_id.as_uuid())
    .fetch_all(&mut **tx)
    .await
}

/// Sagas of every tenant (or one), newest first, optionally in one state, for
/// operators: takes the owner pool (the `saga_dispatch` policy) and must never be
/// reachable from a request.
pub async fn list_all(
    owner: &PgPool,
    state: Option<SagaState>,
    tenant_id: Option<TenantId>,
    limit: i64,
) -> Result<Vec<SagaRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM platform.sagas
         WHERE ($1::platform.saga_state IS NULL OR state = $1::platform.saga_state)
           AND ($2::uuid IS NULL OR tenant_id = $2)
         ORDER BY created_at DESC, id DESC
         LIMIT $3"
    ))
    .bind(state.map(SagaState::as_str))
    .bind(tenant_id.map(TenantId::into_uuid))
    .bind(limit.clamp(1, LIST_LEN_MAX))
    .fetch_all(owner)
    .await
}

/// Why [`stuck_sagas`] lists a saga.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StuckReason {
    /// Not ended, and its job is not pending (dead, cancelled, or gone): nothing will
    /// move it. This must never happen; `tenet jobs retry` on its job resumes it.
    NoPendingJob,
    /// Not ended, and unchanged for longer than the threshold (its job is waiting out
    /// a long backoff, or no worker runs `platform.saga_step`).
    Overdue,
}

/// A saga `tenet check` reports.
#[derive(Debug, Clone)]
pub struct StuckSaga {
    pub tenant_id: Uuid,
    pub saga_id: Uuid,
    pub kind: String,
    pub state: SagaState,
    pub job_id: Option<Uuid>,
    pub updated_at: OffsetDateTime,
    pub reason: StuckReason,
}

/// What the stuck-saga query returns: tenant, id, kind, state, job, last change, and
/// whether no pending job drives it.
type StuckRow = (
    Uuid,
    Uuid,
    String,
    String,
    Option<Uuid>,
    OffsetDateTime,
    bool,
);

/// For `tenet check`: sagas still `running` or `compensating` with no pending job to
/// drive them, or unchanged for longer than `older_than` at `now`. Takes the owner
/// pool (the `saga_dispatch` and `job_dispatch` policies).
pub async fn stuck_sagas(
    owner: &PgPool,
    now: OffsetDateTime,
    older_than: Duration,
) -> Result<Vec<StuckSaga>, sqlx::Error> {
    let rows: Vec<StuckRow> = sqlx::query_as(
        "SELECT s.tenant_id, s.id, s.kind, s.state::text, s.job_id, s.updated_at,
                    NOT EXISTS (
                        SELECT 1 FROM platform.jobs j
                        WHERE j.tenant_id = s.tenant_id AND j.id = s.job_id
                          AND j.state IN ('scheduled', 'retrying', 'running')
                    ) AS no_pending_job
             FROM platform.sagas s
             WHERE s.state IN ('running', 'compensating')
             ORDER BY s.updated_at",
    )
    .fetch_all(owner)
    .await?;
    let threshold = now - older_than;
    Ok(rows
        .into_iter()
        .filter_map(
            |(tenant_id, saga_id, kind, state, job_id, updated_at, no_pending_job)| {
                let reason = if no_pending_job {
                    StuckReason::NoPendingJob
                } else if updated_at < threshold {
                    StuckReason::Overdue
                } else {
                    return None;
                };
                Some(StuckSaga {
                    tenant_id,
                    saga_id,
                    kind,
                    state: SagaState::parse(&state),
                    job_id,
                    updated_at,
                    reason,
                })
            },
        )
        .take(usize::try_from(LIST_LEN_MAX).expect("BUG: fits"))
        .collect())
}

/// The saga row a step job works on, locked.
type Locked = (String, String, i32, i32, serde_json::Value, Option<Uuid>);

impl JobKind for SagaStep {
    const NAME: &'static str = "platform.saga_step";
    const VERSION: u32 = 1;
    // Only a saga enqueues its steps: a scheduled one would drive no saga.
    const SCHEDULABLE: bool = false;
    type Args = SagaStepArgs;

    async fn run(
        &self,
        ctx: &JobContext,
        tx: &mut TenantTx,
        args: SagaStepArgs,
    ) -> Result<(), JobError> {
        let saga_id = args.saga_id;
        // The lock serialises this job with any other that names the saga (a late
        // worker whose lease ran out): the loser waits, then sees it is stale.
        let locked: Option<Locked> = sqlx::query_as(
            "SELECT kind, state::text, step, n_steps, data, job_id FROM platform.sagas
             WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
        )
        .bind(ctx.tenant_id.as_uuid())
        .bind(saga_id.as_uuid())
        .fetch_optional(&mut **tx)
        .await?;
        let Some((kind, state, step, n_steps, mut data, job_id)) = locked else {
            return Err(JobError::Fail(format!("saga {saga_id} does not exist")));
        };
        let state = SagaState::parse(&state);
        if state.is_ended() || job_id != Some(*ctx.job_id.as_uuid()) {
            // Not this job's turn: the saga moved on without it.
            tracing::warn!(%saga_id, job_id = %ctx.job_id, "a saga step job found its saga driven by another job; nothing to do");
            return Ok(());
        }
        let saga = self.registry.get(&kind).ok_or_else(|| {
            JobError::Retry(format!("saga kind {kind} is not registered on this worker"))
        })?;
        let step = usize::try_from(step).expect("BUG: step is non-negative");
        let n_steps = usize::try_from(n_steps).expect("BUG: n_steps is positive");
        if n_steps != saga.steps().len() || step >= n_steps {
            // A deploy changed the saga's steps under running sagas: the job ends
            // dead and `stuck_sagas` shows the saga to operators.
            return Err(JobError::Fail(format!(
                "saga {kind} has {} steps on this worker, but saga {saga_id} was started with {n_steps}",
                saga.steps().len()
            )));
        }
        let progress = Progress {
            ctx,
            saga_id,
            saga: saga.as_ref(),
            step,
        };
        progress.run(tx, state, &mut data).await
    }
}

/// One step job's work on one saga.
struct Progress<'a> {
    ctx: &'a JobContext,
    saga_id: SagaId,
    saga: &'a dyn ErasedSaga,
    step: usize,
}

impl Progress<'_> {
    async fn run(
        &self,
        tx: &mut TenantTx,
        state: SagaState,
        data: &mut serde_json::Value,
    ) -> Result<(), JobError> {
        let compensating = state == SagaState::Compensating;
        let step_attempts_max = self.saga.step_attempts_max();
        let outcome = if self.ctx.attempt > step_attempts_max {
            // The attempt held back for giving up: the step's own attempts were all
            // used, the last ones perhaps by workers that died mid-step.
            let last_error: Option<String> = sqlx::query_scalar(
                "SELECT last_error FROM platform.jobs WHERE tenant_id = $1 AND id = $2",
            )
            .bind(self.ctx.tenant_id.as_uuid())
            .bind(self.ctx.job_id.as_uuid())
            .fetch_optional(&mut **tx)
            .await?
            .flatten();
            Err(StepError::Fail(
                last_error.unwrap_or_else(|| "no error recorded".to_owned()),
            ))
        } else {
            let saga_ctx = SagaContext {
                tenant_id: self.ctx.tenant_id,
                saga_id: self.saga_id,
                step: self.step,
                attempt: self.ctx.attempt,
                job_id: self.ctx.job_id,
            };
            sqlx::query("SAVEPOINT saga_step")
                .execute(&mut **tx)
                .await?;
            let outcome = self.saga.run(compensating, &saga_ctx, tx, data).await;
            match &outcome {
                Ok(()) => {
                    sqlx::query("RELEASE SAVEPOINT saga_step")
                        .execute(&mut **tx)
                        .await?;
                }
                Err(err @ (StepError::Retry(_) | StepError::Database(_)))
                    if self.ctx.attempt < step_attempts_max =>
                {
                    // The job's retry, with its backoff; the whole transaction goes.
                    return Err(JobError::Retry(err.to_string()));
                }
                Err(_) => {
                    // Given up: the step's own effects go, the saga's record stays.
                    sqlx::query("ROLLBACK TO SAVEPOINT saga_step")
                        .execute(&mut **tx)
                        .await?;
                }
            }
            outcome
        };
        let error = outcome.as_ref().err().map(|err| {
            err.to_string()
                .chars()
                .take(LAST_ERROR_LEN_MAX / 2)
                .collect::<String>()
        });
        self.log(tx, compensating, error.as_deref()).await?;
        let n_steps = self.saga.steps().len();
        let step_name = self.saga.steps()[self.step];
        // The next state, its step, and the error to record.
        let (next_state, next_step, last_error) = match (compensating, error) {
            (false, None) if self.step + 1 == n_steps => (SagaState::Completed, self.step, None),
            (false, None) => (SagaState::Running, self.step + 1, None),
            (false, Some(error)) => {
                let reason = format!("step {} ({step_name}) failed: {error}", self.step);
                if self.step == 0 {
                    (SagaState::Compensated, 0, Some(reason))
                } else {
                    (SagaState::Compensating, self.step - 1, Some(reason))
                }
            }
            (true, None) if self.step == 0 => (SagaState::Compensated, 0, None),
            (true, None) => (SagaState::Compensating, self.step - 1, None),
            (true, Some(error)) => (
                SagaState::Failed,
                self.step,
                Some(format!(
                    "compensation of step {} ({step_name}) failed: {error}",
                    self.step
                )),
            ),
        };
        let next_job = if next_state.is_ended() {
            None
        } else {
            Some(
                enqueue_step(tx, self.saga_id, self.saga.step_attempts_max())
                    .await
                    .map_err(|err| match err {
                        EnqueueError::Unexpected(err) => JobError::Database(err),
                        EnqueueError::Arguments(err) => {
                            JobError::Fail(format!("saga step arguments: {err}"))
                        }
                    })?,
            )
        };
        // `last_error` keeps the first failure (why the saga compensates) unless a
        // later one ends it.
        sqlx::query(
            "UPDATE platform.sagas
             SET state = $3::platform.saga_state, step = $4, data = $5,
                 last_error = coalesce($6, last_error), job_id = $7, updated_at = now(),
                 finished_at = CASE WHEN $8 THEN now() END
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(self.ctx.tenant_id.as_uuid())
        .bind(self.saga_id.as_uuid())
        .bind(next_state.as_str())
        .bind(i32::try_from(next_step).expect("BUG: steps are bounded"))
        .bind(&*data)
        .bind(last_error)
        .bind(next_job.map(JobId::into_uuid))
        .bind(next_state.is_ended())
        .execute(&mut **tx)
        .await?;
        if next_state.is_ended() {
            tracing::info!(saga_id = %self.saga_id, state = next_state.as_str(), "saga ended");
        }
        Ok(())
    }

    async fn log(
        &self,
        tx: &mut TenantTx,
        compensating: bool,
        error: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO platform.saga_steps
                 (tenant_id, saga_id, n, step, step_name, action, outcome, attempt, error, job_id)
             SELECT $1, $2, coalesce(max(n), 0) + 1, $3, $4, $5::platform.saga_action,
                    $6::platform.saga_step_outcome, $7, $8, $9
             FROM platform.saga_steps WHERE tenant_id = $1 AND saga_id = $2",
        )
        .bind(self.ctx.tenant_id.as_uuid())
        .bind(self.saga_id.as_uuid())
        .bind(i32::try_from(self.step).expect("BUG: steps are bounded"))
        .bind(self.saga.steps()[self.step])
        .bind(if compensating {
            "compensate"
        } else {
            "execute"
        })
        .bind(if error.is_some() { "failed" } else { "done" })
        .bind(i32::try_from(self.ctx.attempt).expect("BUG: attempts are bounded"))
        .bind(error)
        .bind(self.ctx.job_id.as_uuid())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}
