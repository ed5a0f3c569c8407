//! `tenet hl7 parse` and `tenet hl7 send`, which need no database: the binary runs
//! with an empty environment, and `send` talks to a small MLLP server started here.
//!
//! The fixtures are messages from the `hl7` crate's own tests (every name and number
//! invented), segments ended by carriage returns; `batch.hl7` is an FHS/BHS file of
//! three of them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use hl7::Message;
use hl7::ack::{AckBuilder, AckCode, AckError, ErrorCode};
use hl7::mllp::MllpCodec;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_util::codec::Framed;

use crate::Run;

/// How long one run of the binary may take before the test gives up on it.
const RUN_SECS_MAX: u64 = 60;

fn fixture(name: &str) -> String {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests/it/fixtures", name]
        .iter()
        .collect();
    path.to_str().expect("a UTF-8 path").to_owned()
}

/// Runs `tenet args...` with nothing from the test's environment but `PATH`, feeding
/// `stdin` to it.
async fn tenet(args: &[&str], stdin: &[u8]) -> Run {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenet"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("TENET_LOG_FORMAT", "json")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("running tenet");
    let mut input = child.stdin.take().expect("a piped stdin");
    input.write_all(stdin).await.expect("writing stdin");
    drop(input);
    let output = tokio::time::timeout(Duration::from_secs(RUN_SECS_MAX), child.wait_with_output())
        .await
        .expect("tenet finishes")
        .expect("tenet's output");
    Run::new(args, output)
}

#[tokio::test]
async fn parse_prints_segments_and_fields_by_their_standard_index() {
    let run = tenet(&["hl7", "parse", &fixture("oru_r01.hl7")], b"").await;
    let stdout = run.ok();
    let lines: Vec<&str> = stdout.lines().map(str::trim).collect();
    assert!(
        lines[0].starts_with("message 1 of 1: ORU^R01, control id LAB-20240316-0042"),
        "{run}"
    );
    for expected in [
        "MSH-1        |",
        r"MSH-2        ^~\&",
        "MSH-9        ORU^R01^ORU_R01",
        "MSH-9.2      R01",
        "PID-3.1      000123456",
        "PID-5.1      O'BRIEN",
        "OBX(3)-5     11.8",
        // A decoded `\.br\` stays on its line.
        r"NTE(1)-3     Specimen received ambient.\nProcessed within 2 hours.",
    ] {
        assert!(lines.contains(&expected), "a line {expected:?}:\n{run}");
    }
    // Sub-components are numbered too: OBX-15 is `MERCY_LAB^Mercy Hospital Laboratory^CLIA`,
    // and no field is printed empty.
    assert!(
        lines.contains(&"OBX(1)-15.2  Mercy Hospital Laboratory"),
        "{run}"
    );
    assert!(!lines.iter().any(|l| l.starts_with("PID-2 ")), "{run}");
    // The message went to the terminal, not to the logs.
    assert!(!run.stderr.contains("BRIEN"), "{run}");
}

#[tokio::test]
async fn parse_shows_repetitions_and_sub_components() {
    let run = tenet(&["hl7", "parse", &fixture("adt_a01.hl7")], b"").await;
    let lines: Vec<&str> = run.ok().lines().map(str::trim).collect();
    for expected in [
        "PID-3(1).1   000123456",
        "PID-3(2).4   USSSA&2.16.840.1.113883.4.1&ISO",
        "PID-3(2).4.2 2.16.840.1.113883.4.1",
        "PID-5(2).1   OBRIEN",
        // `\T\` decodes to the sub-component separator.
        "ZPI-3        Prefers quiet room & morning visits",
    ] {
        assert!(lines.contains(&expected), "a line {expected:?}:\n{run}");
    }
}

#[tokio::test]
async fn parse_json_is_the_json_tree_with_msh_9_as_components() {
    let run = tenet(&["hl7", "parse", "--json", &fixture("oru_r01.hl7")], b"").await;
    let tree: serde_json::Value = serde_json::from_str(run.ok()).expect("valid JSON");
    assert_eq!(tree["segments"][0]["id"], "MSH", "{run}");
    assert_eq!(
        tree["segments"][0]["fields"]["9"],
        serde_json::json!(["ORU", "R01", "ORU_R01"]),
        "{run}"
    );
    assert_eq!(tree["segments"].as_array().map(Vec::len), Some(28), "{run}");
}

