//! Talking to the issuer over HTTP: OIDC discovery and the JWKS download.
//!
//! Every request is bounded in time (`FETCH_TIMEOUT`), in size (`RESPONSE_BYTES_MAX`)
//! and in redirects (`REDIRECTS_MAX`), because the issuer is outside our control and
//! its slowness must not become ours. This module must never fetch keys over plain
//! http from a non-loopback host, nor follow a redirect to one: whoever could alter
//! the JWKS in transit could mint tokens for any tenant.

use std::net::IpAddr;
use std::time::Duration;

use reqwest::Url;
use reqwest::header::ACCEPT;
use reqwest::redirect;
use serde::Deserialize;

use crate::JwksError;
use crate::jwks::KeySet;

/// How long one request to the issuer (connect, headers and body) may take.
pub(crate) const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest discovery document or JWKS we read. Real ones are a few KiB.
pub(crate) const RESPONSE_BYTES_MAX: usize = 256 * 1024;
const REDIRECTS_MAX: usize = 3;

const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

/// An HTTP client for one issuer's metadata and keys.
#[derive(Debug, Clone)]
pub(crate) struct IssuerClient {
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct DiscoveryDocument {
    issuer: String,
    jwks_uri: String,
}

impl IssuerClient {
    pub(crate) fn new() -> Self {
        let redirect_policy = redirect::Policy::custom(|attempt| {
            if attempt.previous().len() >= REDIRECTS_MAX {
                attempt.error("too many redirects")
            } else if is_allowed(attempt.url()) {
                attempt.follow()
            } else {
                attempt.error("refusing a redirect to plain http")
            }
        });
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT)
            .redirect(redirect_policy)
            .user_agent(concat!("tenet-oidc/", env!("CARGO_PKG_VERSION")))
            .build()
            // Building fails only if the TLS backend cannot start, which is a broken
            // build, not an operating condition; `new` runs at start-up.
            .expect("BUG: the HTTP client for the OIDC issuer could not be built");
        Self { http }
    }

    /// The issuer's `jwks_uri`, from its OIDC discovery document.
    pub(crate) async fn discover_jwks_url(&self, issuer: &str) -> Result<String, JwksError> {
        let url = format!("{}{DISCOVERY_PATH}", issuer.trim_end_matches('/'));
        let body = self.get(&url).await?;
        let document: DiscoveryDocument =
            serde_json::from_slice(&body).map_err(|_| JwksError::MalformedDiscovery)?;
        if document.issuer != issuer {
            return Err(JwksError::IssuerMismatch);
        }
        Ok(document.jwks_uri)
    }

    /// The issuer's current key set.
    pub(crate) async fn fetch_key_set(&self, jwks_url: &str) -> Result<KeySet, JwksError> {
        KeySet::parse(&self.get(jwks_url).await?)
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, JwksError> {
        let url = Url::parse(url).map_err(|_| JwksError::InsecureUrl(url.to_owned()))?;
        if !is_allowed(&url) {
            return Err(JwksError::InsecureUrl(url.to_string()));
        }
        let mut response = self
            .http
            .get(url)
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(transport)?;
        if !response.status().is_success() {
            return Err(JwksError::Status(response.status().as_u16()));
        }
        // The declared length is checked first to refuse early, and the body is still
        // counted as it arrives because the declaration may be absent or false.
        if response
            .content_length()
            .is_some_and(|len| len > RESPONSE_BYTES_MAX as u64)
        {
            return Err(JwksError::TooLarge(RESPONSE_BYTES_MAX));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > RESPONSE_BYTES_MAX {
                return Err(JwksError::TooLarge(RESPONSE_BYTES_MAX));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

fn transport(error: reqwest::Error) -> JwksError {
    JwksError::Transport(Box::new(error))
}

/// https anywhere; plain http only to this machine, where nobody sits on the path.
fn is_allowed(url: &Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => url.host_str().is_some_and(|host| {
            // An IPv6 host is bracketed in a URL, and `IpAddr` wants it bare.
            let host = host.trim_start_matches('[').trim_end_matches(']');
            host.eq_ignore_ascii_case("localhost")
                || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http_is_allowed() {
        for allowed in [
            "https://login.example.org/jwks",
            "http://127.0.0.1:8080/jwks",
            "http://[::1]/jwks",
            "http://localhost/jwks",
        ] {
            assert!(is_allowed(&Url::parse(allowed).unwrap()), "{allowed}");
        }
        for refused in [
            "http://login.example.org/jwks",
            "http://10.0.0.1/jwks",
            "http://localhost.example.org/jwks",
            "ftp://127.0.0.1/jwks",
            "file:///etc/jwks",
        ] {
            assert!(!is_allowed(&Url::parse(refused).unwrap()), "{refused}");
        }
    }
}
