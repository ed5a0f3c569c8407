//! Views into a parsed message: [`Segment`], [`Field`], [`Repetition`],
//! [`Component`], [`SubComponent`] and the leaf [`Value`].
//!
//! A view is a borrowed slice of the message text plus the delimiters; it is
//! `Copy`, costs nothing to make, and splits its children only when they are
//! read. Indexes are 1-based, as HL7 counts them; index 0 is never present.
//! Splitting a value always yields at least one piece (an empty value has one
//! empty repetition), as `str::split` does.
//!
//! Views hold PHI: their `Debug` must never print contents, only sizes.

use std::borrow::Cow;
use std::fmt;
use std::iter::FusedIterator;

use crate::charset::Charset;
use crate::delimiters::{Contains, Delimiters};
use crate::error::{Location, SegmentId};
use crate::escape;
use crate::message::{FieldSpan, Message};

/// What a view needs to split and decode its text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ctx {
    pub(crate) delimiters: Delimiters,
    pub(crate) charset: Charset,
}

/// One segment of a message.
#[derive(Clone, Copy)]
pub struct Segment<'m> {
    message: &'m Message<'m>,
    index: usize,
    /// The whole message text, which field spans index into.
    text: &'m str,
    /// This segment's fields, from field 1.
    spans: &'m [FieldSpan],
    ctx: Ctx,
}

impl<'m> Segment<'m> {
    #[inline]
    pub(crate) fn new(message: &'m Message<'m>, index: usize) -> Self {
        let entry = &message.segments[index];
        Segment {
            message,
            index,
            text: &message.text,
            spans: message
                .fields
                .get(entry.fields_start..entry.fields_end)
                .unwrap_or(&[]),
            ctx: message.ctx(),
        }
    }

    fn entry(&self) -> &'m crate::message::SegmentEntry {
        &self.message.segments[self.index]
    }

    /// The segment id (`PID`, `OBX`, `ZPI`, …).
    pub fn id(&self) -> SegmentId {
        self.entry().id
    }

    /// The segment's 1-based position in the message (the MSH is 1).
    pub fn position(&self) -> usize {
        self.index + 1
    }

    /// Which occurrence of its id this segment is (the third OBX is 3).
    pub fn occurrence(&self) -> usize {
        let id = self.id();
        self.message.segments[..=self.index]
            .iter()
            .filter(|entry| entry.id == id)
            .count()
    }

    /// The message this segment belongs to.
    pub fn message(&self) -> &'m Message<'m> {
        self.message
    }

    /// Where this segment, or one of its fields, is.
    pub fn location(&self, field: Option<usize>) -> Location {
        Location {
            segment: self.position(),
            segment_id: Some(self.id()),
            occurrence: Some(self.occurrence()),
            field,
        }
    }

    /// How many fields the segment holds, after its id. For an MSH this
    /// counts MSH-1, the field separator.
    #[inline]
    pub fn n_fields(&self) -> usize {
        self.spans.len()
    }

    /// Field `n`, numbered as the standard numbers it: in an MSH, field 1 is
    /// the field separator and field 2 the encoding characters, and neither is
    /// ever split or decoded.
    #[inline]
    pub fn field(&self, n: usize) -> Option<Field<'m>> {
        let span = self.spans.get(n.checked_sub(1)?)?;
        Some(field_at(self.text, span, self.ctx))
    }

    /// All fields, from field 1.
    #[inline]
    pub fn fields(&self) -> Fields<'m> {
        Fields {
            text: self.text,
            spans: self.spans.iter(),
            ctx: self.ctx,
        }
    }

    /// The segment as it is written, id included, terminator excluded. This
    /// may be PHI: handle it as such.
    pub fn as_str(&self) -> &'m str {
        let span = self.entry().span;
        self.message.text.get(span.start..span.end).unwrap_or("")
    }

    /// The segment that follows this one, if any.
    pub fn next(&self) -> Option<Segment<'m>> {
        (self.index + 1 < self.message.segments.len())
            .then(|| Segment::new(self.message, self.index + 1))
    }
}

impl fmt::Debug for Segment<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("id", &self.id())
            .field("position", &self.position())
            .field("fields", &self.n_fields())
            .finish()
    }
}

