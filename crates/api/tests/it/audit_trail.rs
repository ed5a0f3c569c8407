//! Invariant I3 over HTTP: every PHI endpoint leaves exactly one audit event per
//! patient it touched, written by the request's own transaction, and a request that
//! fails leaves none. Events are counted as superuser, outside the API.

use axum::body::Body;
use axum::http::{Method, StatusCode, header};
use serde_json::json;
use uuid::Uuid;

use crate::support::{AuditRow, World, patient, request};

/// The events as `(action, patient)` pairs, in the order written.
fn actions(rows: &[AuditRow]) -> Vec<(&str, Option<Uuid>)> {
    rows.iter()
        .map(|row| (row.action.as_str(), row.patient_id))
        .collect()
}

#[tokio::test]
async fn creating_reading_and_updating_a_patient_each_leave_exactly_one_audit_event() {
    let world = World::new().await;
    let admin = &world.a.admin;

    let mark = world.audit_mark().await;
    let patient_id = world
        .create_patient(&admin.token, &patient("Okafor", "MRN-1"))
        .await;
    let created = world.audit_since(&mark).await;
    assert_eq!(actions(&created), [("patient.create", Some(patient_id))]);
    assert_eq!(created[0].tenant_id, *world.a.id.as_uuid());
    assert_eq!(created[0].actor, format!("api_key:{}", admin.key_id));
    assert_eq!(created[0].purpose.as_deref(), Some("operations"));
    assert!(!created[0].break_glass);

    let mark = world.audit_mark().await;
    let read = world
        .get(&format!("/v1/patients/{patient_id}"), &admin.token)
        .await;
    read.ok(StatusCode::OK);
    let events = world.audit_since(&mark).await;
    assert_eq!(actions(&events), [("patient.read", Some(patient_id))]);
    // The event names the request the client saw, so the two can be matched.
    let request_id = read
        .header("x-request-id")
        .unwrap()
        .parse::<Uuid>()
        .unwrap();
    assert_eq!(events[0].request_id, Some(request_id));

    let mark = world.audit_mark().await;
    world
        .put(
            &format!("/v1/patients/{patient_id}"),
            &admin.token,
            &patient("Okafor-Smith", "MRN-1"),
        )
        .await
        .ok(StatusCode::OK);
    assert_eq!(
        actions(&world.audit_since(&mark).await),
        [("patient.update", Some(patient_id))]
    );
}

#[tokio::test]
async fn a_search_leaves_one_audit_event_per_disclosed_patient_and_none_for_restricted_ones() {
    let world = World::new().await;
    let (admin, clinician) = (&world.a.admin, &world.a.clinician);
    // Two namesakes born the same day, and a third patient who does not match.
    let first = world
        .create_patient(&admin.token, &patient("Nakamura", "MRN-1"))
        .await;
    let second = world
        .create_patient(&admin.token, &patient("Nakamura", "MRN-2"))
        .await;
    world
        .create_patient(&admin.token, &patient("Other", "MRN-3"))
        .await;
    let by_name =
        json!({ "family_name": "nakamura", "given_name": "ALEX", "birth_date": "1984-02-29" });

    let mark = world.audit_mark().await;
    let found = world
        .post("/v1/patients/search", &admin.token, &by_name)
        .await
        .ok(StatusCode::OK);
    assert_eq!(found["patients"].as_array().unwrap().len(), 2, "{found}");
    let rows = world.audit_since(&mark).await;
    let mut events = actions(&rows);
    events.sort();
    let mut expected = vec![
        ("patient.read", Some(first)),
        ("patient.read", Some(second)),
    ];
    expected.sort();
    assert_eq!(events, expected);

    let mark = world.audit_mark().await;
    let found = world
        .post(
            "/v1/patients/search",
            &admin.token,
            &json!({ "identifier": { "authority": "general-hospital", "value": "MRN-2" } }),
        )
        .await
        .ok(StatusCode::OK);
    assert_eq!(found["patients"][0]["id"], second.to_string());
    assert_eq!(
        actions(&world.audit_since(&mark).await),
        [("patient.read", Some(second))]
    );

    // The clinician cares for neither namesake: both are listed as restricted, and
    // nothing was disclosed, so nothing is recorded.
    let mark = world.audit_mark().await;
    let found = world
        .post("/v1/patients/search", &clinician.token, &by_name)
        .await
        .ok(StatusCode::OK);
    assert_eq!(found["patients"], json!([]));
    assert_eq!(found["restricted"].as_array().unwrap().len(), 2, "{found}");
    assert_eq!(actions(&world.audit_since(&mark).await), []);

    let mark = world.audit_mark().await;
    let found = world
        .post(
            "/v1/patients/search",
            &admin.token,
            &json!({ "identifier": { "authority": "GENERAL-HOSPITAL", "value": "MRN-404" } }),
        )
        .await
        .ok(StatusCode::OK);
    assert_eq!(found["patients"], json!([]));
    assert_eq!(actions(&world.audit_since(&mark).await), []);
}

