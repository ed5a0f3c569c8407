//! Consents and releases over HTTP: a release is refused (403 `consent-required`)
//! without a consent in force for its recipient, then recorded and reported with one;
//! revocation is once; another tenant's consent is not found; the role matrix; and
//! the recipient never reaches logs, error bodies or plaintext storage.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::support::{World, json_request, patient};

const CANARY: &str = "Zqxconsentcanary Family Law LLP";

async fn patient_of_clinician(world: &World) -> Uuid {
    world
        .create_patient(
            &world.a.clinician.token,
            &patient("Consentpatient", "MRN-CONSENT-1"),
        )
        .await
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap()
}

fn release_body(recipient: &str, document_id: Uuid) -> Value {
    json!({
        "recipient": recipient,
        "purpose": "legal",
        "document_ids": [document_id],
        "description": "Zqxconsentcanary discharge summary",
    })
}

/// The signed consent form, uploaded as the patient's `consent_form` document.
async fn consent_form(world: &World, patient_id: Uuid) -> Uuid {
    let reply = world
        .send(
            axum::http::Request::builder()
                .method(Method::POST)
                .uri(format!(
                    "/v1/patients/{patient_id}/documents?category=consent_form"
                ))
                .header(
                    "authorization",
                    format!("Bearer {}", world.a.clinician.token),
                )
                .header("content-type", "text/plain")
                .header("document-filename", "consent.txt")
                .body(axum::body::Body::from("I consent to the release."))
                .unwrap(),
        )
        .await;
    let created = reply.ok(StatusCode::CREATED);
    created["id"].as_str().unwrap().parse().unwrap()
}

async fn grant_release_consent(world: &World, patient_id: Uuid, recipient: &str) -> Value {
    let evidence = consent_form(world, patient_id).await;
    world
        .post(
            &format!("/v1/patients/{patient_id}/consents"),
            &world.a.clinician.token,
            &json!({
                "scope": "release_of_information",
                "recipient": recipient,
                "evidence_document_id": evidence,
            }),
        )
        .await
        .ok(StatusCode::CREATED)
}

fn report_uri() -> String {
    let now = OffsetDateTime::now_utc();
    format!(
        "/v1/disclosures?from={}&to={}",
        rfc3339(now - Duration::days(1)).replace('+', "%2B"),
        rfc3339(now + Duration::days(1)).replace('+', "%2B"),
    )
}

