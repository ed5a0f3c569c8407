//! Backfill: a year of monthly slots made afterwards, completed where a response
//! fits, never escalated; interrupted and resumed; a re-run creates nothing.

use assessments::backfill::{self, BackfillOptions};
use time::Duration;

use super::*;

#[tokio::test]
async fn a_year_is_backfilled_once_resumed_after_an_interruption_and_never_escalated() {
    let world = World::new().await;
    let plan = world.plan("monthly", &monthly_phq9(400)).await;
    let now = at("2031-06-15T12:00:00Z");
    let anchor = at("2030-06-15T12:00:00Z");
    let mut enrollments = Vec::new();
    let mut first_patient = None;
    for _ in 0..5 {
        let patient_id = world.patient(adult()).await;
        first_patient.get_or_insert(patient_id);
        enrollments.push(
            world
                .enroll(plan.id, patient_id, "Europe/Madrid", anchor, now)
                .await,
        );
    }
    // One response, inside the third month's window (due 2030-08-15 09:00 local).
    let patient_id = first_patient.unwrap();
    let mut tx = world.tx().await;
    let response_id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO assessments.responses (tenant_id, id, patient_id, instrument_code, instrument_version,
             respondent, submitted_by, answers, total, score, submitted_at)
         VALUES ($1, $2, $3, 'phq-9', 1, 'patient', 'user:test', '{}', 4, '{}', '2030-08-16T10:00:00Z')",
    )
    .bind(world.tenant_id.as_uuid())
    .bind(response_id)
    .bind(patient_id.as_uuid())
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let options = BackfillOptions {
        enrollments_per_tx: 2,
        stop_after_enrollments: Some(3),
    };
    let run = |options| {
        backfill::run(
            &world.db.app,
            &world.keyring,
            world.tenant_id,
            "user:test",
            plan.id,
            // From midnight: the first slot is due at 09:00 local, before the anchor.
            at("2030-06-15T00:00:00Z"),
            now,
            now,
            options,
            |_| {},
        )
    };
    let first = run(options).await.unwrap();
    assert!(!first.finished);
    assert_eq!(first.n_enrollments, 3);
    let second = run(BackfillOptions::default()).await.unwrap();
    assert_eq!(second.backfill_id, first.backfill_id);
    assert!(second.finished);
    assert_eq!(second.n_enrollments, 5);
    // Slots due 2030-06-15 .. 2031-05-15 have closed by 2031-06-15 12:00 (the
    // 2031-06-15 09:00 slot is still open: the materialiser's).
    assert_eq!(second.n_created, 5 * 12);
    for enrollment_id in &enrollments {
        let rows = world.instances(*enrollment_id).await;
        assert_eq!(rows.len(), 12);
        assert!(rows.iter().all(|row| row.backfilled));
    }
    assert_eq!(world.count("instances", "status = 'completed'").await, 1);
    assert_eq!(
        world
            .count(
                "instances",
                &format!("response_id = '{response_id}' AND slot_key = 'k:2'")
            )
            .await,
        1
    );

    // Again, as a new backfill of the same window: nothing new.
    let third = run(BackfillOptions::default()).await.unwrap();
    assert_ne!(third.backfill_id, first.backfill_id);
    assert_eq!((third.n_enrollments, third.n_created), (5, 0));
    assert_eq!(world.count("instances", "true").await, 60);

    // The materialiser makes the current slot (due 2031-06-15 09:00 local) and
    // escalates it when overdue; nothing backfilled is ever escalated.
    world.materialize_at(now).await;
    assert_eq!(world.count("instances", "NOT backfilled").await, 5);
    assert_eq!(world.count("outbox", "true").await, 0);
    world.materialize_at(now + Duration::days(3)).await;
    world.materialize_at(now + Duration::days(10)).await;
    assert_eq!(
        world
            .count("instances", "backfilled AND escalated_at IS NOT NULL")
            .await,
        0
    );
    assert_eq!(
        world.count("outbox", "true").await,
        5,
        "only the live slots"
    );
}

/// A worker that runs backfill jobs only.
fn backfill_worker(world: &World) -> platform::jobs::worker::Worker {
    let mut config = platform::jobs::worker::WorkerConfig::new("test-worker");
    config.poll_interval = std::time::Duration::from_millis(20);
    platform::jobs::worker::Worker::new(
        world.db.owner.clone(),
        world.db.app.clone(),
        platform::jobs::Registry::new().register(backfill::Backfill {
            keyring: world.keyring.clone(),
        }),
        config,
    )
}

/// Runs every queued job; returns how many ran, each asserted to have succeeded.
async fn drain(worker: &platform::jobs::worker::Worker) -> usize {
    let mut n_ran = 0;
    while let Some(outcome) = worker.try_run_one().await.unwrap() {
        assert!(
            matches!(outcome, platform::jobs::worker::Outcome::Succeeded(_)),
            "{outcome:?}"
        );
        n_ran += 1;
    }
    n_ran
}