#[tokio::test]
async fn a_list_leaves_one_audit_event_per_patient_on_the_page() {
    let world = World::new().await;
    let admin = &world.a.admin;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            world
                .create_patient(&admin.token, &patient("Lindqvist", &format!("MRN-{i}")))
                .await,
        );
    }
    ids.sort();

    let mark = world.audit_mark().await;
    let page = world
        .get("/v1/patients?limit=2", &admin.token)
        .await
        .ok(StatusCode::OK);
    let listed: Vec<Uuid> = page["patients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(listed, ids[..2]);
    let rows = world.audit_since(&mark).await;
    let mut events = actions(&rows);
    events.sort();
    assert_eq!(
        events,
        [
            ("patient.read", Some(ids[0])),
            ("patient.read", Some(ids[1]))
        ]
    );

    let mark = world.audit_mark().await;
    let next = page["next_after"].as_str().unwrap();
    let page = world
        .get(&format!("/v1/patients?limit=2&after={next}"), &admin.token)
        .await
        .ok(StatusCode::OK);
    assert_eq!(page["patients"].as_array().unwrap().len(), 1);
    assert!(page["next_after"].is_null(), "{page}");
    assert_eq!(
        actions(&world.audit_since(&mark).await),
        [("patient.read", Some(ids[2]))]
    );
}

#[tokio::test]
async fn breaking_the_glass_leaves_one_flagged_event_and_reading_the_access_log_one_more() {
    let world = World::new().await;
    let (admin, clinician, auditor) = (&world.a.admin, &world.a.clinician, &world.a.auditor);
    let patient_id = world
        .create_patient(&admin.token, &patient("Moreau", "MRN-1"))
        .await;
    let reason = "patient unconscious in the emergency department";

    let mark = world.audit_mark().await;
    world
        .post(
            &format!("/v1/patients/{patient_id}/break-glass"),
            &clinician.token,
            &json!({ "reason": reason }),
        )
        .await
        .ok(StatusCode::CREATED);
    let events = world.audit_since(&mark).await;
    assert_eq!(actions(&events), [("break_glass.open", Some(patient_id))]);
    assert!(events[0].break_glass);
    assert_eq!(events[0].purpose.as_deref(), Some(reason));
    assert_eq!(events[0].actor, format!("api_key:{}", clinician.key_id));

    let mark = world.audit_mark().await;
    world
        .get(
            &format!("/v1/patients/{patient_id}/access-log"),
            &auditor.token,
        )
        .await
        .ok(StatusCode::OK);
    let events = world.audit_since(&mark).await;
    assert_eq!(actions(&events), [("access_log.read", Some(patient_id))]);
    assert!(!events[0].break_glass);

    let mark = world.audit_mark().await;
    world
        .post(
            &format!("/v1/patients/{patient_id}/care-team"),
            &admin.token,
            &json!({ "user_id": clinician.user_id }),
        )
        .await;
    assert_eq!(
        actions(&world.audit_since(&mark).await),
        [("care_team.add", Some(patient_id))]
    );
}

#[tokio::test]
async fn a_failed_request_leaves_no_audit_event() {
    let world = World::new().await;
    let (admin, clinician) = (&world.a.admin, &world.a.clinician);
    let patient_id = world
        .create_patient(&admin.token, &patient("Haddad", "MRN-1"))
        .await;
    let p = format!("/v1/patients/{patient_id}");
    let mut bad_birth = patient("Haddad", "MRN-1");
    bad_birth["birth_date"] = json!("1984-13-02");

    let mark = world.audit_mark().await;
    world
        .post("/v1/patients", &admin.token, &bad_birth)
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    world
        .put(&p, &admin.token, &bad_birth)
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    // A second patient with the first one's MRN is a conflict, found only when the
    // identifier index is written, after the patient rows: all of it rolls back.
    world
        .post("/v1/patients", &admin.token, &patient("Other", "MRN-1"))
        .await
        .problem(StatusCode::CONFLICT);
    // A stale version is refused after the record was locked.
    let stale = request(Method::PUT, &p, Some(&admin.token))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::IF_MATCH, "\"7\"")
        .body(Body::from(patient("Haddad", "MRN-1").to_string()))
        .unwrap();
    world.send(stale).await.problem(StatusCode::CONFLICT);
    world
        .post(
            &format!("{p}/break-glass"),
            &clinician.token,
            &json!({ "reason": "short" }),
        )
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    world
        .get(&p, &clinician.token)
        .await
        .problem(StatusCode::FORBIDDEN);

    assert_eq!(actions(&world.audit_since(&mark).await), []);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pages_of_one_tenant_are_all_served_and_all_audited() {
    // Each page appends one event per patient; many pages at once in one tenant
    // contend for the tenant's chain lanes and must neither fail nor lose events.
    const N_PATIENTS: usize = 20;
    const N_PAGES: usize = 16;
    let world = World::new().await;
    for i in 0..N_PATIENTS {
        world
            .create_patient(&world.a.admin.token, &patient("Page", &format!("MRN-{i}")))
            .await;
    }
    let mark = world.audit_mark().await;

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..N_PAGES {
        let client = world.client.clone();
        let token = world.a.admin.token.clone();
        tasks.spawn(async move { client.get("/v1/patients?limit=100", &token).await });
    }
    while let Some(reply) = tasks.join_next().await {
        let page = reply.unwrap().ok(StatusCode::OK);
        assert_eq!(page["patients"].as_array().unwrap().len(), N_PATIENTS);
    }

    assert_eq!(world.audit_since(&mark).await.len(), N_PATIENTS * N_PAGES);
}
