//! Sagas on a real PostgreSQL, driven by real workers: completion, compensation in
//! reverse, a compensation that fails, a worker that loses its lease mid-step, a step
//! that kills its worker every time, and the invariant that a saga never stops between
//! states.

use std::sync::Arc;
use std::time::Duration;

use db::TenantTx;
use kernel::{JobId, TenantId};
use platform::jobs::worker::{Outcome, Worker, WorkerConfig};
use platform::jobs::{Registry, admin};
use platform::sagas::{
    self, Saga, SagaContext, SagaId, SagaRegistry, SagaState, SagaStep, StepError, StuckReason,
};
use serde::{Deserialize, Serialize};
use sqlx::Executor;
use time::OffsetDateTime;
use tokio::sync::watch;

use super::{TestDb, config, setup, wait_until};

/// Three steps, each writing a row into `public.saga_effects`; each compensation
/// deletes its step's row. The data says what to break.
struct Booking;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Plan {
    /// This step fails on every attempt (after writing its effect).
    fail_step: Option<usize>,
    /// This compensation fails on every attempt (after deleting).
    fail_compensation: Option<usize>,
    /// This step sleeps this long on its first attempt, before its effect.
    slow_step: Option<(usize, u64)>,
    /// Filled in by the first step, read by its compensation: data a step remembers.
    reserved: Option<usize>,
}

impl Saga for Booking {
    const NAME: &'static str = "test.booking";
    const STEPS: &'static [&'static str] = &["reserve", "charge", "confirm"];
    const STEP_ATTEMPTS_MAX: u32 = 3;
    type Data = Plan;

    async fn execute(
        &self,
        ctx: &SagaContext,
        tx: &mut TenantTx,
        plan: &mut Plan,
    ) -> Result<(), StepError> {
        if let Some((step, sleep_ms)) = plan.slow_step
            && step == ctx.step
            && ctx.attempt == 1
        {
            tokio::time::sleep(Duration::from_millis(sleep_ms)).await;
        }
        sqlx::query(
            "INSERT INTO public.saga_effects (tenant_id, saga_id, step) VALUES ($1, $2, $3)",
        )
        .bind(ctx.tenant_id.as_uuid())
        .bind(ctx.saga_id.as_uuid())
        .bind(i32::try_from(ctx.step).unwrap())
        .execute(&mut **tx)
        .await?;
        if ctx.step == 0 {
            plan.reserved = Some(7);
        }
        if plan.fail_step == Some(ctx.step) {
            return Err(StepError::Retry(format!("step {} refused", ctx.step)));
        }
        Ok(())
    }

    async fn compensate(
        &self,
        ctx: &SagaContext,
        tx: &mut TenantTx,
        plan: &mut Plan,
    ) -> Result<(), StepError> {
        if ctx.step == 0 && plan.reserved != Some(7) {
            return Err(StepError::Fail(
                "the reservation was not remembered".to_owned(),
            ));
        }
        sqlx::query(
            "DELETE FROM public.saga_effects WHERE tenant_id = $1 AND saga_id = $2 AND step = $3",
        )
        .bind(ctx.tenant_id.as_uuid())
        .bind(ctx.saga_id.as_uuid())
        .bind(i32::try_from(ctx.step).unwrap())
        .execute(&mut **tx)
        .await?;
        if plan.fail_compensation == Some(ctx.step) {
            return Err(StepError::Retry("cannot undo".to_owned()));
        }
        Ok(())
    }
}

async fn saga_setup() -> TestDb {
    let db = setup().await;
    db.admin
        .execute(
            "CREATE TABLE public.saga_effects (tenant_id uuid NOT NULL, saga_id uuid NOT NULL, step integer NOT NULL);
             ALTER TABLE public.saga_effects ENABLE ROW LEVEL SECURITY;
             ALTER TABLE public.saga_effects FORCE ROW LEVEL SECURITY;
             CREATE POLICY tenant_isolation ON public.saga_effects
                 USING (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid)
                 WITH CHECK (tenant_id = nullif(current_setting('tenet.tenant_id', true), '')::uuid);
             GRANT SELECT, INSERT, DELETE ON public.saga_effects TO tenet_app;",
        )
        .await
        .unwrap();
    db
}

