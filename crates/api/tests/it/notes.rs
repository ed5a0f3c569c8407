//! Progress notes over HTTP: `/v1` (one text `body`, deprecated) and `/v2`
//! (structured `sections`) serve the same notes; a signed note is refused every
//! change; amendments chain; co-signing needs a supervisor other than the author;
//! another tenant's note is not found; note text never reaches the logs.

use axum::http::{Method, StatusCode, header};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{World, json_request, patient};

const CANARY: &str = "Zqxnotecanary hears voices";

fn sections(plan: &str) -> Value {
    json!({
        "subjective": CANARY,
        "objective": "Calm, oriented.",
        "assessment": "Improving.",
        "plan": plan,
    })
}

async fn patient_of_clinician(world: &World) -> Uuid {
    world
        .create_patient(
            &world.a.clinician.token,
            &patient("Notepatient", "MRN-NOTE-1"),
        )
        .await
}

async fn draft_v2(world: &World, patient_id: Uuid) -> Value {
    world
        .post(
            &format!("/v2/patients/{patient_id}/notes"),
            &world.a.clinician.token,
            &json!({ "template": "soap", "sections": sections("Follow up in two weeks.") }),
        )
        .await
        .ok(StatusCode::CREATED)
}

async fn call_with(
    world: &World,
    method: Method,
    uri: &str,
    token: &str,
    body: Option<&Value>,
    if_match: &str,
) -> crate::support::Reply {
    let request = json_request(method, uri, Some(token), body.unwrap_or(&json!({})));
    let (mut parts, body) = request.into_parts();
    parts
        .headers
        .insert(header::IF_MATCH, if_match.parse().unwrap());
    world
        .send(axum::http::Request::from_parts(parts, body))
        .await
}

#[tokio::test]
async fn v1_and_v2_round_trip_the_same_note_and_only_v1_is_marked_deprecated() {
    let world = World::new().await;
    let patient_id = patient_of_clinician(&world).await;
    let token = &world.a.clinician.token;
    let created = draft_v2(&world, patient_id).await;
    let id = created["id"].as_str().unwrap();
    assert_eq!(created["sections"], sections("Follow up in two weeks."));

    let v1 = world.get(&format!("/v1/notes/{id}"), token).await;
    assert!(v1.header("deprecation").is_some_and(|v| v.starts_with('@')));
    assert!(v1.header("sunset").is_some());
    assert!(v1.header("link").unwrap().contains("successor-version"));
    let v1 = v1.ok(StatusCode::OK);
    let body = v1["body"].as_str().unwrap().to_owned();
    assert!(body.starts_with("Subjective:\n"), "{body}");
    assert!(v1.get("sections").is_none());

    // v1 writes back exactly what it read: v2 sees the same sections.
    let edited = call_with(
        &world,
        Method::PUT,
        &format!("/v1/notes/{id}"),
        token,
        Some(&json!({ "body": body })),
        "\"1\"",
    )
    .await
    .ok(StatusCode::OK);
    assert_eq!(edited["version"], 2);
    assert_eq!(edited["body"], body.as_str());
    let v2 = world.get(&format!("/v2/notes/{id}"), token).await;
    assert!(v2.header("deprecation").is_none());
    let v2 = v2.ok(StatusCode::OK);
    assert_eq!(v2["sections"], sections("Follow up in two weeks."));

    // And a note written through v1 reads back through v2 section by section.
    let through_v1 = world
        .post(
            &format!("/v1/patients/{patient_id}/notes"),
            token,
            &json!({ "template": "dap", "body": "Data:\nSlept better.\n\nPlan:\nContinue." }),
        )
        .await
        .ok(StatusCode::CREATED);
    let v2 = world
        .get(
            &format!("/v2/notes/{}", through_v1["id"].as_str().unwrap()),
            token,
        )
        .await
        .ok(StatusCode::OK);
    assert_eq!(
        v2["sections"],
        json!({ "data": "Slept better.", "plan": "Continue." })
    );
    // A v1 body without headings is refused, naming the heading expected.
    let refused = world
        .post(
            &format!("/v1/patients/{patient_id}/notes"),
            token,
            &json!({ "template": "dap", "body": "free text" }),
        )
        .await;
    assert_eq!(
        refused.problem(StatusCode::UNPROCESSABLE_ENTITY),
        "/problems/invalid-input"
    );
    assert!(refused.json()["detail"].as_str().unwrap().contains("Data:"));

    let document: Value = world.get("/openapi.json", token).await.ok(StatusCode::OK);
    for path in [
        "/v1/notes/{id}",
        "/v2/notes/{id}",
        "/v1/patients/{id}/notes",
        "/v2/patients/{id}/notes",
    ] {
        assert!(document["paths"].get(path).is_some(), "{path} undocumented");
    }
    // v2 changed the field's shape: `body` (text) became `sections` (an object).
    let v1_schema = document["components"]["schemas"]["NoteV1"].to_string();
    let v2_schema = document["components"]["schemas"]["NoteV2"].to_string();
    assert!(
        v1_schema.contains("\"body\"") && !v1_schema.contains("\"sections\""),
        "{v1_schema}"
    );
    assert!(
        v2_schema.contains("\"sections\"") && !v2_schema.contains("\"body\""),
        "{v2_schema}"
    );
}

