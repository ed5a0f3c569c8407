//! The PHI vault: encrypted at rest, bound to its row, searchable by blind index,
//! audited on every access, and readable across master-key rotation.

use db::TenantTx;
use identity::keyring::{Keyring, KeyringError, MasterKey};
use identity::vault::{self, VaultError};

use crate::support::{self, access, database, demographics, keyring};

const CANARIES: [&str; 4] = [
    "Zqxcanaryfam",
    "ZQXMRN0001",
    "+1 555 0100",
    "ana@example.org",
];

#[tokio::test]
async fn no_plaintext_phi_reaches_any_column_of_any_table() {
    let db = database().await;
    let keyring = keyring();
    let tenant_id = identity::tenant::create(&db.app, &keyring, "A")
        .await
        .unwrap();
    support::patient(
        &db,
        &keyring,
        tenant_id,
        &demographics("Zqxcanaryfam", "ZQXMRN0001"),
    )
    .await;
    for table in support::context_tables(&db).await {
        let rows: Vec<String> = sqlx::query_scalar(&format!("SELECT t::text FROM {table} t"))
            .fetch_all(&db.admin)
            .await
            .unwrap();
        for row in rows {
            for canary in CANARIES {
                assert!(
                    !row.contains(canary),
                    "{table} holds {canary:?} in plaintext"
                );
                let encoded: String = canary.bytes().map(|b| format!("{b:02x}")).collect();
                assert!(!row.contains(&encoded), "{table} holds {canary:?} as bytes");
            }
        }
    }
}

#[tokio::test]
async fn a_record_reads_back_exactly_as_written_and_each_access_is_audited_once() {
    let db = database().await;
    let keyring = keyring();
    let tenant_id = identity::tenant::create(&db.app, &keyring, "A")
        .await
        .unwrap();
    let written = demographics("Rivera", "MRN1");
    let before = support::n_audit_events(&db, tenant_id).await;
    let patient_id = support::patient(&db, &keyring, tenant_id, &written).await;
    assert_eq!(
        support::n_audit_events(&db, tenant_id).await,
        before + 1,
        "create"
    );

    let mut tx = TenantTx::begin_as(&db.app, tenant_id, "user:test", None)
        .await
        .unwrap();
    let record = vault::read(&mut tx, &keyring, patient_id, &access())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(record.demographics, written);
    assert_eq!(record.version, 1);
    assert_eq!(
        support::n_audit_events(&db, tenant_id).await,
        before + 2,
        "read"
    );

    let mut changed = written.clone();
    changed.family_name = "Rivera-Lopez".to_owned();
    let mut tx = TenantTx::begin_as(&db.app, tenant_id, "user:test", None)
        .await
        .unwrap();
    let version = vault::update(&mut tx, &keyring, patient_id, &changed, Some(1), &access())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(version, 2);
    assert_eq!(
        support::n_audit_events(&db, tenant_id).await,
        before + 3,
        "update"
    );

    // A stale version is refused and leaves no event.
    let mut tx = TenantTx::begin_as(&db.app, tenant_id, "user:test", None)
        .await
        .unwrap();
    let err = vault::update(&mut tx, &keyring, patient_id, &written, Some(1), &access())
        .await
        .unwrap_err();
    assert!(matches!(err, VaultError::VersionConflict), "{err:?}");
    drop(tx);
    assert_eq!(support::n_audit_events(&db, tenant_id).await, before + 3);

    let actions: Vec<String> = sqlx::query_scalar(
        "SELECT action FROM audit.events WHERE tenant_id = $1 AND patient_id = $2 ORDER BY occurred_at",
    )
    .bind(tenant_id.as_uuid())
    .bind(patient_id.as_uuid())
    .fetch_all(&db.admin)
    .await
    .unwrap();
    assert_eq!(
        actions,
        ["patient.create", "patient.read", "patient.update"]
    );
}

