//! `tenet keys rotate`: every data key re-wrapped under a new master key.

use db::TenantTx;
use identity::keyring::{Keyring, KeyringError, MasterKey};
use identity::vault::{Access, Demographics, VaultError};
use kernel::{PatientId, TenantId};

use crate::{Tenet, single_line};

fn demographics(family_name: &str) -> Demographics {
    Demographics {
        family_name: family_name.into(),
        given_names: vec!["Ada".into(), "Grace".into()],
        birth_date: Some(time::macros::date!(1984 - 02 - 29)),
        phone: Some("+1 555 0100".into()),
        ..Default::default()
    }
}

async fn read(
    tenet: &Tenet,
    keyring: &Keyring,
    tenant_id: TenantId,
    patient_id: PatientId,
) -> Result<Demographics, VaultError> {
    let mut tx = TenantTx::begin_as(&tenet.db.app, tenant_id, "user:tester", None)
        .await
        .unwrap();
    let record = identity::vault::read(&mut tx, keyring, patient_id, &Access::default()).await;
    tx.rollback().await.unwrap();
    record.map(|record| record.demographics)
}

#[tokio::test]
async fn rotating_the_master_key_keeps_every_record_readable_under_the_new_key_only() {
    let tenet = Tenet::new().await;
    let old_key = MasterKey::from_file(&tenet.master_key_path()).unwrap();
    let keyring = Keyring::new(MasterKey::from_file(&tenet.master_key_path()).unwrap());

    let mut patients = Vec::new();
    for clinic in ["North", "South"] {
        let tenant_id: TenantId = single_line(tenet.run(&["tenant", "create", clinic]).await.ok())
            .parse()
            .unwrap();
        for n in 0..3 {
            let patient_id = PatientId::generate();
            let family_name = format!("{clinic}-{n}");
            let mut tx = TenantTx::begin_as(&tenet.db.app, tenant_id, "user:tester", None)
                .await
                .unwrap();
            identity::vault::insert(
                &mut tx,
                &keyring,
                patient_id,
                &demographics(&family_name),
                &Access::default(),
            )
            .await
            .expect("storing a patient");
            tx.commit().await.unwrap();
            patients.push((tenant_id, patient_id, family_name));
        }
    }

    let run = tenet.run(&["keys", "rotate"]).await;
    let stdout = run.ok();
    assert!(
        stdout.contains("2 data key(s) of 2 tenant(s) re-wrapped"),
        "{run}"
    );

    let new_key = MasterKey::from_file(&tenet.master_key_path()).expect("the new key file");
    assert_ne!(new_key.id(), old_key.id(), "the master key changed");
    let retired_path = tenet
        .home
        .path()
        .join(format!("master.key.retired-{}", old_key.id()));
    let retired = MasterKey::from_file(&retired_path).expect("the old key is kept");
    assert_eq!(retired.to_hex(), old_key.to_hex());
    assert!(
        !tenet.home.path().join("master.key.next").exists(),
        "the rotation finished"
    );

    let with_new_key = Keyring::new(new_key);
    let with_old_key = Keyring::new(old_key);
    for (tenant_id, patient_id, family_name) in &patients {
        let record = read(&tenet, &with_new_key, *tenant_id, *patient_id)
            .await
            .expect("a record decrypts with the new key");
        assert_eq!(record, demographics(family_name));
        let err = read(&tenet, &with_old_key, *tenant_id, *patient_id)
            .await
            .expect_err("the old key no longer opens the data keys");
        assert!(
            matches!(
                err,
                VaultError::Keyring(KeyringError::WrongMasterKey { .. })
            ),
            "got {err:?}"
        );
    }

    // The binary itself runs on the new key: a new tenant's data key is wrapped by it.
    let tenant_id: TenantId = single_line(tenet.run(&["tenant", "create", "East"]).await.ok())
        .parse()
        .unwrap();
    let wrapped_by: String =
        sqlx::query_scalar("SELECT master_key_id FROM identity.data_keys WHERE tenant_id = $1")
            .bind(tenant_id.as_uuid())
            .fetch_one(&tenet.db.admin)
            .await
            .unwrap();
    assert_eq!(wrapped_by, with_new_key.master_key_id());
}

#[tokio::test]
async fn an_interrupted_rotation_blocks_the_binary_until_a_second_run_finishes_it() {
    let tenet = Tenet::new().await;
    let old_key = MasterKey::from_file(&tenet.master_key_path()).unwrap();
    let mut tenant_ids = Vec::new();
    for clinic in ["North", "South"] {
        let tenant_id: TenantId = single_line(tenet.run(&["tenant", "create", clinic]).await.ok())
            .parse()
            .unwrap();
        tenant_ids.push(tenant_id);
    }

    // A rotation that wrote its new key and re-wrapped the first tenant, then died.
    let next_key = MasterKey::generate();
    std::fs::write(tenet.home.path().join("master.key.next"), next_key.to_hex()).unwrap();
    let mut tx = TenantTx::begin_as(&tenet.db.owner, tenant_ids[0], "system", None)
        .await
        .unwrap();
    identity::keyring::rewrap_tenant(&mut tx, &old_key, &next_key)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let run = tenet.run(&["tenant", "create", "East"]).await;
    run.failed();
    assert!(
        run.stderr.contains("rotation was interrupted"),
        "the binary refuses to run half-rotated: {run}"
    );

    let run = tenet.run(&["keys", "rotate"]).await;
    assert!(
        run.ok().contains("1 data key(s) of 2 tenant(s) re-wrapped"),
        "only the tenant left behind is re-wrapped: {run}"
    );
    let installed = MasterKey::from_file(&tenet.master_key_path()).unwrap();
    assert_eq!(
        installed.id(),
        next_key.id(),
        "the interrupted rotation's key is the one installed"
    );
    let wrapped_by: Vec<String> =
        sqlx::query_scalar("SELECT master_key_id FROM identity.data_keys")
            .fetch_all(&tenet.db.admin)
            .await
            .unwrap();
    assert_eq!(wrapped_by, vec![next_key.id().to_owned(); 2]);
    tenet.run(&["tenant", "create", "East"]).await.ok();
}
