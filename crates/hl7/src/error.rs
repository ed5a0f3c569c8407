//! Parse errors and warnings, each with the place in the message it concerns.
//!
//! Errors and warnings end up in logs and in ACKs, so they must never carry a
//! field's contents (PHI): they name positions, segment ids, limits and single
//! bytes, nothing more.

use std::fmt;

use crate::ack::ErrorCode;
use crate::charset::{Charset, UnsupportedCharset};
use crate::delimiters::DelimiterError;
use crate::message::LineEndings;

/// A segment id: three ASCII upper-case letters or digits, the first a letter
/// (`MSH`, `PID`, `ZPI`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SegmentId([u8; 3]);

impl SegmentId {
    /// Reads a segment id from the first three bytes of `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        match bytes {
            [a, b, c, ..]
                if a.is_ascii_uppercase()
                    && (b.is_ascii_uppercase() || b.is_ascii_digit())
                    && (c.is_ascii_uppercase() || c.is_ascii_digit()) =>
            {
                Some(SegmentId([*a, *b, *c]))
            }
            _ => None,
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // The bytes are ASCII letters and digits, checked in `from_bytes`.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }

    /// Whether this is a header segment whose field 1 is the field separator
    /// itself and field 2 the encoding characters (`MSH`, `FHS`, `BHS`).
    pub fn is_header(&self) -> bool {
        matches!(&self.0, b"MSH" | b"FHS" | b"BHS")
    }
}

impl std::str::FromStr for SegmentId {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        if s.len() == 3 {
            SegmentId::from_bytes(s.as_bytes()).ok_or(())
        } else {
            Err(())
        }
    }
}

impl PartialEq<str> for SegmentId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl PartialEq<&str> for SegmentId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl fmt::Debug for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where in a message something was found. Positions are 1-based, as HL7
/// counts them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// The segment's position in the message (the MSH is 1).
    pub segment: usize,
    /// The segment's id, when it has a valid one.
    pub segment_id: Option<SegmentId>,
    /// Which occurrence of that segment id this is (the third OBX is 3), when
    /// the id is known.
    pub occurrence: Option<usize>,
    /// The field, numbered as the standard numbers them (MSH-1 is the field
    /// separator), when the place is inside one.
    pub field: Option<usize>,
}

impl Location {
    pub(crate) fn msh(field: usize) -> Self {
        Location {
            segment: 1,
            segment_id: SegmentId::from_bytes(b"MSH"),
            occurrence: Some(1),
            field: Some(field),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "segment {}", self.segment)?;
        if let Some(id) = self.segment_id {
            write!(f, " ({id})")?;
        }
        if let Some(field) = self.field {
            match self.segment_id {
                Some(id) => write!(f, ", field {id}-{field}")?,
                None => write!(f, ", field {field}")?,
            }
        }
        Ok(())
    }
}

/// Why bytes are not an HL7 v2 message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// There are no bytes, or only segment terminators.
    #[error("the message is empty")]
    Empty,
    /// The message is longer than [`crate::Limits::message_bytes_max`].
    #[error("the message is {bytes} bytes long, more than the limit of {bytes_max}")]
    TooLarge {
        /// The message's length.
        bytes: usize,
        /// The limit.
        bytes_max: usize,
    },
    /// The message does not start with an MSH segment.
    #[error("a message must start with an MSH segment{}", match found {
        Some(id) => format!(", found {id}"),
        None => String::new(),
    })]
    MissingHeader {
        /// The segment id found instead, when valid.
        found: Option<SegmentId>,
    },
    /// The bytes are a batch (FHS/BHS) rather than one message.
    #[error("found {found}: this is a batch, split it with hl7::batch::split")]
    Batch {
        /// `FHS` or `BHS`.
        found: SegmentId,
    },
    /// MSH-1 or MSH-2 are unusable.
    #[error("invalid delimiters in MSH-1/MSH-2: {0}")]
    Delimiters(#[source] DelimiterError),
    /// MSH-18 names a character set this crate does not read.
    #[error(transparent)]
    UnsupportedCharset(#[from] UnsupportedCharset),
    /// A byte that the message's character set does not allow.
    #[error(
        "{location}: byte 0x{byte:02X} is not valid {charset} (MSH-18 declares the character set; empty means ASCII)"
    )]
    InvalidCharacter {
        /// The character set in force.
        charset: Charset,
        /// The first offending byte.
        byte: u8,
        /// Where it is.
        location: Location,
    },
    /// More segments than [`crate::Limits::segments_max`].
    #[error("the message has more than {segments_max} segments")]
    TooManySegments {
        /// The limit.
        segments_max: usize,
    },
    /// A segment with more fields than [`crate::Limits::fields_per_segment_max`].
    #[error("{location}: the segment has more than {fields_max} fields")]
    TooManyFields {
        /// The segment, and the first field past the limit.
        location: Location,
        /// The limit.
        fields_max: usize,
    },
    /// A segment that does not start with three upper-case letters or digits
    /// followed by the field separator.
    #[error(
        "{location}: a segment must start with an id of three upper-case letters or digits, followed by the field separator"
    )]
    InvalidSegmentId {
        /// The segment.
        location: Location,
    },
    /// In strict mode, a line feed where only a carriage return may end a segment.
    #[error(
        "{location}: a line feed ends the segment, but strict mode allows only a carriage return"
    )]
    NonStandardSegmentTerminator {
        /// The segment the line feed ends.
        location: Location,
    },
    /// A second MSH, or a batch segment, inside one message.
    #[error(
        "{location}: {found} inside a message; split batches and concatenated messages with hl7::batch::split"
    )]
    UnexpectedHeader {
        /// Where it is.
        location: Location,
        /// `MSH`, `FHS`, `BHS`, `BTS` or `FTS`.
        found: SegmentId,
    },
}

