//! Schedules on a real PostgreSQL: one run per slot across concurrent schedulers, the
//! catch-up policies, the slot ledger, enabling and disabling, row-level security, the
//! time zone at the database boundary, and the loop at the database's clock.

use std::sync::Arc;
use std::time::Duration;

use db::TenantTx;
use kernel::TenantId;
use platform::schedules::scheduler::{Scheduler, SchedulerConfig, TickReport};
use platform::schedules::{
    self, CATCH_UP_ALL_MAX, CatchUp, ScheduleChange, ScheduleError, ScheduleId, ScheduleSpec,
};
use time::OffsetDateTime;
use time::macros::datetime;
use tokio::sync::watch;
use uuid::Uuid;

use super::{Effect, EffectArgs, TestDb, config, setup, wait_until, worker};

fn args() -> EffectArgs {
    EffectArgs {
        fail_first: false,
        sleep_ms: 0,
    }
}

fn spec(name: &str, cron: &str, time_zone: &str) -> ScheduleSpec<Effect> {
    ScheduleSpec::new(name, cron, time_zone, args())
}

async fn create(
    db: &TestDb,
    tenant_id: TenantId,
    spec: ScheduleSpec<Effect>,
    now: OffsetDateTime,
) -> ScheduleId {
    let mut tx = TenantTx::begin_as(&db.app, tenant_id, "system", None)
        .await
        .unwrap();
    let schedule_id = schedules::create(&mut tx, spec, now).await.unwrap();
    tx.commit().await.unwrap();
    schedule_id
}

fn scheduler(db: &TestDb, name: &str) -> Scheduler {
    Scheduler::new(db.owner.clone(), db.app.clone(), SchedulerConfig::new(name))
}

/// The slots fired for a schedule, oldest first, as the ledger has them.
async fn fired(db: &TestDb, schedule_id: ScheduleId) -> Vec<OffsetDateTime> {
    sqlx::query_scalar(
        "SELECT slot_at FROM platform.schedule_slots WHERE schedule_id = $1 ORDER BY slot_at",
    )
    .bind(schedule_id.as_uuid())
    .fetch_all(&db.admin)
    .await
    .unwrap()
}

async fn n_jobs(db: &TestDb) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM platform.jobs")
        .fetch_one(&db.admin)
        .await
        .unwrap()
}

async fn row(db: &TestDb, tenant_id: TenantId, schedule_id: ScheduleId) -> schedules::ScheduleRow {
    let mut tx = TenantTx::begin_as(&db.app, tenant_id, "system", None)
        .await
        .unwrap();
    let row = schedules::get(&mut tx, schedule_id).await.unwrap();
    tx.rollback().await.unwrap();
    row
}