/// The segments of a message, in order.
#[derive(Clone)]
pub struct Segments<'m> {
    message: &'m Message<'m>,
    front: usize,
    back: usize,
}

impl<'m> Segments<'m> {
    pub(crate) fn new(message: &'m Message<'m>) -> Self {
        Segments {
            message,
            front: 0,
            back: message.segments.len(),
        }
    }
}

impl<'m> Iterator for Segments<'m> {
    type Item = Segment<'m>;

    #[inline]
    fn next(&mut self) -> Option<Segment<'m>> {
        (self.front < self.back).then(|| {
            self.front += 1;
            Segment::new(self.message, self.front - 1)
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.back - self.front;
        (n, Some(n))
    }

    fn nth(&mut self, n: usize) -> Option<Segment<'m>> {
        self.front = self.front.saturating_add(n).min(self.back);
        self.next()
    }
}

impl DoubleEndedIterator for Segments<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        (self.front < self.back).then(|| {
            self.back -= 1;
            Segment::new(self.message, self.back)
        })
    }
}

impl ExactSizeIterator for Segments<'_> {}
impl FusedIterator for Segments<'_> {}

impl fmt::Debug for Segments<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Segments({})", self.back - self.front)
    }
}

/// The fields of a segment, from field 1.
#[derive(Clone)]
pub struct Fields<'m> {
    text: &'m str,
    spans: std::slice::Iter<'m, FieldSpan>,
    ctx: Ctx,
}

impl<'m> Iterator for Fields<'m> {
    type Item = Field<'m>;

    #[inline]
    fn next(&mut self) -> Option<Field<'m>> {
        let span = self.spans.next()?;
        Some(field_at(self.text, span, self.ctx))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.spans.size_hint()
    }
}

impl fmt::Debug for Fields<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fields({})", self.spans.len())
    }
}

#[inline]
fn field_at<'m>(text: &'m str, span: &FieldSpan, ctx: Ctx) -> Field<'m> {
    Field(View {
        // Spans end on ASCII separators, so they always fall on character
        // boundaries and `get` always succeeds.
        raw: text.get(span.start..span.end).unwrap_or(""),
        ctx,
        contains: span.contains,
    })
}

impl ExactSizeIterator for Fields<'_> {}
impl FusedIterator for Fields<'_> {}

/// The common part of every view: raw text and how to read it.
#[derive(Clone, Copy, PartialEq, Eq)]
struct View<'m> {
    raw: &'m str,
    ctx: Ctx,
    /// Which delimiters the text may contain (bits of [`Contains`]), as the
    /// parser recorded them for the whole field. A value never splits on a
    /// separator it does not contain, and never decodes without an escape
    /// character; MSH-1 and MSH-2 contain nothing, so they are never split
    /// nor decoded.
    contains: u8,
}

impl<'m> View<'m> {
    #[inline]
    fn decoded(&self) -> Cow<'m, str> {
        if self.contains & Contains::ESCAPE == 0 {
            Cow::Borrowed(self.raw)
        } else {
            escape::decode(self.raw, &self.ctx.delimiters, self.ctx.charset)
        }
    }

    #[inline]
    fn split(&self, separator: u8, bit: u8) -> Splitter<'m> {
        Splitter {
            rest: Some(self.raw),
            separator: (self.contains & bit != 0).then_some(separator),
        }
    }

    #[inline]
    fn child(&self, raw: &'m str) -> View<'m> {
        View { raw, ..*self }
    }
}

/// Splits a value on one separator, or not at all when it has none.
#[derive(Clone, Debug)]
struct Splitter<'m> {
    rest: Option<&'m str>,
    separator: Option<u8>,
}

impl<'m> Iterator for Splitter<'m> {
    type Item = &'m str;

    #[inline]
    fn next(&mut self) -> Option<&'m str> {
        let rest = self.rest?;
        let at = self
            .separator
            .and_then(|separator| find_byte(separator, rest.as_bytes()));
        match at {
            Some(i) => {
                // The separator is ASCII, so both sides are on character
                // boundaries and `get` always succeeds.
                self.rest = rest.get(i + 1..);
                Some(rest.get(..i).unwrap_or(rest))
            }
            None => {
                self.rest = None;
                Some(rest)
            }
        }
    }
}

