//! The issuer's published keys (a JWK Set), and the choice of the key for a token.
//!
//! Parsing is lenient per key (one odd key must not make the issuer's other keys
//! unusable) and strict about what may verify a signature: only RSA keys of at least
//! 2048 bits for RS256 and EC P-256 keys for ES256. This module must never decode the
//! secret of a symmetric (`oct`) key, nor let a token's header pick a key of another
//! type than its algorithm requires.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::DecodingKey;
use serde::Deserialize;

use crate::JwksError;
use crate::token::SigningAlgorithm;

/// A real issuer publishes a handful of keys; bounding them bounds the work one fetch
/// can cause.
pub(crate) const JWKS_KEYS_MAX: usize = 64;

/// Smaller RSA moduli are factorable in practice and are never used.
const RSA_MODULUS_BYTES_MIN: usize = 2048 / 8;
/// An uncompressed P-256 coordinate is exactly 32 bytes.
const P256_COORDINATE_BYTES: usize = 32;

/// A set of the issuer's keys, as published.
#[derive(Debug, Default)]
pub(crate) struct KeySet {
    keys: Vec<Jwk>,
}

#[derive(Debug)]
struct Jwk {
    kid: Option<String>,
    /// The JWK's own `alg`, which, when present, must equal the token's.
    alg: Option<String>,
    material: KeyMaterial,
}

#[derive(Debug)]
enum KeyMaterial {
    Rsa(DecodingKey),
    EcP256(DecodingKey),
    /// A key kept only so that a token naming it is told `KeyAlgorithmMismatch`
    /// rather than `UnknownKey`: `oct`, `OKP`, other curves, short RSA moduli and
    /// encryption keys. Its material is never decoded.
    Unusable,
}

/// Why no key could be chosen for a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyLookupError {
    Unknown,
    Mismatch,
}

#[derive(Deserialize)]
struct RawKeySet {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

impl KeySet {
    /// Parses a JWK Set. Keys that cannot be read at all are skipped, with a debug log.
    pub(crate) fn parse(json: &[u8]) -> Result<Self, JwksError> {
        let raw: RawKeySet = serde_json::from_slice(json).map_err(|_| JwksError::Malformed)?;
        if raw.keys.len() > JWKS_KEYS_MAX {
            return Err(JwksError::TooManyKeys(JWKS_KEYS_MAX));
        }
        let keys = raw
            .keys
            .into_iter()
            .filter_map(|value| match serde_json::from_value::<RawJwk>(value) {
                Ok(raw_jwk) => Jwk::from_raw(raw_jwk),
                Err(_) => {
                    tracing::debug!("skipping a JWKS entry that is not a JWK");
                    None
                }
            })
            .collect();
        Ok(Self { keys })
    }

    /// The key that must verify a token with this `kid` and algorithm. Without a `kid`,
    /// the only key of a one-key set is used; with several keys we will not guess.
    pub(crate) fn select(
        &self,
        kid: Option<&str>,
        alg: SigningAlgorithm,
    ) -> Result<&DecodingKey, KeyLookupError> {
        let mut candidates = self.keys.iter().filter(|jwk| match kid {
            Some(kid) => jwk.kid.as_deref() == Some(kid),
            None => self.keys.len() == 1,
        });
        let mut found = false;
        // Several keys may share a kid (an RSA and an EC key, say); any whose type fits
        // the algorithm will do, as all were published by the issuer.
        let fitting = candidates.find_map(|jwk| {
            found = true;
            jwk.key_for(alg)
        });
        match fitting {
            Some(key) => Ok(key),
            None if found => Err(KeyLookupError::Mismatch),
            None => Err(KeyLookupError::Unknown),
        }
    }
}

impl Jwk {
    fn from_raw(raw: RawJwk) -> Option<Self> {
        let usable_for_signatures = raw.use_.as_deref().is_none_or(|use_| use_ == "sig");
        let material = match raw.kty.as_str() {
            _ if !usable_for_signatures => KeyMaterial::Unusable,
            "RSA" => rsa_material(&raw)?,
            "EC" if raw.crv.as_deref() == Some("P-256") => ec_p256_material(&raw)?,
            _ => KeyMaterial::Unusable,
        };
        Some(Self {
            kid: raw.kid,
            alg: raw.alg,
            material,
        })
    }

