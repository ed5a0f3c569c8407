//! Authentication: every bad credential is the same 401 problem with
//! `WWW-Authenticate: Bearer`; a good API key or OIDC token stands for its principal.

use axum::body::Body;
use axum::http::{Method, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::json;

use crate::support::{RSA_PUBLIC_PEM, Reply, World, claims, request, rs256, sign};

#[track_caller]
fn assert_unauthenticated(reply: &Reply, what: &str) {
    assert_eq!(
        reply.status,
        StatusCode::UNAUTHORIZED,
        "{what}: {}",
        reply.text()
    );
    assert_eq!(
        reply.problem(StatusCode::UNAUTHORIZED),
        "/problems/unauthenticated",
        "{what}"
    );
    assert_eq!(
        reply.header(header::WWW_AUTHENTICATE),
        Some("Bearer"),
        "{what}"
    );
}

/// `token` with one character of its secret (the part after the last dot) changed.
fn flip_secret_char(token: &str) -> String {
    let at = token.rfind('.').unwrap() + 1;
    let mut bytes = token.as_bytes().to_vec();
    // The first character of the secret carries six full bits: changing it yields
    // another well-formed 32-byte secret, so the refusal is the hash comparison's.
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

#[tokio::test]
async fn every_bad_credential_gets_the_same_401_problem() {
    let world = World::new().await;
    let a = &world.a;
    let good = claims(&a.clinician.subject, a.id);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();

    let alg_none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(good.to_string())
    );
    let hs256_with_public_key = sign(
        Algorithm::HS256,
        "rsa-1",
        &EncodingKey::from_secret(RSA_PUBLIC_PEM.as_bytes()),
        &good,
    );
    let mut expired = good.clone();
    expired["iat"] = json!(now - 7200);
    expired["exp"] = json!(now - 3600);
    let mut wrong_audience = good.clone();
    wrong_audience["aud"] = json!("another-api");
    let mut wrong_issuer = good.clone();
    wrong_issuer["iss"] = json!("https://impostor.example.test");
    let unknown_subject = claims("sub-nobody", a.id);
    // A's clinician's subject, presented for tenant B: the user is not B's.
    let other_tenant = claims(&a.clinician.subject, world.b.id);

    // Revoke A's integration key with A's admin key, then present it.
    world
        .delete(
            &format!("/v1/api-keys/{}", a.integration.key_id),
            &a.admin.token,
        )
        .await
        .ok_empty(StatusCode::NO_CONTENT);

    let credentials = [
        ("garbage bearer", Some("Bearer garbage".to_owned())),
        (
            "not a bearer scheme",
            Some(format!("Basic {}", a.admin.token)),
        ),
        ("empty bearer", Some("Bearer ".to_owned())),
        (
            "revoked API key",
            Some(format!("Bearer {}", a.integration.token)),
        ),
        (
            "API key with a flipped secret character",
            Some(format!("Bearer {}", flip_secret_char(&a.admin.token))),
        ),
        (
            "API key cut short",
            Some(format!(
                "Bearer {}",
                &a.admin.token[..a.admin.token.len() - 4]
            )),
        ),
        ("OIDC alg none", Some(format!("Bearer {alg_none}"))),
        (
            "OIDC HS256 keyed with the RSA public key",
            Some(format!("Bearer {hs256_with_public_key}")),
        ),
        ("expired JWT", Some(format!("Bearer {}", rs256(&expired)))),
        (
            "JWT for another audience",
            Some(format!("Bearer {}", rs256(&wrong_audience))),
        ),
        (
            "JWT from another issuer",
            Some(format!("Bearer {}", rs256(&wrong_issuer))),
        ),
        (
            "JWT for an unknown subject",
            Some(format!("Bearer {}", rs256(&unknown_subject))),
        ),
        (
            "JWT naming another tenant than its user's",
            Some(format!("Bearer {}", rs256(&other_tenant))),
        ),
        ("missing Authorization header", None),
    ];
    for (what, authorization) in credentials {
        let mut builder = request(Method::GET, "/v1/me", None);
        if let Some(authorization) = authorization {
            builder = builder.header(header::AUTHORIZATION, authorization);
        }
        let reply = world.send(builder.body(Body::empty()).unwrap()).await;
        assert_unauthenticated(&reply, what);
    }
}

#[tokio::test]
async fn a_valid_rs256_token_stands_for_the_user_mapped_to_its_subject() {
    let world = World::new().await;
    let clinician = &world.a.clinician;

    let me = world
        .get("/v1/me", &rs256(&claims(&clinician.subject, world.a.id)))
        .await
        .ok(StatusCode::OK);

    assert_eq!(me["tenant_id"], world.a.id.to_string());
    assert_eq!(me["role"], "clinician");
    assert_eq!(me["user_id"], clinician.user_id.to_string());
    assert_eq!(me["actor"], format!("user:{}", clinician.user_id));
}

#[tokio::test]
async fn an_api_key_stands_for_its_role_and_user_until_it_is_revoked() {
    let world = World::new().await;
    let (admin, integration) = (&world.a.admin, &world.a.integration);

    let me = world
        .get("/v1/me", &integration.token)
        .await
        .ok(StatusCode::OK);
    assert_eq!(me["role"], "integration");
    assert_eq!(me["actor"], format!("api_key:{}", integration.key_id));

    world
        .delete(
            &format!("/v1/api-keys/{}", integration.key_id),
            &admin.token,
        )
        .await
        .ok_empty(StatusCode::NO_CONTENT);

    assert_unauthenticated(
        &world.get("/v1/me", &integration.token).await,
        "the revoked key",
    );
    // A PHI endpoint refuses it the same way, before looking at anything else.
    assert_unauthenticated(
        &world.get("/v1/patients", &integration.token).await,
        "the revoked key on a PHI endpoint",
    );
    let keys = world
        .get("/v1/api-keys", &admin.token)
        .await
        .ok(StatusCode::OK);
    let revoked = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["id"] == integration.key_id.to_string())
        .unwrap();
    assert_eq!(revoked["active"], false);
}

