use hl7::{Charset, Message, ParseError, ParseOptions};

/// An ADT^A01 from a European sender in ISO-8859-1: `Müller`, `Renée`, `Zürich`.
const LATIN1_A01: &[u8] = b"MSH|^~\\&|HIS|KANTONSSPITAL|TENET|CLINIC|20240501101500+0200||ADT^A01^ADT_A01|KS-7781|P|2.5|||||CHE|8859/1\r\
EVN|A01|20240501101500+0200\r\
PID|1||CH-556677^^^KS^MR||M\xdcLLER^REN\xc9E||19650312|F|||Bahnhofstra\xdfe 12^^Z\xfcrich^^8001^CHE\r\
PV1|1|I|STATION 3^12^1^KS\r";

#[test]
fn an_iso_8859_1_message_decodes_accented_names() {
    let message = Message::parse(LATIN1_A01).unwrap();
    assert_eq!(message.charset(), Charset::Latin1);
    let pid = message.pid().unwrap();
    let name = pid.names().next().unwrap();
    assert_eq!(name.family_name().as_deref(), Some("MÜLLER"));
    assert_eq!(name.given_name().as_deref(), Some("RENÉE"));
    let address = pid.addresses().next().unwrap();
    assert_eq!(address.street().as_deref(), Some("Bahnhofstraße 12"));
    assert_eq!(address.city().as_deref(), Some("Zürich"));
}

#[test]
fn a_latin1_message_writes_back_to_the_same_bytes() {
    let message = Message::parse(LATIN1_A01).unwrap();
    assert_eq!(message.to_bytes(), LATIN1_A01);
}

#[test]
fn an_unknown_charset_is_a_clear_error_at_msh_18() {
    let bytes = b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5||||||ISO IR87\rPID|1\r";
    let err = Message::parse(bytes).unwrap_err();
    assert!(matches!(err, ParseError::UnsupportedCharset(ref e) if e.name == "ISO IR87"));
    assert_eq!(
        err.to_string(),
        "unsupported character set \"ISO IR87\" in MSH-18 (supported: \"ASCII\", \"UNICODE UTF-8\", \"8859/1\")"
    );
    let location = err.location().unwrap();
    assert_eq!((location.segment, location.field), (1, Some(18)));
    assert_eq!(err.error_code().code(), 103);
}

#[test]
fn a_utf8_message_keeps_its_characters() {
    let bytes = "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5.1||||||UNICODE UTF-8\rPID|1||X||ŁUKASIEWICZ^Zoë^李\r";
    let message = Message::parse(bytes.as_bytes()).unwrap();
    assert_eq!(message.charset(), Charset::Utf8);
    let name = message.pid().unwrap().names().next().unwrap();
    assert_eq!(name.family_name().as_deref(), Some("ŁUKASIEWICZ"));
    assert_eq!(name.given_name().as_deref(), Some("Zoë"));
    assert_eq!(name.middle_names().as_deref(), Some("李"));
}

#[test]
fn non_ascii_bytes_in_a_message_without_msh_18_are_refused_with_their_location() {
    let bytes = "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\rPID|1||X||Zoë\r";
    let err = Message::parse(bytes.as_bytes()).unwrap_err();
    let ParseError::InvalidCharacter {
        charset,
        byte,
        location,
    } = err
    else {
        panic!("unexpected error {err:?}");
    };
    assert_eq!(charset, Charset::Ascii);
    assert_eq!(byte, 0xC3);
    assert_eq!(location.segment, 2);
    assert_eq!(location.field, Some(5));
}

#[test]
fn the_default_charset_applies_only_when_msh_18_is_empty() {
    let bytes = "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\rPID|1||X||Zoë\r";
    let options = ParseOptions {
        default_charset: Charset::Utf8,
        ..ParseOptions::default()
    };
    let message = Message::parse_with(bytes.as_bytes(), &options).unwrap();
    assert_eq!(
        message.get(&"PID-5".parse().unwrap()).unwrap().decoded(),
        "Zoë"
    );
    // An explicit MSH-18 wins over the default.
    assert!(matches!(
        Message::parse_with(LATIN1_A01, &options).map(|m| m.charset()),
        Ok(Charset::Latin1)
    ));
}

#[test]
fn invalid_utf8_is_refused_with_its_location() {
    let bytes =
        b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5||||||UNICODE UTF-8\rPID|1||X||M\xdcLLER\r";
    let err = Message::parse(bytes).unwrap_err();
    assert!(matches!(
        err,
        ParseError::InvalidCharacter {
            byte: 0xDC,
            charset: Charset::Utf8,
            ..
        }
    ));
    assert_eq!(err.location().unwrap().field, Some(5));
}

#[test]
fn hex_escapes_are_read_in_the_message_charset() {
    let latin1 = b"MSH|^~\\&|A|||||||||2.5||||||8859/1\rNTE|1||caf\\XE9\\\r";
    let message = Message::parse(latin1).unwrap();
    assert_eq!(
        message.notes().next().unwrap().comment().as_deref(),
        Some("café")
    );
}
