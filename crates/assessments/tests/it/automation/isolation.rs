//! Another tenant's plans, patients and enrolments do not exist for a tenant.

use assessments::enrollment::{EnrollError, StopError};
use assessments::plan_store::PlanStoreError;

use super::*;

#[tokio::test]
async fn a_tenant_cannot_enrol_into_stop_or_read_another_tenants_plans_patients_and_enrolments() {
    let world = World::new().await;
    let plan = world.plan("monthly", &monthly_phq9(365)).await;
    let patient_id = world.patient(adult()).await;
    let now = OffsetDateTime::now_utc();
    let enrollment_id = world.enroll(plan.id, patient_id, "UTC", now, now).await;
    world.materialize_at(now).await;

    let other = world.other_tenant().await;
    let other_patient = world.patient_in(other, adult()).await;
    let mut tx = world.tx_of(other).await;
    // A's plan with B's patient, and B's (nonexistent) plan with A's patient.
    let err = enrollment::enroll(
        &mut tx,
        &NewEnrollment {
            plan_id: plan.id,
            patient_id: other_patient,
            clinician_id: None,
            time_zone: "UTC".to_owned(),
            anchor_at: None,
        },
        now,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, EnrollError::PlanNotFound), "{err:?}");
    let own_plan = plan_store::create(&mut tx, "b's plan", &monthly_phq9(30), None, now)
        .await
        .unwrap();
    let err = enrollment::enroll(
        &mut tx,
        &NewEnrollment {
            plan_id: own_plan.id,
            patient_id,
            clinician_id: None,
            time_zone: "UTC".to_owned(),
            anchor_at: None,
        },
        now,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, EnrollError::PatientNotFound), "{err:?}");
    assert!(matches!(
        enrollment::stop(&mut tx, enrollment_id, now).await,
        Err(StopError::NotFound)
    ));
    assert!(
        enrollment::get(&mut tx, enrollment_id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(plan_store::get(&mut tx, plan.id).await.unwrap().is_none());
    assert!(matches!(
        plan_store::retire(&mut tx, plan.id).await,
        Err(PlanStoreError::NotFound)
    ));
    assert!(matches!(
        assessments::guardian::add(
            &mut tx,
            patient_id,
            Uuid::now_v7(),
            jiff::civil::date(2020, 1, 1)
        )
        .await,
        Err(assessments::guardian::GuardianError::PatientNotFound)
    ));
    let due = assessments::due::list(
        &mut tx,
        clinician(),
        assessments::due::DueList::Due {
            until: now + time::Duration::days(30),
        },
        now,
        100,
    )
    .await
    .unwrap();
    assert!(due.is_empty(), "A's instances are not on B's due list");
    // B's materialiser does not touch A's enrolment.
    let report = assessments::materialize::run_due(
        &mut tx,
        &world.keyring,
        now + time::Duration::days(60),
        48,
    )
    .await
    .unwrap();
    assert_eq!(report.n_evaluated, 0);
    assert_eq!(report.n_missed, 0);
    tx.commit().await.unwrap();
    assert_eq!(world.instances(enrollment_id).await[0].status, "open");

    // A still sees its own.
    let mut tx = world.tx().await;
    let due = assessments::due::list(
        &mut tx,
        clinician(),
        assessments::due::DueList::Due {
            until: now + time::Duration::days(30),
        },
        now,
        100,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(due.len(), 1);
}

#[tokio::test]
async fn enrolling_twice_reports_the_active_enrolment_and_plans_keep_every_version() {
    let world = World::new().await;
    let plan = world.plan("monthly", &monthly_phq9(365)).await;
    let patient_id = world.patient(adult()).await;
    let now = OffsetDateTime::now_utc();
    let first = world.enroll(plan.id, patient_id, "UTC", now, now).await;
    let mut tx = world.tx().await;
    let new = NewEnrollment {
        plan_id: plan.id,
        patient_id,
        clinician_id: None,
        time_zone: "Mars/Olympus_Mons".to_owned(),
        anchor_at: None,
    };
    assert!(matches!(
        enrollment::enroll(&mut tx, &new, now).await,
        Err(EnrollError::InvalidTimeZone)
    ));
    let again = enrollment::enroll(
        &mut tx,
        &NewEnrollment {
            time_zone: "Asia/Tokyo".to_owned(),
            ..new
        },
        now,
    )
    .await
    .unwrap();
    assert_eq!(again, Enrolled::Already(first));
    let changed = plan_store::update(&mut tx, plan.id, &monthly_phq9(90), Some(12))
        .await
        .unwrap();
    assert_eq!(changed.version, 2);
    assert_eq!(
        plan_store::version(&mut tx, plan.id, 1).await.unwrap(),
        Some(monthly_phq9(365))
    );
    let mut invalid = monthly_phq9(90);
    invalid.window.before_days = 40;
    let err = plan_store::update(&mut tx, plan.id, &invalid, None)
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with("window"), "{err}");
    let retired = plan_store::retire(&mut tx, plan.id).await.unwrap();
    assert!(retired.retired);
    tx.commit().await.unwrap();
    let enrollment = {
        let mut tx = world.tx().await;
        let e = enrollment::get(&mut tx, first).await.unwrap().unwrap();
        tx.commit().await.unwrap();
        e
    };
    assert_eq!(
        enrollment.plan_version, 2,
        "active enrolments follow the new version"
    );
    let other = world.patient(adult()).await;
    let mut tx = world.tx().await;
    assert!(matches!(
        enrollment::enroll(
            &mut tx,
            &NewEnrollment {
                plan_id: plan.id,
                patient_id: other,
                clinician_id: None,
                time_zone: "UTC".to_owned(),
                anchor_at: None,
            },
            now
        )
        .await,
        Err(EnrollError::PlanRetired)
    ));
}
