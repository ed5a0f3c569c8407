//! Fuzzes the parser, the writer and the batch splitter with arbitrary bytes.
//!
//! Mirrors `parsing_any_bytes_never_panics` and
//! `parsing_hl7_like_bytes_never_panics_and_round_trips` in
//! `tests/it/props.rs`: no input may panic, and a message that parses must
//! write and parse back to the same values.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = hl7::Message::parse(data) {
        let values = touch_everything(&message);
        let written = message.to_bytes();
        let again = hl7::Message::parse(&written).expect("a written message parses");
        assert_eq!(touch_everything(&again), values);
        assert_eq!(again.to_bytes(), written);
        let ack = hl7::ack::AckBuilder::new(
            &message,
            hl7::ack::AckCode::ApplicationAccept,
            "FUZZ",
            hl7::DateTime::from_ymd(2024, 1, 1).expect("a valid date"),
        )
        .build();
        hl7::Message::parse(&ack).expect("an ACK parses");
    } else {
        let ack = hl7::ack::AckBuilder::for_unparsed(
            data,
            hl7::ack::AckCode::ApplicationReject,
            "FUZZ",
            hl7::DateTime::from_ymd(2024, 1, 1).expect("a valid date"),
        )
        .build();
        hl7::Message::parse(&ack).expect("an ACK for any bytes parses");
    }
    if let Ok(batch) = hl7::batch::split(data) {
        for message in batch.messages() {
            let _ = hl7::Message::parse(message);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = text.parse::<hl7::Path>();
        let _ = hl7::DateTime::parse(text);
    }
});

/// Reads every value at every depth, decoded, and every typed accessor.
fn touch_everything(message: &hl7::Message<'_>) -> Vec<String> {
    let mut values = Vec::new();
    for segment in message.segments() {
        for field in segment.fields() {
            for repetition in field.repetitions() {
                for component in repetition.components() {
                    for sub in component.subcomponents() {
                        values.push(sub.decoded().into_owned());
                    }
                }
            }
        }
    }
    let msh = message.msh();
    let _ = (
        msh.datetime(),
        msh.accept_ack_type(),
        msh.message_type().trigger(),
    );
    if let Some(pid) = message.pid() {
        let _ = pid
            .identifiers()
            .filter_map(|cx| cx.assigning_authority().namespace_id())
            .count();
        let _ = (pid.birth_datetime(), pid.names().count());
    }
    for obx in message.observations() {
        let _ = (obx.value(), obx.observation_datetime(), obx.notes().count());
    }
    let _ = format!("{message:?}");
    values
}
