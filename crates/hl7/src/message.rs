//! One parsed HL7 v2 message: the parser and the [`Message`] it returns.
//!
//! Parsing makes one pass over the bytes: it reads the delimiters from MSH-1
//! and MSH-2, the character set from MSH-18, turns the bytes into text
//! (borrowed unless they are Latin-1 with accented letters) and records where
//! each segment and each field starts and ends, in two flat lists. Repetitions,
//! components and sub-components are split only when they are read, and escape
//! sequences are decoded only when asked for, so reading a field allocates
//! nothing unless it must decode an escape.
//!
//! The parser must never panic, never recurse, and never go past a [`Limits`]
//! bound; `Debug` of a message must never print field contents.

use std::borrow::Cow;
use std::fmt;

use crate::charset::Charset;
use crate::delimiters::Delimiters;
use crate::error::{Location, ParseError, ParseWarning, SegmentId};
use crate::limits::Limits;
use crate::path::Path;
use crate::segment::{Ctx, Segment, Segments, Value};

/// How a message is parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseOptions {
    /// When true, only a carriage return may end a segment, as the standard
    /// says, and a line feed is an error. When false (the default), a line feed
    /// or CR LF also ends a segment, and the message reports it in
    /// [`Message::line_endings`] and [`Message::warnings`].
    pub strict_segment_terminator: bool,
    /// The bounds the message must stay within.
    pub limits: Limits,
    /// The character set assumed when MSH-18 is empty. The standard says ASCII.
    pub default_charset: Charset,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            strict_segment_terminator: false,
            limits: Limits::default(),
            default_charset: Charset::Ascii,
        }
    }
}

/// Which bytes ended the segments of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineEndings {
    /// Carriage returns only, as the standard says (or a single segment).
    Cr,
    /// Line feeds only.
    Lf,
    /// CR LF pairs only.
    CrLf,
    /// More than one kind.
    Mixed,
}

/// A half-open byte range in the message text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) start: usize,
    pub(crate) end: usize,
}

/// Where one field is, and which delimiters it contains (bits of
/// [`Contains`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FieldSpan {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) contains: u8,
}

/// Where one segment and its fields are.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SegmentEntry {
    pub(crate) id: SegmentId,
    pub(crate) span: Span,
    /// The range of this segment's fields in `Message::fields`; the first is
    /// field 1.
    pub(crate) fields_start: usize,
    pub(crate) fields_end: usize,
}

/// A parsed HL7 v2 message, borrowing the bytes it was parsed from.
///
/// `Debug` shows the structure only (`Message { segments: 12, type: ORU^R01 }`),
/// never field contents.
#[derive(Clone)]
pub struct Message<'a> {
    pub(crate) text: Cow<'a, str>,
    pub(crate) delimiters: Delimiters,
    pub(crate) charset: Charset,
    pub(crate) segments: Vec<SegmentEntry>,
    pub(crate) fields: Vec<FieldSpan>,
    line_endings: LineEndings,
    warnings: Vec<ParseWarning>,
}

const BYTE_ORDER_MARK: &[u8] = b"\xEF\xBB\xBF";