fn minutes(n: i64) -> time::Duration {
    time::Duration::minutes(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_schedulers_on_separate_pools_fire_each_slot_exactly_once() {
    let db = setup().await;
    let start = datetime!(2026-06-01 00:00 UTC);
    let (a, b) = (TenantId::generate(), TenantId::generate());
    let before = start - time::Duration::seconds(1);
    // (schedule, slots expected over minutes 0..=9)
    let expected = [
        (
            create(
                &db,
                a,
                spec("every-minute", "* * * * *", "UTC").catch_up(CatchUp::All),
                before,
            )
            .await,
            10,
        ),
        (
            create(
                &db,
                a,
                spec("even-minutes", "*/2 * * * *", "America/New_York"),
                before,
            )
            .await,
            5,
        ),
        (
            create(
                &db,
                b,
                spec("every-minute", "* * * * *", "Europe/Paris").catch_up(CatchUp::None),
                before,
            )
            .await,
            10,
        ),
        (
            create(
                &db,
                b,
                spec("thirds", "*/3 * * * *", "UTC").catch_up(CatchUp::All),
                before,
            )
            .await,
            4,
        ),
    ];
    let mut schedulers = Vec::new();
    for n in 0..4 {
        let (owner, app) = db.config.connect(4).await.unwrap();
        schedulers.push(Arc::new(Scheduler::new(
            owner,
            app,
            SchedulerConfig::new(format!("s{n}")),
        )));
    }
    let mut totals = TickReport::default();
    for minute in 0..10 {
        let mut ticks = tokio::task::JoinSet::new();
        for (n, scheduler) in schedulers.iter().enumerate() {
            let scheduler = scheduler.clone();
            ticks.spawn(async move {
                let mut sum = TickReport::default();
                // Each ticks several times within the minute, at its own clock.
                for round in 0..5_i64 {
                    let now = start
                        + minutes(minute)
                        + time::Duration::milliseconds(round * 900 + n as i64 * 7);
                    let report = scheduler.tick(now).await.unwrap();
                    sum.n_fired += report.n_fired;
                    sum.n_already_fired += report.n_already_fired;
                    sum.n_claims_lost += report.n_claims_lost;
                }
                sum
            });
        }
        while let Some(sum) = ticks.join_next().await {
            let sum = sum.unwrap();
            totals.n_fired += sum.n_fired;
            totals.n_already_fired += sum.n_already_fired;
            totals.n_claims_lost += sum.n_claims_lost;
        }
    }

    for (schedule_id, n_slots) in expected {
        let slots = fired(&db, schedule_id).await;
        assert_eq!(slots.len(), n_slots, "{schedule_id}: {slots:?}");
    }
    assert_eq!(totals.n_fired, 29, "{totals:?}");
    // One job per ledger row, and no job without one.
    let (n_ledger, n_jobs, n_joined): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM platform.schedule_slots),
                (SELECT count(*) FROM platform.jobs),
                (SELECT count(DISTINCT j.id) FROM platform.jobs j
                 JOIN platform.schedule_slots s ON s.tenant_id = j.tenant_id AND s.job_id = j.id)",
    )
    .fetch_one(&db.admin)
    .await
    .unwrap();
    assert_eq!((n_ledger, n_jobs, n_joined), (29, 29, 29));
}

#[tokio::test]
async fn after_downtime_each_catch_up_policy_fires_what_it_states() {
    let db = setup().await;
    let tenant_id = TenantId::generate();
    let created = datetime!(2026-05-01 09:30 UTC);
    let skip = create(&db, tenant_id, spec("skip", "0 * * * *", "UTC"), created).await;
    let all = create(
        &db,
        tenant_id,
        spec("all", "0 * * * *", "UTC").catch_up(CatchUp::All),
        created,
    )
    .await;
    let none = create(
        &db,
        tenant_id,
        spec("none", "0 * * * *", "UTC").catch_up(CatchUp::None),
        created,
    )
    .await;
    let scheduler = scheduler(&db, "s");

    // Every scheduler was down from 09:30 to 13:20: slots 10:00 … 13:00 were missed.
    let report = scheduler
        .tick(datetime!(2026-05-01 13:20 UTC))
        .await
        .unwrap();
    assert_eq!((report.n_schedules, report.n_fired), (3, 5));
    assert_eq!(fired(&db, skip).await, [datetime!(2026-05-01 13:00 UTC)]);
    assert_eq!(
        fired(&db, all).await,
        [
            datetime!(2026-05-01 10:00 UTC),
            datetime!(2026-05-01 11:00 UTC),
            datetime!(2026-05-01 12:00 UTC),
            datetime!(2026-05-01 13:00 UTC),
        ]
    );
    assert!(fired(&db, none).await.is_empty());
    // All three continue from the next future slot, and fire it on time.
    for schedule_id in [skip, all, none] {
        let row = row(&db, tenant_id, schedule_id).await;
        assert_eq!(row.next_slot_at, Some(datetime!(2026-05-01 14:00 UTC)));
    }
    assert_eq!(
        row(&db, tenant_id, none).await.last_slot_at,
        None,
        "none fired nothing"
    );
    let report = scheduler
        .tick(datetime!(2026-05-01 14:00:02 UTC))
        .await
        .unwrap();
    assert_eq!(report.n_fired, 3);
    assert_eq!(fired(&db, none).await, [datetime!(2026-05-01 14:00 UTC)]);

    // `all` fires at most its cap after a long downtime: the most recent slots.
    let minutely = create(
        &db,
        tenant_id,
        spec("minutely", "* * * * *", "UTC").catch_up(CatchUp::All),
        datetime!(2026-05-01 14:00:30 UTC),
    )
    .await;
    scheduler
        .tick(datetime!(2026-05-01 20:00:30 UTC))
        .await
        .unwrap();
    let slots = fired(&db, minutely).await;
    assert_eq!(slots.len(), CATCH_UP_ALL_MAX);
    assert_eq!(slots.last(), Some(&datetime!(2026-05-01 20:00 UTC)));
    // The hourly ones caught up too: `skip` 20:00, `all` 15:00 … 20:00, and `none`
    // 20:00, which is only 30 s late.
    assert_eq!(
        n_jobs(&db).await,
        5 + 3 + 1 + 6 + 1 + CATCH_UP_ALL_MAX as i64
    );
}

