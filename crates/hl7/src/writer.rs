//! Writing messages: serializing a parsed [`Message`] back to bytes, and a
//! small [`MessageBuilder`] for constructing one.
//!
//! The writer always ends each segment with a carriage return, as the
//! standard says, and encodes text in the message's character set. The
//! builder escapes every text value it is given (see [`crate::escape`]), so a
//! value can never change the structure of the message: parse → write → parse
//! gives back the same values. This module must never write an unescaped
//! delimiter that came from a text value, and never reorder segments.

use std::fmt;

use crate::charset::Charset;
use crate::delimiters::Delimiters;
use crate::error::SegmentId;
use crate::escape;
use crate::limits::{FIELDS_PER_SEGMENT_MAX, PATH_INDEX_MAX};
use crate::message::Message;
use crate::path::Path;

/// Why a message cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// A character that the message's character set cannot hold.
    #[error(
        "segment {position} ({segment_id}) holds U+{code_point:04X}, which {charset} cannot represent"
    )]
    Unrepresentable {
        /// The character set of the message.
        charset: Charset,
        /// The segment's 1-based position.
        position: usize,
        /// The segment's id.
        segment_id: SegmentId,
        /// The character's code point.
        code_point: u32,
    },
    /// A path names an occurrence of a segment that is neither present nor
    /// the next one to add.
    #[error("cannot set {path}: the message has no such segment and it is not the next one")]
    NoSuchSegment {
        /// The path.
        path: Path,
    },
    /// A path names MSH-1 or MSH-2, which only the delimiters set.
    #[error("cannot set {path}: MSH-1 and MSH-2 are set by the delimiters")]
    DelimiterField {
        /// The path.
        path: Path,
    },
}

impl Message<'_> {
    /// The message as bytes in its character set, each segment ended by a
    /// carriage return (whatever ended it when it was read).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.as_str().len() + self.n_segments());
        for segment in self.segments() {
            // The text was decoded from this character set, so it fits back.
            out.extend_from_slice(&self.charset().encode_lossy(segment.as_str()));
            out.push(b'\r');
        }
        out
    }
}

/// A message under construction. Segments are kept in the order they are
/// added; values are escaped when they are set.
///
/// `Debug` shows segment ids only: the values are PHI.
#[derive(Clone)]
pub struct MessageBuilder {
    delimiters: Delimiters,
    charset: Charset,
    segments: Vec<SegmentBuilder>,
}

/// One segment under construction, inside a [`MessageBuilder`].
#[derive(Clone)]
pub struct SegmentBuilder {
    id: SegmentId,
    delimiters: Delimiters,
    /// Raw (escaped) field text; index 0 is field 1.
    fields: Vec<String>,
}

impl MessageBuilder {
    /// A message with an MSH holding the delimiters, in UTF-8 (MSH-18 is set
    /// to `UNICODE UTF-8`).
    pub fn new(delimiters: Delimiters) -> Self {
        let mut msh = SegmentBuilder::new(segment_id("MSH"), delimiters);
        msh.fields = vec![
            delimiters.field().to_string(),
            delimiters.encoding_characters(),
        ];
        let builder = MessageBuilder {
            delimiters,
            charset: Charset::Utf8,
            segments: vec![msh],
        };
        builder.with_charset(Charset::Utf8)
    }

    /// Writes the message in another character set, and says so in MSH-18.
    pub fn with_charset(mut self, charset: Charset) -> Self {
        self.charset = charset;
        self.msh().set_field(18, charset.hl7_name());
        self
    }

    /// A builder holding a copy of a parsed message, to change and write back.
    pub fn from_message(message: &Message<'_>) -> Self {
        let delimiters = message.delimiters();
        let segments = message
            .segments()
            .map(|segment| SegmentBuilder {
                id: segment.id(),
                delimiters,
                fields: segment.fields().map(|f| f.as_str().to_owned()).collect(),
            })
            .collect();
        MessageBuilder {
            delimiters,
            charset: message.charset(),
            segments,
        }
    }

