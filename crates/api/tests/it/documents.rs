//! Documents over HTTP: every role × category × care-team cell of the default scope,
//! streamed uploads and downloads, limits and sniffing, signed links, legal holds,
//! retention and scope rules, and tenant isolation.

use axum::body::Body;
use axum::http::{Method, StatusCode, header};
use db::TenantTx;
use documents::scope::default_permission;
use documents::{Category, Permission};
use kernel::{PatientId, Role, TenantId, UserId};
use serde_json::json;
use uuid::Uuid;

use crate::support::{DOCUMENT_SIZE_MAX_BYTES, Principal, Reply, World, request};

const CANARY: &str = "Zqxcanary discharge letter";

async fn patient(world: &World, tenant_id: TenantId, care_team: &[UserId]) -> PatientId {
    let mut tx = TenantTx::begin_as(&world.db.app, tenant_id, "system", None)
        .await
        .unwrap();
    let patient_id = PatientId::generate();
    clinical::patient::insert(&mut tx, patient_id)
        .await
        .unwrap();
    for user_id in care_team {
        clinical::care_team::add(&mut tx, patient_id, *user_id)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    patient_id
}

async fn upload(
    world: &World,
    token: &str,
    patient_id: PatientId,
    category: Category,
    content_type: &str,
    content: impl Into<Body>,
) -> Reply {
    world
        .send(
            request(
                Method::POST,
                &format!("/v1/patients/{patient_id}/documents?category={category}"),
                Some(token),
            )
            .header(header::CONTENT_TYPE, content_type)
            .header("document-filename", format!("{CANARY}.txt"))
            .body(content.into())
            .unwrap(),
        )
        .await
}

async fn stored(world: &World, token: &str, patient_id: PatientId, category: Category) -> Uuid {
    let reply = upload(
        world,
        token,
        patient_id,
        category,
        "text/plain",
        format!("{CANARY} body"),
    )
    .await;
    let created = reply.ok(StatusCode::CREATED);
    created["id"].as_str().unwrap().parse().unwrap()
}

fn everyone(world: &World) -> Vec<UserId> {
    world.a.principals().iter().map(|p| p.user_id).collect()
}

#[tokio::test]
async fn every_role_reads_writes_and_deletes_each_category_as_the_scope_says() {
    let world = World::new().await;
    let on_team = patient(&world, world.a.id, &everyone(&world)).await;
    let off_team = patient(&world, world.a.id, &[]).await;
    let admin = world.a.admin.token.clone();
    let mut n_checked = 0;
    for principal in world.a.principals() {
        for category in Category::ALL {
            for (patient_id, on_care_team) in [(on_team, true), (off_team, false)] {
                let granted = default_permission(principal.role, category, on_care_team);
                let cell = format!("{} {category} on_care_team={on_care_team}", principal.role);
                let document_id = stored(&world, &admin, patient_id, category).await;

                let read = world
                    .get(
                        &format!("/v1/documents/{document_id}/content"),
                        &principal.token,
                    )
                    .await;
                expect(
                    &read,
                    granted >= Permission::Read,
                    StatusCode::OK,
                    principal,
                    on_care_team,
                    &cell,
                );
                if read.status == StatusCode::OK {
                    assert_eq!(read.text(), format!("{CANARY} body"), "{cell}");
                }

                let write = upload(
                    &world,
                    &principal.token,
                    patient_id,
                    category,
                    "text/plain",
                    "new",
                )
                .await;
                expect(
                    &write,
                    granted >= Permission::Write,
                    StatusCode::CREATED,
                    principal,
                    on_care_team,
                    &cell,
                );

                let delete = world
                    .delete(&format!("/v1/documents/{document_id}"), &principal.token)
                    .await;
                expect(
                    &delete,
                    granted >= Permission::Delete,
                    StatusCode::NO_CONTENT,
                    principal,
                    on_care_team,
                    &cell,
                );
                n_checked += 1;
            }
        }
    }
    assert_eq!(n_checked, 5 * 8 * 2);
}

#[track_caller]
fn expect(
    reply: &Reply,
    allowed: bool,
    success: StatusCode,
    principal: &Principal,
    on_care_team: bool,
    cell: &str,
) {
    if allowed {
        assert_eq!(reply.status, success, "{cell}: {}", reply.text());
        return;
    }
    let problem = reply.problem(StatusCode::FORBIDDEN);
    let expected = if principal.role == Role::Clinician && !on_care_team {
        "/problems/break-glass-required"
    } else {
        "/problems/forbidden"
    };
    assert_eq!(problem, expected, "{cell}");
}

#[tokio::test]
async fn a_document_round_trips_over_http_and_its_name_never_reaches_a_url_or_the_database_in_clear()
 {
    let world = World::new().await;
    let patient_id = patient(&world, world.a.id, &everyone(&world)).await;
    let clinician = &world.a.clinician.token;
    let content = format!("{CANARY}\n").repeat(5000);
    let reply = upload(
        &world,
        clinician,
        patient_id,
        Category::Correspondence,
        "text/plain; charset=utf-8",
        content.clone(),
    )
    .await;
    let created = reply.ok(StatusCode::CREATED);
    assert_eq!(created["content_type"], "text/plain");
    assert_eq!(created["size_bytes"], content.len());
    assert_eq!(created["category"], "correspondence");
    assert!(!reply.text().contains("Zqxcanary"));
    let id = created["id"].as_str().unwrap();
    assert_eq!(
        reply.header(header::LOCATION),
        Some(format!("/v1/documents/{id}").as_str())
    );

    let download = world
        .get(&format!("/v1/documents/{id}/content"), clinician)
        .await;
    assert_eq!(download.status, StatusCode::OK);
    assert_eq!(download.text(), content);
    assert_eq!(download.header(header::CONTENT_TYPE), Some("text/plain"));
    assert_eq!(download.header("x-content-type-options"), Some("nosniff"));
    assert!(
        download
            .header(header::CONTENT_DISPOSITION)
            .unwrap()
            .starts_with("attachment; filename*=UTF-8''Zqxcanary%20discharge%20letter.txt")
    );

    let listed = world
        .get(&format!("/v1/patients/{patient_id}/documents"), clinician)
        .await
        .ok(StatusCode::OK);
    assert_eq!(listed["documents"].as_array().unwrap().len(), 1);
    assert_eq!(listed["documents"][0]["id"], id);
    assert!(!listed.to_string().contains("Zqxcanary"));
    let metadata = world
        .get(&format!("/v1/documents/{id}"), clinician)
        .await
        .ok(StatusCode::OK);
    assert_eq!(metadata["status"], "stored");

    let object = std::fs::read(
        world
            .documents_dir
            .path()
            .join(world.a.id.to_string())
            .join(id),
    )
    .unwrap();
    assert!(
        !object.windows(9).any(|window| window == b"Zqxcanary"),
        "the stored object holds plaintext"
    );
    for exchange in world.journal() {
        assert!(!exchange.uri.contains("Zqxcanary"), "{}", exchange.uri);
    }
    let in_clear: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM documents.documents d WHERE d::text LIKE '%Zqxcanary%'
            OR position(convert_to('Zqxcanary', 'UTF8') IN d.filename_sealed) > 0",
    )
    .fetch_one(&world.db.admin)
    .await
    .unwrap();
    assert_eq!(in_clear, 0);
    let actions: Vec<String> = sqlx::query_scalar(
        "SELECT action FROM audit.events WHERE tenant_id = $1 AND patient_id = $2 ORDER BY occurred_at, seq",
    )
    .bind(world.a.id.as_uuid())
    .bind(patient_id.as_uuid())
    .fetch_all(&world.db.admin)
    .await
    .unwrap();
    assert_eq!(
        actions,
        ["document.create", "document.read", "document.list"]
    );
}

