//! OBX, one observation or result: what was measured, its value and units,
//! the reference range, abnormal flags and status.
//!
//! Observation values are PHI; this module must never print one. It must
//! also never interpret OBX-5 beyond what OBX-2 says: the caller decides.

use std::borrow::Cow;

use super::{
    Cwe, FieldError, Nte, datetime_field, field_text, first_component, first_repetition, following,
    repetitions, typed_segment,
};
use crate::datetime::DateTime;
use crate::segment::{Repetition, Segment};

/// The observation segment.
#[derive(Clone, Copy)]
pub struct Obx<'m>(Segment<'m>);

typed_segment!(Obx, "OBX");

impl<'m> Obx<'m> {
    /// OBX-1, the set id.
    pub fn set_id(&self) -> Option<Cow<'m, str>> {
        field_text(&self.0, 1)
    }

    /// OBX-2, the value type (table 0125: `NM`, `ST`, `TX`, `CWE`, `SN`, …).
    pub fn value_type(&self) -> Option<Cow<'m, str>> {
        first_component(&self.0, 2)
    }

    /// OBX-3, the observation identifier (a LOINC code, often).
    pub fn identifier(&self) -> Option<Cwe<'m>> {
        first_repetition(&self.0, 3)
            .filter(|r| !r.is_empty())
            .map(Cwe::from_repetition)
    }

    /// OBX-4, the observation sub-id, which groups related OBX segments.
    pub fn sub_id(&self) -> Option<Cow<'m, str>> {
        field_text(&self.0, 4)
    }

    /// OBX-5, the first value as text: right for `NM`, `ST`, `TX`, `FT`, `DT`,
    /// `TM`, `DTM`, `ID`, `IS`. Composite types (`CWE`, `SN`, …) read their
    /// parts through [`Obx::values`] or [`Obx::coded_value`].
    pub fn value(&self) -> Option<Cow<'m, str>> {
        first_repetition(&self.0, 5)
            .filter(|r| !r.is_empty())
            .map(|r| r.decoded())
    }

    /// OBX-5, every repetition, undecoded, for the caller to read as OBX-2 says.
    pub fn values(&self) -> impl Iterator<Item = Repetition<'m>> + use<'m> {
        repetitions(&self.0, 5)
    }

    /// OBX-5 read as a coded value, for the `CWE` and `CE` value types.
    pub fn coded_value(&self) -> Option<Cwe<'m>> {
        first_repetition(&self.0, 5)
            .filter(|r| !r.is_empty())
            .map(Cwe::from_repetition)
    }

    /// OBX-6, the units (UCUM, often).
    pub fn units(&self) -> Option<Cwe<'m>> {
        first_repetition(&self.0, 6)
            .filter(|r| !r.is_empty())
            .map(Cwe::from_repetition)
    }

    /// OBX-7, the reference range as written (`3.5-5.0`, `<200`).
    pub fn reference_range(&self) -> Option<Cow<'m, str>> {
        field_text(&self.0, 7)
    }

    /// OBX-8, the abnormal flags (table 0078: `H`, `L`, `HH`, `LL`, `A`, `N`, …).
    pub fn abnormal_flags(&self) -> impl Iterator<Item = Cow<'m, str>> + use<'m> {
        repetitions(&self.0, 8).filter_map(|r| {
            r.component(1)
                .filter(|c| !c.is_empty())
                .map(|c| c.decoded())
        })
    }

    /// OBX-11, the observation result status (table 0085: `F` final, `P`
    /// preliminary, `C` corrected, `X` cannot be obtained, …).
    pub fn result_status(&self) -> Option<Cow<'m, str>> {
        field_text(&self.0, 11)
    }

    /// OBX-14, when the observation was made.
    pub fn observation_datetime(&self) -> Result<Option<DateTime>, FieldError> {
        datetime_field(&self.0, 14)
    }

    /// OBX-19, when the analysis was made (v2.5 and later).
    pub fn analysis_datetime(&self) -> Result<Option<DateTime>, FieldError> {
        datetime_field(&self.0, 19)
    }

    /// The NTE segments right after this OBX.
    pub fn notes(&self) -> impl Iterator<Item = Nte<'m>> + use<'m> {
        following(self.0, |s| s.id() != "NTE").filter_map(Nte::new)
    }
}
