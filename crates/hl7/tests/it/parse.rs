use std::borrow::Cow;

use hl7::{Limits, LineEndings, Location, Message, ParseError, ParseOptions, ParseWarning, Path};

use crate::fixtures::{self, ADT_A01, ADT_A08, ORU_R01, cr, join};

fn path(text: &str) -> Path {
    text.parse().expect("test paths are valid")
}

fn get(message: &Message<'_>, at: &str) -> Option<String> {
    message.get(&path(at)).map(|v| v.decoded().into_owned())
}

#[test]
fn an_adt_a01_exposes_its_segments_in_order() {
    let bytes = cr(ADT_A01);
    let message = Message::parse(&bytes).unwrap();
    let ids: Vec<String> = message.segments().map(|s| s.id().to_string()).collect();
    assert_eq!(
        ids,
        ["MSH", "EVN", "PID", "PV1", "NK1", "AL1", "DG1", "ZPI"]
    );
    assert_eq!(message.n_segments(), 8);
    assert_eq!(message.line_endings(), LineEndings::Cr);
    assert!(message.warnings().is_empty());
}

#[test]
fn msh_1_is_the_field_separator_and_msh_2_the_encoding_characters() {
    let bytes = cr(ADT_A01);
    let message = Message::parse(&bytes).unwrap();
    let msh = message.segment("MSH").unwrap();
    assert_eq!(msh.field(1).unwrap().as_str(), "|");
    assert_eq!(msh.field(2).unwrap().as_str(), r"^~\&");
    // MSH-2 is never split nor decoded, although it holds every delimiter.
    assert_eq!(msh.field(2).unwrap().n_repetitions(), 1);
    assert_eq!(msh.field(2).unwrap().decoded(), r"^~\&");
    assert_eq!(get(&message, "MSH-2.1").as_deref(), Some(r"^~\&"));
    assert_eq!(get(&message, "MSH-3").as_deref(), Some("EPIC"));
    assert_eq!(
        get(&message, "MSH-4.2").as_deref(),
        Some("1.2.840.114350.1.13.0.1.7.2.696570")
    );
    assert_eq!(get(&message, "MSH-9.2").as_deref(), Some("A01"));
    assert_eq!(get(&message, "MSH-10").as_deref(), Some("MSG-A01-0001"));
    assert_eq!(get(&message, "MSH-12").as_deref(), Some("2.5.1"));
}

#[test]
fn custom_delimiters_are_read_from_the_header_not_assumed() {
    let bytes = cr(ADT_A08);
    let message = Message::parse(&bytes).unwrap();
    let d = message.delimiters();
    assert_eq!(
        (
            d.field(),
            d.component(),
            d.repetition(),
            d.escape(),
            d.subcomponent()
        ),
        ('#', '*', '!', '@', '%')
    );
    assert_eq!(get(&message, "MSH-1").as_deref(), Some("#"));
    assert_eq!(get(&message, "MSH-2").as_deref(), Some("*!@%"));
    assert_eq!(get(&message, "MSH-9.1").as_deref(), Some("ADT"));
    assert_eq!(get(&message, "MSH-9.2").as_deref(), Some("A08"));
    assert_eq!(get(&message, "PID-3(2).1").as_deref(), Some("S-1002"));
    // Escapes use the message's own escape character.
    assert_eq!(get(&message, "PID-3.2").as_deref(), Some("*A"));
    assert_eq!(get(&message, "PID-3.3").as_deref(), Some("%B"));
    assert_eq!(get(&message, "PID-5.1").as_deref(), Some("SMITH#JONES"));
    // The standard delimiters mean nothing here.
    assert_eq!(get(&message, "PID-11.3").as_deref(), Some("LONDON"));
}

