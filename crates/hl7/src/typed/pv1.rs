//! PV1, the patient visit segment: the class of the encounter, where the
//! patient is, who attends them. It must never guess a location that the
//! sender did not write.

use std::borrow::Cow;

use super::{
    Cx, FieldError, Pl, Xcn, datetime_field, field_text, first_component, first_repetition,
    repetitions, typed_segment,
};
use crate::datetime::DateTime;
use crate::segment::Segment;

/// The patient visit segment.
#[derive(Clone, Copy)]
pub struct Pv1<'m>(Segment<'m>);

typed_segment!(Pv1, "PV1");

impl<'m> Pv1<'m> {
    /// PV1-1, the set id.
    pub fn set_id(&self) -> Option<Cow<'m, str>> {
        field_text(&self.0, 1)
    }

    /// PV1-2, the patient class (table 0004: `I` inpatient, `O` outpatient,
    /// `E` emergency, …).
    pub fn patient_class(&self) -> Option<Cow<'m, str>> {
        first_component(&self.0, 2)
    }

    /// PV1-3, the assigned location: point of care, room, bed, facility.
    pub fn assigned_location(&self) -> Option<Pl<'m>> {
        first_repetition(&self.0, 3)
            .filter(|r| !r.is_empty())
            .map(Pl::from_repetition)
    }

    /// PV1-4, the admission type.
    pub fn admission_type(&self) -> Option<Cow<'m, str>> {
        first_component(&self.0, 4)
    }

    /// PV1-6, the prior location, after a transfer.
    pub fn prior_location(&self) -> Option<Pl<'m>> {
        first_repetition(&self.0, 6)
            .filter(|r| !r.is_empty())
            .map(Pl::from_repetition)
    }

    /// PV1-7, the attending doctors.
    pub fn attending_doctors(&self) -> impl Iterator<Item = Xcn<'m>> + use<'m> {
        repetitions(&self.0, 7).map(Xcn::from_repetition)
    }

    /// PV1-8, the referring doctors.
    pub fn referring_doctors(&self) -> impl Iterator<Item = Xcn<'m>> + use<'m> {
        repetitions(&self.0, 8).map(Xcn::from_repetition)
    }

    /// PV1-9, the consulting doctors.
    pub fn consulting_doctors(&self) -> impl Iterator<Item = Xcn<'m>> + use<'m> {
        repetitions(&self.0, 9).map(Xcn::from_repetition)
    }

    /// PV1-10, the hospital service.
    pub fn hospital_service(&self) -> Option<Cow<'m, str>> {
        first_component(&self.0, 10)
    }

    /// PV1-17, the admitting doctors.
    pub fn admitting_doctors(&self) -> impl Iterator<Item = Xcn<'m>> + use<'m> {
        repetitions(&self.0, 17).map(Xcn::from_repetition)
    }

    /// PV1-18, the patient type.
    pub fn patient_type(&self) -> Option<Cow<'m, str>> {
        first_component(&self.0, 18)
    }

    /// PV1-19, the visit number.
    pub fn visit_number(&self) -> Option<Cx<'m>> {
        first_repetition(&self.0, 19)
            .filter(|r| !r.is_empty())
            .map(Cx::from_repetition)
    }

    /// PV1-36, the discharge disposition.
    pub fn discharge_disposition(&self) -> Option<Cow<'m, str>> {
        first_component(&self.0, 36)
    }

    /// PV1-44, when the patient was admitted.
    pub fn admit_datetime(&self) -> Result<Option<DateTime>, FieldError> {
        datetime_field(&self.0, 44)
    }

    /// PV1-45, when the patient was discharged.
    pub fn discharge_datetime(&self) -> Result<Option<DateTime>, FieldError> {
        datetime_field(&self.0, 45)
    }
}
