//! Webhook subscriptions, schedules and sagas over HTTP: a tenant's admins manage
//! their own only; other roles get 403; another tenant's id is a 404 and its record
//! stays as it was; a webhook URL that reaches a private host is refused and writes
//! nothing.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use db::TenantTx;
use platform::jobs::Registry;
use platform::jobs::worker::{Outcome, Worker, WorkerConfig};
use platform::sagas::{self, Saga, SagaContext, SagaRegistry, SagaStep, StepError};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::support::{Principal, World, request};

fn keyed(uri: &str, token: &str, key: &str, body: &Value) -> Request<Body> {
    request(Method::POST, uri, Some(token))
        .header(header::CONTENT_TYPE, "application/json")
        .header("idempotency-key", key)
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// The `detail` of a 422 problem.
#[track_caller]
fn invalid(reply: &crate::support::Reply) -> String {
    assert_eq!(
        reply.problem(StatusCode::UNPROCESSABLE_ENTITY),
        "/problems/invalid-input"
    );
    reply.json()["detail"].as_str().unwrap().to_owned()
}

fn non_admins(world: &World) -> [&Principal; 4] {
    let a = &world.a;
    [
        &a.clinician,
        &a.care_coordinator,
        &a.auditor,
        &a.integration,
    ]
}

fn rfc3339(value: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(value.as_str().expect("a timestamp"), &Rfc3339)
        .unwrap_or_else(|err| panic!("{value} is RFC 3339: {err}"))
}

// ---- webhooks ----------------------------------------------------------------------

fn webhook(url: &str) -> Value {
    json!({ "url": url, "event_types": ["patient.created", "patient.updated"] })
}

async fn create_webhook(world: &World, token: &str, url: &str) -> Value {
    world
        .post("/v1/webhooks", token, &webhook(url))
        .await
        .ok(StatusCode::CREATED)
}

#[tokio::test]
async fn a_webhook_secret_is_shown_when_it_is_created_and_never_again() {
    let world = World::new().await;
    let token = &world.a.admin.token;
    let reply = world
        .post(
            "/v1/webhooks",
            token,
            &webhook("https://hooks.example.com/tenet"),
        )
        .await;
    let created = reply.ok(StatusCode::CREATED);
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(
        reply.header(header::LOCATION),
        Some(format!("/v1/webhooks/{id}").as_str())
    );
    let secret = created["secret"].as_str().expect("the secret, this once");
    assert!(
        secret.starts_with("whsec_") && secret.len() > 40,
        "{created}"
    );
    assert_eq!(created["url"], "https://hooks.example.com/tenet");
    assert_eq!(
        created["event_types"],
        json!(["patient.created", "patient.updated"])
    );
    assert_eq!(created["state"], "active");
    rfc3339(&created["created_at"]);

    let shown = world
        .get(&format!("/v1/webhooks/{id}"), token)
        .await
        .ok(StatusCode::OK);
    let listed = world.get("/v1/webhooks", token).await.ok(StatusCode::OK);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    for view in [&shown, &listed[0]] {
        assert_eq!(view["id"], created["id"]);
        assert!(view.get("secret").is_none(), "{view}");
        assert!(!view.to_string().contains(secret), "{view}");
    }
    // The secret is not anywhere in what a later read returns.
    for exchange in world.journal().iter().skip(1) {
        assert!(
            !String::from_utf8_lossy(&exchange.body).contains(secret),
            "{}",
            exchange.uri
        );
    }
}

#[tokio::test]
async fn an_admin_disables_and_enables_a_webhook() {
    let world = World::new().await;
    let token = &world.a.admin.token;
    let created = create_webhook(&world, token, "https://hooks.example.com/a").await;
    let id = created["id"].as_str().unwrap();

    let disabled = world
        .post(&format!("/v1/webhooks/{id}/disable"), token, &json!({}))
        .await
        .ok(StatusCode::OK);
    assert_eq!(disabled["state"], "disabled");
    assert!(
        disabled["disabled_reason"]
            .as_str()
            .is_some_and(|reason| reason.starts_with("disabled by")),
        "{disabled}"
    );
    let shown = world
        .get(&format!("/v1/webhooks/{id}"), token)
        .await
        .ok(StatusCode::OK);
    assert_eq!(shown["state"], "disabled");

    let enabled = world
        .post(&format!("/v1/webhooks/{id}/enable"), token, &json!({}))
        .await
        .ok(StatusCode::OK);
    assert_eq!(enabled["state"], "active");
    assert_eq!(enabled["disabled_reason"], Value::Null);
    assert_eq!(enabled["consecutive_failures"], 0);
    let listed = world.get("/v1/webhooks", token).await.ok(StatusCode::OK);
    assert_eq!(listed[0]["state"], "active");
}

#[tokio::test]
async fn a_webhook_url_that_reaches_a_private_host_is_refused_and_nothing_is_written() {
    let world = World::new().await;
    let token = &world.a.admin.token;
    // Authenticate once: the first use of a key records it.
    world.get("/v1/me", token).await.ok(StatusCode::OK);
    let before = world.fingerprint().await;
    for url in [
        "http://localhost:8080/hook",
        "http://LOCALHOST./hook",
        "http://api.localhost/hook",
        "http://127.0.0.1/hook",
        "http://2130706433/hook",
        "http://0x7f.1/hook",
        "http://10.1.2.3/hook",
        "http://172.20.0.5/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://0.0.0.0/hook",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[fd00:ec2::254]/hook",
        "http://[fe80::1]/hook",
        "https://user:hunter2@hooks.example.com/hook",
        "ftp://hooks.example.com/hook",
        "file:///etc/passwd",
        "not a url",
    ] {
        let reply = world.post("/v1/webhooks", token, &webhook(url)).await;
        let detail = invalid(&reply);
        assert!(detail.starts_with("url: "), "{url}: {detail}");
        let host = url.split("//").nth(1).unwrap_or(url);
        assert!(
            !reply.text().contains(host),
            "{url} echoed: {}",
            reply.text()
        );
        assert!(!reply.text().contains("hunter2"), "{}", reply.text());
    }
    let detail = invalid(
        &world
            .post(
                "/v1/webhooks",
                token,
                &json!({ "url": "https://hooks.example.com/", "event_types": ["Patient Created"] }),
            )
            .await,
    );
    assert!(detail.starts_with("event_types: "), "{detail}");
    before.assert_unchanged(&world.fingerprint().await, "refused webhooks");
    let listed = world.get("/v1/webhooks", token).await.ok(StatusCode::OK);
    assert_eq!(listed, json!([]));
}

#[tokio::test]
async fn tenant_b_gets_404_for_tenant_a_webhooks_and_they_stay_as_they_were() {
    let world = World::new().await;
    let (a, b) = (&world.a, &world.b);
    let created = create_webhook(&world, &a.admin.token, "https://hooks.example.com/a").await;
    let id = created["id"].as_str().unwrap().to_owned();
    let a_view = world
        .get(&format!("/v1/webhooks/{id}"), &a.admin.token)
        .await
        .ok(StatusCode::OK);
    world.get("/v1/me", &b.admin.token).await.ok(StatusCode::OK);
    let before = world.fingerprint().await;

    for id in [
        id.clone(),
        Uuid::now_v7().to_string(),
        "not-a-uuid".to_owned(),
    ] {
        world
            .get(&format!("/v1/webhooks/{id}"), &b.admin.token)
            .await
            .problem(StatusCode::NOT_FOUND);
        for action in ["disable", "enable"] {
            world
                .post(
                    &format!("/v1/webhooks/{id}/{action}"),
                    &b.admin.token,
                    &json!({}),
                )
                .await
                .problem(StatusCode::NOT_FOUND);
        }
    }
    let listed = world
        .get("/v1/webhooks", &b.admin.token)
        .await
        .ok(StatusCode::OK);
    assert_eq!(listed, json!([]));

    before.assert_unchanged(&world.fingerprint().await, "tenant B's probes");
    let after = world
        .get(&format!("/v1/webhooks/{id}"), &a.admin.token)
        .await
        .ok(StatusCode::OK);
    assert_eq!(after, a_view);
}

#[tokio::test]
async fn only_admins_manage_webhooks() {
    let world = World::new().await;
    let created = create_webhook(&world, &world.a.admin.token, "https://hooks.example.com/a").await;
    let id = created["id"].as_str().unwrap();
    for principal in non_admins(&world) {
        let token = &principal.token;
        world
            .post(
                "/v1/webhooks",
                token,
                &webhook("https://hooks.example.com/b"),
            )
            .await
            .problem(StatusCode::FORBIDDEN);
        world
            .get("/v1/webhooks", token)
            .await
            .problem(StatusCode::FORBIDDEN);
        world
            .get(&format!("/v1/webhooks/{id}"), token)
            .await
            .problem(StatusCode::FORBIDDEN);
        world
            .post(&format!("/v1/webhooks/{id}/disable"), token, &json!({}))
            .await
            .problem(StatusCode::FORBIDDEN);
    }
    assert_eq!(world.count("platform.webhook_subscriptions").await, 1);
    let shown = world
        .get(&format!("/v1/webhooks/{id}"), &world.a.admin.token)
        .await
        .ok(StatusCode::OK);
    assert_eq!(shown["state"], "active");
}

#[tokio::test]
async fn a_replayed_webhook_creation_answers_the_same_subscription_and_makes_one() {
    let world = World::new().await;
    let token = &world.a.admin.token;
    let body = webhook("https://hooks.example.com/a");
    let first = world
        .send(keyed("/v1/webhooks", token, "subscribe-1", &body))
        .await;
    let created = first.ok(StatusCode::CREATED);
    assert!(created["secret"].is_string(), "{created}");

    let again = world
        .send(keyed("/v1/webhooks", token, "subscribe-1", &body))
        .await;
    let replayed = again.ok(StatusCode::CREATED);
    assert_eq!(replayed["id"], created["id"]);
    assert_eq!(replayed["url"], created["url"]);
    assert!(replayed.get("secret").is_none(), "{replayed}");
    assert_eq!(
        again.header(header::LOCATION),
        first.header(header::LOCATION)
    );
    assert_eq!(world.count("platform.webhook_subscriptions").await, 1);

    // The same key for another body is refused.
    world
        .send(keyed(
            "/v1/webhooks",
            token,
            "subscribe-1",
            &webhook("https://hooks.example.com/b"),
        ))
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(world.count("platform.webhook_subscriptions").await, 1);
}

// ---- schedules ---------------------------------------------------------------------

/// 02:30 every day in Kolkata (UTC+05:30, no daylight saving): 21:00 UTC.
fn schedule(name: &str) -> Value {
    json!({
        "name": name,
        "cron": "30 2 * * *",
        "time_zone": "Asia/Kolkata",
        "job_kind": "platform.noop",
        "args_version": 1,
        "args": { "report": "nightly" },
    })
}

async fn create_schedule(world: &World, token: &str, name: &str) -> Value {
    world
        .post("/v1/schedules", token, &schedule(name))
        .await
        .ok(StatusCode::CREATED)
}

#[tokio::test]
async fn an_admin_creates_a_schedule_and_sees_its_next_slot() {
    let world = World::new().await;
    let token = &world.a.admin.token;
    let started = OffsetDateTime::now_utc();
    let reply = world
        .post("/v1/schedules", token, &schedule("nightly"))
        .await;
    let created = reply.ok(StatusCode::CREATED);
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(
        reply.header(header::LOCATION),
        Some(format!("/v1/schedules/{id}").as_str())
    );
    assert_eq!(created["name"], "nightly");
    assert_eq!(created["job_kind"], "platform.noop");
    assert_eq!(created["args"], json!({ "report": "nightly" }));
    assert_eq!(created["queue"], "default");
    assert_eq!(created["catch_up"], "skip");
    assert_eq!(created["attempts_max"], 10);
    assert_eq!(created["enabled"], true);
    assert_eq!(created["last_slot_at"], Value::Null);
    let next = rfc3339(&created["next_slot_at"]);
    assert!(next > started, "{next} is after {started}");
    assert!(next - started <= time::Duration::hours(24), "{next}");
    assert_eq!((next.hour(), next.minute()), (21, 0), "{next}");

    let shown = world
        .get(&format!("/v1/schedules/{id}"), token)
        .await
        .ok(StatusCode::OK);
    assert_eq!(shown, created);
    let listed = world.get("/v1/schedules", token).await.ok(StatusCode::OK);
    assert_eq!(listed, json!([created]));

    // Every option, spelled out.
    let created = world
        .post(
            "/v1/schedules",
            token,
            &json!({
                "name": "weekly-paused",
                "cron": "@weekly",
                "time_zone": "UTC",
                "job_kind": "platform.probe",
                "args_version": 1,
                "args": { "work_ms": 5 },
                "queue": "reports",
                "priority": 3,
                "attempts_max": 4,
                "catch_up": "all",
                "enabled": false,
            }),
        )
        .await
        .ok(StatusCode::CREATED);
    assert_eq!(
        (
            &created["queue"],
            &created["priority"],
            &created["attempts_max"],
            &created["catch_up"],
            &created["enabled"],
            &created["next_slot_at"],
        ),
        (
            &json!("reports"),
            &json!(3),
            &json!(4),
            &json!("all"),
            &json!(false),
            &Value::Null
        )
    );
}

#[tokio::test]
async fn a_schedule_that_could_not_run_is_refused_with_the_reason_and_nothing_is_written() {
    let world = World::new().await;
    let token = &world.a.admin.token;
    create_schedule(&world, token, "nightly").await;
    let before = world.fingerprint().await;
    let with = |field: &str, value: Value| {
        let mut body = schedule("other");
        body[field] = value;
        body
    };

    let detail = invalid(
        &world
            .post("/v1/schedules", token, &with("cron", json!("61 * * * *")))
            .await,
    );
    assert!(detail.starts_with("cron: cron minute field"), "{detail}");
    let detail = invalid(
        &world
            .post("/v1/schedules", token, &with("cron", json!("* * *")))
            .await,
    );
    assert!(
        detail.starts_with("cron: a cron expression has 5 fields"),
        "{detail}"
    );
    let detail = invalid(
        &world
            .post(
                "/v1/schedules",
                token,
                &with("time_zone", json!("Mars/Olympus_Mons")),
            )
            .await,
    );
    assert!(
        detail.starts_with("time_zone: unknown time zone"),
        "{detail}"
    );
    let detail = invalid(
        &world
            .post(
                "/v1/schedules",
                token,
                &with("job_kind", json!("platform.nope")),
            )
            .await,
    );
    assert!(detail.starts_with("job_kind: "), "{detail}");
    // A kind only its own machinery enqueues (a saga's step) is not schedulable.
    let detail = invalid(
        &world
            .post(
                "/v1/schedules",
                token,
                &with("job_kind", json!("platform.saga_step")),
            )
            .await,
    );
    assert_eq!(
        detail,
        "job_kind: platform.saga_step is run by its own machinery and cannot be scheduled"
    );
    let mut bad_args = with("job_kind", json!("platform.probe"));
    bad_args["args"] = json!({ "work_ms": "Secretvalue" });
    let reply = world.post("/v1/schedules", token, &bad_args).await;
    let detail = invalid(&reply);
    assert!(detail.starts_with("args: "), "{detail}");
    assert!(!reply.text().contains("Secretvalue"), "{}", reply.text());
    let detail = invalid(
        &world
            .post(
                "/v1/schedules",
                token,
                &with("catch_up", json!("sometimes")),
            )
            .await,
    );
    assert!(detail.starts_with("catch_up"), "{detail}");
    // Queue names are codes (they become metric labels and name fleet-wide limits).
    let detail = invalid(
        &world
            .post(
                "/v1/schedules",
                token,
                &with("queue", json!("Dr. Lee's queue")),
            )
            .await,
    );
    assert!(detail.starts_with("queue: "), "{detail}");
    assert!(!detail.contains("Lee"), "{detail}");
    let detail = invalid(
        &world
            .post("/v1/schedules", token, &with("attempts_max", json!(0)))
            .await,
    );
    assert!(detail.starts_with("attempts_max: "), "{detail}");

    // A taken name is a conflict.
    let reply = world
        .post("/v1/schedules", token, &schedule("nightly"))
        .await;
    assert_eq!(reply.problem(StatusCode::CONFLICT), "/problems/conflict");

    before.assert_unchanged(&world.fingerprint().await, "refused schedules");
}

#[tokio::test]
async fn an_admin_changes_disables_enables_and_deletes_a_schedule() {
    let world = World::new().await;
    let token = &world.a.admin.token;
    let created = create_schedule(&world, token, "nightly").await;
    let id = created["id"].as_str().unwrap().to_owned();
    let uri = format!("/v1/schedules/{id}");

    // 04:15 in Kolkata is 22:45 UTC.
    let changed = world
        .call(
            Method::PATCH,
            &uri,
            token,
            Some(&json!({ "cron": "15 4 * * *", "catch_up": "none", "priority": 7 })),
        )
        .await
        .ok(StatusCode::OK);
    assert_eq!(changed["cron"], "15 4 * * *");
    assert_eq!(changed["catch_up"], "none");
    assert_eq!(changed["priority"], 7);
    assert_eq!(changed["time_zone"], "Asia/Kolkata");
    let next = rfc3339(&changed["next_slot_at"]);
    assert_eq!((next.hour(), next.minute()), (22, 45), "{next}");
    let shown = world.get(&uri, token).await.ok(StatusCode::OK);
    assert_eq!(shown["cron"], "15 4 * * *");

    let detail = invalid(
        &world
            .call(
                Method::PATCH,
                &uri,
                token,
                Some(&json!({ "cron": "nonsense" })),
            )
            .await,
    );
    assert!(detail.starts_with("cron: "), "{detail}");
    let detail = invalid(
        &world
            .call(
                Method::PATCH,
                &uri,
                token,
                Some(&json!({ "name": "renamed" })),
            )
            .await,
    );
    assert!(detail.contains("unknown field `name`"), "{detail}");

    let disabled = world
        .post(&format!("{uri}/disable"), token, &json!({}))
        .await
        .ok(StatusCode::OK);
    assert_eq!(disabled["enabled"], false);
    assert_eq!(disabled["next_slot_at"], Value::Null);
    let enabled = world
        .post(&format!("{uri}/enable"), token, &json!({}))
        .await
        .ok(StatusCode::OK);
    assert_eq!(enabled["enabled"], true);
    assert_eq!(rfc3339(&enabled["next_slot_at"]), next);

    world
        .delete(&uri, token)
        .await
        .ok_empty(StatusCode::NO_CONTENT);
    world.get(&uri, token).await.problem(StatusCode::NOT_FOUND);
    world
        .delete(&uri, token)
        .await
        .problem(StatusCode::NOT_FOUND);
    let listed = world.get("/v1/schedules", token).await.ok(StatusCode::OK);
    assert_eq!(listed, json!([]));
}

#[tokio::test]
async fn tenant_b_gets_404_for_tenant_a_schedules_and_they_stay_as_they_were() {
    let world = World::new().await;
    let (a, b) = (&world.a, &world.b);
    let created = create_schedule(&world, &a.admin.token, "nightly").await;
    let id = created["id"].as_str().unwrap().to_owned();
    world.get("/v1/me", &b.admin.token).await.ok(StatusCode::OK);
    let before = world.fingerprint().await;

    for id in [
        id.clone(),
        Uuid::now_v7().to_string(),
        "not-a-uuid".to_owned(),
    ] {
        let uri = format!("/v1/schedules/{id}");
        world
            .get(&uri, &b.admin.token)
            .await
            .problem(StatusCode::NOT_FOUND);
        world
            .call(
                Method::PATCH,
                &uri,
                &b.admin.token,
                Some(&json!({ "cron": "* * * * *" })),
            )
            .await
            .problem(StatusCode::NOT_FOUND);
        for action in ["disable", "enable"] {
            world
                .post(&format!("{uri}/{action}"), &b.admin.token, &json!({}))
                .await
                .problem(StatusCode::NOT_FOUND);
        }
        world
            .delete(&uri, &b.admin.token)
            .await
            .problem(StatusCode::NOT_FOUND);
    }
    let listed = world
        .get("/v1/schedules", &b.admin.token)
        .await
        .ok(StatusCode::OK);
    assert_eq!(listed, json!([]));
    before.assert_unchanged(&world.fingerprint().await, "tenant B's probes");
    // B may use the same name: names are unique per tenant.
    create_schedule(&world, &b.admin.token, "nightly").await;

    let after = world
        .get(&format!("/v1/schedules/{id}"), &a.admin.token)
        .await
        .ok(StatusCode::OK);
    assert_eq!(after, created);
    let n_a: i64 =
        sqlx::query_scalar("SELECT count(*) FROM platform.schedules WHERE tenant_id = $1")
            .bind(a.id.as_uuid())
            .fetch_one(&world.db.admin)
            .await
            .unwrap();
    assert_eq!(n_a, 1);
}

#[tokio::test]
async fn only_admins_manage_schedules() {
    let world = World::new().await;
    let created = create_schedule(&world, &world.a.admin.token, "nightly").await;
    let uri = format!("/v1/schedules/{}", created["id"].as_str().unwrap());
    for principal in non_admins(&world) {
        let token = &principal.token;
        world
            .post("/v1/schedules", token, &schedule("theirs"))
            .await
            .problem(StatusCode::FORBIDDEN);
        world
            .get("/v1/schedules", token)
            .await
            .problem(StatusCode::FORBIDDEN);
        world.get(&uri, token).await.problem(StatusCode::FORBIDDEN);
        world
            .call(Method::PATCH, &uri, token, Some(&json!({ "priority": 9 })))
            .await
            .problem(StatusCode::FORBIDDEN);
        world
            .post(&format!("{uri}/disable"), token, &json!({}))
            .await
            .problem(StatusCode::FORBIDDEN);
        world
            .delete(&uri, token)
            .await
            .problem(StatusCode::FORBIDDEN);
    }
    let shown = world
        .get(&uri, &world.a.admin.token)
        .await
        .ok(StatusCode::OK);
    assert_eq!(shown, created);
}

#[tokio::test]
async fn a_replayed_schedule_creation_answers_the_same_schedule_and_makes_one() {
    let world = World::new().await;
    let token = &world.a.admin.token;
    let body = schedule("nightly");
    let created = world
        .send(keyed("/v1/schedules", token, "nightly-1", &body))
        .await
        .ok(StatusCode::CREATED);
    let replayed = world
        .send(keyed("/v1/schedules", token, "nightly-1", &body))
        .await
        .ok(StatusCode::CREATED);
    assert_eq!(replayed, created);
    assert_eq!(world.count("platform.schedules").await, 1);
}

// ---- sagas -------------------------------------------------------------------------

/// Two steps that do nothing but note, in the saga's data, that they ran.
struct Onboarding;

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct OnboardingData {
    patient_id: Uuid,
    steps_done: u32,
}

impl Saga for Onboarding {
    const NAME: &'static str = "test.onboarding";
    const STEPS: &'static [&'static str] = &["enroll", "welcome"];
    type Data = OnboardingData;

    async fn execute(
        &self,
        _ctx: &SagaContext,
        _tx: &mut TenantTx,
        data: &mut OnboardingData,
    ) -> Result<(), StepError> {
        data.steps_done += 1;
        Ok(())
    }

    async fn compensate(
        &self,
        _ctx: &SagaContext,
        _tx: &mut TenantTx,
        data: &mut OnboardingData,
    ) -> Result<(), StepError> {
        data.steps_done -= 1;
        Ok(())
    }
}

