//! HL7 v2 over MLLP through the real binary: `tenet serve --mllp` receives what
//! `tenet hl7 send` sends, answers only after the message is stored (the fixtures ask
//! for enhanced mode, so the answer is the commit ACK `CA`), and answers a resend with
//! the same code without storing it twice.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::jobs::free_port;
use crate::{Tenet, single_line};

fn fixture(name: &str) -> String {
    format!("{}/tests/it/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test]
async fn serve_receives_hl7_over_mllp_and_a_resend_is_stored_once() {
    let tenet = Tenet::new().await;
    let tenant = single_line(tenet.run(&["tenant", "create", "Lab Clinic"]).await.ok()).to_owned();
    let mllp = format!("127.0.0.1:{}", free_port());
    let http = format!("127.0.0.1:{}", free_port());
    let log = std::fs::File::create(tenet.home.path().join("serve-mllp.log")).unwrap();
    let mut server = tenet
        .command(&[
            "serve",
            "--http",
            &http,
            "--workers",
            "0",
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

    for attempt in ["first", "resend"] {
        let sent = tenet
            .run(&[
                "hl7",
                "send",
                "--to",
                &mllp,
                &fixture("adt_a01.hl7"),
                &fixture("oru_r01.hl7"),
            ])
            .await;
        let out = sent.ok();
        assert_eq!(
            out.lines().filter(|line| line.ends_with(" CA")).count(),
            2,
            "{attempt}: {sent}"
        );
    }
    let (n_rows, n_accepted): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE status = 'accepted' AND ack_code = 'CA')
         FROM ingest.messages WHERE tenant_id = $1::uuid",
    )
    .bind(&tenant)
    .fetch_one(&tenet.db.admin)
    .await
    .unwrap();
    assert_eq!(
        (n_rows, n_accepted),
        (2, 2),
        "each message stored once, however often sent"
    );
    server.start_kill().unwrap();
    server.wait().await.unwrap();
}
