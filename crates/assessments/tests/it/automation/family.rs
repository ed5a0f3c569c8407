//! Family rules at birthdays, through the database and the materialiser: the PSC-17
//! from each guardian before 12, the PHQ-A from the patient from 12, the PHQ-9 at 18
//! with the guardian gone; a guardianship ended withdraws what was scheduled.

use assessments::guardian;
use assessments::plan::examples::family_mood;
use time::Duration;

use super::*;

const DAY: Duration = Duration::days(1);

async fn add_guardian(world: &World, patient_id: PatientId, since: time::Date) -> Uuid {
    let person_id = world.related_person().await;
    let mut tx = world.tx().await;
    guardian::add(
        &mut tx,
        patient_id,
        person_id,
        assessments::instant::date_to_jiff(since),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    person_id
}

/// (slot, instrument, respondent, guardian) of the instances not cancelled.
async fn assigned(
    world: &World,
    enrollment_id: Uuid,
) -> Vec<(String, String, String, Option<Uuid>)> {
    world
        .instances(enrollment_id)
        .await
        .into_iter()
        .filter(|row| row.status != "cancelled")
        .map(|row| {
            (
                row.slot_key,
                row.instrument_code,
                row.respondent,
                row.respondent_person_id,
            )
        })
        .collect()
}

fn one(
    slot: &str,
    instrument: &str,
    respondent: &str,
    person: Option<Uuid>,
) -> (String, String, String, Option<Uuid>) {
    (
        slot.to_owned(),
        instrument.to_owned(),
        respondent.to_owned(),
        person,
    )
}

#[tokio::test]
async fn the_psc17_goes_to_each_guardian_before_12_and_the_phqa_to_the_patient_from_12() {
    let world = World::new().await;
    let plan = world.plan("family mood", &family_mood()).await;
    // Turns 12 on 2030-04-10, between the second (03-29) and third (04-26) due dates.
    let patient_id = world.patient(Some(date(2018, 4, 10))).await;
    let mother = add_guardian(&world, patient_id, date(2018, 4, 10)).await;
    let father = add_guardian(&world, patient_id, date(2018, 4, 10)).await;
    let start = at("2030-03-01T12:00:00Z");
    let enrollment_id = world
        .enroll(plan.id, patient_id, "Europe/London", start, start)
        .await;
    world
        .materialize_every(DAY, start, start + Duration::days(56))
        .await;
    let mut expected = vec![
        one("k:0", "psc-17", "guardian", Some(mother)),
        one("k:0", "psc-17", "guardian", Some(father)),
        one("k:1", "psc-17", "guardian", Some(mother)),
        one("k:1", "psc-17", "guardian", Some(father)),
        one("k:2", "phq-a", "patient", None),
    ];
    let mut got = assigned(&world, enrollment_id).await;
    expected.sort();
    got.sort();
    assert_eq!(got, expected);
    // The birth date was read through the vault, audited.
    let mut tx = world.tx().await;
    let n_reads: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit.events WHERE action = 'patient.read' AND patient_id = $1",
    )
    .bind(patient_id.as_uuid())
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert!(
        n_reads >= 3,
        "each evaluation reads the birth date, audited"
    );
}