#[tokio::test]
async fn a_release_is_refused_without_consent_and_recorded_and_reported_with_one() {
    let world = World::new().await;
    let patient_id = patient_of_clinician(&world).await;
    let document = consent_form(&world, patient_id).await;
    let token = &world.a.clinician.token;
    let releases = format!("/v1/patients/{patient_id}/releases");

    let refused = world
        .post(&releases, token, &release_body(CANARY, document))
        .await;
    assert_eq!(
        refused.problem(StatusCode::FORBIDDEN),
        "/problems/consent-required"
    );
    assert!(
        refused.json()["detail"]
            .as_str()
            .unwrap()
            .contains("not consented")
    );

    let consent = grant_release_consent(&world, patient_id, CANARY).await;
    assert_eq!(consent["status"], "granted");
    assert_eq!(consent["in_force"], true);
    assert_eq!(consent["recipient"], CANARY);

    // Another recipient is not covered.
    let elsewhere = world
        .post(
            &releases,
            token,
            &release_body("Brightside Insurance", document),
        )
        .await;
    assert_eq!(
        elsewhere.problem(StatusCode::FORBIDDEN),
        "/problems/consent-required"
    );

    let released = world
        .post(&releases, token, &release_body(CANARY, document))
        .await
        .ok(StatusCode::CREATED);
    assert_eq!(released["consent_id"], consent["id"]);
    assert_eq!(released["recipient"], CANARY);

    let disclosures = world
        .get(&format!("/v1/patients/{patient_id}/disclosures"), token)
        .await
        .ok(StatusCode::OK);
    assert_eq!(disclosures["releases"].as_array().unwrap().len(), 1);
    assert_eq!(disclosures["releases"][0]["id"], released["id"]);
    assert_eq!(disclosures["releases"][0]["purpose"], "legal");

    // Admins see whom; auditors see that, when and why, not whom.
    let for_admin = world
        .get(&report_uri(), &world.a.admin.token)
        .await
        .ok(StatusCode::OK);
    assert_eq!(for_admin["n_releases"], 1);
    assert_eq!(for_admin["recipients_included"], true);
    assert_eq!(for_admin["releases"][0]["recipient"], CANARY);
    let for_auditor = world.get(&report_uri(), &world.a.auditor.token).await;
    let for_auditor_text = for_auditor.text();
    let for_auditor = for_auditor.ok(StatusCode::OK);
    assert_eq!(for_auditor["n_releases"], 1);
    assert_eq!(for_auditor["recipients_included"], false);
    assert_eq!(for_auditor["releases"][0]["id"], released["id"]);
    assert!(
        !for_auditor_text.to_lowercase().contains("zqx"),
        "{for_auditor_text}"
    );
    // The other tenant's report is empty.
    let other = world
        .get(&report_uri(), &world.b.admin.token)
        .await
        .ok(StatusCode::OK);
    assert_eq!(other["n_releases"], 0);

    // After revocation: refused again; a second revocation is a clean 409.
    let consent_id = consent["id"].as_str().unwrap();
    let revoked = world
        .post(
            &format!("/v1/consents/{consent_id}/revoke"),
            token,
            &json!({ "reason": "patient_request" }),
        )
        .await
        .ok(StatusCode::OK);
    assert_eq!(revoked["status"], "revoked");
    assert_eq!(revoked["in_force"], false);
    assert_eq!(revoked["revocation_reason"], "patient_request");
    let after = world
        .post(&releases, token, &release_body(CANARY, document))
        .await;
    assert_eq!(
        after.problem(StatusCode::FORBIDDEN),
        "/problems/consent-required"
    );
    assert!(after.json()["detail"].as_str().unwrap().contains("revoked"));
    let again = world
        .post(
            &format!("/v1/consents/{consent_id}/revoke"),
            token,
            &json!({ "reason": "other" }),
        )
        .await;
    assert_eq!(again.problem(StatusCode::CONFLICT), "/problems/conflict");

    let listed = world
        .get(&format!("/v1/patients/{patient_id}/consents"), token)
        .await
        .ok(StatusCode::OK);
    assert_eq!(listed["consents"].as_array().unwrap().len(), 1);
    assert_eq!(listed["consents"][0]["status"], "revoked");
    let n_releases: i64 = sqlx::query_scalar("SELECT count(*) FROM compliance.releases")
        .fetch_one(&world.db.admin)
        .await
        .unwrap();
    assert_eq!(n_releases, 1);
}

