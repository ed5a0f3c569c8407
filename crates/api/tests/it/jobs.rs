//! A tenant's jobs and dead letters over HTTP: its admins list, inspect, retry and
//! discard them; other roles get 403; another tenant's job is a 404 and stays as it was.

use axum::http::StatusCode;
use db::TenantTx;
use kernel::TenantId;
use platform::jobs::{self, JobSpec, Probe, ProbeArgs};
use serde_json::json;
use uuid::Uuid;

use crate::support::World;

/// Enqueues a probe job for `tenant_id` and kills it, as a vendor outage past every
/// retry would: a dead letter.
async fn dead_letter(world: &World, tenant_id: TenantId) -> Uuid {
    let mut tx = TenantTx::begin_as(&world.db.app, tenant_id, "system", None)
        .await
        .unwrap();
    let job_id = *jobs::enqueue(&mut tx, JobSpec::<Probe>::new(ProbeArgs::default()))
        .await
        .unwrap()
        .job_id()
        .as_uuid();
    tx.commit().await.unwrap();
    sqlx::query(
        "UPDATE platform.jobs SET state = 'dead', attempts = attempts_max, finished_at = now(),
             last_error = 'vendor answered 503 on every attempt'
         WHERE id = $1",
    )
    .bind(job_id)
    .execute(&world.db.admin)
    .await
    .unwrap();
    job_id
}

async fn state_of(world: &World, job_id: Uuid) -> (String, bool) {
    sqlx::query_as("SELECT state::text, discarded_at IS NOT NULL FROM platform.jobs WHERE id = $1")
        .bind(job_id)
        .fetch_one(&world.db.admin)
        .await
        .unwrap()
}

/// A dead NATS delivery of an event of `tenant_id`, as an outage past every retry
/// leaves it.
async fn dead_delivery(world: &World, tenant_id: TenantId) -> Uuid {
    let (event_id, delivery_id) = (Uuid::now_v7(), Uuid::now_v7());
    sqlx::query(
        "INSERT INTO platform.relay_events
             (tenant_id, id, context, event_type, event_version, aggregate_type, aggregate_id,
              occurred_at, payload)
         VALUES ($1, $2, 'clinical', 'patient.created', 1, 'patient', $3, now(), '{}')",
    )
    .bind(tenant_id.as_uuid())
    .bind(event_id)
    .bind(Uuid::now_v7())
    .execute(&world.db.admin)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO platform.relay_deliveries
             (tenant_id, id, event_id, sink, consumer, aggregate_type, aggregate_id, occurred_at,
              state, attempts, attempts_max, last_error, finished_at)
         SELECT tenant_id, $2, id, 'nats', 'nats', aggregate_type, aggregate_id, occurred_at,
                'dead', 20, 20, 'no PubAck within 5 s', now()
         FROM platform.relay_events WHERE tenant_id = $1 AND id = $3",
    )
    .bind(tenant_id.as_uuid())
    .bind(delivery_id)
    .bind(event_id)
    .execute(&world.db.admin)
    .await
    .unwrap();
    delivery_id
}

