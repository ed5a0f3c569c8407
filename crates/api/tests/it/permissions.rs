//! Who may read a patient: roles first, then the care team, then a break-glass grant
//! that is stated, time-boxed and shown in the patient's access log.

use axum::http::StatusCode;
use serde_json::json;

use crate::support::{World, patient};

#[tokio::test]
async fn an_auditor_cannot_read_a_patient() {
    let world = World::new().await;
    let patient_id = world
        .create_patient(&world.a.admin.token, &patient("Ferreira", "MRN-1"))
        .await;

    let reply = world
        .get(
            &format!("/v1/patients/{patient_id}"),
            &world.a.auditor.token,
        )
        .await;

    assert_eq!(reply.problem(StatusCode::FORBIDDEN), "/problems/forbidden");
    assert!(!reply.text().contains("Ferreira"));
    let listed = world.get("/v1/patients", &world.a.auditor.token).await;
    assert_eq!(listed.problem(StatusCode::FORBIDDEN), "/problems/forbidden");
}

#[tokio::test]
async fn a_clinician_off_the_care_team_must_break_the_glass_and_the_access_log_shows_it() {
    let world = World::new().await;
    let (clinician, auditor) = (&world.a.clinician, &world.a.auditor);
    let patient_id = world
        .create_patient(&world.a.admin.token, &patient("Ferreira", "MRN-1"))
        .await;
    let p = format!("/v1/patients/{patient_id}");

    let refused = world.get(&p, &clinician.token).await;
    assert_eq!(
        refused.problem(StatusCode::FORBIDDEN),
        "/problems/break-glass-required"
    );
    assert!(!refused.text().contains("Ferreira"));

    let too_short = world
        .post(
            &format!("{p}/break-glass"),
            &clinician.token,
            &json!({ "reason": "  urgent  " }),
        )
        .await;
    assert_eq!(
        too_short.problem(StatusCode::UNPROCESSABLE_ENTITY),
        "/problems/invalid-input"
    );
    world
        .get(&p, &clinician.token)
        .await
        .problem(StatusCode::FORBIDDEN);

    let reason = "patient unconscious in the emergency department";
    let grant = world
        .post(
            &format!("{p}/break-glass"),
            &clinician.token,
            &json!({ "reason": reason }),
        )
        .await
        .ok(StatusCode::CREATED);
    assert_eq!(grant["patient_id"], patient_id.to_string());

    let read = world.get(&p, &clinician.token).await.ok(StatusCode::OK);
    assert_eq!(read["family_name"], "Ferreira");

    let log = world
        .get(&format!("{p}/access-log"), &auditor.token)
        .await
        .ok(StatusCode::OK);
    let entries = log["entries"].as_array().unwrap();
    let actor = format!("api_key:{}", clinician.key_id);
    let by_clinician: Vec<_> = entries
        .iter()
        .filter(|entry| entry["actor"] == actor)
        .collect();
    assert_eq!(by_clinician.len(), 2, "{log}");
    for action in ["break_glass.open", "patient.read"] {
        let entry = by_clinician
            .iter()
            .find(|entry| entry["action"] == action)
            .unwrap_or_else(|| panic!("no {action} in {log}"));
        assert_eq!(entry["break_glass"], true, "{entry}");
        assert_eq!(entry["purpose"], reason, "{entry}");
    }
    // The routine creation by the admin is not flagged.
    let created = entries
        .iter()
        .find(|entry| entry["action"] == "patient.create")
        .unwrap();
    assert_eq!(created["break_glass"], false);
    assert_eq!(created["purpose"], "operations");
}

#[tokio::test]
async fn only_a_clinician_can_break_the_glass() {
    let world = World::new().await;
    let patient_id = world
        .create_patient(&world.a.admin.token, &patient("Ferreira", "MRN-1"))
        .await;
    let uri = format!("/v1/patients/{patient_id}/break-glass");
    let body = json!({ "reason": "patient unconscious in the emergency department" });

    for principal in [
        &world.a.care_coordinator,
        &world.a.auditor,
        &world.a.integration,
        &world.a.admin,
    ] {
        let reply = world.post(&uri, &principal.token, &body).await;
        assert_eq!(
            reply.problem(StatusCode::FORBIDDEN),
            "/problems/forbidden",
            "{}",
            principal.role
        );
    }
    assert_eq!(world.count("identity.break_glass_grants").await, 0);
}

