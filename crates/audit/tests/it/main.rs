//! Integration tests of the audit log on a real PostgreSQL cluster (invariant I3).
//!
//! - [`append`]: events appended through `audit::append` in tenant transactions, by
//!   one writer and by many at once, and what happens when a transaction rolls back
//!   or the append itself fails.
//! - [`tamper`]: a superuser does what an attacker would — edit, delete, reorder,
//!   forge, truncate, rewrite — and `verify_tenant` must name exactly what was done.
//! - [`segments`]: a large log read as several block ranges at once reports exactly
//!   what one reader reports, and verifying while others append finds nothing.
//! - [`append_only`]: the trigger and the grants that refuse changes in the first place.
//! - [`access`]: the access report a patient is entitled to.
//!
//! Events are written as the service role, the way requests write them; verification
//! runs as the owner, the way `tenet audit verify` does; attacks run as the cluster
//! superuser. Each test gets a database of its own.

mod access;
mod append;
mod append_only;
mod segments;
mod tamper;

use audit::checkpoint::{Checkpoint, VerifyingKey};
use audit::{AuditEntry, CheckpointKey, ProblemKind, VerifyOptions, VerifyReport};
use db::TenantTx;
use db::testing::TestDb;
use identity::keyring::{Keyring, MasterKey};
use kernel::{PatientId, RequestId, TenantId};

/// A migrated database of its own.
async fn database() -> TestDb {
    TestDb::migrated(&schema::migrator()).await
}

/// A tenant created the way `tenet tenant create` does it: with its data key and
/// the genesis heads of its audit chain.
async fn create_tenant(db: &TestDb, name: &str) -> TenantId {
    let keyring = Keyring::new(MasterKey::generate());
    identity::tenant::create(&db.app, &keyring, name)
        .await
        .expect("creating a tenant")
}

/// The `n`th entry of a varied stream: patient and non-patient events, with and
/// without purpose, break-glass, request id and details.
fn entry(n: usize, patient_id: PatientId) -> AuditEntry {
    match n % 4 {
        0 => AuditEntry::patient("patient.read", patient_id).purpose("treatment"),
        1 => AuditEntry::patient("patient.update", patient_id)
            .purpose("emergency: unconscious on arrival")
            .break_glass(true),
        2 => AuditEntry {
            action: "api_key.create",
            patient_id: None,
            purpose: None,
            break_glass: false,
            // Keys written out of order, nested, with non-ASCII text: jsonb hands them
            // back reordered, and the chain must still verify.
            details: serde_json::json!({
                "zeta": [1, 2.5, -3, null, true],
                "alpha": {"z": "x", "a": "Zoë ✓", "m": {"nested": n}},
                "label": format!("key {n}"),
            }),
        },
        _ => AuditEntry::patient("patient.read", patient_id).purpose("operations"),
    }
}

/// Appends `n` events to `tenant_id`'s log, each in its own transaction as the
/// service role.
async fn append_events(db: &TestDb, tenant_id: TenantId, n: usize) {
    let patient_id = PatientId::generate();
    for i in 0..n {
        let request_id = (i % 3 == 0).then(RequestId::generate);
        let mut tx = TenantTx::begin_as(&db.app, tenant_id, "user:tester", request_id)
            .await
            .unwrap();
        audit::append(&mut tx, entry(i, patient_id))
            .await
            .expect("appending an audit event");
        tx.commit().await.unwrap();
    }
}

/// Verifies `tenant_id`'s log as the owner, as `tenet audit verify` does.
async fn verify_with(db: &TestDb, tenant_id: TenantId, keys: &[VerifyingKey]) -> VerifyReport {
    let report = audit::verify_tenant(&db.owner, tenant_id, keys, VerifyOptions::default(), |_| {})
        .await
        .expect("verifying the log");
    for problem in &report.problems {
        assert_eq!(problem.tenant_id, tenant_id, "a problem of another tenant");
    }
    report
}

/// Verifies with `streams` readers at most.
async fn verify_with_options(
    db: &TestDb,
    tenant_id: TenantId,
    key: &CheckpointKey,
    streams: usize,
) -> VerifyReport {
    audit::verify_tenant(
        &db.owner,
        tenant_id,
        &[key.verifying_key()],
        VerifyOptions { streams },
        |_| {},
    )
    .await
    .expect("verifying the log")
}

/// The problems `verify_tenant` finds, with `key` as the only known checkpoint key.
async fn problems(db: &TestDb, tenant_id: TenantId, key: &CheckpointKey) -> Vec<ProblemKind> {
    verify_with(db, tenant_id, &[key.verifying_key()])
        .await
        .problems
        .into_iter()
        .map(|problem| problem.kind)
        .collect()
}

/// Signs `tenant_id`'s current heads with `key`.
async fn checkpoint(db: &TestDb, tenant_id: TenantId, key: &CheckpointKey) -> Checkpoint {
    let mut tx = TenantTx::begin_as(&db.owner, tenant_id, "system", None)
        .await
        .unwrap();
    let checkpoint = audit::write_checkpoint(&mut tx, key)
        .await
        .expect("writing a checkpoint")
        .expect("the log moved since the last checkpoint");
    tx.commit().await.unwrap();
    checkpoint
}

/// The lane with the most events, and its head's seq: with `n` events appended it
/// has at least `n / LANES`.
async fn busiest_lane(db: &TestDb, tenant_id: TenantId) -> (i16, i64) {
    sqlx::query_as(
        "SELECT lane, seq FROM audit.chain_heads WHERE tenant_id = $1 ORDER BY seq DESC, lane LIMIT 1",
    )
    .bind(tenant_id.as_uuid())
    .fetch_one(&db.admin)
    .await
    .unwrap()
}

/// A transaction of the cluster superuser with user triggers off
/// (`session_replication_role = replica`): what an attacker with superuser rights
/// opens first, since the append-only trigger refuses the change otherwise.
async fn attacker_tx(db: &TestDb) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut tx = db.admin.begin().await.unwrap();
    sqlx::raw_sql("SET LOCAL session_replication_role = replica")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx
}

/// Runs `sql` as an attacker with superuser rights, and commits it.
async fn as_attacker(db: &TestDb, sql: &str) {
    let mut tx = attacker_tx(db).await;
    sqlx::raw_sql(sql)
        .execute(&mut *tx)
        .await
        .expect("the attacker's change");
    tx.commit().await.unwrap();
}