#[tokio::test]
async fn a_signed_note_is_refused_every_change_and_corrected_by_a_chained_amendment() {
    let world = World::new().await;
    let patient_id = patient_of_clinician(&world).await;
    let token = &world.a.clinician.token;
    let id = draft_v2(&world, patient_id).await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // A stale version is a conflict, for an edit and for signing.
    call_with(
        &world,
        Method::PUT,
        &format!("/v2/notes/{id}"),
        token,
        Some(&json!({ "sections": sections("v2") })),
        "\"1\"",
    )
    .await
    .ok(StatusCode::OK);
    let stale = call_with(
        &world,
        Method::PUT,
        &format!("/v2/notes/{id}"),
        token,
        Some(&json!({ "sections": sections("v3") })),
        "\"1\"",
    )
    .await;
    stale.problem(StatusCode::CONFLICT);
    call_with(
        &world,
        Method::POST,
        &format!("/v2/notes/{id}/sign"),
        token,
        None,
        "\"1\"",
    )
    .await
    .problem(StatusCode::CONFLICT);

    let signed = call_with(
        &world,
        Method::POST,
        &format!("/v2/notes/{id}/sign"),
        token,
        None,
        "\"2\"",
    )
    .await
    .ok(StatusCode::OK);
    assert_eq!(signed["status"], "complete");
    assert_eq!(
        signed["signature"]["content_sha256"]
            .as_str()
            .unwrap()
            .len(),
        64
    );

    for (method, uri, body) in [
        (
            Method::PUT,
            format!("/v2/notes/{id}"),
            json!({ "sections": sections("changed") }),
        ),
        (
            Method::PUT,
            format!("/v1/notes/{id}"),
            json!({ "body": "Plan:\nchanged" }),
        ),
        (Method::POST, format!("/v2/notes/{id}/sign"), json!({})),
    ] {
        world
            .call(method, &uri, token, Some(&body))
            .await
            .problem(StatusCode::CONFLICT);
    }
    world
        .post(
            &format!("/v2/notes/{id}/amendments"),
            token,
            &json!({ "sections": sections("x") }),
        )
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    let amendment = world
        .post(
            &format!("/v2/notes/{id}/amendments"),
            token,
            &json!({ "sections": sections("Monthly."), "reason": "Wrong frequency" }),
        )
        .await
        .ok(StatusCode::CREATED);
    assert_eq!(amendment["amends"], id.as_str());
    let amendment_id = amendment["id"].as_str().unwrap();
    world
        .post(&format!("/v2/notes/{amendment_id}/sign"), token, &json!({}))
        .await
        .ok(StatusCode::OK);

    let read = world
        .get(&format!("/v2/notes/{id}"), token)
        .await
        .ok(StatusCode::OK);
    assert_eq!(read["sections"]["plan"], "v2", "the original is unchanged");
    assert_eq!(read["amendments"][0]["id"], amendment_id);
    assert_eq!(read["amendments"][0]["reason"], "Wrong frequency");
    assert_eq!(read["amendments"][0]["sections"]["plan"], "Monthly.");
    let v1 = world
        .get(&format!("/v1/notes/{id}"), token)
        .await
        .ok(StatusCode::OK);
    assert!(
        v1["amendments"][0]["body"]
            .as_str()
            .unwrap()
            .contains("Monthly.")
    );
}