#[tokio::test]
async fn an_upload_over_the_limit_gets_413_and_a_contradicting_type_gets_415() {
    let world = World::new().await;
    let patient_id = patient(&world, world.a.id, &[]).await;
    let admin = &world.a.admin.token;
    let too_large = "a".repeat(usize::try_from(DOCUMENT_SIZE_MAX_BYTES).unwrap() + 1);
    let reply = upload(
        &world,
        admin,
        patient_id,
        Category::Other,
        "text/plain",
        too_large,
    )
    .await;
    assert_eq!(
        reply.problem(StatusCode::PAYLOAD_TOO_LARGE),
        "/problems/document-too-large"
    );

    let reply = upload(
        &world,
        admin,
        patient_id,
        Category::Imaging,
        "image/png",
        &b"%PDF-1.7 not a png"[..],
    )
    .await;
    assert_eq!(
        reply.problem(StatusCode::UNSUPPORTED_MEDIA_TYPE),
        "/problems/unsupported-document-type"
    );
    let reply = upload(
        &world,
        admin,
        patient_id,
        Category::Other,
        "application/x-sh",
        "#!/bin/sh",
    )
    .await;
    assert_eq!(
        reply.problem(StatusCode::UNSUPPORTED_MEDIA_TYPE),
        "/problems/unsupported-document-type"
    );

    let listed = world
        .get(
            &format!("/v1/patients/{patient_id}/documents?include_deleted=true"),
            admin,
        )
        .await
        .ok(StatusCode::OK);
    assert_eq!(listed["documents"], json!([]));
}