#[test]
fn lf_line_endings_are_accepted_and_reported() {
    let bytes = join(ADT_A01, "\n");
    let message = Message::parse(&bytes).unwrap();
    assert_eq!(message.n_segments(), 8);
    assert_eq!(message.line_endings(), LineEndings::Lf);
    assert_eq!(
        message.warnings(),
        &[ParseWarning::NonStandardSegmentTerminator(LineEndings::Lf)]
    );
    assert_eq!(get(&message, "PID-5.1").as_deref(), Some("O'BRIEN"));
}

#[test]
fn crlf_line_endings_are_accepted_and_reported() {
    let bytes = join(ORU_R01, "\r\n");
    let message = Message::parse(&bytes).unwrap();
    assert_eq!(message.n_segments(), ORU_R01.len());
    assert_eq!(message.line_endings(), LineEndings::CrLf);
    assert_eq!(
        message.warnings(),
        &[ParseWarning::NonStandardSegmentTerminator(
            LineEndings::CrLf
        )]
    );
    // No segment keeps a stray carriage return or line feed.
    assert!(
        message
            .segments()
            .all(|s| !s.as_str().contains(['\r', '\n']))
    );
}

#[test]
fn mixed_line_endings_are_reported_as_mixed() {
    let bytes = b"MSH|^~\\&|A\rEVN|A01\nPID|1\r\n";
    let message = Message::parse(bytes).unwrap();
    assert_eq!(message.line_endings(), LineEndings::Mixed);
    assert_eq!(message.n_segments(), 3);
}

#[test]
fn strict_mode_refuses_a_line_feed_with_its_location() {
    let bytes = join(ADT_A01, "\n");
    let options = ParseOptions {
        strict_segment_terminator: true,
        ..ParseOptions::default()
    };
    let err = Message::parse_with(&bytes, &options).unwrap_err();
    let ParseError::NonStandardSegmentTerminator { location } = err else {
        panic!("unexpected error {err:?}");
    };
    assert_eq!(location.segment, 1);
    assert_eq!(location.segment_id.unwrap(), "MSH");
    // The same message with carriage returns passes in strict mode.
    assert!(Message::parse_with(&cr(ADT_A01), &options).is_ok());
}

#[test]
fn a_message_that_does_not_start_with_msh_is_refused() {
    let err = Message::parse(b"PID|1||123\r").unwrap_err();
    assert!(matches!(err, ParseError::MissingHeader { found: Some(id) } if id == "PID"));
    assert_eq!(
        err.to_string(),
        "a message must start with an MSH segment, found PID"
    );
    assert!(matches!(
        Message::parse(b"\x00\x01garbage"),
        Err(ParseError::MissingHeader { found: None })
    ));
    assert_eq!(Message::parse(b"").unwrap_err(), ParseError::Empty);
    assert_eq!(Message::parse(b"\r\n\r").unwrap_err(), ParseError::Empty);
}

#[test]
fn a_batch_given_to_message_parse_is_refused_with_a_hint() {
    let err = Message::parse(b"FHS|^~\\&|LAB\rBHS|^~\\&\r").unwrap_err();
    assert!(matches!(err, ParseError::Batch { .. }));
    assert!(err.to_string().contains("hl7::batch::split"));
}

#[test]
fn a_second_msh_in_one_message_is_refused() {
    let mut bytes = cr(ADT_A01);
    bytes.extend(cr(ADT_A01));
    let err = Message::parse(&bytes).unwrap_err();
    let ParseError::UnexpectedHeader { location, found } = err else {
        panic!("unexpected error {err:?}");
    };
    assert_eq!(found, "MSH");
    assert_eq!(location.segment, 9);
    assert_eq!(location.occurrence, Some(2));
}

#[test]
fn an_invalid_segment_id_is_refused_with_its_position() {
    let err = Message::parse(b"MSH|^~\\&|A\rEVN|A01\rpid|1\r").unwrap_err();
    assert_eq!(
        err,
        ParseError::InvalidSegmentId {
            location: Location {
                segment: 3,
                segment_id: None,
                occurrence: None,
                field: None
            }
        }
    );
    // An id that runs into its first field is refused too.
    assert!(matches!(
        Message::parse(b"MSH|^~\\&|A\rPIDX|1\r"),
        Err(ParseError::InvalidSegmentId { .. })
    ));
}

