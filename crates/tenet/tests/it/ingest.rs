//! HL7 v2 over MLLP through the real binary: `tenet serve --mllp` receives what
//! `tenet hl7 send` sends, answers only after the message is stored (the fixtures ask
//! for enhanced mode, so the answer is the commit ACK `CA`), and answers a resend with
//! the same code without storing it twice. Then what operators do with the stored
//! messages: `tenet ingest list|show` (`--raw` audited) and `tenet ingest retention`.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::jobs::free_port;
use crate::{Tenet, single_line};

fn fixture(name: &str) -> String {
    format!("{}/tests/it/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// `tenet serve --mllp` for `tenant`, once its MLLP port accepts connections; and
/// that port.
async fn serve_mllp(tenet: &Tenet, tenant: &str) -> (tokio::process::Child, String) {
    let mllp = format!("127.0.0.1:{}", free_port());
    let http = format!("127.0.0.1:{}", free_port());
    let log = std::fs::File::create(tenet.home.path().join("serve-mllp.log")).unwrap();
    let server = tenet
        .command(&[
            "serve",
            "--http",
            &http,
            "--workers",
            "0",
            "--mllp",
            &mllp,
            "--mllp-tenant",
            tenant,
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
    (server, mllp)
}

#[tokio::test]
async fn serve_receives_hl7_over_mllp_and_a_resend_is_stored_once() {
    let tenet = Tenet::new().await;
    let tenant = single_line(tenet.run(&["tenant", "create", "Lab Clinic"]).await.ok()).to_owned();
    let (mut server, mllp) = serve_mllp(&tenet, &tenant).await;

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

#[tokio::test]
async fn ingest_list_and_show_report_stored_messages_and_only_show_raw_reveals_one_audited() {
    let tenet = Tenet::new().await;
    let tenant = single_line(tenet.run(&["tenant", "create", "Lab Clinic"]).await.ok()).to_owned();
    let other = single_line(tenet.run(&["tenant", "create", "Other Clinic"]).await.ok()).to_owned();
    let (mut server, mllp) = serve_mllp(&tenet, &tenant).await;
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
    server.start_kill().unwrap();
    server.wait().await.unwrap();

    let run = tenet.run(&["ingest", "list"]).await;
    let listing = run.ok();
    assert!(listing.ends_with("2 message(s)\n"), "{run}");
    let adt = listing
        .lines()
        .find(|line| line.contains("MSG-A01-0001"))
        .unwrap_or_else(|| panic!("the ADT is listed: {run}"));
    for expected in ["mllp", "EPIC^MERCY", "ADT^A01", "accepted", "CA"] {
        assert!(adt.contains(expected), "{expected} in {adt:?}");
    }
    // Routing fields only: nothing from the PID segment.
    assert!(
        !listing.contains("BRIEN") && !listing.contains("000123456"),
        "{run}"
    );
    let id = adt.split_whitespace().next().unwrap().to_owned();

    for (filter, n) in [
        (vec!["--tenant", tenant.as_str()], 2),
        (vec!["--tenant", other.as_str()], 0),
        (vec!["--status", "rejected"], 0),
        (vec!["--status", "accepted", "--listener", "mllp"], 2),
        (vec!["--listener", "elsewhere"], 0),
        (vec!["--since", "1h"], 2),
        (vec!["--since", "2999-01-01"], 0),
        (vec!["--limit", "1"], 1),
    ] {
        let mut args = vec!["ingest", "list"];
        args.extend(filter);
        let run = tenet.run(&args).await;
        assert!(
            run.ok().ends_with(&format!("{n} message(s)\n")),
            "{n} expected: {run}"
        );
    }

    let audited = async || -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM audit.events WHERE action = 'ingest_message.read'
               AND tenant_id = $1::uuid AND details->>'message_id' = $2",
        )
        .bind(&tenant)
        .bind(&id)
        .fetch_one(&tenet.db.admin)
        .await
        .unwrap()
    };
    let run = tenet.run(&["ingest", "show", &id]).await;
    let shown = run.ok();
    for expected in [
        format!("id:                   {id}"),
        format!("tenant:               {tenant}"),
        "sending application:  EPIC (MSH-3)".to_owned(),
        "sending facility:     MERCY (MSH-4)".to_owned(),
        "control id:           MSG-A01-0001 (MSH-10)".to_owned(),
        "message type:         ADT^A01 (MSH-9)".to_owned(),
        "version:              2.5.1 (MSH-12)".to_owned(),
        "ack mode:             enhanced".to_owned(),
        "status:               accepted".to_owned(),
        "ack code:             CA".to_owned(),
        "error:                -".to_owned(),
    ] {
        assert!(shown.contains(&expected), "{expected:?} in {run}");
    }
    assert!(!shown.contains("BRIEN"), "no contents without --raw: {run}");
    assert_eq!(audited().await, 0, "no read without --raw");

    let run = tenet
        .run(&[
            "ingest",
            "show",
            &id,
            "--raw",
            "--purpose",
            "interface-debugging",
        ])
        .await;
    let shown = run.ok();
    assert!(
        shown.contains("\nPID|1||000123456^^^MERCY^MR") && shown.contains("O'BRIEN^MARY"),
        "the message as received, a segment per line: {run}"
    );
    assert_eq!(audited().await, 1, "the raw read is audited");
    let purpose: String = sqlx::query_scalar(
        "SELECT purpose FROM audit.events WHERE action = 'ingest_message.read' AND tenant_id = $1::uuid",
    )
    .bind(&tenant)
    .fetch_one(&tenet.db.admin)
    .await
    .unwrap();
    assert_eq!(purpose, "interface-debugging");
    assert!(
        !run.stderr.contains("BRIEN") && !run.stderr.contains("000123456"),
        "no PHI in the logs: {run}"
    );
    tenet.run(&["audit", "verify"]).await.ok();

    let missing = uuid::Uuid::now_v7().to_string();
    let run = tenet.run(&["ingest", "show", &missing]).await;
    assert_eq!(run.failed().trim(), format!("no message {missing}"));
}

#[tokio::test]
async fn ingest_retention_prints_and_drops_whole_days_past_the_retention() {
    let tenet = Tenet::new().await;
    let old_day = (time::OffsetDateTime::now_utc() - time::Duration::days(100)).date();
    let created: Option<String> = sqlx::query_scalar("SELECT ingest.create_partition($1)")
        .bind(old_day)
        .fetch_one(&tenet.db.owner)
        .await
        .unwrap();
    let old_partition = created.expect("a partition for a day long gone");
    // A message of a day with no partition (maintenance did not run): in the default
    // partition, which `tenet check` reports.
    let lost_at = time::OffsetDateTime::now_utc() - time::Duration::days(50);
    let lost_partition = format!(
        "messages_{:04}{:02}{:02}",
        lost_at.year(),
        u8::from(lost_at.month()),
        lost_at.day()
    );
    sqlx::query(
        "INSERT INTO ingest.messages (tenant_id, id, received_at, listener, ack_mode, status,
             ack_code, raw_sealed, data_key_id)
         VALUES ($1, $2, $3, 'mllp', 'original', 'rejected', 'AR', '\\x00', $1)",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(uuid::Uuid::now_v7())
    .bind(lost_at)
    .execute(&tenet.db.admin)
    .await
    .unwrap();
    let run = tenet.run(&["check"]).await;
    assert!(
        run.failed()
            .contains("problem ingest-default-partition: ingest.messages_default: 1 message(s)"),
        "{run}"
    );

    let run = tenet.run(&["ingest", "retention", "--dry-run"]).await;
    assert!(
        run.ok()
            .contains(&format!("would drop ingest.{old_partition}: "))
            && run
                .ok()
                .contains("1 partition(s), 0 message(s) received before"),
        "{run}"
    );
    let exists = async || -> bool {
        sqlx::query_scalar("SELECT to_regclass('ingest.' || $1) IS NOT NULL")
            .bind(&old_partition)
            .fetch_one(&tenet.db.admin)
            .await
            .unwrap()
    };
    assert!(exists().await, "a dry run drops nothing");
    // Keeping everything still makes partitions, and moves the lost message into its own.
    let run = tenet.run(&["ingest", "retention", "--days", "0"]).await;
    assert!(
        run.ok().contains("retention is off")
            && run
                .ok()
                .contains(&format!("created partition ingest.{lost_partition}\n")),
        "{run}"
    );
    assert!(exists().await);

    let run = tenet.run(&["ingest", "retention", "--days", "90"]).await;
    assert!(
        run.ok()
            .contains(&format!("dropped ingest.{old_partition}: "))
            && run.ok().contains("1 partition(s) dropped"),
        "{run}"
    );
    assert!(!exists().await);
    let run = tenet.run(&["ingest", "retention"]).await;
    assert!(run.ok().contains("0 partition(s) dropped"), "{run}");
    let run = tenet.run(&["check"]).await;
    assert!(run.ok().starts_with("tenet check: 0 violations"), "{run}");
}
