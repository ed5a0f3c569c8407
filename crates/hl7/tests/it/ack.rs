use hl7::ack::{AckBuilder, AckCode, AckError, AckMode, ErrorCode, ErrorLocation, Severity};
use hl7::{DateTime, Message, Path};

use crate::fixtures::{ADT_A01, ADT_A04, ADT_A08, ORU_R01, cr};

fn timestamp() -> DateTime {
    DateTime::parse("20240315083100-0500").unwrap()
}

/// Segments on their own lines, for readable snapshots.
fn readable(ack: &[u8]) -> String {
    String::from_utf8_lossy(ack).replace('\r', "\n")
}

#[test]
fn an_original_mode_accept_echoes_the_sender_and_swaps_applications() {
    let bytes = cr(ORU_R01);
    let message = Message::parse(&bytes).unwrap();
    assert_eq!(AckMode::of(&message), AckMode::Enhanced);
    let bytes = cr(ADT_A04);
    let message = Message::parse(&bytes).unwrap();
    assert_eq!(AckMode::of(&message), AckMode::Original);
    let ack = AckBuilder::new(
        &message,
        AckCode::accept(AckMode::Original),
        "TENET-ACK-000001",
        timestamp(),
    )
    .build();
    insta::assert_snapshot!(readable(&ack));

    let parsed = Message::parse(&ack).unwrap();
    let msh = parsed.msh();
    assert_eq!(
        msh.sending_application().namespace_id(),
        message.msh().receiving_application().namespace_id()
    );
    assert_eq!(
        msh.receiving_facility().namespace_id(),
        message.msh().sending_facility().namespace_id()
    );
    assert_eq!(msh.control_id().as_deref(), Some("TENET-ACK-000001"));
    assert_eq!(msh.version(), message.msh().version());
    assert_eq!(
        parsed
            .get(&"MSA-2".parse::<Path>().unwrap())
            .unwrap()
            .decoded(),
        "MSG-A04-0003"
    );
}

#[test]
fn an_application_error_carries_err_segments_with_location_code_severity_and_diagnostic() {
    let bytes = cr(ADT_A01);
    let message = Message::parse(&bytes).unwrap();
    let ack = AckBuilder::new(
        &message,
        AckCode::ApplicationError,
        "TENET-ACK-000002",
        timestamp(),
    )
    .error(
        AckError::new(
            ErrorCode::RequiredFieldMissing,
            "PID-3 holds no identifier from an assigning authority we know",
        )
        .at(ErrorLocation::from(&"PID-3(1).4".parse::<Path>().unwrap())),
    )
    .error(
        AckError::new(ErrorCode::DataTypeError, "PV1-44 is not a valid date/time")
            .with_severity(Severity::Warning)
            .at(ErrorLocation::from(&"PV1-44".parse::<Path>().unwrap())),
    )
    .error(AckError::new(
        ErrorCode::ApplicationInternalError,
        "storage unavailable, retry later",
    ))
    .build();
    insta::assert_snapshot!(readable(&ack));
    let parsed = Message::parse(&ack).unwrap();
    assert_eq!(parsed.segments_by_id("ERR").count(), 3);
}

#[test]
fn an_enhanced_mode_commit_accept_is_a_ca() {
    let bytes = cr(ADT_A01);
    let message = Message::parse(&bytes).unwrap();
    let mode = AckMode::of(&message);
    assert_eq!(mode, AckMode::Enhanced);
    let ack = AckBuilder::new(
        &message,
        AckCode::accept(mode),
        "TENET-ACK-000003",
        timestamp(),
    )
    .build();
    insta::assert_snapshot!(readable(&ack));
}

#[test]
fn an_enhanced_mode_commit_reject_names_the_unsupported_event() {
    let bytes = cr(ADT_A01);
    let message = Message::parse(&bytes).unwrap();
    let ack = AckBuilder::new(
        &message,
        AckCode::CommitReject,
        "TENET-ACK-000004",
        timestamp(),
    )
    .error(
        AckError::new(
            ErrorCode::UnsupportedEventCode,
            "trigger event A01 is not accepted on this channel",
        )
        .at(ErrorLocation::from(&"MSH-9.2".parse::<Path>().unwrap())),
    )
    .build();
    insta::assert_snapshot!(readable(&ack));
}

