//! The delimiters of one HL7 v2 message: the field separator (MSH-1) and the
//! encoding characters (MSH-2: component, repetition, escape, sub-component and,
//! from v2.7, truncation).
//!
//! Delimiters are always read from the message header; this module must never
//! assume `|^~\&` for a message that says otherwise.

use std::fmt;

/// The separators and the escape character of a message.
///
/// Every delimiter is a printable ASCII character that is neither a letter nor
/// a digit nor a space, and all of them differ.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Delimiters {
    field: u8,
    component: u8,
    repetition: u8,
    escape: u8,
    subcomponent: u8,
    truncation: Option<u8>,
}

/// Why a set of delimiters is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DelimiterError {
    /// The header ends before the field separator.
    #[error("the header ends before the field separator (MSH-1)")]
    MissingFieldSeparator,
    /// MSH-2 holds fewer than four or more than five characters.
    #[error(
        "MSH-2 must hold 4 encoding characters (5 with the truncation character), found {found}"
    )]
    WrongEncodingCharacterCount {
        /// How many characters MSH-2 holds.
        found: usize,
    },
    /// A delimiter is a letter, a digit, a space, a control or a non-ASCII byte.
    #[error("delimiter byte 0x{byte:02X} is not a printable ASCII punctuation character")]
    NotPunctuation {
        /// The offending byte.
        byte: u8,
    },
    /// A delimiter given to [`Delimiters::new`] is not an ASCII character.
    #[error("delimiter {character:?} is not an ASCII character")]
    NotAscii {
        /// The offending character.
        character: char,
    },
    /// The same character is used for two delimiters.
    #[error("delimiter {:?} is used twice", char::from(*byte))]
    Duplicate {
        /// The repeated byte.
        byte: u8,
    },
}

impl Delimiters {
    /// `|^~\&`, the delimiters that the standard recommends.
    pub const STANDARD: Delimiters = Delimiters {
        field: b'|',
        component: b'^',
        repetition: b'~',
        escape: b'\\',
        subcomponent: b'&',
        truncation: None,
    };

    /// Builds a set of delimiters, checking that each is printable ASCII
    /// punctuation and that they all differ.
    pub fn new(
        field: char,
        component: char,
        repetition: char,
        escape: char,
        subcomponent: char,
    ) -> Result<Self, DelimiterError> {
        let byte = |character: char| -> Result<u8, DelimiterError> {
            u8::try_from(character).map_err(|_| DelimiterError::NotAscii { character })
        };
        Self::from_bytes(
            byte(field)?,
            &[
                byte(component)?,
                byte(repetition)?,
                byte(escape)?,
                byte(subcomponent)?,
            ],
        )
    }

    /// Adds the truncation character of v2.7 (conventionally `#`).
    pub fn with_truncation(self, truncation: char) -> Result<Self, DelimiterError> {
        let byte = u8::try_from(truncation).map_err(|_| DelimiterError::NotAscii {
            character: truncation,
        })?;
        Self::from_bytes(
            self.field,
            &[
                self.component,
                self.repetition,
                self.escape,
                self.subcomponent,
                byte,
            ],
        )
    }

    /// Builds delimiters from MSH-1 and the bytes of MSH-2.
    pub(crate) fn from_bytes(field: u8, encoding: &[u8]) -> Result<Self, DelimiterError> {
        let &[component, repetition, escape, subcomponent, ref rest @ ..] = encoding else {
            return Err(DelimiterError::WrongEncodingCharacterCount {
                found: encoding.len(),
            });
        };
        let truncation = match rest {
            [] => None,
            [t] => Some(*t),
            _ => {
                return Err(DelimiterError::WrongEncodingCharacterCount {
                    found: encoding.len(),
                });
            }
        };
        let all = [
            Some(field),
            Some(component),
            Some(repetition),
            Some(escape),
            Some(subcomponent),
            truncation,
        ];
        for (i, byte) in all.iter().enumerate() {
            let Some(byte) = *byte else { continue };
            if !is_punctuation(byte) {
                return Err(DelimiterError::NotPunctuation { byte });
            }
            if all[..i].contains(&Some(byte)) {
                return Err(DelimiterError::Duplicate { byte });
            }
        }
        Ok(Delimiters {
            field,
            component,
            repetition,
            escape,
            subcomponent,
            truncation,
        })
    }

