//! Responses on a real database: stored with their instrument version and score,
//! refused with the item at fault, once per instance, only from respondents who may
//! answer, progress over a series, and no way into another tenant's.

use assessments::response::{
    self, Answerer, ReliabilityRecord, Submission, SubmitError, Submitter,
};
use assessments::{InstrumentCode, ScoreError};
use kernel::{Actor, ActorKind, Role};
use uuid::Uuid;

use crate::world::{World, phq9, phq9_total, treatment, years_ago};

#[tokio::test]
async fn a_response_is_stored_with_its_instrument_version_and_score_and_completes_its_instance() {
    let world = World::new().await;
    let (patient_id, instance_id) = world.adult_phq9_instance().await;

    let submitted = world
        .submit(
            &Submitter::Staff(world.clinician.clone()),
            phq9(patient_id, Some(instance_id), [2, 2, 2, 2, 1, 1, 1, 1, 0]),
        )
        .await
        .unwrap();
    assert_eq!(
        (submitted.score.total, submitted.score.band.as_str()),
        (12, "moderate")
    );
    assert_eq!(submitted.version, 1);
    assert_eq!(submitted.safety_event_id, None);

    let (version, total, band, submitted_by, instance): (i32, i32, String, String, Option<Uuid>) =
        sqlx::query_as(
            "SELECT instrument_version, total::int, band, submitted_by, instance_id FROM assessments.responses WHERE id = $1",
        )
        .bind(submitted.response_id)
        .fetch_one(&world.db.admin)
        .await
        .unwrap();
    assert_eq!((version, total, band.as_str()), (1, 12, "moderate"));
    assert_eq!(submitted_by, world.clinician.audit_name());
    assert_eq!(instance, Some(instance_id));
    let (status, response_id, completed): (String, Option<Uuid>, bool) = sqlx::query_as(
        "SELECT status::text, response_id, completed_at IS NOT NULL FROM assessments.instances WHERE id = $1",
    )
    .bind(instance_id)
    .fetch_one(&world.db.admin)
    .await
    .unwrap();
    assert_eq!(
        (status.as_str(), response_id, completed),
        ("completed", Some(submitted.response_id), true)
    );

    // Read back (audited), answers in the instrument's order.
    let mut tx = world.tx(world.a).await;
    let stored = response::get(&mut tx, submitted.response_id, &treatment())
        .await
        .unwrap()
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(stored.answers[0], ("1".to_owned(), 2));
    assert_eq!(stored.answers[8], ("9".to_owned(), 0));
    assert_eq!((stored.version, stored.score.total), (1, 12));
    let n_audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit.events WHERE action IN ('assessment_response.create', 'assessment_response.read') AND patient_id = $1",
    )
    .bind(patient_id.as_uuid())
    .fetch_one(&world.db.admin)
    .await
    .unwrap();
    assert_eq!(n_audited, 2);
}

#[tokio::test]
async fn invalid_answers_are_refused_naming_the_items_and_store_nothing() {
    let world = World::new().await;
    let patient_id = world.adult().await;
    let staff = Submitter::Staff(world.clinician.clone());

    // Three of nine items missing: more than the two the manual prorates.
    let mut submission = phq9(patient_id, None, [1; 9]);
    submission
        .answers
        .retain(|(item, _)| !["2", "5", "7"].contains(&item.as_str()));
    let err = world.submit(&staff, submission).await.unwrap_err();
    assert!(
        matches!(&err, SubmitError::Invalid(ScoreError::TooManyMissing { missing, .. }) if missing == &["2", "5", "7"]),
        "{err:?}"
    );
    assert!(err.to_string().contains("2, 5, 7"), "{err}");

    let mut submission = phq9(patient_id, None, [1; 9]);
    submission.answers[3].1 = 7;
    let err = world.submit(&staff, submission).await.unwrap_err();
    assert!(err.to_string().contains("item 4"), "{err}");

    let mut submission = phq9(patient_id, None, [1; 9]);
    submission.answers.push(("10".to_owned(), 1));
    let err = world.submit(&staff, submission).await.unwrap_err();
    assert!(err.to_string().contains("\"10\""), "{err}");

    let mut submission = phq9(patient_id, None, [1; 9]);
    submission.version = Some(99);
    assert!(matches!(
        world.submit(&staff, submission).await.unwrap_err(),
        SubmitError::UnknownInstrument { version: 99, .. }
    ));

    assert_eq!(world.count("assessments.responses").await, 0);
    assert_eq!(world.count("assessments.outbox").await, 0);
}

