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
