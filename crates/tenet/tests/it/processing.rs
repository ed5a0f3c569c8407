//! Received HL7 v2 becomes clinical records through the real binary: `critical-ranges`
//! configures what is critical, `serve --mllp` with workers stores and processes what
//! `hl7 send` sends, and nothing the messages say about the patient reaches the logs.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::jobs::free_port;
use crate::{Tenet, single_line};

fn fixture(name: &str) -> String {
    format!("{}/tests/it/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test]
async fn received_results_become_observations_critical_by_flag_or_by_the_configured_range() {
    let tenet = Tenet::new().await;
    let tenant = single_line(tenet.run(&["tenant", "create", "Mercy Lab"]).await.ok()).to_owned();
    // Glucose above 180 mg/dL is critical here, whatever the lab's flags say.
    tenet
        .run(&[
            "critical-ranges",
            "set",
            "--tenant",
            &tenant,
            "--system",
            "LN",
            "--code",
            "2345-7",
            "--high",
            "180",
        ])
        .await
        .ok();
    let inverted = tenet
        .run(&[
            "critical-ranges",
            "set",
            "--tenant",
            &tenant,
            "--system",
            "LN",
            "--code",
            "2823-3",
            "--low",
            "6",
            "--high",
            "3",
        ])
        .await;
    inverted.failed();
    assert!(
        inverted.stderr.contains("low bound must be below"),
        "{inverted}"
    );
    let listed = tenet
        .run(&["critical-ranges", "list", "--tenant", &tenant])
        .await;
    assert!(listed.ok().contains("2345-7"), "{listed}");
    assert!(!listed.ok().contains("2823-3"), "{listed}");

    let mllp = format!("127.0.0.1:{}", free_port());
    let http = format!("127.0.0.1:{}", free_port());
    let log_path = tenet.home.path().join("serve-processing.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut server = tenet
        .command(&[
            "serve",
            "--http",
            &http,
            "--workers",
            "2",
            "--mllp",
            &mllp,
            "--mllp-tenant",
            &tenant,
        ])
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let started = Instant::now();
    while tokio::net::TcpStream::connect(&mllp).await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the MLLP listener never opened"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tenet
        .run(&[
            "hl7",
            "send",
            "--to",
            &mllp,
            &fixture("adt_a01.hl7"),
            &fixture("oru_r01.hl7"),
        ])
        .await
        .ok();
    let started = Instant::now();
    loop {
        let processed: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM ingest.messages WHERE tenant_id = $1::uuid AND processing = 'processed'",
        )
        .bind(&tenant)
        .fetch_one(&tenet.db.admin)
        .await
        .unwrap();
        if processed == 2 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the messages were never processed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let observations: Vec<(String, bool, Option<String>)> = sqlx::query_as(
        "SELECT code, critical, critical_reason FROM clinical.observations
         WHERE tenant_id = $1::uuid ORDER BY source_index, code",
    )
    .bind(&tenant)
    .fetch_all(&tenet.db.admin)
    .await
    .unwrap();
    assert_eq!(observations.len(), 19, "every OBX of both panels");
    let mut critical: Vec<(String, Option<String>)> = observations
        .into_iter()
        .filter(|(_, critical, _)| *critical)
        .map(|(code, _, reason)| (code, reason))
        .collect();
    critical.sort();
    assert_eq!(
        critical,
        vec![
            ("2345-7".to_owned(), Some("range".to_owned())),
            ("2951-2".to_owned(), Some("flag:LL".to_owned())),
        ]
    );
    // The admission and the results are about one patient, matched by MRN.
    let (n_patients, n_encounters): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM clinical.patients WHERE tenant_id = $1::uuid),
                (SELECT count(*) FROM clinical.encounters WHERE tenant_id = $1::uuid AND status = 'in_progress')",
    )
    .bind(&tenant)
    .fetch_one(&tenet.db.admin)
    .await
    .unwrap();
    assert_eq!((n_patients, n_encounters), (1, 1));
    server.start_kill().unwrap();
    server.wait().await.unwrap();
    let log = std::fs::read_to_string(&log_path).unwrap();
    for canary in ["O'BRIEN", "OBRIEN", "000123456", "EVERGREEN", "19800709"] {
        assert!(!log.contains(canary), "PHI {canary:?} in the server's log");
    }
}