#[tokio::test]
async fn a_ciphertext_moved_to_another_row_or_tenant_does_not_decrypt() {
    let db = database().await;
    let keyring = keyring();
    let a = identity::tenant::create(&db.app, &keyring, "A")
        .await
        .unwrap();
    let b = identity::tenant::create(&db.app, &keyring, "B")
        .await
        .unwrap();
    let p1 = support::patient(&db, &keyring, a, &demographics("Rivera", "M1")).await;
    let p2 = support::patient(&db, &keyring, a, &demographics("Okafor", "M2")).await;
    let pb = support::patient(&db, &keyring, b, &demographics("Nguyen", "M3")).await;

    // Same tenant, same key, other row: the associated data differs.
    sqlx::query(
        "UPDATE identity.patient_phi SET family_name = (SELECT family_name FROM identity.patient_phi WHERE patient_id = $1)
         WHERE patient_id = $2",
    )
    .bind(p1.as_uuid())
    .bind(p2.as_uuid())
    .execute(&db.admin)
    .await
    .unwrap();
    let mut tx = TenantTx::begin_as(&db.app, a, "system", None)
        .await
        .unwrap();
    let err = vault::read(&mut tx, &keyring, p2, &access())
        .await
        .unwrap_err();
    assert!(matches!(err, VaultError::Undecryptable), "{err:?}");
    drop(tx);

    // Another tenant: other data key and other associated data.
    sqlx::query(
        "UPDATE identity.patient_phi SET given_names = (SELECT given_names FROM identity.patient_phi WHERE patient_id = $1)
         WHERE patient_id = $2",
    )
    .bind(p1.as_uuid())
    .bind(pb.as_uuid())
    .execute(&db.admin)
    .await
    .unwrap();
    let mut tx = TenantTx::begin_as(&db.app, b, "system", None)
        .await
        .unwrap();
    let err = vault::read(&mut tx, &keyring, pb, &access())
        .await
        .unwrap_err();
    assert!(matches!(err, VaultError::Undecryptable), "{err:?}");
    drop(tx);

    // Moving a wrapped data key to another tenant does not unwrap either.
    sqlx::query(
        "UPDATE identity.data_keys SET wrapped_key = (SELECT wrapped_key FROM identity.data_keys WHERE tenant_id = $1)
         WHERE tenant_id = $2",
    )
    .bind(a.as_uuid())
    .bind(b.as_uuid())
    .execute(&db.admin)
    .await
    .unwrap();
    let fresh = Keyring::new(keyring_master(&keyring));
    let mut tx = TenantTx::begin_as(&db.app, b, "system", None)
        .await
        .unwrap();
    let err = fresh.active_key(&mut tx).await.unwrap_err();
    assert!(matches!(err, KeyringError::Corrupt { .. }), "{err:?}");
}

/// The keyring's master key, for building a fresh keyring with an empty cache.
fn keyring_master(keyring: &Keyring) -> MasterKey {
    keyring.master_key().clone()
}