    /// The delimiters.
    pub fn delimiters(&self) -> Delimiters {
        self.delimiters
    }

    /// The character set the message is written in.
    pub fn charset(&self) -> Charset {
        self.charset
    }

    /// The header segment.
    pub fn msh(&mut self) -> &mut SegmentBuilder {
        &mut self.segments[0]
    }

    /// Appends a segment.
    ///
    /// # Panics
    ///
    /// When `id` is not three upper-case letters or digits, or is a header or
    /// batch segment (`MSH`, `FHS`, `BHS`, `BTS`, `FTS`): segment ids are
    /// written in code, so this is a programming error.
    pub fn add_segment(&mut self, id: &str) -> &mut SegmentBuilder {
        let id = segment_id(id);
        assert!(
            !id.is_header() && id != "BTS" && id != "FTS",
            "BUG: a message has one header and no batch segments, not {id}"
        );
        self.segments.push(SegmentBuilder::new(id, self.delimiters));
        let last = self.segments.len() - 1;
        &mut self.segments[last]
    }

    /// The segments, in order.
    pub fn segments(&self) -> &[SegmentBuilder] {
        &self.segments
    }

    /// Sets the value at a path to `text` (escaped). When the path names the
    /// next occurrence of a segment that is not there yet, it is appended.
    pub fn set(&mut self, path: &Path, text: &str) -> Result<&mut Self, WriteError> {
        let id = path.segment();
        if id.is_header() && path.field() <= 2 {
            return Err(WriteError::DelimiterField { path: *path });
        }
        let existing = self.segments.iter().filter(|s| s.id == id).count();
        if path.occurrence() == existing + 1 && !id.is_header() {
            self.segments.push(SegmentBuilder::new(id, self.delimiters));
        }
        let Some(segment) = self
            .segments
            .iter_mut()
            .filter(|s| s.id == id)
            .nth(path.occurrence() - 1)
        else {
            return Err(WriteError::NoSuchSegment { path: *path });
        };
        segment.put(
            path.field(),
            path.repetition(),
            path.component(),
            path.subcomponent(),
            &escape::encode(text, &self.delimiters),
        );
        Ok(self)
    }

    /// The message as text: segments ended by carriage returns. This is PHI.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for segment in &self.segments {
            segment.write(&mut out);
            out.push('\r');
        }
        out
    }

    /// The message as bytes in its character set.
    pub fn to_bytes(&self) -> Result<Vec<u8>, WriteError> {
        let mut out = Vec::new();
        let mut text = String::new();
        for (i, segment) in self.segments.iter().enumerate() {
            text.clear();
            segment.write(&mut text);
            let bytes = self
                .charset
                .encode(&text)
                .map_err(|c| WriteError::Unrepresentable {
                    charset: self.charset,
                    position: i + 1,
                    segment_id: segment.id,
                    code_point: u32::from(c),
                })?;
            out.extend_from_slice(&bytes);
            out.push(b'\r');
        }
        Ok(out)
    }

    /// The message as bytes, with `?` for any character the character set
    /// cannot hold. For ACKs, which must always be sent.
    pub(crate) fn to_bytes_lossy(&self) -> Vec<u8> {
        self.charset.encode_lossy(&self.to_text()).into_owned()
    }
}

impl fmt::Debug for MessageBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageBuilder")
            .field(
                "segments",
                &self.segments.iter().map(|s| s.id).collect::<Vec<_>>(),
            )
            .field("charset", &self.charset)
            .finish()
    }
}

impl SegmentBuilder {
    fn new(id: SegmentId, delimiters: Delimiters) -> Self {
        SegmentBuilder {
            id,
            delimiters,
            fields: Vec::new(),
        }
    }

    /// The segment id.
    pub fn id(&self) -> SegmentId {
        self.id
    }

