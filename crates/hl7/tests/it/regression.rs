//! Inputs known to hang or crash other HL7 libraries, and the seeds of the fuzz
//! corpus (`crates/hl7/fuzz/corpus`), each pinned to the outcome it must have:
//! an error naming what is wrong, or values read as the standard says. A
//! crasher the fuzzer finds gets a test here, named after what broke.

use hl7::{DelimiterError, Message, ParseError};

fn values(bytes: &[u8]) -> Vec<Vec<String>> {
    let message = Message::parse(bytes).expect("the message parses");
    message
        .segments()
        .map(|segment| segment.fields().map(|f| f.decoded().into_owned()).collect())
        .collect()
}

#[test]
fn a_lone_msh_header_is_an_error_not_a_panic() {
    let result = Message::parse(b"MSH");
    assert!(
        matches!(
            result,
            Err(ParseError::Delimiters(
                DelimiterError::MissingFieldSeparator
            ))
        ),
        "{result:?}"
    );
}

#[test]
fn an_msh_without_encoding_characters_is_an_error_not_a_panic() {
    for bytes in [&b"MSH|"[..], b"MSH00000", b"MSH\0\0\0\0\0\0\r"] {
        let result = Message::parse(bytes);
        assert!(
            matches!(
                result,
                Err(ParseError::Delimiters(
                    DelimiterError::WrongEncodingCharacterCount { found: 0 }
                ))
            ),
            "{result:?}"
        );
    }
}

#[test]
fn a_one_character_msh_2_followed_by_a_headless_line_is_refused() {
    // Crashes parsers that index MSH-2 as if it always held four characters.
    let result = Message::parse(b"MSH|^|||||||^A|||2.2\r^AA");
    assert!(
        matches!(
            result,
            Err(ParseError::Delimiters(
                DelimiterError::WrongEncodingCharacterCount { found: 1 }
            ))
        ),
        "{result:?}"
    );
}

#[test]
fn a_header_of_only_delimiters_parses_to_msh_1_and_msh_2() {
    assert_eq!(values(b"MSH|^~\\&"), [["|", "^~\\&"]]);
}

#[test]
fn a_segment_of_only_delimiters_is_refused_with_its_position() {
    let result = Message::parse(b"MSH|^~\\&|^~\\&|||^^^~~~&&&|\\\\\\|\r|^~&\\\r");
    let Err(ParseError::InvalidSegmentId { location }) = result else {
        panic!("expected an invalid segment id, got {result:?}");
    };
    assert_eq!(location.segment, 2);
}

#[test]
fn degenerate_hex_escapes_are_kept_or_decoded_never_a_panic() {
    let fields = values(b"MSH|^~\\&|A\rNTE|1||\\X\\|\\X0\\|\\X00\\|\\XC3\\|abc\\F\r");
    // An empty or odd-length `\X..\` is kept verbatim, `\X00\` is a NUL, a lone
    // UTF-8 lead byte in an ASCII message is U+FFFD, an unterminated escape is text.
    assert_eq!(
        fields[1],
        ["1", "", "\\X\\", "\\X0\\", "\0", "\u{fffd}", "abc\\F"]
    );
}

#[test]
fn deeply_nested_escapes_are_read_left_to_right_without_recursion() {
    let escapes = "\\E\\".repeat(10_000);
    let bytes = format!("MSH|^~\\&|A\rNTE|1||{escapes}\r");
    assert_eq!(values(bytes.as_bytes())[1][2], "\\".repeat(10_000));
}

#[test]
fn a_strange_charset_in_msh_18_is_a_clear_error() {
    for charset in ["ISO IR87~UNICODE UTF-8", "\\X41\\", "UTF-16\0"] {
        let bytes = format!("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5||||||{charset}\rPID|1\r");
        let result = Message::parse(bytes.as_bytes());
        assert!(
            matches!(result, Err(ParseError::UnsupportedCharset(_))),
            "{charset:?}: {result:?}"
        );
    }
}

#[test]
fn huge_repetition_counts_parse_lazily() {
    let bytes = format!("MSH|^~\\&|A\rPID|{}\r", "~".repeat(100_000));
    let message = Message::parse(bytes.as_bytes()).expect("the message parses");
    let pid = message.segments().nth(1).expect("a PID");
    assert_eq!(pid.field(1).expect("PID-1").n_repetitions(), 100_001);
}

#[test]
fn carriage_returns_alone_are_an_empty_message() {
    assert!(matches!(
        Message::parse(b"\r\r\r\r"),
        Err(ParseError::Empty)
    ));
}

#[test]
fn nul_bytes_are_data() {
    assert_eq!(
        values(b"MSH|^~\\&|\0\0|\0\rPID|\0^\0\r"),
        [vec!["|", "^~\\&", "\0\0", "\0"], vec!["\0^\0"]]
    );
}

#[test]
fn an_ack_for_a_charset_split_by_a_custom_repetition_separator_parses() {
    // Found by fuzzing: MSH-2 `^/\&` makes `/` the repetition separator, so MSH-18
    // "8859/1" reads as "8859" (unsupported). The ACK must not echo a name it would
    // itself read differently.
    let input: &[u8] =
        include_bytes!("../../fuzz/corpus/parse/regression-charset-split-by-repetition-separator");
    assert!(hl7::Message::parse(input).is_err());
    let ack = hl7::ack::AckBuilder::for_unparsed(
        input,
        hl7::ack::AckCode::ApplicationReject,
        "ACK1",
        hl7::DateTime::from_ymd(2024, 1, 1).expect("a valid date"),
    )
    .build();
    let parsed = hl7::Message::parse(&ack).expect("the ACK parses");
    assert_eq!(parsed.charset(), hl7::Charset::Ascii);
}
