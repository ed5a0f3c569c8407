//! Item 9 of the PHQ-9 raises an urgent safety event in the response's own
//! transaction, whatever the total; the care team lists and acknowledges it.

use assessments::safety::{self, AcknowledgeError, Filter, Scope};
use kernel::UserId;
use serde_json::Value;
use uuid::Uuid;

use crate::world::{CANARY, World, treatment};

#[tokio::test]
async fn a_positive_item_9_raises_a_safety_event_and_an_outbox_event_even_with_a_minimal_total() {
    let world = World::new().await;
    let patient_id = world.adult().await;
    // A total of 1: "minimal" on every band, and still urgent.
    let submitted = world.phq9(patient_id, [0, 0, 0, 0, 0, 0, 0, 0, 1]).await;
    assert_eq!(
        (submitted.score.total, submitted.score.band.as_str()),
        (1, "minimal")
    );
    let event_id = submitted.safety_event_id.expect("a safety event");
    assert!(submitted.score.flags.contains(&"self_harm".to_owned()));

    let (kind, response_id, open): (String, Uuid, bool) = sqlx::query_as(
        "SELECT kind::text, response_id, acknowledged_at IS NULL FROM assessments.safety_events WHERE id = $1",
    )
    .bind(event_id)
    .fetch_one(&world.db.admin)
    .await
    .unwrap();
    assert_eq!(
        (kind.as_str(), response_id, open),
        ("self_harm", submitted.response_id, true)
    );

    let events: Vec<(String, Value)> =
        sqlx::query_as("SELECT event_type, payload FROM assessments.outbox ORDER BY occurred_at")
            .fetch_all(&world.db.admin)
            .await
            .unwrap();
    let flagged = events
        .iter()
        .find(|(event_type, _)| event_type == "assessment.safety_flagged")
        .expect("an assessment.safety_flagged event");
    assert_eq!(flagged.1["patient_id"], patient_id.to_string());
    assert_eq!(flagged.1["safety_event_id"], event_id.to_string());
    // Ids and codes only: no answer, total, band or name in any event.
    for (event_type, payload) in &events {
        let keys: Vec<&String> = payload.as_object().unwrap().keys().collect();
        for key in &keys {
            assert!(
                [
                    "safety_event_id",
                    "patient_id",
                    "response_id",
                    "instance_id",
                    "kind",
                    "instrument",
                    "instrument_version",
                    "urgent",
                ]
                .contains(&key.as_str()),
                "{event_type} carries {key}"
            );
        }
        assert!(!payload.to_string().contains(CANARY));
    }

    // A zero on item 9 raises nothing, whatever the total.
    let severe = world.phq9(patient_id, [3, 3, 3, 3, 3, 3, 3, 3, 0]).await;
    assert_eq!(severe.safety_event_id, None);
    assert_eq!(world.count("assessments.safety_events").await, 1);
}

#[tokio::test]
async fn the_care_team_lists_and_acknowledges_safety_events_of_its_own_tenant_only() {
    let world = World::new().await;
    let patient_id = world.adult().await;
    let other_patient = world.adult().await;
    let event_id = world
        .phq9(patient_id, [1, 1, 1, 1, 1, 1, 1, 1, 2])
        .await
        .safety_event_id
        .unwrap();
    world.phq9(other_patient, [0, 0, 0, 0, 0, 0, 0, 0, 3]).await;
    let user_id = world.clinician.user_id.unwrap();
    let mut tx = world.tx(world.a).await;
    clinical::care_team::add(&mut tx, patient_id, user_id)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let open = Filter {
        open_only: true,
        patient_id: None,
        limit: 50,
    };

    let mut tx = world.tx(world.a).await;
    let all = safety::list(&mut tx, Scope::Tenant, open, &treatment())
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    let mine = safety::list(&mut tx, Scope::CareTeamOf(user_id), open, &treatment())
        .await
        .unwrap();
    assert_eq!(
        mine.iter().map(|event| event.id).collect::<Vec<_>>(),
        [event_id]
    );
    tx.commit().await.unwrap();

    // Tenant B sees none of it and cannot acknowledge it.
    let mut tx = world.tx(world.b).await;
    assert!(
        safety::list(&mut tx, Scope::Tenant, open, &treatment())
            .await
            .unwrap()
            .is_empty()
    );
    let err = safety::acknowledge(&mut tx, event_id, UserId::generate())
        .await
        .unwrap_err();
    assert!(matches!(err, AcknowledgeError::NotFound), "{err:?}");
    tx.rollback().await.unwrap();

    let mut tx = world.tx(world.a).await;
    let acknowledged = safety::acknowledge(&mut tx, event_id, user_id)
        .await
        .unwrap();
    assert_eq!(acknowledged.acknowledged_by, Some(user_id));
    let err = safety::acknowledge(&mut tx, event_id, user_id)
        .await
        .unwrap_err();
    assert!(
        matches!(err, AcknowledgeError::AlreadyAcknowledged),
        "{err:?}"
    );
    let still_open = safety::list(&mut tx, Scope::Tenant, open, &treatment())
        .await
        .unwrap();
    assert_eq!(still_open.len(), 1);
    tx.commit().await.unwrap();
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM assessments.outbox WHERE event_type = 'assessment.safety_acknowledged'",
    )
    .fetch_one(&world.db.admin)
    .await
    .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn a_care_team_page_finds_its_patients_event_behind_thousands_of_newer_events_of_others() {
    let world = World::new().await;
    let patient_id = world.adult().await;
    let other_patient = world.adult().await;
    let event_id = world
        .phq9(patient_id, [1, 1, 1, 1, 1, 1, 1, 1, 2])
        .await
        .safety_event_id
        .unwrap();
    let other_event = world
        .phq9(other_patient, [0, 0, 0, 0, 0, 0, 0, 0, 3])
        .await
        .safety_event_id
        .unwrap();
    // 2 500 newer events of the other patient, each on its own copy of the response.
    sqlx::query(
        "WITH copies AS (
             SELECT gen_random_uuid() AS response_id, gen_random_uuid() AS event_id, n
             FROM generate_series(1, 2500) AS n
         ), responses AS (
             INSERT INTO assessments.responses
             SELECT (jsonb_populate_record(r, jsonb_build_object('id', c.response_id))).*
             FROM assessments.responses r, copies c
             WHERE r.id = (SELECT response_id FROM assessments.safety_events WHERE id = $1)
         )
         INSERT INTO assessments.safety_events (tenant_id, id, patient_id, response_id, kind, raised_at)
         SELECT e.tenant_id, c.event_id, e.patient_id, c.response_id, e.kind,
                e.raised_at + c.n * interval '1 second'
         FROM assessments.safety_events e, copies c WHERE e.id = $1",
    )
    .bind(other_event)
    .execute(&world.db.admin)
    .await
    .unwrap();
    let user_id = world.clinician.user_id.unwrap();
    let mut tx = world.tx(world.a).await;
    clinical::care_team::add(&mut tx, patient_id, user_id)
        .await
        .unwrap();
    let open = Filter {
        open_only: true,
        patient_id: None,
        limit: 10,
    };
    let mine = safety::list(&mut tx, Scope::CareTeamOf(user_id), open, &treatment())
        .await
        .unwrap();
    assert_eq!(
        mine.iter().map(|event| event.id).collect::<Vec<_>>(),
        [event_id]
    );
    tx.commit().await.unwrap();
}
