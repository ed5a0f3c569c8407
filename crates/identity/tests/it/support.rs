//! Shared fixtures: a migrated database with tenants and patients.

use db::TenantTx;
use db::testing::TestDb;
use identity::keyring::{Keyring, MasterKey};
use identity::vault::{self, Access, Demographics, Identifier};
use kernel::{PatientId, TenantId};
use time::macros::date;

pub async fn database() -> TestDb {
    TestDb::migrated(&schema::migrator()).await
}

pub fn keyring() -> Keyring {
    Keyring::new(MasterKey::generate())
}

pub fn demographics(family_name: &str, mrn: &str) -> Demographics {
    Demographics {
        family_name: family_name.to_owned(),
        given_names: vec!["Ana".to_owned(), "Maria".to_owned()],
        birth_date: Some(date!(1984 - 03 - 02)),
        sex: Some(vault::Sex::Female),
        phone: Some("+1 555 0100".to_owned()),
        email: Some("ana@example.org".to_owned()),
        address: None,
        identifiers: vec![Identifier {
            authority: "GENERAL".to_owned(),
            kind: "MR".to_owned(),
            value: mrn.to_owned(),
        }],
    }
}

pub fn access() -> Access {
    Access {
        purpose: Some("treatment".to_owned()),
        break_glass: false,
    }
}

/// Registers a patient (clinical record + vault) in `tenant_id` and commits.
pub async fn patient(
    db: &TestDb,
    keyring: &Keyring,
    tenant_id: TenantId,
    d: &Demographics,
) -> PatientId {
    let patient_id = PatientId::generate();
    let mut tx = TenantTx::begin_as(&db.app, tenant_id, "system", None)
        .await
        .unwrap();
    clinical::patient::insert(&mut tx, patient_id)
        .await
        .unwrap();
    vault::insert(&mut tx, keyring, patient_id, d, &access())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    patient_id
}

/// Every table of the context schemas, as `schema.table`.
pub async fn context_tables(db: &TestDb) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT table_schema || '.' || table_name FROM information_schema.tables
         WHERE table_schema IN ('identity', 'clinical', 'audit', 'platform', 'assessments') AND table_type = 'BASE TABLE'
         ORDER BY 1",
    )
    .fetch_all(&db.admin)
    .await
    .unwrap()
}

/// How many audit events the tenant has (read as superuser).
pub async fn n_audit_events(db: &TestDb, tenant_id: TenantId) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM audit.events WHERE tenant_id = $1")
        .bind(tenant_id.as_uuid())
        .fetch_one(&db.admin)
        .await
        .unwrap()
}
