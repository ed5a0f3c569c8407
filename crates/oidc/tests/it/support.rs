//! A real OIDC issuer on a loopback socket, and tokens signed with the fixture keys.
//!
//! The issuer counts its requests so tests can prove what the verifier fetched. It must
//! never be reachable from anywhere but 127.0.0.1.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use oidc::{OidcConfig, OidcVerifier};
use serde_json::{Value, json};
use time::OffsetDateTime;

pub const AUDIENCE: &str = "tenet-api";
pub const SUBJECT: &str = "clinician-4711";
pub const TENANT: &str = "0190f0c8-9a4e-7c3b-8d2a-5e6f7a8b9c0d";

pub const RSA_PEM: &str = include_str!("fixtures/rsa.pem");
pub const RSA_NEXT_PEM: &str = include_str!("fixtures/rsa-next.pem");
pub const RSA_PUBLIC_PEM: &str = include_str!("fixtures/rsa.pub.pem");
pub const EC_PEM: &str = include_str!("fixtures/ec.pem");
pub const JWKS: &str = include_str!("fixtures/jwks.json");
pub const JWKS_ROTATED: &str = include_str!("fixtures/jwks-rotated.json");

/// Larger than the verifier's response limit of 256 KiB.
const HUGE_BODY_BYTES: usize = 300 * 1024;

pub struct TestIssuer {
    pub url: String,
    state: Arc<IssuerState>,
}

struct IssuerState {
    url: String,
    jwks: Mutex<String>,
    discovery_hits: AtomicUsize,
    jwks_hits: AtomicUsize,
}

impl TestIssuer {
    /// Starts an issuer publishing `fixtures/jwks.json`.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(IssuerState {
            url: url.clone(),
            jwks: Mutex::new(JWKS.to_owned()),
            discovery_hits: AtomicUsize::new(0),
            jwks_hits: AtomicUsize::new(0),
        });
        let router = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            // Claims to be the issuer at the root: a discovery document for another issuer.
            .route("/impostor/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/huge", get(|| async { "x".repeat(HUGE_BODY_BYTES) }))
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Self { url, state }
    }

    pub fn config(&self) -> OidcConfig {
        OidcConfig::new(self.url.clone(), AUDIENCE)
    }

    pub fn verifier(&self) -> OidcVerifier {
        OidcVerifier::new(self.config())
    }

    pub fn publish(&self, jwks: &str) {
        *self.state.jwks.lock().unwrap() = jwks.to_owned();
    }

    pub fn discovery_hits(&self) -> usize {
        self.state.discovery_hits.load(Ordering::SeqCst)
    }

    pub fn jwks_hits(&self) -> usize {
        self.state.jwks_hits.load(Ordering::SeqCst)
    }
}

async fn discovery(State(state): State<Arc<IssuerState>>) -> Json<Value> {
    state.discovery_hits.fetch_add(1, Ordering::SeqCst);
    Json(json!({
        "issuer": state.url,
        "jwks_uri": format!("{}/jwks", state.url),
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
    }))
}

async fn jwks(State(state): State<Arc<IssuerState>>) -> String {
    state.jwks_hits.fetch_add(1, Ordering::SeqCst);
    state.jwks.lock().unwrap().clone()
}

/// Claims that pass every check of a verifier configured for `issuer`.
pub fn good_claims(issuer: &str) -> Value {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    json!({
        "iss": issuer,
        "aud": AUDIENCE,
        "sub": SUBJECT,
        "iat": now,
        "exp": now + 300,
        "tenet_tenant": TENANT,
    })
}

pub fn now_unix() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

pub fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

pub fn rs256(kid: &str, claims: &Value) -> String {
    sign(
        Algorithm::RS256,
        Some(kid),
        &EncodingKey::from_rsa_pem(RSA_PEM.as_bytes()).unwrap(),
        claims,
    )
}

pub fn es256(kid: &str, claims: &Value) -> String {
    sign(
        Algorithm::ES256,
        Some(kid),
        &EncodingKey::from_ec_pem(EC_PEM.as_bytes()).unwrap(),
        claims,
    )
}

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The JWKS of the fixtures with only the key named `kid`.
pub fn jwks_with_only(kid: &str) -> String {
    let mut jwks: Value = serde_json::from_str(JWKS).unwrap();
    jwks["keys"]
        .as_array_mut()
        .unwrap()
        .retain(|key| key["kid"] == kid);
    jwks.to_string()
}
