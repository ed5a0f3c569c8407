//! MLLP listeners from a file, and node roles, through the real binary: a node with
//! only the `mllp` role runs every listener of its file (each for its own tenant,
//! with its own allow-list), serves no API, and shows per-listener metrics on its
//! operations port; mistakes in the configuration stop the start with a clear error.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::jobs::{free_port, sample};
use crate::{Tenet, single_line};

fn fixture(name: &str) -> String {
    format!("{}/tests/it/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn write(tenet: &Tenet, name: &str, text: &str) -> PathBuf {
    let path = tenet.home.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

async fn wait_for_port(addr: &str) {
    let started = Instant::now();
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "nothing ever listened on {addr}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_mllp_node_runs_every_listener_of_its_file_and_reports_each_on_metrics() {
    let tenet = Tenet::new().await;
    let lab_tenant =
        single_line(tenet.run(&["tenant", "create", "Lab Clinic"]).await.ok()).to_owned();
    let adt_tenant =
        single_line(tenet.run(&["tenant", "create", "Ward Clinic"]).await.ok()).to_owned();
    let lab = format!("127.0.0.1:{}", free_port());
    let adt = format!("127.0.0.1:{}", free_port());
    let http = format!("127.0.0.1:{}", free_port());
    let ops = format!("127.0.0.1:{}", free_port());
    let config = write(
        &tenet,
        "mllp.toml",
        &format!(
            r#"
            # The lab's results, from its LIS only.
            [[listener]]
            name = "lab"
            addr = "{lab}"
            tenant = "{lab_tenant}"
            senders = ["LABSYS^MERCY_LAB"]
            connections_max = 4
            idle_timeout_secs = 60

            # Admissions, from anyone.
            [[listener]]
            name = "adt"
            addr = "{adt}"
            tenant = "{adt_tenant}"
            "#
        ),
    );
    let log = std::fs::File::create(tenet.home.path().join("serve-mllp-node.log")).unwrap();
    let mut server = tenet
        .command(&[
            "serve",
            "--role",
            "mllp",
            "--http",
            &http,
            "--ops-http",
            &ops,
            "--mllp-config",
            config.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    for addr in [&lab, &adt, &ops] {
        wait_for_port(addr).await;
    }
    assert!(
        tokio::net::TcpStream::connect(&http).await.is_err(),
        "a node without the api role serves no API"
    );

    // The fixtures ask for enhanced mode: CA when stored, CR when refused.
    let oru = fixture("oru_r01.hl7");
    let adt_message = fixture("adt_a01.hl7");
    let sent = tenet.run(&["hl7", "send", "--to", &lab, &oru]).await;
    assert!(sent.ok().trim_end().ends_with(" CA"), "{sent}");
    let refused = tenet
        .run(&["hl7", "send", "--to", &lab, &adt_message])
        .await;
    assert!(
        refused.failed().lines().any(|line| line.contains(" CR")),
        "the lab listener refuses a sender not on its list: {refused}"
    );
    let sent = tenet
        .run(&["hl7", "send", "--to", &adt, &adt_message, &oru])
        .await;
    assert_eq!(
        sent.ok()
            .lines()
            .filter(|line| line.ends_with(" CA"))
            .count(),
        2,
        "{sent}"
    );

    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT tenant_id::text, listener, ack_code FROM ingest.messages ORDER BY listener, control_id",
    )
    .fetch_all(&tenet.db.admin)
    .await
    .unwrap();
    assert_eq!(
        rows,
        [
            (adt_tenant.clone(), "adt".to_owned(), "CA".to_owned()),
            (adt_tenant.clone(), "adt".to_owned(), "CA".to_owned()),
            (lab_tenant.clone(), "lab".to_owned(), "CA".to_owned()),
        ],
        "each listener stores for its own tenant; the refused message is not stored"
    );

    let metrics = reqwest::get(format!("http://{ops}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    server.start_kill().unwrap();
    server.wait().await.unwrap();
    for (series, expected) in [
        (r#"tenet_mllp_messages_total{ack="CA",listener="lab"}"#, 1.0),
        (r#"tenet_mllp_messages_total{ack="CR",listener="lab"}"#, 1.0),
        (r#"tenet_mllp_messages_total{ack="CA",listener="adt"}"#, 2.0),
        (r#"tenet_mllp_messages_total{ack="AE",listener="adt"}"#, 0.0),
        (
            r#"tenet_mllp_ack_latency_seconds_count{listener="lab"}"#,
            2.0,
        ),
        (
            r#"tenet_mllp_ack_latency_seconds_count{listener="adt"}"#,
            2.0,
        ),
        // The readiness probe's connection, then one per `hl7 send`.
        (
            r#"tenet_mllp_connections_accepted_total{listener="lab"}"#,
            3.0,
        ),
        (
            r#"tenet_mllp_connections_closed_total{listener="lab",reason="peer"}"#,
            3.0,
        ),
        (r#"tenet_mllp_connections_max{listener="lab"}"#, 4.0),
        (r#"tenet_mllp_connections_max{listener="adt"}"#, 256.0),
        (
            r#"tenet_mllp_frames_refused_total{listener="adt",reason="oversized"}"#,
            0.0,
        ),
        ("tenet_mllp_committer_backlog", 0.0),
    ] {
        assert_eq!(
            sample(&metrics, series),
            Some(expected),
            "{series} in\n{metrics}"
        );
    }
    assert!(
        sample(
            &metrics,
            r#"tenet_mllp_ack_latency_seconds_bucket{listener="adt",le="+Inf"}"#
        ) == Some(2.0),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_node_with_the_mllp_role_and_no_listener_refuses_to_start() {
    let tenet = Tenet::new().await;
    let run = tenet.run(&["serve", "--role", "mllp"]).await;
    run.failed();
    assert!(
        run.stderr
            .contains("this node has the mllp role but no MLLP listener is configured"),
        "{run}"
    );
}

#[tokio::test]
async fn a_listeners_file_naming_an_unknown_tenant_or_one_port_twice_stops_the_start() {
    let tenet = Tenet::new().await;
    let tenant = single_line(tenet.run(&["tenant", "create", "Lab Clinic"]).await.ok()).to_owned();
    let unknown = uuid::Uuid::now_v7();
    let port = free_port();
    let listener = |name: &str, tenant: &str, port: u16| {
        format!(
            "[[listener]]\nname = \"{name}\"\naddr = \"127.0.0.1:{port}\"\ntenant = \"{tenant}\"\n"
        )
    };
    let cases = [
        (
            listener("lab", &unknown.to_string(), port),
            format!("MLLP listener \"lab\": no active tenant {unknown}"),
        ),
        (
            listener("lab", &tenant, port) + &listener("adt", &tenant, port),
            format!("both take port {port}"),
        ),
        (
            listener("lab", &tenant, port).replace("tenant =", "tennant ="),
            "unknown field `tennant`".to_owned(),
        ),
    ];
    for (text, expected) in cases {
        let config = write(&tenet, "mllp.toml", &text);
        let run = tenet
            .run(&[
                "serve",
                "--role",
                "mllp",
                "--mllp-config",
                config.to_str().unwrap(),
            ])
            .await;
        run.failed();
        assert!(run.stderr.contains(&expected), "{expected:?} in {run}");
    }
}