#[tokio::test]
async fn at_18_the_phq9_replaces_the_phqa_and_the_guardian_answers_no_more() {
    let world = World::new().await;
    let def = plan_json(serde_json::json!({
        "rules": [
            { "when": { "age_from": 4, "age_until": 18 }, "instrument": "psc-17", "respondent": "parent_guardian" },
            { "when": { "age_from": 12, "age_until": 18 }, "instrument": "phq-a", "respondent": "patient" },
            { "when": { "age_from": 18 }, "instrument": "phq-9", "respondent": "patient" }
        ],
        "cadence": { "every_days": 28 },
        "window": { "before_days": 3, "after_days": 7 }
    }));
    let plan = world.plan("teen to adult", &def).await;
    // Turns 18 on 2030-04-10.
    let patient_id = world.patient(Some(date(2012, 4, 10))).await;
    let guardian_id = add_guardian(&world, patient_id, date(2012, 4, 10)).await;
    let start = at("2030-03-01T12:00:00Z");
    let enrollment_id = world
        .enroll(plan.id, patient_id, "America/New_York", start, start)
        .await;
    world
        .materialize_every(DAY, start, start + Duration::days(56))
        .await;
    let mut expected = vec![
        one("k:0", "psc-17", "guardian", Some(guardian_id)),
        one("k:0", "phq-a", "patient", None),
        one("k:1", "psc-17", "guardian", Some(guardian_id)),
        one("k:1", "phq-a", "patient", None),
        one("k:2", "phq-9", "patient", None),
    ];
    let mut got = assigned(&world, enrollment_id).await;
    expected.sort();
    got.sort();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn ending_a_guardianship_withdraws_that_guardians_scheduled_instances() {
    let world = World::new().await;
    let plan = world.plan("family mood", &family_mood()).await;
    let patient_id = world.patient(Some(date(2022, 6, 1))).await;
    let mother = add_guardian(&world, patient_id, date(2022, 6, 1)).await;
    let father = add_guardian(&world, patient_id, date(2022, 6, 1)).await;
    let start = at("2030-03-01T12:00:00Z");
    let enrollment_id = world
        .enroll(plan.id, patient_id, "Europe/London", start, start)
        .await;
    // k:1 (due 03-29, opens 03-26) is made, scheduled, on 03-25.
    let before = at("2030-03-25T12:00:00Z");
    world.materialize_every(DAY, start, before).await;
    assert_eq!(assigned(&world, enrollment_id).await.len(), 4);
    let mut tx = world.tx().await;
    guardian::end(
        &mut tx,
        patient_id,
        father,
        assessments::instant::date_to_jiff(date(2030, 3, 20)),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    world.materialize_at(before + Duration::hours(1)).await;
    let mut got = assigned(&world, enrollment_id).await;
    got.sort();
    let mut expected = vec![
        one("k:0", "psc-17", "guardian", Some(mother)),
        one("k:0", "psc-17", "guardian", Some(father)),
        one("k:1", "psc-17", "guardian", Some(mother)),
    ];
    expected.sort();
    assert_eq!(
        got, expected,
        "the father's k:1 was withdrawn; k:0 was already open"
    );
}

#[tokio::test]
async fn a_guardianship_recorded_twice_is_ended_once_and_for_all() {
    let world = World::new().await;
    let patient_id = world.patient(Some(date(2022, 6, 1))).await;
    let guardian_id = add_guardian(&world, patient_id, date(2024, 1, 1)).await;
    // Recorded again from a later day while still in force: no second relationship.
    let mut tx = world.tx().await;
    guardian::add(
        &mut tx,
        patient_id,
        guardian_id,
        assessments::instant::date_to_jiff(date(2024, 6, 1)),
    )
    .await
    .unwrap();
    guardian::end(
        &mut tx,
        patient_id,
        guardian_id,
        assessments::instant::date_to_jiff(date(2025, 1, 1)),
    )
    .await
    .unwrap();
    let guardians = guardian::of_patient(&mut tx, patient_id).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(guardians.len(), 1, "one relationship, not two");
    assert!(
        guardians.iter().all(|g| g.until.is_some()),
        "no relationship left in force: the guardian has no access after the end"
    );
}

#[tokio::test]
async fn a_guardian_who_is_no_related_person_of_the_tenant_is_refused() {
    let world = World::new().await;
    let patient_id = world.patient(Some(date(2022, 6, 1))).await;
    let mut tx = world.tx().await;
    let err = guardian::add(
        &mut tx,
        patient_id,
        Uuid::now_v7(),
        jiff::civil::date(2024, 1, 1),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, guardian::GuardianError::PersonNotFound),
        "{err:?}"
    );
    tx.rollback().await.unwrap();
    // Another tenant's related person is nobody here either.
    let other = world.other_tenant().await;
    let person_id = kernel::PersonId::generate();
    let mut tx = world.tx_of(other).await;
    identity::related_person::create(
        &mut tx,
        &world.keyring,
        person_id,
        &identity::related_person::Contact {
            family_name: "Okafor".to_owned(),
            given_names: vec!["Ngozi".to_owned()],
            email: None,
            phone: None,
        },
        &identity::vault::Access::default(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let mut tx = world.tx().await;
    let err = guardian::add(
        &mut tx,
        patient_id,
        person_id.into_uuid(),
        jiff::civil::date(2024, 1, 1),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, guardian::GuardianError::PersonNotFound),
        "{err:?}"
    );
    assert_eq!(world.count("guardians", "true").await, 0);
}