impl FusedIterator for Splitter<'_> {}

/// The first position of `needle` in `haystack`, eight bytes at a time.
/// Values are short: this beats both a plain loop and a vectorised search,
/// whose set-up costs more than the scan.
#[inline]
fn find_byte(needle: u8, haystack: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let pattern = ONES * u64::from(needle);
    let mut chunks = haystack.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(<[u8; 8]>::try_from(chunk).unwrap_or([0; 8]));
        let x = word ^ pattern;
        // A byte of `x` is zero where `word` holds the needle; the lowest
        // flagged byte is always a true match.
        let found = x.wrapping_sub(ONES) & !x & HIGHS;
        if found != 0 {
            return Some(offset + (found.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == needle)
        .map(|i| offset + i)
}

macro_rules! view_methods {
    ($name:ident) => {
        impl<'m> $name<'m> {
            /// The text as it is written, escape sequences included.
            #[inline]
            pub fn as_str(&self) -> &'m str {
                self.0.raw
            }

            /// The text with its escape sequences decoded (see [`crate::escape`]);
            /// borrowed when there are none.
            #[inline]
            pub fn decoded(&self) -> Cow<'m, str> {
                self.0.decoded()
            }

            /// The escape tokens of the text, for readers that want formatting
            /// sequences such as `\H\` or `\.sp\` rather than text.
            pub fn tokens(&self) -> escape::Tokens<'m> {
                escape::tokens(self.0.raw, &self.0.ctx.delimiters)
            }

            /// Whether the text is empty (absent, in HL7 terms).
            #[inline]
            pub fn is_empty(&self) -> bool {
                self.0.raw.is_empty()
            }

            /// Whether the value is HL7's explicit null, `""`, which asks the
            /// receiver to delete what it holds.
            pub fn is_null(&self) -> bool {
                self.0.raw == "\"\""
            }

            /// This view as a plain [`Value`].
            #[inline]
            pub fn value(&self) -> Value<'m> {
                Value(self.0)
            }
        }

        impl fmt::Debug for $name<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // Contents are PHI: show only their size.
                f.debug_struct(stringify!($name))
                    .field("bytes", &self.0.raw.len())
                    .finish()
            }
        }
    };
}

macro_rules! pieces {
    ($(#[$doc:meta])* $iter:ident, $item:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug)]
        pub struct $iter<'m> {
            view: View<'m>,
            splitter: Splitter<'m>,
        }

        impl<'m> Iterator for $iter<'m> {
            type Item = $item<'m>;

            #[inline]
            fn next(&mut self) -> Option<$item<'m>> {
                self.splitter.next().map(|raw| $item(self.view.child(raw)))
            }
        }

        impl FusedIterator for $iter<'_> {}
    };
}

impl fmt::Debug for View<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "View({} bytes)", self.raw.len())
    }
}

/// A whole field, with all its repetitions.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Field<'m>(View<'m>);

/// One repetition of a field.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Repetition<'m>(View<'m>);

/// One component of a repetition.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Component<'m>(View<'m>);

/// One sub-component of a component.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SubComponent<'m>(View<'m>);

/// A value at any depth, as [`Message::get`] returns it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Value<'m>(View<'m>);

view_methods!(Field);
view_methods!(Repetition);
view_methods!(Component);
view_methods!(SubComponent);
view_methods!(Value);

pieces!(
    /// The repetitions of a field.
    Repetitions,
    Repetition
);
pieces!(
    /// The components of a repetition.
    Components,
    Component
);
pieces!(
    /// The sub-components of a component.
    SubComponents,
    SubComponent
);

