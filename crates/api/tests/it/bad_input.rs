//! Bad requests fail loudly and harmlessly: each gets problem JSON with a stable
//! `type`, and nothing is written.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::json;

use crate::support::{World, patient, request};

struct Case {
    what: &'static str,
    request: Request<Body>,
    status: StatusCode,
    kind: &'static str,
    /// Text the problem's `detail` must contain.
    detail: Option<&'static str>,
}

fn raw(
    method: Method,
    uri: &str,
    token: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
) -> Request<Body> {
    request(method, uri, token)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap()
}

#[tokio::test]
async fn each_bad_request_gets_a_clear_problem_and_writes_nothing() {
    let world = World::new().await;
    let token = world.a.admin.token.as_str();
    let patient_id = world
        .create_patient(token, &patient("Kowalski", "MRN-1"))
        .await;
    let p = format!("/v1/patients/{patient_id}");
    let today = time::OffsetDateTime::now_utc().date();
    let tomorrow = today.next_day().unwrap();
    let with = |field: &str, value: serde_json::Value| {
        let mut body = patient("Kowalski", "MRN-2");
        body[field] = value;
        serde_json::to_vec(&body).unwrap()
    };
    let json = "application/json";
    let mut oversized = patient("Kowalski", "MRN-2");
    oversized["address"] = json!({ "lines": ["x".repeat(api::BODY_LEN_MAX)] });

    let cases = vec![
        Case {
            what: "malformed JSON",
            request: raw(Method::POST, "/v1/patients", Some(token), json, br#"{"family_name": "Kowalski""#.to_vec()),
            status: StatusCode::BAD_REQUEST,
            kind: "/problems/malformed-json",
            detail: Some("line 1"),
        },
        Case {
            what: "trailing garbage after the JSON",
            request: raw(Method::POST, "/v1/patients", Some(token), json, br#"{"family_name": "Kowalski"} x"#.to_vec()),
            status: StatusCode::BAD_REQUEST,
            kind: "/problems/malformed-json",
            detail: Some("trailing"),
        },
        Case {
            what: "an unknown field",
            request: raw(Method::POST, "/v1/patients", Some(token), json, with("nickname", json!("Ko"))),
            status: StatusCode::UNPROCESSABLE_ENTITY,
            kind: "/problems/invalid-input",
            detail: Some("unknown field `nickname`"),
        },
        Case {
            what: "an unknown field on update",
            request: raw(Method::PUT, &p, Some(token), json, with("nickname", json!("Ko"))),
            status: StatusCode::UNPROCESSABLE_ENTITY,
            kind: "/problems/invalid-input",
            detail: Some("unknown field `nickname`"),
        },
        Case {
            what: "a missing required field",
            request: raw(Method::POST, "/v1/patients", Some(token), json, br#"{"given_names": ["Jan"]}"#.to_vec()),
            status: StatusCode::UNPROCESSABLE_ENTITY,
            kind: "/problems/invalid-input",
            detail: Some("missing field `family_name`"),
        },
        Case {
            what: "a body larger than 64 KiB",
            request: raw(Method::POST, "/v1/patients", Some(token), json, serde_json::to_vec(&oversized).unwrap()),
            status: StatusCode::PAYLOAD_TOO_LARGE,
            kind: "/problems/payload-too-large",
            detail: None,
        },
        Case {
            what: "month 13",
            request: raw(Method::POST, "/v1/patients", Some(token), json, with("birth_date", json!("1984-13-02"))),
            status: StatusCode::UNPROCESSABLE_ENTITY,
            kind: "/problems/invalid-input",
            detail: Some("birth_date"),
        },
        Case {
            what: "February 30th",
            request: raw(Method::PUT, &p, Some(token), json, with("birth_date", json!("1984-02-30"))),
            status: StatusCode::UNPROCESSABLE_ENTITY,
            kind: "/problems/invalid-input",
            detail: Some("birth_date"),
        },
        Case {
            what: "a birth date in the future",
            request: raw(Method::POST, "/v1/patients", Some(token), json, with("birth_date", json!(tomorrow.to_string()))),
            status: StatusCode::UNPROCESSABLE_ENTITY,
            kind: "/problems/invalid-input",
            detail: Some("birth_date"),
        },
        Case {
            what: "a birth date in the future, in a search",
            request: raw(
                Method::POST,
                "/v1/patients/search",
                Some(token),
                json,
                serde_json::to_vec(&json!({ "family_name": "Kowalski", "given_name": "Alex", "birth_date": tomorrow.to_string() })).unwrap(),
            ),
            status: StatusCode::UNPROCESSABLE_ENTITY,
            kind: "/problems/invalid-input",
            detail: Some("birth_date"),
        },
        Case {
            what: "a wrongly typed field",
            request: raw(Method::POST, "/v1/patients", Some(token), json, with("given_names", json!("Jan"))),
            status: StatusCode::UNPROCESSABLE_ENTITY,
            kind: "/problems/invalid-input",
            detail: Some("given_names"),
        },
        Case {
            what: "an empty family name",
            request: raw(Method::POST, "/v1/patients", Some(token), json, with("family_name", json!("  "))),
            status: StatusCode::UNPROCESSABLE_ENTITY,
            kind: "/problems/invalid-input",
            detail: Some("family_name"),
        },
        Case {
            what: "a text/plain body",
            request: raw(Method::POST, "/v1/patients", Some(token), "text/plain", serde_json::to_vec(&patient("Kowalski", "MRN-2")).unwrap()),
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            kind: "/problems/unsupported-media-type",
            detail: None,
        },
        Case {
            what: "no content type",
            request: request(Method::POST, "/v1/patients", Some(token))
                .body(Body::from(patient("Kowalski", "MRN-2").to_string()))
                .unwrap(),
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            kind: "/problems/unsupported-media-type",
            detail: None,
        },
        Case {
            what: "no credentials",
            request: raw(Method::POST, "/v1/patients", None, json, serde_json::to_vec(&patient("Kowalski", "MRN-2")).unwrap()),
            status: StatusCode::UNAUTHORIZED,
            kind: "/problems/unauthenticated",
            detail: None,
        },
        Case {
            what: "an unknown route",
            request: request(Method::GET, "/v1/patients/x/y/z", Some(token)).body(Body::empty()).unwrap(),
            status: StatusCode::NOT_FOUND,
            kind: "/problems/not-found",
            detail: None,
        },
        Case {
            what: "an unknown route outside /v1",
            request: request(Method::GET, "/v2/patients", Some(token)).body(Body::empty()).unwrap(),
            status: StatusCode::NOT_FOUND,
            kind: "/problems/not-found",
            detail: None,
        },
        Case {
            what: "a malformed patient id",
            request: request(Method::GET, "/v1/patients/not-a-uuid", Some(token)).body(Body::empty()).unwrap(),
            status: StatusCode::NOT_FOUND,
            kind: "/problems/not-found",
            detail: None,
        },
        Case {
            what: "a method the route does not have",
            request: request(Method::DELETE, &p, Some(token)).body(Body::empty()).unwrap(),
            status: StatusCode::METHOD_NOT_ALLOWED,
            kind: "/problems/method-not-allowed",
            detail: None,
        },
        Case {
            what: "a bad list limit",
            request: request(Method::GET, "/v1/patients?limit=0", Some(token)).body(Body::empty()).unwrap(),
            status: StatusCode::UNPROCESSABLE_ENTITY,
            kind: "/problems/invalid-input",
            detail: Some("limit"),
        },
        Case {
            what: "an unparsable If-Match",
            request: request(Method::PUT, &p, Some(token))
                .header(header::CONTENT_TYPE, json)
                .header(header::IF_MATCH, "\"one\"")
                .body(Body::from(patient("Kowalski", "MRN-1").to_string()))
                .unwrap(),
            status: StatusCode::UNPROCESSABLE_ENTITY,
            kind: "/problems/invalid-input",
            detail: Some("If-Match"),
        },
        Case {
            what: "an Idempotency-Key longer than 255 characters",
            request: request(Method::POST, "/v1/patients", Some(token))
                .header(header::CONTENT_TYPE, json)
                .header("idempotency-key", "k".repeat(256))
                .body(Body::from(patient("Kowalski", "MRN-2").to_string()))
                .unwrap(),
            status: StatusCode::UNPROCESSABLE_ENTITY,
            kind: "/problems/invalid-input",
            detail: Some("Idempotency-Key"),
        },
        Case {
            what: "a search with mixed criteria",
            request: raw(
                Method::POST,
                "/v1/patients/search",
                Some(token),
                json,
                serde_json::to_vec(&json!({ "family_name": "Kowalski" })).unwrap(),
            ),
            status: StatusCode::UNPROCESSABLE_ENTITY,
            kind: "/problems/invalid-input",
            detail: Some("search by"),
        },
    ];

    // Use the key once so that its `last_used_at` is not a write of the cases below.
    world.get("/v1/me", token).await.ok(StatusCode::OK);
    let before = world.fingerprint().await;
    for case in cases {
        let reply = world.send(case.request).await;
        assert_eq!(reply.status, case.status, "{}: {}", case.what, reply.text());
        assert_eq!(reply.problem(case.status), case.kind, "{}", case.what);
        assert!(
            reply.header("x-request-id").is_some(),
            "{}: no request id",
            case.what
        );
        let problem = reply.json();
        if let Some(detail) = case.detail {
            let text = problem["detail"].as_str().unwrap_or_default();
            assert!(text.contains(detail), "{}: {problem}", case.what);
        }
        world
            .fingerprint()
            .await
            .assert_unchanged(&before, case.what);
    }
}

#[tokio::test]
async fn a_wrong_method_names_the_allowed_ones() {
    let world = World::new().await;

    let reply = world.delete("/v1/patients", &world.a.admin.token).await;

    assert_eq!(
        reply.problem(StatusCode::METHOD_NOT_ALLOWED),
        "/problems/method-not-allowed"
    );
    let allow = reply.header(header::ALLOW).unwrap_or_default();
    assert!(
        allow.contains("GET") && allow.contains("POST"),
        "Allow: {allow:?}"
    );
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_even_when_it_is_not_json() {
    // The size limit holds even for a body that is not JSON at all.
    let world = World::new().await;
    let body = vec![b'{'; api::BODY_LEN_MAX + 1];

    let reply = world
        .send(raw(
            Method::POST,
            "/v1/patients",
            Some(&world.a.admin.token),
            "application/json",
            body,
        ))
        .await;

    assert_eq!(
        reply.problem(StatusCode::PAYLOAD_TOO_LARGE),
        "/problems/payload-too-large"
    );
    assert_eq!(world.count("clinical.patients").await, 0);
}
