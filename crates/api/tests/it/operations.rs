//! Operations endpoints: liveness, readiness, Prometheus metrics and OpenAPI.

use axum::body::Body;
use axum::http::{Method, StatusCode, header};

use crate::support::{Reply, World, patient, request, schema_version};

async fn get_public(world: &World, uri: &str) -> Reply {
    world
        .send(request(Method::GET, uri, None).body(Body::empty()).unwrap())
        .await
}

/// Whether `text` holds something shaped like a UUID (8-4-4-4-12 hex digits).
fn contains_uuid(text: &str) -> bool {
    let bytes = text.as_bytes();
    let shape = [8, 4, 4, 4, 12];
    let len: usize = shape.iter().sum::<usize>() + 4;
    (0..bytes.len().saturating_sub(len - 1)).any(|start| {
        let mut at = start;
        shape.iter().enumerate().all(|(i, n)| {
            let group = &bytes[at..at + n];
            at += n;
            let hex = group.iter().all(u8::is_ascii_hexdigit);
            let dash = i == shape.len() - 1 || bytes[at] == b'-';
            at += 1;
            hex && dash
        })
    })
}

#[tokio::test]
async fn healthz_answers_without_credentials() {
    let world = World::new().await;

    let health = get_public(&world, "/healthz").await.ok(StatusCode::OK);

    assert_eq!(health["status"], "ok");
}

#[tokio::test]
async fn readyz_reports_the_schema_version_it_expects() {
    let world = World::new().await;

    let ready = get_public(&world, "/readyz").await.ok(StatusCode::OK);

    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["schema_version"], schema_version());
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_never_by_concrete_id() {
    let world = World::new().await;
    let token = &world.a.admin.token;
    let patient_id = world
        .create_patient(token, &patient("Metric", "MRN-1"))
        .await;
    world
        .get(&format!("/v1/patients/{patient_id}"), token)
        .await
        .ok(StatusCode::OK);
    world
        .get(&format!("/v1/patients/{}", uuid::Uuid::now_v7()), token)
        .await
        .problem(StatusCode::NOT_FOUND);
    world
        .get(
            "/v1/no/such/route/0190f0c8-9a4e-7c3b-8d2a-5e6f7a8b9c0d",
            token,
        )
        .await
        .problem(StatusCode::NOT_FOUND);

    let reply = get_public(&world, "/metrics").await;

    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply
            .header(header::CONTENT_TYPE)
            .is_some_and(|value| value.starts_with("text/plain")),
        "{:?}",
        reply.headers
    );
    let text = reply.text();
    let line = |status: &str| {
        text.lines()
            .find(|line| {
                line.starts_with("tenet_http_requests_total{")
                    && line.contains(r#"route="/v1/patients/{id}""#)
                    && line.contains(r#"method="GET""#)
                    && line.contains(&format!(r#"status="{status}""#))
            })
            .unwrap_or_else(|| panic!("no counter for GET /v1/patients/{{id}} {status}:\n{text}"))
            .to_owned()
    };
    assert!(line("200").ends_with(" 1"), "{}", line("200"));
    assert!(line("404").ends_with(" 1"), "{}", line("404"));
    assert!(text.contains(r#"route="/v1/patients""#), "{text}");
    assert!(
        text.contains("tenet_http_request_duration_seconds"),
        "{text}"
    );
    assert!(text.contains("tenet_db_pool_connections"), "{text}");
    assert!(
        !contains_uuid(&text),
        "a concrete id in the metrics:\n{text}"
    );
}

#[test]
fn the_uuid_detector_finds_uuids_and_only_uuids() {
    assert!(contains_uuid(
        r#"x{route="/v1/patients/0190f0c8-9a4e-7c3b-8d2a-5e6f7a8b9c0d"} 1"#
    ));
    assert!(!contains_uuid(r#"x{route="/v1/patients/{id}"} 1"#));
    assert!(!contains_uuid("0190f0c8-9a4e-7c3b-8d2a"));
}

#[tokio::test]
async fn the_openapi_document_is_3_1_and_documents_the_patient_endpoints() {
    let world = World::new().await;

    let reply = get_public(&world, "/openapi.json").await;

    let document = reply.ok(StatusCode::OK);
    assert_eq!(reply.header(header::CONTENT_TYPE), Some("application/json"));
    let version = document["openapi"].as_str().unwrap();
    assert!(version.starts_with("3.1"), "{version}");
    let paths = document["paths"].as_object().unwrap();
    for (path, method) in [
        ("/v1/patients", "post"),
        ("/v1/patients", "get"),
        ("/v1/patients/{id}", "get"),
        ("/v1/patients/{id}", "put"),
        ("/v1/patients/search", "post"),
        ("/v1/patients/{id}/access-log", "get"),
        ("/v1/patients/{id}/break-glass", "post"),
        ("/v1/patients/{id}/care-team", "post"),
        ("/v1/api-keys/{id}", "delete"),
    ] {
        assert!(
            paths.get(path).and_then(|item| item.get(method)).is_some(),
            "{method} {path} is not documented"
        );
    }
    assert!(document["components"]["schemas"]["Problem"].is_object());
    assert!(document["components"]["securitySchemes"]["bearer"].is_object());
}
