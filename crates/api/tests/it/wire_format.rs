//! Snapshots of what clients parse: problem JSON and the patient representation.
//! Ids and timestamps are redacted; everything else is the contract.

use axum::http::StatusCode;
use serde_json::json;

use crate::support::{World, patient};

#[tokio::test]
async fn a_not_found_problem_keeps_its_shape() {
    let world = World::new().await;

    let reply = world
        .get(
            &format!("/v1/patients/{}", uuid::Uuid::now_v7()),
            &world.a.admin.token,
        )
        .await;

    reply.problem(StatusCode::NOT_FOUND);
    insta::assert_json_snapshot!("problem_not_found", reply.json());
}

#[tokio::test]
async fn an_invalid_input_problem_keeps_its_shape() {
    let world = World::new().await;
    let mut body = patient("Doe", "MRN-1");
    body["birth_date"] = json!("1984-13-02");

    let reply = world
        .post("/v1/patients", &world.a.admin.token, &body)
        .await;

    reply.problem(StatusCode::UNPROCESSABLE_ENTITY);
    insta::assert_json_snapshot!("problem_invalid_input", reply.json());
}

#[tokio::test]
async fn an_unknown_field_problem_keeps_its_shape() {
    let world = World::new().await;
    let mut body = patient("Doe", "MRN-1");
    body["nickname"] = json!("Jo");

    let reply = world
        .post("/v1/patients", &world.a.admin.token, &body)
        .await;

    reply.problem(StatusCode::UNPROCESSABLE_ENTITY);
    insta::assert_json_snapshot!("problem_unknown_field", reply.json());
}

#[tokio::test]
async fn a_created_patient_view_keeps_its_shape() {
    let world = World::new().await;
    let body = json!({
        "family_name": "Doe",
        "given_names": ["Jane", "Q."],
        "birth_date": "1984-02-29",
        "sex": "female",
        "phone": "+1 555 0100 123",
        "email": "jane.doe@example.org",
        "address": {
            "lines": ["1 Main Street", "Apt 2"],
            "city": "Springfield",
            "region": "IL",
            "postal_code": "62701",
            "country": "US"
        },
        "identifiers": [
            { "authority": "GENERAL-HOSPITAL", "value": "MRN-0001" },
            { "authority": "US-SSA", "kind": "SS", "value": "000-00-0000" }
        ],
    });

    let reply = world
        .post("/v1/patients", &world.a.admin.token, &body)
        .await;

    let view = reply.ok(StatusCode::CREATED);
    assert_eq!(
        reply.header(axum::http::header::LOCATION),
        Some(format!("/v1/patients/{}", view["id"].as_str().unwrap()).as_str())
    );
    assert_eq!(view["created_at"], view["updated_at"]);
    insta::assert_json_snapshot!("created_patient_view", view, {
        ".id" => "[id]",
        ".created_at" => "[timestamp]",
        ".updated_at" => "[timestamp]",
    });
}

#[tokio::test]
async fn a_scored_response_and_its_score_history_keep_their_shape() {
    let world = World::new().await;
    let clinician = &world.a.clinician.token;
    let patient_id = world
        .create_patient(clinician, &patient("Doe", "MRN-1"))
        .await;
    let answers = |values: [u8; 9]| {
        values
            .iter()
            .enumerate()
            .map(|(i, value)| json!({ "item": (i + 1).to_string(), "value": value }))
            .collect::<Vec<_>>()
    };
    let body = |values| json!({ "patient_id": patient_id, "instrument": "phq-9", "respondent": "patient", "answers": answers(values) });
    world
        .post(
            "/v1/assessments/responses",
            clinician,
            &body([3, 3, 3, 3, 2, 2, 2, 2, 0]),
        )
        .await
        .ok(StatusCode::CREATED);
    let view = world
        .post(
            "/v1/assessments/responses",
            clinician,
            &body([1, 1, 1, 1, 0, 0, 0, 0, 1]),
        )
        .await
        .ok(StatusCode::CREATED);
    insta::assert_json_snapshot!("scored_response_view", view, {
        ".id" => "[id]",
        ".patient_id" => "[id]",
        ".submitted_by" => "[actor]",
        ".submitted_at" => "[timestamp]",
        ".safety_event_id" => "[id]",
        ".score.progress.baseline_response_id" => "[id]",
    });
    let history = world
        .get(
            &format!("/v1/patients/{patient_id}/assessments/scores?instrument=phq-9"),
            clinician,
        )
        .await
        .ok(StatusCode::OK);
    insta::assert_json_snapshot!("score_history", history, {
        ".patient_id" => "[id]",
        ".points[].response_id" => "[id]",
        ".points[].at" => "[timestamp]",
        ".points[].progress.baseline_response_id" => "[id]",
    });
}