#[tokio::test]
async fn a_repeated_upload_with_the_same_idempotency_key_stores_one_document() {
    let world = World::new().await;
    let patient_id = patient(&world, world.a.id, &[]).await;
    let admin = &world.a.admin.token;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let reply = world
            .send(
                request(
                    Method::POST,
                    &format!("/v1/patients/{patient_id}/documents?category=other"),
                    Some(admin),
                )
                .header(header::CONTENT_TYPE, "text/plain")
                .header("document-filename", "a.txt")
                .header("idempotency-key", "upload-1")
                .body(Body::from("once"))
                .unwrap(),
            )
            .await;
        ids.push(reply.ok(StatusCode::CREATED)["id"].clone());
    }
    assert_eq!(ids[0], ids[1]);
    assert_eq!(world.count("documents.documents").await, 1);
}

#[tokio::test]
async fn a_signed_link_downloads_until_it_expires_and_refuses_tampering() {
    let world = World::new().await;
    let patient_id = patient(&world, world.a.id, &everyone(&world)).await;
    let clinician = &world.a.clinician;
    let id = stored(
        &world,
        &world.a.admin.token,
        patient_id,
        Category::LabResult,
    )
    .await;

    let link = world
        .post(
            &format!("/v1/documents/{id}/link"),
            &clinician.token,
            &json!({}),
        )
        .await
        .ok(StatusCode::CREATED);
    let url = link["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with("/v1/document-links/"));
    let anonymous = world
        .send(
            request(Method::GET, &url, None)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(anonymous.status, StatusCode::OK, "{}", anonymous.text());
    assert_eq!(anonymous.text(), format!("{CANARY} body"));
    let actor: String = sqlx::query_scalar(
        "SELECT actor FROM audit.events WHERE tenant_id = $1 AND action = 'document.read' ORDER BY occurred_at DESC LIMIT 1",
    )
    .bind(world.a.id.as_uuid())
    .fetch_one(&world.db.admin)
    .await
    .unwrap();
    assert_eq!(actor, format!("api_key:{}", clinician.key_id));

    let mut tampered = url.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let reply = world
        .send(
            request(Method::GET, &tampered, None)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(
        reply.problem(StatusCode::FORBIDDEN),
        "/problems/link-invalid"
    );

    let short = world
        .post(
            &format!("/v1/documents/{id}/link"),
            &clinician.token,
            &json!({"ttl_secs": 1}),
        )
        .await
        .ok(StatusCode::CREATED);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let reply = world
        .send(
            request(Method::GET, short["url"].as_str().unwrap(), None)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(
        reply.problem(StatusCode::FORBIDDEN),
        "/problems/link-expired"
    );

    let too_long = world
        .post(
            &format!("/v1/documents/{id}/link"),
            &clinician.token,
            &json!({"ttl_secs": 86400}),
        )
        .await;
    assert_eq!(
        too_long.problem(StatusCode::UNPROCESSABLE_ENTITY),
        "/problems/invalid-input"
    );
    // Another tenant cannot make a link to it: the document is not found.
    let reply = world
        .post(
            &format!("/v1/documents/{id}/link"),
            &world.b.admin.token,
            &json!({}),
        )
        .await;
    assert_eq!(reply.problem(StatusCode::NOT_FOUND), "/problems/not-found");
}

#[tokio::test]
async fn another_tenants_document_is_not_found_whatever_the_route() {
    let world = World::new().await;
    let patient_id = patient(&world, world.a.id, &[]).await;
    let id = stored(&world, &world.a.admin.token, patient_id, Category::Other).await;
    let b_admin = &world.b.admin.token;
    for reply in [
        world.get(&format!("/v1/documents/{id}"), b_admin).await,
        world
            .get(&format!("/v1/documents/{id}/content"), b_admin)
            .await,
        world.delete(&format!("/v1/documents/{id}"), b_admin).await,
        world
            .post(
                &format!("/v1/documents/{id}/hold"),
                b_admin,
                &json!({"reason": "x"}),
            )
            .await,
        world
            .get(&format!("/v1/patients/{patient_id}/documents"), b_admin)
            .await,
        upload(
            &world,
            b_admin,
            patient_id,
            Category::Other,
            "text/plain",
            "x",
        )
        .await,
    ] {
        assert_eq!(reply.problem(StatusCode::NOT_FOUND), "/problems/not-found");
    }
    world
        .get(&format!("/v1/documents/{id}/content"), &world.a.admin.token)
        .await
        .ok_status(StatusCode::OK);
}

trait OkStatus {
    fn ok_status(&self, status: StatusCode);
}

impl OkStatus for Reply {
    #[track_caller]
    fn ok_status(&self, status: StatusCode) {
        assert_eq!(self.status, status, "{}", self.text());
    }
}

#[tokio::test]
async fn a_held_document_cannot_be_deleted_until_its_hold_is_released() {
    let world = World::new().await;
    let patient_id = patient(&world, world.a.id, &[]).await;
    let admin = &world.a.admin.token;
    let id = stored(&world, admin, patient_id, Category::ConsentForm).await;
    let held = world
        .post(
            &format!("/v1/documents/{id}/hold"),
            admin,
            &json!({"reason": "Matter 2026-17"}),
        )
        .await
        .ok(StatusCode::OK);
    assert_eq!(held["legal_hold"]["reason"], "Matter 2026-17");
    let reply = world
        .post(
            &format!("/v1/documents/{id}/hold"),
            &world.a.clinician.token,
            &json!({"reason": "x"}),
        )
        .await;
    assert_eq!(reply.problem(StatusCode::FORBIDDEN), "/problems/forbidden");
    let reply = world.delete(&format!("/v1/documents/{id}"), admin).await;
    assert_eq!(reply.problem(StatusCode::CONFLICT), "/problems/conflict");
    let released = world
        .delete(&format!("/v1/documents/{id}/hold"), admin)
        .await
        .ok(StatusCode::OK);
    assert_eq!(released["legal_hold"], json!(null));
    world
        .delete(&format!("/v1/documents/{id}"), admin)
        .await
        .ok_empty(StatusCode::NO_CONTENT);
    let reply = world
        .get(&format!("/v1/documents/{id}/content"), admin)
        .await;
    assert_eq!(reply.problem(StatusCode::GONE), "/problems/gone");
}

#[tokio::test]
async fn a_tenant_can_widen_a_scope_and_set_retention_rules() {
    let world = World::new().await;
    let patient_id = patient(&world, world.a.id, &everyone(&world)).await;
    let admin = &world.a.admin.token;
    let coordinator = &world.a.care_coordinator.token;
    let id = stored(&world, admin, patient_id, Category::ClinicalNote).await;
    let reply = world
        .get(&format!("/v1/documents/{id}/content"), coordinator)
        .await;
    assert_eq!(reply.problem(StatusCode::FORBIDDEN), "/problems/forbidden");

    let rule = json!({"role": "care_coordinator", "category": "clinical_note", "on_care_team": true, "permission": "read"});
    world
        .put("/v1/document-scope-rules", admin, &rule)
        .await
        .ok(StatusCode::OK);
    let reply = world
        .put("/v1/document-scope-rules", coordinator, &rule)
        .await;
    assert_eq!(reply.problem(StatusCode::FORBIDDEN), "/problems/forbidden");
    world
        .get(&format!("/v1/documents/{id}/content"), coordinator)
        .await
        .ok_status(StatusCode::OK);
    let scopes = world
        .get("/v1/document-scope-rules", admin)
        .await
        .ok(StatusCode::OK);
    assert_eq!(scopes["rules"].as_array().unwrap().len(), 5 * 8 * 2);
    assert!(scopes["rules"].as_array().unwrap().contains(&rule));

    let set = world
        .put(
            "/v1/document-retention-rules/correspondence",
            admin,
            &json!({"anchor": "last_encounter", "keep_days": 2555}),
        )
        .await
        .ok(StatusCode::OK);
    assert_eq!(set["keep_days"], 2555);
    let rules = world
        .get("/v1/document-retention-rules", admin)
        .await
        .ok(StatusCode::OK);
    assert_eq!(
        rules["rules"],
        json!([{"category": "correspondence", "anchor": "last_encounter", "keep_days": 2555}])
    );
    let reply = world
        .put(
            "/v1/document-retention-rules/correspondence",
            admin,
            &json!({"anchor": "created", "keep_days": 0}),
        )
        .await;
    assert_eq!(
        reply.problem(StatusCode::UNPROCESSABLE_ENTITY),
        "/problems/invalid-input"
    );
    let reply = world
        .put(
            "/v1/document-retention-rules/x_rays",
            admin,
            &json!({"anchor": "created", "keep_days": 10}),
        )
        .await;
    assert_eq!(
        reply.problem(StatusCode::UNPROCESSABLE_ENTITY),
        "/problems/invalid-input"
    );
    let schedules: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM platform.schedules WHERE tenant_id = $1 AND name = 'documents.lifecycle'",
    )
    .bind(world.a.id.as_uuid())
    .fetch_one(&world.db.admin)
    .await
    .unwrap();
    assert_eq!(schedules, 1);
    world
        .delete("/v1/document-retention-rules/correspondence", admin)
        .await
        .ok_empty(StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn the_openapi_document_lists_every_document_endpoint() {
    let world = World::new().await;
    let document: serde_json::Value = world
        .get("/openapi.json", &world.a.admin.token)
        .await
        .ok(StatusCode::OK);
    for (path, method) in [
        ("/v1/patients/{id}/documents", "post"),
        ("/v1/patients/{id}/documents", "get"),
        ("/v1/documents/{id}", "get"),
        ("/v1/documents/{id}", "delete"),
        ("/v1/documents/{id}/content", "get"),
        ("/v1/documents/{id}/link", "post"),
        ("/v1/document-links/{token}", "get"),
        ("/v1/documents/{id}/hold", "post"),
        ("/v1/documents/{id}/hold", "delete"),
        ("/v1/document-retention-rules", "get"),
        ("/v1/document-retention-rules/{category}", "put"),
        ("/v1/document-retention-rules/{category}", "delete"),
        ("/v1/document-scope-rules", "get"),
        ("/v1/document-scope-rules", "put"),
    ] {
        assert!(
            document["paths"][path][method].is_object(),
            "{method} {path} undocumented"
        );
    }
    let upload = document["paths"]["/v1/patients/{id}/documents"]["post"]["responses"].to_string();
    assert!(upload.contains("413") && upload.contains("415"), "{upload}");
}

#[tokio::test]
async fn a_clinician_off_the_care_team_reads_a_document_only_through_break_glass_and_it_is_recorded()
 {
    let world = World::new().await;
    // Break-glass is opened on a registered patient (the vault holds their identity).
    let patient_id = PatientId::new_unchecked(
        world
            .create_patient(
                &world.a.admin.token,
                &crate::support::patient("Moreau", "MRN-1"),
            )
            .await,
    );
    let id = stored(
        &world,
        &world.a.admin.token,
        patient_id,
        Category::LabResult,
    )
    .await;
    let clinician = &world.a.clinician.token;
    let reply = world
        .get(&format!("/v1/documents/{id}/content"), clinician)
        .await;
    assert_eq!(
        reply.problem(StatusCode::FORBIDDEN),
        "/problems/break-glass-required"
    );
    world
        .post(
            &format!("/v1/patients/{patient_id}/break-glass"),
            clinician,
            &json!({"reason": "Overnight emergency, patient unresponsive"}),
        )
        .await
        .ok(StatusCode::CREATED);
    world
        .get(&format!("/v1/documents/{id}/content"), clinician)
        .await
        .ok_status(StatusCode::OK);
    let (break_glass, purpose): (bool, Option<String>) = sqlx::query_as(
        "SELECT break_glass, purpose FROM audit.events
         WHERE tenant_id = $1 AND action = 'document.read' ORDER BY occurred_at DESC LIMIT 1",
    )
    .bind(world.a.id.as_uuid())
    .fetch_one(&world.db.admin)
    .await
    .unwrap();
    assert!(break_glass);
    assert_eq!(
        purpose.as_deref(),
        Some("Overnight emergency, patient unresponsive")
    );

    // An upload under the same grant is recorded the same way, not as routine care.
    let uploaded = upload(
        &world,
        clinician,
        patient_id,
        Category::LabResult,
        "text/plain",
        "potassium 6.1",
    )
    .await
    .ok(StatusCode::CREATED);
    let (break_glass, purpose): (bool, Option<String>) = sqlx::query_as(
        "SELECT break_glass, purpose FROM audit.events
         WHERE tenant_id = $1 AND action = 'document.create' AND details->>'document_id' = $2",
    )
    .bind(world.a.id.as_uuid())
    .bind(uploaded["id"].as_str().unwrap())
    .fetch_one(&world.db.admin)
    .await
    .unwrap();
    assert!(break_glass);
    assert_eq!(
        purpose.as_deref(),
        Some("Overnight emergency, patient unresponsive")
    );
}

/// Files under the document store's directory: the stored objects.
fn n_objects(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| {
                    let path = entry.path();
                    if path.is_dir() { n_objects(&path) } else { 1 }
                })
                .sum()
        })
        .unwrap_or(0)
}

/// An upload whose body arrives when the test says: it returns once the upload has
/// taken its first part (past the checks, streaming), and the sender ends the body
/// when dropped.
async fn stalled_upload(
    world: &World,
    token: &str,
    patient_id: PatientId,
    i: usize,
) -> (
    tokio::sync::mpsc::Sender<Result<axum::body::Bytes, std::io::Error>>,
    tokio::task::JoinHandle<Reply>,
) {
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    let body = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|part| (part, receiver))
    });
    let request = request(
        Method::POST,
        &format!(
            "/v1/patients/{patient_id}/documents?category={}",
            Category::Correspondence
        ),
        Some(token),
    )
    .header(header::CONTENT_TYPE, "text/plain")
    .header("document-filename", format!("{CANARY} {i}.txt"))
    .body(Body::from_stream(body))
    .unwrap();
    let client = world.client.clone();
    let reply = tokio::spawn(async move { client.send(request).await });
    for part in [
        format!("{CANARY} part one of {i}\n"),
        "part two\n".to_owned(),
    ] {
        // The channel holds one part: the second send returns once the upload has
        // taken the first.
        tokio::time::timeout(
            std::time::Duration::from_secs(20),
            sender.send(Ok(part.into())),
        )
        .await
        .unwrap_or_else(|_| panic!("upload {i} never started streaming its body"))
        .unwrap();
    }
    (sender, reply)
}

