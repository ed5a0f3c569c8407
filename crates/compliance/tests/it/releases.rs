//! The consent gate on releases of information, and the accounting of disclosures.

use compliance::consent::{self, ConsentError};
use compliance::release::{self, NewRelease};
use compliance::{Purpose, ReleaseError, RevocationReason, Scope};
use kernel::{PatientId, TenantId};
use time::{Duration, OffsetDateTime};

use crate::{CANARY, World, recipient, try_sql, world};

/// A release to `to` of one stored document of `patient_id`.
async fn new_release(
    world: &World,
    tenant_id: TenantId,
    patient_id: PatientId,
    to: &str,
) -> NewRelease {
    NewRelease {
        patient_id,
        recipient: recipient(to),
        purpose: Purpose::Legal,
        document_ids: vec![world.document(tenant_id, patient_id).await],
        description: Some("Zqxdescription: discharge summary 2026".to_owned()),
        released_at: None,
    }
}

async fn n_releases(world: &World) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM compliance.releases")
        .fetch_one(&world.db.admin)
        .await
        .unwrap()
}

async fn try_release(
    world: &World,
    tenant_id: TenantId,
    new: NewRelease,
) -> Result<release::Release, ReleaseError> {
    let mut tx = world.tx(tenant_id).await;
    let result = release::record(&mut tx, &world.keyring, new).await;
    if result.is_ok() {
        tx.commit().await.unwrap();
    }
    result
}

#[tokio::test]
async fn a_release_is_refused_without_consent_and_records_nothing() {
    let world = world().await;
    let tenant_id = world.tenant("Clinic").await;
    let patient_id = world.patient(tenant_id).await;
    // Consents of other scopes do not count.
    world
        .grant(tenant_id, patient_id, Scope::Treatment, None, None)
        .await;
    let new = new_release(&world, tenant_id, patient_id, CANARY).await;
    assert!(!format!("{new:?}").contains("Zqx"), "{new:?}");
    let refused = try_release(&world, tenant_id, new).await;
    assert!(
        matches!(
            refused,
            Err(ReleaseError::Consent(ConsentError::Missing {
                scope: Scope::ReleaseOfInformation
            }))
        ),
        "{refused:?}"
    );
    assert_eq!(n_releases(&world).await, 0);
}