#[tokio::test]
async fn identifiers_and_name_with_birth_date_find_the_patient_only_in_its_tenant() {
    let db = database().await;
    let keyring = keyring();
    let a = identity::tenant::create(&db.app, &keyring, "A")
        .await
        .unwrap();
    let b = identity::tenant::create(&db.app, &keyring, "B")
        .await
        .unwrap();
    let patient_id = support::patient(&db, &keyring, a, &demographics("Rivera", "MRN-77")).await;

    let mut tx = TenantTx::begin_as(&db.app, a, "system", None)
        .await
        .unwrap();
    // Authority is matched case-insensitively, the value exactly (trimmed).
    let found = vault::find_by_identifier(&mut tx, &keyring, "general", " MRN-77 ")
        .await
        .unwrap();
    assert_eq!(found, Some(patient_id));
    assert_eq!(
        vault::find_by_identifier(&mut tx, &keyring, "OTHER", "MRN-77")
            .await
            .unwrap(),
        None
    );
    let by_name = vault::find_by_name_birth(
        &mut tx,
        &keyring,
        "RIVERA",
        "ana",
        time::macros::date!(1984 - 03 - 02),
    )
    .await
    .unwrap();
    assert_eq!(by_name, vec![patient_id]);
    let wrong_date = vault::find_by_name_birth(
        &mut tx,
        &keyring,
        "Rivera",
        "Ana",
        time::macros::date!(1984 - 03 - 03),
    )
    .await
    .unwrap();
    assert!(wrong_date.is_empty());
    drop(tx);

    let mut tx = TenantTx::begin_as(&db.app, b, "system", None)
        .await
        .unwrap();
    assert_eq!(
        vault::find_by_identifier(&mut tx, &keyring, "GENERAL", "MRN-77")
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn an_identifier_belongs_to_one_patient_per_tenant() {
    let db = database().await;
    let keyring = keyring();
    let a = identity::tenant::create(&db.app, &keyring, "A")
        .await
        .unwrap();
    let b = identity::tenant::create(&db.app, &keyring, "B")
        .await
        .unwrap();
    support::patient(&db, &keyring, a, &demographics("Rivera", "SAME")).await;
    let mut tx = TenantTx::begin_as(&db.app, a, "system", None)
        .await
        .unwrap();
    let patient_id = kernel::PatientId::generate();
    clinical::patient::insert(&mut tx, patient_id)
        .await
        .unwrap();
    let err = vault::insert(
        &mut tx,
        &keyring,
        patient_id,
        &demographics("Okafor", "SAME"),
        &access(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, VaultError::DuplicateIdentifier { .. }),
        "{err:?}"
    );
    drop(tx);
    // Another tenant may use the same MRN for its own patient.
    support::patient(&db, &keyring, b, &demographics("Okafor", "SAME")).await;
}

#[tokio::test]
async fn rotating_the_master_key_keeps_every_record_readable() {
    let db = database().await;
    let old = MasterKey::generate();
    let keyring = Keyring::new(old.clone());
    let mut patients = Vec::new();
    let mut tenants = Vec::new();
    for name in ["A", "B", "C"] {
        let tenant_id = identity::tenant::create(&db.app, &keyring, name)
            .await
            .unwrap();
        tenants.push(tenant_id);
        for i in 0..3 {
            let patient_id = support::patient(
                &db,
                &keyring,
                tenant_id,
                &demographics("Rivera", &format!("{name}{i}")),
            )
            .await;
            patients.push((tenant_id, patient_id));
        }
    }
    let new = MasterKey::generate();
    for tenant_id in &tenants {
        let mut tx = TenantTx::begin_as(&db.owner, *tenant_id, "system", None)
            .await
            .unwrap();
        assert_eq!(
            identity::keyring::rewrap_tenant(&mut tx, &old, &new)
                .await
                .unwrap(),
            1
        );
        tx.commit().await.unwrap();
    }
    let rotated = Keyring::new(new.clone());
    let stale = Keyring::new(old);
    for (tenant_id, patient_id) in patients {
        let mut tx = TenantTx::begin_as(&db.app, tenant_id, "system", None)
            .await
            .unwrap();
        let record = vault::read(&mut tx, &rotated, patient_id, &access())
            .await
            .unwrap();
        assert_eq!(record.demographics.family_name, "Rivera");
        let err = vault::read(&mut tx, &stale, patient_id, &access())
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                VaultError::Keyring(KeyringError::WrongMasterKey { .. })
            ),
            "{err:?}"
        );
    }
    // A second rotation pass is a no-op: every key is already under the new master key.
    let mut tx = TenantTx::begin_as(&db.owner, tenants[0], "system", None)
        .await
        .unwrap();
    assert_eq!(
        identity::keyring::rewrap_tenant(&mut tx, &MasterKey::generate(), &new)
            .await
            .unwrap(),
        0
    );
}