impl<'a> Message<'a> {
    /// Parses one message with the default [`ParseOptions`]: lenient about
    /// line endings, default limits, ASCII when MSH-18 is empty.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ParseError> {
        Self::parse_with(bytes, &ParseOptions::default())
    }

    /// Parses one message.
    pub fn parse_with(bytes: &'a [u8], options: &ParseOptions) -> Result<Self, ParseError> {
        let limits = &options.limits;
        if bytes.len() > limits.message_bytes_max {
            return Err(ParseError::TooLarge {
                bytes: bytes.len(),
                bytes_max: limits.message_bytes_max,
            });
        }
        let mut warnings = Vec::new();
        let mut bytes = bytes;
        if let Some(rest) = bytes.strip_prefix(BYTE_ORDER_MARK) {
            bytes = rest;
            warnings.push(ParseWarning::ByteOrderMarkSkipped);
        }
        let Some(first) = bytes.iter().position(|&b| b != b'\r' && b != b'\n') else {
            return Err(ParseError::Empty);
        };
        if options.strict_segment_terminator && bytes[..first].contains(&b'\n') {
            return Err(ParseError::NonStandardSegmentTerminator {
                location: Location {
                    segment: 1,
                    segment_id: None,
                    occurrence: None,
                    field: None,
                },
            });
        }
        let bytes_with_blank_lines = bytes;
        let bytes = &bytes[first..];
        match SegmentId::from_bytes(bytes) {
            Some(id) if id == "MSH" => {}
            Some(id) if id == "FHS" || id == "BHS" => return Err(ParseError::Batch { found: id }),
            found => return Err(ParseError::MissingHeader { found }),
        }
        let delimiters = Delimiters::from_header(bytes).map_err(ParseError::Delimiters)?;
        let header_end = memchr::memchr2(b'\r', b'\n', bytes).unwrap_or(bytes.len());
        let charset = header_charset(&bytes[..header_end], &delimiters, options.default_charset)?;
        let text = charset
            .decode(bytes)
            .map_err(|offset| ParseError::InvalidCharacter {
                charset,
                byte: bytes.get(offset).copied().unwrap_or(0),
                location: locate(bytes, offset, &delimiters),
            })?;
        let index = Index::build(text.as_bytes(), &delimiters, options)?;
        // Empty lines before the MSH were skipped above; count them too.
        let n_empty = index.n_empty_segments + n_line_breaks(&bytes_with_blank_lines[..first]);
        let line_endings = index.line_endings();
        if line_endings != LineEndings::Cr {
            warnings.push(ParseWarning::NonStandardSegmentTerminator(line_endings));
        }
        if n_empty > 0 {
            warnings.push(ParseWarning::EmptySegmentsSkipped {
                n_segments: n_empty,
            });
        }
        Ok(Message {
            text,
            delimiters,
            charset,
            segments: index.segments,
            fields: index.fields,
            line_endings,
            warnings,
        })
    }

    /// Copies the borrowed text so that the message outlives its bytes.
    pub fn into_owned(self) -> Message<'static> {
        Message {
            text: Cow::Owned(self.text.into_owned()),
            delimiters: self.delimiters,
            charset: self.charset,
            segments: self.segments,
            fields: self.fields,
            line_endings: self.line_endings,
            warnings: self.warnings,
        }
    }
}

impl Message<'_> {
    /// The delimiters read from MSH-1 and MSH-2.
    pub fn delimiters(&self) -> Delimiters {
        self.delimiters
    }

    /// The character set read from MSH-18 (or the default when it is empty).
    pub fn charset(&self) -> Charset {
        self.charset
    }

    /// Which bytes ended the segments.
    pub fn line_endings(&self) -> LineEndings {
        self.line_endings
    }

    /// What the lenient parser accepted that the standard does not allow.
    pub fn warnings(&self) -> &[ParseWarning] {
        &self.warnings
    }

    /// The whole message as text, segment terminators as they were. This is
    /// PHI: handle it as such.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// How many segments the message holds (empty lines are not segments).
    pub fn n_segments(&self) -> usize {
        self.segments.len()
    }

    /// All segments, in order.
    #[inline]
    pub fn segments(&self) -> Segments<'_> {
        Segments::new(self)
    }

    /// The first segment with this id.
    pub fn segment(&self, id: &str) -> Option<Segment<'_>> {
        self.segments_by_id(id).next()
    }

    /// Every segment with this id, in order.
    pub fn segments_by_id(&self, id: &str) -> impl Iterator<Item = Segment<'_>> + '_ {
        let id = id.parse::<SegmentId>().ok();
        self.segments()
            .filter(move |segment| Some(segment.id()) == id)
    }

    /// The value at a path such as `PID-5.1`, `PID-3(2).4.1` or `OBX(3)-5`:
    /// a whole field, a repetition, a component or a sub-component, depending
    /// on how deep the path goes. `None` when any part of it is absent.
    pub fn get(&self, path: &Path) -> Option<Value<'_>> {
        let segment = self
            .segments()
            .filter(|segment| segment.id() == path.segment())
            .nth(path.occurrence() - 1)?;
        let field = segment.field(path.field())?;
        if path.repetition().is_none() && path.component().is_none() {
            return Some(field.value());
        }
        let repetition = field.repetition(path.repetition().unwrap_or(1))?;
        let Some(component) = path.component() else {
            return Some(repetition.value());
        };
        let component = repetition.component(component)?;
        match path.subcomponent() {
            None => Some(component.value()),
            Some(n) => component.subcomponent(n).map(|s| s.value()),
        }
    }

    pub(crate) fn ctx(&self) -> Ctx {
        Ctx {
            delimiters: self.delimiters,
            charset: self.charset,
        }
    }
}

