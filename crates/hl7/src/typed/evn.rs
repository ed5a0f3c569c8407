//! EVN, the event type segment of ADT messages: when the event was recorded
//! and when it happened. It must never be required: many senders omit it.

use std::borrow::Cow;

use super::{
    FieldError, Hd, Xcn, datetime_field, field_text, first_repetition, repetitions, typed_segment,
};
use crate::datetime::DateTime;
use crate::segment::Segment;

/// The event type segment.
#[derive(Clone, Copy)]
pub struct Evn<'m>(Segment<'m>);

typed_segment!(Evn, "EVN");

impl<'m> Evn<'m> {
    /// EVN-1, the event type code (deprecated; MSH-9.2 holds the trigger).
    pub fn event_type_code(&self) -> Option<Cow<'m, str>> {
        field_text(&self.0, 1)
    }

    /// EVN-2, when the event was recorded.
    pub fn recorded_datetime(&self) -> Result<Option<DateTime>, FieldError> {
        datetime_field(&self.0, 2)
    }

    /// EVN-3, when a planned event is expected.
    pub fn planned_datetime(&self) -> Result<Option<DateTime>, FieldError> {
        datetime_field(&self.0, 3)
    }

    /// EVN-4, the event reason code.
    pub fn event_reason_code(&self) -> Option<Cow<'m, str>> {
        first_repetition(&self.0, 4)?
            .component(1)
            .filter(|c| !c.is_empty())
            .map(|c| c.decoded())
    }

    /// EVN-5, the operators who triggered the event.
    pub fn operators(&self) -> impl Iterator<Item = Xcn<'m>> + use<'m> {
        repetitions(&self.0, 5).map(Xcn::from_repetition)
    }

    /// EVN-6, when the event actually happened.
    pub fn occurred_datetime(&self) -> Result<Option<DateTime>, FieldError> {
        datetime_field(&self.0, 6)
    }

    /// EVN-7, the facility where the event happened.
    pub fn event_facility(&self) -> Hd<'m> {
        Hd::of(first_repetition(&self.0, 7))
    }
}