    /// Field `n` as it will be written (escaped), if set.
    pub fn raw_field(&self, n: usize) -> Option<&str> {
        self.fields.get(n.checked_sub(1)?).map(String::as_str)
    }

    /// Sets field `n` to `text`, escaped, replacing the whole field.
    ///
    /// # Panics
    ///
    /// When `n` is 0 or above [`FIELDS_PER_SEGMENT_MAX`], or names MSH-1 or
    /// MSH-2: field numbers are written in code.
    pub fn set_field(&mut self, n: usize, text: &str) -> &mut Self {
        let raw = escape::encode(text, &self.delimiters);
        self.put(n, None, None, None, &raw);
        self
    }

    /// Sets component `component` of the first repetition of field `n`.
    ///
    /// # Panics
    ///
    /// As [`SegmentBuilder::set_field`], and when `component` is 0 or above
    /// [`PATH_INDEX_MAX`].
    pub fn set_component(&mut self, n: usize, component: usize, text: &str) -> &mut Self {
        let raw = escape::encode(text, &self.delimiters);
        self.put(n, None, Some(component), None, &raw);
        self
    }

    /// Sets a sub-component of the first repetition of field `n`.
    ///
    /// # Panics
    ///
    /// As [`SegmentBuilder::set_component`].
    pub fn set_subcomponent(
        &mut self,
        n: usize,
        component: usize,
        subcomponent: usize,
        text: &str,
    ) -> &mut Self {
        let raw = escape::encode(text, &self.delimiters);
        self.put(n, None, Some(component), Some(subcomponent), &raw);
        self
    }

    /// Sets the components of repetition `repetition` of field `n`, each
    /// escaped, replacing that repetition.
    ///
    /// # Panics
    ///
    /// As [`SegmentBuilder::set_component`].
    pub fn set_repetition(
        &mut self,
        n: usize,
        repetition: usize,
        components: &[&str],
    ) -> &mut Self {
        let mut raw = String::new();
        for (i, component) in components.iter().enumerate() {
            if i > 0 {
                raw.push(self.delimiters.component());
            }
            raw.push_str(&escape::encode(component, &self.delimiters));
        }
        self.put(
            n,
            Some(repetition),
            None,
            None,
            trim_trailing(&raw, self.delimiters.component()),
        );
        self
    }

    /// Sets field `n` to text that is already escaped with this message's
    /// delimiters, as it would be copied from another message.
    ///
    /// # Panics
    ///
    /// As [`SegmentBuilder::set_field`].
    pub fn set_raw_field(&mut self, n: usize, raw: &str) -> &mut Self {
        self.put(n, None, None, None, raw);
        self
    }

    /// Sets the value at `path` (whose segment part is ignored) to `text`.
    pub fn set_path(&mut self, path: &Path, text: &str) -> Result<&mut Self, WriteError> {
        if self.id.is_header() && path.field() <= 2 {
            return Err(WriteError::DelimiterField { path: *path });
        }
        let raw = escape::encode(text, &self.delimiters);
        self.put(
            path.field(),
            path.repetition(),
            path.component(),
            path.subcomponent(),
            &raw,
        );
        Ok(self)
    }

    /// Puts raw text at a position, creating the empty fields, repetitions
    /// and components before it.
    fn put(
        &mut self,
        n: usize,
        repetition: Option<usize>,
        component: Option<usize>,
        subcomponent: Option<usize>,
        raw: &str,
    ) {
        assert!(
            (1..=FIELDS_PER_SEGMENT_MAX).contains(&n),
            "BUG: field {n} is outside 1..={FIELDS_PER_SEGMENT_MAX}"
        );
        assert!(
            !(self.id.is_header() && n <= 2),
            "BUG: {}-{n} is set by the delimiters",
            self.id
        );
        for index in [repetition, component, subcomponent].into_iter().flatten() {
            assert!(
                (1..=PATH_INDEX_MAX).contains(&index),
                "BUG: index {index} is outside 1..={PATH_INDEX_MAX}"
            );
        }
        if self.fields.len() < n {
            self.fields.resize(n, String::new());
        }
        let d = self.delimiters;
        let field = &mut self.fields[n - 1];
        if repetition.is_none() && component.is_none() {
            *field = raw.to_owned();
            return;
        }
        *field = replace_piece(field, d.repetition(), repetition.unwrap_or(1), |rep| {
            let Some(component) = component else {
                return raw.to_owned();
            };
            replace_piece(rep, d.component(), component, |comp| match subcomponent {
                None => raw.to_owned(),
                Some(sub) => replace_piece(comp, d.subcomponent(), sub, |_| raw.to_owned()),
            })
        });
    }

