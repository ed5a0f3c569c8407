//! Assessment responses, score history, one-time links and safety events over HTTP:
//! the care team's rule, tenants kept apart, links usable once, and no answer, score
//! or token in logs, events or URLs.

use axum::body::Body;
use axum::http::{Method, StatusCode, header};
use kernel::TenantId;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{Client, Reply, World, patient, request};

/// An enrolment (through the context's plan store and enrolment) and an open
/// instance of `instrument` for the patient, as the scheduler would have made it
/// (written as the superuser: the materialiser's timing is another part's business).
async fn open_instance(
    world: &World,
    tenant_id: TenantId,
    patient_id: Uuid,
    instrument: &str,
) -> Uuid {
    let definition: assessments::PlanDefinition = serde_json::from_value(json!({
        "rules": [{ "when": { "age_from": 18 }, "instrument": instrument, "respondent": "patient" }],
        "cadence": { "every_days": 28 },
        "window": { "before_days": 3, "after_days": 7 },
    }))
    .unwrap();
    let now = time::OffsetDateTime::now_utc();
    let mut tx = db::TenantTx::begin_as(&world.db.app, tenant_id, "system:test", None)
        .await
        .unwrap();
    let plan = assessments::plan_store::create(
        &mut tx,
        &Uuid::now_v7().to_string(),
        &definition,
        None,
        now,
    )
    .await
    .unwrap();
    let new = assessments::enrollment::NewEnrollment {
        plan_id: plan.id,
        patient_id: kernel::PatientId::new_unchecked(patient_id),
        clinician_id: None,
        time_zone: "UTC".to_owned(),
        anchor_at: None,
    };
    let enrollment_id = assessments::enrollment::enroll(&mut tx, &new, now)
        .await
        .unwrap()
        .enrollment_id();
    tx.commit().await.unwrap();
    let instance_id = Uuid::now_v7();
    let admin = &world.db.admin;
    sqlx::query(
        "INSERT INTO assessments.instances
             (tenant_id, id, enrollment_id, patient_id, instrument_code, instrument_version, respondent,
              slot_key, due_at, opens_at, closes_at, status)
         VALUES ($1, $2, $3, $4, $5, 1, 'patient', 'k:0', now(), now() - interval '1 hour', now() + interval '7 days', 'open')",
    )
    .bind(tenant_id.as_uuid())
    .bind(instance_id)
    .bind(enrollment_id)
    .bind(patient_id)
    .bind(instrument)
    .execute(admin)
    .await
    .unwrap();
    instance_id
}

fn phq9(patient_id: Uuid, values: [u8; 9]) -> Value {
    json!({
        "patient_id": patient_id,
        "instrument": "phq-9",
        "respondent": "patient",
        "answers": values.iter().enumerate()
            .map(|(i, value)| json!({ "item": (i + 1).to_string(), "value": value }))
            .collect::<Vec<_>>(),
    })
}

fn answers(values: [u8; 9]) -> Value {
    json!({ "answers": phq9(Uuid::nil(), values)["answers"] })
}

async fn with_link(
    client: &Client,
    method: Method,
    uri: &str,
    token: &str,
    body: Option<&Value>,
) -> Reply {
    let builder = request(method, uri, Some(token));
    let request = match body {
        Some(body) => builder
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap(),
        None => builder.body(Body::empty()).unwrap(),
    };
    client.send(request).await
}