#[tokio::test]
async fn a_required_cosignature_comes_from_a_supervisor_who_is_not_the_author() {
    let world = World::new().await;
    let a = &world.a;
    world
        .put(
            "/v1/notes/settings",
            &a.admin.token,
            &json!({ "cosign_required": true, "late_after_minutes": 60 }),
        )
        .await
        .ok(StatusCode::OK);
    world
        .put(
            "/v1/notes/settings",
            &a.clinician.token,
            &json!({ "cosign_required": false, "late_after_minutes": 60 }),
        )
        .await
        .problem(StatusCode::FORBIDDEN);
    for user in [&a.admin, &a.clinician] {
        world
            .post(
                "/v1/notes/supervisors",
                &a.admin.token,
                &json!({ "user_id": user.user_id.into_uuid() }),
            )
            .await
            .ok_empty(StatusCode::NO_CONTENT);
    }
    let patient_id = patient_of_clinician(&world).await;
    let id = draft_v2(&world, patient_id).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let signed = world
        .post(
            &format!("/v2/notes/{id}/sign"),
            &a.clinician.token,
            &json!({}),
        )
        .await
        .ok(StatusCode::OK);
    assert_eq!(signed["status"], "awaiting_cosign");

    // The author is a supervisor, but not of their own note; the integration's user
    // reaches the patient but supervises nobody.
    world
        .post(
            &format!("/v2/notes/{id}/cosign"),
            &a.clinician.token,
            &json!({}),
        )
        .await
        .problem(StatusCode::FORBIDDEN);
    world
        .post(
            &format!("/v2/notes/{id}/cosign"),
            &a.integration.token,
            &json!({}),
        )
        .await
        .problem(StatusCode::FORBIDDEN);
    let cosigned = world
        .post(
            &format!("/v2/notes/{id}/cosign"),
            &a.admin.token,
            &json!({}),
        )
        .await
        .ok(StatusCode::OK);
    assert_eq!(cosigned["status"], "complete");
    assert_eq!(
        cosigned["signature"]["cosigned_by"],
        a.admin.user_id.into_uuid().to_string()
    );
    world
        .post(
            &format!("/v2/notes/{id}/cosign"),
            &a.admin.token,
            &json!({}),
        )
        .await
        .problem(StatusCode::CONFLICT);
}

#[tokio::test]
async fn another_tenants_note_is_not_found_and_late_notes_list_only_the_own_tenants() {
    let world = World::new().await;
    let patient_id = patient_of_clinician(&world).await;
    let late = world
        .post(
            &format!("/v2/patients/{patient_id}/notes"),
            &world.a.clinician.token,
            &json!({ "template": "soap", "service_at": "2020-01-01T09:00:00Z", "sections": sections("p") }),
        )
        .await
        .ok(StatusCode::CREATED);
    let id = late["id"].as_str().unwrap();
    let b = &world.b;
    for (method, uri) in [
        (Method::GET, format!("/v2/notes/{id}")),
        (Method::GET, format!("/v1/notes/{id}")),
        (Method::PUT, format!("/v2/notes/{id}")),
        (Method::POST, format!("/v2/notes/{id}/sign")),
        (Method::POST, format!("/v2/notes/{id}/amendments")),
        (Method::GET, format!("/v2/patients/{patient_id}/notes")),
    ] {
        world
            .call(
                method.clone(),
                &uri,
                &b.clinician.token,
                Some(&json!({ "sections": sections("x") })),
            )
            .await
            .problem(StatusCode::NOT_FOUND);
        if method == Method::GET {
            // An admin reaches every patient of their own tenant, and still not this one.
            world
                .call(method, &uri, &b.admin.token, None)
                .await
                .problem(StatusCode::NOT_FOUND);
        }
    }
    let listed = world
        .get("/v1/notes/late", &world.a.auditor.token)
        .await
        .ok(StatusCode::OK);
    assert_eq!(listed["notes"][0]["id"], id);
    assert!(listed["notes"][0]["due_at"].is_string());
    let other = world
        .get("/v1/notes/late", &b.auditor.token)
        .await
        .ok(StatusCode::OK);
    assert_eq!(other["notes"], json!([]));
    world
        .get("/v1/notes/late", &world.a.clinician.token)
        .await
        .problem(StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "current_thread")]