#[tokio::test]
async fn a_slot_in_the_ledger_never_fires_again_even_when_the_schedule_points_back_at_it() {
    let db = setup().await;
    let tenant_id = TenantId::generate();
    let schedule_id = create(
        &db,
        tenant_id,
        spec("hourly", "0 * * * *", "UTC"),
        datetime!(2026-05-01 09:30 UTC),
    )
    .await;
    let scheduler = scheduler(&db, "s");
    assert_eq!(
        scheduler
            .tick(datetime!(2026-05-01 10:00:01 UTC))
            .await
            .unwrap()
            .n_fired,
        1
    );
    // Its job finishes: the jobs' unique index no longer knows the slot.
    sqlx::query("UPDATE platform.jobs SET state = 'succeeded', finished_at = now()")
        .execute(&db.admin)
        .await
        .unwrap();
    // A restored backup, a bug or an operator sets the schedule back to that slot.
    sqlx::query("UPDATE platform.schedules SET next_slot_at = '2026-05-01 10:00Z'")
        .execute(&db.admin)
        .await
        .unwrap();
    let report = scheduler
        .tick(datetime!(2026-05-01 10:00:30 UTC))
        .await
        .unwrap();
    assert_eq!((report.n_fired, report.n_already_fired), (0, 1));
    assert_eq!(n_jobs(&db).await, 1);
    assert_eq!(
        row(&db, tenant_id, schedule_id).await.next_slot_at,
        Some(datetime!(2026-05-01 11:00 UTC))
    );
}

#[tokio::test]
async fn a_disabled_schedule_does_not_fire_and_resumes_from_its_next_slot_when_enabled() {
    let db = setup().await;
    let tenant_id = TenantId::generate();
    let schedule_id = create(
        &db,
        tenant_id,
        spec("hourly", "0 * * * *", "UTC").catch_up(CatchUp::All),
        datetime!(2026-05-01 09:30 UTC),
    )
    .await;
    let mut tx = TenantTx::begin_as(&db.app, tenant_id, "system", None)
        .await
        .unwrap();
    schedules::disable(&mut tx, schedule_id).await.unwrap();
    tx.commit().await.unwrap();
    let scheduler = scheduler(&db, "s");
    let report = scheduler
        .tick(datetime!(2026-05-01 12:00:01 UTC))
        .await
        .unwrap();
    assert_eq!((report.n_schedules, report.n_fired), (0, 0));
    let disabled = row(&db, tenant_id, schedule_id).await;
    assert!(!disabled.enabled && disabled.next_slot_at.is_none());

    let mut tx = TenantTx::begin_as(&db.app, tenant_id, "system", None)
        .await
        .unwrap();
    schedules::enable(&mut tx, schedule_id, datetime!(2026-05-01 12:30 UTC))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    // Slots that came while it was disabled are not caught up, even under `all`.
    scheduler
        .tick(datetime!(2026-05-01 13:00:01 UTC))
        .await
        .unwrap();
    assert_eq!(
        fired(&db, schedule_id).await,
        [datetime!(2026-05-01 13:00 UTC)]
    );
}

