//! Differential tests: every non-empty value that both this crate and er7 (an
//! independent HL7 v2 decoder, the `oracle` dev-dependency) read from a message
//! sits at the same place, with the same raw text, and decodes to the same text.
//!
//! One deliberate difference, taken into account by [`oracle_decoded`]: er7
//! keeps `\.br\` verbatim, while this crate renders it as a line feed, as
//! `hl7::escape` documents. The standard (v2.5.1 section 2.7.6) lists `\.br\`
//! among the formatting commands of FT values and leaves rendering to the
//! receiver, so both are allowed; er7 still decides where the sequence ends.
//!
//! The messages compared here declare UTF-8 in MSH-18: er7 reads the bytes of
//! `\Xhh\` as UTF-8 whatever the message says, while this crate reads them in
//! the message's character set (ASCII when MSH-18 is empty, v2.5.1 section
//! 2.15.9.18), so `\XC3A9\` is "é" in both only under UTF-8.

use std::collections::BTreeMap;

use hl7::Message;
use oracle::escape::{Escape, escapes, unescape};
use proptest::prelude::*;

use crate::fixtures::{self, cr};

/// Where a leaf sits: segment index, then field, repetition, component and
/// sub-component, each numbered from 1.
type Place = (usize, usize, usize, usize, usize);

/// Raw and decoded text of every non-empty leaf. Empty leaves are left out:
/// er7 represents an empty field as having no repetitions at all.
type Leaves = BTreeMap<Place, (String, String)>;

/// The oracle's decoding of one leaf, with `\.br\` as a line feed (see the
/// module documentation); everything else is er7's own `unescape`.
fn oracle_decoded(raw: &str, separators: &oracle::Separators) -> String {
    let mut out = String::new();
    for token in escapes(raw, separators) {
        match token {
            Escape::Formatting("br") => out.push('\n'),
            token => {
                let mut er7 = String::new();
                token.write_er7(&mut er7, separators);
                out.push_str(&unescape(&er7, separators));
            }
        }
    }
    out
}

fn oracle_leaves(text: &str) -> Leaves {
    let message = oracle::parse(text).expect("the oracle parses the message");
    let separators = &message.separators;
    let mut leaves = Leaves::new();
    for (i, segment) in message.segments.iter().enumerate() {
        // MSH-1 and MSH-2 are the delimiters, never split or decoded by either.
        let first = if segment.is_header() { 3 } else { 1 };
        for (f, field) in segment.fields.iter().enumerate().skip(first - 1) {
            for (r, repetition) in field.repetitions.iter().enumerate() {
                for (c, component) in repetition.components.iter().enumerate() {
                    for (s, sub) in component.subcomponents.iter().enumerate() {
                        if !sub.raw.is_empty() {
                            let decoded = oracle_decoded(&sub.raw, separators);
                            leaves.insert(
                                (i, f + 1, r + 1, c + 1, s + 1),
                                (sub.raw.clone(), decoded),
                            );
                        }
                    }
                }
            }
        }
    }
    leaves
}

fn our_leaves(message: &Message<'_>) -> Leaves {
    let mut leaves = Leaves::new();
    for (i, segment) in message.segments().enumerate() {
        let header = matches!(segment.id().as_str(), "MSH" | "BHS" | "FHS");
        let first = if header { 3 } else { 1 };
        for (f, field) in segment.fields().enumerate().skip(first - 1) {
            for (r, repetition) in field.repetitions().enumerate() {
                for (c, component) in repetition.components().enumerate() {
                    for (s, sub) in component.subcomponents().enumerate() {
                        if !sub.as_str().is_empty() {
                            let value = (sub.as_str().to_owned(), sub.decoded().into_owned());
                            leaves.insert((i, f + 1, r + 1, c + 1, s + 1), value);
                        }
                    }
                }
            }
        }
    }
    leaves
}