#[tokio::test]
async fn slow_uploads_hold_no_database_connection_and_are_checked_again_when_they_end() {
    let world = World::new().await;
    let clinician = &world.a.clinician;
    let patient_id = patient(&world, world.a.id, &[clinician.user_id]).await;

    // More uploads stalled mid-body than the pool has connections (16).
    let mut uploads = Vec::new();
    for i in 0..24 {
        uploads.push(stalled_upload(&world, &clinician.token, patient_id, i).await);
    }
    let in_transaction: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
    )
    .fetch_one(&world.db.admin)
    .await
    .unwrap();
    assert_eq!(in_transaction, 0, "no transaction waits on a body");
    // The API still answers everyone else.
    let listed = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        world.get(
            &format!("/v1/patients/{patient_id}/documents"),
            &clinician.token,
        ),
    )
    .await
    .expect("the API answers while uploads stall");
    assert_eq!(listed.ok(StatusCode::OK)["documents"], json!([]));
    for (sender, reply) in uploads {
        drop(sender);
        reply.await.unwrap().ok(StatusCode::CREATED);
    }
    let stored = n_objects(world.documents_dir.path());
    assert_eq!(stored, 24);

    // Credentials are checked again once the body is in: a key revoked while its
    // upload streamed stores nothing, and leaves no object behind.
    let mut uploads = Vec::new();
    for i in 0..3 {
        uploads.push(stalled_upload(&world, &clinician.token, patient_id, i).await);
    }
    let mut tx = TenantTx::begin_as(&world.db.app, world.a.id, "system", None)
        .await
        .unwrap();
    assert!(
        identity::api_key::revoke(&mut tx, clinician.key_id)
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
    for (sender, reply) in uploads {
        drop(sender);
        reply.await.unwrap().problem(StatusCode::UNAUTHORIZED);
    }
    assert_eq!(n_objects(world.documents_dir.path()), stored);
    let n_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM documents.documents")
        .fetch_one(&world.db.admin)
        .await
        .unwrap();
    assert_eq!(n_rows, 24);
}