    fn key_for(&self, alg: SigningAlgorithm) -> Option<&DecodingKey> {
        if self
            .alg
            .as_deref()
            .is_some_and(|jwk_alg| jwk_alg != alg.name())
        {
            return None;
        }
        match (&self.material, alg) {
            (KeyMaterial::Rsa(key), SigningAlgorithm::Rs256) => Some(key),
            (KeyMaterial::EcP256(key), SigningAlgorithm::Es256) => Some(key),
            _ => None,
        }
    }
}

fn rsa_material(raw: &RawJwk) -> Option<KeyMaterial> {
    let (Some(n), Some(e)) = (raw.n.as_deref(), raw.e.as_deref()) else {
        tracing::debug!("skipping an RSA JWK without n or e");
        return None;
    };
    let (Ok(n_bytes), Ok(e_bytes)) = (URL_SAFE_NO_PAD.decode(n), URL_SAFE_NO_PAD.decode(e)) else {
        tracing::debug!("skipping an RSA JWK whose n or e is not base64url");
        return None;
    };
    let n_len = n_bytes.iter().skip_while(|&&b| b == 0).count();
    if n_len < RSA_MODULUS_BYTES_MIN {
        tracing::debug!(modulus_bits = n_len * 8, "refusing a short RSA JWK");
        return Some(KeyMaterial::Unusable);
    }
    Some(KeyMaterial::Rsa(DecodingKey::from_rsa_raw_components(
        &n_bytes, &e_bytes,
    )))
}

fn ec_p256_material(raw: &RawJwk) -> Option<KeyMaterial> {
    let (Some(x), Some(y)) = (raw.x.as_deref(), raw.y.as_deref()) else {
        tracing::debug!("skipping an EC JWK without x or y");
        return None;
    };
    let (Ok(x_bytes), Ok(y_bytes)) = (URL_SAFE_NO_PAD.decode(x), URL_SAFE_NO_PAD.decode(y)) else {
        tracing::debug!("skipping an EC JWK whose x or y is not base64url");
        return None;
    };
    if x_bytes.len() != P256_COORDINATE_BYTES || y_bytes.len() != P256_COORDINATE_BYTES {
        tracing::debug!("skipping a P-256 JWK with coordinates of the wrong length");
        return None;
    }
    // `from_ec_components` builds the SEC1 uncompressed point; whether it lies on the
    // curve is checked when a signature is verified.
    DecodingKey::from_ec_components(x, y)
        .ok()
        .map(KeyMaterial::EcP256)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn set(keys: &str) -> KeySet {
        KeySet::parse(format!(r#"{{"keys":[{keys}]}}"#).as_bytes()).unwrap()
    }

    fn rsa(kid: &str, extra: &str) -> String {
        let n = b64(&[0xC5; RSA_MODULUS_BYTES_MIN]);
        format!(r#"{{"kty":"RSA","kid":"{kid}","n":"{n}","e":"AQAB"{extra}}}"#)
    }

    fn ec(kid: &str, crv: &str) -> String {
        let coord = b64(&[7; P256_COORDINATE_BYTES]);
        format!(r#"{{"kty":"EC","kid":"{kid}","crv":"{crv}","x":"{coord}","y":"{coord}"}}"#)
    }

    #[test]
    fn a_key_is_chosen_by_kid_and_must_fit_the_algorithm() {
        let keys = set(&[rsa("r", ""), ec("e", "P-256")].join(","));
        assert!(keys.select(Some("r"), SigningAlgorithm::Rs256).is_ok());
        assert!(keys.select(Some("e"), SigningAlgorithm::Es256).is_ok());
        assert_eq!(
            keys.select(Some("r"), SigningAlgorithm::Es256).err(),
            Some(KeyLookupError::Mismatch)
        );
        assert_eq!(
            keys.select(Some("e"), SigningAlgorithm::Rs256).err(),
            Some(KeyLookupError::Mismatch)
        );
        assert_eq!(
            keys.select(Some("x"), SigningAlgorithm::Rs256).err(),
            Some(KeyLookupError::Unknown)
        );
    }

    #[test]
    fn a_jwk_declaring_another_algorithm_is_a_mismatch() {
        let keys = set(&rsa("r", r#","alg":"RS512""#));
        assert_eq!(
            keys.select(Some("r"), SigningAlgorithm::Rs256).err(),
            Some(KeyLookupError::Mismatch)
        );
    }

    #[test]
    fn symmetric_encryption_short_and_foreign_curve_keys_are_never_used() {
        let short_rsa = r#"{"kty":"RSA","kid":"short","n":"AQAB","e":"AQAB"}"#;
        let oct = r#"{"kty":"oct","kid":"o","k":"c2VjcmV0"}"#;
        let keys = set(&[
            short_rsa.to_owned(),
            oct.to_owned(),
            rsa("enc", r#","use":"enc""#),
            ec("p384", "P-384"),
        ]
        .join(","));
        for kid in ["short", "o", "enc"] {
            assert_eq!(
                keys.select(Some(kid), SigningAlgorithm::Rs256).err(),
                Some(KeyLookupError::Mismatch)
            );
        }
        assert_eq!(
            keys.select(Some("p384"), SigningAlgorithm::Es256).err(),
            Some(KeyLookupError::Mismatch)
        );
    }

    #[test]
    fn a_token_without_kid_may_use_only_the_single_key_of_a_set() {
        assert!(
            set(&rsa("r", ""))
                .select(None, SigningAlgorithm::Rs256)
                .is_ok()
        );
        let two = set(&[rsa("r", ""), rsa("s", "")].join(","));
        assert_eq!(
            two.select(None, SigningAlgorithm::Rs256).err(),
            Some(KeyLookupError::Unknown)
        );
    }

    #[test]
    fn an_unreadable_key_is_skipped_without_losing_the_others() {
        let keys = set(&[
            r#"{"kty":"RSA","kid":"bad","n":"!!","e":"AQAB"}"#.to_owned(),
            r#"{"kid":1}"#.to_owned(),
            rsa("r", ""),
        ]
        .join(","));
        assert_eq!(
            keys.select(Some("bad"), SigningAlgorithm::Rs256).err(),
            Some(KeyLookupError::Unknown)
        );
        assert!(keys.select(Some("r"), SigningAlgorithm::Rs256).is_ok());
    }

    #[test]
    fn a_set_without_keys_array_or_with_too_many_keys_is_refused() {
        assert!(matches!(KeySet::parse(b"{}"), Err(JwksError::Malformed)));
        assert!(matches!(KeySet::parse(b"[]"), Err(JwksError::Malformed)));
        let many = vec![rsa("r", ""); JWKS_KEYS_MAX + 1].join(",");
        assert!(matches!(
            KeySet::parse(format!(r#"{{"keys":[{many}]}}"#).as_bytes()),
            Err(JwksError::TooManyKeys(_))
        ));
    }
}
