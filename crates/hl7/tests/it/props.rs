//! Property tests: the parser, the writer, escapes, paths and ACKs against
//! generated input (the MLLP codec's are in `mllp.rs`). The fuzz targets in `crates/hl7/fuzz` run the same
//! harnesses under libFuzzer.

use hl7::ack::{AckBuilder, AckCode, AckError};
use hl7::{Charset, DateTime, Delimiters, Message, MessageBuilder, Path};
use proptest::prelude::*;

use crate::fixtures::{self, cr};
use crate::writer::leaves;

/// Five distinct delimiter characters.
fn delimiters() -> impl Strategy<Value = Delimiters> {
    let candidates: Vec<char> = "|^~\\&#*!@%$+/:;=?_".chars().collect();
    proptest::sample::subsequence(candidates, 5)
        .prop_shuffle()
        .prop_map(|c| Delimiters::new(c[0], c[1], c[2], c[3], c[4]).expect("distinct punctuation"))
}

/// Text that exercises escaping: delimiters, line breaks, non-ASCII.
fn text() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-zA-Z0-9 .|^~\\\\&#*!@%$+/:;=?_\\t\\n\\ré€李]{0,8}")
        .expect("valid regex")
}

/// A field as repetitions of components of sub-components.
type FieldTree = Vec<Vec<Vec<String>>>;

fn field_tree() -> impl Strategy<Value = FieldTree> {
    prop::collection::vec(
        prop::collection::vec(prop::collection::vec(text(), 1..3), 1..3),
        1..3,
    )
}

