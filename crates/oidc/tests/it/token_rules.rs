//! What a token must be to be accepted: algorithm, key, signature and claims.
//!
//! Each refusal is a distinct `TokenError` (the HTTP crate turns every one into 401).

use jsonwebtoken::{Algorithm, EncodingKey};
use oidc::{OidcVerifier, TokenError};
use serde_json::json;

use crate::support::{
    AUDIENCE, EC_PEM, JWKS, RSA_PUBLIC_PEM, SUBJECT, TENANT, TestIssuer, b64, es256, good_claims,
    jwks_with_only, now_unix, rs256, sign,
};

#[tokio::test]
async fn a_valid_rs256_token_yields_its_subject_tenant_and_expiry() {
    let issuer = TestIssuer::start().await;
    let claims = good_claims(&issuer.url);

    let verified = issuer
        .verifier()
        .verify(&rs256("rsa-1", &claims))
        .await
        .unwrap();

    assert_eq!(verified.subject, SUBJECT);
    assert_eq!(verified.tenant_id.to_string(), TENANT);
    assert_eq!(
        verified.expires_at.unix_timestamp(),
        claims["exp"].as_i64().unwrap()
    );
}

#[tokio::test]
async fn a_valid_es256_token_is_accepted() {
    let issuer = TestIssuer::start().await;

    let verified = issuer
        .verifier()
        .verify(&es256("ec-1", &good_claims(&issuer.url)))
        .await
        .unwrap();

    assert_eq!(verified.subject, SUBJECT);
}