async fn delivery_state(world: &World, delivery_id: Uuid) -> String {
    sqlx::query_scalar("SELECT state::text FROM platform.relay_deliveries WHERE id = $1")
        .bind(delivery_id)
        .fetch_one(&world.db.admin)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_tenant_admin_lists_discards_and_retries_its_own_dead_letters_only() {
    let world = World::new().await;
    let (a, b) = (&world.a, &world.b);
    let a_dead = dead_letter(&world, a.id).await;
    let b_dead = dead_letter(&world, b.id).await;
    let a_delivery = dead_delivery(&world, a.id).await;
    let b_delivery = dead_delivery(&world, b.id).await;
    let post = async |uri: String, token: &str| world.post(&uri, token, &json!({})).await;

    // A's dead job and dead delivery, in one list; never B's.
    let listed = world
        .get("/v1/dead-letters", &a.admin.token)
        .await
        .ok(StatusCode::OK);
    let letters = listed.as_array().unwrap();
    assert_eq!(letters.len(), 2, "{listed}");
    let letter = |id: Uuid| {
        letters
            .iter()
            .find(|letter| letter["id"] == json!(id))
            .unwrap_or_else(|| panic!("{id} is listed: {listed}"))
    };
    assert_eq!(letter(a_dead)["source"], "job");
    assert_eq!(letter(a_dead)["what"], "platform.probe");
    assert_eq!(
        letter(a_dead)["last_error"],
        "vendor answered 503 on every attempt"
    );
    assert_eq!(letter(a_delivery)["source"], "delivery");
    assert_eq!(letter(a_delivery)["what"], "nats ← patient.created");
    assert_eq!(letter(a_delivery)["last_error"], "no PubAck within 5 s");
    let jobs = world
        .get("/v1/jobs?state=dead", &a.admin.token)
        .await
        .ok(StatusCode::OK);
    assert_eq!(jobs.as_array().unwrap().len(), 1, "{jobs}");

    // B's job and delivery are as unknown to A as ids that do not exist, and stay put.
    for uri in [
        format!("/v1/jobs/{b_dead}"),
        format!("/v1/jobs/{}", Uuid::now_v7()),
    ] {
        world
            .get(&uri, &a.admin.token)
            .await
            .problem(StatusCode::NOT_FOUND);
    }
    for action in [
        "jobs/{id}/retry",
        "jobs/{id}/cancel",
        "dead-letters/{id}/retry",
        "dead-letters/{id}/discard",
    ] {
        for id in [b_dead, b_delivery] {
            let uri = format!("/v1/{}", action.replace("{id}", &id.to_string()));
            post(uri, &a.admin.token)
                .await
                .problem(StatusCode::NOT_FOUND);
        }
    }
    assert_eq!(state_of(&world, b_dead).await, ("dead".to_owned(), false));
    assert_eq!(delivery_state(&world, b_delivery).await, "dead");

    // Only admins.
    for principal in [
        &a.clinician,
        &a.care_coordinator,
        &a.auditor,
        &a.integration,
    ] {
        world
            .get("/v1/dead-letters", &principal.token)
            .await
            .problem(StatusCode::FORBIDDEN);
        post(
            format!("/v1/dead-letters/{a_dead}/discard"),
            &principal.token,
        )
        .await
        .problem(StatusCode::FORBIDDEN);
    }

    // Discarded: off the list, still recorded; a second discard is a conflict.
    let discarded = post(format!("/v1/dead-letters/{a_dead}/discard"), &a.admin.token)
        .await
        .ok(StatusCode::OK);
    assert_eq!(
        discarded,
        json!({ "id": a_dead, "source": "job", "state": "dead" })
    );
    assert_eq!(state_of(&world, a_dead).await, ("dead".to_owned(), true));
    let discarded = post(
        format!("/v1/dead-letters/{a_delivery}/discard"),
        &a.admin.token,
    )
    .await
    .ok(StatusCode::OK);
    assert_eq!(
        discarded,
        json!({ "id": a_delivery, "source": "delivery", "state": "discarded" })
    );
    let listed = world
        .get("/v1/dead-letters", &a.admin.token)
        .await
        .ok(StatusCode::OK);
    assert_eq!(listed, json!([]));
    post(format!("/v1/dead-letters/{a_dead}/discard"), &a.admin.token)
        .await
        .problem(StatusCode::CONFLICT);
    post(
        format!("/v1/dead-letters/{a_delivery}/retry"),
        &a.admin.token,
    )
    .await
    .problem(StatusCode::CONFLICT);

    // A discarded job can still be retried; then it is no dead letter, but a job.
    let retried = post(format!("/v1/jobs/{a_dead}/retry"), &a.admin.token)
        .await
        .ok(StatusCode::OK);
    assert_eq!(
        (retried["state"].clone(), retried["attempts"].clone()),
        (json!("scheduled"), json!(0))
    );
    assert_eq!(
        state_of(&world, a_dead).await,
        ("scheduled".to_owned(), false)
    );
    post(format!("/v1/dead-letters/{a_dead}/retry"), &a.admin.token)
        .await
        .problem(StatusCode::CONFLICT);
    let cancelled = post(format!("/v1/jobs/{a_dead}/cancel"), &a.admin.token)
        .await
        .ok(StatusCode::OK);
    assert_eq!(cancelled["state"], "cancelled");

    // A dead delivery retried goes back to pending with fresh attempts.
    let c_delivery = dead_delivery(&world, a.id).await;
    let retried = post(
        format!("/v1/dead-letters/{c_delivery}/retry"),
        &a.admin.token,
    )
    .await
    .ok(StatusCode::OK);
    assert_eq!(
        retried,
        json!({ "id": c_delivery, "source": "delivery", "state": "pending" })
    );
    assert_eq!(delivery_state(&world, c_delivery).await, "pending");
}

#[tokio::test]
async fn bad_job_queries_are_problems() {
    let world = World::new().await;
    let token = &world.a.admin.token;
    world
        .get("/v1/jobs?state=exploded", token)
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    world
        .get("/v1/jobs?limit=0", token)
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    world
        .get("/v1/dead-letters?limit=1001", token)
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    world
        .get("/v1/jobs?colour=red", token)
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    world
        .get("/v1/jobs/not-a-uuid", token)
        .await
        .problem(StatusCode::NOT_FOUND);
}