fn saga_worker(db: &TestDb, config: WorkerConfig) -> Worker {
    let jobs = Registry::new().register(SagaStep::new(SagaRegistry::new().register(Booking)));
    Worker::new(db.owner.clone(), db.app.clone(), jobs, config)
}

async fn start(db: &TestDb, tenant_id: TenantId, plan: Plan) -> SagaId {
    let mut tx = TenantTx::begin_as(&db.app, tenant_id, "system", None)
        .await
        .unwrap();
    let saga_id = sagas::start::<Booking>(&mut tx, plan).await.unwrap();
    tx.commit().await.unwrap();
    saga_id
}

async fn saga(db: &TestDb, tenant_id: TenantId, saga_id: SagaId) -> sagas::SagaRow {
    let mut tx = TenantTx::begin_as(&db.app, tenant_id, "system", None)
        .await
        .unwrap();
    let row = sagas::get(&mut tx, saga_id)
        .await
        .unwrap()
        .expect("the saga exists");
    tx.rollback().await.unwrap();
    row
}

/// The step log as `action step outcome@attempt`.
async fn log(db: &TestDb, tenant_id: TenantId, saga_id: SagaId) -> Vec<String> {
    let mut tx = TenantTx::begin_as(&db.app, tenant_id, "system", None)
        .await
        .unwrap();
    let log = sagas::step_log(&mut tx, saga_id).await.unwrap();
    tx.rollback().await.unwrap();
    log.iter()
        .map(|row| {
            format!(
                "{} {} {}@{}",
                row.action, row.step_name, row.outcome, row.attempt
            )
        })
        .collect()
}

/// The steps whose effect is present, with how many times.
async fn effects(db: &TestDb, saga_id: SagaId) -> Vec<(i32, i64)> {
    sqlx::query_as(
        "SELECT step, count(*) FROM public.saga_effects WHERE saga_id = $1 GROUP BY step ORDER BY step",
    )
    .bind(saga_id.as_uuid())
    .fetch_all(&db.admin)
    .await
    .unwrap()
}

/// Runs the worker until nothing is runnable.
async fn drain(worker: &Worker) {
    for _ in 0..100 {
        if worker.try_run_one().await.unwrap().is_none() {
            return;
        }
    }
    panic!("the saga jobs did not drain");
}

#[tokio::test]
async fn a_saga_completes_with_each_steps_effect_applied_once() {
    let db = saga_setup().await;
    let tenant_id = TenantId::generate();
    let saga_id = start(&db, tenant_id, Plan::default()).await;
    assert_eq!(
        saga(&db, tenant_id, saga_id).await.state(),
        SagaState::Running
    );
    drain(&saga_worker(&db, config("w"))).await;

    let row = saga(&db, tenant_id, saga_id).await;
    assert_eq!(row.state(), SagaState::Completed);
    assert!(row.job_id.is_none() && row.finished_at.is_some() && row.last_error.is_none());
    assert_eq!(row.data["reserved"], 7, "data changed by a step is kept");
    assert_eq!(effects(&db, saga_id).await, [(0, 1), (1, 1), (2, 1)]);
    assert_eq!(
        log(&db, tenant_id, saga_id).await,
        [
            "execute reserve done@1",
            "execute charge done@1",
            "execute confirm done@1"
        ]
    );
    let n_succeeded: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM platform.jobs WHERE kind = 'platform.saga_step' AND state = 'succeeded'",
    )
    .fetch_one(&db.admin)
    .await
    .unwrap();
    assert_eq!(n_succeeded, 3);
}

#[tokio::test]
async fn a_saga_started_in_a_rolled_back_transaction_does_not_exist() {
    let db = saga_setup().await;
    let tenant_id = TenantId::generate();
    let mut tx = TenantTx::begin_as(&db.app, tenant_id, "system", None)
        .await
        .unwrap();
    let saga_id = sagas::start::<Booking>(&mut tx, Plan::default())
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    let mut tx = TenantTx::begin_as(&db.app, tenant_id, "system", None)
        .await
        .unwrap();
    assert!(sagas::get(&mut tx, saga_id).await.unwrap().is_none());
    tx.rollback().await.unwrap();
    assert_eq!(
        saga_worker(&db, config("w")).try_run_one().await.unwrap(),
        None
    );
}

