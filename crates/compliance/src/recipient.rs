//! The recipient of released information: a person or organisation named by the
//! patient. A name can reveal a patient's relationships, so it is PHI: `Debug` and
//! `Display` print `[redacted]`, it is sealed at rest with the tenant's data key and
//! matched through a keyed fingerprint, never compared in clear by the database.

use std::fmt;

use hmac::{Hmac, Mac};
use identity::keyring::DataKey;
use kernel::TenantId;
use sha2::Sha256;
use uuid::Uuid;

/// The longest recipient name, in characters.
pub const RECIPIENT_LEN_MAX: usize = 200;

/// A recipient's name, validated: 1 to [`RECIPIENT_LEN_MAX`] characters, no control
/// characters. Prints no name.
#[derive(Clone, PartialEq, Eq)]
pub struct Recipient(String);

/// Why a recipient name is refused. Names no text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecipientError {
    #[error("a recipient is 1 to {RECIPIENT_LEN_MAX} characters without control characters")]
    Invalid,
}

impl fmt::Debug for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Recipient([redacted])")
    }
}

impl fmt::Display for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Recipient {
    pub fn parse(text: &str) -> Result<Self, RecipientError> {
        let text = text.trim();
        let n_chars = text.chars().count();
        if n_chars == 0 || n_chars > RECIPIENT_LEN_MAX || text.chars().any(char::is_control) {
            return Err(RecipientError::Invalid);
        }
        Ok(Self(text.to_owned()))
    }

    /// The name: PHI, for an audited path only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Case and spacing folded: "Dr.  Ada LOVELACE " and "dr. ada lovelace" are one
    /// recipient.
    fn normalized(&self) -> String {
        self.0
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
    }

    /// A keyed hash of the normalised name under a key derived from `data_key` (never
    /// stored): equal names under one data key have equal fingerprints, and nobody
    /// without the key can test a guess. A row is matched with its own data key, so
    /// rotating the tenant's key does not break matching.
    pub fn fingerprint(&self, data_key: &DataKey) -> [u8; 32] {
        let mut derive = <Hmac<Sha256> as Mac>::new_from_slice(data_key.key.as_bytes())
            .expect("BUG: HMAC takes any key");
        derive.update(b"tenet-recipient-fingerprint-v1");
        let fingerprint_key = derive.finalize().into_bytes();
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&fingerprint_key)
            .expect("BUG: HMAC takes any key");
        mac.update(self.normalized().as_bytes());
        mac.finalize().into_bytes().into()
    }
}

/// The associated data of a sealed compliance field: a ciphertext moved to another
/// tenant, row or field does not open.
pub(crate) fn aad(field: &'static str, tenant_id: TenantId, row_id: Uuid) -> Vec<u8> {
    let mut aad = Vec::with_capacity(18 + field.len() + 32);
    aad.extend_from_slice(b"tenet-compliance-v1");
    aad.extend_from_slice(field.as_bytes());
    aad.extend_from_slice(tenant_id.as_uuid().as_bytes());
    aad.extend_from_slice(row_id.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;
    use identity::keyring::SecretKey;

    #[test]
    fn a_recipient_prints_no_name() {
        let recipient = Recipient::parse("Zqx Oakwood Family Law").unwrap();
        assert!(!format!("{recipient:?} {recipient}").contains("Zqx"));
    }

    #[test]
    fn case_and_spacing_do_not_change_the_fingerprint_but_the_key_does() {
        let key = DataKey {
            id: Uuid::now_v7(),
            key: SecretKey::generate(),
        };
        let a = Recipient::parse(" Dr.  Ada LOVELACE ").unwrap();
        let b = Recipient::parse("dr. ada lovelace").unwrap();
        assert_eq!(a.fingerprint(&key), b.fingerprint(&key));
        assert_ne!(
            a.fingerprint(&key),
            Recipient::parse("Dr. Ada Byron").unwrap().fingerprint(&key)
        );
        let other = DataKey {
            id: Uuid::now_v7(),
            key: SecretKey::generate(),
        };
        assert_ne!(a.fingerprint(&key), a.fingerprint(&other));
    }

    #[test]
    fn an_empty_or_overlong_or_control_recipient_is_refused() {
        assert_eq!(Recipient::parse("  "), Err(RecipientError::Invalid));
        assert_eq!(
            Recipient::parse(&"x".repeat(RECIPIENT_LEN_MAX + 1)),
            Err(RecipientError::Invalid)
        );
        assert_eq!(Recipient::parse("a\u{0}b"), Err(RecipientError::Invalid));
    }
}
