//! Character sets named by MSH-18: ASCII, UTF-8 and ISO-8859-1 (Latin-1).
//!
//! A message is turned into text once, when it is parsed: UTF-8 and ASCII are
//! borrowed as they are, Latin-1 is converted only when it holds a byte above
//! 0x7F. This module must never guess: an unknown MSH-18 value is an error,
//! and so is a byte that the declared character set does not allow.

use std::borrow::Cow;
use std::fmt;

/// A character set this crate reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Charset {
    /// 7-bit ASCII: HL7 table 0211 `ASCII`, and the default when MSH-18 is empty.
    #[default]
    Ascii,
    /// UTF-8: `UNICODE UTF-8` (the common `UTF-8` is accepted too).
    Utf8,
    /// ISO-8859-1: `8859/1` (the common `ISO-8859-1` is accepted too).
    Latin1,
}

/// The longest MSH-18 value that an error message repeats.
const CHARSET_NAME_SHOWN_MAX: usize = 32;

/// MSH-18 names a character set that this crate does not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unsupported character set {name:?} in MSH-18 (supported: \"ASCII\", \"UNICODE UTF-8\", \"8859/1\")"
)]
pub struct UnsupportedCharset {
    /// The MSH-18 value, cut to a few printable characters.
    pub name: String,
}

impl Charset {
    /// Reads an MSH-18 code (HL7 table 0211). Case and surrounding spaces are
    /// ignored; an empty value is ASCII, as the standard says.
    pub fn from_hl7_name(name: &str) -> Result<Self, UnsupportedCharset> {
        let trimmed = name.trim();
        if trimmed.is_empty() || trimmed.eq_ignore_ascii_case("ASCII") {
            return Ok(Charset::Ascii);
        }
        if trimmed.eq_ignore_ascii_case("UNICODE UTF-8") || trimmed.eq_ignore_ascii_case("UTF-8") {
            return Ok(Charset::Utf8);
        }
        if trimmed.eq_ignore_ascii_case("8859/1") || trimmed.eq_ignore_ascii_case("ISO-8859-1") {
            return Ok(Charset::Latin1);
        }
        Err(UnsupportedCharset {
            name: shown_name(trimmed),
        })
    }

    /// The code this crate writes in MSH-18.
    pub fn hl7_name(&self) -> &'static str {
        match self {
            Charset::Ascii => "ASCII",
            Charset::Utf8 => "UNICODE UTF-8",
            Charset::Latin1 => "8859/1",
        }
    }

    /// Turns message bytes into text, borrowing whenever the bytes already are
    /// valid UTF-8 of the right kind. On failure, returns the offset of the
    /// first byte that the character set does not allow.
    pub(crate) fn decode<'a>(&self, bytes: &'a [u8]) -> Result<Cow<'a, str>, usize> {
        match self {
            Charset::Ascii => match bytes.iter().position(|b| !b.is_ascii()) {
                Some(offset) => Err(offset),
                None => std::str::from_utf8(bytes)
                    .map(Cow::Borrowed)
                    .map_err(|e| e.valid_up_to()),
            },
            Charset::Utf8 => std::str::from_utf8(bytes)
                .map(Cow::Borrowed)
                .map_err(|e| e.valid_up_to()),
            Charset::Latin1 => match std::str::from_utf8(bytes) {
                Ok(text) if text.is_ascii() => Ok(Cow::Borrowed(text)),
                _ => Ok(Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect())),
            },
        }
    }

    /// Turns bytes from a `\Xhh\` escape into text; a byte the character set
    /// does not allow becomes U+FFFD.
    pub(crate) fn decode_lossy(&self, bytes: &[u8]) -> String {
        match self {
            Charset::Ascii => bytes
                .iter()
                .map(|&b| {
                    if b.is_ascii() {
                        char::from(b)
                    } else {
                        '\u{FFFD}'
                    }
                })
                .collect(),
            Charset::Utf8 => String::from_utf8_lossy(bytes).into_owned(),
            Charset::Latin1 => bytes.iter().map(|&b| char::from(b)).collect(),
        }
    }

    /// Turns text into bytes of this character set. On failure, returns the
    /// first character that it cannot hold.
    pub(crate) fn encode<'a>(&self, text: &'a str) -> Result<Cow<'a, [u8]>, char> {
        match self {
            Charset::Utf8 => Ok(Cow::Borrowed(text.as_bytes())),
            Charset::Ascii => match text.chars().find(|c| !c.is_ascii()) {
                Some(c) => Err(c),
                None => Ok(Cow::Borrowed(text.as_bytes())),
            },
            Charset::Latin1 => {
                if text.is_ascii() {
                    return Ok(Cow::Borrowed(text.as_bytes()));
                }
                text.chars()
                    .map(|c| u8::try_from(c).map_err(|_| c))
                    .collect::<Result<Vec<u8>, char>>()
                    .map(Cow::Owned)
            }
        }
    }

    /// Like [`Charset::encode`], but a character this set cannot hold becomes `?`.
    pub(crate) fn encode_lossy<'a>(&self, text: &'a str) -> Cow<'a, [u8]> {
        match self.encode(text) {
            Ok(bytes) => bytes,
            Err(_) => {
                let limit = match self {
                    Charset::Ascii => 0x7F,
                    Charset::Latin1 => 0xFF,
                    Charset::Utf8 => return Cow::Borrowed(text.as_bytes()),
                };
                Cow::Owned(
                    text.chars()
                        .map(|c| u8::try_from(c).ok().filter(|&b| b <= limit).unwrap_or(b'?'))
                        .collect(),
                )
            }
        }
    }
}

impl fmt::Display for Charset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hl7_name())
    }
}

/// A short, printable copy of an MSH-18 value for an error message.
fn shown_name(name: &str) -> String {
    name.chars()
        .take(CHARSET_NAME_SHOWN_MAX)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_0211_codes_name_the_three_supported_sets() {
        assert_eq!(Charset::from_hl7_name("ASCII"), Ok(Charset::Ascii));
        assert_eq!(Charset::from_hl7_name(""), Ok(Charset::Ascii));
        assert_eq!(Charset::from_hl7_name("UNICODE UTF-8"), Ok(Charset::Utf8));
        assert_eq!(Charset::from_hl7_name(" utf-8 "), Ok(Charset::Utf8));
        assert_eq!(Charset::from_hl7_name("8859/1"), Ok(Charset::Latin1));
    }

    #[test]
    fn an_unknown_code_is_an_error_that_names_it() {
        let err = Charset::from_hl7_name("ISO IR87").unwrap_err();
        assert_eq!(err.name, "ISO IR87");
        assert!(err.to_string().contains("ISO IR87"));
    }

    #[test]
    fn latin1_bytes_become_text_and_back() {
        let text = Charset::Latin1.decode(b"Ren\xE9e").unwrap();
        assert_eq!(text, "Renée");
        assert_eq!(Charset::Latin1.encode(&text).unwrap().as_ref(), b"Ren\xE9e");
    }

    #[test]
    fn ascii_refuses_a_high_byte_and_says_where() {
        assert_eq!(Charset::Ascii.decode(b"ab\xE9"), Err(2));
    }

    #[test]
    fn utf8_refuses_an_invalid_sequence_and_says_where() {
        assert_eq!(Charset::Utf8.decode(b"abc\xFF"), Err(3));
    }

    #[test]
    fn characters_a_set_cannot_hold_become_question_marks_when_lossy() {
        assert_eq!(Charset::Latin1.encode_lossy("é€").as_ref(), b"\xE9?");
        assert_eq!(Charset::Ascii.encode_lossy("é").as_ref(), b"?");
    }
}