impl fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message_type = self.msh().message_type();
        let shown = |part: Option<Cow<'_, str>>| -> String {
            match part {
                Some(text)
                    if text.len() <= 8 && text.bytes().all(|b| b.is_ascii_alphanumeric()) =>
                {
                    text.into_owned()
                }
                Some(_) => "?".to_owned(),
                None => String::new(),
            }
        };
        write!(
            f,
            "Message {{ segments: {}, type: {}^{} }}",
            self.segments.len(),
            shown(message_type.code()),
            shown(message_type.trigger()),
        )
    }
}

/// Reads MSH-18 from the raw MSH segment. Only its first repetition's first
/// component names the character set of the message.
fn header_charset(
    header: &[u8],
    delimiters: &Delimiters,
    default: Charset,
) -> Result<Charset, ParseError> {
    // The raw split puts MSH-2 at index 1, so MSH-18 is at index 17.
    let Some(raw) = header.split(|&b| b == delimiters.field_byte()).nth(17) else {
        return Ok(default);
    };
    let end = raw
        .iter()
        .position(|&b| b == delimiters.repetition_byte() || b == delimiters.component_byte())
        .unwrap_or(raw.len());
    let name = String::from_utf8_lossy(&raw[..end]);
    if name.trim().is_empty() {
        return Ok(default);
    }
    Ok(Charset::from_hl7_name(&name)?)
}

/// How many line breaks (CR, LF or CR LF) a run of terminators holds.
fn n_line_breaks(terminators: &[u8]) -> usize {
    terminators
        .iter()
        .enumerate()
        .filter(|&(i, &b)| b == b'\n' || (b == b'\r' && terminators.get(i + 1) != Some(&b'\n')))
        .count()
}

/// Finds the segment and field of a byte offset, for an error message.
fn locate(bytes: &[u8], offset: usize, delimiters: &Delimiters) -> Location {
    let mut position = 0;
    let mut start = 0;
    let mut ids: Vec<SegmentId> = Vec::new();
    while start <= bytes.len() {
        let end = memchr::memchr2(b'\r', b'\n', &bytes[start..])
            .map(|i| start + i)
            .unwrap_or(bytes.len());
        if end > start {
            position += 1;
            let segment_id = SegmentId::from_bytes(&bytes[start..end]);
            if let Some(id) = segment_id {
                ids.push(id);
            }
            if offset < end || end == bytes.len() {
                let upto = &bytes[start..offset.clamp(start, end)];
                let n_separators = memchr::memchr_iter(delimiters.field_byte(), upto).count();
                let header = segment_id.is_some_and(|id| id.is_header());
                let field = match n_separators {
                    0 => None,
                    n => Some(n + usize::from(header)),
                };
                return Location {
                    segment: position,
                    segment_id,
                    occurrence: segment_id.map(|id| ids.iter().filter(|&&i| i == id).count()),
                    field,
                };
            }
        }
        start = end + 1;
    }
    Location {
        segment: position.max(1),
        segment_id: None,
        occurrence: None,
        field: None,
    }
}

/// The segment and field positions of a message, built in one pass.
struct Index {
    segments: Vec<SegmentEntry>,
    fields: Vec<FieldSpan>,
    n_empty_segments: usize,
    saw_cr: bool,
    saw_lf: bool,
    saw_crlf: bool,
}