async fn note_text_never_reaches_logs_error_bodies_or_plaintext_storage() {
    let logs = crate::support::LogCapture::start();

    let world = World::new().await;
    let patient_id = patient_of_clinician(&world).await;
    let token = &world.a.clinician.token;
    let id = draft_v2(&world, patient_id).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Error paths with the canary in the input: an unknown section, a heading-less body.
    let unknown = world
        .put(
            &format!("/v2/notes/{id}"),
            token,
            &json!({ "sections": { "zqxnotecanary": CANARY } }),
        )
        .await;
    let headless = world
        .put(
            &format!("/v1/notes/{id}"),
            token,
            &json!({ "body": CANARY }),
        )
        .await;
    world
        .post(&format!("/v2/notes/{id}/sign"), token, &json!({}))
        .await
        .ok(StatusCode::OK);
    let signed_edit = world
        .put(
            &format!("/v2/notes/{id}"),
            token,
            &json!({ "sections": sections(CANARY) }),
        )
        .await;
    world
        .get(&format!("/v1/notes/{id}"), token)
        .await
        .ok(StatusCode::OK);

    let logs = logs.text();
    assert!(logs.contains("request served"), "the capture works");
    assert!(!logs.to_lowercase().contains("zqxnotecanary"), "{logs}");
    assert!(!headless.text().to_lowercase().contains("zqxnotecanary"));
    assert!(!signed_edit.text().to_lowercase().contains("zqxnotecanary"));
    // An unknown section key is named (keys are the client's field names, not text).
    unknown.problem(StatusCode::UNPROCESSABLE_ENTITY);
    let stored: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM notes.notes n WHERE n::text ILIKE '%zqxnotecanary%'
                     OR position(convert_to('Zqxnotecanary', 'UTF8') IN n.body_sealed) > 0)
              + (SELECT count(*) FROM notes.outbox o WHERE o::text ILIKE '%zqxnotecanary%')
              + (SELECT count(*) FROM audit.events e WHERE e::text ILIKE '%zqxnotecanary%')",
    )
    .fetch_one(&world.db.admin)
    .await
    .unwrap();
    assert_eq!(stored, 0);
}