#[derive(Debug, Clone)]
struct GeneratedMessage {
    delimiters: Delimiters,
    header: Vec<(usize, FieldTree)>,
    segments: Vec<(&'static str, Vec<FieldTree>)>,
}

fn generated_message() -> impl Strategy<Value = GeneratedMessage> {
    let ids = prop::sample::select(vec!["PID", "PV1", "OBX", "NTE", "ZX1", "EVN"]);
    (
        delimiters(),
        prop::collection::vec((3usize..13, field_tree()), 0..4),
        prop::collection::vec((ids, prop::collection::vec(field_tree(), 0..5)), 0..6),
    )
        .prop_map(|(delimiters, header, segments)| GeneratedMessage {
            delimiters,
            header,
            segments,
        })
}

/// Calls `visit` with the path and text of every leaf of a field.
fn for_each_leaf(
    segment: &str,
    occurrence: usize,
    field: usize,
    tree: &FieldTree,
    mut visit: impl FnMut(Path, &str),
) {
    for (r, repetition) in tree.iter().enumerate() {
        for (c, component) in repetition.iter().enumerate() {
            for (s, text) in component.iter().enumerate() {
                let path = format!(
                    "{segment}({occurrence})-{field}({}).{}.{}",
                    r + 1,
                    c + 1,
                    s + 1
                );
                visit(path.parse().expect("generated paths are valid"), text);
            }
        }
    }
}

fn build(generated: &GeneratedMessage) -> (MessageBuilder, Vec<(Path, String)>) {
    let mut builder = MessageBuilder::new(generated.delimiters);
    let mut expected = Vec::new();
    let mut set = |builder: &mut MessageBuilder, path: Path, text: &str| {
        builder
            .set(&path, text)
            .expect("generated paths name existing or next segments");
        expected.retain(|(p, _): &(Path, String)| *p != path);
        expected.push((path, text.to_owned()));
    };
    for (field, tree) in &generated.header {
        for_each_leaf("MSH", 1, *field, tree, |path, text| {
            set(&mut builder, path, text)
        });
    }
    let mut occurrences = std::collections::HashMap::new();
    for (id, fields) in &generated.segments {
        let occurrence = occurrences.entry(*id).or_insert(0);
        *occurrence += 1;
        if fields.is_empty() {
            // A segment without fields still exists.
            set(
                &mut builder,
                format!("{id}({occurrence})-1").parse().unwrap(),
                "",
            );
        }
        for (i, tree) in fields.iter().enumerate() {
            for_each_leaf(id, *occurrence, i + 1, tree, |path, text| {
                set(&mut builder, path, text)
            });
        }
    }
    (builder, expected)
}

/// Reads every part of a message through every accessor, as a consumer would.
fn touch_everything(message: &Message<'_>) -> usize {
    let mut n = 0;
    for segment in message.segments() {
        n += segment.as_str().len() + segment.occurrence();
        for field in segment.fields() {
            n += field.decoded().len() + field.n_repetitions();
            for repetition in field.repetitions() {
                for component in repetition.components() {
                    n += component.tokens().count();
                    for sub in component.subcomponents() {
                        n += sub.decoded().len() + usize::from(sub.is_null());
                    }
                }
            }
        }
    }
    let msh = message.msh();
    n += msh.message_type().trigger().map_or(0, |t| t.len());
    n += usize::from(msh.datetime().is_ok()) + usize::from(msh.accept_ack_type().is_ok());
    if let Some(pid) = message.pid() {
        n += pid
            .identifiers()
            .filter_map(|cx| cx.assigning_authority().namespace_id())
            .count();
        n += pid.names().filter_map(|xpn| xpn.family_name()).count();
        n += usize::from(pid.birth_datetime().is_ok());
    }
    for obx in message.observations() {
        n +=
            obx.value().map_or(0, |v| v.len()) + obx.abnormal_flags().count() + obx.notes().count();
        n += usize::from(obx.observation_datetime().is_ok());
    }
    for obr in message.observation_requests() {
        n += obr.observations().count();
    }
    n += format!("{message:?}").len();
    n
}

/// Messages built from segments with random ids, contents and terminators:
/// most parse, and the rest fail in the parser's later checks.
fn hl7ish_bytes() -> impl Strategy<Value = Vec<u8>> {
    let header = prop::sample::select(vec![
        "MSH|^~\\&|",
        "MSH#*!@%#",
        "MSH|^~\\&#|",
        "MSH|^~\\|",
        "MSH|",
        "\u{feff}MSH|^~\\&|",
        "",
    ]);
    let id = prop::sample::select(vec![
        "PID", "OBX", "NTE", "ZX1", "EVN", "PV1", "OBR", "pid", "MSH", "BTS", "X",
    ]);
    let content =
        prop::collection::vec(prop::sample::select(b"|^~\\&#*!@%aZ09 .\"".to_vec()), 0..40);
    let terminator = prop::sample::select(vec!["\r", "\n", "\r\n", "\r\r", ""]);
    (
        header,
        content.clone(),
        prop::collection::vec((terminator, id, content), 0..12),
    )
        .prop_map(|(header, first, segments)| {
            let mut out = header.as_bytes().to_vec();
            out.extend(first);
            for (terminator, id, content) in segments {
                out.extend(terminator.as_bytes());
                out.extend(id.as_bytes());
                out.push(b'|');
                out.extend(content);
            }
            out
        })
}

/// A real message with a few random edits.
fn mutated_fixture() -> impl Strategy<Value = Vec<u8>> {
    let fixture = prop::sample::select(vec![
        fixtures::ADT_A01,
        fixtures::ADT_A03,
        fixtures::ADT_A04,
        fixtures::ADT_A08,
        fixtures::ADT_A40,
        fixtures::ORU_R01,
    ]);
    let edit = (
        any::<prop::sample::Index>(),
        prop::sample::select(b"|^~\\&#*!@%\r\n\xe9\xff\x00X".to_vec()),
        0u8..3,
    );
    (fixture, prop::collection::vec(edit, 1..8)).prop_map(|(lines, edits)| {
        let mut bytes = cr(lines);
        for (at, byte, kind) in edits {
            let i = at.index(bytes.len());
            match kind {
                0 => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ => {
                    bytes.remove(i);
                }
            }
        }
        bytes
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn write_then_parse_round_trips_any_generated_message(generated in generated_message()) {
        let (builder, expected) = build(&generated);
        let bytes = builder.to_bytes().unwrap();
        let message = Message::parse(&bytes).unwrap();
        prop_assert_eq!(message.delimiters(), generated.delimiters);
        for (path, text) in &expected {
            let value = message.get(path).map(|v| v.decoded().into_owned()).unwrap_or_default();
            prop_assert_eq!(&value, text, "at {}", path);
        }
        // Writing the parsed message gives the same bytes back.
        prop_assert_eq!(message.to_bytes(), bytes.clone());
        let again = MessageBuilder::from_message(&message).to_bytes().unwrap();
        prop_assert_eq!(again, bytes);
    }

    #[test]
    fn parsing_any_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(message) = Message::parse(&bytes) {
            touch_everything(&message);
        }
    }

    #[test]
    fn parsing_hl7_like_bytes_never_panics_and_round_trips(bytes in hl7ish_bytes()) {
        check_parse_round_trip(&bytes)?;
    }

    #[test]
    fn parsing_mutated_real_messages_never_panics_and_round_trips(bytes in mutated_fixture()) {
        check_parse_round_trip(&bytes)?;
    }

    #[test]
    fn an_ack_for_any_bytes_is_a_message_that_parses(bytes in prop_oneof![hl7ish_bytes(), mutated_fixture()]) {
        let timestamp = DateTime::from_ymd(2024, 1, 1).unwrap();
        let ack = match Message::parse(&bytes) {
            Ok(message) => AckBuilder::new(&message, AckCode::ApplicationAccept, "A-1", timestamp).build(),
            Err(error) => AckBuilder::for_unparsed(&bytes, AckCode::ApplicationReject, "A-1", timestamp)
                .error(AckError::from_parse_error(&error))
                .build(),
        };
        let parsed = Message::parse(&ack);
        prop_assert!(parsed.is_ok(), "{:?}", parsed.err());
        let parsed = parsed.unwrap();
        let control_id = parsed.msh().control_id();
        prop_assert_eq!(control_id.as_deref(), Some("A-1"));
        prop_assert!(parsed.segment("MSA").is_some());
    }

    #[test]
    fn escaping_then_decoding_gives_any_text_back(text in text(), delimiters in delimiters()) {
        let escaped = hl7::escape::encode(&text, &delimiters);
        prop_assert!(!escaped.contains(['\r', '\n', delimiters.field(), delimiters.component(), delimiters.repetition(), delimiters.subcomponent()]));
        let decoded = hl7::escape::decode(&escaped, &delimiters, Charset::Utf8);
        prop_assert_eq!(decoded.as_ref(), text.as_str());
    }

    #[test]
    fn decoding_any_text_never_panics(text in ".{0,64}", delimiters in delimiters()) {
        let _ = hl7::escape::decode(&text, &delimiters, Charset::Latin1);
        let _ = hl7::escape::tokens(&text, &delimiters).count();
    }

    #[test]
    fn any_text_parses_as_a_path_or_fails_cleanly(text in "[A-Z0-9()\\-.]{0,16}") {
        if let Ok(path) = text.parse::<Path>() {
            prop_assert_eq!(path.to_string().parse::<Path>(), Ok(path));
        }
    }

    #[test]
    fn any_text_parses_as_a_datetime_or_fails_cleanly(text in "[0-9+\\-. ]{0,24}") {
        if let Ok(value) = DateTime::parse(&text) {
            prop_assert_eq!(DateTime::parse(&value.to_string()), Ok(value));
        }
    }
}

/// Parses, and when that works, writes, parses again and compares.
fn check_parse_round_trip(bytes: &[u8]) -> Result<(), TestCaseError> {
    let Ok(message) = Message::parse(bytes) else {
        return Ok(());
    };
    touch_everything(&message);
    let written = message.to_bytes();
    let again = Message::parse(&written);
    prop_assert!(again.is_ok(), "rewritten message fails: {:?}", again.err());
    let again = again.unwrap();
    prop_assert_eq!(leaves(&again), leaves(&message));
    prop_assert_eq!(again.to_bytes(), written);
    Ok(())
}
