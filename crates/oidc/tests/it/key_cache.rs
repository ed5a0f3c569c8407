//! When the issuer's keys are fetched: lazily, once, again on an unknown kid at most
//! once per interval, and what happens when the issuer misbehaves.

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey};
use oidc::{JwksError, OidcConfig, OidcVerifier, TokenError};

use crate::support::{JWKS_ROTATED, RSA_NEXT_PEM, TestIssuer, good_claims, rs256, sign};

#[tokio::test]
async fn keys_are_fetched_on_first_use_and_then_served_from_the_cache() {
    let issuer = TestIssuer::start().await;
    let verifier = issuer.verifier();
    assert_eq!(
        issuer.jwks_hits(),
        0,
        "constructing a verifier must not fetch"
    );
    let token = rs256("rsa-1", &good_claims(&issuer.url));

    for _ in 0..10 {
        verifier.verify(&token).await.unwrap();
    }

    assert_eq!((issuer.discovery_hits(), issuer.jwks_hits()), (1, 1));
}

#[tokio::test]
async fn concurrent_first_verifications_share_one_fetch() {
    let issuer = TestIssuer::start().await;
    let verifier = issuer.verifier();
    let token = rs256("rsa-1", &good_claims(&issuer.url));

    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (verifier, token) = (verifier.clone(), token.clone());
            tokio::spawn(async move { verifier.verify(&token).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }

    assert_eq!(issuer.jwks_hits(), 1);
}

#[tokio::test]
async fn unknown_kids_within_the_refresh_interval_cause_no_fetch() {
    let issuer = TestIssuer::start().await;
    let verifier = issuer.verifier();
    verifier
        .verify(&rs256("rsa-1", &good_claims(&issuer.url)))
        .await
        .unwrap();

    for n in 0..20 {
        let token = rs256(&format!("bogus-{n}"), &good_claims(&issuer.url));
        let err = verifier.verify(&token).await.unwrap_err();
        assert!(matches!(err, TokenError::UnknownKey), "{err:?}");
    }

    assert_eq!(issuer.jwks_hits(), 1);
}

#[tokio::test]
async fn an_unknown_kid_triggers_one_refetch_per_interval_then_unknown_key() {
    let issuer = TestIssuer::start().await;
    let verifier = OidcVerifier::new(OidcConfig {
        jwks_refresh_secs_min: 1,
        ..issuer.config()
    });
    verifier
        .verify(&rs256("rsa-1", &good_claims(&issuer.url)))
        .await
        .unwrap();
    // Signed before the clock starts: RSA signing in a debug build is slow enough to
    // let the interval pass during the flood.
    let bogus_tokens: Vec<String> = (0..20)
        .map(|n| rs256(&format!("bogus-{n}"), &good_claims(&issuer.url)))
        .collect();
    tokio::time::sleep(Duration::from_millis(1100)).await;

    for token in &bogus_tokens {
        let err = verifier.verify(token).await.unwrap_err();
        assert!(matches!(err, TokenError::UnknownKey), "{err:?}");
    }

    assert_eq!(
        issuer.jwks_hits(),
        2,
        "one fetch on first use, one refetch for the flood"
    );
    assert_eq!(
        issuer.discovery_hits(),
        1,
        "the discovered jwks_uri is reused"
    );
}

#[tokio::test]
async fn a_token_signed_with_a_rotated_in_key_is_accepted_after_a_refresh() {
    let issuer = TestIssuer::start().await;
    let verifier = OidcVerifier::new(OidcConfig {
        jwks_refresh_secs_min: 0,
        ..issuer.config()
    });
    verifier
        .verify(&rs256("rsa-1", &good_claims(&issuer.url)))
        .await
        .unwrap();

    issuer.publish(JWKS_ROTATED);
    let next_key = EncodingKey::from_rsa_pem(RSA_NEXT_PEM.as_bytes()).unwrap();
    let token = sign(
        Algorithm::RS256,
        Some("rsa-2"),
        &next_key,
        &good_claims(&issuer.url),
    );
    let verified = verifier.verify(&token).await.unwrap();

    assert_eq!(verified.tenant_id.to_string(), crate::support::TENANT);
    assert_eq!(issuer.jwks_hits(), 2);
    let err = verifier
        .verify(&rs256("rsa-1", &good_claims(&issuer.url)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, TokenError::UnknownKey),
        "the withdrawn key is no longer trusted: {err:?}"
    );
}

#[tokio::test]
async fn an_unreachable_issuer_makes_keys_unavailable_without_retrying_at_once() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let verifier = OidcVerifier::new(OidcConfig::new(url.clone(), "tenet-api"));
    let token = rs256("rsa-1", &good_claims(&url));

    let first = verifier.verify(&token).await.unwrap_err();
    let second = verifier.verify(&token).await.unwrap_err();

    assert!(
        matches!(first, TokenError::JwksUnavailable(JwksError::Transport(_))),
        "{first:?}"
    );
    assert!(
        matches!(
            second,
            TokenError::JwksUnavailable(JwksError::RetryLater(30))
        ),
        "{second:?}"
    );
}

