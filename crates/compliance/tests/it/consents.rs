//! Consents: granting with and without a recipient, revocation once and for good, the
//! database's own state machine, tenant isolation, and every access audited.

use compliance::consent::{self, NewConsent};
use compliance::{GrantError, ReadError, RevocationReason, RevokeError, Scope, Status};
use kernel::PatientId;

use crate::{CANARY, recipient, try_sql, world};

#[tokio::test]
async fn a_release_consent_needs_a_recipient_and_other_scopes_refuse_one() {
    let world = world().await;
    let tenant_id = world.tenant("Clinic").await;
    let patient_id = world.patient(tenant_id).await;
    let mut tx = world.tx(tenant_id).await;
    let new = |scope, recipient: Option<&str>| NewConsent {
        patient_id,
        scope,
        recipient: recipient.map(crate::recipient),
        granted_at: None,
        valid_until: None,
        evidence_document_id: None,
    };
    assert!(matches!(
        consent::grant(
            &mut tx,
            &world.keyring,
            new(Scope::ReleaseOfInformation, None)
        )
        .await,
        Err(GrantError::RecipientRequired)
    ));
    assert!(matches!(
        consent::grant(&mut tx, &world.keyring, new(Scope::Research, Some("Lab"))).await,
        Err(GrantError::RecipientNotAllowed)
    ));
    let telehealth = consent::grant(&mut tx, &world.keyring, new(Scope::Telehealth, None))
        .await
        .unwrap();
    assert_eq!(telehealth.status(), Status::Granted);
    assert_eq!(telehealth.recorded_by, "user:test");
}

#[tokio::test]
async fn a_consent_for_an_unknown_patient_is_refused() {
    let world = world().await;
    let tenant_id = world.tenant("Clinic").await;
    let mut tx = world.tx(tenant_id).await;
    let refused = consent::grant(
        &mut tx,
        &world.keyring,
        NewConsent {
            patient_id: PatientId::generate(),
            scope: Scope::Treatment,
            recipient: None,
            granted_at: None,
            valid_until: None,
            evidence_document_id: None,
        },
    )
    .await;
    assert!(matches!(refused, Err(GrantError::UnknownPatient)));
}

#[tokio::test]
async fn revoking_twice_is_a_clean_error_and_the_consent_stays_revoked() {
    let world = world().await;
    let tenant_id = world.tenant("Clinic").await;
    let patient_id = world.patient(tenant_id).await;
    let granted = world
        .grant(tenant_id, patient_id, Scope::Research, None, None)
        .await;
    let mut tx = world.tx(tenant_id).await;
    let revoked = consent::revoke(
        &mut tx,
        &world.keyring,
        granted.id,
        RevocationReason::PatientRequest,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(revoked.status(), Status::Revoked);
    assert_eq!(
        revoked.revocation.as_ref().map(|r| r.reason),
        Some(RevocationReason::PatientRequest)
    );
    let mut tx = world.tx(tenant_id).await;
    assert!(matches!(
        consent::revoke(&mut tx, &world.keyring, granted.id, RevocationReason::Other).await,
        Err(RevokeError::AlreadyRevoked)
    ));
    let read = consent::read(&mut tx, &world.keyring, granted.id)
        .await
        .unwrap();
    assert_eq!(read, revoked);
}

#[tokio::test]
async fn the_database_refuses_to_unrevoke_change_or_delete_a_consent_even_for_the_owner() {
    let world = world().await;
    let tenant_id = world.tenant("Clinic").await;
    let patient_id = world.patient(tenant_id).await;
    let granted = world
        .grant(tenant_id, patient_id, Scope::Treatment, None, None)
        .await;
    let mut tx = world.tx(tenant_id).await;
    consent::revoke(
        &mut tx,
        &world.keyring,
        granted.id,
        RevocationReason::Superseded,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    for sql in [
        "UPDATE compliance.consents SET status = 'granted', revoked_at = NULL, revoked_by = NULL, revocation_reason = NULL WHERE tenant_id = $1 AND id = $2",
        "UPDATE compliance.consents SET scope = 'research' WHERE tenant_id = $1 AND id = $2",
        "UPDATE compliance.consents SET revocation_reason = 'other' WHERE tenant_id = $1 AND id = $2",
        "DELETE FROM compliance.consents WHERE tenant_id = $1 AND id = $2",
    ] {
        for (role, pool) in [
            ("tenet_app", &world.db.app),
            ("tenet_owner", &world.db.owner),
        ] {
            assert_eq!(
                try_sql(pool, tenant_id, granted.id.into_uuid(), sql).await,
                Err("55000".to_owned()),
                "{role}: `{sql}` was not refused"
            );
        }
    }
    let status: String =
        sqlx::query_scalar("SELECT status::text FROM compliance.consents WHERE id = $1")
            .bind(granted.id.as_uuid())
            .fetch_one(&world.db.admin)
            .await
            .unwrap();
    assert_eq!(status, "revoked");
}

#[tokio::test]
async fn another_tenants_consent_is_not_found() {
    let world = world().await;
    let (_clinic, _patient_id, granted) = world.consented_clinic().await;
    let other = world.tenant("Other").await;
    let mut tx = world.tx(other).await;
    assert!(matches!(
        consent::read(&mut tx, &world.keyring, granted.id).await,
        Err(ReadError::NotFound)
    ));
    assert!(matches!(
        consent::revoke(&mut tx, &world.keyring, granted.id, RevocationReason::Other).await,
        Err(RevokeError::NotFound)
    ));
    assert_eq!(
        consent::patient_of(&mut tx, granted.id).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn every_read_and_write_of_a_consent_leaves_an_audit_event() {
    let world = world().await;
    let (tenant_id, patient_id, granted) = world.consented_clinic().await;
    let mut tx = world.tx(tenant_id).await;
    consent::read(&mut tx, &world.keyring, granted.id)
        .await
        .unwrap();
    let listed = consent::for_patient(&mut tx, &world.keyring, patient_id)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].recipient.as_ref().map(|r| r.expose()),
        Some(CANARY)
    );
    consent::revoke(&mut tx, &world.keyring, granted.id, RevocationReason::Other)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let actions: Vec<String> = sqlx::query_scalar(
        "SELECT action FROM audit.events WHERE patient_id = $1 ORDER BY occurred_at, seq",
    )
    .bind(patient_id.as_uuid())
    .fetch_all(&world.db.admin)
    .await
    .unwrap();
    for action in [
        "consent.grant",
        "consent.read",
        "consent.list",
        "consent.revoke",
    ] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} missing from {actions:?}"
        );
    }
}

#[tokio::test]
async fn the_recipient_is_sealed_at_rest_and_appears_in_no_event_audit_detail_or_debug() {
    let world = world().await;
    let (_, _, granted) = world.consented_clinic().await;
    let canary_hits: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM compliance.consents c
                  WHERE position(convert_to($1, 'UTF8') IN c.recipient_sealed) > 0 OR c::text ILIKE '%' || $1 || '%')
              + (SELECT count(*) FROM compliance.outbox o WHERE o::text ILIKE '%' || $1 || '%')
              + (SELECT count(*) FROM audit.events e WHERE e::text ILIKE '%' || $1 || '%')",
    )
    .bind("Zqxcanary")
    .fetch_one(&world.db.admin)
    .await
    .unwrap();
    assert_eq!(canary_hits, 0);
    assert!(!format!("{granted:?}").contains("Zqx"));
    assert_eq!(granted.recipient.as_ref().map(|r| r.expose()), Some(CANARY));
    let _ = recipient(CANARY);
}
