//! Why a token or a JWKS was refused.
//!
//! Each variant is a distinct business outcome so that tests and logs can tell them
//! apart; the HTTP crate maps every [`TokenError`] to 401. No variant may ever carry the
//! token, a claim's value or a key: a bearer token is a credential, and these errors end
//! up in logs. The one string taken from a token, the header's `alg`, is sanitised.

use std::error::Error as StdError;

/// Why a bearer token was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a well-formed compact JWS")]
    Malformed,
    /// `none`, any HS*, and anything else but RS256 and ES256. Holds the header's
    /// `alg`, or `<invalid>` if it was too long or not plain ASCII letters and digits.
    #[error("the token's algorithm `{0}` is not accepted (only RS256 and ES256 are)")]
    UnsupportedAlgorithm(String),
    #[error("no key of the issuer matches the token's key id")]
    UnknownKey,
    /// The key named by `kid` is not of the type, curve or declared `alg` that the
    /// token's algorithm requires: an algorithm-confusion attempt or a broken issuer.
    #[error("the issuer's key named by the token does not fit the token's algorithm")]
    KeyAlgorithmMismatch,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued by another issuer")]
    WrongIssuer,
    #[error("the token is meant for another audience")]
    WrongAudience,
    /// Holds the claim's name; `"tenant"` stands for the configured tenant claim.
    #[error("the token lacks the `{0}` claim")]
    MissingClaim(&'static str),
    #[error("the token's tenant claim is not a valid tenant id")]
    BadTenant,
    #[error("the issuer's signing keys are unavailable")]
    JwksUnavailable(#[source] JwksError),
}

/// Why the issuer's key set could not be had.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// Keys fetched over plain http could be swapped by anyone on the path, so only
    /// https (and http to a loopback address, for tests and sidecars) is allowed.
    #[error("refusing to fetch keys from `{0}`: only https or loopback http is allowed")]
    InsecureUrl(String),
    #[error("the request to the issuer failed")]
    Transport(#[source] Box<dyn StdError + Send + Sync>),
    #[error("the issuer answered HTTP {0}")]
    Status(u16),
    #[error("the issuer's response exceeds {0} bytes")]
    TooLarge(usize),
    #[error("the discovery document is malformed or lacks `jwks_uri`")]
    MalformedDiscovery,
    /// OIDC Discovery requires the document's `issuer` to equal the one we asked
    /// about; otherwise we might trust another issuer's keys.
    #[error("the discovery document names another issuer")]
    IssuerMismatch,
    #[error("the JWKS is not a JSON object with a `keys` array")]
    Malformed,
    #[error("the JWKS holds more than {0} keys")]
    TooManyKeys(usize),
    #[error("the last JWKS fetch was less than {0} s ago; not fetching again yet")]
    RetryLater(u64),
}
