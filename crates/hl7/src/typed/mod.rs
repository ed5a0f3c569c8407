//! Typed access to the segments and data types that ingestion reads: MSH,
//! EVN, PID, PV1, ORC, OBR, OBX and NTE, and the composites they hold (HD,
//! CX, XPN, XAD, XTN, XCN, PL, CWE, EI, MSG).
//!
//! Typed views are thin: each accessor reads one field of the underlying
//! [`Segment`] on demand, decodes its escapes, and returns `None` for an absent
//! or empty value. Field numbers follow HL7 v2.5.1, which v2.3 to v2.8 agree
//! on for every field read here. Anything else is reachable through
//! [`Segment::field`] or a [`crate::Path`].
//!
//! These views return PHI (names, identifiers, birth dates, addresses): their
//! `Debug` must never print it, and neither may their errors.

mod composite;
mod evn;
mod msh;
mod nte;
mod obx;
mod order;
mod pid;
mod pv1;

use std::borrow::Cow;

pub use composite::{Cwe, Cx, Ei, Hd, MessageType, Pl, Xad, Xcn, Xpn, Xtn};
pub use evn::Evn;
pub use msh::{AckCondition, Msh};
pub use nte::Nte;
pub use obx::Obx;
pub use order::{Obr, Orc};
pub use pid::Pid;
pub use pv1::Pv1;

use crate::datetime::{DateTime, DateTimeError};
use crate::error::Location;
use crate::message::Message;
use crate::segment::{Field, Repetition, Segment};

/// A field that is present but cannot be read as its type says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// A date/time field that is not a valid HL7 date/time.
    #[error("{location}: {source}")]
    DateTime {
        /// The field.
        location: Location,
        /// What is wrong with it.
        #[source]
        source: DateTimeError,
    },
    /// A coded field whose value is not in its HL7 table.
    #[error("{location}: the value is not a code of HL7 table {table}")]
    UnknownCode {
        /// The field.
        location: Location,
        /// The table, such as `0155`.
        table: &'static str,
    },
}

impl FieldError {
    /// Where the field is.
    pub fn location(&self) -> Location {
        match self {
            FieldError::DateTime { location, .. } | FieldError::UnknownCode { location, .. } => {
                *location
            }
        }
    }
}

impl<'a> Message<'a> {
    /// The message header. Every parsed message has one.
    pub fn msh(&self) -> Msh<'_> {
        // A message is parsed only when its first segment is an MSH.
        Msh(Segment::new(self, 0))
    }

    /// The first EVN segment.
    pub fn evn(&self) -> Option<Evn<'_>> {
        self.segment("EVN").and_then(Evn::new)
    }

    /// The first PID segment.
    pub fn pid(&self) -> Option<Pid<'_>> {
        self.segment("PID").and_then(Pid::new)
    }

    /// The first PV1 segment.
    pub fn pv1(&self) -> Option<Pv1<'_>> {
        self.segment("PV1").and_then(Pv1::new)
    }

    /// Every ORC segment, in order.
    pub fn common_orders(&self) -> impl Iterator<Item = Orc<'_>> + '_ {
        self.segments_by_id("ORC").filter_map(Orc::new)
    }

    /// Every OBR segment, in order. Each one's observations are
    /// [`Obr::observations`].
    pub fn observation_requests(&self) -> impl Iterator<Item = Obr<'_>> + '_ {
        self.segments_by_id("OBR").filter_map(Obr::new)
    }

    /// Every OBX segment, in order.
    pub fn observations(&self) -> impl Iterator<Item = Obx<'_>> + '_ {
        self.segments_by_id("OBX").filter_map(Obx::new)
    }

    /// Every NTE segment, in order.
    pub fn notes(&self) -> impl Iterator<Item = Nte<'_>> + '_ {
        self.segments_by_id("NTE").filter_map(Nte::new)
    }
}

/// The decoded text of field `n`, or `None` when it is absent or empty.
fn field_text<'m>(segment: &Segment<'m>, n: usize) -> Option<Cow<'m, str>> {
    segment
        .field(n)
        .filter(|f| !f.is_empty())
        .map(|f| f.decoded())
}

/// The decoded first component of field `n`, or `None` when it is empty.
fn first_component<'m>(segment: &Segment<'m>, n: usize) -> Option<Cow<'m, str>> {
    segment
        .field(n)?
        .component(1)
        .filter(|c| !c.is_empty())
        .map(|c| c.decoded())
}

/// The first repetition of field `n`.
fn first_repetition<'m>(segment: &Segment<'m>, n: usize) -> Option<Repetition<'m>> {
    segment.field(n)?.repetition(1)
}

/// The non-empty repetitions of field `n`.
fn repetitions<'m>(
    segment: &Segment<'m>,
    n: usize,
) -> impl Iterator<Item = Repetition<'m>> + use<'m> {
    segment
        .field(n)
        .map(|f: Field<'m>| f.repetitions())
        .into_iter()
        .flatten()
        .filter(|r| !r.is_empty())
}

/// A date/time field (DTM, or the first component of a TS).
fn datetime_field(segment: &Segment<'_>, n: usize) -> Result<Option<DateTime>, FieldError> {
    let Some(text) = first_component(segment, n) else {
        return Ok(None);
    };
    DateTime::parse(&text)
        .map(Some)
        .map_err(|source| FieldError::DateTime {
            location: segment.location(Some(n)),
            source,
        })
}

/// Implements what every typed segment view shares.
macro_rules! typed_segment {
    ($name:ident, $id:literal) => {
        impl<'m> $name<'m> {
            /// Views `segment` as this type, if its id matches.
            pub fn new(segment: $crate::segment::Segment<'m>) -> Option<Self> {
                (segment.id() == $id).then_some($name(segment))
            }

            /// The underlying segment, for fields without an accessor.
            pub fn segment(&self) -> $crate::segment::Segment<'m> {
                self.0
            }
        }

        impl std::fmt::Debug for $name<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                // Field contents are PHI: show only where the segment is.
                f.debug_struct(stringify!($name))
                    .field("position", &self.0.position())
                    .finish_non_exhaustive()
            }
        }
    };
}
use typed_segment;

/// The segments after `segment` up to the first one `stop` accepts.
fn following<'m>(
    segment: Segment<'m>,
    mut stop: impl FnMut(&Segment<'m>) -> bool,
) -> impl Iterator<Item = Segment<'m>> {
    std::iter::successors(segment.next(), |s| s.next()).take_while(move |s| !stop(s))
}