#[tokio::test]
async fn an_alg_none_token_is_refused_before_any_key_is_fetched() {
    let issuer = TestIssuer::start().await;
    let header = b64(r#"{"alg":"none","typ":"JWT"}"#);
    let payload = b64(good_claims(&issuer.url).to_string());

    let err = issuer
        .verifier()
        .verify(&format!("{header}.{payload}."))
        .await
        .unwrap_err();

    assert!(
        matches!(&err, TokenError::UnsupportedAlgorithm(alg) if alg == "none"),
        "{err:?}"
    );
    assert_eq!(issuer.jwks_hits(), 0);
}

#[tokio::test]
async fn an_hs256_token_keyed_with_the_rsa_public_key_is_refused() {
    // The classic confusion: a verifier that lets the header pick the algorithm would
    // check this HMAC with the issuer's public key, which the attacker also has.
    let issuer = TestIssuer::start().await;
    let hmac_key = EncodingKey::from_secret(RSA_PUBLIC_PEM.as_bytes());
    let token = sign(
        Algorithm::HS256,
        Some("rsa-1"),
        &hmac_key,
        &good_claims(&issuer.url),
    );

    let err = issuer.verifier().verify(&token).await.unwrap_err();

    assert!(
        matches!(&err, TokenError::UnsupportedAlgorithm(alg) if alg == "HS256"),
        "{err:?}"
    );
    assert_eq!(issuer.jwks_hits(), 0);
}

#[tokio::test]
async fn an_hs256_token_naming_the_issuers_symmetric_key_is_refused() {
    let issuer = TestIssuer::start().await;
    let hmac_key = EncodingKey::from_secret(b"a shared secret that must never be used");
    let token = sign(
        Algorithm::HS256,
        Some("hmac-1"),
        &hmac_key,
        &good_claims(&issuer.url),
    );

    let err = issuer.verifier().verify(&token).await.unwrap_err();

    assert!(
        matches!(err, TokenError::UnsupportedAlgorithm(_)),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_es256_token_whose_kid_names_the_rsa_key_is_refused() {
    let issuer = TestIssuer::start().await;

    let err = issuer
        .verifier()
        .verify(&es256("rsa-1", &good_claims(&issuer.url)))
        .await
        .unwrap_err();

    assert!(matches!(err, TokenError::KeyAlgorithmMismatch), "{err:?}");
}

#[tokio::test]
async fn an_rs256_token_whose_kid_names_the_ec_key_is_refused() {
    let issuer = TestIssuer::start().await;

    let err = issuer
        .verifier()
        .verify(&rs256("ec-1", &good_claims(&issuer.url)))
        .await
        .unwrap_err();

    assert!(matches!(err, TokenError::KeyAlgorithmMismatch), "{err:?}");
}

#[tokio::test]
async fn an_rs256_token_whose_kid_names_a_key_declared_for_ps256_is_refused() {
    let issuer = TestIssuer::start().await;

    let err = issuer
        .verifier()
        .verify(&rs256("rsa-1-ps256", &good_claims(&issuer.url)))
        .await
        .unwrap_err();

    assert!(matches!(err, TokenError::KeyAlgorithmMismatch), "{err:?}");
}

#[tokio::test]
async fn an_rs256_token_whose_kid_names_the_symmetric_key_is_refused_without_using_it() {
    let issuer = TestIssuer::start().await;

    let err = issuer
        .verifier()
        .verify(&rs256("hmac-1", &good_claims(&issuer.url)))
        .await
        .unwrap_err();

    assert!(matches!(err, TokenError::KeyAlgorithmMismatch), "{err:?}");
}

#[tokio::test]
async fn a_token_whose_payload_was_tampered_with_fails_its_signature() {
    let issuer = TestIssuer::start().await;
    let token = rs256("rsa-1", &good_claims(&issuer.url));
    let mut forged_claims = good_claims(&issuer.url);
    forged_claims["sub"] = json!("admin");
    let parts: Vec<&str> = token.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64(forged_claims.to_string()),
        parts[2]
    );

    let err = issuer.verifier().verify(&forged).await.unwrap_err();

    assert!(matches!(err, TokenError::BadSignature), "{err:?}");
}

#[tokio::test]
async fn a_signature_cut_from_another_token_of_the_same_key_fails() {
    let issuer = TestIssuer::start().await;
    let token = es256("ec-1", &good_claims(&issuer.url));
    let other = es256("ec-1", &json!({"sub": "someone else"}));
    let (signing_input, _) = token.rsplit_once('.').unwrap();
    let (_, other_signature) = other.rsplit_once('.').unwrap();

    let err = issuer
        .verifier()
        .verify(&format!("{signing_input}.{other_signature}"))
        .await
        .unwrap_err();

    assert!(matches!(err, TokenError::BadSignature), "{err:?}");
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let issuer = TestIssuer::start().await;
    let mut claims = good_claims(&issuer.url);
    claims["exp"] = json!(now_unix() - 3600);

    let err = issuer
        .verifier()
        .verify(&rs256("rsa-1", &claims))
        .await
        .unwrap_err();

    assert!(matches!(err, TokenError::Expired), "{err:?}");
}

#[tokio::test]
async fn a_token_whose_nbf_is_in_the_future_is_refused() {
    let issuer = TestIssuer::start().await;
    let mut claims = good_claims(&issuer.url);
    claims["nbf"] = json!(now_unix() + 3600);

    let err = issuer
        .verifier()
        .verify(&rs256("rsa-1", &claims))
        .await
        .unwrap_err();

    assert!(matches!(err, TokenError::NotYetValid), "{err:?}");
}

#[tokio::test]
async fn a_token_from_another_issuer_is_refused() {
    let issuer = TestIssuer::start().await;
    let mut claims = good_claims(&issuer.url);
    claims["iss"] = json!("https://evil.example");

    let err = issuer
        .verifier()
        .verify(&rs256("rsa-1", &claims))
        .await
        .unwrap_err();

    assert!(matches!(err, TokenError::WrongIssuer), "{err:?}");
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused() {
    let issuer = TestIssuer::start().await;
    let mut claims = good_claims(&issuer.url);
    claims["aud"] = json!("billing-api");

    let err = issuer
        .verifier()
        .verify(&rs256("rsa-1", &claims))
        .await
        .unwrap_err();

    assert!(matches!(err, TokenError::WrongAudience), "{err:?}");
}

#[tokio::test]
async fn a_token_whose_audience_array_contains_ours_is_accepted() {
    let issuer = TestIssuer::start().await;
    let mut claims = good_claims(&issuer.url);
    claims["aud"] = json!(["billing-api", AUDIENCE]);

    let verified = issuer
        .verifier()
        .verify(&rs256("rsa-1", &claims))
        .await
        .unwrap();

    assert_eq!(verified.subject, SUBJECT);
}

#[tokio::test]
async fn a_token_without_subject_is_refused() {
    let issuer = TestIssuer::start().await;
    let mut claims = good_claims(&issuer.url);
    claims.as_object_mut().unwrap().remove("sub");

    let err = issuer
        .verifier()
        .verify(&rs256("rsa-1", &claims))
        .await
        .unwrap_err();

    assert!(matches!(err, TokenError::MissingClaim("sub")), "{err:?}");
}

#[tokio::test]
async fn a_token_whose_tenant_is_not_a_uuid_is_refused() {
    let issuer = TestIssuer::start().await;
    let mut claims = good_claims(&issuer.url);
    claims["tenet_tenant"] = json!("acme-clinic");

    let err = issuer
        .verifier()
        .verify(&rs256("rsa-1", &claims))
        .await
        .unwrap_err();

    assert!(matches!(err, TokenError::BadTenant), "{err:?}");
}

#[tokio::test]
async fn the_tenant_is_read_from_the_configured_claim() {
    let issuer = TestIssuer::start().await;
    let mut config = issuer.config();
    config.tenant_claim = "https://tenet.example/tenant".to_owned();
    let mut claims = good_claims(&issuer.url);
    claims.as_object_mut().unwrap().remove("tenet_tenant");
    claims["https://tenet.example/tenant"] = json!(TENANT);

    let verified = OidcVerifier::new(config)
        .verify(&rs256("rsa-1", &claims))
        .await
        .unwrap();

    assert_eq!(verified.tenant_id.to_string(), TENANT);
}

#[tokio::test]
async fn a_token_without_kid_uses_the_only_key_of_a_one_key_set() {
    let config = oidc::OidcConfig::new("https://issuer.test", AUDIENCE);
    let verifier = OidcVerifier::with_static_jwks(config, &jwks_with_only("ec-1")).unwrap();
    let key = EncodingKey::from_ec_pem(EC_PEM.as_bytes()).unwrap();
    let token = sign(
        Algorithm::ES256,
        None,
        &key,
        &good_claims("https://issuer.test"),
    );

    let verified = verifier.verify(&token).await.unwrap();

    assert_eq!(verified.subject, SUBJECT);
}

#[tokio::test]
async fn a_token_without_kid_is_refused_when_the_set_has_several_keys() {
    let config = oidc::OidcConfig::new("https://issuer.test", AUDIENCE);
    let verifier = OidcVerifier::with_static_jwks(config, JWKS).unwrap();
    let key = EncodingKey::from_ec_pem(EC_PEM.as_bytes()).unwrap();
    let token = sign(
        Algorithm::ES256,
        None,
        &key,
        &good_claims("https://issuer.test"),
    );

    let err = verifier.verify(&token).await.unwrap_err();

    assert!(matches!(err, TokenError::UnknownKey), "{err:?}");
}

#[tokio::test]
async fn refusals_reveal_neither_the_token_nor_its_claims() {
    let issuer = TestIssuer::start().await;
    let mut claims = good_claims(&issuer.url);
    claims["exp"] = json!(now_unix() - 3600);
    claims["tenet_tenant"] = json!("secret-tenant-value");
    let expired = rs256("rsa-1", &claims);
    claims["exp"] = json!(now_unix() + 300);
    let bad_tenant = rs256("rsa-1", &claims);
    let verifier = issuer.verifier();

    for token in [expired, bad_tenant, format!("{}x", rs256("rsa-1", &claims))] {
        let err = verifier.verify(&token).await.unwrap_err();
        let shown = format!("{err} {err:?} {verifier:?}");
        for secret in [
            token.as_str(),
            SUBJECT,
            "secret-tenant-value",
            token.split('.').nth(1).unwrap(),
        ] {
            assert!(!shown.contains(secret), "{err:?} reveals part of the token");
        }
    }
}