#[tokio::test]
async fn a_failing_step_compensates_the_completed_steps_in_reverse_and_ends_compensated() {
    let db = saga_setup().await;
    let tenant_id = TenantId::generate();
    let saga_id = start(
        &db,
        tenant_id,
        Plan {
            fail_step: Some(2),
            ..Plan::default()
        },
    )
    .await;
    drain(&saga_worker(&db, config("w"))).await;

    let row = saga(&db, tenant_id, saga_id).await;
    assert_eq!(row.state(), SagaState::Compensated);
    assert_eq!(
        row.last_error.as_deref(),
        Some("step 2 (confirm) failed: step 2 refused")
    );
    assert!(row.job_id.is_none() && row.finished_at.is_some());
    assert_eq!(effects(&db, saga_id).await, [], "every effect undone");
    assert_eq!(
        log(&db, tenant_id, saga_id).await,
        [
            "execute reserve done@1",
            "execute charge done@1",
            // Retried by the job's backoff, then given up on its last attempt.
            "execute confirm failed@3",
            "compensate charge done@1",
            "compensate reserve done@1",
        ]
    );
}

#[tokio::test]
async fn a_failing_first_step_ends_compensated_with_nothing_to_undo() {
    let db = saga_setup().await;
    let tenant_id = TenantId::generate();
    let saga_id = start(
        &db,
        tenant_id,
        Plan {
            fail_step: Some(0),
            ..Plan::default()
        },
    )
    .await;
    drain(&saga_worker(&db, config("w"))).await;
    let row = saga(&db, tenant_id, saga_id).await;
    assert_eq!(row.state(), SagaState::Compensated);
    assert_eq!(effects(&db, saga_id).await, []);
    assert_eq!(
        log(&db, tenant_id, saga_id).await,
        ["execute reserve failed@3"]
    );
}