#[tokio::test]
async fn a_tenant_sees_and_changes_only_its_own_schedules() {
    let db = setup().await;
    let (a, b) = (TenantId::generate(), TenantId::generate());
    let now = datetime!(2026-05-01 09:30 UTC);
    let of_a = create(&db, a, spec("nightly", "0 2 * * *", "UTC"), now).await;
    // The same name in another tenant is another schedule.
    let of_b = create(&db, b, spec("nightly", "0 3 * * *", "UTC"), now).await;

    let mut tx = TenantTx::begin_as(&db.app, b, "system", None)
        .await
        .unwrap();
    let listed: Vec<Uuid> = schedules::list(&mut tx)
        .await
        .unwrap()
        .iter()
        .map(|row| row.id)
        .collect();
    assert_eq!(listed, [*of_b.as_uuid()]);
    assert!(matches!(
        schedules::get(&mut tx, of_a).await,
        Err(ScheduleError::NotFound)
    ));
    assert!(matches!(
        schedules::disable(&mut tx, of_a).await,
        Err(ScheduleError::NotFound)
    ));
    assert!(matches!(
        schedules::delete(&mut tx, of_a).await,
        Err(ScheduleError::NotFound)
    ));
    assert!(matches!(
        schedules::update(&mut tx, of_a, ScheduleChange::default(), now).await,
        Err(ScheduleError::NotFound)
    ));
    let n_seen: i64 = sqlx::query_scalar("SELECT count(*) FROM platform.schedules WHERE id = $1")
        .bind(of_a.as_uuid())
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(n_seen, 0);
    // Another tenant's id in a ledger row is refused by the policy's check.
    let forged = sqlx::query(
        "INSERT INTO platform.schedule_slots (tenant_id, schedule_id, slot_at, job_id)
         VALUES ($1, $2, now(), gen_random_uuid())",
    )
    .bind(a.as_uuid())
    .bind(of_a.as_uuid())
    .execute(&mut *tx)
    .await;
    assert!(forged.is_err());
    tx.rollback().await.unwrap();

    // Operators see both, on the owner pool.
    assert_eq!(schedules::list_all(&db.owner, None).await.unwrap().len(), 2);
    assert_eq!(
        schedules::list_all(&db.owner, Some(a)).await.unwrap().len(),
        1
    );
    assert_eq!(
        row(&db, a, of_a).await.next_slot_at,
        Some(datetime!(2026-05-02 02:00 UTC))
    );
}