#[tokio::test]
async fn parse_prints_each_message_of_a_batch_file() {
    let run = tenet(&["hl7", "parse", &fixture("batch.hl7")], b"").await;
    let stdout = run.ok();
    let headers: Vec<&str> = stdout
        .lines()
        .filter(|line| line.starts_with("message "))
        .collect();
    assert_eq!(headers.len(), 3, "{run}");
    assert!(headers[0].starts_with("message 1 of 3: ADT^A01"), "{run}");
    assert!(headers[1].starts_with("message 2 of 3: ADT^A03"), "{run}");
    assert!(headers[2].starts_with("message 3 of 3: ORU^R01"), "{run}");

    let run = tenet(&["hl7", "parse", "--json", &fixture("batch.hl7")], b"").await;
    let trees: serde_json::Value = serde_json::from_str(run.ok()).expect("valid JSON");
    assert_eq!(trees.as_array().map(Vec::len), Some(3), "{run}");
    assert_eq!(
        trees[1]["segments"][0]["fields"]["10"], "MSG-A03-0002",
        "{run}"
    );
}

#[tokio::test]
async fn parse_reads_standard_input_for_a_dash_and_warns_of_line_feeds() {
    let message = std::fs::read(fixture("adt_a01.hl7")).unwrap();
    let run = tenet(&["hl7", "parse", "-"], &message).await;
    assert!(
        run.ok()
            .starts_with("message 1 of 1: ADT^A01, control id MSG-A01-0001, 8 segment(s), charset UNICODE UTF-8\nMSH (segment 1)\n"),
        "{run}"
    );

    let crlf = String::from_utf8(message).unwrap().replace('\r', "\r\n");
    let run = tenet(&["hl7", "parse", "-"], crlf.as_bytes()).await;
    let lines: Vec<&str> = run.ok().lines().collect();
    assert_eq!(
        lines[1], "  warning: segments end with CR LF line endings, where the standard says CR",
        "{run}"
    );
}

#[tokio::test]
async fn parse_of_a_malformed_message_fails_naming_where_without_echoing_it() {
    let malformed = b"MSH|^~\\&|LAB|HOSP|TENET|CLINIC|20240101||ADT^A01|X1|P|2.5\rPID|1||MRN-CANARY\rpv1|1|I|WARD-CANARY\r";
    let run = tenet(&["hl7", "parse", "-"], malformed).await;
    run.failed();
    assert!(
        run.stderr
            .contains("message 1 of 1 does not parse: segment 3: a segment must start with an id"),
        "the error and its location:\n{run}"
    );
    assert!(!run.stderr.contains("CANARY"), "no contents echoed:\n{run}");
    let run = tenet(&["hl7", "parse", "--json", "-"], malformed).await;
    assert_eq!(
        run.failed(),
        "",
        "no JSON for a message that does not parse:\n{run}"
    );
    assert!(run.stderr.contains("segment 3"), "{run}");

    // A batch whose trailer miscounts is refused as a batch, with the segment named.
    let batch = b"BHS|^~\\&\rMSH|^~\\&|A|B|C|D|20240101||ADT^A01|X1|P|2.5\rBTS|2\r";
    let run = tenet(&["hl7", "parse", "-"], batch).await;
    run.failed();
    assert!(
        run.stderr
            .contains("segment 3 (BTS) declares 2, but 1 were found"),
        "{run}"
    );
}

/// How the test's MLLP server answers.
#[derive(Clone, Copy)]
enum Answer {
    /// AE, with an ERR diagnostic, to the ADT^A01 `MSG-A01-0001`; AA to the rest.
    RejectTheAdmission,
    /// Enhanced mode: CA to the ADT^A01 `MSG-A01-0001` at once followed by an
    /// application AE; AA to the rest.
    CommitThenApplicationError,
    /// Reads every message, answers none.
    Never,
}

/// A one-connection-at-a-time MLLP server on 127.0.0.1.
async fn mllp_server(answer: Answer) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let mut connection = Framed::new(stream, MllpCodec::new());
            let mut n = 0;
            while let Some(Ok(frame)) = connection.next().await {
                n += 1;
                let message = Message::parse(&frame).expect("the client sends HL7");
                let timestamp = hl7::DateTime::parse("20240401120000+0000").unwrap();
                let control_id = format!("ACK-{n}");
                let rejected = message.msh().control_id().as_deref() == Some("MSG-A01-0001");
                let ack = match answer {
                    Answer::Never => continue,
                    Answer::CommitThenApplicationError if rejected => {
                        let commit = AckBuilder::new(
                            &message,
                            AckCode::CommitAccept,
                            &control_id,
                            timestamp,
                        );
                        connection.send(commit.build()).await.unwrap();
                        AckBuilder::new(
                            &message,
                            AckCode::ApplicationError,
                            &format!("{control_id}-APP"),
                            timestamp,
                        )
                        .error(AckError::new(
                            ErrorCode::UnknownKeyIdentifier,
                            "no such visit",
                        ))
                    }
                    Answer::RejectTheAdmission if rejected => {
                        AckBuilder::new(&message, AckCode::ApplicationError, &control_id, timestamp)
                            .error(AckError::new(
                                ErrorCode::RequiredFieldMissing,
                                "PV1-19 visit number is required",
                            ))
                    }
                    Answer::RejectTheAdmission | Answer::CommitThenApplicationError => {
                        AckBuilder::new(
                            &message,
                            AckCode::ApplicationAccept,
                            &control_id,
                            timestamp,
                        )
                    }
                };
                connection.send(ack.build()).await.unwrap();
            }
        }
    });
    addr
}