#[test]
fn invalid_delimiters_are_refused_at_msh_1_or_msh_2() {
    let err = Message::parse(b"MSH|^~\\|A\r").unwrap_err();
    assert_eq!(err.location().unwrap().field, Some(2));
    assert!(
        err.to_string()
            .contains("MSH-2 must hold 4 encoding characters")
    );
    let err = Message::parse(b"MSHA^~\\&A\r").unwrap_err();
    assert_eq!(err.location().unwrap().field, Some(1));
}

#[test]
fn z_segments_are_kept() {
    let bytes = cr(ADT_A01);
    let message = Message::parse(&bytes).unwrap();
    let zpi = message.segment("ZPI").unwrap();
    assert_eq!(zpi.position(), 8);
    assert_eq!(
        zpi.field(2).unwrap().component(2).unwrap().decoded(),
        "Very important person"
    );
    assert_eq!(
        get(&message, "ZPI-3").as_deref(),
        Some("Prefers quiet room & morning visits")
    );
}

#[test]
fn a_message_over_the_size_limit_is_refused() {
    let bytes = cr(ORU_R01);
    let options = ParseOptions {
        limits: Limits {
            message_bytes_max: 1024,
            ..Limits::default()
        },
        ..ParseOptions::default()
    };
    assert_eq!(
        Message::parse_with(&bytes, &options).unwrap_err(),
        ParseError::TooLarge {
            bytes: bytes.len(),
            bytes_max: 1024
        }
    );
}

#[test]
fn a_segment_with_too_many_fields_is_refused() {
    let options = ParseOptions {
        limits: Limits {
            fields_per_segment_max: 20,
            ..Limits::default()
        },
        ..ParseOptions::default()
    };
    let err = Message::parse_with(&cr(ADT_A01), &options).unwrap_err();
    let ParseError::TooManyFields {
        location,
        fields_max,
    } = err
    else {
        panic!("unexpected error {err:?}");
    };
    assert_eq!(fields_max, 20);
    assert_eq!(location.segment_id.unwrap(), "PV1");
    assert_eq!(location.field, Some(21));
}

#[test]
fn a_message_with_too_many_segments_is_refused() {
    let options = ParseOptions {
        limits: Limits {
            segments_max: 10,
            ..Limits::default()
        },
        ..ParseOptions::default()
    };
    assert_eq!(
        Message::parse_with(&cr(ORU_R01), &options).unwrap_err(),
        ParseError::TooManySegments { segments_max: 10 }
    );
}

#[test]
fn repetitions_components_and_subcomponents_are_counted_from_one() {
    let bytes = cr(ADT_A01);
    let message = Message::parse(&bytes).unwrap();
    let pid = message.segment("PID").unwrap();
    let identifiers = pid.field(3).unwrap();
    assert_eq!(identifiers.n_repetitions(), 2);
    let ssn = identifiers.repetition(2).unwrap();
    assert_eq!(ssn.component(1).unwrap().as_str(), "999887777");
    let authority = ssn.component(4).unwrap();
    let parts: Vec<&str> = authority.subcomponents().map(|s| s.as_str()).collect();
    assert_eq!(parts, ["USSSA", "2.16.840.1.113883.4.1", "ISO"]);
    assert!(identifiers.repetition(0).is_none());
    assert!(identifiers.repetition(3).is_none());
    assert!(pid.field(0).is_none());
    assert!(pid.field(99).is_none());
    assert_eq!(pid.field(2).map(|f| f.is_empty()), Some(true));
}