#[tokio::test]
async fn definitions_are_validated_and_a_changed_cron_takes_effect_from_now() {
    let db = setup().await;
    let tenant_id = TenantId::generate();
    let now = datetime!(2026-05-01 09:30 UTC);
    let schedule_id = create(&db, tenant_id, spec("report", "0 * * * *", "UTC"), now).await;
    let mut tx = TenantTx::begin_as(&db.app, tenant_id, "system", None)
        .await
        .unwrap();
    assert!(matches!(
        schedules::create(&mut tx, spec("report", "0 * * * *", "UTC"), now).await,
        Err(ScheduleError::NameTaken)
    ));
    tx.rollback().await.unwrap();
    let mut tx = TenantTx::begin_as(&db.app, tenant_id, "system", None)
        .await
        .unwrap();
    assert!(matches!(
        schedules::create(&mut tx, spec("bad", "61 * * * *", "UTC"), now).await,
        Err(ScheduleError::Cron(_))
    ));
    assert!(matches!(
        schedules::create(&mut tx, spec("bad", "0 * * * *", "Nowhere/Atlantis"), now).await,
        Err(ScheduleError::Cron(_))
    ));
    assert!(matches!(
        schedules::create(&mut tx, spec("", "0 * * * *", "UTC"), now).await,
        Err(ScheduleError::InvalidName)
    ));
    let changed = schedules::update(
        &mut tx,
        schedule_id,
        ScheduleChange {
            cron: Some("15 9 * * mon-fri".to_owned()),
            time_zone: Some("America/New_York".to_owned()),
            catch_up: Some(CatchUp::None),
            ..ScheduleChange::default()
        },
        now,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    // Friday 1 May 2026, 09:15 EDT.
    assert_eq!(changed.next_slot_at, Some(datetime!(2026-05-01 13:15 UTC)));
    assert_eq!(changed.catch_up(), CatchUp::None);
    assert_eq!(changed.cron, "15 9 * * mon-fri");
}

#[tokio::test]
async fn a_new_york_slot_in_the_spring_forward_gap_fires_once_at_three_oclock() {
    let db = setup().await;
    let tenant_id = TenantId::generate();
    let schedule_id = create(
        &db,
        tenant_id,
        spec("nightly", "30 2 * * *", "America/New_York"),
        datetime!(2026-03-07 12:00 UTC),
    )
    .await;
    assert_eq!(
        row(&db, tenant_id, schedule_id).await.next_slot_at,
        Some(datetime!(2026-03-08 07:00 UTC)),
        "02:30 does not exist on 8 March: 03:00 EDT"
    );
    let scheduler = scheduler(&db, "s");
    assert_eq!(
        scheduler
            .tick(datetime!(2026-03-08 06:59:59 UTC))
            .await
            .unwrap()
            .n_fired,
        0
    );
    assert_eq!(
        scheduler
            .tick(datetime!(2026-03-08 07:00:00 UTC))
            .await
            .unwrap()
            .n_fired,
        1
    );
    assert_eq!(
        scheduler
            .tick(datetime!(2026-03-08 07:30:00 UTC))
            .await
            .unwrap()
            .n_fired,
        0
    );
    assert_eq!(
        row(&db, tenant_id, schedule_id).await.next_slot_at,
        Some(datetime!(2026-03-09 06:30 UTC))
    );
}

#[tokio::test]
async fn missed_slots_lists_schedules_left_unfired_past_the_threshold() {
    let db = setup().await;
    let tenant_id = TenantId::generate();
    let created = datetime!(2026-05-01 09:30 UTC);
    let late = create(&db, tenant_id, spec("late", "0 10 * * *", "UTC"), created).await;
    create(&db, tenant_id, spec("fine", "0 12 * * *", "UTC"), created).await;
    let off = create(
        &db,
        tenant_id,
        spec("off", "0 10 * * *", "UTC").disabled(),
        created,
    )
    .await;
    let now = datetime!(2026-05-01 10:10 UTC);
    let missed = schedules::missed_slots(&db.owner, now, Duration::from_secs(300))
        .await
        .unwrap();
    assert_eq!(missed.len(), 1, "{missed:?}");
    assert_eq!(missed[0].schedule_id, *late.as_uuid());
    assert_eq!(missed[0].next_slot_at, datetime!(2026-05-01 10:00 UTC));
    assert!(missed.iter().all(|m| m.schedule_id != *off.as_uuid()));
    scheduler(&db, "s").tick(now).await.unwrap();
    assert!(
        schedules::missed_slots(&db.owner, now, Duration::from_secs(300))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn the_scheduler_loop_fires_at_the_database_clock_and_the_job_knows_its_slot() {
    let db = setup().await;
    let tenant_id = TenantId::generate();
    let schedule_id = create(
        &db,
        tenant_id,
        spec("minutely", "* * * * *", "UTC"),
        OffsetDateTime::now_utc(),
    )
    .await;
    // Make its slot due now, at the database's clock.
    sqlx::query("UPDATE platform.schedules SET next_slot_at = date_trunc('minute', now())")
        .execute(&db.admin)
        .await
        .unwrap();
    let mut scheduler_config = SchedulerConfig::new("loop");
    scheduler_config.tick_interval = Duration::from_millis(50);
    let scheduler = Arc::new(Scheduler::new(
        db.owner.clone(),
        db.app.clone(),
        scheduler_config,
    ));
    let (stop, stopped) = watch::channel(false);
    let running = tokio::spawn(scheduler.run(stopped));
    wait_until(&db, "SELECT count(*) = 1 FROM platform.schedule_slots").await;
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the scheduler stops promptly")
        .unwrap();

    // A worker runs the job; the job can ask which slot it was fired for.
    let worker = worker(&db, config("w"));
    assert!(matches!(
        worker.try_run_one().await.unwrap(),
        Some(platform::jobs::worker::Outcome::Succeeded(_))
    ));
    let job_id: Uuid = sqlx::query_scalar("SELECT job_id FROM platform.schedule_slots")
        .fetch_one(&db.admin)
        .await
        .unwrap();
    let mut tx = TenantTx::begin_as(&db.app, tenant_id, "system", None)
        .await
        .unwrap();
    let slot = schedules::slot_of(&mut tx, kernel::JobId::new_unchecked(job_id))
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(slot, fired(&db, schedule_id).await.first().copied());
}

#[tokio::test]
async fn a_firing_whose_claim_was_lost_or_whose_schedule_changed_rolls_back() {
    let db = setup().await;
    let tenant_id = TenantId::generate();
    let schedule_id = create(
        &db,
        tenant_id,
        spec("hourly", "0 * * * *", "UTC"),
        datetime!(2026-05-01 09:30 UTC),
    )
    .await;
    let now = datetime!(2026-05-01 10:00:01 UTC);
    let (slow, fast) = (scheduler(&db, "slow"), scheduler(&db, "fast"));

    // The slow scheduler claims it; while held, nobody else can.
    let mut claimed = slow.claim(now).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert!(fast.claim(now).await.unwrap().is_empty());
    // Its claim runs out before it fires; the fast one claims and fires the slot.
    sqlx::query("UPDATE platform.schedules SET claimed_until = now() - interval '1 second'")
        .execute(&db.admin)
        .await
        .unwrap();
    assert_eq!(fast.tick(now).await.unwrap().n_fired, 1);
    let late = slow
        .fire_claimed(claimed.pop().unwrap(), now)
        .await
        .unwrap();
    assert_eq!((late.n_fired, late.n_claims_lost), (0, 1));
    assert_eq!(
        fired(&db, schedule_id).await,
        [datetime!(2026-05-01 10:00 UTC)]
    );

    // An operator's change while a scheduler holds the schedule wins the same way.
    let now = datetime!(2026-05-01 11:00:01 UTC);
    let claimed = slow.claim(now).await.unwrap().pop().unwrap();
    let mut tx = TenantTx::begin_as(&db.app, tenant_id, "system", None)
        .await
        .unwrap();
    schedules::disable(&mut tx, schedule_id).await.unwrap();
    tx.commit().await.unwrap();
    let report = slow.fire_claimed(claimed, now).await.unwrap();
    assert_eq!((report.n_fired, report.n_claims_lost), (0, 1));
    assert_eq!(fired(&db, schedule_id).await.len(), 1);
    assert_eq!(n_jobs(&db).await, 1);
}

#[tokio::test]
async fn a_schedule_for_a_kind_known_by_name_has_its_arguments_checked_first() {
    let db = setup().await;
    let tenant_id = TenantId::generate();
    let registry = super::registry();
    let good = serde_json::json!({ "fail_first": false, "sleep_ms": 0 });
    assert!(registry.check_args("test.effect", 1, good.clone()).is_ok());
    assert!(
        registry
            .check_args("test.effect", 1, serde_json::json!({ "fail_first": "no" }))
            .is_err()
    );
    assert!(
        registry
            .check_args("test.nothing", 1, good.clone())
            .is_err()
    );
    assert!(registry.check_args("test.effect", 2, good.clone()).is_err());

    let mut spec = spec("by-name", "0 * * * *", "UTC").erase().unwrap();
    spec.args = good;
    let mut tx = TenantTx::begin_as(&db.app, tenant_id, "system", None)
        .await
        .unwrap();
    let schedule_id = schedules::create_erased(&mut tx, spec, datetime!(2026-05-01 09:30 UTC))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        scheduler(&db, "s")
            .tick(datetime!(2026-05-01 10:00:01 UTC))
            .await
            .unwrap()
            .n_fired,
        1
    );
    let row = row(&db, tenant_id, schedule_id).await;
    assert_eq!(
        (row.job_kind.as_str(), row.args_version),
        ("test.effect", 1)
    );
}
