//! The compact JWS form of a token: three base64url parts, and the header's algorithm.
//!
//! This module only splits and decodes; it verifies nothing. Its one decision is the
//! algorithm allow-list, which must be applied before any key is looked up, so that a
//! token can never choose how its own signature is checked (`alg: none`, HS256 keyed
//! with a public key). It must never read the header's `jku`, `x5u` or `jwk`: keys come
//! only from the configured issuer.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use crate::TokenError;

/// Real tokens are a few KiB; bounding the length bounds the work an attacker can ask
/// of us before the signature is checked.
pub(crate) const TOKEN_LEN_MAX: usize = 16 * 1024;

/// An `alg` longer than this is not one we could accept, and is not echoed back.
const ALG_LEN_MAX: usize = 16;

/// The signature algorithms we accept. Everything else is refused by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SigningAlgorithm {
    Rs256,
    Es256,
}

impl SigningAlgorithm {
    fn parse(alg: &str) -> Result<Self, TokenError> {
        match alg {
            "RS256" => Ok(Self::Rs256),
            "ES256" => Ok(Self::Es256),
            other => Err(TokenError::UnsupportedAlgorithm(sanitised_alg(other))),
        }
    }

    /// The JOSE name, as a JWK's `alg` would spell it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Es256 => "ES256",
        }
    }

    pub(crate) fn to_jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        match self {
            Self::Rs256 => jsonwebtoken::Algorithm::RS256,
            Self::Es256 => jsonwebtoken::Algorithm::ES256,
        }
    }
}

/// The header's `alg` goes into an error message, so only a short alphanumeric one is
/// kept; anything else could be used to smuggle data or control characters into logs.
fn sanitised_alg(alg: &str) -> String {
    if !alg.is_empty() && alg.len() <= ALG_LEN_MAX && alg.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        alg.to_owned()
    } else {
        "<invalid>".to_owned()
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
    /// RFC 7515 §4.1.11: a token listing critical extensions we do not understand must
    /// be refused, and we understand none.
    crit: Option<serde_json::Value>,
}

/// A token whose form and algorithm are acceptable and whose signature is not yet
/// checked. Its payload must not be trusted, nor even parsed, before that.
pub(crate) struct UnverifiedToken<'a> {
    pub(crate) alg: SigningAlgorithm,
    pub(crate) kid: Option<String>,
    /// `header.payload`, the bytes the signature covers.
    pub(crate) signing_input: &'a str,
    pub(crate) payload_b64: &'a str,
    pub(crate) signature: Vec<u8>,
}

impl UnverifiedToken<'_> {
    /// The payload's JSON bytes. Call only after the signature has verified.
    pub(crate) fn payload(&self) -> Result<Vec<u8>, TokenError> {
        decode_part(self.payload_b64)
    }
}

/// Splits and decodes `token`, refusing any algorithm but RS256 and ES256.
pub(crate) fn parse(token: &str) -> Result<UnverifiedToken<'_>, TokenError> {
    if token.len() > TOKEN_LEN_MAX {
        return Err(TokenError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    if payload_b64.is_empty() {
        return Err(TokenError::Malformed);
    }

    let header: Header =
        serde_json::from_slice(&decode_part(header_b64)?).map_err(|_| TokenError::Malformed)?;
    // The algorithm is judged before the signature is even decoded, so that `alg: none`
    // (whose signature is empty) is reported as what it is.
    let alg = SigningAlgorithm::parse(&header.alg)?;
    if header.crit.is_some() {
        return Err(TokenError::Malformed);
    }
    let signature = decode_part(signature_b64)?;
    if signature.is_empty() {
        return Err(TokenError::Malformed);
    }

    Ok(UnverifiedToken {
        alg,
        kid: header.kid,
        signing_input: &token[..header_b64.len() + 1 + payload_b64.len()],
        payload_b64,
        signature,
    })
}

fn decode_part(part: &str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    fn token_with_header(header: &str) -> String {
        format!("{}.{}.{}", b64(header), b64("{}"), b64("sig"))
    }

    #[test]
    fn an_allowed_algorithm_is_parsed_with_its_kid_and_signing_input() {
        let token = token_with_header(r#"{"alg":"ES256","kid":"k1"}"#);
        let unverified = parse(&token).unwrap();
        assert_eq!(unverified.alg, SigningAlgorithm::Es256);
        assert_eq!(unverified.kid.as_deref(), Some("k1"));
        assert_eq!(unverified.signing_input, token.rsplit_once('.').unwrap().0);
        assert_eq!(unverified.signature, b"sig");
    }

    #[test]
    fn every_other_algorithm_is_refused_by_name() {
        for alg in ["none", "HS256", "RS512", "PS256", "ES384", "EdDSA", "rs256"] {
            let token = token_with_header(&format!(r#"{{"alg":"{alg}"}}"#));
            match parse(&token) {
                Err(TokenError::UnsupportedAlgorithm(named)) => assert_eq!(named, alg),
                other => panic!(
                    "{alg}: expected UnsupportedAlgorithm, got {:?}",
                    other.err()
                ),
            }
        }
    }

    #[test]
    fn an_outlandish_algorithm_is_not_echoed_into_the_error() {
        let token = token_with_header(r#"{"alg":"RS256\n<script>"}"#);
        assert!(
            matches!(parse(&token), Err(TokenError::UnsupportedAlgorithm(alg)) if alg == "<invalid>")
        );
    }

    #[test]
    fn a_token_with_critical_extensions_is_refused() {
        let token = token_with_header(r#"{"alg":"RS256","crit":["exp"]}"#);
        assert!(matches!(parse(&token), Err(TokenError::Malformed)));
    }

    #[test]
    fn malformed_shapes_are_refused() {
        let good_header = b64(r#"{"alg":"RS256"}"#);
        let cases = [
            String::new(),
            "a.b".to_owned(),
            "a.b.c.d".to_owned(),
            format!("{good_header}..{}", b64("sig")),
            format!("{good_header}.{}.", b64("{}")),
            format!("{good_header}.{}.not base64!", b64("{}")),
            format!("{}.{}.{}", b64("not json"), b64("{}"), b64("sig")),
            format!("{}.{}.{}", b64(r#"{"kid":"k"}"#), b64("{}"), b64("sig")),
            "x".repeat(TOKEN_LEN_MAX + 1),
        ];
        for token in cases {
            assert!(
                matches!(parse(&token), Err(TokenError::Malformed)),
                "accepted {token:.40}"
            );
        }
    }
}
