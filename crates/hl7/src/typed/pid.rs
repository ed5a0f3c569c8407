//! PID, the patient identification segment.
//!
//! Everything this module returns is PHI: it must never log, print or put a
//! value into an error.

use std::borrow::Cow;

use super::{
    Cx, FieldError, Xad, Xpn, Xtn, datetime_field, field_text, first_component, first_repetition,
    repetitions, typed_segment,
};
use crate::datetime::DateTime;
use crate::segment::Segment;

/// The patient identification segment.
#[derive(Clone, Copy)]
pub struct Pid<'m>(Segment<'m>);

typed_segment!(Pid, "PID");

impl<'m> Pid<'m> {
    /// PID-1, the set id.
    pub fn set_id(&self) -> Option<Cow<'m, str>> {
        field_text(&self.0, 1)
    }

    /// PID-3, the patient's identifiers, each with its assigning authority
    /// and type (MRN, …). Empty repetitions are skipped.
    pub fn identifiers(&self) -> impl Iterator<Item = Cx<'m>> + use<'m> {
        repetitions(&self.0, 3).map(Cx::from_repetition)
    }

    /// PID-5, the patient's names; the first is the legal name by convention.
    pub fn names(&self) -> impl Iterator<Item = Xpn<'m>> + use<'m> {
        repetitions(&self.0, 5).map(Xpn::from_repetition)
    }

    /// PID-6, the mother's maiden name.
    pub fn mothers_maiden_name(&self) -> Option<Xpn<'m>> {
        first_repetition(&self.0, 6)
            .filter(|r| !r.is_empty())
            .map(Xpn::from_repetition)
    }

    /// PID-7, the date (and maybe time) of birth.
    pub fn birth_datetime(&self) -> Result<Option<DateTime>, FieldError> {
        datetime_field(&self.0, 7)
    }

    /// PID-8, the administrative sex (table 0001: `F`, `M`, `O`, `U`, `A`, `N`).
    pub fn sex(&self) -> Option<Cow<'m, str>> {
        first_component(&self.0, 8)
    }

    /// PID-11, the patient's addresses.
    pub fn addresses(&self) -> impl Iterator<Item = Xad<'m>> + use<'m> {
        repetitions(&self.0, 11).map(Xad::from_repetition)
    }

    /// PID-13, home telephone numbers and e-mail addresses.
    pub fn home_phones(&self) -> impl Iterator<Item = Xtn<'m>> + use<'m> {
        repetitions(&self.0, 13).map(Xtn::from_repetition)
    }

    /// PID-14, business telephone numbers.
    pub fn business_phones(&self) -> impl Iterator<Item = Xtn<'m>> + use<'m> {
        repetitions(&self.0, 14).map(Xtn::from_repetition)
    }

    /// PID-18, the patient account number.
    pub fn account_number(&self) -> Option<Cx<'m>> {
        first_repetition(&self.0, 18)
            .filter(|r| !r.is_empty())
            .map(Cx::from_repetition)
    }

    /// PID-29, the date and time of death.
    pub fn death_datetime(&self) -> Result<Option<DateTime>, FieldError> {
        datetime_field(&self.0, 29)
    }

    /// PID-30, the death indicator (`Y` or `N`).
    pub fn death_indicator(&self) -> Option<Cow<'m, str>> {
        field_text(&self.0, 30)
    }
}
