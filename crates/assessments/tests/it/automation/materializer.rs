//! The materialiser: exactly once with workers racing, transitions, escalation once,
//! and the durable schedule that drives it.

use std::sync::Arc;
use std::time::Duration;

use assessments::enrollment;
use assessments::materialize::Materialize;
use db::TenantTx;
use platform::jobs::Registry;
use platform::jobs::worker::{Worker, WorkerConfig};
use platform::schedules::scheduler::{Scheduler, SchedulerConfig};
use time::OffsetDateTime;

use super::*;
use assessments::materialize;

const N_PATIENTS: usize = 40;
const N_WORKERS: usize = 8;

/// `N_WORKERS` runs at `now` at once, each on its own connection and transaction,
/// each draining until it finds no more work.
async fn race(world: &World, now: OffsetDateTime) {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..N_WORKERS {
        let app = world.db.app.clone();
        let keyring = world.keyring.clone();
        let tenant_id = world.tenant_id;
        tasks.spawn(async move {
            loop {
                let mut tx = TenantTx::begin_as(&app, tenant_id, "system", None)
                    .await
                    .unwrap();
                let report = materialize::run_due(&mut tx, &keyring, now, 48)
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
                if !report.more {
                    break;
                }
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.unwrap();
    }
}

/// Makes every active enrolment due again, as after a crash between inserting the
/// instances and recording the next evaluation.
async fn make_all_due_again(world: &World) {
    let mut tx = world.tx().await;
    sqlx::query("UPDATE assessments.enrollments SET next_evaluation_at = '-infinity' WHERE status = 'active'")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn workers_racing_create_each_due_instance_exactly_once_and_escalate_it_once() {
    let world = World::new().await;
    let plan = world.plan("monthly mood", &monthly_phq9(365)).await;
    let now = OffsetDateTime::now_utc();
    let mut enrollments = Vec::new();
    for _ in 0..N_PATIENTS {
        let patient_id = world.patient(adult()).await;
        enrollments.push(
            world
                .enroll(plan.id, patient_id, "Europe/Paris", now, now)
                .await,
        );
    }

    // Today's slot (open from three days before its due time) and nothing else.
    race(&world, now).await;
    assert_eq!(world.count("instances", "true").await, N_PATIENTS as i64);
    make_all_due_again(&world).await;
    race(&world, now).await;
    assert_eq!(world.count("instances", "true").await, N_PATIENTS as i64);

    // Five weeks on: the first month's slot closed unanswered (missed, escalated
    // once) and the second month's is made.
    let later = now + time::Duration::days(35);
    race(&world, later).await;
    make_all_due_again(&world).await;
    race(&world, later).await;
    assert_eq!(
        world.count("instances", "true").await,
        2 * N_PATIENTS as i64
    );
    for enrollment_id in &enrollments {
        let rows = world.instances(*enrollment_id).await;
        let keys: Vec<&str> = rows.iter().map(|row| row.slot_key.as_str()).collect();
        assert_eq!(keys, ["k:0", "k:1"]);
        assert_eq!(rows[0].status, "missed");
        assert!(rows[0].escalated_at.is_some());
    }
    // The second month's instance is overdue too by then (due about 30 days on,
    // 48 hours' grace): every escalated instance has exactly one event.
    let n_escalated = world.count("instances", "escalated_at IS NOT NULL").await;
    assert!(n_escalated >= N_PATIENTS as i64);
    assert_eq!(
        world
            .count("outbox", "event_type = 'assessment.overdue'")
            .await,
        n_escalated,
        "each overdue instance is escalated once, however many runs saw it"
    );
    assert_eq!(
        world
            .count("outbox", "event_type = 'assessment.overdue'")
            .await,
        world
            .count(
                "outbox",
                "id IN (SELECT DISTINCT ON (aggregate_id) id FROM assessments.outbox ORDER BY aggregate_id, id)"
            )
            .await,
    );
    // The events carry ids and codes only.
    let mut tx = world.tx().await;
    let payload: serde_json::Value =
        sqlx::query_scalar("SELECT payload FROM assessments.outbox LIMIT 1")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    tx.commit().await.unwrap();
    let keys: Vec<&str> = payload
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "care_team",
            "clinician_id",
            "enrollment_id",
            "instance_id",
            "instrument",
            "patient_id",
            "status"
        ]
    );
}

#[tokio::test]
async fn an_instance_opens_at_its_window_and_is_escalated_after_the_grace() {
    let world = World::new().await;
    let mut def = monthly_phq9(365);
    def.window.before_days = 2;
    def.window.after_days = 10;
    let mut tx = world.tx().await;
    let plan = assessments::plan_store::create(
        &mut tx,
        "graced",
        &def,
        Some(24),
        OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let patient_id = world.patient(adult()).await;
    // The first due time is 2030-01-10 09:00 UTC (the anchor's date at the plan's
    // local time); its window opens two days before.
    let enrolled = at("2030-01-06T12:00:00Z");
    let anchor = at("2030-01-10T10:00:00Z");
    let enrollment_id = world
        .enroll(plan.id, patient_id, "UTC", anchor, enrolled)
        .await;
    world.materialize_at(enrolled).await;
    assert!(
        world.instances(enrollment_id).await.is_empty(),
        "made only from a day before its window opens"
    );
    let report = world.materialize_at(at("2030-01-07T09:30:00Z")).await;
    assert_eq!(report.n_created, 1);
    assert_eq!(world.instances(enrollment_id).await[0].status, "scheduled");
    world.materialize_at(at("2030-01-08T08:59:00Z")).await;
    assert_eq!(world.instances(enrollment_id).await[0].status, "scheduled");
    let report = world.materialize_at(at("2030-01-08T09:00:00Z")).await;
    assert_eq!((report.n_created, report.n_opened), (0, 1));
    assert_eq!(world.instances(enrollment_id).await[0].status, "open");
    // Due 2030-01-10 09:00; the plan's grace is 24 hours.
    world.materialize_at(at("2030-01-11T08:59:00Z")).await;
    assert!(
        world.instances(enrollment_id).await[0]
            .escalated_at
            .is_none()
    );
    world.materialize_at(at("2030-01-11T09:00:00Z")).await;
    world.materialize_at(at("2030-01-12T09:00:00Z")).await;
    let rows = world.instances(enrollment_id).await;
    assert_eq!(rows[0].status, "open");
    assert!(rows[0].escalated_at.is_some());
    assert_eq!(world.count("outbox", "true").await, 1);
    // Stopping the enrolment cancels what is unanswered; nothing more is made.
    let mut tx = world.tx().await;
    assert_eq!(
        enrollment::stop(&mut tx, enrollment_id, at("2030-01-12T10:00:00Z"))
            .await
            .unwrap(),
        1
    );
    tx.commit().await.unwrap();
    world.materialize_at(at("2030-03-01T00:00:00Z")).await;
    let rows = world.instances(enrollment_id).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, "cancelled");
}

#[tokio::test]
async fn the_durable_schedule_fires_the_materialise_job_which_makes_the_instances() {
    let world = World::new().await;
    let plan = world.plan("monthly mood", &monthly_phq9(365)).await;
    let now = OffsetDateTime::now_utc();
    let patient_id = world.patient(adult()).await;
    let enrollment_id = world
        .enroll(plan.id, patient_id, "America/Chicago", now, now)
        .await;
    // The plan's creation made the tenant's schedules (the materialiser's and the
    // reminder sweep's); a second plan does not add any.
    world.plan("another", &monthly_phq9(30)).await;
    let schedules = {
        let mut tx = world.tx().await;
        let rows = platform::schedules::list(&mut tx).await.unwrap();
        tx.commit().await.unwrap();
        rows
    };
    let mut names: Vec<&str> = schedules.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            materialize::SCHEDULE_NAME,
            assessments::reminder::SWEEP_SCHEDULE
        ]
    );

    let scheduler = Scheduler::new(
        world.db.owner.clone(),
        world.db.app.clone(),
        SchedulerConfig::new("test-scheduler"),
    );
    let fired = scheduler
        .tick(now + time::Duration::minutes(2))
        .await
        .unwrap();
    assert_eq!(fired.n_fired, 2);
    let mut config = WorkerConfig::new("test-worker");
    config.poll_interval = Duration::from_millis(20);
    let worker = Arc::new(Worker::new(
        world.db.owner.clone(),
        world.db.app.clone(),
        Registry::new()
            .register(Materialize {
                keyring: world.keyring.clone(),
            })
            .register(assessments::reminder::ReminderSweep {
                sweep: assessments::reminder::Sweep {
                    available: vec![assessments::reminder::Channel::Webhook],
                },
            }),
        config,
    ));
    for _ in 0..2 {
        let outcome = worker.try_run_one().await.unwrap();
        assert!(
            matches!(outcome, Some(platform::jobs::worker::Outcome::Succeeded(_))),
            "the fired job ran: {outcome:?}"
        );
    }
    let rows = world.instances(enrollment_id).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].instrument_code, "phq-9");
}