#[tokio::test]
async fn a_care_coordinator_adds_a_clinician_to_the_care_team_who_can_then_read() {
    let world = World::new().await;
    let (coordinator, clinician) = (&world.a.care_coordinator, &world.a.clinician);
    let patient_id = world
        .create_patient(&world.a.integration.token, &patient("Ferreira", "MRN-1"))
        .await;
    let p = format!("/v1/patients/{patient_id}");
    world
        .get(&p, &clinician.token)
        .await
        .problem(StatusCode::FORBIDDEN);

    world
        .post(
            &format!("{p}/care-team"),
            &coordinator.token,
            &json!({ "user_id": clinician.user_id }),
        )
        .await
        .ok_empty(StatusCode::NO_CONTENT);

    let read = world.get(&p, &clinician.token).await.ok(StatusCode::OK);
    assert_eq!(read["family_name"], "Ferreira");
    let page = world
        .get("/v1/patients", &clinician.token)
        .await
        .ok(StatusCode::OK);
    assert_eq!(page["patients"][0]["id"], patient_id.to_string());
    // Care-team access is routine: the read is not flagged as break-glass.
    let flagged: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit.events WHERE patient_id = $1 AND break_glass",
    )
    .bind(patient_id)
    .fetch_one(&world.db.admin)
    .await
    .unwrap();
    assert_eq!(flagged, 0);
}

#[tokio::test]
async fn a_clinician_cannot_add_to_a_care_team_nor_add_an_unknown_user() {
    let world = World::new().await;
    let patient_id = world
        .create_patient(&world.a.admin.token, &patient("Ferreira", "MRN-1"))
        .await;
    let uri = format!("/v1/patients/{patient_id}/care-team");

    let reply = world
        .post(
            &uri,
            &world.a.clinician.token,
            &json!({ "user_id": world.a.clinician.user_id }),
        )
        .await;
    assert_eq!(reply.problem(StatusCode::FORBIDDEN), "/problems/forbidden");

    let reply = world
        .post(
            &uri,
            &world.a.care_coordinator.token,
            &json!({ "user_id": uuid::Uuid::now_v7() }),
        )
        .await;
    assert_eq!(
        reply.problem(StatusCode::UNPROCESSABLE_ENTITY),
        "/problems/invalid-input"
    );
    assert_eq!(world.count("clinical.care_team_members").await, 0);
}

#[tokio::test]
async fn a_clinician_who_registers_a_patient_cares_for_them() {
    let world = World::new().await;
    let clinician = &world.a.clinician;

    let patient_id = world
        .create_patient(&clinician.token, &patient("Ferreira", "MRN-1"))
        .await;

    world
        .get(&format!("/v1/patients/{patient_id}"), &clinician.token)
        .await
        .ok(StatusCode::OK);
}

#[tokio::test]
async fn an_expired_break_glass_grant_no_longer_opens_the_record() {
    let world = World::new().await;
    let clinician = &world.a.clinician;
    let patient_id = world
        .create_patient(&world.a.admin.token, &patient("Ferreira", "MRN-1"))
        .await;
    let p = format!("/v1/patients/{patient_id}");
    world
        .post(
            &format!("{p}/break-glass"),
            &clinician.token,
            &json!({ "reason": "patient unconscious in the emergency department" }),
        )
        .await
        .ok(StatusCode::CREATED);
    world.get(&p, &clinician.token).await.ok(StatusCode::OK);

    // Time passes: the grant's hour is over.
    sqlx::query("UPDATE identity.break_glass_grants SET expires_at = now() - interval '1 second'")
        .execute(&world.db.admin)
        .await
        .unwrap();

    assert_eq!(
        world
            .get(&p, &clinician.token)
            .await
            .problem(StatusCode::FORBIDDEN),
        "/problems/break-glass-required"
    );
}