    /// Reads the delimiters from the start of a header segment (`MSH`, `FHS` or
    /// `BHS`): byte 3 is the field separator and MSH-2 runs to the next field
    /// separator or segment terminator.
    pub(crate) fn from_header(segment: &[u8]) -> Result<Self, DelimiterError> {
        let Some(&field) = segment.get(3) else {
            return Err(DelimiterError::MissingFieldSeparator);
        };
        if field == b'\r' || field == b'\n' {
            return Err(DelimiterError::MissingFieldSeparator);
        }
        let rest = &segment[4..];
        let end = rest
            .iter()
            .position(|&b| b == field || b == b'\r' || b == b'\n')
            .unwrap_or(rest.len());
        Self::from_bytes(field, &rest[..end])
    }

    /// The field separator (MSH-1).
    pub fn field(&self) -> char {
        char::from(self.field)
    }

    /// The component separator.
    pub fn component(&self) -> char {
        char::from(self.component)
    }

    /// The repetition separator.
    pub fn repetition(&self) -> char {
        char::from(self.repetition)
    }

    /// The escape character.
    pub fn escape(&self) -> char {
        char::from(self.escape)
    }

    /// The sub-component separator.
    pub fn subcomponent(&self) -> char {
        char::from(self.subcomponent)
    }

    /// The truncation character (v2.7 and later), if the message declares one.
    pub fn truncation(&self) -> Option<char> {
        self.truncation.map(char::from)
    }

    /// MSH-2 as it is written: component, repetition, escape, sub-component
    /// and, when present, truncation.
    pub fn encoding_characters(&self) -> String {
        let mut out = String::with_capacity(5);
        out.push(self.component());
        out.push(self.repetition());
        out.push(self.escape());
        out.push(self.subcomponent());
        if let Some(t) = self.truncation() {
            out.push(t);
        }
        out
    }

    pub(crate) fn field_byte(&self) -> u8 {
        self.field
    }

    pub(crate) fn component_byte(&self) -> u8 {
        self.component
    }

    pub(crate) fn repetition_byte(&self) -> u8 {
        self.repetition
    }

    pub(crate) fn subcomponent_byte(&self) -> u8 {
        self.subcomponent
    }

    pub(crate) fn escape_byte(&self) -> u8 {
        self.escape
    }

    /// A table from byte to the [`Contains`] bit of the delimiter it is, for
    /// the parser's one pass over each segment.
    pub(crate) fn classes(&self) -> [u8; 256] {
        let mut table = [0u8; 256];
        table[usize::from(self.field)] = Contains::FIELD;
        table[usize::from(self.component)] = Contains::COMPONENT;
        table[usize::from(self.repetition)] = Contains::REPETITION;
        table[usize::from(self.subcomponent)] = Contains::SUBCOMPONENT;
        table[usize::from(self.escape)] = Contains::ESCAPE;
        table
    }

    /// Splits the fields of one segment (the bytes after its id and first
    /// separator), calling `on_field(start, end, contains)` for each, where
    /// `contains` holds the [`Contains`] bits of the delimiters inside it.
    ///
    /// One table lookup per byte: measured against a word-at-a-time scan and
    /// against `memchr` per field, this plain loop was as fast on real
    /// messages, whose fields are short, and it is the simplest.
    pub(crate) fn scan_fields<E>(
        &self,
        bytes: &[u8],
        classes: &[u8; 256],
        mut on_field: impl FnMut(usize, usize, u8) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut start = 0;
        let mut contains = 0u8;
        let mut next = 0;
        // Skip plain bytes in a tight loop; stop only at delimiters.
        while let Some(skipped) = bytes
            .get(next..)
            .and_then(|rest| rest.iter().position(|&b| classes[usize::from(b)] != 0))
        {
            let at = next + skipped;
            let class = classes[usize::from(bytes[at])];
            if class == Contains::FIELD {
                on_field(start, at, contains)?;
                start = at + 1;
                contains = 0;
            } else {
                contains |= class;
            }
            next = at + 1;
        }
        on_field(start, bytes.len(), contains)
    }