impl ParseError {
    /// Where in the message the error is, when it is at one place.
    pub fn location(&self) -> Option<Location> {
        match self {
            ParseError::Empty
            | ParseError::TooLarge { .. }
            | ParseError::TooManySegments { .. }
            | ParseError::Batch { .. } => None,
            ParseError::MissingHeader { .. } => Some(Location {
                segment: 1,
                segment_id: None,
                occurrence: None,
                field: None,
            }),
            ParseError::Delimiters(DelimiterError::WrongEncodingCharacterCount { .. }) => {
                Some(Location::msh(2))
            }
            ParseError::Delimiters(_) => Some(Location::msh(1)),
            ParseError::UnsupportedCharset(_) => Some(Location::msh(18)),
            ParseError::InvalidCharacter { location, .. }
            | ParseError::TooManyFields { location, .. }
            | ParseError::InvalidSegmentId { location }
            | ParseError::NonStandardSegmentTerminator { location }
            | ParseError::UnexpectedHeader { location, .. } => Some(*location),
        }
    }

    /// The HL7 error code (table 0357) that an ACK for this error carries.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            ParseError::UnsupportedCharset(_) => ErrorCode::TableValueNotFound,
            ParseError::MissingHeader { .. }
            | ParseError::Batch { .. }
            | ParseError::InvalidSegmentId { .. }
            | ParseError::UnexpectedHeader { .. }
            | ParseError::NonStandardSegmentTerminator { .. } => ErrorCode::SegmentSequenceError,
            ParseError::Empty
            | ParseError::TooLarge { .. }
            | ParseError::Delimiters(_)
            | ParseError::InvalidCharacter { .. }
            | ParseError::TooManySegments { .. }
            | ParseError::TooManyFields { .. } => ErrorCode::DataTypeError,
        }
    }
}

/// Something the lenient parser accepted but that the standard does not allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseWarning {
    /// Segments end with line feeds (alone or after a carriage return)
    /// instead of carriage returns only.
    NonStandardSegmentTerminator(LineEndings),
    /// Empty lines between segments were skipped.
    EmptySegmentsSkipped {
        /// How many.
        n_segments: usize,
    },
    /// A UTF-8 byte order mark before the MSH was skipped.
    ByteOrderMarkSkipped,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_ids_are_three_upper_case_letters_or_digits() {
        assert!(SegmentId::from_bytes(b"PID").is_some());
        assert!(SegmentId::from_bytes(b"ZP1").is_some());
        assert!(SegmentId::from_bytes(b"pid").is_none());
        assert!(SegmentId::from_bytes(b"1PD").is_none());
        assert!(SegmentId::from_bytes(b"PI").is_none());
    }

    #[test]
    fn a_location_reads_like_hl7() {
        let location = Location {
            segment: 3,
            segment_id: SegmentId::from_bytes(b"PID"),
            occurrence: Some(1),
            field: Some(5),
        };
        assert_eq!(location.to_string(), "segment 3 (PID), field PID-5");
    }
}
