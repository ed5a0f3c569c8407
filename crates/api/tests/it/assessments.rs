//! `/v1/assessments`: plans (admins), enrolments one at a time and in batches, the
//! due list — tenant-scoped (another tenant's ids are 404), problem JSON on bad
//! input, idempotent writes.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::support::{World, json_request, patient};

fn plan() -> serde_json::Value {
    json!({
        "rules": [{ "when": { "age_from": 18 }, "instrument": "phq-9", "respondent": "patient" }],
        "cadence": { "every_months": 1 },
        "window": { "before_days": 3, "after_days": 7 },
        "stop": { "after_days": 365 }
    })
}

#[tokio::test]
async fn plans_and_enrolments_are_the_tenants_own_and_bad_input_is_a_problem_naming_the_field() {
    let world = World::new().await;
    let (a, b) = (&world.a, &world.b);

    // Only admins make plans; a plan that cannot be carried out names its field.
    world
        .post(
            "/v1/assessments/plans",
            &a.clinician.token,
            &json!({ "name": "m", "definition": plan() }),
        )
        .await
        .problem(StatusCode::FORBIDDEN);
    let mut overlapping = plan();
    overlapping["window"]["before_days"] = json!(30);
    let reply = world
        .post(
            "/v1/assessments/plans",
            &a.admin.token,
            &json!({ "name": "m", "definition": overlapping }),
        )
        .await;
    reply.problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        reply.json()["detail"].as_str().unwrap().contains("window"),
        "{}",
        reply.text()
    );
    let created = world
        .post(
            "/v1/assessments/plans",
            &a.admin.token,
            &json!({ "name": "monthly", "definition": plan() }),
        )
        .await
        .ok(StatusCode::CREATED);
    let plan_id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["version"], 1);
    world
        .post(
            "/v1/assessments/plans",
            &a.admin.token,
            &json!({ "name": "monthly", "definition": plan() }),
        )
        .await
        .problem(StatusCode::CONFLICT);
    let changed = world
        .put(
            &format!("/v1/assessments/plans/{plan_id}"),
            &a.admin.token,
            &json!({ "definition": plan(), "overdue_grace_hours": 24 }),
        )
        .await
        .ok(StatusCode::OK);
    assert_eq!(changed["version"], 2);

    let patient_id = world
        .create_patient(&a.clinician.token, &patient("Aldana", "A-0001"))
        .await;
    let enrolment = json!({
        "plan_id": plan_id,
        "patient_id": patient_id,
        "clinician_id": a.clinician.user_id,
        "time_zone": "America/Chicago",
    });
    // An Idempotency-Key'd enrolment, retried: one enrolment.
    let keyed = || {
        let mut request = json_request(
            Method::POST,
            "/v1/assessments/enrollments",
            Some(&a.clinician.token),
            &enrolment,
        );
        request
            .headers_mut()
            .insert("idempotency-key", "enrol-aldana-1".parse().unwrap());
        request
    };
    let first = world.send(keyed()).await.ok(StatusCode::CREATED);
    let replay = world.send(keyed()).await.ok(StatusCode::CREATED);
    assert_eq!(first["id"], replay["id"]);
    // Without the key: already enrolled, reported with the active enrolment.
    let again = world
        .post(
            "/v1/assessments/enrollments",
            &a.clinician.token,
            &enrolment,
        )
        .await
        .ok(StatusCode::OK);
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["plan_version"], 2);
    let mut bad_zone = enrolment.clone();
    bad_zone["time_zone"] = json!("Central Time");
    let reply = world
        .post("/v1/assessments/enrollments", &a.clinician.token, &bad_zone)
        .await;
    reply.problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(reply.text().contains("time_zone"), "{}", reply.text());
    let enrollment_id = first["id"].as_str().unwrap().to_owned();

    // Tenant B: every id of A's is unknown.
    world
        .get(&format!("/v1/assessments/plans/{plan_id}"), &b.admin.token)
        .await
        .problem(StatusCode::NOT_FOUND);
    world
        .get(
            &format!("/v1/assessments/enrollments/{enrollment_id}"),
            &b.clinician.token,
        )
        .await
        .problem(StatusCode::NOT_FOUND);
    world
        .post(
            &format!("/v1/assessments/enrollments/{enrollment_id}/stop"),
            &b.clinician.token,
            &json!({}),
        )
        .await
        .problem(StatusCode::NOT_FOUND);
    world
        .post(
            "/v1/assessments/enrollments",
            &b.clinician.token,
            &enrolment,
        )
        .await
        .problem(StatusCode::NOT_FOUND);
    world
        .post(
            "/v1/assessments/guardians",
            &b.clinician.token,
            &json!({ "patient_id": patient_id, "person_id": patient_id, "date": "2020-01-01" }),
        )
        .await
        .problem(StatusCode::NOT_FOUND);
    let listed = world
        .get("/v1/assessments/plans", &b.admin.token)
        .await
        .ok(StatusCode::OK);
    assert_eq!(listed, json!([]));

    // A batch: one row enrolled already, one unknown, one not an id.
    let other = world
        .create_patient(&a.clinician.token, &patient("Bexley", "A-0002"))
        .await;
    let csv = format!(
        "patient_id\n{patient_id}\n{other}\n{}\nJane Doe\n",
        uuid::Uuid::now_v7()
    );
    // Rows may name any patient of the tenant: batches are an admin's.
    world
        .post(
            "/v1/assessments/enrollments/batch",
            &a.clinician.token,
            &json!({ "plan_id": plan_id, "csv": csv, "time_zone": "Europe/Rome" }),
        )
        .await
        .problem(StatusCode::FORBIDDEN);
    let batch = world
        .post(
            "/v1/assessments/enrollments/batch",
            &a.admin.token,
            &json!({ "plan_id": plan_id, "csv": csv, "time_zone": "Europe/Rome" }),
        )
        .await
        .ok(StatusCode::OK);
    assert_eq!(batch["n_rows"], 4);
    assert_eq!(batch["n_enrolled"], 1);
    assert_eq!(batch["n_already_enrolled"], 1);
    assert_eq!(
        batch["invalid"],
        json!([{ "row": 3, "reason": "patient_not_found" }, { "row": 4, "reason": "invalid_patient_id" }])
    );
    assert!(!batch.to_string().contains("Jane"));

    // Nothing is due yet (the materialiser has not run); bad parameters are problems.
    let due = world
        .get(
            &format!("/v1/assessments/due?clinician={}", a.clinician.user_id),
            &a.clinician.token,
        )
        .await
        .ok(StatusCode::OK);
    assert_eq!(due, json!([]));
    // A clinician reads their own due list, not a colleague's.
    world
        .get(
            &format!("/v1/assessments/due?clinician={}", uuid::Uuid::now_v7()),
            &a.clinician.token,
        )
        .await
        .problem(StatusCode::FORBIDDEN);
    world
        .get(
            &format!(
                "/v1/assessments/due?clinician={}&days=9999",
                a.clinician.user_id
            ),
            &a.clinician.token,
        )
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);

    let stopped = world
        .post(
            &format!("/v1/assessments/enrollments/{enrollment_id}/stop"),
            &a.clinician.token,
            &json!({}),
        )
        .await
        .ok(StatusCode::OK);
    assert_eq!(stopped["status"], "stopped");
    assert_eq!(stopped["stop_reason"], "stopped_by_clinician");
    world
        .post(
            &format!("/v1/assessments/enrollments/{enrollment_id}/stop"),
            &a.clinician.token,
            &json!({}),
        )
        .await
        .problem(StatusCode::CONFLICT);
}