/// Asserts that both libraries read the same leaves from `bytes`, and that
/// there is something to compare.
fn assert_agrees(bytes: &[u8]) {
    let message = Message::parse(bytes).expect("the message parses");
    let text = std::str::from_utf8(bytes).expect("test messages are UTF-8");
    let ours = our_leaves(&message);
    assert!(
        !ours.is_empty(),
        "a test message without values compares nothing"
    );
    let theirs = oracle_leaves(text);
    for (place, (raw, decoded)) in &theirs {
        assert_eq!(
            ours.get(place).map(|(r, _)| r),
            Some(raw),
            "raw text at {place:?}"
        );
        assert_eq!(
            &ours[place].1, decoded,
            "decoded text of {raw:?} at {place:?}"
        );
    }
    assert_eq!(
        ours.len(),
        theirs.len(),
        "the same number of non-empty values"
    );
}

#[test]
fn every_fixture_decodes_as_the_oracle_decodes() {
    for lines in [
        fixtures::ADT_A01,
        fixtures::ADT_A03,
        fixtures::ADT_A04,
        fixtures::ADT_A08,
        fixtures::ADT_A40,
        fixtures::ORU_R01,
    ] {
        assert_agrees(&cr(lines));
    }
}

#[test]
fn every_escape_sequence_decodes_as_the_oracle_decodes() {
    let sequences = [
        r"\F\",
        r"\S\",
        r"\T\",
        r"\R\",
        r"\E\",
        r"\X41\",
        r"\X0D0A\",
        r"\x41\",
        r"\X4\",
        r"\X\",
        r"\XZZ\",
        r"\X414\",
        r"\XC3A9\",
        r"\.br\",
        r"\.sp 2\",
        r"\H\",
        r"\N\",
        r"\Zlocal\",
        r"\C2842\",
        r"\M2442\",
        r"\Q\",
        r"\\",
        r"\",
        r"a\b",
        r"\E\E\",
    ];
    for sequence in sequences {
        let bytes =
            format!("MSH|^~\\&|A|||||||||||||||UNICODE UTF-8\rNTE|1|x{sequence}y|{sequence}\r");
        assert_agrees(bytes.as_bytes());
    }
}

/// One leaf: plain text, non-ASCII text, or an escape sequence of any kind,
/// well-formed or not (a lone escape character included).
fn leaf() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => proptest::string::string_regex("[a-zA-Z0-9 .,'/-]{1,6}").expect("valid regex"),
        1 => proptest::string::string_regex("[éü€李]{1,2}").expect("valid regex"),
        3 => prop::sample::select(vec![
            r"\F\", r"\S\", r"\T\", r"\R\", r"\E\", r"\X41\", r"\X0D\", r"\X7e\", r"\X4\",
            r"\XZZ\", r"\.br\", r"\.in+4\", r"\H\", r"\N\", r"\Z99\", r"\C2842\", r"\Q\", r"\",
        ])
        .prop_map(str::to_owned),
    ];
    prop::collection::vec(piece, 1..4).prop_map(|pieces| pieces.concat())
}

fn field() -> impl Strategy<Value = String> {
    let component = prop::collection::vec(leaf(), 1..3).prop_map(|s| s.join("&"));
    let repetition = prop::collection::vec(component, 1..3).prop_map(|c| c.join("^"));
    prop::collection::vec(repetition, 1..3).prop_map(|r| r.join("~"))
}

/// A simple message: an MSH with standard delimiters, then segments of
/// generated fields, some left empty.
fn simple_message() -> impl Strategy<Value = String> {
    let id = prop::sample::select(vec!["PID", "OBX", "NTE", "ZX1"]);
    let fields = prop::collection::vec(prop_oneof![1 => Just(String::new()), 3 => field()], 1..6);
    prop::collection::vec((id, fields), 1..5).prop_map(|segments| {
        let mut text =
            String::from("MSH|^~\\&|APP|FAC|||20240101||ADT^A01|1|P|2.5||||||UNICODE UTF-8\r");
        for (id, fields) in segments {
            text.push_str(id);
            for field in fields {
                text.push('|');
                text.push_str(&field);
            }
            text.push('\r');
        }
        text
    })
}

proptest! {
    #[test]
    fn generated_messages_decode_as_the_oracle_decodes(text in simple_message()) {
        assert_agrees(text.as_bytes());
    }
}