#[tokio::test]
async fn a_retried_create_returns_the_same_note_and_a_draft_cannot_be_amended() {
    let world = World::new().await;
    let patient_id = patient_of_clinician(&world).await;
    let uri = format!("/v2/patients/{patient_id}/notes");
    let body = json!({ "template": "birp", "sections": { "behavior": "b" } });
    let mut ids = Vec::new();
    for _ in 0..2 {
        let request = json_request(Method::POST, &uri, Some(&world.a.clinician.token), &body);
        let (mut parts, request_body) = request.into_parts();
        parts
            .headers
            .insert("idempotency-key", "note-retry-1".parse().unwrap());
        let created = world
            .send(axum::http::Request::from_parts(parts, request_body))
            .await
            .ok(StatusCode::CREATED);
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids[0], ids[1]);
    let listed = world
        .get(&uri, &world.a.clinician.token)
        .await
        .ok(StatusCode::OK);
    assert_eq!(listed["notes"].as_array().unwrap().len(), 1);
    world
        .post(
            &format!("/v2/notes/{}/amendments", ids[0]),
            &world.a.clinician.token,
            &json!({ "sections": { "behavior": "c" }, "reason": "r" }),
        )
        .await
        .problem(StatusCode::CONFLICT);
    // Signing needs every required section of the template.
    world
        .post(
            &format!("/v2/notes/{}/sign", ids[0]),
            &world.a.clinician.token,
            &json!({}),
        )
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn a_signed_note_is_queued_for_pdf_with_202_and_a_draft_gets_409() {
    let world = World::new().await;
    let patient_id = patient_of_clinician(&world).await;
    let token = &world.a.clinician.token;
    let id = draft_v2(&world, patient_id).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let pdf = format!("/v2/notes/{id}/pdf");

    world
        .post(&pdf, token, &json!({}))
        .await
        .problem(StatusCode::CONFLICT);
    world.get(&pdf, token).await.problem(StatusCode::CONFLICT);

    call_with(
        &world,
        Method::POST,
        &format!("/v2/notes/{id}/sign"),
        token,
        None,
        "\"1\"",
    )
    .await
    .ok(StatusCode::OK);
    let queued = world.post(&pdf, token, &json!({})).await;
    assert_eq!(queued.header("location"), Some(pdf.as_str()));
    let queued = queued.ok(StatusCode::ACCEPTED);
    assert_eq!(queued["note_id"], id.as_str());
    let job_id: Uuid = queued["job_id"].as_str().unwrap().parse().unwrap();
    // The job carries the note id, nothing of its content.
    let args: Value = sqlx::query_scalar("SELECT args FROM platform.jobs WHERE id = $1")
        .bind(job_id)
        .fetch_one(&world.db.admin)
        .await
        .unwrap();
    assert_eq!(args, json!({ "note_id": id }));

    let status = world.get(&pdf, token).await.ok(StatusCode::OK);
    assert_eq!(status["status"], "none");
    assert_eq!(status["rendition"], Value::Null);

    // Once the job has recorded its rendition, its hash is what the note's PDF says.
    let note_id = notes::NoteId::new_unchecked(id.parse().unwrap());
    let mut tx = db::TenantTx::begin_as(&world.db.app, world.a.id, "system", None)
        .await
        .unwrap();
    let rendition = notes::pdf::record_rendition(&mut tx, note_id, [7; 32], None)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let status = world.get(&pdf, token).await.ok(StatusCode::OK);
    assert_eq!(status["status"], "rendered");
    assert_eq!(status["rendition"]["id"], rendition.id.to_string());
    assert_eq!(status["rendition"]["sha256"], "07".repeat(32));
    assert_eq!(status["rendition"]["note_version"], 1);

    // Another tenant's clinician does not find it.
    world
        .post(&pdf, &world.b.clinician.token, &json!({}))
        .await
        .problem(StatusCode::NOT_FOUND);
    // The tenant's admin lets PDFs show the record number besides the pseudonym.
    world
        .put(
            "/v1/notes/settings",
            &world.a.admin.token,
            &json!({ "cosign_required": false, "late_after_minutes": 4320,
                     "pdf_identifiers": ["record_number"] }),
        )
        .await
        .ok(StatusCode::OK);
    let mut tx = db::TenantTx::begin_as(&world.db.app, world.a.id, "system", None)
        .await
        .unwrap();
    assert_eq!(
        notes::settings::pdf_identifiers(&mut tx).await.unwrap(),
        notes::settings::PdfIdentifiers {
            record_number: true,
            name: false,
            birth_date: false,
        }
    );
    tx.rollback().await.unwrap();

    let document: Value = world.get("/openapi.json", token).await.ok(StatusCode::OK);
    assert!(document["paths"]["/v2/notes/{id}/pdf"]["post"].is_object());
    assert!(document["paths"]["/v2/notes/{id}/pdf"]["get"].is_object());
}

#[tokio::test]
async fn a_note_written_and_read_under_break_glass_is_audited_flagged_with_the_grants_reason() {
    let world = World::new().await;
    let patient_id = world
        .create_patient(&world.a.admin.token, &patient("Glasspatient", "MRN-BG-1"))
        .await;
    let clinician = &world.a.clinician.token;
    // Not on the care team: refused until the glass is broken.
    world
        .post(
            &format!("/v2/patients/{patient_id}/notes"),
            clinician,
            &json!({ "template": "soap", "sections": sections("Seen in crisis.") }),
        )
        .await
        .problem(StatusCode::FORBIDDEN);
    let reason = "seen in crisis out of hours";
    world
        .post(
            &format!("/v1/patients/{patient_id}/break-glass"),
            clinician,
            &json!({ "reason": reason }),
        )
        .await
        .ok(StatusCode::CREATED);

    let mark = world.audit_mark().await;
    let draft = world
        .post(
            &format!("/v2/patients/{patient_id}/notes"),
            clinician,
            &json!({ "template": "soap", "sections": sections("Seen in crisis.") }),
        )
        .await
        .ok(StatusCode::CREATED);
    world
        .get(
            &format!("/v2/notes/{}", draft["id"].as_str().unwrap()),
            clinician,
        )
        .await
        .ok(StatusCode::OK);
    world
        .get(&format!("/v2/patients/{patient_id}/notes"), clinician)
        .await
        .ok(StatusCode::OK);
    let events = world.audit_since(&mark).await;
    let note_events: Vec<_> = events
        .iter()
        .filter(|event| event.action.starts_with("note."))
        .collect();
    assert_eq!(
        note_events
            .iter()
            .map(|event| event.action.as_str())
            .collect::<Vec<_>>(),
        ["note.create", "note.read", "note.list"]
    );
    for event in note_events {
        assert!(event.break_glass, "{} not flagged", event.action);
        assert_eq!(event.purpose.as_deref(), Some(reason), "{}", event.action);
    }

    // The care team's own access stays routine: treatment, not flagged.
    let mine = patient_of_clinician(&world).await;
    let mark = world.audit_mark().await;
    draft_v2(&world, mine).await;
    let events = world.audit_since(&mark).await;
    let create = events
        .iter()
        .find(|event| event.action == "note.create")
        .unwrap();
    assert!(!create.break_glass);
    assert_eq!(create.purpose.as_deref(), Some("treatment"));
}
