//! Events and schedules through the real binary: a webhook subscribed with `tenet
//! webhooks create` receives a patient's registration, signed, from `tenet serve`'s
//! relay, with no PHI in it; a schedule made with `tenet schedules create` fires its
//! job from `tenet serve`'s scheduler.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::HeaderMap;
use serde_json::{Value, json};

use crate::jobs::serve;
use crate::{Tenet, single_line};

/// What the receiver got: the signature header and the body.
type Received = Arc<Mutex<Vec<(String, Bytes)>>>;

/// A webhook receiver on 127.0.0.1: answers 204 and keeps what it got.
async fn receiver() -> (String, Received) {
    let received: Received = Arc::default();
    let kept = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let kept = kept.clone();
            async move {
                let signature = headers
                    .get(platform::relay::SIGNATURE_HEADER)
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                kept.lock().unwrap().push((signature, body));
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_gets_a_signed_event_without_phi_and_a_schedule_fires_its_job() {
    let tenet = Tenet::new().await;
    let tenant =
        single_line(tenet.run(&["tenant", "create", "Harbor Clinic"]).await.ok()).to_owned();
    let token = single_line(
        tenet
            .run(&[
                "apikey",
                "create",
                "--tenant",
                &tenant,
                "--role",
                "integration",
                "--label",
                "lab",
            ])
            .await
            .ok(),
    )
    .to_owned();
    let (url, received) = receiver().await;
    let created = tenet
        .run(&[
            "webhooks",
            "create",
            "--tenant",
            &tenant,
            "--url",
            &url,
            "--events",
            "patient.registered",
            "--allow-private-host",
        ])
        .await;
    let secret = created
        .ok()
        .lines()
        .find_map(|line| line.strip_prefix("secret "))
        .expect("the secret is printed once")
        .to_owned();
    assert!(created.stderr.contains("shown this once"), "{created}");
    // Without the flag, a loopback receiver is refused, as over the API.
    let refused = tenet
        .run(&["webhooks", "create", "--tenant", &tenant, "--url", &url])
        .await;
    refused.failed();
    assert!(refused.stderr.contains("--url is refused"), "{refused}");
    let listed = tenet.run(&["webhooks", "list", "--tenant", &tenant]).await;
    assert!(
        listed.ok().contains(&url) && !listed.ok().contains(&secret),
        "{listed}"
    );

    let (mut server, metrics_url) = serve(&tenet, "2", 0).await;
    let base = metrics_url.trim_end_matches("/metrics");
    let patient = reqwest::Client::new()
        .post(format!("{base}/v1/patients"))
        .bearer_auth(&token)
        .json(&json!({
            "family_name": "Quillfeather",
            "given_names": ["Marisol"],
            "birth_date": "1979-06-01",
            "sex": "female",
            "identifiers": [{ "authority": "HARBOR", "value": "MRN-77001" }],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(patient.status(), 201);
    let patient: Value = patient.json().await.unwrap();

    let started = Instant::now();
    while received.lock().unwrap().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no webhook arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (signature, body) = received.lock().unwrap()[0].clone();
    platform::relay::verify_signature(
        &secret,
        &signature,
        &body,
        time::OffsetDateTime::now_utc(),
        Duration::from_secs(300),
    )
    .expect("the signature verifies with the subscription's secret");
    let event: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(event["type"], "patient.registered", "{event}");
    assert_eq!(event["aggregate_id"], patient["id"], "{event}");
    assert_eq!(
        event["tenant_id"].as_str(),
        Some(tenant.as_str()),
        "{event}"
    );
    let text = String::from_utf8_lossy(&body);
    for phi in ["Quillfeather", "Marisol", "1979-06-01", "MRN-77001"] {
        assert!(!text.contains(phi), "the event carries PHI ({phi}): {text}");
    }

    // A schedule every minute fires a probe job from the running scheduler.
    let schedule = tenet
        .run(&[
            "schedules",
            "create",
            "--tenant",
            &tenant,
            "--name",
            "every-minute-probe",
            "--cron",
            "* * * * *",
            "--kind",
            "platform.probe",
            "--args",
            r#"{"work_ms":0}"#,
        ])
        .await;
    assert!(schedule.ok().contains("next slot"), "{schedule}");
    // Its first slot is the next whole minute; the test brings it to the start of this
    // one, a slot just reached, rather than wait up to a minute for the clock.
    let moved = sqlx::query(
        "UPDATE platform.schedules SET next_slot_at = date_trunc('minute', now())
         WHERE name = 'every-minute-probe' AND next_slot_at <= now() + interval '60 seconds'",
    )
    .execute(&tenet.db.admin)
    .await
    .unwrap();
    assert_eq!(
        moved.rows_affected(),
        1,
        "the schedule's first slot is not the next minute"
    );
    let refused = tenet
        .run(&[
            "schedules",
            "create",
            "--tenant",
            &tenant,
            "--name",
            "typo",
            "--cron",
            "61 * * * *",
            "--kind",
            "platform.probe",
            "--args",
            r#"{"work_ms":0}"#,
        ])
        .await;
    refused.failed();
    let unknown_kind = tenet
        .run(&[
            "schedules",
            "create",
            "--tenant",
            &tenant,
            "--name",
            "typo",
            "--cron",
            "* * * * *",
            "--kind",
            "platform.nonexistent",
        ])
        .await;
    unknown_kind.failed();
    assert!(
        unknown_kind
            .stderr
            .contains("no job kind is named platform.nonexistent"),
        "{unknown_kind}"
    );
    let started = Instant::now();
    loop {
        let fired: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM platform.schedule_slots s
             JOIN platform.jobs j ON j.tenant_id = s.tenant_id AND j.id = s.job_id
             WHERE j.kind = 'platform.probe' AND j.state = 'succeeded'",
        )
        .fetch_one(&tenet.db.admin)
        .await
        .unwrap();
        if fired >= 1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the schedule never fired"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let listed = tenet.run(&["schedules", "list", "--tenant", &tenant]).await;
    assert!(listed.ok().contains("every-minute-probe"), "{listed}");
    server.start_kill().unwrap();
    server.wait().await.unwrap();

    let check = tenet.run(&["check"]).await;
    assert!(check.ok().contains("work in flight: 0 problems"), "{check}");
}