#[tokio::test]
async fn a_release_is_refused_after_the_consent_is_revoked() {
    let world = world().await;
    let (tenant_id, patient_id, granted) = world.consented_clinic().await;
    let mut tx = world.tx(tenant_id).await;
    consent::revoke(
        &mut tx,
        &world.keyring,
        granted.id,
        RevocationReason::PatientRequest,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let refused = try_release(
        &world,
        tenant_id,
        new_release(&world, tenant_id, patient_id, CANARY).await,
    )
    .await;
    assert!(
        matches!(refused, Err(ReleaseError::Consent(ConsentError::Revoked { consent_id, .. })) if consent_id == granted.id),
        "{refused:?}"
    );
    assert_eq!(n_releases(&world).await, 0);
}

#[tokio::test]
async fn a_release_is_refused_after_the_consent_expires() {
    let world = world().await;
    let tenant_id = world.tenant("Clinic").await;
    let patient_id = world.patient(tenant_id).await;
    let mut tx = world.tx(tenant_id).await;
    let granted = consent::grant(
        &mut tx,
        &world.keyring,
        consent::NewConsent {
            patient_id,
            scope: Scope::ReleaseOfInformation,
            recipient: Some(recipient(CANARY)),
            granted_at: Some(OffsetDateTime::now_utc() - Duration::days(30)),
            valid_until: Some(OffsetDateTime::now_utc() - Duration::days(1)),
            evidence_document_id: None,
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let refused = try_release(
        &world,
        tenant_id,
        new_release(&world, tenant_id, patient_id, CANARY).await,
    )
    .await;
    assert!(
        matches!(refused, Err(ReleaseError::Consent(ConsentError::Expired { consent_id, .. })) if consent_id == granted.id),
        "{refused:?}"
    );
    // A release dated while it was in force is accepted (recorded late).
    let mut backdated = new_release(&world, tenant_id, patient_id, CANARY).await;
    backdated.released_at = Some(OffsetDateTime::now_utc() - Duration::days(2));
    try_release(&world, tenant_id, backdated).await.unwrap();
    assert_eq!(n_releases(&world).await, 1);
}

#[tokio::test]
async fn a_release_is_refused_for_a_recipient_the_consent_does_not_name() {
    let world = world().await;
    let (tenant_id, patient_id, _) = world.consented_clinic().await;
    let refused = try_release(
        &world,
        tenant_id,
        new_release(&world, tenant_id, patient_id, "Brightside Insurance").await,
    )
    .await;
    assert!(
        matches!(
            refused,
            Err(ReleaseError::Consent(ConsentError::Missing { .. }))
        ),
        "{refused:?}"
    );
    // Another patient's consent for the same recipient does not count either.
    let other_patient = world.patient(tenant_id).await;
    let refused = try_release(
        &world,
        tenant_id,
        new_release(&world, tenant_id, other_patient, CANARY).await,
    )
    .await;
    assert!(
        matches!(refused, Err(ReleaseError::Consent(_))),
        "{refused:?}"
    );
    assert_eq!(n_releases(&world).await, 0);
}

#[tokio::test]
async fn a_release_with_a_valid_consent_is_recorded_and_listed_in_the_disclosure_reports() {
    let world = world().await;
    let tenant_id = world.tenant("Clinic").await;
    let patient_id = world.patient(tenant_id).await;
    let granted = world
        .grant(
            tenant_id,
            patient_id,
            Scope::ReleaseOfInformation,
            Some(CANARY),
            Some(OffsetDateTime::now_utc() + Duration::days(365)),
        )
        .await;
    // Case and spacing do not make another recipient.
    let released = try_release(
        &world,
        tenant_id,
        new_release(
            &world,
            tenant_id,
            patient_id,
            "  zqxcanary   OAKWOOD family law ",
        )
        .await,
    )
    .await
    .unwrap();
    assert_eq!(released.consent_id, granted.id);

    let mut tx = world.tx(tenant_id).await;
    let listed = release::for_patient(&mut tx, &world.keyring, patient_id)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, released.id);
    assert_eq!(listed[0].purpose, Purpose::Legal);
    assert_eq!(listed[0].document_ids, released.document_ids);
    let disclosed = listed[0].disclosed.as_ref().unwrap();
    assert_eq!(
        disclosed.recipient.expose(),
        "zqxcanary   OAKWOOD family law"
    );
    assert!(!format!("{listed:?}").contains("Zqx") && !format!("{listed:?}").contains("zqx"));

    let now = OffsetDateTime::now_utc();
    let (from, to) = (now - Duration::days(1), now + Duration::days(1));
    let blind = release::report(&mut tx, None, from, to).await.unwrap();
    assert_eq!(blind.len(), 1);
    assert_eq!(blind[0].disclosed, None);
    let revealed = release::report(&mut tx, Some(&world.keyring), from, to)
        .await
        .unwrap();
    assert!(revealed[0].disclosed.is_some());
    let earlier = release::report(&mut tx, None, from - Duration::days(7), from)
        .await
        .unwrap();
    assert!(earlier.is_empty());
    tx.commit().await.unwrap();

    // The recipient and description are sealed: no plaintext in any table, event or
    // audit detail.
    let canary_hits: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM compliance.releases r
                  WHERE position(convert_to($1, 'UTF8') IN r.details_sealed) > 0 OR r::text ILIKE '%' || $1 || '%')
              + (SELECT count(*) FROM compliance.outbox o WHERE o::text ILIKE '%' || $1 || '%')
              + (SELECT count(*) FROM audit.events e WHERE e::text ILIKE '%' || $1 || '%')",
    )
    .bind("zqx")
    .fetch_one(&world.db.admin)
    .await
    .unwrap();
    assert_eq!(canary_hits, 0);
    let actions: Vec<String> = sqlx::query_scalar(
        "SELECT action FROM audit.events WHERE patient_id = $1 OR patient_id IS NULL",
    )
    .bind(patient_id.as_uuid())
    .fetch_all(&world.db.admin)
    .await
    .unwrap();
    for action in [
        "consent.check",
        "release.record",
        "disclosure.list",
        "disclosure.report",
        "disclosure.read",
    ] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} missing from {actions:?}"
        );
    }
}