impl<'m> Field<'m> {
    /// The repetitions of the field (at least one).
    #[inline]
    pub fn repetitions(&self) -> Repetitions<'m> {
        Repetitions {
            view: self.0,
            splitter: self.0.split(
                self.0.ctx.delimiters.repetition_byte(),
                Contains::REPETITION,
            ),
        }
    }

    /// Repetition `n`, 1-based.
    #[inline]
    pub fn repetition(&self, n: usize) -> Option<Repetition<'m>> {
        self.repetitions().nth(n.checked_sub(1)?)
    }

    /// How many repetitions the field holds (at least one).
    pub fn n_repetitions(&self) -> usize {
        if self.0.contains & Contains::REPETITION == 0 {
            return 1;
        }
        let separator = self.0.ctx.delimiters.repetition_byte();
        1 + self.0.raw.bytes().filter(|&b| b == separator).count()
    }

    /// Component `n` of the first repetition, the usual way to read a field
    /// that does not repeat.
    #[inline]
    pub fn component(&self, n: usize) -> Option<Component<'m>> {
        self.repetition(1)?.component(n)
    }
}

impl<'m> Repetition<'m> {
    /// The components of the repetition (at least one).
    #[inline]
    pub fn components(&self) -> Components<'m> {
        Components {
            view: self.0,
            splitter: self
                .0
                .split(self.0.ctx.delimiters.component_byte(), Contains::COMPONENT),
        }
    }

    /// Component `n`, 1-based.
    #[inline]
    pub fn component(&self, n: usize) -> Option<Component<'m>> {
        self.components().nth(n.checked_sub(1)?)
    }
}

impl<'m> Component<'m> {
    /// The sub-components of the component (at least one).
    #[inline]
    pub fn subcomponents(&self) -> SubComponents<'m> {
        SubComponents {
            view: self.0,
            splitter: self.0.split(
                self.0.ctx.delimiters.subcomponent_byte(),
                Contains::SUBCOMPONENT,
            ),
        }
    }

    /// Sub-component `n`, 1-based.
    #[inline]
    pub fn subcomponent(&self, n: usize) -> Option<SubComponent<'m>> {
        self.subcomponents().nth(n.checked_sub(1)?)
    }
}

impl<'m> Value<'m> {
    /// Splits this value as a composite whose parts are separated by `level`'s
    /// separator: components of a repetition, or sub-components of a component.
    pub(crate) fn part(&self, separator: Separator, n: usize) -> Option<Value<'m>> {
        let (byte, bit) = match separator {
            Separator::Component => (self.0.ctx.delimiters.component_byte(), Contains::COMPONENT),
            Separator::SubComponent => (
                self.0.ctx.delimiters.subcomponent_byte(),
                Contains::SUBCOMPONENT,
            ),
            Separator::None => return (n == 1).then_some(*self),
        };
        self.0
            .split(byte, bit)
            .nth(n.checked_sub(1)?)
            .map(|raw| Value(self.0.child(raw)))
    }
}

/// Which separator splits a composite value into its parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Separator {
    Component,
    SubComponent,
    /// Too deep to split further: the value is its only part.
    None,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_byte_finds_the_first_match_at_any_offset() {
        for len in 0..40 {
            for at in 0..len {
                let mut haystack = vec![b'a'; len];
                haystack[at] = b'^';
                if at + 1 < len {
                    // A later match, and a byte that differs by one bit.
                    haystack[len - 1] = b'^';
                    haystack[at + 1..len - 1].fill(b'_');
                }
                assert_eq!(find_byte(b'^', &haystack), Some(at), "{len} {at}");
            }
            assert_eq!(find_byte(b'^', &vec![b']'; len]), None);
        }
        assert_eq!(find_byte(0x80, &[0x00, 0x7F, 0x81, 0x80]), Some(3));
        assert_eq!(find_byte(0x00, &[0x01, 0x00, 0x00]), Some(1));
    }

    #[test]
    fn the_splitter_yields_one_piece_for_an_empty_value() {
        let pieces: Vec<_> = Splitter {
            rest: Some(""),
            separator: Some(b'^'),
        }
        .collect();
        assert_eq!(pieces, vec![""]);
    }

    #[test]
    fn the_splitter_keeps_empty_pieces_between_separators() {
        let pieces: Vec<_> = Splitter {
            rest: Some("a^^b^"),
            separator: Some(b'^'),
        }
        .collect();
        assert_eq!(pieces, vec!["a", "", "b", ""]);
    }

    #[test]
    fn a_value_without_the_separator_is_never_split() {
        let pieces: Vec<_> = Splitter {
            rest: Some("^~\\&"),
            separator: None,
        }
        .collect();
        assert_eq!(pieces, vec!["^~\\&"]);
    }
}
