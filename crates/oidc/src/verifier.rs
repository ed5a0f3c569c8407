//! The verifier: a bearer token in, a verified subject and tenant out.
//!
//! The order of checks is the security argument: the form and the algorithm
//! allow-list first, then the key (chosen by `kid` and required to fit the algorithm),
//! then the signature, and only then the claims. This module must never look at a
//! claim before the signature has verified, and must never log or return the token.

use std::fmt;
use std::sync::Arc;

use jsonwebtoken::DecodingKey;
use jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;
use kernel::TenantId;
use time::OffsetDateTime;

use crate::cache::KeyCache;
use crate::jwks::KeySet;
use crate::token::{self, UnverifiedToken};
use crate::{JwksError, OidcConfig, TokenError, claims};

/// Verifies bearer tokens from one issuer. Cheap to clone: clones share the key cache.
#[derive(Clone)]
pub struct OidcVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    config: OidcConfig,
    keys: KeyCache,
}

/// What a valid token proves: who the caller is, in which tenant, until when.
///
/// Its `Debug` leaves the subject out: some issuers put an e-mail address in `sub`,
/// and a claim's value must not reach logs by accident. Log it deliberately, if at all.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The token's `sub`: the caller's id at the issuer.
    pub subject: String,
    pub tenant_id: TenantId,
    /// The token's `exp`; a session built on the token must not outlive it.
    pub expires_at: OffsetDateTime,
}

impl OidcVerifier {
    /// A verifier that fetches the issuer's keys on first use. Does no I/O.
    pub fn new(config: OidcConfig) -> Self {
        let keys = KeyCache::remote(&config);
        Self {
            inner: Arc::new(Inner { config, keys }),
        }
    }

    /// A verifier that trusts exactly the keys of `jwks_json` and never fetches any,
    /// for tests and offline deployments. `jwks_url` is ignored.
    pub fn with_static_jwks(config: OidcConfig, jwks_json: &str) -> Result<Self, JwksError> {
        let keys = KeyCache::fixed(KeySet::parse(jwks_json.as_bytes())?);
        Ok(Self {
            inner: Arc::new(Inner { config, keys }),
        })
    }

    pub fn config(&self) -> &OidcConfig {
        &self.inner.config
    }

    /// Verifies `token` (the bearer credential, without the `Bearer ` prefix).
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        let verified = self.verify_at(token, OffsetDateTime::now_utc()).await;
        if let Err(error) = &verified {
            // The error names the reason only; the token never reaches a log.
            tracing::debug!(issuer = %self.inner.config.issuer, %error, "bearer token refused");
        }
        verified
    }

    async fn verify_at(
        &self,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<VerifiedToken, TokenError> {
        let unverified = token::parse(token)?;
        let key = self
            .inner
            .keys
            .key_for(unverified.kid.as_deref(), unverified.alg)
            .await?;
        check_signature(&unverified, &key)?;
        claims::validate(
            &unverified.payload()?,
            &self.inner.config,
            now.unix_timestamp(),
        )
    }
}

impl fmt::Debug for VerifiedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedToken")
            .field("subject", &"[redacted]")
            .field("tenant_id", &self.tenant_id)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcVerifier")
            .field("issuer", &self.inner.config.issuer)
            .field("audience", &self.inner.config.audience)
            .finish_non_exhaustive()
    }
}

/// Verifies the signature with the RustCrypto provider named explicitly rather than
/// jsonwebtoken's process-wide default, which would panic if another crate enabled a
/// second provider. The provider also refuses a key of another family than the
/// algorithm: a second guard behind `KeySet::select`.
fn check_signature(unverified: &UnverifiedToken<'_>, key: &DecodingKey) -> Result<(), TokenError> {
    let verifier = (DEFAULT_PROVIDER.verifier_factory)(&unverified.alg.to_jsonwebtoken(), key)
        .map_err(|_| {
            tracing::debug!("the issuer's key cannot verify signatures (not a valid public key)");
            TokenError::BadSignature
        })?;
    verifier
        .verify(unverified.signing_input.as_bytes(), &unverified.signature)
        .map_err(|_| TokenError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verifier_can_be_shared_across_threads() {
        fn assert_shareable<T: Clone + Send + Sync + 'static>() {}
        assert_shareable::<OidcVerifier>();
    }

    #[test]
    fn a_verified_tokens_debug_leaves_out_the_subject() {
        let verified = VerifiedToken {
            subject: "jane.doe@example.org".to_owned(),
            tenant_id: TenantId::generate(),
            expires_at: OffsetDateTime::UNIX_EPOCH,
        };
        assert!(!format!("{verified:?}").contains("jane.doe"));
    }

    #[test]
    fn the_verify_future_can_run_on_a_multi_threaded_runtime() {
        fn assert_send<T: Send>(_: &T) {}
        let verifier = OidcVerifier::new(OidcConfig::new("https://issuer.test", "tenet-api"));
        assert_send(&verifier.verify("a.b.c"));
    }
}