#[tokio::test]
async fn a_saga_is_read_with_its_step_log_by_its_own_tenant_only() {
    let world = World::new().await;
    let (a, b) = (&world.a, &world.b);
    let patient_id = Uuid::now_v7();
    let mut tx = TenantTx::begin_as(&world.db.app, a.id, "system", None)
        .await
        .unwrap();
    let saga_id = sagas::start::<Onboarding>(
        &mut tx,
        OnboardingData {
            patient_id,
            steps_done: 0,
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let uri = format!("/v1/sagas/{saga_id}");

    let running = world.get(&uri, &a.admin.token).await.ok(StatusCode::OK);
    assert_eq!(running["id"], saga_id.to_string());
    assert_eq!(running["kind"], "test.onboarding");
    assert_eq!(running["state"], "running");
    assert_eq!(
        (&running["step"], &running["n_steps"]),
        (&json!(0), &json!(2))
    );
    assert_eq!(
        running["data"],
        json!({ "patient_id": patient_id, "steps_done": 0 })
    );
    assert!(running["job_id"].is_string(), "{running}");
    assert_eq!(running["finished_at"], Value::Null);
    assert_eq!(running["step_log"], json!([]));

    // Drive it to the end, as `tenet serve`'s worker would.
    let worker = Worker::new(
        world.db.owner.clone(),
        world.db.app.clone(),
        Registry::new().register(SagaStep::new(SagaRegistry::new().register(Onboarding))),
        WorkerConfig::new("api-test"),
    );
    for _ in Onboarding::STEPS {
        let outcome = worker.try_run_one().await.unwrap();
        assert!(
            matches!(outcome, Some(Outcome::Succeeded(_))),
            "{outcome:?}"
        );
    }

    let completed = world.get(&uri, &a.admin.token).await.ok(StatusCode::OK);
    assert_eq!(completed["state"], "completed");
    assert_eq!(completed["data"]["steps_done"], 2);
    rfc3339(&completed["finished_at"]);
    let log = completed["step_log"].as_array().unwrap();
    let lines: Vec<(i64, &str, &str, &str)> = log
        .iter()
        .map(|line| {
            (
                line["n"].as_i64().unwrap(),
                line["step_name"].as_str().unwrap(),
                line["action"].as_str().unwrap(),
                line["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            (1, "enroll", "execute", "done"),
            (2, "welcome", "execute", "done")
        ]
    );

    // Another tenant's saga is an unknown one; other roles may not look.
    for uri in [
        uri.clone(),
        format!("/v1/sagas/{}", Uuid::now_v7()),
        "/v1/sagas/not-a-uuid".to_owned(),
    ] {
        world
            .get(&uri, &b.admin.token)
            .await
            .problem(StatusCode::NOT_FOUND);
    }
    world
        .get(&format!("/v1/sagas/{}", Uuid::now_v7()), &a.admin.token)
        .await
        .problem(StatusCode::NOT_FOUND);
    for principal in non_admins(&world) {
        world
            .get(&uri, &principal.token)
            .await
            .problem(StatusCode::FORBIDDEN);
    }
}

#[tokio::test]
async fn the_openapi_document_lists_these_endpoints_and_says_the_secret_is_shown_once() {
    let world = World::new().await;
    let document = world
        .send(
            request(Method::GET, "/openapi.json", None)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .ok(StatusCode::OK);
    let paths = &document["paths"];
    for (path, method) in [
        ("/v1/webhooks", "post"),
        ("/v1/webhooks", "get"),
        ("/v1/webhooks/{id}", "get"),
        ("/v1/webhooks/{id}/disable", "post"),
        ("/v1/webhooks/{id}/enable", "post"),
        ("/v1/schedules", "post"),
        ("/v1/schedules", "get"),
        ("/v1/schedules/{id}", "get"),
        ("/v1/schedules/{id}", "patch"),
        ("/v1/schedules/{id}", "delete"),
        ("/v1/schedules/{id}/enable", "post"),
        ("/v1/schedules/{id}/disable", "post"),
        ("/v1/sagas/{id}", "get"),
    ] {
        assert!(
            paths[path][method].is_object(),
            "{method} {path} is not documented"
        );
    }
    let created = paths["/v1/webhooks"]["post"]["responses"]["201"].to_string();
    assert!(created.contains("shown only here"), "{created}");
    let schemas = &document["components"]["schemas"];
    assert!(
        schemas["NewWebhookView"].to_string().contains("secret"),
        "{}",
        schemas["NewWebhookView"]
    );
    assert!(
        schemas["WebhookView"]["properties"].get("secret").is_none(),
        "{}",
        schemas["WebhookView"]
    );
}
