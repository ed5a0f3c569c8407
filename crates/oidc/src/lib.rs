//! Verification of OIDC bearer JWTs against one configured issuer's JWKS.
//!
//! [`OidcVerifier::verify`] turns a bearer token into a [`VerifiedToken`] (subject,
//! tenant, expiry) or a [`TokenError`]. Only RS256 and ES256 (P-256) signatures are
//! accepted; the issuer's public keys are fetched from its JWKS (found by OIDC
//! discovery unless configured), cached, and refreshed when a token names a key id
//! we do not know, at most once per `jwks_refresh_secs_min`.
//!
//! This crate must never: accept `alg: none` or any symmetric (HS*) algorithm; use a
//! key the issuer did not publish (it ignores `jku`, `x5u` and `jwk` headers); use a
//! JWK whose type or declared algorithm disagrees with the token's algorithm; or put a
//! token, or the value of any of its claims, in an error, a `Debug` output or a log
//! line, because a bearer token is a credential. It knows nothing of HTTP requests or
//! responses: the HTTP crate extracts the token and maps every [`TokenError`] to 401.

mod cache;
mod claims;
mod config;
mod error;
mod issuer;
mod jwks;
mod token;
mod verifier;

pub use config::OidcConfig;
pub use error::{JwksError, TokenError};
pub use verifier::{OidcVerifier, VerifiedToken};
