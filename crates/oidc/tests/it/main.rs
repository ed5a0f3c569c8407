//! The one integration test binary of `oidc`: tokens signed with fixed fixture keys,
//! verified against a real issuer served on a loopback socket.
//!
//! These tests must never reach beyond 127.0.0.1, nor generate RSA keys (slow in debug
//! builds); the keys in `fixtures/` are test-only.

mod key_cache;
mod support;
mod token_rules;
