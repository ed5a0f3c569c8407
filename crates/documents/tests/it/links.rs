//! Signed download links: valid until they expire, bound to their tenant, document
//! and signature.

use documents::Category;
use documents::link::{self, Claims, LinkError};
use time::{Duration, OffsetDateTime};

use crate::world;

#[tokio::test]
async fn a_link_is_valid_until_it_expires_and_names_its_maker() {
    let world = world().await;
    let tenant_id = world.tenant("Clinic").await;
    let patient_id = world.patient(tenant_id).await;
    let document = world
        .stored(tenant_id, patient_id, Category::Other, "x")
        .await;
    let now = OffsetDateTime::now_utc();
    let mut tx = world.tx(tenant_id).await;
    let (token, expires_at) =
        link::issue(&mut tx, &world.keyring, document.id, link::TTL_DEFAULT, now)
            .await
            .unwrap();
    assert!(!format!("{token:?}").contains(token.as_str()));
    let claims = Claims::parse(token.as_str()).unwrap();
    assert_eq!(claims.tenant_id, tenant_id);
    assert_eq!(claims.actor, "user:test");
    assert_eq!(claims.expires_at, expires_at);
    assert_eq!(
        claims.verify(&mut tx, &world.keyring, now).await.unwrap(),
        document.id
    );
    assert!(matches!(
        claims
            .verify(&mut tx, &world.keyring, now + Duration::minutes(6))
            .await,
        Err(LinkError::Expired)
    ));
    assert!(matches!(
        link::issue(
            &mut tx,
            &world.keyring,
            document.id,
            Duration::hours(2),
            now
        )
        .await,
        Err(LinkError::InvalidTtl)
    ));
}

#[tokio::test]
async fn a_tampered_or_foreign_link_is_refused() {
    let world = world().await;
    let tenant_id = world.tenant("Clinic").await;
    let other_id = world.tenant("Other clinic").await;
    let patient_id = world.patient(tenant_id).await;
    let document = world
        .stored(tenant_id, patient_id, Category::Other, "x")
        .await;
    let now = OffsetDateTime::now_utc();
    let mut tx = world.tx(tenant_id).await;
    let (token, _) = link::issue(&mut tx, &world.keyring, document.id, link::TTL_DEFAULT, now)
        .await
        .unwrap();
    // Flip one character of the signature, then one of the payload's document id.
    let mut chars: Vec<char> = token.as_str().chars().collect();
    for at in [chars.len() - 3, 30] {
        let original = chars[at];
        chars[at] = if original == 'A' { 'B' } else { 'A' };
        let tampered: String = chars.iter().collect();
        chars[at] = original;
        match Claims::parse(&tampered) {
            Ok(claims) => assert!(matches!(
                claims.verify(&mut tx, &world.keyring, now).await,
                Err(LinkError::Invalid)
            )),
            Err(err) => assert!(matches!(err, LinkError::Invalid)),
        }
    }
    assert!(matches!(
        Claims::parse("not a token"),
        Err(LinkError::Invalid)
    ));
    tx.commit().await.unwrap();

    // Another tenant's link, presented as this tenant's: its key id is not ours.
    let other_patient = world.patient(other_id).await;
    let theirs = world
        .stored(other_id, other_patient, Category::Other, "y")
        .await;
    let mut other_tx = world.tx(other_id).await;
    let (their_token, _) = link::issue(
        &mut other_tx,
        &world.keyring,
        theirs.id,
        link::TTL_DEFAULT,
        now,
    )
    .await
    .unwrap();
    drop(other_tx);
    let claims = Claims::parse(their_token.as_str()).unwrap();
    assert_eq!(claims.tenant_id, other_id);
    let mut tx = world.tx(tenant_id).await;
    let forged = Claims::parse(&forge_tenant(their_token.as_str(), tenant_id)).unwrap();
    assert!(matches!(
        forged.verify(&mut tx, &world.keyring, now).await,
        Err(LinkError::Invalid)
    ));
}

/// The token with its tenant id replaced (the signature left as it was).
fn forge_tenant(token: &str, tenant_id: kernel::TenantId) -> String {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut bytes = engine.decode(token).unwrap();
    bytes[1..17].copy_from_slice(tenant_id.as_uuid().as_bytes());
    engine.encode(bytes)
}
