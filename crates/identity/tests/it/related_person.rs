//! Related persons (guardians): sealed like patients, audited on every access, kept
//! apart by tenant, and never printed.

use db::TenantTx;
use identity::related_person::{self, Contact, RelatedPersonError};
use kernel::PersonId;

use crate::support::{self, access, database, keyring};

fn contact() -> Contact {
    Contact {
        family_name: "Zqxguardianfam".to_owned(),
        given_names: vec!["Zqxguardiangiven".to_owned()],
        email: Some("zqx.guardian@example.org".to_owned()),
        phone: Some("+1 555 0199".to_owned()),
    }
}

#[tokio::test]
async fn a_contact_reads_back_as_written_sealed_at_rest_and_each_access_is_audited() {
    let db = database().await;
    let keyring = keyring();
    let tenant_id = identity::tenant::create(&db.app, &keyring, "A")
        .await
        .unwrap();
    let person_id = PersonId::generate();
    let before = support::n_audit_events(&db, tenant_id).await;

    let mut tx = TenantTx::begin_as(&db.app, tenant_id, "user:test", None)
        .await
        .unwrap();
    related_person::create(&mut tx, &keyring, person_id, &contact(), &access())
        .await
        .unwrap();
    let duplicate = related_person::create(&mut tx, &keyring, person_id, &contact(), &access())
        .await
        .unwrap_err();
    assert!(matches!(duplicate, RelatedPersonError::AlreadyExists));
    tx.commit().await.unwrap();

    // Nothing of the contact is stored in the clear.
    let row: String = sqlx::query_scalar("SELECT t::text FROM identity.related_person_phi t")
        .fetch_one(&db.admin)
        .await
        .unwrap();
    for canary in [
        "Zqxguardianfam",
        "Zqxguardiangiven",
        "zqx.guardian",
        "555 0199",
    ] {
        assert!(!row.contains(canary), "{canary} stored in the clear");
        let hex: String = canary.bytes().map(|b| format!("{b:02x}")).collect();
        assert!(!row.contains(&hex), "{canary} stored as bytes");
    }

    let mut tx = TenantTx::begin_as(&db.app, tenant_id, "user:test", None)
        .await
        .unwrap();
    let record = related_person::read(&mut tx, &keyring, person_id, &access())
        .await
        .unwrap();
    assert_eq!(record.contact, contact());
    assert_eq!(record.version, 1);
    let mut changed = contact();
    changed.phone = None;
    changed.email = Some("new@example.org".to_owned());
    let stale = related_person::update(&mut tx, &keyring, person_id, &changed, Some(7), &access())
        .await
        .unwrap_err();
    assert!(matches!(stale, RelatedPersonError::VersionConflict));
    let version =
        related_person::update(&mut tx, &keyring, person_id, &changed, Some(1), &access())
            .await
            .unwrap();
    assert_eq!(version, 2);
    let record = related_person::read(&mut tx, &keyring, person_id, &access())
        .await
        .unwrap();
    assert_eq!(record.contact, changed);
    tx.commit().await.unwrap();

    let actions: Vec<String> = sqlx::query_scalar(
        "SELECT action FROM audit.events WHERE tenant_id = $1 AND details->>'person_id' = $2 ORDER BY occurred_at, id",
    )
    .bind(tenant_id.as_uuid())
    .bind(person_id.to_string())
    .fetch_all(&db.admin)
    .await
    .unwrap();
    assert_eq!(
        actions,
        [
            "related_person.create",
            "related_person.read",
            "related_person.update",
            "related_person.read"
        ]
    );
    assert_eq!(support::n_audit_events(&db, tenant_id).await, before + 4);
    // The record's Debug names no field.
    let printed = format!("{record:?}");
    assert!(
        !printed.contains("Zqx") && !printed.contains("example.org"),
        "{printed}"
    );
}

#[tokio::test]
async fn another_tenant_cannot_read_update_or_see_a_related_person() {
    let db = database().await;
    let keyring = keyring();
    let tenant_a = identity::tenant::create(&db.app, &keyring, "A")
        .await
        .unwrap();
    let tenant_b = identity::tenant::create(&db.app, &keyring, "B")
        .await
        .unwrap();
    let person_id = PersonId::generate();
    let mut tx = TenantTx::begin_as(&db.app, tenant_a, "user:test", None)
        .await
        .unwrap();
    related_person::create(&mut tx, &keyring, person_id, &contact(), &access())
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let mut tx = TenantTx::begin_as(&db.app, tenant_b, "user:test", None)
        .await
        .unwrap();
    assert!(!related_person::exists(&mut tx, person_id).await.unwrap());
    assert!(matches!(
        related_person::read(&mut tx, &keyring, person_id, &access()).await,
        Err(RelatedPersonError::NotFound)
    ));
    assert!(matches!(
        related_person::update(&mut tx, &keyring, person_id, &contact(), None, &access()).await,
        Err(RelatedPersonError::NotFound)
    ));
    tx.rollback().await.unwrap();

    // A ciphertext moved to another person's row does not open.
    let other = PersonId::generate();
    let mut tx = TenantTx::begin_as(&db.app, tenant_a, "user:test", None)
        .await
        .unwrap();
    related_person::create(&mut tx, &keyring, other, &contact(), &access())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    sqlx::query(
        "UPDATE identity.related_person_phi SET family_name = (SELECT family_name FROM identity.related_person_phi WHERE person_id = $1) WHERE person_id = $2",
    )
    .bind(person_id.as_uuid())
    .bind(other.as_uuid())
    .execute(&db.admin)
    .await
    .unwrap();
    let mut tx = TenantTx::begin_as(&db.app, tenant_a, "user:test", None)
        .await
        .unwrap();
    assert!(matches!(
        related_person::read(&mut tx, &keyring, other, &access()).await,
        Err(RelatedPersonError::Undecryptable)
    ));
}