#[tokio::test]
async fn a_discovery_document_naming_another_issuer_is_refused() {
    let issuer = TestIssuer::start().await;
    let impostor = format!("{}/impostor", issuer.url);
    let verifier = OidcVerifier::new(OidcConfig::new(impostor.clone(), "tenet-api"));

    let err = verifier
        .verify(&rs256("rsa-1", &good_claims(&impostor)))
        .await
        .unwrap_err();

    assert!(
        matches!(err, TokenError::JwksUnavailable(JwksError::IssuerMismatch)),
        "{err:?}"
    );
    assert_eq!(issuer.jwks_hits(), 0);
}

#[tokio::test]
async fn a_configured_jwks_url_is_used_without_discovery() {
    let issuer = TestIssuer::start().await;
    let config = OidcConfig {
        jwks_url: Some(format!("{}/jwks", issuer.url)),
        ..issuer.config()
    };

    OidcVerifier::new(config)
        .verify(&rs256("rsa-1", &good_claims(&issuer.url)))
        .await
        .unwrap();

    assert_eq!((issuer.discovery_hits(), issuer.jwks_hits()), (0, 1));
}

#[tokio::test]
async fn an_oversized_jwks_response_is_refused() {
    let issuer = TestIssuer::start().await;
    let config = OidcConfig {
        jwks_url: Some(format!("{}/huge", issuer.url)),
        ..issuer.config()
    };

    let err = OidcVerifier::new(config)
        .verify(&rs256("rsa-1", &good_claims(&issuer.url)))
        .await
        .unwrap_err();

    assert!(
        matches!(err, TokenError::JwksUnavailable(JwksError::TooLarge(_))),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_error_status_from_the_jwks_url_makes_keys_unavailable() {
    let issuer = TestIssuer::start().await;
    let config = OidcConfig {
        jwks_url: Some(format!("{}/missing", issuer.url)),
        ..issuer.config()
    };

    let err = OidcVerifier::new(config)
        .verify(&rs256("rsa-1", &good_claims(&issuer.url)))
        .await
        .unwrap_err();

    assert!(
        matches!(err, TokenError::JwksUnavailable(JwksError::Status(404))),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_plain_http_jwks_url_off_this_machine_is_never_fetched() {
    let config = OidcConfig {
        jwks_url: Some("http://login.example.org/jwks".to_owned()),
        ..OidcConfig::new("http://login.example.org", "tenet-api")
    };

    let err = OidcVerifier::new(config)
        .verify(&rs256("rsa-1", &good_claims("http://login.example.org")))
        .await
        .unwrap_err();

    assert!(
        matches!(err, TokenError::JwksUnavailable(JwksError::InsecureUrl(_))),
        "{err:?}"
    );
}