/// Follows a signed link with no other credential.
async fn follow(world: &World, url: &str) -> Reply {
    world
        .send(request(Method::GET, url, None).body(Body::empty()).unwrap())
        .await
}

#[tokio::test]
async fn a_signed_link_dies_with_its_makers_access() {
    let world = World::new().await;
    let clinician = &world.a.clinician;
    let patient_id = patient(&world, world.a.id, &[clinician.user_id]).await;
    let id = stored(&world, &clinician.token, patient_id, Category::LabResult).await;
    let link = |token: String| {
        let world = &world;
        async move {
            world
                .post(&format!("/v1/documents/{id}/link"), &token, &json!({}))
                .await
                .ok(StatusCode::CREATED)["url"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };

    // Off the care team since: the clinician could no longer read it, nor can the link.
    let url = link(clinician.token.clone()).await;
    assert_eq!(follow(&world, &url).await.status, StatusCode::OK);
    sqlx::query("DELETE FROM clinical.care_team_members WHERE tenant_id = $1 AND patient_id = $2")
        .bind(world.a.id.as_uuid())
        .bind(patient_id.as_uuid())
        .execute(&world.db.admin)
        .await
        .unwrap();
    assert_eq!(
        follow(&world, &url).await.problem(StatusCode::FORBIDDEN),
        "/problems/link-invalid"
    );

    // The maker's key revoked since: void too, while a link of an admin still works.
    let admins = link(world.a.admin.token.clone()).await;
    assert_eq!(follow(&world, &admins).await.status, StatusCode::OK);
    let mut tx = TenantTx::begin_as(&world.db.app, world.a.id, "system", None)
        .await
        .unwrap();
    identity::api_key::revoke(&mut tx, world.a.admin.key_id)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        follow(&world, &admins).await.problem(StatusCode::FORBIDDEN),
        "/problems/link-invalid"
    );
}