#[test]
fn paths_reach_fields_repetitions_components_and_subcomponents() {
    let bytes = cr(ORU_R01);
    let message = Message::parse(&bytes).unwrap();
    assert_eq!(get(&message, "PID-5.1").as_deref(), Some("O'BRIEN"));
    assert_eq!(get(&message, "PID-5").as_deref(), Some("O'BRIEN^MARY^ANN"));
    assert_eq!(get(&message, "OBX(3)-5").as_deref(), Some("11.8"));
    assert_eq!(
        get(&message, "OBX(3)-3.2").as_deref(),
        Some("Hemoglobin [Mass/volume] in Blood")
    );
    assert_eq!(get(&message, "OBX(12)-8(2)").as_deref(), Some("A"));
    assert_eq!(get(&message, "OBR(2)-4.1").as_deref(), Some("24323-8"));
    assert_eq!(get(&message, "OBX(99)-5"), None);
    assert_eq!(get(&message, "ZZZ-1"), None);

    let bytes = cr(ADT_A01);
    let message = Message::parse(&bytes).unwrap();
    assert_eq!(get(&message, "PID-3(2).4.1").as_deref(), Some("USSSA"));
    assert_eq!(
        get(&message, "PID-3(2).4.2").as_deref(),
        Some("2.16.840.1.113883.4.1")
    );
    assert_eq!(
        get(&message, "PID-3(2)").as_deref(),
        Some("999887777^^^USSSA&2.16.840.1.113883.4.1&ISO^SS")
    );
    assert_eq!(get(&message, "PV1-3.3").as_deref(), Some("B"));
    assert_eq!(
        get(&message, "PV1-44").as_deref(),
        Some("20240315080000-0500")
    );
}

#[test]
fn a_malformed_path_is_a_clear_error() {
    let err = "PID5.1".parse::<Path>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid HL7 path \"PID5.1\": expected '-' and a field number at character 3"
    );
    let err = "OBX(0)-5".parse::<Path>().unwrap_err();
    assert!(err.to_string().contains("must be between 1 and"), "{err}");
}

#[test]
fn an_escaped_delimiter_never_splits_a_field() {
    let bytes = b"MSH|^~\\&|A\rNTE|1|L|a\\F\\b\\S\\c\\R\\d\\T\\e\\E\\f|next\r";
    let message = Message::parse(bytes).unwrap();
    let nte = message.segment("NTE").unwrap();
    assert_eq!(nte.n_fields(), 4);
    let comment = nte.field(3).unwrap();
    assert_eq!(comment.n_repetitions(), 1);
    assert_eq!(comment.component(1).unwrap().subcomponents().count(), 1);
    assert_eq!(comment.decoded(), r"a|b^c~d&e\f");
    assert_eq!(nte.field(4).unwrap().as_str(), "next");
}

#[test]
fn escapes_are_decoded_on_access_only() {
    let bytes = cr(ORU_R01);
    let message = Message::parse(&bytes).unwrap();
    let comment = message.get(&path("OBX(17)-5")).unwrap();
    assert_eq!(
        comment.as_str(),
        r"Sample slightly hemolyzed\.br\Potassium \T\ LDH may read high"
    );
    assert_eq!(
        comment.decoded(),
        "Sample slightly hemolyzed\nPotassium & LDH may read high"
    );
}

#[test]
fn hex_and_formatting_escapes_are_decoded_as_documented() {
    let bytes = b"MSH|^~\\&|A|||||||||2.5||||||UNICODE UTF-8\rNTE|1||\\XC3A9\\t\\XC3A9\\ \\H\\bold\\N\\ \\.sp\\\r";
    let message = Message::parse(bytes).unwrap();
    assert_eq!(
        get(&message, "NTE-3").as_deref(),
        Some("été \\H\\bold\\N\\ \\.sp\\")
    );
}

