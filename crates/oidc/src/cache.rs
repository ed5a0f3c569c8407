//! The cache of the issuer's keys, and when to fetch them again.
//!
//! Keys are fetched lazily on the first verification, again when a token names a key
//! id we do not have (the issuer may have rotated), and again once they are older than
//! `JWKS_AGE_MAX` (the issuer may have withdrawn a key). Fetches are single-flight and
//! at least `jwks_refresh_secs_min` apart, whatever their outcome. This module must
//! never fetch on behalf of every token that names a bogus key id, because anyone can
//! send such tokens; and must never hold a lock that blocks verifications with known
//! keys while a fetch is under way.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::DecodingKey;

use crate::issuer::IssuerClient;
use crate::jwks::{KeyLookupError, KeySet};
use crate::token::SigningAlgorithm;
use crate::{JwksError, OidcConfig, TokenError};

/// After this long, keys are fetched again so that a key the issuer has withdrawn
/// stops being trusted. If that fetch fails, the old keys go on being used.
const JWKS_AGE_MAX: Duration = Duration::from_secs(10 * 60);

pub(crate) struct KeyCache {
    source: Source,
    /// The keys in use. Read on every verification, written after each fetch.
    current: RwLock<Option<Arc<Snapshot>>>,
    /// Held across a fetch, so that concurrent misses wait for one fetch rather than
    /// each starting their own.
    refresh: tokio::sync::Mutex<RefreshState>,
}

enum Source {
    /// Keys given at construction; never fetched, never stale.
    Fixed,
    Remote {
        client: IssuerClient,
        issuer: String,
        jwks_url: Option<String>,
        refresh_interval_min: Duration,
    },
}

struct Snapshot {
    keys: KeySet,
    fetched_at: Instant,
}

#[derive(Default)]
struct RefreshState {
    last_attempt: Option<Instant>,
    /// The `jwks_uri` found by discovery, kept until a fetch from it fails.
    discovered_jwks_url: Option<String>,
}

impl KeyCache {
    pub(crate) fn remote(config: &OidcConfig) -> Self {
        Self::with(
            Source::Remote {
                client: IssuerClient::new(),
                issuer: config.issuer.clone(),
                jwks_url: config.jwks_url.clone(),
                refresh_interval_min: Duration::from_secs(config.jwks_refresh_secs_min),
            },
            None,
        )
    }

    pub(crate) fn fixed(keys: KeySet) -> Self {
        Self::with(Source::Fixed, Some(keys))
    }

    fn with(source: Source, keys: Option<KeySet>) -> Self {
        let snapshot = keys.map(|keys| {
            Arc::new(Snapshot {
                keys,
                fetched_at: Instant::now(),
            })
        });
        Self {
            source,
            current: RwLock::new(snapshot),
            refresh: tokio::sync::Mutex::new(RefreshState::default()),
        }
    }

    /// The issuer's key that must verify a token with this `kid` and algorithm.
    pub(crate) async fn key_for(
        &self,
        kid: Option<&str>,
        alg: SigningAlgorithm,
    ) -> Result<DecodingKey, TokenError> {
        if let Some(snapshot) = self.snapshot()
            && !self.is_stale(&snapshot)
        {
            match snapshot.keys.select(kid, alg) {
                Err(KeyLookupError::Unknown) if kid.is_some() && self.can_fetch() => {}
                // Without a kid there is nothing a fetch could find.
                found => return owned(found),
            }
        }
        self.refresh_and_select(kid, alg).await
    }

    async fn refresh_and_select(
        &self,
        kid: Option<&str>,
        alg: SigningAlgorithm,
    ) -> Result<DecodingKey, TokenError> {
        let Source::Remote {
            client,
            issuer,
            jwks_url,
            refresh_interval_min,
        } = &self.source
        else {
            unreachable!("BUG: fixed keys are never stale and never fetched");
        };
        let mut state = self.refresh.lock().await;

        // Another task may have fetched while this one waited for the lock.
        let snapshot = self.snapshot();
        let cached = snapshot
            .as_ref()
            .map(|snapshot| snapshot.keys.select(kid, alg));
        let must_fetch = match (&snapshot, cached) {
            (None, _) => true,
            (Some(snapshot), _) if self.is_stale(snapshot) => true,
            (_, Some(Err(KeyLookupError::Unknown))) => kid.is_some(),
            _ => false,
        };
        let throttled = state
            .last_attempt
            .is_some_and(|last_attempt| last_attempt.elapsed() < *refresh_interval_min);
        if !must_fetch || throttled {
            return match cached {
                Some(found) => owned(found),
                None => Err(TokenError::JwksUnavailable(JwksError::RetryLater(
                    refresh_interval_min.as_secs(),
                ))),
            };
        }

        state.last_attempt = Some(Instant::now());
        match fetch(client, issuer, jwks_url.as_deref(), &mut state).await {
            Ok(keys) => {
                tracing::debug!(issuer = %issuer, "fetched the issuer's JWKS");
                let snapshot = Arc::new(Snapshot {
                    keys,
                    fetched_at: Instant::now(),
                });
                *self.current.write().expect("BUG: JWKS cache lock poisoned") =
                    Some(snapshot.clone());
                owned(snapshot.keys.select(kid, alg))
            }
            Err(error) => {
                tracing::debug!(issuer = %issuer, error = %error, "fetching the issuer's JWKS failed");
                match cached {
                    // Stale keys are better than none while the issuer is unreachable.
                    Some(Ok(key)) => Ok(key.clone()),
                    Some(Err(KeyLookupError::Mismatch)) => Err(TokenError::KeyAlgorithmMismatch),
                    Some(Err(KeyLookupError::Unknown)) | None => {
                        Err(TokenError::JwksUnavailable(error))
                    }
                }
            }
        }
    }

    fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.current
            .read()
            .expect("BUG: JWKS cache lock poisoned")
            .clone()
    }

    fn can_fetch(&self) -> bool {
        matches!(self.source, Source::Remote { .. })
    }

    fn is_stale(&self, snapshot: &Snapshot) -> bool {
        self.can_fetch() && snapshot.fetched_at.elapsed() > JWKS_AGE_MAX
    }
}

async fn fetch(
    client: &IssuerClient,
    issuer: &str,
    configured_jwks_url: Option<&str>,
    state: &mut RefreshState,
) -> Result<KeySet, JwksError> {
    let jwks_url = match (configured_jwks_url, state.discovered_jwks_url.as_deref()) {
        (Some(url), _) | (None, Some(url)) => url.to_owned(),
        (None, None) => {
            let url = client.discover_jwks_url(issuer).await?;
            state.discovered_jwks_url = Some(url.clone());
            url
        }
    };
    let fetched = client.fetch_key_set(&jwks_url).await;
    if fetched.is_err() {
        // The issuer may have moved its keys; look them up afresh next time.
        state.discovered_jwks_url = None;
    }
    fetched
}

fn owned(found: Result<&DecodingKey, KeyLookupError>) -> Result<DecodingKey, TokenError> {
    match found {
        Ok(key) => Ok(key.clone()),
        Err(KeyLookupError::Unknown) => Err(TokenError::UnknownKey),
        Err(KeyLookupError::Mismatch) => Err(TokenError::KeyAlgorithmMismatch),
    }
}
