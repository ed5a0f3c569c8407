//! HL7 escape sequences: decoding them when a value is read, and writing them
//! when text is put into a message.
//!
//! Decoding (see [`decode`]) is documented per sequence:
//!
//! | sequence | decoded as |
//! |---|---|
//! | `\F\` `\S\` `\T\` `\R\` `\E\` | the field, component, sub-component, repetition or escape character |
//! | `\P\` | the truncation character, when MSH-2 declares one (v2.7) |
//! | `\Xhh…\` | the bytes `hh…`, read in the message's character set (U+FFFD where invalid) |
//! | `\.br\` | a line feed (`\n`) |
//! | anything else (`\H\`, `\N\`, `\.sp\`, `\.in\`, `\Zxx\`, `\Cxxyy\`, …) | kept verbatim, escape characters included |
//! | an escape character without a closing one | kept verbatim |
//!
//! Writing (see [`encode`]) is the inverse for text: delimiters become their
//! sequences, a line feed becomes `\.br\`, and every other ASCII control
//! character except tab becomes `\Xhh\`, so that written text never contains a
//! segment terminator or an MLLP framing byte.
//!
//! This module must never split: it works on one value that the caller has
//! already split out, and an escaped delimiter never reaches a splitter as the
//! delimiter itself.

use std::borrow::Cow;

use crate::charset::Charset;
use crate::delimiters::Delimiters;

/// One piece of an escaped value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Token<'a> {
    /// Text with no escape sequence in it.
    Text(&'a str),
    /// `\F\`, `\S\`, `\T\`, `\R\`, `\E\` or `\P\`: the delimiter it stands for.
    Delimiter(char),
    /// `\Xhh…\`: the hexadecimal digits, an even number of them.
    Hex(&'a str),
    /// `\.br\`.
    LineBreak,
    /// Any other escape sequence, verbatim with its escape characters.
    Other(&'a str),
}

/// The tokens of an escaped value, in order.
pub fn tokens<'a>(raw: &'a str, delimiters: &Delimiters) -> Tokens<'a> {
    Tokens {
        rest: raw,
        delimiters: *delimiters,
    }
}

/// An iterator over the [`Token`]s of a value.
#[derive(Clone)]
pub struct Tokens<'a> {
    rest: &'a str,
    delimiters: Delimiters,
}

impl<'a> Iterator for Tokens<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        if self.rest.is_empty() {
            return None;
        }
        let escape = self.delimiters.escape_byte();
        let bytes = self.rest.as_bytes();
        match memchr::memchr(escape, bytes) {
            None => {
                let text = self.rest;
                self.rest = "";
                Some(Token::Text(text))
            }
            Some(start) if start > 0 => {
                let (text, rest) = self.rest.split_at(start);
                self.rest = rest;
                Some(Token::Text(text))
            }
            Some(_) => match memchr::memchr(escape, &bytes[1..]) {
                None => {
                    // An escape character with no closing one is kept as text.
                    let text = self.rest;
                    self.rest = "";
                    Some(Token::Text(text))
                }
                Some(len) => {
                    let (sequence, rest) = self.rest.split_at(len + 2);
                    self.rest = rest;
                    Some(classify(sequence, &sequence[1..=len], &self.delimiters))
                }
            },
        }
    }
}

fn classify<'a>(sequence: &'a str, content: &'a str, d: &Delimiters) -> Token<'a> {
    match content {
        "F" => Token::Delimiter(d.field()),
        "S" => Token::Delimiter(d.component()),
        "T" => Token::Delimiter(d.subcomponent()),
        "R" => Token::Delimiter(d.repetition()),
        "E" => Token::Delimiter(d.escape()),
        "P" => match d.truncation() {
            Some(t) => Token::Delimiter(t),
            None => Token::Other(sequence),
        },
        ".br" => Token::LineBreak,
        _ => match content.strip_prefix('X') {
            Some(hex)
                if !hex.is_empty()
                    && hex.len() % 2 == 0
                    && hex.bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                Token::Hex(hex)
            }
            _ => Token::Other(sequence),
        },
    }
}

/// Decodes the escape sequences of one value, as the table in the module
/// documentation says. Borrows when the value holds no escape character.
pub fn decode<'a>(raw: &'a str, delimiters: &Delimiters, charset: Charset) -> Cow<'a, str> {
    if memchr::memchr(delimiters.escape_byte(), raw.as_bytes()).is_none() {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    for token in tokens(raw, delimiters) {
        match token {
            Token::Text(text) | Token::Other(text) => out.push_str(text),
            Token::Delimiter(c) => out.push(c),
            Token::LineBreak => out.push('\n'),
            Token::Hex(hex) => {
                let bytes: Vec<u8> = hex
                    .as_bytes()
                    .chunks_exact(2)
                    .map(|pair| (hex_value(pair[0]) << 4) | hex_value(pair[1]))
                    .collect();
                out.push_str(&charset.decode_lossy(&bytes));
            }
        }
    }
    Cow::Owned(out)
}

fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        b'A'..=b'F' => digit - b'A' + 10,
        _ => 0,
    }
}

fn needs_escape(byte: u8, delimiters: &Delimiters) -> bool {
    delimiters.is_special(byte) || (byte.is_ascii_control() && byte != b'\t')
}

/// Escapes text so that it can stand as one value between delimiters.
/// Borrows when nothing needs escaping.
pub fn encode<'a>(text: &'a str, delimiters: &Delimiters) -> Cow<'a, str> {
    let bytes = text.as_bytes();
    let Some(first) = bytes.iter().position(|&b| needs_escape(b, delimiters)) else {
        return Cow::Borrowed(text);
    };
    let escape = delimiters.escape();
    let mut out = String::with_capacity(text.len() + 8);
    out.push_str(&text[..first]);
    for c in text[first..].chars() {
        let letter = match c {
            _ if c == delimiters.field() => "F",
            _ if c == delimiters.component() => "S",
            _ if c == delimiters.subcomponent() => "T",
            _ if c == delimiters.repetition() => "R",
            _ if c == escape => "E",
            _ if Some(c) == delimiters.truncation() => "P",
            '\n' => ".br",
            _ if c.is_ascii_control() && c != '\t' => {
                out.push(escape);
                out.push_str(&format!("X{:02X}", u32::from(c)));
                out.push(escape);
                continue;
            }
            _ => {
                out.push(c);
                continue;
            }
        };
        out.push(escape);
        out.push_str(letter);
        out.push(escape);
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(raw: &str) -> String {
        decode(raw, &Delimiters::STANDARD, Charset::Utf8).into_owned()
    }

    #[test]
    fn delimiter_escapes_decode_to_the_delimiters() {
        assert_eq!(decoded(r"a\F\b\S\c\T\d\R\e\E\f"), r"a|b^c&d~e\f");
    }

    #[test]
    fn a_value_without_escapes_is_borrowed() {
        assert!(matches!(
            decode("plain", &Delimiters::STANDARD, Charset::Utf8),
            Cow::Borrowed("plain")
        ));
    }

    #[test]
    fn hex_escapes_decode_in_the_message_charset() {
        assert_eq!(decoded(r"\XC3A9\"), "é");
        assert_eq!(
            decode(r"\XE9\", &Delimiters::STANDARD, Charset::Latin1),
            "é"
        );
        assert_eq!(decoded(r"\XFF\"), "\u{FFFD}");
    }

    #[test]
    fn a_line_break_escape_is_a_line_feed() {
        assert_eq!(decoded(r"line one\.br\line two"), "line one\nline two");
    }

    #[test]
    fn formatting_escapes_are_kept_verbatim() {
        assert_eq!(
            decoded(r"\H\bold\N\ \.sp2\ \Zlocal\"),
            r"\H\bold\N\ \.sp2\ \Zlocal\"
        );
    }

    #[test]
    fn an_unterminated_escape_is_kept_verbatim() {
        assert_eq!(decoded(r"50\% off\F"), r"50\% off\F");
    }

    #[test]
    fn malformed_hex_is_kept_verbatim() {
        assert_eq!(decoded(r"\X0\ \XZZ\"), r"\X0\ \XZZ\");
    }

    #[test]
    fn truncation_escape_needs_a_declared_truncation_character() {
        let with = Delimiters::STANDARD.with_truncation('#').unwrap();
        assert_eq!(decode(r"a\P\b", &with, Charset::Ascii), "a#b");
        assert_eq!(decoded(r"a\P\b"), r"a\P\b");
    }

    #[test]
    fn custom_escape_characters_are_honoured() {
        let d = Delimiters::new('#', '*', '!', '@', '%').unwrap();
        assert_eq!(decode("a@S@b@E@", &d, Charset::Ascii), "a*b@");
        assert_eq!(encode("a*b@", &d), "a@S@b@E@");
    }

    #[test]
    fn encoding_escapes_every_delimiter_and_control_character() {
        assert_eq!(
            encode("a|b^c&d~e\\f\ng\rh\x0Bi\tj", &Delimiters::STANDARD),
            r"a\F\b\S\c\T\d\R\e\E\f\.br\g\X0D\h\X0B\i	j"
        );
    }

    #[test]
    fn encoding_then_decoding_gives_the_text_back() {
        for text in ["", "plain", "a|b^c&d~e\\f", "x\ny\rz", "é|€", "\\H\\"] {
            let escaped = encode(text, &Delimiters::STANDARD);
            assert_eq!(decoded(&escaped), text, "for {text:?}");
        }
    }
}
