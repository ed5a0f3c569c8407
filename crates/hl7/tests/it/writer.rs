use hl7::{Charset, Delimiters, Message, MessageBuilder, Path, WriteError};

use crate::fixtures::{self, ADT_A01, ORU_R01, cr, join};

/// Every value of a message, decoded, at every depth, with its position.
pub fn leaves(message: &Message<'_>) -> Vec<(usize, usize, usize, usize, usize, String)> {
    let mut out = Vec::new();
    for (s, segment) in message.segments().enumerate() {
        for (f, field) in segment.fields().enumerate() {
            for (r, repetition) in field.repetitions().enumerate() {
                for (c, component) in repetition.components().enumerate() {
                    for (u, sub) in component.subcomponents().enumerate() {
                        out.push((s, f, r, c, u, sub.decoded().into_owned()));
                    }
                }
            }
        }
    }
    out
}

#[test]
fn every_fixture_round_trips_through_write_and_parse() {
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
        let written = message.to_bytes();
        assert_eq!(written, bytes);
        let again = Message::parse(&written).unwrap();
        assert_eq!(leaves(&again), leaves(&message));
    }
}

#[test]
fn writing_normalizes_line_endings_to_carriage_returns() {
    let message_bytes = join(ORU_R01, "\r\n");
    let message = Message::parse(&message_bytes).unwrap();
    assert_eq!(message.to_bytes(), cr(ORU_R01));
}

#[test]
fn a_built_message_escapes_delimiters_in_values() {
    let mut builder = MessageBuilder::new(Delimiters::STANDARD);
    builder
        .msh()
        .set_field(3, "TENET")
        .set_component(9, 1, "ORU")
        .set_component(9, 2, "R01")
        .set_field(10, "CTRL|1")
        .set_field(12, "2.5.1");
    builder
        .add_segment("NTE")
        .set_field(1, "1")
        .set_field(3, "A|B^C~D\\E&F\nnext line");
    let text = builder.to_text();
    assert_eq!(
        text,
        "MSH|^~\\&|TENET||||||ORU^R01|CTRL\\F\\1||2.5.1||||||UNICODE UTF-8\r\
         NTE|1||A\\F\\B\\S\\C\\R\\D\\E\\E\\T\\F\\.br\\next line\r"
    );
    let bytes = builder.to_bytes().unwrap();
    let message = Message::parse(&bytes).unwrap();
    assert_eq!(message.msh().control_id().as_deref(), Some("CTRL|1"));
    assert_eq!(
        message.notes().next().unwrap().comment().as_deref(),
        Some("A|B^C~D\\E&F\nnext line")
    );
}

#[test]
fn a_built_message_parses_back_to_the_same_typed_values() {
    let d = Delimiters::new('#', '*', '!', '@', '%').unwrap();
    let mut builder = MessageBuilder::new(d);
    builder
        .msh()
        .set_field(3, "TENET")
        .set_component(9, 1, "ADT")
        .set_component(9, 2, "A04")
        .set_field(10, "C-1")
        .set_field(11, "P")
        .set_field(12, "2.5.1");
    builder
        .add_segment("PID")
        .set_field(1, "1")
        .set_repetition(3, 1, &["MRN-1", "", "", "TENET", "MR"])
        .set_repetition(3, 2, &["MRN#2", "", "", "OTHER", "MR"])
        .set_subcomponent(5, 1, 1, "D'ÂNGELO*JR")
        .set_component(5, 2, "Zoë")
        .set_field(7, "19991231")
        .set_field(8, "F");
    let bytes = builder.to_bytes().unwrap();
    let message = Message::parse(&bytes).unwrap();
    assert_eq!(message.delimiters(), d);
    let pid = message.pid().unwrap();
    let ids: Vec<String> = pid
        .identifiers()
        .map(|cx| cx.id().unwrap().into_owned())
        .collect();
    assert_eq!(ids, ["MRN-1", "MRN#2"]);
    let name = pid.names().next().unwrap();
    assert_eq!(name.family_name().as_deref(), Some("D'ÂNGELO*JR"));
    assert_eq!(name.given_name().as_deref(), Some("Zoë"));
    assert_eq!(
        pid.birth_datetime().unwrap().unwrap().to_string(),
        "19991231"
    );
}

#[test]
fn a_builder_from_a_message_changes_one_value_and_keeps_the_rest() {
    let bytes = cr(ADT_A01);
    let message = Message::parse(&bytes).unwrap();
    let mut builder = MessageBuilder::from_message(&message);
    let path: Path = "PID-5(1).2".parse().unwrap();
    builder.set(&path, "MARIE").unwrap();
    let changed_bytes = builder.to_bytes().unwrap();
    let changed = Message::parse(&changed_bytes).unwrap();
    assert_eq!(changed.get(&path).unwrap().decoded(), "MARIE");
    let before = leaves(&message);
    let after = leaves(&changed);
    let differences: Vec<_> = before.iter().zip(&after).filter(|(a, b)| a != b).collect();
    assert_eq!(differences.len(), 1);
    assert_eq!(before.len(), after.len());
}

#[test]
fn setting_a_path_on_the_next_occurrence_appends_the_segment() {
    let mut builder = MessageBuilder::new(Delimiters::STANDARD);
    builder.set(&"OBX-5".parse().unwrap(), "first").unwrap();
    builder.set(&"OBX(2)-5".parse().unwrap(), "second").unwrap();
    assert_eq!(
        builder
            .set(&"OBX(4)-5".parse().unwrap(), "fourth")
            .unwrap_err(),
        WriteError::NoSuchSegment {
            path: "OBX(4)-5".parse().unwrap()
        }
    );
    let bytes = builder.to_bytes().unwrap();
    let message = Message::parse(&bytes).unwrap();
    let values: Vec<String> = message
        .observations()
        .map(|o| o.value().unwrap().into_owned())
        .collect();
    assert_eq!(values, ["first", "second"]);
}

#[test]
fn setting_msh_2_through_a_path_is_refused() {
    let mut builder = MessageBuilder::new(Delimiters::STANDARD);
    assert!(matches!(
        builder.set(&"MSH-2".parse().unwrap(), "xxxx"),
        Err(WriteError::DelimiterField { .. })
    ));
}

#[test]
fn a_latin1_builder_refuses_a_character_it_cannot_hold() {
    let mut builder = MessageBuilder::new(Delimiters::STANDARD).with_charset(Charset::Latin1);
    builder.add_segment("NTE").set_field(3, "Price: 5 €");
    let err = builder.to_bytes().unwrap_err();
    assert_eq!(
        err.to_string(),
        "segment 2 (NTE) holds U+20AC, which 8859/1 cannot represent"
    );
    let mut builder = MessageBuilder::new(Delimiters::STANDARD).with_charset(Charset::Latin1);
    builder.add_segment("NTE").set_field(3, "Crème brûlée");
    let bytes = builder.to_bytes().unwrap();
    assert!(bytes.windows(2).any(|w| w == b"\xe8m"));
    let message = Message::parse(&bytes).unwrap();
    assert_eq!(
        message.notes().next().unwrap().comment().as_deref(),
        Some("Crème brûlée")
    );
}

#[test]
fn debug_of_a_builder_shows_segment_ids_only() {
    let mut builder = MessageBuilder::new(Delimiters::STANDARD);
    builder.add_segment("PID").set_field(5, "DOE^JANE");
    let shown = format!("{builder:?}");
    assert!(!shown.contains("DOE"), "{shown}");
    assert!(shown.contains("PID"), "{shown}");
}
