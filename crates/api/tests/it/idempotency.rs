//! Invariant I6 over HTTP: a write repeated with the same `Idempotency-Key` is
//! harmless — it answers like the first, creates nothing, and copies that race each
//! other still create exactly one record.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};

use crate::support::{World, patient, request};

fn keyed(uri: &str, token: &str, key: &str, body: &Value) -> Request<Body> {
    request(Method::POST, uri, Some(token))
        .header(header::CONTENT_TYPE, "application/json")
        .header("idempotency-key", key)
        .body(Body::from(body.to_string()))
        .unwrap()
}

#[tokio::test]
async fn the_same_key_and_body_return_the_first_response_and_create_nothing_new() {
    let world = World::new().await;
    let token = &world.a.integration.token;
    let body = patient("Abebe", "MRN-1");

    let first = world
        .send(keyed("/v1/patients", token, "order-4711", &body))
        .await;
    let created = first.ok(StatusCode::CREATED);
    let n_patients = world.count("clinical.patients").await;
    let n_phi = world.count("identity.patient_phi").await;

    let again = world
        .send(keyed("/v1/patients", token, "order-4711", &body))
        .await;

    let replayed = again.ok(StatusCode::CREATED);
    assert_eq!(replayed["id"], created["id"]);
    assert_eq!(replayed["family_name"], "Abebe");
    assert_eq!(
        again.header(header::LOCATION),
        first.header(header::LOCATION)
    );
    assert_eq!(world.count("clinical.patients").await, n_patients);
    assert_eq!(world.count("identity.patient_phi").await, n_phi);
    assert_eq!(world.count("platform.idempotency_keys").await, 1);
}

#[tokio::test]
async fn the_same_key_with_a_different_body_is_refused_and_creates_nothing() {
    let world = World::new().await;
    let token = &world.a.integration.token;
    world
        .send(keyed(
            "/v1/patients",
            token,
            "order-4711",
            &patient("Abebe", "MRN-1"),
        ))
        .await
        .ok(StatusCode::CREATED);
    let before = world.fingerprint().await;

    let reused = world
        .send(keyed(
            "/v1/patients",
            token,
            "order-4711",
            &patient("Someone Else", "MRN-2"),
        ))
        .await;

    assert_eq!(
        reused.problem(StatusCode::UNPROCESSABLE_ENTITY),
        "/problems/idempotency-key-reused"
    );
    world
        .fingerprint()
        .await
        .assert_unchanged(&before, "a reused idempotency key");
}

#[tokio::test]
async fn a_key_is_scoped_to_its_tenant() {
    let world = World::new().await;
    let a = world
        .send(keyed(
            "/v1/patients",
            &world.a.integration.token,
            "order-1",
            &patient("Abebe", "MRN-1"),
        ))
        .await
        .ok(StatusCode::CREATED);
    let b = world
        .send(keyed(
            "/v1/patients",
            &world.b.integration.token,
            "order-1",
            &patient("Abebe", "MRN-1"),
        ))
        .await
        .ok(StatusCode::CREATED);

    assert_ne!(a["id"], b["id"], "tenant B was answered with A's patient");
    assert_eq!(world.count("clinical.patients").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_concurrent_duplicates_create_exactly_one_patient() {
    let world = World::new().await;
    let body = patient("Concurrent", "MRN-8");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let client = world.client.clone();
        let request = keyed("/v1/patients", &world.a.integration.token, "batch-8", &body);
        tasks.spawn(async move { client.send(request).await });
    }

    let mut ids = Vec::new();
    while let Some(reply) = tasks.join_next().await {
        let reply = reply.unwrap();
        ids.push(reply.ok(StatusCode::CREATED)["id"].clone());
    }

    assert_eq!(ids.len(), 8);
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert_eq!(world.count("clinical.patients").await, 1);
    assert_eq!(world.count("identity.patient_phi").await, 1);
    let n_creates: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit.events WHERE action = 'patient.create'")
            .fetch_one(&world.db.admin)
            .await
            .unwrap();
    assert_eq!(n_creates, 1);
}

#[tokio::test]
async fn a_repeated_break_glass_opens_one_grant() {
    let world = World::new().await;
    let patient_id = world
        .create_patient(&world.a.admin.token, &patient("Abebe", "MRN-1"))
        .await;
    let uri = format!("/v1/patients/{patient_id}/break-glass");
    let body = json!({ "reason": "patient unconscious in the emergency department" });

    let first = world
        .send(keyed(&uri, &world.a.clinician.token, "bg-1", &body))
        .await
        .ok(StatusCode::CREATED);
    let again = world
        .send(keyed(&uri, &world.a.clinician.token, "bg-1", &body))
        .await
        .ok(StatusCode::CREATED);

    assert_eq!(first["id"], again["id"]);
    assert_eq!(world.count("identity.break_glass_grants").await, 1);
}