#[tokio::test]
async fn a_failing_compensation_ends_the_saga_failed_with_the_reason() {
    let db = saga_setup().await;
    let tenant_id = TenantId::generate();
    let saga_id = start(
        &db,
        tenant_id,
        Plan {
            fail_step: Some(2),
            fail_compensation: Some(1),
            ..Plan::default()
        },
    )
    .await;
    drain(&saga_worker(&db, config("w"))).await;

    let row = saga(&db, tenant_id, saga_id).await;
    assert_eq!(row.state(), SagaState::Failed);
    assert_eq!(
        row.last_error.as_deref(),
        Some("compensation of step 1 (charge) failed: cannot undo")
    );
    assert!(row.job_id.is_none() && row.finished_at.is_some());
    // The compensation's own partial effect rolled back; step 0 is left for a person.
    assert_eq!(effects(&db, saga_id).await, [(0, 1), (1, 1)]);
    assert_eq!(
        log(&db, tenant_id, saga_id).await,
        [
            "execute reserve done@1",
            "execute charge done@1",
            "execute confirm failed@3",
            "compensate charge failed@3",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_whose_worker_loses_its_lease_mid_step_runs_once_in_effect() {
    let db = saga_setup().await;
    let tenant_id = TenantId::generate();
    let saga_id = start(
        &db,
        tenant_id,
        Plan {
            slow_step: Some((1, 1500)),
            ..Plan::default()
        },
    )
    .await;
    let mut short = config("late");
    short.lease = Duration::from_millis(300);
    let late = Arc::new(saga_worker(&db, short));
    let rescuer = saga_worker(&db, config("rescuer"));
    assert!(matches!(
        late.try_run_one().await.unwrap(),
        Some(Outcome::Succeeded(_))
    ));

    // The late worker takes step 1 and sleeps in it, holding the saga's row, well past
    // its lease (nothing renews it: `try_run_one` runs no heartbeat).
    let running = tokio::spawn({
        let late = late.clone();
        async move { late.try_run_one().await.unwrap() }
    });
    wait_until(
        &db,
        "SELECT count(*) = 1 FROM platform.jobs j
         JOIN platform.job_leases l ON l.tenant_id = j.tenant_id AND l.id = j.lease_id
         WHERE j.state = 'running' AND j.worker_id = 'late' AND l.expires_at < now()",
    )
    .await;
    // The rescuer takes the job back and runs step 1 again; it waits on the row until
    // the late worker's completion fails and its transaction rolls back.
    let rescued = rescuer.try_run_one().await.unwrap();
    assert!(
        matches!(rescued, Some(Outcome::Succeeded(_))),
        "{rescued:?}"
    );
    assert!(matches!(
        running.await.unwrap(),
        Some(Outcome::LeaseLost(_))
    ));
    drain(&rescuer).await;

    let row = saga(&db, tenant_id, saga_id).await;
    assert_eq!(row.state(), SagaState::Completed);
    assert_eq!(effects(&db, saga_id).await, [(0, 1), (1, 1), (2, 1)]);
    assert_eq!(
        log(&db, tenant_id, saga_id).await,
        [
            "execute reserve done@1",
            "execute charge done@2",
            "execute confirm done@1"
        ]
    );
}

#[tokio::test]
async fn a_step_that_kills_its_worker_every_time_still_ends_the_saga() {
    let db = saga_setup().await;
    let tenant_id = TenantId::generate();
    let saga_id = start(&db, tenant_id, Plan::default()).await;
    let worker = saga_worker(&db, config("w"));
    assert!(matches!(
        worker.try_run_one().await.unwrap(),
        Some(Outcome::Succeeded(_))
    ));
    // Step 1's job: every one of the step's attempts died with its worker and was
    // rescued, as the rescue query leaves it.
    let job_id = saga(&db, tenant_id, saga_id).await.job_id.unwrap();
    sqlx::query(
        "UPDATE platform.jobs SET attempts = 3, state = 'retrying',
             last_error = 'lease expired: worker w stopped renewing it'
         WHERE id = $1",
    )
    .bind(job_id)
    .execute(&db.admin)
    .await
    .unwrap();
    drain(&worker).await;

    let row = saga(&db, tenant_id, saga_id).await;
    assert_eq!(row.state(), SagaState::Compensated);
    assert_eq!(
        row.last_error.as_deref(),
        Some("step 1 (charge) failed: lease expired: worker w stopped renewing it")
    );
    assert_eq!(effects(&db, saga_id).await, []);
    assert_eq!(
        log(&db, tenant_id, saga_id).await,
        [
            "execute reserve done@1",
            "execute charge failed@4",
            "compensate reserve done@1"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_saga_is_never_observed_stopped_without_a_job_driving_it() {
    let db = saga_setup().await;
    let tenants = [TenantId::generate(), TenantId::generate()];
    let plans = [
        Plan::default(),
        Plan {
            fail_step: Some(1),
            ..Plan::default()
        },
        Plan {
            fail_step: Some(2),
            fail_compensation: Some(0),
            ..Plan::default()
        },
        Plan {
            slow_step: Some((0, 30)),
            ..Plan::default()
        },
    ];
    let mut started = Vec::new();
    for n in 0..24 {
        let tenant_id = tenants[n % 2];
        let plan = plans[n % plans.len()].clone();
        started.push((
            tenant_id,
            start(&db, tenant_id, plan).await,
            n % plans.len(),
        ));
    }
    let (stop, stopped) = watch::channel(false);
    let workers: Vec<_> = (0..2)
        .map(|n| {
            let mut config = config(&format!("w{n}"));
            config.concurrency = 4;
            tokio::spawn(Arc::new(saga_worker(&db, config)).run(stopped.clone()))
        })
        .collect();
    // Watch while they run: every unfinished saga has a pending job, in every snapshot.
    let mut n_observations = 0;
    loop {
        let (n_unended, n_unattended): (i64, i64) = sqlx::query_as(
            "SELECT count(*),
                    count(*) FILTER (WHERE NOT EXISTS (
                        SELECT 1 FROM platform.jobs j
                        WHERE j.tenant_id = s.tenant_id AND j.id = s.job_id
                          AND j.state IN ('scheduled', 'retrying', 'running')))
             FROM platform.sagas s WHERE s.state IN ('running', 'compensating')",
        )
        .fetch_one(&db.admin)
        .await
        .unwrap();
        assert_eq!(n_unattended, 0, "a saga stopped between states");
        n_observations += 1;
        if n_unended == 0 {
            break;
        }
        assert!(n_observations < 20_000, "the sagas did not end");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.send(true).unwrap();
    for worker in workers {
        worker.await.unwrap();
    }
    assert!(n_observations > 1);
    for (tenant_id, saga_id, plan) in started {
        let expected = [
            SagaState::Completed,
            SagaState::Compensated,
            SagaState::Failed,
            SagaState::Completed,
        ][plan];
        assert_eq!(
            saga(&db, tenant_id, saga_id).await.state(),
            expected,
            "{saga_id}"
        );
    }
    assert!(
        sagas::stuck_sagas(
            &db.owner,
            OffsetDateTime::now_utc(),
            Duration::from_secs(3600)
        )
        .await
        .unwrap()
        .is_empty()
    );
}

#[tokio::test]
async fn stuck_sagas_lists_a_saga_whose_job_was_cancelled_and_one_left_too_long() {
    let db = saga_setup().await;
    let tenant_id = TenantId::generate();
    let cancelled = start(&db, tenant_id, Plan::default()).await;
    let waiting = start(&db, tenant_id, Plan::default()).await;
    let now = OffsetDateTime::now_utc();
    assert!(
        sagas::stuck_sagas(&db.owner, now, Duration::from_secs(3600))
            .await
            .unwrap()
            .is_empty()
    );
    let job_id = saga(&db, tenant_id, cancelled).await.job_id.unwrap();
    admin::cancel(
        &mut db.owner.acquire().await.unwrap(),
        JobId::new_unchecked(job_id),
    )
    .await
    .unwrap();
    let later = now + time::Duration::hours(2);
    let stuck = sagas::stuck_sagas(&db.owner, later, Duration::from_secs(3600))
        .await
        .unwrap();
    let reasons: Vec<(uuid::Uuid, StuckReason)> =
        stuck.iter().map(|s| (s.saga_id, s.reason)).collect();
    assert_eq!(reasons.len(), 2, "{stuck:?}");
    assert!(reasons.contains(&(*cancelled.as_uuid(), StuckReason::NoPendingJob)));
    assert!(reasons.contains(&(*waiting.as_uuid(), StuckReason::Overdue)));

    // `tenet jobs retry` on the cancelled job resumes the saga.
    admin::retry(
        &mut db.owner.acquire().await.unwrap(),
        JobId::new_unchecked(job_id),
    )
    .await
    .unwrap();
    drain(&saga_worker(&db, config("w"))).await;
    assert_eq!(
        saga(&db, tenant_id, cancelled).await.state(),
        SagaState::Completed
    );
    wait_until(
        &db,
        "SELECT count(*) = 2 FROM platform.sagas WHERE state = 'completed'",
    )
    .await;
}

#[tokio::test]
async fn a_tenant_sees_only_its_own_sagas_and_their_steps() {
    let db = saga_setup().await;
    let (a, b) = (TenantId::generate(), TenantId::generate());
    let of_a = start(&db, a, Plan::default()).await;
    let of_b = start(&db, b, Plan::default()).await;
    drain(&saga_worker(&db, config("w"))).await;

    let mut tx = TenantTx::begin_as(&db.app, b, "system", None)
        .await
        .unwrap();
    assert!(sagas::get(&mut tx, of_a).await.unwrap().is_none());
    assert!(sagas::step_log(&mut tx, of_a).await.unwrap().is_empty());
    assert_eq!(sagas::step_log(&mut tx, of_b).await.unwrap().len(), 3);
    let n_updated = sqlx::query("UPDATE platform.sagas SET last_error = 'x' WHERE id = $1")
        .bind(of_a.as_uuid())
        .execute(&mut *tx)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(n_updated, 0);
    tx.rollback().await.unwrap();

    // Operators see both, on the owner pool.
    let all = sagas::list_all(&db.owner, Some(SagaState::Completed), None, 10)
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    let of_a_only = sagas::list_all(&db.owner, None, Some(a), 10).await.unwrap();
    assert_eq!(of_a_only.len(), 1);
    assert_eq!(of_a_only[0].id, *of_a.as_uuid());
}
