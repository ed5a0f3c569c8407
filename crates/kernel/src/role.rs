//! The roles a user or API key can hold within a tenant.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A role within one tenant. The database stores it as the enum `identity.role`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Manages users, keys and settings; may read and write every patient.
    Admin,
    /// Reads and writes patients on their care team; others only by break-glass.
    Clinician,
    /// Registers patients and manages care teams; reads patients on their care team.
    CareCoordinator,
    /// Reads audit logs and access reports; never PHI.
    Auditor,
    /// A system that sends and receives data (HL7 engines, EHR interfaces).
    Integration,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Clinician,
        Role::CareCoordinator,
        Role::Auditor,
        Role::Integration,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Clinician => "clinician",
            Role::CareCoordinator => "care_coordinator",
            Role::Auditor => "auditor",
            Role::Integration => "integration",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a string that names no role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role; expected one of admin, clinician, care_coordinator, auditor, integration")]
pub struct UnknownRole;

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or(UnknownRole)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_round_trips_through_its_name() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        assert!("superuser".parse::<Role>().is_err());
    }
}