#[test]
fn an_ack_echoes_custom_delimiters_and_escapes_with_them() {
    let bytes = cr(ADT_A08);
    let message = Message::parse(&bytes).unwrap();
    let ack = AckBuilder::new(
        &message,
        AckCode::ApplicationReject,
        "TENET#ACK*5",
        timestamp(),
    )
    .error(AckError::new(
        ErrorCode::UnsupportedVersionId,
        "version 2.5 is accepted; this*that#other",
    ))
    .build();
    insta::assert_snapshot!(readable(&ack));
    let parsed = Message::parse(&ack).unwrap();
    assert_eq!(parsed.delimiters(), message.delimiters());
    assert_eq!(parsed.msh().control_id().as_deref(), Some("TENET#ACK*5"));
    assert_eq!(
        parsed
            .get(&"ERR-8".parse::<Path>().unwrap())
            .unwrap()
            .decoded(),
        "version 2.5 is accepted; this*that#other"
    );
}

#[test]
fn an_ack_to_a_v2_3_message_reports_errors_in_err_1_and_msa_3() {
    let bytes = cr(ADT_A04);
    let message = Message::parse(&bytes).unwrap();
    let ack = AckBuilder::new(
        &message,
        AckCode::ApplicationError,
        "TENET-ACK-000006",
        timestamp(),
    )
    .error(
        AckError::new(ErrorCode::RequiredFieldMissing, "PID-3 is empty")
            .at(ErrorLocation::from(&"PID-3".parse::<Path>().unwrap())),
    )
    .error(AckError::new(
        ErrorCode::ApplicationInternalError,
        "storage unavailable",
    ))
    .build();
    insta::assert_snapshot!(readable(&ack));
}

#[test]
fn a_parse_error_becomes_an_ack_error_with_its_code_and_location() {
    let bytes = b"MSH|^~\\&|LAB|MERCY|TENET|CLINIC|20240101||ORU^R01|C-77|P|2.5.1||||||UNICODE UTF-8\rPID|1||X\robx|1\r";
    let err = Message::parse(bytes).unwrap_err();
    let ack = AckBuilder::for_unparsed(
        bytes,
        AckCode::ApplicationReject,
        "TENET-ACK-000007",
        timestamp(),
    )
    .error(AckError::from_parse_error(&err))
    .build();
    insta::assert_snapshot!(readable(&ack));
}

#[test]
fn an_unsupported_charset_is_rejected_with_table_value_not_found_at_msh_18() {
    let bytes =
        b"MSH|^~\\&|LAB|MERCY|TENET|CLINIC|20240101||ORU^R01|C-78|P|2.5.1||||||ISO IR87\rPID|1\r";
    let err = Message::parse(bytes).unwrap_err();
    let ack = AckBuilder::for_unparsed(
        bytes,
        AckCode::ApplicationReject,
        "TENET-ACK-000008",
        timestamp(),
    )
    .error(AckError::from_parse_error(&err))
    .build();
    insta::assert_snapshot!(readable(&ack));
    let parsed = Message::parse(&ack).unwrap();
    assert_eq!(
        parsed
            .get(&"ERR-3.1".parse::<Path>().unwrap())
            .unwrap()
            .as_str(),
        "103"
    );
    assert_eq!(
        parsed
            .get(&"ERR-2.3".parse::<Path>().unwrap())
            .unwrap()
            .as_str(),
        "18"
    );
}

#[test]
fn an_ack_for_garbage_still_parses_as_an_ack() {
    let ack = AckBuilder::for_unparsed(
        b"\x00\xff not hl7 at all",
        AckCode::ApplicationReject,
        "TENET-ACK-000009",
        timestamp(),
    )
    .error(AckError::new(
        ErrorCode::SegmentSequenceError,
        "a message must start with an MSH segment",
    ))
    .build();
    let parsed = Message::parse(&ack).unwrap();
    assert_eq!(
        parsed
            .get(&"MSA-1".parse::<Path>().unwrap())
            .unwrap()
            .as_str(),
        "AR"
    );
    assert_eq!(parsed.msh().version().as_deref(), Some("2.5.1"));
}

#[test]
fn an_ack_to_a_latin1_message_is_written_in_latin1() {
    let bytes =
        b"MSH|^~\\&|HIS|H\xd4PITAL|TENET|CLINIC|20240101||ADT^A01|K-1|P|2.5||||||8859/1\rPID|1\r";
    let message = Message::parse(bytes).unwrap();
    let ack = AckBuilder::new(&message, AckCode::ApplicationAccept, "A-1", timestamp()).build();
    assert!(ack.windows(7).any(|w| w == b"H\xd4PITAL"));
    let parsed = Message::parse(&ack).unwrap();
    assert_eq!(
        parsed.msh().receiving_facility().namespace_id().as_deref(),
        Some("HÔPITAL")
    );
}

#[test]
fn acks_are_deterministic() {
    let bytes = cr(ORU_R01);
    let message = Message::parse(&bytes).unwrap();
    let build = || {
        AckBuilder::new(
            &message,
            AckCode::CommitAccept,
            "TENET-ACK-000010",
            timestamp(),
        )
        .build()
    };
    assert_eq!(build(), build());
}
