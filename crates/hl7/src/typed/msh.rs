//! MSH, the message header: who sent the message to whom, what it is, its
//! control id and how it wants to be acknowledged.
//!
//! MSH-1 is the field separator itself and MSH-2 the encoding characters; this
//! module must never renumber them.

use std::borrow::Cow;

use super::{
    FieldError, Hd, MessageType, datetime_field, first_component, first_repetition, typed_segment,
};
use crate::charset::Charset;
use crate::datetime::DateTime;
use crate::segment::Segment;

/// The message header.
#[derive(Clone, Copy)]
pub struct Msh<'m>(pub(crate) Segment<'m>);

typed_segment!(Msh, "MSH");

/// When a sender wants an acknowledgement (HL7 table 0155, MSH-15 and MSH-16).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AckCondition {
    /// `AL`: always.
    Always,
    /// `NE`: never.
    Never,
    /// `ER`: only after an error or a rejection.
    ErrorOnly,
    /// `SU`: only after success.
    SuccessOnly,
}

impl AckCondition {
    /// Reads a table 0155 code.
    pub fn from_code(code: &str) -> Option<Self> {
        match code {
            "AL" => Some(AckCondition::Always),
            "NE" => Some(AckCondition::Never),
            "ER" => Some(AckCondition::ErrorOnly),
            "SU" => Some(AckCondition::SuccessOnly),
            _ => None,
        }
    }

    /// The table 0155 code.
    pub fn code(&self) -> &'static str {
        match self {
            AckCondition::Always => "AL",
            AckCondition::Never => "NE",
            AckCondition::ErrorOnly => "ER",
            AckCondition::SuccessOnly => "SU",
        }
    }

    /// Whether an acknowledgement is due for this outcome.
    pub fn wants_ack(&self, success: bool) -> bool {
        match self {
            AckCondition::Always => true,
            AckCondition::Never => false,
            AckCondition::ErrorOnly => !success,
            AckCondition::SuccessOnly => success,
        }
    }
}

impl<'m> Msh<'m> {
    /// MSH-3, the sending application.
    pub fn sending_application(&self) -> Hd<'m> {
        Hd::of(first_repetition(&self.0, 3))
    }

    /// MSH-4, the sending facility.
    pub fn sending_facility(&self) -> Hd<'m> {
        Hd::of(first_repetition(&self.0, 4))
    }

    /// MSH-5, the receiving application.
    pub fn receiving_application(&self) -> Hd<'m> {
        Hd::of(first_repetition(&self.0, 5))
    }

    /// MSH-6, the receiving facility.
    pub fn receiving_facility(&self) -> Hd<'m> {
        Hd::of(first_repetition(&self.0, 6))
    }

    /// MSH-7, when the message was created.
    pub fn datetime(&self) -> Result<Option<DateTime>, FieldError> {
        datetime_field(&self.0, 7)
    }

    /// MSH-9, the message type, trigger event and structure.
    pub fn message_type(&self) -> MessageType<'m> {
        MessageType::of(first_repetition(&self.0, 9))
    }

    /// MSH-10, the message control id that the ACK echoes in MSA-2.
    pub fn control_id(&self) -> Option<Cow<'m, str>> {
        first_component(&self.0, 10)
    }

    /// MSH-11.1, the processing id: `P` production, `D` debugging, `T` training.
    pub fn processing_id(&self) -> Option<Cow<'m, str>> {
        first_component(&self.0, 11)
    }

    /// MSH-12.1, the version id (`2.5.1`).
    pub fn version(&self) -> Option<Cow<'m, str>> {
        first_component(&self.0, 12)
    }

    /// MSH-15, when the sender wants an accept (commit) acknowledgement. Set
    /// only in enhanced acknowledgement mode.
    pub fn accept_ack_type(&self) -> Result<Option<AckCondition>, FieldError> {
        self.ack_condition(15)
    }

    /// MSH-16, when the sender wants an application acknowledgement. Set only
    /// in enhanced acknowledgement mode.
    pub fn application_ack_type(&self) -> Result<Option<AckCondition>, FieldError> {
        self.ack_condition(16)
    }

    fn ack_condition(&self, n: usize) -> Result<Option<AckCondition>, FieldError> {
        let Some(code) = first_component(&self.0, n) else {
            return Ok(None);
        };
        AckCondition::from_code(code.trim())
            .map(Some)
            .ok_or(FieldError::UnknownCode {
                location: self.0.location(Some(n)),
                table: "0155",
            })
    }

    /// The character set of the message, from MSH-18 (or the default when
    /// MSH-18 is empty).
    pub fn charset(&self) -> Charset {
        self.0.message().charset()
    }
}