#[tokio::test]
async fn the_accounting_of_disclosures_is_append_only() {
    let world = world().await;
    let (tenant_id, patient_id, _) = world.consented_clinic().await;
    let released = try_release(
        &world,
        tenant_id,
        new_release(&world, tenant_id, patient_id, CANARY).await,
    )
    .await
    .unwrap();
    for sql in [
        "UPDATE compliance.releases SET purpose = 'other' WHERE tenant_id = $1 AND id = $2",
        "DELETE FROM compliance.releases WHERE tenant_id = $1 AND id = $2",
    ] {
        // The service role holds no such privilege; the owner meets the trigger.
        assert_eq!(
            try_sql(&world.db.app, tenant_id, released.id.into_uuid(), sql).await,
            Err("42501".to_owned()),
            "tenet_app: `{sql}` was not refused"
        );
        assert_eq!(
            try_sql(&world.db.owner, tenant_id, released.id.into_uuid(), sql).await,
            Err("55000".to_owned()),
            "tenet_owner: `{sql}` was not refused"
        );
    }
    assert_eq!(n_releases(&world).await, 1);
}

#[tokio::test]
async fn a_release_that_says_nothing_of_what_was_released_is_refused() {
    let world = world().await;
    let tenant_id = world.tenant("Clinic").await;
    let patient_id = world.patient(tenant_id).await;
    let mut new = new_release(&world, tenant_id, patient_id, CANARY).await;
    new.document_ids.clear();
    new.description = Some("   ".to_owned());
    assert!(matches!(
        try_release(&world, tenant_id, new).await,
        Err(ReleaseError::Content)
    ));
}

