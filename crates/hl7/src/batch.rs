//! HL7 batch files: `[FHS] {[BHS] {MSH …} [BTS]} [FTS]`, and plain files of
//! messages one after another, split into one byte slice per message.
//!
//! Splitting reads only segment ids and the counts in BTS-1 and FTS-1; each
//! message is parsed later, on its own, with [`crate::Message::parse`]. This
//! module must never copy a message, and never accept more messages than
//! [`BATCH_MESSAGES_MAX`] or more bytes than [`BATCH_BYTES_MAX`].

use std::fmt;

use crate::error::SegmentId;

/// The largest batch file, in bytes, that [`split`] accepts: 256 MiB.
pub const BATCH_BYTES_MAX: usize = 256 * 1024 * 1024;

/// The most messages one batch file may hold.
pub const BATCH_MESSAGES_MAX: usize = 100_000;

/// The messages of a batch file, each a slice of the input from its MSH to
/// the terminator of its last segment.
#[derive(Clone)]
pub struct Batch<'a> {
    messages: Vec<&'a [u8]>,
    file_header: Option<&'a [u8]>,
    n_batches: usize,
}

impl<'a> Batch<'a> {
    /// The messages, in order.
    pub fn messages(&self) -> &[&'a [u8]] {
        &self.messages
    }

    /// The messages, in order.
    pub fn into_messages(self) -> Vec<&'a [u8]> {
        self.messages
    }

    /// How many messages the file holds.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Whether the file holds no message.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// How many BHS segments the file holds.
    pub fn n_batches(&self) -> usize {
        self.n_batches
    }

    /// The FHS segment, when there is one.
    pub fn file_header(&self) -> Option<&'a [u8]> {
        self.file_header
    }
}

impl fmt::Debug for Batch<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batch")
            .field("messages", &self.messages.len())
            .field("batches", &self.n_batches)
            .field("file_header", &self.file_header.is_some())
            .finish()
    }
}

/// Why bytes cannot be split into messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// No segment at all.
    #[error("the batch is empty")]
    Empty,
    /// More than [`BATCH_BYTES_MAX`] bytes.
    #[error("the batch is {bytes} bytes long, more than the limit of {bytes_max}")]
    TooLarge {
        /// The batch's length.
        bytes: usize,
        /// The limit.
        bytes_max: usize,
    },
    /// More than [`BATCH_MESSAGES_MAX`] messages.
    #[error("the batch holds more than {messages_max} messages")]
    TooManyMessages {
        /// The limit.
        messages_max: usize,
    },
    /// A segment where the batch grammar allows none.
    #[error("segment {segment}{}: {reason}", found.map(|id| format!(" ({id})")).unwrap_or_default())]
    UnexpectedSegment {
        /// The segment's 1-based position in the file.
        segment: usize,
        /// Its id, when valid.
        found: Option<SegmentId>,
        /// What the grammar expected.
        reason: &'static str,
    },
    /// BTS-1 or FTS-1 is not a number.
    #[error("segment {segment} ({found}): field 1 must be a count")]
    InvalidCount {
        /// The segment's 1-based position in the file.
        segment: usize,
        /// `BTS` or `FTS`.
        found: SegmentId,
    },
    /// BTS-1 or FTS-1 disagrees with what the file holds: it was cut short or
    /// padded.
    #[error("segment {segment} ({found}) declares {declared}, but {counted} were found")]
    CountMismatch {
        /// The segment's 1-based position in the file.
        segment: usize,
        /// `BTS` (counting messages) or `FTS` (counting batches).
        found: SegmentId,
        /// The count it declares.
        declared: usize,
        /// The count found.
        counted: usize,
    },
}

/// Splits a batch file, or a file of messages one after another, into
/// messages. Segments may end with CR, LF or CR LF.
pub fn split(bytes: &[u8]) -> Result<Batch<'_>, BatchError> {
    split_with(bytes, BATCH_MESSAGES_MAX)
}

