//! NTE, a free-text note or comment attached to the segment before it.
//!
//! Notes are PHI and may be long; this module must never print one.

use std::borrow::Cow;

use super::{Cwe, field_text, first_repetition, repetitions, typed_segment};
use crate::segment::Segment;

/// The notes and comments segment.
#[derive(Clone, Copy)]
pub struct Nte<'m>(Segment<'m>);

typed_segment!(Nte, "NTE");

impl<'m> Nte<'m> {
    /// NTE-1, the set id.
    pub fn set_id(&self) -> Option<Cow<'m, str>> {
        field_text(&self.0, 1)
    }

    /// NTE-2, the source of the comment (table 0105: `L` ancillary, `P`
    /// placer, `O` other).
    pub fn source(&self) -> Option<Cow<'m, str>> {
        field_text(&self.0, 2)
    }

    /// NTE-3, each repetition of the comment, decoded (`\.br\` becomes a line
    /// feed).
    pub fn comments(&self) -> impl Iterator<Item = Cow<'m, str>> + use<'m> {
        repetitions(&self.0, 3).map(|r| r.decoded())
    }

    /// NTE-3, the repetitions joined by line feeds.
    pub fn comment(&self) -> Option<Cow<'m, str>> {
        let mut comments = self.comments();
        let first = comments.next()?;
        let Some(second) = comments.next() else {
            return Some(first);
        };
        let mut joined = first.into_owned();
        for comment in std::iter::once(second).chain(comments) {
            joined.push('\n');
            joined.push_str(&comment);
        }
        Some(Cow::Owned(joined))
    }

    /// NTE-4, the comment type.
    pub fn comment_type(&self) -> Option<Cwe<'m>> {
        first_repetition(&self.0, 4)
            .filter(|r| !r.is_empty())
            .map(Cwe::from_repetition)
    }
}
