use hl7::Message;
use hl7::batch::{self, BatchError};

use crate::fixtures::{ADT_A01, ADT_A03, ADT_A04, ORU_R01, cr, join};

fn batch_file(terminator: &str) -> Vec<u8> {
    let mut lines: Vec<&str> = vec![
        r"FHS|^~\&|EPIC|MERCY|TENET|CLINIC|20240320000000-0500||nightly-0320.hl7",
        r"BHS|^~\&|EPIC|MERCY|TENET|CLINIC|20240320000000-0500",
    ];
    lines.extend_from_slice(ADT_A01);
    lines.extend_from_slice(ADT_A03);
    lines.push("BTS|2|end of ADT batch");
    lines.push(r"BHS|^~\&|LABSYS|MERCY_LAB|TENET|CLINIC|20240320000000-0500");
    lines.extend_from_slice(ORU_R01);
    lines.push("BTS|1");
    lines.push("FTS|2");
    join(&lines, terminator)
}

#[test]
fn a_batch_file_splits_into_its_messages() {
    let bytes = batch_file("\r");
    let batch = batch::split(&bytes).unwrap();
    assert_eq!(batch.len(), 3);
    assert_eq!(batch.n_batches(), 2);
    assert!(batch.file_header().unwrap().starts_with(b"FHS|"));
    assert_eq!(batch.messages()[0], &cr(ADT_A01)[..]);
    assert_eq!(batch.messages()[1], &cr(ADT_A03)[..]);
    assert_eq!(batch.messages()[2], &cr(ORU_R01)[..]);
    assert_eq!(
        format!("{batch:?}"),
        "Batch { messages: 3, batches: 2, file_header: true }"
    );
}

#[test]
fn batch_messages_parse_one_by_one() {
    let bytes = batch_file("\r");
    let batch = batch::split(&bytes).unwrap();
    let types: Vec<String> = batch
        .messages()
        .iter()
        .map(|bytes| {
            let message = Message::parse(bytes).unwrap();
            let message_type = message.msh().message_type();
            format!(
                "{}^{}",
                message_type.code().unwrap(),
                message_type.trigger().unwrap()
            )
        })
        .collect();
    assert_eq!(types, ["ADT^A01", "ADT^A03", "ORU^R01"]);
}

#[test]
fn a_batch_with_crlf_line_endings_splits_the_same_way() {
    let bytes = batch_file("\r\n");
    let batch = batch::split(&bytes).unwrap();
    assert_eq!(batch.len(), 3);
    assert_eq!(batch.messages()[1], &join(ADT_A03, "\r\n")[..]);
    let message = Message::parse(batch.messages()[1]).unwrap();
    assert_eq!(message.n_segments(), ADT_A03.len());
}

#[test]
fn a_file_of_plain_messages_without_batch_segments_splits_too() {
    let mut bytes = join(ADT_A04, "\n");
    bytes.extend(join(ADT_A01, "\n"));
    let batch = batch::split(&bytes).unwrap();
    assert_eq!(batch.len(), 2);
    assert_eq!(batch.n_batches(), 0);
    assert!(batch.file_header().is_none());
}

#[test]
fn a_truncated_batch_is_caught_by_its_trailer_count() {
    let mut lines: Vec<&str> = vec![r"BHS|^~\&|EPIC|MERCY"];
    lines.extend_from_slice(ADT_A01);
    lines.push("BTS|2");
    let err = batch::split(&cr(&lines)).unwrap_err();
    assert_eq!(
        err,
        BatchError::CountMismatch {
            segment: 10,
            found: "BTS".parse().unwrap(),
            declared: 2,
            counted: 1
        }
    );
    assert_eq!(
        err.to_string(),
        "segment 10 (BTS) declares 2, but 1 were found"
    );
}

#[test]
fn a_file_trailer_with_the_wrong_batch_count_is_refused() {
    let bytes = b"FHS|^~\\&\rBHS|^~\\&\rMSH|^~\\&|A\rBTS|1\rFTS|3\r";
    assert!(matches!(
        batch::split(bytes),
        Err(BatchError::CountMismatch {
            declared: 3,
            counted: 1,
            ..
        })
    ));
}

#[test]
fn a_non_numeric_count_is_refused() {
    let bytes = b"BHS|^~\\&\rMSH|^~\\&|A\rBTS|two\r";
    assert!(matches!(
        batch::split(bytes),
        Err(BatchError::InvalidCount { segment: 3, .. })
    ));
}

#[test]
fn fhs_after_the_first_segment_is_refused() {
    let bytes = b"MSH|^~\\&|A\rFHS|^~\\&\r";
    assert!(matches!(
        batch::split(bytes),
        Err(BatchError::UnexpectedSegment { segment: 2, .. })
    ));
}

#[test]
fn segments_after_fts_are_refused() {
    let bytes = b"FHS|^~\\&\rMSH|^~\\&|A\rFTS|0\rMSH|^~\\&|B\r";
    assert!(matches!(
        batch::split(bytes),
        Err(BatchError::UnexpectedSegment { segment: 4, .. })
    ));
}

#[test]
fn the_message_limit_is_enforced() {
    let bytes = batch_file("\r");
    assert_eq!(
        batch::split_with(&bytes, 2).unwrap_err(),
        BatchError::TooManyMessages { messages_max: 2 }
    );
}