/// Like [`split`], with a lower bound on the number of messages.
pub fn split_with(bytes: &[u8], messages_max: usize) -> Result<Batch<'_>, BatchError> {
    if bytes.len() > BATCH_BYTES_MAX {
        return Err(BatchError::TooLarge {
            bytes: bytes.len(),
            bytes_max: BATCH_BYTES_MAX,
        });
    }
    let messages_max = messages_max.min(BATCH_MESSAGES_MAX);
    let mut batch = Batch {
        messages: Vec::new(),
        file_header: None,
        n_batches: 0,
    };
    // The open message: where it starts, and where its last segment ends.
    let mut open: Option<(usize, usize)> = None;
    let mut n_in_batch = 0;
    let mut position = 0;
    let mut file_ended = false;
    let mut pos = 0;
    while pos < bytes.len() {
        let end = memchr::memchr2(b'\r', b'\n', &bytes[pos..])
            .map(|i| pos + i)
            .unwrap_or(bytes.len());
        let next = if bytes.get(end) == Some(&b'\r') && bytes.get(end + 1) == Some(&b'\n') {
            end + 2
        } else {
            (end + 1).min(bytes.len())
        };
        let line = &bytes[pos..end];
        let start = pos;
        pos = next;
        if line.is_empty() {
            continue;
        }
        position += 1;
        let id = SegmentId::from_bytes(line);
        let unexpected = |reason| BatchError::UnexpectedSegment {
            segment: position,
            found: id,
            reason,
        };
        if file_ended {
            return Err(unexpected("nothing may follow FTS"));
        }
        match id {
            Some(id) if id == "FHS" => {
                if position != 1 {
                    return Err(unexpected("FHS must be the first segment"));
                }
                batch.file_header = Some(line);
            }
            Some(id) if id == "BHS" => {
                close(&mut open, &mut batch.messages, bytes);
                batch.n_batches += 1;
                n_in_batch = 0;
            }
            Some(trailer) if trailer == "BTS" || trailer == "FTS" => {
                close(&mut open, &mut batch.messages, bytes);
                let counted = if trailer == "BTS" {
                    n_in_batch
                } else {
                    file_ended = true;
                    batch.n_batches
                };
                if let Some(declared) = declared_count(line, position, trailer)?
                    && declared != counted
                {
                    return Err(BatchError::CountMismatch {
                        segment: position,
                        found: trailer,
                        declared,
                        counted,
                    });
                }
            }
            Some(id) if id == "MSH" => {
                close(&mut open, &mut batch.messages, bytes);
                if batch.messages.len() == messages_max {
                    return Err(BatchError::TooManyMessages { messages_max });
                }
                open = Some((start, next));
                n_in_batch += 1;
            }
            _ => match &mut open {
                Some((_, message_end)) => *message_end = next,
                None => return Err(unexpected("a segment outside any message")),
            },
        }
    }
    close(&mut open, &mut batch.messages, bytes);
    if position == 0 {
        return Err(BatchError::Empty);
    }
    Ok(batch)
}

fn close<'a>(open: &mut Option<(usize, usize)>, messages: &mut Vec<&'a [u8]>, bytes: &'a [u8]) {
    if let Some((start, end)) = open.take() {
        messages.push(&bytes[start..end]);
    }
}

/// The count in field 1 of a BTS or FTS, when there is one.
fn declared_count(
    line: &[u8],
    position: usize,
    found: SegmentId,
) -> Result<Option<usize>, BatchError> {
    let Some(&separator) = line.get(3) else {
        return Ok(None);
    };
    let rest = &line[4.min(line.len())..];
    let field = rest.split(|&b| b == separator).next().unwrap_or(&[]);
    let text = String::from_utf8_lossy(field);
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| BatchError::InvalidCount {
            segment: position,
            found,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_concatenated_messages_are_split() {
        let batch = split(b"MSH|^~\\&|A\rPID|1\rMSH|^~\\&|B\rPID|2\r").unwrap();
        assert_eq!(
            batch.messages(),
            &[&b"MSH|^~\\&|A\rPID|1\r"[..], b"MSH|^~\\&|B\rPID|2\r"]
        );
        assert_eq!(batch.n_batches(), 0);
    }

    #[test]
    fn a_segment_before_any_message_is_refused() {
        assert!(matches!(
            split(b"PID|1\rMSH|^~\\&\r"),
            Err(BatchError::UnexpectedSegment { segment: 1, .. })
        ));
    }

    #[test]
    fn a_wrong_message_count_in_bts_is_refused() {
        assert!(matches!(
            split(b"BHS|^~\\&\rMSH|^~\\&\rBTS|2\r"),
            Err(BatchError::CountMismatch {
                declared: 2,
                counted: 1,
                ..
            })
        ));
    }

    #[test]
    fn only_blank_lines_are_empty() {
        assert_eq!(split(b"\r\n\r\n").unwrap_err(), BatchError::Empty);
    }
}
