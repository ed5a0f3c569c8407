//! One-time links: the form opens without PHI, a link answers once, and used,
//! expired, forged and other tenants' tokens are refused.

use assessments::link::{self, LinkClaim, LinkError};
use kernel::TenantId;
use uuid::Uuid;

use crate::world::World;

fn answers(value: u8) -> Vec<(String, u8)> {
    (1..=9).map(|item| (item.to_string(), value)).collect()
}

async fn redeem(world: &World, token: &str, value: u8) -> Result<Uuid, LinkError> {
    let claim = LinkClaim::parse(token).expect("a link token");
    let mut tx = world.tx(claim.tenant_id).await;
    let submitted = link::submit(&mut tx, &world.keyring, &claim, answers(value)).await?;
    tx.commit().await.unwrap();
    Ok(submitted.response_id)
}

#[tokio::test]
async fn a_link_opens_its_form_and_answers_its_instance_once() {
    let world = World::new().await;
    let (_, instance_id) = world.adult_phq9_instance().await;
    let new_link = world.issue_link(world.a, instance_id).await;
    assert!(new_link.token.starts_with("at_"));
    // Only the secret's hash is stored.
    let secret = new_link.token.rsplit('.').next().unwrap();
    let stored: Vec<u8> = sqlx::query_scalar("SELECT secret_sha256 FROM assessments.link_tokens")
        .fetch_one(&world.db.admin)
        .await
        .unwrap();
    assert_eq!(stored.len(), 32);
    assert!(!format!("{stored:?}").contains(secret));

    let claim = LinkClaim::parse(&new_link.token).unwrap();
    let mut tx = world.tx(world.a).await;
    let linked = link::open(&mut tx, &claim).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        (linked.instance_id, linked.instrument.code().as_str()),
        (instance_id, "phq-9")
    );

    let response_id = redeem(&world, &new_link.token, 1).await.unwrap();
    let submitted_by: String =
        sqlx::query_scalar("SELECT submitted_by FROM assessments.responses WHERE id = $1")
            .bind(response_id)
            .fetch_one(&world.db.admin)
            .await
            .unwrap();
    assert_eq!(submitted_by, format!("link:{}", new_link.id));

    let err = redeem(&world, &new_link.token, 0).await.unwrap_err();
    assert!(matches!(err, LinkError::Used), "{err:?}");
    assert_eq!(world.count("assessments.responses").await, 1);
}

#[tokio::test]
async fn expired_forged_and_other_tenants_links_are_refused_and_invalid_answers_do_not_spend_one() {
    let world = World::new().await;
    let (_, instance_id) = world.adult_phq9_instance().await;
    let new_link = world.issue_link(world.a, instance_id).await;

    // Invalid answers: refused, and the link still works afterwards.
    let claim = LinkClaim::parse(&new_link.token).unwrap();
    let mut tx = world.tx(world.a).await;
    let err = link::submit(&mut tx, &world.keyring, &claim, answers(9))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("item 1"), "{err}");
    drop(tx);

    // The right id with a wrong secret is as unknown as an id that does not exist.
    let mut parts: Vec<&str> = new_link.token.split('.').collect();
    let forged_secret = "A".repeat(43);
    parts[2] = &forged_secret;
    let forged = parts.join(".");
    assert!(matches!(
        redeem(&world, &forged, 0).await.unwrap_err(),
        LinkError::Unknown
    ));
    let unknown_id = new_link.token.replace(
        &new_link.id.simple().to_string(),
        &Uuid::now_v7().simple().to_string(),
    );
    assert!(matches!(
        redeem(&world, &unknown_id, 0).await.unwrap_err(),
        LinkError::Unknown
    ));
    assert_eq!(
        redeem(&world, &forged, 0).await.unwrap_err().to_string(),
        redeem(&world, &unknown_id, 0)
            .await
            .unwrap_err()
            .to_string()
    );

    // Tenant A's link presented as tenant B's: B has no such row.
    let other_tenant = new_link.token.replace(
        &world.a.as_uuid().simple().to_string(),
        &world.b.as_uuid().simple().to_string(),
    );
    assert!(matches!(
        redeem(&world, &other_tenant, 0).await.unwrap_err(),
        LinkError::Unknown
    ));
    let nowhere = new_link.token.replace(
        &world.a.as_uuid().simple().to_string(),
        &TenantId::generate().as_uuid().simple().to_string(),
    );
    assert!(matches!(
        redeem(&world, &nowhere, 0).await.unwrap_err(),
        LinkError::Unknown
    ));

    // Expired: the instance's window closed.
    sqlx::query("UPDATE assessments.link_tokens SET expires_at = now() - interval '1 minute'")
        .execute(&world.db.admin)
        .await
        .unwrap();
    assert!(matches!(
        redeem(&world, &new_link.token, 0).await.unwrap_err(),
        LinkError::Expired
    ));
    assert_eq!(world.count("assessments.responses").await, 0);

    // A clinician-rated or closed instance gets no link.
    sqlx::query("UPDATE assessments.instances SET status = 'cancelled' WHERE id = $1")
        .bind(instance_id)
        .execute(&world.db.admin)
        .await
        .unwrap();
    let mut tx = world.tx(world.a).await;
    assert!(matches!(
        link::issue(&mut tx, instance_id).await.unwrap_err(),
        LinkError::InstanceClosed
    ));
    let mut tx = world.tx(world.b).await;
    assert!(matches!(
        link::issue(&mut tx, instance_id).await.unwrap_err(),
        LinkError::InstanceNotFound
    ));
}

#[tokio::test]
async fn a_link_to_an_instance_answered_meanwhile_is_refused() {
    let world = World::new().await;
    let (patient_id, instance_id) = world.adult_phq9_instance().await;
    let new_link = world.issue_link(world.a, instance_id).await;
    // The patient filled in the paper form at the visit; the clinician typed it in.
    world
        .submit(
            &assessments::response::Submitter::Staff(world.clinician.clone()),
            crate::world::phq9(patient_id, Some(instance_id), [1, 1, 1, 1, 1, 1, 1, 1, 0]),
        )
        .await
        .unwrap();
    let err = redeem(&world, &new_link.token, 0).await.unwrap_err();
    assert!(matches!(err, LinkError::InstanceClosed), "{err:?}");
    let claim = LinkClaim::parse(&new_link.token).unwrap();
    let mut tx = world.tx(world.a).await;
    assert!(matches!(
        link::open(&mut tx, &claim).await.unwrap_err(),
        LinkError::InstanceClosed
    ));
    assert_eq!(world.count("assessments.responses").await, 1);
}
