//! Invariant I1 over HTTP: another tenant's id is indistinguishable from an unknown
//! one. Tenant B's credentials, whatever their role, get 404 for every endpoint that
//! names tenant A's rows — never 403, never data — and write nothing.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{Principal, World, patient};

struct Probe<'a> {
    method: Method,
    uri: String,
    body: Option<Value>,
    /// B's principals whose role may call the endpoint at all (the others get the
    /// role's 403, which says nothing about the id).
    callers: Vec<&'a Principal>,
}

#[tokio::test]
async fn tenant_b_gets_404_for_every_endpoint_that_names_tenant_a_ids_and_writes_nothing() {
    let world = World::new().await;
    let (a, b) = (&world.a, &world.b);
    let patient_id = world
        .create_patient(&a.admin.token, &patient("Aldana", "A-0001"))
        .await;
    let p = format!("/v1/patients/{patient_id}");
    let phi_roles = vec![&b.admin, &b.clinician, &b.care_coordinator, &b.integration];
    let probes = [
        Probe {
            method: Method::GET,
            uri: p.clone(),
            body: None,
            callers: phi_roles.clone(),
        },
        Probe {
            method: Method::PUT,
            uri: p.clone(),
            body: Some(patient("Overwritten", "B-0001")),
            callers: phi_roles.clone(),
        },
        Probe {
            method: Method::GET,
            uri: format!("{p}/access-log"),
            body: None,
            callers: vec![&b.admin, &b.auditor],
        },
        Probe {
            method: Method::POST,
            uri: format!("{p}/break-glass"),
            body: Some(json!({ "reason": "emergency department, unconscious" })),
            callers: vec![&b.clinician],
        },
        Probe {
            method: Method::POST,
            uri: format!("{p}/care-team"),
            body: Some(json!({ "user_id": b.clinician.user_id })),
            callers: vec![&b.admin, &b.care_coordinator],
        },
        Probe {
            // A's ids on both sides: the patient in the path and A's user in the body.
            method: Method::POST,
            uri: format!("{p}/care-team"),
            body: Some(json!({ "user_id": a.clinician.user_id })),
            callers: vec![&b.admin, &b.care_coordinator],
        },
        Probe {
            method: Method::DELETE,
            uri: format!("/v1/api-keys/{}", a.integration.key_id),
            body: None,
            callers: vec![&b.admin],
        },
    ];
    // Authenticate each of B's keys once first: the first use of a key records it.
    for principal in b.principals() {
        world
            .get("/v1/me", &principal.token)
            .await
            .ok(StatusCode::OK);
    }
    let before = world.fingerprint().await;

    for probe in &probes {
        for caller in &probe.callers {
            let reply = world
                .call(
                    probe.method.clone(),
                    &probe.uri,
                    &caller.token,
                    probe.body.as_ref(),
                )
                .await;
            let what = format!("{} {} as B's {}", probe.method, probe.uri, caller.role);
            assert_eq!(
                reply.status,
                StatusCode::NOT_FOUND,
                "{what}: {}",
                reply.text()
            );
            assert_eq!(
                reply.problem(StatusCode::NOT_FOUND),
                "/problems/not-found",
                "{what}"
            );
            assert!(
                !reply.text().contains("Aldana") && !reply.text().contains("A-0001"),
                "{what} disclosed data: {}",
                reply.text()
            );
        }
    }

    world
        .fingerprint()
        .await
        .assert_unchanged(&before, "B's requests for A's ids");
    // A's key survived B's attempt to revoke it, and A's patient is as A wrote them.
    world
        .get("/v1/me", &a.integration.token)
        .await
        .ok(StatusCode::OK);
    let read = world.get(&p, &a.admin.token).await.ok(StatusCode::OK);
    assert_eq!(read["family_name"], "Aldana");
    assert_eq!(read["version"], 1);
}

#[tokio::test]
async fn tenant_b_listing_and_searching_never_sees_tenant_a_patients() {
    let world = World::new().await;
    let (a, b) = (&world.a, &world.b);
    let mut a_ids = Vec::new();
    for (i, name) in ["Aldana", "Abara", "Achebe"].into_iter().enumerate() {
        a_ids.push(
            world
                .create_patient(&a.admin.token, &patient(name, &format!("A-{i}")))
                .await,
        );
    }
    // B has a patient with the same name, birth date and MRN as one of A's.
    let b_id = world
        .create_patient(&b.admin.token, &patient("Aldana", "A-0"))
        .await;

    for principal in [&b.admin, &b.integration, &b.clinician, &b.care_coordinator] {
        let page = world
            .get("/v1/patients?limit=100", &principal.token)
            .await
            .ok(StatusCode::OK);
        let listed = ids(&page["patients"]);
        assert!(
            listed.iter().all(|id| !a_ids.contains(id)),
            "B's {} listed A's patients: {listed:?}",
            principal.role
        );
    }
    let page = world
        .get("/v1/patients", &b.admin.token)
        .await
        .ok(StatusCode::OK);
    assert_eq!(ids(&page["patients"]), vec![b_id]);

    let searches = [
        json!({ "identifier": { "authority": "GENERAL-HOSPITAL", "value": "A-1" } }),
        json!({ "family_name": "Abara", "given_name": "Alex", "birth_date": "1984-02-29" }),
        json!({ "identifier": { "authority": "GENERAL-HOSPITAL", "value": "A-0" } }),
        json!({ "family_name": "Aldana", "given_name": "Alex", "birth_date": "1984-02-29" }),
    ];
    for search in &searches {
        for principal in [&b.admin, &b.clinician] {
            let found = world
                .post("/v1/patients/search", &principal.token, search)
                .await
                .ok(StatusCode::OK);
            let mut seen = ids(&found["patients"]);
            seen.extend(ids(&found["restricted"]));
            assert!(
                seen.iter().all(|id| !a_ids.contains(id)),
                "B's {} found A's patients with {search}: {found}",
                principal.role
            );
        }
    }
    // The same-named search as B finds B's own patient: the search did run.
    let found = world
        .post("/v1/patients/search", &b.admin.token, &searches[3])
        .await
        .ok(StatusCode::OK);
    assert_eq!(ids(&found["patients"]), vec![b_id]);
}

fn ids(values: &Value) -> Vec<Uuid> {
    values
        .as_array()
        .unwrap()
        .iter()
        .map(|value| {
            value
                .get("id")
                .unwrap_or(value)
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect()
}
