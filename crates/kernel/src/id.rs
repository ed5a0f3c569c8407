//! Typed identifiers.
//!
//! Every id is a newtype over a UUID with a private field, so a `PatientId` can never
//! be passed where a `TenantId` is expected. Ids are not secrets and not PHI; they may
//! appear in logs and URLs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The error for a string that is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid {kind} id")]
pub struct InvalidId {
    kind: &'static str,
}

macro_rules! typed_id {
    ($(#[$meta:meta])* $name:ident, $kind:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh, time-ordered id.
            pub fn generate() -> Self {
                Self(Uuid::now_v7())
            }

            /// Wraps a UUID read from a trusted place (our own database).
            pub const fn new_unchecked(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }

            pub const fn into_uuid(self) -> Uuid {
                self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::try_parse(s).map(Self).map_err(|_| InvalidId { kind: $kind })
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }
    };
}

typed_id!(
    /// A tenant: one clinic or organisation whose rows the database keeps apart.
    TenantId,
    "tenant"
);
typed_id!(
    /// A human or machine user of one tenant.
    UserId,
    "user"
);
typed_id!(
    /// A patient's pseudonymous id. Carries no PHI.
    PatientId,
    "patient"
);
typed_id!(
    /// The public half of an API key; the secret half is never stored.
    ApiKeyId,
    "API key"
);
typed_id!(
    /// One row of the audit log.
    AuditEventId,
    "audit event"
);
typed_id!(
    /// A durable background job of the platform context. Carries no PHI.
    JobId,
    "job"
);
typed_id!(
    /// Correlates the log lines, audit events and response of one request.
    RequestId,
    "request"
);
typed_id!(
    /// A recurring schedule of one tenant (platform context). Not a secret, not PHI.
    ScheduleId,
    "schedule"
);
typed_id!(
    /// A saga of one tenant (platform context). Not a secret, not PHI.
    SagaId,
    "saga"
);
typed_id!(
    /// A related person of one tenant — a patient's parent or guardian — whose name
    /// and contact details live in the identity vault. The id carries no PHI.
    PersonId,
    "person"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_round_trips_through_its_string_form() {
        let patient_id = PatientId::generate();
        let parsed: PatientId = patient_id.to_string().parse().unwrap();
        assert_eq!(parsed, patient_id);
    }

    #[test]
    fn a_malformed_id_is_refused_with_its_kind() {
        let err = "not-a-uuid".parse::<TenantId>().unwrap_err();
        assert_eq!(err.to_string(), "not a valid tenant id");
    }
}