#[tokio::test]
async fn a_plan_with_backfill_days_is_backfilled_by_a_job_when_a_patient_is_enrolled_and_when_it_changes()
 {
    let world = World::new().await;
    let mut def = monthly_phq9(730);
    def.backfill_days = Some(365);
    let plan = world.plan("monthly", &def).await;
    let worker = backfill_worker(&world);
    // The job backfills up to its own clock: the enrolment is anchored 200 days ago.
    let now = OffsetDateTime::now_utc();
    let anchor = now - Duration::days(200);
    let patient_id = world.patient(adult()).await;
    let mut tx = world.tx().await;
    let enrolled = enrollment::enroll_one(
        &mut tx,
        &NewEnrollment {
            plan_id: plan.id,
            patient_id,
            clinician_id: Some(clinician()),
            time_zone: "UTC".to_owned(),
            anchor_at: Some(anchor),
        },
        now,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let Enrolled::New(enrollment_id) = enrolled else {
        panic!("expected a new enrolment")
    };

    assert_eq!(drain(&worker).await, 1);
    let rows = world.instances(enrollment_id).await;
    // Six or seven monthly windows have closed in 200 days (a window closes 7 days
    // after its due date), each made afterwards and missed.
    assert!((6..=7).contains(&rows.len()), "{rows:?}");
    assert!(
        rows.iter()
            .all(|row| row.backfilled && row.status == "missed" && row.escalated_at.is_none())
    );

    // A change of the plan backfills every enrolment again: nothing new to make.
    let mut tx = world.tx().await;
    assessments::plan_store::update(&mut tx, plan.id, &def, None)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(drain(&worker).await, 1);
    assert_eq!(world.instances(enrollment_id).await.len(), rows.len());
    assert_eq!(world.count("backfills", "status = 'done'").await, 1);

    // A plan without backfill_days enqueues nothing.
    let other = world.plan("plain", &monthly_phq9(730)).await;
    let mut tx = world.tx().await;
    enrollment::enroll_one(
        &mut tx,
        &NewEnrollment {
            plan_id: other.id,
            patient_id,
            clinician_id: Some(clinician()),
            time_zone: "UTC".to_owned(),
            anchor_at: Some(anchor),
        },
        now,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(drain(&worker).await, 0);
}

#[tokio::test]
async fn a_plans_backfill_job_goes_page_by_page_until_every_enrolment_is_done() {
    let world = World::new().await;
    let mut def = monthly_phq9(730);
    def.backfill_days = Some(90);
    let plan = world.plan("monthly", &def).await;
    let now = OffsetDateTime::now_utc();
    let anchor = now - Duration::days(80);
    let n_enrollments = backfill::ENROLLMENTS_PER_TX as usize + 3;
    for _ in 0..n_enrollments {
        let patient_id = world.patient(adult()).await;
        world.enroll(plan.id, patient_id, "UTC", anchor, now).await;
    }
    let mut tx = world.tx().await;
    assessments::plan_store::update(&mut tx, plan.id, &def, None)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    // Two pages: the first job enqueues the second.
    assert_eq!(drain(&backfill_worker(&world)).await, 2);
    let n_backfilled_enrollments = world
        .count(
            "enrollments e",
            "EXISTS (SELECT 1 FROM assessments.instances i WHERE i.enrollment_id = e.id AND i.backfilled)",
        )
        .await;
    assert_eq!(n_backfilled_enrollments, n_enrollments as i64);
}

#[tokio::test]
async fn a_patient_record_that_no_longer_decrypts_is_passed_over_and_the_backfill_finishes() {
    let world = World::new().await;
    let plan = world.plan("monthly", &monthly_phq9(400)).await;
    let now = at("2031-06-15T12:00:00Z");
    let anchor = at("2030-06-15T12:00:00Z");
    let broken_patient = world.patient(adult()).await;
    let healthy_patient = world.patient(adult()).await;
    let broken = world
        .enroll(plan.id, broken_patient, "UTC", anchor, now)
        .await;
    let healthy = world
        .enroll(plan.id, healthy_patient, "UTC", anchor, now)
        .await;
    world
        .break_birth_date(broken_patient, healthy_patient)
        .await;
    let report = backfill::run(
        &world.db.app,
        &world.keyring,
        world.tenant_id,
        "user:test",
        plan.id,
        anchor,
        now,
        now,
        BackfillOptions::default(),
        |_| {},
    )
    .await
    .unwrap();
    assert!(report.finished);
    assert!(world.instances(broken).await.is_empty());
    assert!(world.instances(healthy).await.len() >= 11);
}