#[test]
fn reading_fields_without_escapes_borrows_the_message() {
    let bytes = cr(ORU_R01);
    let message = Message::parse(&bytes).unwrap();
    let mut n_values = 0;
    for segment in message.segments() {
        for field in segment.fields() {
            for repetition in field.repetitions() {
                for component in repetition.components() {
                    for subcomponent in component.subcomponents() {
                        let decoded = subcomponent.decoded();
                        if !subcomponent.as_str().contains('\\') {
                            assert!(matches!(decoded, Cow::Borrowed(_)));
                        }
                        n_values += 1;
                    }
                }
            }
        }
    }
    assert!(n_values > 300, "{n_values}");
}

#[test]
fn an_empty_field_and_an_explicit_null_are_told_apart() {
    let bytes = b"MSH|^~\\&|A\rPID|1||\"\"\r";
    let message = Message::parse(bytes).unwrap();
    let pid = message.segment("PID").unwrap();
    assert!(pid.field(2).unwrap().is_empty());
    assert!(!pid.field(2).unwrap().is_null());
    assert!(pid.field(3).unwrap().is_null());
    assert!(!pid.field(3).unwrap().is_empty());
}

#[test]
fn a_byte_order_mark_and_blank_lines_are_skipped_and_reported() {
    let bytes = b"\xEF\xBB\xBF\r\nMSH|^~\\&|A\r\rPID|1\r";
    let message = Message::parse(bytes).unwrap();
    assert_eq!(message.n_segments(), 2);
    assert!(
        message
            .warnings()
            .contains(&ParseWarning::ByteOrderMarkSkipped)
    );
    assert!(
        message
            .warnings()
            .iter()
            .any(|w| matches!(w, ParseWarning::EmptySegmentsSkipped { n_segments: 2 }))
    );
}

#[test]
fn debug_of_a_message_shows_structure_not_phi() {
    let bytes = cr(ORU_R01);
    let message = Message::parse(&bytes).unwrap();
    assert_eq!(
        format!("{message:?}"),
        "Message { segments: 28, type: ORU^R01 }"
    );
}

#[test]
fn debug_of_views_and_typed_segments_never_prints_contents() {
    let bytes = cr(ADT_A01);
    let message = Message::parse(&bytes).unwrap();
    let pid = message.pid().unwrap();
    let name = pid.names().next().unwrap();
    let segment = pid.segment();
    let field = segment.field(5).unwrap();
    let shown = format!(
        "{pid:?} {name:?} {segment:?} {field:?} {:?} {:?} {:?}",
        field.repetition(1).unwrap(),
        field.component(1).unwrap(),
        message.get(&path("PID-5.1")).unwrap(),
    );
    for phi in ["O'BRIEN", "MARY", "19800709", "000123456", "EVERGREEN"] {
        assert!(!shown.contains(phi), "{shown}");
    }
    assert!(shown.contains("PID"), "{shown}");
}

#[test]
fn parse_errors_never_print_field_contents() {
    let mut bytes = cr(ADT_A01);
    // An invalid UTF-8 byte inside the patient's name.
    let at = bytes.windows(7).position(|w| w == b"O'BRIEN").unwrap();
    bytes[at + 1] = 0xFF;
    let err = Message::parse(&bytes).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("segment 3 (PID), field PID-5"), "{text}");
    assert!(!text.contains("BRIEN"), "{text}");
}

#[test]
fn a_parsed_message_can_outlive_its_bytes() {
    let message = {
        let bytes = cr(ORU_R01);
        Message::parse(&bytes).unwrap().into_owned()
    };
    assert_eq!(message.observations().count(), 19);
}

#[test]
fn every_fixture_parses_with_default_options() {
    for lines in [
        fixtures::ADT_A01,
        fixtures::ADT_A03,
        fixtures::ADT_A04,
        fixtures::ADT_A08,
        fixtures::ADT_A40,
        fixtures::ORU_R01,
    ] {
        let bytes = cr(lines);
        let message = Message::parse(&bytes).unwrap();
        assert_eq!(message.n_segments(), lines.len());
    }
}