#[tokio::test]
async fn an_instance_is_answered_once_and_a_closed_one_not_at_all() {
    let world = World::new().await;
    let patient_id = world.adult().await;
    let enrollment_id = world.enrol(world.a, patient_id).await;
    let staff = Submitter::Staff(world.clinician.clone());
    let instance_id = world
        .instance(
            world.a,
            enrollment_id,
            patient_id,
            "phq-9",
            Answerer::Patient,
        )
        .await;
    world
        .submit(&staff, phq9(patient_id, Some(instance_id), [1; 9]))
        .await
        .unwrap();
    let err = world
        .submit(&staff, phq9(patient_id, Some(instance_id), [0; 9]))
        .await
        .unwrap_err();
    assert!(matches!(err, SubmitError::AlreadyAnswered), "{err:?}");

    for status in ["cancelled", "missed"] {
        let instance_id = world
            .instance(
                world.a,
                enrollment_id,
                patient_id,
                "phq-9",
                Answerer::Patient,
            )
            .await;
        sqlx::query(&format!(
            "UPDATE assessments.instances SET status = '{status}' WHERE id = $1"
        ))
        .bind(instance_id)
        .execute(&world.db.admin)
        .await
        .unwrap();
        let err = world
            .submit(&staff, phq9(patient_id, Some(instance_id), [0; 9]))
            .await
            .unwrap_err();
        assert!(
            matches!(err, SubmitError::Closed { .. }),
            "{status}: {err:?}"
        );
    }

    // An instance of another instrument, or of another patient, does not take it.
    let gad_instance = world
        .instance(
            world.a,
            enrollment_id,
            patient_id,
            "gad-7",
            Answerer::Patient,
        )
        .await;
    let err = world
        .submit(&staff, phq9(patient_id, Some(gad_instance), [0; 9]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SubmitError::InstrumentMismatch { .. }),
        "{err:?}"
    );
    let other_patient = world.adult().await;
    let err = world
        .submit(&staff, phq9(other_patient, Some(gad_instance), [0; 9]))
        .await
        .unwrap_err();
    assert!(matches!(err, SubmitError::InstanceNotFound), "{err:?}");
    assert_eq!(world.count("assessments.responses").await, 1);
}

#[tokio::test]
async fn a_guardian_answers_only_while_they_have_access_and_loses_it_at_eighteen() {
    let world = World::new().await;
    let staff = Submitter::Staff(world.clinician.clone());
    let person_id = Uuid::now_v7();
    let psc17 = |patient_id, instance_id| Submission {
        patient_id,
        instance_id: Some(instance_id),
        instrument: InstrumentCode::new_unchecked("psc-17"),
        version: None,
        answerer: None,
        answers: (1..=17).map(|item| (item.to_string(), 1)).collect(),
    };

    let child = world.patient(world.a, Some(years_ago(10, 0))).await;
    world
        .guardian(world.a, child, person_id, years_ago(10, 0))
        .await;
    let enrollment_id = world.enrol(world.a, child).await;
    let instance_id = world
        .instance(
            world.a,
            enrollment_id,
            child,
            "psc-17",
            Answerer::Guardian(person_id),
        )
        .await;
    let submitted = world
        .submit(&staff, psc17(child, instance_id))
        .await
        .unwrap();
    assert_eq!(submitted.score.total, 17);

    // Someone who is not this child's guardian cannot answer as one.
    let stranger = Uuid::now_v7();
    let instance_id = world
        .instance(
            world.a,
            enrollment_id,
            child,
            "psc-17",
            Answerer::Guardian(stranger),
        )
        .await;
    let err = world
        .submit(&staff, psc17(child, instance_id))
        .await
        .unwrap_err();
    assert!(matches!(err, SubmitError::GuardianWithoutAccess), "{err:?}");

    // The instance was made while the patient was 17; they have turned 18 since.
    let adult = world.patient(world.a, Some(years_ago(18, 10))).await;
    world
        .guardian(world.a, adult, person_id, years_ago(18, 10))
        .await;
    let enrollment_id = world.enrol(world.a, adult).await;
    let instance_id = world
        .instance(
            world.a,
            enrollment_id,
            adult,
            "psc-17",
            Answerer::Guardian(person_id),
        )
        .await;
    let err = world
        .submit(&staff, psc17(adult, instance_id))
        .await
        .unwrap_err();
    assert!(matches!(err, SubmitError::GuardianWithoutAccess), "{err:?}");
    // Nor through a link issued before the birthday.
    let link = world.issue_link(world.a, instance_id).await;
    let claim = assessments::link::LinkClaim::parse(&link.token).unwrap();
    let mut tx = world.tx(world.a).await;
    let err = assessments::link::submit(
        &mut tx,
        &world.keyring,
        &claim,
        (1..=17).map(|item| (item.to_string(), 1)).collect(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            assessments::link::LinkError::Submit(SubmitError::GuardianWithoutAccess)
        ),
        "{err:?}"
    );
    drop(tx);
    assert_eq!(world.count("assessments.responses").await, 1);
}