#[tokio::test]
async fn a_clinician_submits_reads_and_charts_responses_of_their_patients() {
    let world = World::new().await;
    let clinician = &world.a.clinician.token;
    let patient_id = world
        .create_patient(clinician, &patient("Doe", "MRN-1"))
        .await;
    let instance_id = open_instance(&world, world.a.id, patient_id, "phq-9").await;

    let mut body = phq9(patient_id, [3, 3, 2, 2, 2, 2, 1, 1, 0]);
    body["instance_id"] = json!(instance_id);
    let created = world
        .post("/v1/assessments/responses", clinician, &body)
        .await
        .ok(StatusCode::CREATED);
    assert_eq!(created["score"]["total"], 16);
    assert_eq!(created["score"]["band"], "moderately-severe");
    assert_eq!(created["version"], 1);
    assert_eq!(created["instance_id"], instance_id.to_string());
    assert_eq!(created["safety_event_id"], Value::Null);
    let id = created["id"].as_str().unwrap();

    let read = world
        .get(&format!("/v1/assessments/responses/{id}"), clinician)
        .await
        .ok(StatusCode::OK);
    assert_eq!(read["answers"][0], json!({ "item": "1", "value": 3 }));

    // The same instance twice is a conflict.
    world
        .post("/v1/assessments/responses", clinician, &body)
        .await
        .problem(StatusCode::CONFLICT);

    // Two more, unscheduled: a chart of three points with progress.
    world
        .post(
            "/v1/assessments/responses",
            clinician,
            &phq9(patient_id, [2, 2, 1, 1, 1, 1, 0, 0, 0]),
        )
        .await
        .ok(StatusCode::CREATED);
    world
        .post(
            "/v1/assessments/responses",
            clinician,
            &phq9(patient_id, [1, 1, 1, 0, 0, 0, 0, 0, 0]),
        )
        .await
        .ok(StatusCode::CREATED);
    let history = world
        .get(
            &format!("/v1/patients/{patient_id}/assessments/scores?instrument=phq-9"),
            clinician,
        )
        .await
        .ok(StatusCode::OK);
    let points = history["points"].as_array().unwrap();
    let totals: Vec<i64> = points
        .iter()
        .map(|point| point["total"].as_i64().unwrap())
        .collect();
    assert_eq!(totals, [16, 8, 3]);
    assert_eq!(points[2]["progress"]["remission"], true);
    assert_eq!(points[2]["progress"]["response"], true);
    assert_eq!(
        points[1]["progress"]["since_baseline"]["reliability"],
        "reliably_improved"
    );
    assert!(points[0]["at"].is_string());

    // Invalid answers: 422 naming the items, nothing stored.
    let mut invalid = phq9(patient_id, [1; 9]);
    invalid["answers"].as_array_mut().unwrap().truncate(6);
    let reply = world
        .post("/v1/assessments/responses", clinician, &invalid)
        .await;
    reply.problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        reply.json()["detail"].as_str().unwrap().contains("7, 8, 9"),
        "{}",
        reply.text()
    );
    assert_eq!(world.count("assessments.responses").await, 3);

    // Another clinician of the tenant, not on the care team, needs break-glass.
    let admin = &world.a.admin.token;
    let outsider = world.a.care_coordinator.token.clone();
    let _ = admin;
    world
        .get(
            &format!("/v1/patients/{patient_id}/assessments/scores"),
            &outsider,
        )
        .await
        .problem(StatusCode::FORBIDDEN);
    world
        .get(
            &format!("/v1/assessments/responses/{id}"),
            &world.a.auditor.token,
        )
        .await
        .problem(StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn item_9_raises_a_safety_event_the_care_team_lists_and_acknowledges_once() {
    let world = World::new().await;
    let clinician = &world.a.clinician.token;
    let patient_id = world
        .create_patient(clinician, &patient("Doe", "MRN-1"))
        .await;
    let created = world
        .post(
            "/v1/assessments/responses",
            clinician,
            &phq9(patient_id, [0, 0, 0, 0, 0, 0, 0, 0, 1]),
        )
        .await
        .ok(StatusCode::CREATED);
    assert_eq!(created["score"]["total"], 1);
    let event_id = created["safety_event_id"]
        .as_str()
        .expect("a safety event")
        .to_owned();

    let listed = world
        .get("/v1/assessments/safety-events", clinician)
        .await
        .ok(StatusCode::OK);
    assert_eq!(listed["events"][0]["id"], event_id);
    assert_eq!(listed["events"][0]["patient_id"], patient_id.to_string());
    // The coordinator is not on this patient's care team: nothing to see.
    let theirs = world
        .get(
            "/v1/assessments/safety-events",
            &world.a.care_coordinator.token,
        )
        .await
        .ok(StatusCode::OK);
    assert_eq!(theirs["events"], json!([]));

    let uri = format!("/v1/assessments/safety-events/{event_id}/acknowledge");
    let acknowledged = world
        .post(&uri, clinician, &json!({}))
        .await
        .ok(StatusCode::OK);
    assert_eq!(
        acknowledged["acknowledged_by"],
        world.a.clinician.user_id.to_string()
    );
    world
        .post(&uri, clinician, &json!({}))
        .await
        .problem(StatusCode::CONFLICT);
    let open = world
        .get("/v1/assessments/safety-events?status=open", clinician)
        .await
        .ok(StatusCode::OK);
    assert_eq!(open["events"], json!([]));
    let all = world
        .get(
            "/v1/assessments/safety-events?status=all",
            &world.a.admin.token,
        )
        .await
        .ok(StatusCode::OK);
    assert_eq!(all["events"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn another_tenant_reaches_no_response_score_link_or_safety_event() {
    let world = World::new().await;
    let clinician = &world.a.clinician.token;
    let patient_id = world
        .create_patient(clinician, &patient("Doe", "MRN-1"))
        .await;
    let instance_id = open_instance(&world, world.a.id, patient_id, "phq-9").await;
    let created = world
        .post(
            "/v1/assessments/responses",
            clinician,
            &phq9(patient_id, [2, 2, 2, 2, 2, 2, 2, 2, 2]),
        )
        .await
        .ok(StatusCode::CREATED);
    let (response_id, event_id) = (
        created["id"].as_str().unwrap(),
        created["safety_event_id"].as_str().unwrap(),
    );

    for principal in world.b.principals() {
        let token = &principal.token;
        for uri in [
            format!("/v1/assessments/responses/{response_id}"),
            format!("/v1/patients/{patient_id}/assessments/scores?instrument=phq-9"),
        ] {
            let reply = world.get(&uri, token).await;
            assert!(
                [StatusCode::NOT_FOUND, StatusCode::FORBIDDEN].contains(&reply.status),
                "{uri}: {}",
                reply.status
            );
        }
        if principal.role != kernel::Role::Auditor {
            let listed = world
                .get("/v1/assessments/safety-events?status=all", token)
                .await
                .ok(StatusCode::OK);
            assert_eq!(listed["events"], json!([]), "{:?}", principal.role);
            world
                .post(
                    &format!("/v1/assessments/safety-events/{event_id}/acknowledge"),
                    token,
                    &json!({}),
                )
                .await
                .problem(StatusCode::NOT_FOUND);
            world
                .post(
                    &format!("/v1/assessments/instances/{instance_id}/link"),
                    token,
                    &json!({}),
                )
                .await
                .problem(StatusCode::NOT_FOUND);
            let mut body = phq9(patient_id, [0; 9]);
            body["instance_id"] = json!(instance_id);
            world
                .post("/v1/assessments/responses", token, &body)
                .await
                .problem(StatusCode::NOT_FOUND);
        }
    }
    let open: Option<bool> =
        sqlx::query_scalar("SELECT acknowledged_at IS NULL FROM assessments.safety_events")
            .fetch_optional(&world.db.admin)
            .await
            .unwrap();
    assert_eq!(open, Some(true));
    assert_eq!(world.count("assessments.responses").await, 1);
}

#[tokio::test]
async fn a_link_opens_a_form_without_phi_and_answers_once() {
    let world = World::new().await;
    let clinician = &world.a.clinician.token;
    let patient_id = world
        .create_patient(clinician, &patient("Zqxcanaryfam", "MRN-1"))
        .await;
    let instance_id = open_instance(&world, world.a.id, patient_id, "phq-9").await;
    let link = world
        .post(
            &format!("/v1/assessments/instances/{instance_id}/link"),
            clinician,
            &json!({}),
        )
        .await
        .ok(StatusCode::CREATED);
    let token = link["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("at_"));

    let form = with_link(
        &world,
        Method::GET,
        "/v1/assessment-link/form",
        &token,
        None,
    )
    .await
    .ok(StatusCode::OK);
    assert_eq!(form["instrument"], "phq-9");
    // Nine scored items and the unscored "how difficult" question.
    assert_eq!(form["items"].as_array().unwrap().len(), 10);
    assert_eq!(form["items"][8]["options"][3]["value"], 3);
    assert!(!form.to_string().contains("Zqxcanaryfam"));
    assert!(!form.to_string().contains(&patient_id.to_string()));

    // Invalid answers do not spend the link.
    with_link(
        &world,
        Method::POST,
        "/v1/assessment-link/responses",
        &token,
        Some(&answers([4; 9])),
    )
    .await
    .problem(StatusCode::UNPROCESSABLE_ENTITY);
    let keyed = |token: &str, body: &Value| {
        request(Method::POST, "/v1/assessment-link/responses", Some(token))
            .header(header::CONTENT_TYPE, "application/json")
            .header("idempotency-key", "send-1")
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let received = world
        .send(keyed(&token, &answers([1; 9])))
        .await
        .ok(StatusCode::CREATED);
    assert_eq!(
        received.as_object().unwrap().len(),
        1,
        "no score for the respondent: {received}"
    );
    // A retry of the same request (a lost answer) gets the same answer, not "used".
    let again = world
        .send(keyed(&token, &answers([1; 9])))
        .await
        .ok(StatusCode::CREATED);
    assert_eq!(again, received);
    // The replay needs the secret too.
    let parts: Vec<&str> = token.split('.').collect();
    let forged = format!("{}.{}.{}", parts[0], parts[1], "A".repeat(43));
    world
        .send(keyed(&forged, &answers([1; 9])))
        .await
        .problem(StatusCode::NOT_FOUND);
    with_link(
        &world,
        Method::POST,
        "/v1/assessment-link/responses",
        &token,
        Some(&answers([0; 9])),
    )
    .await
    .problem(StatusCode::GONE);
    with_link(
        &world,
        Method::GET,
        "/v1/assessment-link/form",
        &token,
        None,
    )
    .await
    .problem(StatusCode::GONE);

    // Forged, garbled, another tenant's: all the same 404.
    let elsewhere = token.replace(
        &world.a.id.as_uuid().simple().to_string(),
        &world.b.id.as_uuid().simple().to_string(),
    );
    for bad in [
        forged.as_str(),
        "at_garbage",
        elsewhere.as_str(),
        world.a.clinician.token.as_str(),
    ] {
        let reply = with_link(&world, Method::GET, "/v1/assessment-link/form", bad, None).await;
        assert_eq!(reply.problem(StatusCode::NOT_FOUND), "/problems/not-found");
    }
    // Without any token: the same.
    let reply = world
        .send(
            request(Method::GET, "/v1/assessment-link/form", None)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    reply.problem(StatusCode::NOT_FOUND);

    // Expired.
    let instance_id = open_instance(&world, world.a.id, patient_id, "gad-7").await;
    let link = world
        .post(
            &format!("/v1/assessments/instances/{instance_id}/link"),
            clinician,
            &json!({}),
        )
        .await
        .ok(StatusCode::CREATED);
    sqlx::query(
        "UPDATE assessments.link_tokens SET expires_at = now() - interval '1 second' WHERE id = $1",
    )
    .bind(link["id"].as_str().unwrap().parse::<Uuid>().unwrap())
    .execute(&world.db.admin)
    .await
    .unwrap();
    with_link(
        &world,
        Method::GET,
        "/v1/assessment-link/form",
        link["token"].as_str().unwrap(),
        None,
    )
    .await
    .problem(StatusCode::GONE);
    assert_eq!(world.count("assessments.responses").await, 1);
}

#[tokio::test(flavor = "current_thread")]
async fn answers_scores_and_link_tokens_never_reach_logs_events_audit_details_or_urls() {
    let logs = crate::support::LogCapture::start();

    let world = World::new().await;
    let clinician = &world.a.clinician.token;
    let patient_id = world
        .create_patient(clinician, &patient("Zqxcanaryfam", "MRN-1"))
        .await;
    let instance_id = open_instance(&world, world.a.id, patient_id, "phq-9").await;
    // A distinctive band: "moderately-severe" must appear in no log, event or URL.
    let created = world
        .post(
            "/v1/assessments/responses",
            clinician,
            &phq9(patient_id, [3, 3, 3, 3, 2, 1, 1, 0, 2]),
        )
        .await
        .ok(StatusCode::CREATED);
    assert_eq!(created["score"]["band"], "moderately-severe");
    let link = world
        .post(
            &format!("/v1/assessments/instances/{instance_id}/link"),
            clinician,
            &json!({}),
        )
        .await
        .ok(StatusCode::CREATED);
    let token = link["token"].as_str().unwrap().to_owned();
    with_link(
        &world,
        Method::GET,
        "/v1/assessment-link/form",
        &token,
        None,
    )
    .await;
    with_link(
        &world,
        Method::POST,
        "/v1/assessment-link/responses",
        &token,
        Some(&answers([9; 9])),
    )
    .await;
    with_link(
        &world,
        Method::POST,
        "/v1/assessment-link/responses",
        &token,
        Some(&answers([3, 3, 3, 3, 2, 1, 1, 0, 2])),
    )
    .await;
    with_link(
        &world,
        Method::POST,
        "/v1/assessment-link/responses",
        &token,
        Some(&answers([3; 9])),
    )
    .await;
    world
        .get(
            &format!("/v1/patients/{patient_id}/assessments/scores?instrument=phq-9"),
            clinician,
        )
        .await
        .ok(StatusCode::OK);
    world
        .get("/v1/assessments/safety-events", clinician)
        .await
        .ok(StatusCode::OK);

    let secret = token.rsplit('.').next().unwrap().to_owned();
    let logs = logs.text();
    assert!(logs.contains("request served"), "the logs were captured");
    let events: Vec<(String, Value)> =
        sqlx::query_as("SELECT event_type, payload FROM assessments.outbox")
            .fetch_all(&world.db.admin)
            .await
            .unwrap();
    assert!(
        events
            .iter()
            .any(|(event_type, _)| event_type == "assessment.safety_flagged")
    );
    let events = format!("{events:?}");
    let details: Vec<Value> = sqlx::query_scalar("SELECT details FROM audit.events")
        .fetch_all(&world.db.admin)
        .await
        .unwrap();
    let details = format!("{details:?}");
    let urls: String = world
        .journal()
        .iter()
        .map(|exchange| exchange.uri.clone() + "\n")
        .collect();
    let problems: String = world
        .journal()
        .iter()
        .filter(|exchange| !exchange.status.is_success())
        .map(|exchange| String::from_utf8_lossy(&exchange.body).into_owned())
        .collect();
    for (haystack, what) in [
        (&logs, "logs"),
        (&events, "events"),
        (&details, "audit details"),
        (&urls, "URLs"),
        (&problems, "problem bodies"),
    ] {
        for needle in [
            "moderately-severe",
            "Moderately severe",
            "zqxcanary",
            "Zqxcanaryfam",
            secret.as_str(),
            "\"answers\"",
            "\"total\"",
        ] {
            assert!(
                !haystack.contains(needle),
                "{needle:?} found in {what}: {haystack}"
            );
        }
    }
}