#[tokio::test]
async fn a_patient_record_that_no_longer_decrypts_skips_its_enrolment_and_not_the_others() {
    let world = World::new().await;
    let plan = world.plan("monthly", &monthly_phq9(365)).await;
    let enrolled = at("2030-01-06T12:00:00Z");
    let anchor = at("2030-01-07T10:00:00Z");
    let broken_patient = world.patient(adult()).await;
    let healthy_patient = world.patient(adult()).await;
    let broken = world
        .enroll(plan.id, broken_patient, "UTC", anchor, enrolled)
        .await;
    let healthy = world
        .enroll(plan.id, healthy_patient, "UTC", anchor, enrolled)
        .await;
    world
        .break_birth_date(broken_patient, healthy_patient)
        .await;

    let report = world.materialize_at(enrolled).await;
    assert_eq!((report.n_evaluated, report.n_failed), (1, 1));
    assert_eq!(
        report.n_created, 1,
        "the healthy enrolment got its instance"
    );
    assert_eq!(world.instances(healthy).await.len(), 1);
    assert!(world.instances(broken).await.is_empty());

    // The skipped enrolment waits an hour, then is tried (and skipped) again.
    let report = world.materialize_at(at("2030-01-06T12:30:00Z")).await;
    assert_eq!((report.n_evaluated, report.n_failed), (0, 0));
    let report = world.materialize_at(at("2030-01-06T13:00:00Z")).await;
    assert_eq!(report.n_failed, 1);
}