impl Index {
    fn build(
        bytes: &[u8],
        delimiters: &Delimiters,
        options: &ParseOptions,
    ) -> Result<Index, ParseError> {
        let limits = &options.limits;
        let separator = delimiters.field_byte();
        let classes = delimiters.classes();
        let mut index = Index {
            segments: Vec::with_capacity(32),
            fields: Vec::with_capacity(256),
            n_empty_segments: 0,
            saw_cr: false,
            saw_lf: false,
            saw_crlf: false,
        };
        let mut pos = 0;
        // Each turn consumes at least one byte, so the loop ends.
        while pos < bytes.len() {
            let end = memchr::memchr2(b'\r', b'\n', &bytes[pos..])
                .map(|i| pos + i)
                .unwrap_or(bytes.len());
            let next = match bytes.get(end) {
                None => end,
                Some(b'\r') if bytes.get(end + 1) == Some(&b'\n') => {
                    index.saw_crlf = true;
                    end + 2
                }
                Some(b'\r') => {
                    index.saw_cr = true;
                    end + 1
                }
                Some(_) => {
                    index.saw_lf = true;
                    end + 1
                }
            };
            if options.strict_segment_terminator && (index.saw_lf || index.saw_crlf) {
                return Err(ParseError::NonStandardSegmentTerminator {
                    location: index.location_of_next(&bytes[pos..end], None),
                });
            }
            if end == pos {
                index.n_empty_segments += 1;
                pos = next;
                continue;
            }
            if index.segments.len() == limits.segments_max {
                return Err(ParseError::TooManySegments {
                    segments_max: limits.segments_max,
                });
            }
            let segment = &bytes[pos..end];
            let id = match SegmentId::from_bytes(segment) {
                Some(id) if segment.len() == 3 || segment[3] == separator => id,
                _ => {
                    return Err(ParseError::InvalidSegmentId {
                        location: index.location_of_next(segment, None),
                    });
                }
            };
            let first = index.segments.is_empty();
            if !first && (id.is_header() || id == "BTS" || id == "FTS") {
                return Err(ParseError::UnexpectedHeader {
                    location: index.location_of_next(segment, None),
                    found: id,
                });
            }
            let fields_start = index.fields.len();
            if segment.len() > 3 {
                let mut from = pos + 4;
                let mut more = true;
                if first {
                    // MSH-1 is the field separator itself, and neither it nor
                    // MSH-2 is ever split or decoded.
                    index.fields.push(FieldSpan {
                        start: pos + 3,
                        end: pos + 4,
                        contains: 0,
                    });
                    let msh2_end = memchr::memchr(separator, &bytes[from..end]).map(|i| from + i);
                    let msh2 = (from, msh2_end.unwrap_or(end));
                    index.push_field(segment, fields_start, msh2, 0, limits)?;
                    match msh2_end {
                        Some(i) => from = i + 1,
                        None => more = false,
                    }
                }
                if more {
                    // One pass over the segment finds the fields and records
                    // which delimiters each one contains, so that reading a
                    // plain value never scans it again.
                    delimiters.scan_fields(
                        &bytes[from..end],
                        &classes,
                        |start, stop, contains| {
                            let field = (from + start, from + stop);
                            index.push_field(segment, fields_start, field, contains, limits)
                        },
                    )?;
                }
            }
            index.segments.push(SegmentEntry {
                id,
                span: Span { start: pos, end },
                fields_start,
                fields_end: index.fields.len(),
            });
            pos = next;
        }
        Ok(index)
    }

    #[inline]
    fn push_field(
        &mut self,
        segment: &[u8],
        fields_start: usize,
        (start, end): (usize, usize),
        contains: u8,
        limits: &Limits,
    ) -> Result<(), ParseError> {
        let n_fields = self.fields.len() - fields_start;
        if n_fields == limits.fields_per_segment_max {
            return Err(ParseError::TooManyFields {
                location: self.location_of_next(segment, Some(n_fields + 1)),
                fields_max: limits.fields_per_segment_max,
            });
        }
        self.fields.push(FieldSpan {
            start,
            end,
            contains,
        });
        Ok(())
    }

    /// The location of the segment about to be pushed.
    fn location_of_next(&self, segment: &[u8], field: Option<usize>) -> Location {
        let segment_id = SegmentId::from_bytes(segment);
        Location {
            segment: self.segments.len() + 1,
            segment_id,
            occurrence: segment_id
                .map(|id| 1 + self.segments.iter().filter(|s| s.id == id).count()),
            field,
        }
    }

    fn line_endings(&self) -> LineEndings {
        match (self.saw_cr, self.saw_lf, self.saw_crlf) {
            (_, false, false) => LineEndings::Cr,
            (false, true, false) => LineEndings::Lf,
            (false, false, true) => LineEndings::CrLf,
            _ => LineEndings::Mixed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_names_the_segment_and_field_of_an_offset() {
        let bytes = b"MSH|^~\\&|A\rPID|1||X\r";
        let location = locate(bytes, 18, &Delimiters::STANDARD);
        assert_eq!(location.segment, 2);
        assert_eq!(
            location.segment_id.map(|id| id.to_string()).as_deref(),
            Some("PID")
        );
        assert_eq!(location.field, Some(3));
        let location = locate(bytes, 9, &Delimiters::STANDARD);
        assert_eq!((location.segment, location.field), (1, Some(3)));
    }

    #[test]
    fn msh18_is_read_from_its_first_component() {
        // Fields 3 to 17 are empty: 16 separators stand before MSH-18.
        let header = format!("MSH|^~\\&{}8859/1^x~UNICODE UTF-8", "|".repeat(16));
        assert_eq!(
            header_charset(header.as_bytes(), &Delimiters::STANDARD, Charset::Ascii).unwrap(),
            Charset::Latin1
        );
    }
}