#[tokio::test]
async fn send_prints_each_ack_code_with_the_error_and_fails_unless_all_were_accepted() {
    let addr = mllp_server(Answer::RejectTheAdmission).await.to_string();
    let run = tenet(
        &[
            "hl7",
            "send",
            "--to",
            &addr,
            &fixture("oru_r01.hl7"),
            &fixture("batch.hl7"),
        ],
        b"",
    )
    .await;
    let stdout = run.failed();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "LAB-20240316-0042 AA",
            "MSG-A01-0001 AE 101 Required field missing: PV1-19 visit number is required",
            "MSG-A03-0002 AA",
            "LAB-20240316-0042 AA",
            &format!("1 of 4 message(s) not accepted by {addr}"),
        ],
        "{run}"
    );

    let run = tenet(
        &["hl7", "send", "--to", &addr, &fixture("oru_r01.hl7")],
        b"",
    )
    .await;
    assert_eq!(run.ok(), "LAB-20240316-0042 AA\n", "{run}");
}

#[tokio::test]
async fn send_of_many_messages_prints_one_line_for_each() {
    let addr = mllp_server(Answer::RejectTheAdmission).await.to_string();
    let batch = fixture("batch.hl7");
    // Nine messages: enough for the progress bar (drawn only on a terminal).
    let run = tenet(&["hl7", "send", "--to", &addr, &batch, &batch, &batch], b"").await;
    let lines: Vec<&str> = run.failed().lines().collect();
    assert_eq!(lines.len(), 10, "{run}");
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("MSG-A01-0001 AE "))
            .count(),
        3,
        "{run}"
    );
    assert_eq!(
        lines[9],
        format!("3 of 9 message(s) not accepted by {addr}"),
        "{run}"
    );
}

#[tokio::test]
async fn send_reports_a_later_application_ack_against_the_message_it_answers() {
    let addr = mllp_server(Answer::CommitThenApplicationError)
        .await
        .to_string();
    let run = tenet(
        &[
            "hl7",
            "send",
            "--to",
            &addr,
            &fixture("adt_a01.hl7"),
            &fixture("oru_r01.hl7"),
        ],
        b"",
    )
    .await;
    let lines: Vec<&str> = run.failed().lines().collect();
    assert_eq!(
        lines,
        [
            "MSG-A01-0001 CA",
            "MSG-A01-0001 AE 204 Unknown key identifier: no such visit (a further ACK of an earlier message)",
            "LAB-20240316-0042 AA",
            &format!("1 of 2 message(s) not accepted by {addr}"),
        ],
        "{run}"
    );
}

#[tokio::test]
async fn send_fails_with_a_timeout_when_the_endpoint_never_answers() {
    let addr = mllp_server(Answer::Never).await.to_string();
    let run = tenet(
        &[
            "hl7",
            "send",
            "--to",
            &addr,
            "--timeout-secs",
            "1",
            &fixture("adt_a01.hl7"),
        ],
        b"",
    )
    .await;
    run.failed();
    assert!(
        run.stderr.contains("control id MSG-A01-0001") && run.stderr.contains("no ACK within 1 s"),
        "{run}"
    );
}

#[tokio::test]
async fn send_refuses_to_send_anything_when_a_message_does_not_parse() {
    let addr = mllp_server(Answer::RejectTheAdmission).await.to_string();
    let run = tenet(
        &["hl7", "send", "--to", &addr, &fixture("oru_r01.hl7"), "-"],
        b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|X1|P|2.5\rnot a segment\r",
    )
    .await;
    assert_eq!(run.failed(), "", "nothing sent:\n{run}");
    assert!(
        run.stderr
            .contains("standard input does not parse: segment 2"),
        "{run}"
    );
}