#[tokio::test]
async fn a_key_cannot_revoke_itself() {
    let world = World::new().await;
    let admin = &world.a.admin;

    let reply = world
        .delete(&format!("/v1/api-keys/{}", admin.key_id), &admin.token)
        .await;

    assert_eq!(reply.problem(StatusCode::CONFLICT), "/problems/conflict");
    world.get("/v1/me", &admin.token).await.ok(StatusCode::OK);
}

#[tokio::test]
async fn a_disabled_users_api_key_and_token_are_refused() {
    let world = World::new().await;
    let clinician = &world.a.clinician;
    let token = rs256(&claims(&clinician.subject, world.a.id));
    world
        .get("/v1/me", &clinician.token)
        .await
        .ok(StatusCode::OK);
    world.get("/v1/me", &token).await.ok(StatusCode::OK);

    // An operator disables the user (there is no HTTP endpoint for it yet).
    sqlx::query("UPDATE identity.users SET status = 'disabled' WHERE id = $1")
        .bind(clinician.user_id.as_uuid())
        .execute(&world.db.admin)
        .await
        .unwrap();

    assert_unauthenticated(
        &world.get("/v1/me", &clinician.token).await,
        "the disabled user's API key",
    );
    assert_unauthenticated(
        &world.get("/v1/me", &token).await,
        "the disabled user's token",
    );
    // Other users of the tenant are unaffected.
    world
        .get("/v1/me", &world.a.admin.token)
        .await
        .ok(StatusCode::OK);
}

#[tokio::test]
async fn a_suspended_tenants_credentials_are_refused() {
    let world = World::new().await;
    sqlx::query("UPDATE identity.tenants SET status = 'suspended' WHERE tenant_id = $1")
        .bind(world.b.id.as_uuid())
        .execute(&world.db.admin)
        .await
        .unwrap();

    assert_unauthenticated(
        &world.get("/v1/me", &world.b.admin.token).await,
        "a suspended tenant's API key",
    );
    assert_unauthenticated(
        &world
            .get(
                "/v1/me",
                &rs256(&claims(&world.b.admin.subject, world.b.id)),
            )
            .await,
        "a suspended tenant's token",
    );
    world
        .get("/v1/me", &world.a.admin.token)
        .await
        .ok(StatusCode::OK);
}