#[tokio::test]
async fn only_a_clinician_answers_a_clinician_rated_form_and_staff_say_who_answered() {
    let world = World::new().await;
    let patient_id = world.adult().await;
    let admin = Actor {
        role: Role::Admin,
        ..world.clinician.clone()
    };
    let mut submission = phq9(patient_id, None, [0; 9]);
    submission.answerer = Some(Answerer::Clinician);
    let err = world
        .submit(&Submitter::Staff(admin.clone()), submission)
        .await
        .unwrap_err();
    // The PHQ-9 is self-report: the instrument refuses a clinician before anything else.
    assert!(
        matches!(
            err,
            SubmitError::Invalid(ScoreError::RespondentNotAllowed { .. })
        ),
        "{err:?}"
    );

    let mut submission = phq9(patient_id, None, [0; 9]);
    submission.answerer = None;
    let err = world
        .submit(&Submitter::Staff(admin), submission)
        .await
        .unwrap_err();
    assert!(matches!(err, SubmitError::RespondentRequired), "{err:?}");
    let _ = ActorKind::System;
}

#[tokio::test]
async fn progress_flags_reliable_change_response_and_remission_across_a_series() {
    let world = World::new().await;
    let patient_id = world.adult().await;
    let first = world.phq9(patient_id, phq9_total(20)).await;
    let second = world.phq9(patient_id, phq9_total(14)).await;
    let third = world.phq9(patient_id, phq9_total(10)).await;
    let fourth = world.phq9(patient_id, phq9_total(4)).await;

    let baseline = first.score.progress.clone().unwrap();
    assert_eq!(baseline.baseline_response_id, first.response_id);
    assert_eq!(baseline.since_baseline.delta, 0);
    assert!(!baseline.response && !baseline.remission);

    let p2 = second.score.progress.clone().unwrap();
    assert_eq!(p2.baseline_response_id, first.response_id);
    assert_eq!(
        p2.previous_response_id, None,
        "the baseline is not also the previous one"
    );
    assert_eq!(
        (p2.since_baseline.delta, p2.since_baseline.reliability),
        (-6, ReliabilityRecord::ReliablyImproved)
    );
    assert!(!p2.response && !p2.remission);

    let p3 = third.score.progress.clone().unwrap();
    assert_eq!(p3.previous_response_id, Some(second.response_id));
    assert_eq!(p3.since_previous.unwrap().delta, -4);
    assert_eq!(
        p3.since_previous.unwrap().reliability,
        ReliabilityRecord::NotReliable
    );
    assert!(p3.response, "10 is half of 20");
    assert!(!p3.remission);

    let p4 = fourth.score.progress.clone().unwrap();
    assert!(p4.response && p4.remission);
    assert_eq!(p4.since_baseline.delta, -16);

    // The history is ready for a chart: oldest first, with the same flags.
    let mut tx = world.tx(world.a).await;
    let points = response::history(
        &mut tx,
        patient_id,
        Some(&InstrumentCode::new_unchecked("phq-9")),
        &treatment(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let totals: Vec<u16> = points.iter().map(|point| point.total).collect();
    assert_eq!(totals, [20, 14, 10, 4]);
    assert!(points[3].progress.as_ref().unwrap().remission);
    assert_eq!(points[1].band, "moderate");

    // A PSC-17 defines no change: it has no progress.
    let mut tx = world.tx(world.a).await;
    let none = response::history(
        &mut tx,
        patient_id,
        Some(&InstrumentCode::new_unchecked("gad-7")),
        &treatment(),
    )
    .await
    .unwrap();
    assert!(none.is_empty());
}

#[tokio::test]
async fn another_tenant_sees_no_response_score_or_instance() {
    let world = World::new().await;
    let (patient_id, instance_id) = world.adult_phq9_instance().await;
    let submitted = world.phq9(patient_id, [3, 3, 3, 3, 3, 3, 3, 3, 1]).await;

    let mut tx = world.tx(world.b).await;
    assert!(
        response::get(&mut tx, submitted.response_id, &treatment())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        response::patient_of(&mut tx, submitted.response_id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        response::history(&mut tx, patient_id, None, &treatment())
            .await
            .unwrap()
            .is_empty()
    );
    tx.rollback().await.unwrap();

    // Tenant B's clinician cannot answer tenant A's instance, even naming its patient.
    let b_actor = Actor {
        tenant_id: world.b,
        ..world.clinician.clone()
    };
    let err = world
        .submit(
            &Submitter::Staff(b_actor),
            phq9(patient_id, Some(instance_id), [0; 9]),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, SubmitError::PatientNotFound), "{err:?}");
}