#[tokio::test]
async fn a_release_after_the_consent_expired_is_refused_as_expired() {
    let world = World::new().await;
    let patient_id = patient_of_clinician(&world).await;
    let document = consent_form(&world, patient_id).await;
    let token = &world.a.clinician.token;
    let now = OffsetDateTime::now_utc();
    world
        .post(
            &format!("/v1/patients/{patient_id}/consents"),
            token,
            &json!({
                "scope": "release_of_information",
                "recipient": CANARY,
                "granted_at": rfc3339(now - Duration::days(30)),
                "valid_until": rfc3339(now - Duration::days(1)),
            }),
        )
        .await
        .ok(StatusCode::CREATED);
    let refused = world
        .post(
            &format!("/v1/patients/{patient_id}/releases"),
            token,
            &release_body(CANARY, document),
        )
        .await;
    assert_eq!(
        refused.problem(StatusCode::FORBIDDEN),
        "/problems/consent-required"
    );
    assert!(
        refused.json()["detail"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
}

#[tokio::test]
async fn bad_consent_input_is_a_clear_problem() {
    let world = World::new().await;
    let patient_id = patient_of_clinician(&world).await;
    let token = &world.a.clinician.token;
    let uri = format!("/v1/patients/{patient_id}/consents");
    for body in [
        json!({ "scope": "everything" }),
        json!({ "scope": "release_of_information" }),
        json!({ "scope": "research", "recipient": "Lab" }),
        json!({ "scope": "treatment", "valid_until": "2001-01-01T00:00:00Z" }),
    ] {
        let reply = world.post(&uri, token, &body).await;
        assert_eq!(
            reply.problem(StatusCode::UNPROCESSABLE_ENTITY),
            "/problems/invalid-input",
            "{body}"
        );
    }
    let report = world
        .get(
            "/v1/disclosures?from=yesterday&to=today",
            &world.a.admin.token,
        )
        .await;
    assert_eq!(
        report.problem(StatusCode::UNPROCESSABLE_ENTITY),
        "/problems/invalid-input"
    );
}

#[tokio::test]
async fn another_tenants_consent_is_not_found() {
    let world = World::new().await;
    let patient_id = patient_of_clinician(&world).await;
    let document = consent_form(&world, patient_id).await;
    let consent = grant_release_consent(&world, patient_id, CANARY).await;
    let consent_id = consent["id"].as_str().unwrap();
    let other = &world.b.admin.token;
    assert_eq!(
        world
            .get(&format!("/v1/consents/{consent_id}"), other)
            .await
            .problem(StatusCode::NOT_FOUND),
        "/problems/not-found"
    );
    assert_eq!(
        world
            .post(
                &format!("/v1/consents/{consent_id}/revoke"),
                other,
                &json!({ "reason": "other" }),
            )
            .await
            .problem(StatusCode::NOT_FOUND),
        "/problems/not-found"
    );
    assert_eq!(
        world
            .post(
                &format!("/v1/patients/{patient_id}/releases"),
                other,
                &release_body(CANARY, document),
            )
            .await
            .problem(StatusCode::NOT_FOUND),
        "/problems/not-found"
    );
    // Still granted at home.
    let read = world
        .get(
            &format!("/v1/consents/{consent_id}"),
            &world.a.clinician.token,
        )
        .await
        .ok(StatusCode::OK);
    assert_eq!(read["status"], "granted");
}

#[tokio::test]
async fn roles_and_care_teams_decide_who_reaches_consents_and_disclosures() {
    let world = World::new().await;
    let patient_id = patient_of_clinician(&world).await;
    let document = consent_form(&world, patient_id).await;
    let consent = grant_release_consent(&world, patient_id, CANARY).await;
    let consent_id = consent["id"].as_str().unwrap();
    let a = &world.a;
    // (principal, expected problem type or None for success)
    let patient_routes: [(&str, &str, Option<&str>); 5] = [
        ("admin", &a.admin.token, None),
        ("clinician on the care team", &a.clinician.token, None),
        ("integration", &a.integration.token, None),
        (
            "care coordinator off the care team",
            &a.care_coordinator.token,
            Some("/problems/break-glass-required"),
        ),
        ("auditor", &a.auditor.token, Some("/problems/forbidden")),
    ];
    for (who, token, refused) in patient_routes {
        let replies = [
            world
                .get(&format!("/v1/patients/{patient_id}/consents"), token)
                .await,
            world
                .get(&format!("/v1/consents/{consent_id}"), token)
                .await,
            world
                .get(&format!("/v1/patients/{patient_id}/disclosures"), token)
                .await,
            world
                .post(
                    &format!("/v1/patients/{patient_id}/consents"),
                    token,
                    &json!({ "scope": "research" }),
                )
                .await,
            world
                .post(
                    &format!("/v1/patients/{patient_id}/releases"),
                    token,
                    &release_body(CANARY, document),
                )
                .await,
        ];
        for reply in replies {
            match refused {
                Some(kind) => assert_eq!(reply.problem(StatusCode::FORBIDDEN), kind, "{who}"),
                None => assert!(reply.status.is_success(), "{who}: {}", reply.text()),
            }
        }
    }
    let report_roles: [(&str, &str, bool); 5] = [
        ("admin", &a.admin.token, true),
        ("auditor", &a.auditor.token, true),
        ("clinician", &a.clinician.token, false),
        ("care coordinator", &a.care_coordinator.token, false),
        ("integration", &a.integration.token, false),
    ];
    for (who, token, allowed) in report_roles {
        let reply = world.get(&report_uri(), token).await;
        if allowed {
            assert_eq!(reply.status, StatusCode::OK, "{who}: {}", reply.text());
        } else {
            assert_eq!(
                reply.problem(StatusCode::FORBIDDEN),
                "/problems/forbidden",
                "{who}"
            );
        }
    }
}

#[tokio::test]
async fn a_retried_grant_returns_the_same_consent() {
    let world = World::new().await;
    let patient_id = patient_of_clinician(&world).await;
    let uri = format!("/v1/patients/{patient_id}/consents");
    let body = json!({ "scope": "telehealth" });
    let mut ids = Vec::new();
    for _ in 0..2 {
        let request = json_request(Method::POST, &uri, Some(&world.a.clinician.token), &body);
        let (mut parts, request_body) = request.into_parts();
        parts
            .headers
            .insert("idempotency-key", "consent-retry-1".parse().unwrap());
        let created = world
            .send(axum::http::Request::from_parts(parts, request_body))
            .await
            .ok(StatusCode::CREATED);
        ids.push(created["id"].clone());
    }
    assert_eq!(ids[0], ids[1]);
    let listed = world
        .get(&uri, &world.a.clinician.token)
        .await
        .ok(StatusCode::OK);
    assert_eq!(listed["consents"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn the_recipient_never_reaches_logs_error_bodies_or_plaintext_storage() {
    let logs = crate::support::LogCapture::start();

    let world = World::new().await;
    let patient_id = patient_of_clinician(&world).await;
    let document = consent_form(&world, patient_id).await;
    let token = &world.a.clinician.token;
    let releases = format!("/v1/patients/{patient_id}/releases");
    let refused = world
        .post(&releases, token, &release_body(CANARY, document))
        .await;
    let misplaced = world
        .post(
            &format!("/v1/patients/{patient_id}/consents"),
            token,
            &json!({ "scope": "research", "recipient": CANARY }),
        )
        .await;
    grant_release_consent(&world, patient_id, CANARY).await;
    world
        .post(&releases, token, &release_body(CANARY, document))
        .await
        .ok(StatusCode::CREATED);
    world
        .get(&format!("/v1/patients/{patient_id}/disclosures"), token)
        .await
        .ok(StatusCode::OK);

    let logs = logs.text();
    assert!(logs.contains("request served"), "the capture works");
    assert!(!logs.to_lowercase().contains("zqxconsentcanary"), "{logs}");
    for reply in [refused, misplaced] {
        assert!(!reply.status.is_success());
        assert!(!reply.text().to_lowercase().contains("zqxconsentcanary"));
    }
    let stored: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM compliance.consents c WHERE c::text ILIKE '%zqxconsentcanary%'
                     OR position(convert_to('Zqxconsentcanary', 'UTF8') IN c.recipient_sealed) > 0)
              + (SELECT count(*) FROM compliance.releases r WHERE r::text ILIKE '%zqxconsentcanary%'
                     OR position(convert_to('Zqxconsentcanary', 'UTF8') IN r.details_sealed) > 0)
              + (SELECT count(*) FROM compliance.outbox o WHERE o::text ILIKE '%zqxconsentcanary%')
              + (SELECT count(*) FROM audit.events e WHERE e::text ILIKE '%zqxconsentcanary%')",
    )
    .fetch_one(&world.db.admin)
    .await
    .unwrap();
    assert_eq!(stored, 0);
}

#[tokio::test]
async fn a_consent_citing_evidence_that_is_no_document_of_the_patient_is_refused() {
    let world = World::new().await;
    let patient_id = patient_of_clinician(&world).await;
    let other_patient = world
        .create_patient(
            &world.a.clinician.token,
            &patient("Otherpatient", "MRN-C-9"),
        )
        .await;
    let others_form = consent_form(&world, other_patient).await;
    for evidence in [Uuid::now_v7(), others_form] {
        let reply = world
            .post(
                &format!("/v1/patients/{patient_id}/consents"),
                &world.a.clinician.token,
                &json!({ "scope": "treatment", "evidence_document_id": evidence }),
            )
            .await;
        reply.problem(StatusCode::UNPROCESSABLE_ENTITY);
        let problem = reply.json();
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .starts_with("evidence_document_id"),
            "{problem}"
        );
    }
    let own_form = consent_form(&world, patient_id).await;
    world
        .post(
            &format!("/v1/patients/{patient_id}/consents"),
            &world.a.clinician.token,
            &json!({ "scope": "treatment", "evidence_document_id": own_form }),
        )
        .await
        .ok(StatusCode::CREATED);
}

#[tokio::test]
async fn a_release_naming_another_patients_document_is_refused() {
    let world = World::new().await;
    let patient_id = patient_of_clinician(&world).await;
    let token = &world.a.clinician.token;
    grant_release_consent(&world, patient_id, CANARY).await;
    let other_patient = world
        .create_patient(token, &patient("Otherpatient", "MRN-CONSENT-2"))
        .await;
    let document = consent_form(&world, other_patient).await;
    let releases = format!("/v1/patients/{patient_id}/releases");
    let refused = world
        .post(&releases, token, &release_body(CANARY, document))
        .await;
    assert_eq!(
        refused.problem(StatusCode::UNPROCESSABLE_ENTITY),
        "/problems/invalid-input"
    );
    let listed = world
        .get(&format!("/v1/patients/{patient_id}/disclosures"), token)
        .await
        .ok(StatusCode::OK);
    assert_eq!(
        listed["releases"].as_array().map(Vec::len),
        Some(0),
        "{listed}"
    );
}
