//! Document ids, categories and permissions: the vocabulary of scopes and retention.
//! Names only; no PHI.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// A document's id. Carries no PHI: it is also the object key's last part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocumentId(Uuid);

impl DocumentId {
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }

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

impl fmt::Display for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for DocumentId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// What a document is. Stored as the enum `documents.category`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, sqlx::Type)]
#[sqlx(type_name = "documents.category", rename_all = "snake_case")]
pub enum Category {
    /// Clinical documentation: rendered progress notes, treatment plans.
    ClinicalNote,
    /// Forms the patient filled in at intake.
    IntakeForm,
    /// Signed consents (the evidence a consent record points at).
    ConsentForm,
    LabResult,
    Imaging,
    /// Letters to and from the patient, referrers, payers.
    Correspondence,
    /// Identity documents and insurance cards.
    Identification,
    Other,
}

impl Category {
    pub const ALL: [Category; 8] = [
        Category::ClinicalNote,
        Category::IntakeForm,
        Category::ConsentForm,
        Category::LabResult,
        Category::Imaging,
        Category::Correspondence,
        Category::Identification,
        Category::Other,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Category::ClinicalNote => "clinical_note",
            Category::IntakeForm => "intake_form",
            Category::ConsentForm => "consent_form",
            Category::LabResult => "lab_result",
            Category::Imaging => "imaging",
            Category::Correspondence => "correspondence",
            Category::Identification => "identification",
            Category::Other => "other",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a string that names no category.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown category; expected one of clinical_note, intake_form, consent_form, lab_result, imaging, correspondence, identification, other"
)]
pub struct UnknownCategory;

impl FromStr for Category {
    type Err = UnknownCategory;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Category::ALL
            .into_iter()
            .find(|category| category.as_str() == s)
            .ok_or(UnknownCategory)
    }
}

/// What a role may do with a category's documents. Ordered: each level includes the
/// ones below it (delete ⊃ write ⊃ read ⊃ none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, sqlx::Type)]
#[sqlx(type_name = "documents.permission", rename_all = "snake_case")]
pub enum Permission {
    None,
    /// Metadata and content.
    Read,
    /// Read, and upload new documents.
    Write,
    /// Write, and delete.
    Delete,
}

impl Permission {
    pub const ALL: [Permission; 4] = [
        Permission::None,
        Permission::Read,
        Permission::Write,
        Permission::Delete,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Permission::None => "none",
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Delete => "delete",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a string that names no permission.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown permission; expected one of none, read, write, delete")]
pub struct UnknownPermission;

impl FromStr for Permission {
    type Err = UnknownPermission;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Permission::ALL
            .into_iter()
            .find(|permission| permission.as_str() == s)
            .ok_or(UnknownPermission)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_category_and_permission_round_trips_through_its_name() {
        for category in Category::ALL {
            assert_eq!(category.as_str().parse::<Category>().unwrap(), category);
        }
        for permission in Permission::ALL {
            assert_eq!(
                permission.as_str().parse::<Permission>().unwrap(),
                permission
            );
        }
        assert!("x_ray".parse::<Category>().is_err());
    }
}