#[tokio::test]
async fn revoking_the_newest_consent_to_a_recipient_leaves_no_older_one_in_force() {
    let world = world().await;
    let tenant_id = world.tenant("Clinic").await;
    let patient_id = world.patient(tenant_id).await;
    let grant = || {
        world.grant(
            tenant_id,
            patient_id,
            Scope::ReleaseOfInformation,
            Some(CANARY),
            None,
        )
    };
    let _older = grant().await;
    let newer = grant().await;
    let mut tx = world.tx(tenant_id).await;
    consent::revoke(
        &mut tx,
        &world.keyring,
        newer.id,
        RevocationReason::PatientRequest,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let refused = try_release(
        &world,
        tenant_id,
        new_release(&world, tenant_id, patient_id, CANARY).await,
    )
    .await;
    assert!(
        matches!(
            refused,
            Err(ReleaseError::Consent(ConsentError::Revoked { .. }))
        ),
        "{refused:?}"
    );
    assert_eq!(n_releases(&world).await, 0);
    // A new grant after the revocation is in force again.
    grant().await;
    try_release(
        &world,
        tenant_id,
        new_release(&world, tenant_id, patient_id, CANARY).await,
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_release_naming_a_document_that_is_not_this_patients_is_refused() {
    let world = world().await;
    let (tenant_id, patient_id, _) = world.consented_clinic().await;
    let other_patient = world.patient(tenant_id).await;
    let others_document = world.document(tenant_id, other_patient).await;
    let other_tenant = world.tenant("Elsewhere").await;
    let elsewhere_patient = world.patient(other_tenant).await;
    let other_tenants_document = world.document(other_tenant, elsewhere_patient).await;
    let deleted = world.document(tenant_id, patient_id).await;
    let mut tx = world.tx(tenant_id).await;
    documents::document::delete(&mut tx, documents::DocumentId::new_unchecked(deleted))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    for foreign in [
        others_document,
        other_tenants_document,
        deleted,
        uuid::Uuid::now_v7(),
    ] {
        let mut new = new_release(&world, tenant_id, patient_id, CANARY).await;
        new.document_ids.push(foreign);
        let refused = try_release(&world, tenant_id, new).await;
        assert!(
            matches!(refused, Err(ReleaseError::UnknownDocument(id)) if id == foreign),
            "{refused:?}"
        );
    }
    assert_eq!(n_releases(&world).await, 0);
    // Its own stored documents are released.
    try_release(
        &world,
        tenant_id,
        new_release(&world, tenant_id, patient_id, CANARY).await,
    )
    .await
    .unwrap();
    assert_eq!(n_releases(&world).await, 1);
}

#[tokio::test]
async fn a_document_being_released_cannot_be_deleted_until_the_release_commits() {
    let world = world().await;
    let (tenant_id, patient_id, _) = world.consented_clinic().await;
    let new = new_release(&world, tenant_id, patient_id, CANARY).await;
    let document_id = documents::DocumentId::new_unchecked(new.document_ids[0]);
    let mut releasing = world.tx(tenant_id).await;
    release::record(&mut releasing, &world.keyring, new)
        .await
        .unwrap();
    // A deletion meanwhile waits on the release (here it gives up after 300 ms)...
    let mut deleting = world.tx(tenant_id).await;
    sqlx::query("SET LOCAL lock_timeout = '300ms'")
        .execute(&mut *deleting)
        .await
        .unwrap();
    let waited = documents::document::delete(&mut deleting, document_id).await;
    // 55P03: lock_not_available.
    assert!(
        format!("{waited:?}").contains("55P03"),
        "the deletion did not wait for the release: {waited:?}"
    );
    drop(deleting);
    releasing.commit().await.unwrap();
    // ...and goes through once the release committed, naming a document then stored.
    let mut deleting = world.tx(tenant_id).await;
    documents::document::delete(&mut deleting, document_id)
        .await
        .unwrap();
    deleting.commit().await.unwrap();
    assert_eq!(n_releases(&world).await, 1);
}

#[tokio::test]
async fn a_release_naming_documents_newest_first_cannot_deadlock_with_their_deletion() {
    let world = world().await;
    let (tenant_id, patient_id, _) = world.consented_clinic().await;
    let older = world.document(tenant_id, patient_id).await;
    let newer = world.document(tenant_id, patient_id).await;
    // A deletion takes the older document (the retention sweep locks in creation
    // order too)...
    let mut deleting = world.tx(tenant_id).await;
    documents::document::delete(&mut deleting, documents::DocumentId::new_unchecked(older))
        .await
        .unwrap();
    // ...while a release names both, newest first. Locked in the order named, it would
    // hold the newer one and wait for the older: a deadlock with the next step.
    let mut new = new_release(&world, tenant_id, patient_id, CANARY).await;
    new.document_ids = vec![newer, older];
    let releasing = {
        let mut tx = world.tx(tenant_id).await;
        let keyring = world.keyring.clone();
        tokio::spawn(async move {
            let result = release::record(&mut tx, &keyring, new).await;
            (result, tx)
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // A deadlock (40P01) or a lock timeout (55P03) would fail here or in the release.
    sqlx::query("SET LOCAL lock_timeout = '3s'")
        .execute(&mut *deleting)
        .await
        .unwrap();
    documents::document::delete(&mut deleting, documents::DocumentId::new_unchecked(newer))
        .await
        .expect("the deletion of the newer document is not blocked by the release");
    deleting.commit().await.unwrap();
    let (result, _tx) = releasing.await.unwrap();
    assert!(
        matches!(result, Err(ReleaseError::UnknownDocument(_))),
        "{result:?}"
    );
}
