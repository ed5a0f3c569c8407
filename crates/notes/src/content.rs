//! A note's content: its sections' text and, for an amendment, the reason. PHI.
//!
//! [`Content`] prints no text in `Debug`; errors name section keys, never text. The
//! content is sealed as one payload (canonical JSON: keys sorted) and its SHA-256 is
//! what a signature fixes.

use std::collections::BTreeMap;
use std::fmt;

use sha2::{Digest, Sha256};

use crate::template::Template;

/// The longest section text, in characters.
pub const SECTION_LEN_MAX: usize = 100_000;
/// The longest amendment reason, in characters.
pub const REASON_LEN_MAX: usize = 2_000;

/// Sections by key, and an amendment's reason. `Debug` redacts the text.
#[derive(Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Content {
    sections: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

impl fmt::Debug for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Content")
            .field("sections", &self.sections.keys().collect::<Vec<_>>())
            .field("reason", &self.reason.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// Why content does not fit its template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentError {
    #[error("the template has no section `{key}`")]
    UnknownSection { key: String },
    #[error("section `{key}` is longer than {SECTION_LEN_MAX} characters")]
    SectionTooLong { key: String },
    #[error("section `{key}` is required before signing")]
    MissingSection { key: String },
    #[error("an amendment needs a reason of 1 to {REASON_LEN_MAX} characters")]
    Reason,
}

impl Content {
    /// Content from `(key, text)` pairs; empty texts are dropped.
    pub fn from_sections<K: Into<String>, V: Into<String>>(
        sections: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            sections: sections
                .into_iter()
                .map(|(key, text)| (key.into(), text.into()))
                .filter(|(_, text)| !text.trim().is_empty())
                .collect(),
            reason: None,
        }
    }

    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    pub fn sections(&self) -> &BTreeMap<String, String> {
        &self.sections
    }

    pub fn section(&self, key: &str) -> Option<&str> {
        self.sections.get(key).map(String::as_str)
    }

    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// Every section key belongs to `template` and no text is too long.
    pub fn check_draft(&self, template: &Template) -> Result<(), ContentError> {
        for (key, text) in &self.sections {
            if template.section(key).is_none() {
                return Err(ContentError::UnknownSection { key: key.clone() });
            }
            if text.chars().count() > SECTION_LEN_MAX {
                return Err(ContentError::SectionTooLong { key: key.clone() });
            }
        }
        if let Some(reason) = &self.reason {
            let n_chars = reason.trim().chars().count();
            if n_chars == 0 || n_chars > REASON_LEN_MAX {
                return Err(ContentError::Reason);
            }
        }
        Ok(())
    }

    /// [`check_draft`](Self::check_draft), and every required section is filled.
    pub fn check_signable(&self, template: &Template) -> Result<(), ContentError> {
        self.check_draft(template)?;
        match template
            .sections
            .iter()
            .find(|section| section.required && !self.sections.contains_key(section.key))
        {
            Some(section) => Err(ContentError::MissingSection {
                key: section.key.to_owned(),
            }),
            None => Ok(()),
        }
    }

    /// The canonical payload: JSON with sorted keys, the bytes that are sealed and hashed.
    pub(crate) fn to_payload(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("BUG: content serialises")
    }

    pub(crate) fn from_payload(payload: &[u8]) -> Option<Self> {
        serde_json::from_slice(payload).ok()
    }

    /// The SHA-256 of the canonical payload: what a signature fixes.
    pub fn sha256(&self) -> [u8; 32] {
        Sha256::digest(self.to_payload()).into()
    }

    /// All sections as one text, in the template's order: `Title:\ntext`, blank-line
    /// separated (the v1 API's `body`).
    pub fn to_text(&self, template: &Template) -> String {
        template
            .sections
            .iter()
            .filter_map(|section| {
                self.sections
                    .get(section.key)
                    .map(|text| format!("{}:\n{}", section.title, text))
            })
            .collect::<Vec<_>>()
            .join("\n\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_names_sections_but_prints_no_text() {
        let content = Content::from_sections([("plan", "Zqxcanary")]).with_reason("Zqxreason");
        let printed = format!("{content:?}");
        assert!(printed.contains("plan"), "{printed}");
        assert!(!printed.contains("Zqx"), "{printed}");
    }

    #[test]
    fn the_hash_does_not_depend_on_insertion_order() {
        let a = Content::from_sections([("plan", "p"), ("data", "d")]);
        let b = Content::from_sections([("data", "d"), ("plan", "p")]);
        assert_eq!(a.sha256(), b.sha256());
        assert_ne!(a.sha256(), Content::from_sections([("plan", "p")]).sha256());
    }

    #[test]
    fn signing_needs_every_required_section() {
        let soap = Template::find("soap", 1).unwrap();
        let content =
            Content::from_sections([("subjective", "s"), ("objective", "o"), ("plan", "p")]);
        assert_eq!(content.check_draft(soap), Ok(()));
        assert_eq!(
            content.check_signable(soap),
            Err(ContentError::MissingSection {
                key: "assessment".to_owned()
            })
        );
        assert_eq!(
            Content::from_sections([("nope", "x")]).check_draft(soap),
            Err(ContentError::UnknownSection {
                key: "nope".to_owned()
            })
        );
    }
}
