//! ORC (common order) and OBR (observation request), the segments that open
//! an order group in ORU and ORM messages.
//!
//! [`Obr::observations`] walks the segments that follow an OBR; it must stop
//! at the next order group and never look past the message.

use std::borrow::Cow;

use super::{
    Cwe, Ei, FieldError, Nte, Obx, Xcn, datetime_field, field_text, first_repetition, following,
    repetitions, typed_segment,
};
use crate::datetime::DateTime;
use crate::segment::Segment;

/// The common order segment.
#[derive(Clone, Copy)]
pub struct Orc<'m>(Segment<'m>);

typed_segment!(Orc, "ORC");

impl<'m> Orc<'m> {
    /// ORC-1, the order control code (table 0119: `NW`, `RE`, `CA`, …).
    pub fn order_control(&self) -> Option<Cow<'m, str>> {
        field_text(&self.0, 1)
    }

    /// ORC-2, the placer order number.
    pub fn placer_order_number(&self) -> Option<Ei<'m>> {
        ei(&self.0, 2)
    }

    /// ORC-3, the filler order number.
    pub fn filler_order_number(&self) -> Option<Ei<'m>> {
        ei(&self.0, 3)
    }

    /// ORC-4, the placer group number.
    pub fn placer_group_number(&self) -> Option<Ei<'m>> {
        ei(&self.0, 4)
    }

    /// ORC-5, the order status (table 0038).
    pub fn order_status(&self) -> Option<Cow<'m, str>> {
        field_text(&self.0, 5)
    }

    /// ORC-9, when the order transaction happened.
    pub fn transaction_datetime(&self) -> Result<Option<DateTime>, FieldError> {
        datetime_field(&self.0, 9)
    }

    /// ORC-12, the ordering providers.
    pub fn ordering_providers(&self) -> impl Iterator<Item = Xcn<'m>> + use<'m> {
        repetitions(&self.0, 12).map(Xcn::from_repetition)
    }
}

/// The observation request segment.
#[derive(Clone, Copy)]
pub struct Obr<'m>(Segment<'m>);

typed_segment!(Obr, "OBR");

impl<'m> Obr<'m> {
    /// OBR-1, the set id.
    pub fn set_id(&self) -> Option<Cow<'m, str>> {
        field_text(&self.0, 1)
    }

    /// OBR-2, the placer order number.
    pub fn placer_order_number(&self) -> Option<Ei<'m>> {
        ei(&self.0, 2)
    }

    /// OBR-3, the filler order number.
    pub fn filler_order_number(&self) -> Option<Ei<'m>> {
        ei(&self.0, 3)
    }

    /// OBR-4, the universal service identifier: what was ordered.
    pub fn universal_service_id(&self) -> Option<Cwe<'m>> {
        first_repetition(&self.0, 4)
            .filter(|r| !r.is_empty())
            .map(Cwe::from_repetition)
    }

    /// OBR-7, when the observation (the specimen collection) started.
    pub fn observation_datetime(&self) -> Result<Option<DateTime>, FieldError> {
        datetime_field(&self.0, 7)
    }

    /// OBR-8, when the observation ended.
    pub fn observation_end_datetime(&self) -> Result<Option<DateTime>, FieldError> {
        datetime_field(&self.0, 8)
    }

    /// OBR-16, the ordering providers.
    pub fn ordering_providers(&self) -> impl Iterator<Item = Xcn<'m>> + use<'m> {
        repetitions(&self.0, 16).map(Xcn::from_repetition)
    }

    /// OBR-22, when results were reported or their status last changed.
    pub fn results_reported_datetime(&self) -> Result<Option<DateTime>, FieldError> {
        datetime_field(&self.0, 22)
    }

    /// OBR-24, the diagnostic service section (`LAB`, `RAD`, …).
    pub fn diagnostic_service_section(&self) -> Option<Cow<'m, str>> {
        field_text(&self.0, 24)
    }

    /// OBR-25, the result status (table 0123: `F` final, `P` preliminary, `C`
    /// corrected, …).
    pub fn result_status(&self) -> Option<Cow<'m, str>> {
        field_text(&self.0, 25)
    }

    /// The OBX segments of this request: those after it, up to the next
    /// OBR, ORC, PID or header segment.
    pub fn observations(&self) -> impl Iterator<Item = Obx<'m>> + use<'m> {
        following(self.0, |s| {
            s.id() == "OBR" || s.id() == "ORC" || s.id() == "PID" || s.id() == "MSH"
        })
        .filter_map(Obx::new)
    }

    /// The NTE segments right after this OBR (before its first OBX).
    pub fn notes(&self) -> impl Iterator<Item = Nte<'m>> + use<'m> {
        following(self.0, |s| s.id() != "NTE").filter_map(Nte::new)
    }
}

fn ei<'m>(segment: &Segment<'m>, n: usize) -> Option<Ei<'m>> {
    first_repetition(segment, n)
        .filter(|r| !r.is_empty())
        .map(Ei::from_repetition)
}
