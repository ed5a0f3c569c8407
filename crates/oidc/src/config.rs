//! The configuration of the one issuer whose tokens we trust.
//!
//! It holds no secret: verification needs only the issuer's public keys. It must never
//! grow a list of issuers or audiences, because one verifier trusts exactly one issuer
//! for exactly one audience.

/// What a token must satisfy, and where the issuer's keys are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcConfig {
    /// The exact `iss` every token must carry, e.g. `https://login.example.org/realms/tenet`.
    pub issuer: String,
    /// The audience that must be the token's `aud`, or one element of it.
    pub audience: String,
    /// The JWKS URL. If `None`, it is discovered at
    /// `{issuer}/.well-known/openid-configuration` (its `jwks_uri`).
    pub jwks_url: Option<String>,
    /// The claim holding the Tenet tenant id (a UUID string).
    pub tenant_claim: String,
    /// Clock skew allowed when checking `exp` and `nbf`.
    pub leeway_secs: u64,
    /// The least time between two JWKS fetches, so that a flood of tokens naming
    /// unknown key ids cannot make us hammer the issuer. Lower it only in tests.
    pub jwks_refresh_secs_min: u64,
}

impl OidcConfig {
    pub const TENANT_CLAIM_DEFAULT: &'static str = "tenet_tenant";
    pub const LEEWAY_SECS_DEFAULT: u64 = 60;
    pub const JWKS_REFRESH_SECS_MIN_DEFAULT: u64 = 30;

    /// A configuration with discovery and the default tenant claim, leeway and
    /// refresh interval.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            jwks_url: None,
            tenant_claim: Self::TENANT_CLAIM_DEFAULT.to_owned(),
            leeway_secs: Self::LEEWAY_SECS_DEFAULT,
            jwks_refresh_secs_min: Self::JWKS_REFRESH_SECS_MIN_DEFAULT,
        }
    }
}
