//! Paths to a value in a message, written as HL7 documents write them:
//! `PID-5`, `PID-5.1`, `PID-3(2).4.1`, `OBX(3)-5`.
//!
//! Grammar: `SEG[(occurrence)]-field[(repetition)][.component[.sub-component]]`,
//! every number 1-based. A path without a repetition means the whole field when
//! it stops at the field, and the first repetition when it goes deeper.
//!
//! A path is parsed in one bounded pass; this module must never accept an
//! index of 0 or one above the limits in [`crate::limits`].

use std::fmt;
use std::str::FromStr;

use crate::error::SegmentId;
use crate::limits::{FIELDS_PER_SEGMENT_MAX, PATH_INDEX_MAX, SEGMENTS_MAX};

/// A parsed path. See the module documentation for the grammar.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Path {
    segment: SegmentId,
    occurrence: usize,
    field: usize,
    repetition: Option<usize>,
    component: Option<usize>,
    subcomponent: Option<usize>,
}

/// The longest path text an error message repeats.
const PATH_SHOWN_MAX: usize = 64;

/// Why a string is not a path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path does not start with a segment id.
    #[error(
        "invalid HL7 path {path:?}: it must start with a segment id of three upper-case letters or digits, like PID-5.1"
    )]
    SegmentId {
        /// The path, cut to a reasonable length.
        path: String,
    },
    /// Something other than what the grammar allows.
    #[error("invalid HL7 path {path:?}: expected {expected} at character {position}")]
    Syntax {
        /// The path, cut to a reasonable length.
        path: String,
        /// The 0-based character where it goes wrong.
        position: usize,
        /// What the grammar allows there.
        expected: &'static str,
    },
    /// An index of 0 or above its limit.
    #[error(
        "invalid HL7 path {path:?}: the number at character {position} must be between 1 and {max}"
    )]
    IndexOutOfRange {
        /// The path, cut to a reasonable length.
        path: String,
        /// The 0-based character where the number starts.
        position: usize,
        /// The largest index allowed there.
        max: usize,
    },
}

impl Path {
    /// Parses a path such as `PID-3(2).4.1`.
    pub fn parse(text: &str) -> Result<Self, PathError> {
        Parser { text, pos: 0 }.path()
    }

    /// The segment id.
    pub fn segment(&self) -> SegmentId {
        self.segment
    }

    /// Which occurrence of the segment (1 unless written as `OBX(3)`).
    pub fn occurrence(&self) -> usize {
        self.occurrence
    }

    /// The field number.
    pub fn field(&self) -> usize {
        self.field
    }

    /// The repetition, when written.
    pub fn repetition(&self) -> Option<usize> {
        self.repetition
    }

    /// The component, when written.
    pub fn component(&self) -> Option<usize> {
        self.component
    }

    /// The sub-component, when written.
    pub fn subcomponent(&self) -> Option<usize> {
        self.subcomponent
    }
}

impl FromStr for Path {
    type Err = PathError;

    fn from_str(text: &str) -> Result<Self, PathError> {
        Path::parse(text)
    }
}

impl TryFrom<&str> for Path {
    type Error = PathError;

    fn try_from(text: &str) -> Result<Self, PathError> {
        Path::parse(text)
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.segment)?;
        if self.occurrence != 1 {
            write!(f, "({})", self.occurrence)?;
        }
        write!(f, "-{}", self.field)?;
        if let Some(repetition) = self.repetition {
            write!(f, "({repetition})")?;
        }
        if let Some(component) = self.component {
            write!(f, ".{component}")?;
        }
        if let Some(subcomponent) = self.subcomponent {
            write!(f, ".{subcomponent}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Path({self})")
    }
}

struct Parser<'t> {
    text: &'t str,
    pos: usize,
}