    /// Whether `byte` is one of the delimiters or the escape character.
    pub(crate) fn is_special(&self, byte: u8) -> bool {
        byte == self.field
            || byte == self.component
            || byte == self.repetition
            || byte == self.escape
            || byte == self.subcomponent
            || Some(byte) == self.truncation
    }
}

impl Default for Delimiters {
    fn default() -> Self {
        Delimiters::STANDARD
    }
}

impl fmt::Debug for Delimiters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Delimiters({}{})",
            self.field(),
            self.encoding_characters()
        )
    }
}

impl fmt::Display for Delimiters {
    /// MSH-1 followed by MSH-2, as they open a header: `|^~\&`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.field(), self.encoding_characters())
    }
}

/// Which delimiters a value may contain, as bits. The parser records them for
/// every field so that reading a value that has no component, repetition,
/// sub-component or escape costs no scan at all.
pub(crate) struct Contains;

impl Contains {
    pub(crate) const FIELD: u8 = 1;
    pub(crate) const COMPONENT: u8 = 1 << 1;
    pub(crate) const REPETITION: u8 = 1 << 2;
    pub(crate) const SUBCOMPONENT: u8 = 1 << 3;
    pub(crate) const ESCAPE: u8 = 1 << 4;
}

fn is_punctuation(byte: u8) -> bool {
    byte.is_ascii_graphic() && !byte.is_ascii_alphanumeric()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanning_a_segment_finds_fields_and_the_delimiters_inside_them() {
        let d = Delimiters::STANDARD;
        let mut fields = Vec::new();
        d.scan_fields(
            b"a|b^c||d~e&f\\E\\|",
            &d.classes(),
            |start, end, contains| {
                fields.push((start, end, contains));
                Ok::<(), ()>(())
            },
        )
        .unwrap();
        assert_eq!(
            fields,
            [
                (0, 1, 0),
                (2, 5, Contains::COMPONENT),
                (6, 6, 0),
                (
                    7,
                    15,
                    Contains::REPETITION | Contains::SUBCOMPONENT | Contains::ESCAPE
                ),
                (16, 16, 0),
            ]
        );
    }

    #[test]
    fn standard_delimiters_are_read_from_a_header() {
        let d = Delimiters::from_header(b"MSH|^~\\&|APP").unwrap();
        assert_eq!(d, Delimiters::STANDARD);
        assert_eq!(d.to_string(), "|^~\\&");
    }

    #[test]
    fn custom_delimiters_are_read_in_the_standard_order() {
        let d = Delimiters::from_header(b"MSH#*!@%#APP").unwrap();
        assert_eq!(
            (
                d.field(),
                d.component(),
                d.repetition(),
                d.escape(),
                d.subcomponent()
            ),
            ('#', '*', '!', '@', '%')
        );
    }

    #[test]
    fn a_fifth_encoding_character_is_the_truncation_character() {
        let d = Delimiters::from_header(b"MSH|^~\\&#|APP").unwrap();
        assert_eq!(d.truncation(), Some('#'));
    }

    #[test]
    fn three_encoding_characters_are_refused() {
        assert_eq!(
            Delimiters::from_header(b"MSH|^~\\|APP"),
            Err(DelimiterError::WrongEncodingCharacterCount { found: 3 })
        );
    }

    #[test]
    fn a_letter_cannot_be_a_delimiter() {
        assert_eq!(
            Delimiters::from_header(b"MSH|^~\\A|"),
            Err(DelimiterError::NotPunctuation { byte: b'A' })
        );
    }

    #[test]
    fn a_repeated_delimiter_is_refused() {
        assert_eq!(
            Delimiters::from_header(b"MSH|^^\\&|"),
            Err(DelimiterError::Duplicate { byte: b'^' })
        );
    }

    #[test]
    fn a_header_that_stops_after_the_segment_id_has_no_field_separator() {
        assert_eq!(
            Delimiters::from_header(b"MSH\r"),
            Err(DelimiterError::MissingFieldSeparator)
        );
    }
}
