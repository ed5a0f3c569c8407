//! Note templates as versioned definitions: SOAP, DAP, BIRP and intake.
//!
//! A template is data: an ordered list of sections, each with a stable key, a title
//! and whether signing needs it filled. A published version never changes; a
//! changed template is a new version, and a note keeps the version it was written
//! with. This module holds no PHI and touches no database.

use std::fmt;

/// One section of a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section {
    /// Stable, lowercase: `subjective`, `plan`.
    pub key: &'static str,
    pub title: &'static str,
    /// A note cannot be signed with this section empty.
    pub required: bool,
}

/// A versioned template definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Template {
    /// Stable, lowercase: `soap`, `dap`, `birp`, `intake`.
    pub code: &'static str,
    pub version: u32,
    pub title: &'static str,
    pub sections: &'static [Section],
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} v{}", self.code, self.version)
    }
}

const fn required(key: &'static str, title: &'static str) -> Section {
    Section {
        key,
        title,
        required: true,
    }
}

const fn optional(key: &'static str, title: &'static str) -> Section {
    Section {
        key,
        title,
        required: false,
    }
}

/// Every published template version.
pub const CATALOGUE: &[Template] = &[
    Template {
        code: "soap",
        version: 1,
        title: "SOAP progress note",
        sections: &[
            required("subjective", "Subjective"),
            required("objective", "Objective"),
            required("assessment", "Assessment"),
            required("plan", "Plan"),
        ],
    },
    Template {
        code: "dap",
        version: 1,
        title: "DAP progress note",
        sections: &[
            required("data", "Data"),
            required("assessment", "Assessment"),
            required("plan", "Plan"),
        ],
    },
    Template {
        code: "birp",
        version: 1,
        title: "BIRP progress note",
        sections: &[
            required("behavior", "Behavior"),
            required("intervention", "Intervention"),
            required("response", "Response"),
            required("plan", "Plan"),
        ],
    },
    Template {
        code: "intake",
        version: 1,
        title: "Intake assessment",
        sections: &[
            required("presenting_problem", "Presenting problem"),
            optional("history", "History"),
            required("mental_status", "Mental status examination"),
            required("risk_assessment", "Risk assessment"),
            optional("diagnosis", "Diagnostic impression"),
            required("plan", "Plan"),
        ],
    },
];

impl Template {
    /// The template `code` at `version`, if published.
    pub fn find(code: &str, version: u32) -> Option<&'static Template> {
        CATALOGUE
            .iter()
            .find(|template| template.code == code && template.version == version)
    }

    /// The newest version of the template `code`.
    pub fn latest(code: &str) -> Option<&'static Template> {
        CATALOGUE
            .iter()
            .filter(|template| template.code == code)
            .max_by_key(|template| template.version)
    }

    pub fn section(&self, key: &str) -> Option<&'static Section> {
        self.sections.iter().find(|section| section.key == key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_version_is_unique_and_its_section_keys_too() {
        for (i, template) in CATALOGUE.iter().enumerate() {
            assert!(
                !CATALOGUE[..i]
                    .iter()
                    .any(|t| t.code == template.code && t.version == template.version),
                "{template} twice"
            );
            for (j, section) in template.sections.iter().enumerate() {
                assert!(
                    !template.sections[..j].iter().any(|s| s.key == section.key),
                    "{template}: {} twice",
                    section.key
                );
            }
            assert!(template.sections.iter().any(|s| s.required), "{template}");
        }
    }
}