    fn write(&self, out: &mut String) {
        out.push_str(self.id.as_str());
        let header = self.id.is_header();
        let n_fields = self
            .fields
            .iter()
            .rposition(|f| !f.is_empty())
            .map_or(0, |i| i + 1)
            .max(if header { 2 } else { 0 });
        let fs = self.delimiters.field();
        if header {
            // Field 1 of a header is the separator itself and field 2 the
            // encoding characters: `MSH|^~\&`.
            out.push(fs);
            out.push_str(&self.delimiters.encoding_characters());
        }
        let first = if header { 2 } else { 0 };
        for field in self.fields.iter().take(n_fields).skip(first) {
            out.push(fs);
            out.push_str(field);
        }
    }
}

impl fmt::Debug for SegmentBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SegmentBuilder")
            .field("id", &self.id)
            .field("fields", &self.fields.len())
            .finish()
    }
}

/// Replaces piece `n` (1-based) of `raw` split on `separator` with
/// `replace(old piece)`, adding empty pieces when there are fewer than `n`,
/// and drops trailing empty pieces.
fn replace_piece(
    raw: &str,
    separator: char,
    n: usize,
    replace: impl FnOnce(&str) -> String,
) -> String {
    let mut pieces: Vec<&str> = raw.split(separator).collect();
    if pieces.len() < n {
        pieces.resize(n, "");
    }
    let new = replace(pieces[n - 1]);
    let mut out = String::with_capacity(raw.len() + new.len() + n);
    for (i, piece) in pieces.iter().enumerate() {
        if i > 0 {
            out.push(separator);
        }
        if i == n - 1 {
            out.push_str(&new);
        } else {
            out.push_str(piece);
        }
    }
    trim_trailing(&out, separator).to_owned()
}

fn trim_trailing(raw: &str, separator: char) -> &str {
    raw.trim_end_matches(separator)
}

/// A segment id written in code.
fn segment_id(id: &str) -> SegmentId {
    id.parse()
        .unwrap_or_else(|()| panic!("BUG: {id:?} is not a segment id"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacing_a_piece_pads_with_empty_pieces() {
        assert_eq!(replace_piece("", '^', 3, |_| "x".into()), "^^x");
        assert_eq!(replace_piece("a^b^c", '^', 2, |_| "x".into()), "a^x^c");
    }

    #[test]
    fn replacing_a_piece_drops_trailing_empty_pieces() {
        assert_eq!(replace_piece("a^b", '^', 2, |_| String::new()), "a");
    }

    #[test]
    fn a_new_builder_writes_the_delimiters_and_charset_into_msh() {
        let builder = MessageBuilder::new(Delimiters::STANDARD);
        assert_eq!(
            builder.to_text(),
            "MSH|^~\\&||||||||||||||||UNICODE UTF-8\r"
        );
    }

    #[test]
    fn custom_delimiters_are_written_into_msh() {
        let d = Delimiters::new('#', '*', '!', '@', '%').unwrap();
        let mut builder = MessageBuilder::new(d).with_charset(Charset::Ascii);
        builder
            .msh()
            .set_component(9, 2, "A01")
            .set_component(9, 1, "ADT");
        assert!(builder.to_text().starts_with("MSH#*!@%#######ADT*A01#"));
    }
}