impl Parser<'_> {
    fn path(mut self) -> Result<Path, PathError> {
        let segment = self
            .text
            .get(..3)
            .and_then(|id| id.parse::<SegmentId>().ok())
            .ok_or_else(|| PathError::SegmentId { path: self.shown() })?;
        self.pos = 3;
        let occurrence = if self.eat(b'(') {
            let n = self.number(SEGMENTS_MAX)?;
            self.expect(b')', "')'")?;
            n
        } else {
            1
        };
        self.expect(b'-', "'-' and a field number")?;
        let field = self.number(FIELDS_PER_SEGMENT_MAX)?;
        let repetition = if self.eat(b'(') {
            let n = self.number(PATH_INDEX_MAX)?;
            self.expect(b')', "')'")?;
            Some(n)
        } else {
            None
        };
        let component = if self.eat(b'.') {
            Some(self.number(PATH_INDEX_MAX)?)
        } else {
            None
        };
        let subcomponent = if component.is_some() && self.eat(b'.') {
            Some(self.number(PATH_INDEX_MAX)?)
        } else {
            None
        };
        if self.pos != self.text.len() {
            return Err(self.syntax(if subcomponent.is_some() {
                "the end of the path"
            } else {
                "'.', '(' or the end of the path"
            }));
        }
        Ok(Path {
            segment,
            occurrence,
            field,
            repetition,
            component,
            subcomponent,
        })
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        if found {
            self.pos += 1;
        }
        found
    }

    fn expect(&mut self, byte: u8, expected: &'static str) -> Result<(), PathError> {
        if self.eat(byte) {
            Ok(())
        } else {
            Err(self.syntax(expected))
        }
    }

    fn number(&mut self, max: usize) -> Result<usize, PathError> {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.syntax("a number"));
        }
        let out_of_range = || PathError::IndexOutOfRange {
            path: self.shown(),
            position: start,
            max,
        };
        let n: usize = self.text[start..self.pos]
            .parse()
            .map_err(|_| out_of_range())?;
        if n == 0 || n > max {
            return Err(out_of_range());
        }
        Ok(n)
    }

    fn syntax(&self, expected: &'static str) -> PathError {
        PathError::Syntax {
            path: self.shown(),
            position: self.pos,
            expected,
        }
    }

    fn shown(&self) -> String {
        self.text.chars().take(PATH_SHOWN_MAX).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_path_reads_every_part() {
        let path = Path::parse("PID-3(2).4.1").unwrap();
        assert_eq!(path.segment(), "PID");
        assert_eq!(
            (
                path.occurrence(),
                path.field(),
                path.repetition(),
                path.component(),
                path.subcomponent()
            ),
            (1, 3, Some(2), Some(4), Some(1))
        );
    }

    #[test]
    fn a_segment_occurrence_is_written_in_parentheses() {
        let path = Path::parse("OBX(3)-5").unwrap();
        assert_eq!((path.occurrence(), path.field()), (3, 5));
        assert_eq!(path.to_string(), "OBX(3)-5");
    }

    #[test]
    fn paths_print_as_they_are_written() {
        for text in [
            "PID-5",
            "PID-5.1",
            "PID-3(2).4.1",
            "ZPI(2)-1(3).2",
            "MSH-9.2",
        ] {
            assert_eq!(Path::parse(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn a_lower_case_segment_id_is_refused() {
        assert!(matches!(
            Path::parse("pid-5"),
            Err(PathError::SegmentId { .. })
        ));
    }

    #[test]
    fn a_missing_field_number_says_what_was_expected() {
        let err = Path::parse("PID.5").unwrap_err();
        assert_eq!(
            err,
            PathError::Syntax {
                path: "PID.5".into(),
                position: 3,
                expected: "'-' and a field number"
            }
        );
        assert!(
            err.to_string()
                .contains("expected '-' and a field number at character 3")
        );
    }

    #[test]
    fn index_zero_is_refused() {
        assert!(matches!(
            Path::parse("PID-0"),
            Err(PathError::IndexOutOfRange { position: 4, .. })
        ));
        assert!(matches!(
            Path::parse("PID-5.0"),
            Err(PathError::IndexOutOfRange { .. })
        ));
    }

    #[test]
    fn a_huge_index_is_refused() {
        assert!(matches!(
            Path::parse("PID-99999999999999999999999"),
            Err(PathError::IndexOutOfRange { .. })
        ));
    }

    #[test]
    fn trailing_text_is_refused() {
        assert!(matches!(
            Path::parse("PID-5.1.2.3"),
            Err(PathError::Syntax { position: 9, .. })
        ));
        assert!(matches!(
            Path::parse("PID-5x"),
            Err(PathError::Syntax { position: 5, .. })
        ));
    }
}
