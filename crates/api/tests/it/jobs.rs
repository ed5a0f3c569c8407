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

#[tokio::test]
async fn a_tenant_admin_lists_discards_and_retries_its_own_dead_letters_only() {
    let world = World::new().await;
    let (a, b) = (&world.a, &world.b);
    let a_dead = dead_letter(&world, a.id).await;
    let b_dead = dead_letter(&world, b.id).await;

    let listed = world
        .get("/v1/dead-letters", &a.admin.token)
        .await
        .ok(StatusCode::OK);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["id"], json!(a_dead));
    assert_eq!(listed[0]["state"], "dead");
    assert_eq!(
        listed[0]["last_error"],
        "vendor answered 503 on every attempt"
    );
    let jobs = world
        .get("/v1/jobs?state=dead", &a.admin.token)
        .await
        .ok(StatusCode::OK);
    assert_eq!(jobs.as_array().unwrap().len(), 1, "{jobs}");

    // Tenant B's job is as unknown to A as a job that does not exist, and stays put.
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
        let uri = format!("/v1/{}", action.replace("{id}", &b_dead.to_string()));
        world
            .post(&uri, &a.admin.token, &json!({}))
            .await
            .problem(StatusCode::NOT_FOUND);
    }
    assert_eq!(state_of(&world, b_dead).await, ("dead".to_owned(), false));

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
        world
            .post(
                &format!("/v1/dead-letters/{a_dead}/discard"),
                &principal.token,
                &json!({}),
            )
            .await
            .problem(StatusCode::FORBIDDEN);
    }

    let discarded = world
        .post(
            &format!("/v1/dead-letters/{a_dead}/discard"),
            &a.admin.token,
            &json!({}),
        )
        .await
        .ok(StatusCode::OK);
    assert_eq!(discarded["state"], "dead");
    assert!(discarded["discarded_at"].is_string(), "{discarded}");
    let listed = world
        .get("/v1/dead-letters", &a.admin.token)
        .await
        .ok(StatusCode::OK);
    assert_eq!(listed, json!([]));
    world
        .post(
            &format!("/v1/dead-letters/{a_dead}/discard"),
            &a.admin.token,
            &json!({}),
        )
        .await
        .problem(StatusCode::CONFLICT);

    let retried = world
        .post(
            &format!("/v1/dead-letters/{a_dead}/retry"),
            &a.admin.token,
            &json!({}),
        )
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
    // A scheduled job is no dead letter, but it can be cancelled.
    world
        .post(
            &format!("/v1/dead-letters/{a_dead}/retry"),
            &a.admin.token,
            &json!({}),
        )
        .await
        .problem(StatusCode::CONFLICT);
    let cancelled = world
        .post(
            &format!("/v1/jobs/{a_dead}/cancel"),
            &a.admin.token,
            &json!({}),
        )
        .await
        .ok(StatusCode::OK);
    assert_eq!(cancelled["state"], "cancelled");
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
