//! Appending: by one writer, by many at once, and inside transactions that roll back
//! or fail.

use std::collections::HashSet;

use audit::{AuditEntry, AuditError, CheckpointKey, LANES};
use db::TenantTx;
use db::testing::TestDb;
use identity::keyring::{Keyring, MasterKey};
use kernel::{PatientId, Role, TenantId};

use crate::{append_events, checkpoint, create_tenant, database, problems, verify_with};

async fn n_events(db: &TestDb, tenant_id: TenantId) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM audit.events WHERE tenant_id = $1")
        .bind(tenant_id.as_uuid())
        .fetch_one(&db.admin)
        .await
        .unwrap()
}

async fn head_seqs_total(db: &TestDb, tenant_id: TenantId) -> i64 {
    sqlx::query_scalar(
        "SELECT coalesce(sum(seq), 0)::bigint FROM audit.chain_heads WHERE tenant_id = $1",
    )
    .bind(tenant_id.as_uuid())
    .fetch_one(&db.admin)
    .await
    .unwrap()
}

/// A transaction of `actor` that appended event `n` and is still open.
async fn open_append(app: &sqlx::PgPool, tenant_id: TenantId, actor: &str, n: usize) -> TenantTx {
    let mut tx = TenantTx::begin_as(app, tenant_id, actor, None)
        .await
        .unwrap();
    audit::append(&mut tx, crate::entry(n, PatientId::generate()))
        .await
        .unwrap();
    tx
}

#[tokio::test]
async fn a_clean_log_of_hundreds_of_events_across_lanes_verifies_with_no_problem() {
    let db = database().await;
    let tenant_id = create_tenant(&db, "Clinic").await;
    let other_tenant_id = create_tenant(&db, "Other clinic").await;
    let key = CheckpointKey::generate();

    append_events(&db, tenant_id, 300).await;
    append_events(&db, other_tenant_id, 20).await;

    let report = verify_with(&db, tenant_id, &[key.verifying_key()]).await;
    assert_eq!(report.problems, vec![], "a clean log");
    assert_eq!(report.n_events, 300, "only this tenant's events are walked");
    let n_lanes: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT lane) FROM audit.events WHERE tenant_id = $1")
            .bind(tenant_id.as_uuid())
            .fetch_one(&db.admin)
            .await
            .unwrap();
    assert_eq!(n_lanes, i64::from(LANES), "appends spread over every lane");
    assert_eq!(head_seqs_total(&db, tenant_id).await, 300);

    // Checkpoints taken along the way verify too.
    checkpoint(&db, tenant_id, &key).await;
    append_events(&db, tenant_id, 40).await;
    checkpoint(&db, tenant_id, &key).await;
    append_events(&db, tenant_id, 10).await;
    let report = verify_with(&db, tenant_id, &[key.verifying_key()]).await;
    assert_eq!(report.problems, vec![]);
    assert_eq!(report.n_events, 350);
    assert_eq!(report.n_checkpoints, 2);
    assert_eq!(problems(&db, other_tenant_id, &key).await, vec![]);
}

#[tokio::test]
async fn details_that_jsonb_normalises_still_verify() {
    let db = database().await;
    let tenant_id = create_tenant(&db, "Clinic").await;
    let key = CheckpointKey::generate();

    // jsonb stores numbers as numeric: no negative zero, exponents written out,
    // keys reordered. The hash must cover what is stored, not what was passed in.
    let details = serde_json::json!({
        "zz": -0.0,
        "a": [-0.0, 1e30, 1.5e-7, -2.5, 18446744073709551615_u64, -9223372036854775808_i64],
        "m": {"y": {"neg": -0.0}, "b": "\u{e9}\"quoted\"\n"},
    });
    let mut tx = TenantTx::begin_as(&db.app, tenant_id, "user:tester", None)
        .await
        .unwrap();
    audit::append(
        &mut tx,
        AuditEntry {
            action: "report.export",
            patient_id: None,
            purpose: None,
            break_glass: false,
            details,
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    assert_eq!(problems(&db, tenant_id, &key).await, vec![]);
}

#[tokio::test]
async fn a_checkpoint_is_skipped_when_nothing_was_appended_since_the_last() {
    let db = database().await;
    let tenant_id = create_tenant(&db, "Clinic").await;
    let key = CheckpointKey::generate();
    append_events(&db, tenant_id, 3).await;
    checkpoint(&db, tenant_id, &key).await;

    let mut tx = TenantTx::begin_as(&db.owner, tenant_id, "system", None)
        .await
        .unwrap();
    let again = audit::write_checkpoint(&mut tx, &key).await.unwrap();
    tx.commit().await.unwrap();
    assert!(again.is_none(), "nothing moved, nothing to sign");
}

/// How many appends each concurrent writer makes.
const APPENDS_PER_WRITER: usize = 25;
/// More writers than lanes, so some must wait for a lane held by another.
const WRITERS: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_from_16_tasks_all_land_and_no_lane_forks() {
    let db = database().await;
    let tenant_id = create_tenant(&db, "Busy clinic").await;
    let key = CheckpointKey::generate();

    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..WRITERS {
        let app = db.app.clone();
        writers.spawn(async move {
            let mut ids = Vec::with_capacity(APPENDS_PER_WRITER);
            for i in 0..APPENDS_PER_WRITER {
                let mut tx =
                    TenantTx::begin_as(&app, tenant_id, &format!("user:writer-{writer}"), None)
                        .await
                        .unwrap();
                let id = audit::append(&mut tx, crate::entry(i, PatientId::generate()))
                    .await
                    .expect("appending concurrently");
                // Hold the lane a moment, so that with 16 writers and 8 lanes every lane
                // is busy at times and appends must wait for one.
                sqlx::query("SELECT pg_sleep(0.002)")
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
                ids.push(id);
            }
            ids
        });
    }
    let mut ids = HashSet::new();
    while let Some(writer) = writers.join_next().await {
        for id in writer.expect("a writer panicked") {
            assert!(ids.insert(id), "event id {id:?} returned twice");
        }
    }

    let n_total = WRITERS * APPENDS_PER_WRITER;
    assert_eq!(ids.len(), n_total);
    assert_eq!(
        n_events(&db, tenant_id).await,
        n_total as i64,
        "every event landed"
    );
    assert_eq!(
        head_seqs_total(&db, tenant_id).await,
        n_total as i64,
        "every lane's head counts its events: none lost, none forked"
    );
    let stored: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM audit.events WHERE tenant_id = $1")
            .bind(tenant_id.as_uuid())
            .fetch_all(&db.admin)
            .await
            .unwrap();
    let stored: HashSet<uuid::Uuid> = stored.into_iter().collect();
    assert!(ids.iter().all(|id| stored.contains(id.as_uuid())));

    let report = verify_with(&db, tenant_id, &[key.verifying_key()]).await;
    assert_eq!(report.problems, vec![]);
    assert_eq!(report.n_events, n_total as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_with_every_lane_held_waits_and_chains_after_the_holders_event() {
    let db = database().await;
    let tenant_id = create_tenant(&db, "Full clinic").await;
    // Every lane held by a transaction that appended and has not committed.
    let mut holders = Vec::new();
    for i in 0..usize::try_from(LANES).unwrap() {
        holders.push(open_append(&db.app, tenant_id, &format!("user:holder-{i}"), i).await);
    }
    let waiter = tokio::spawn({
        let app = db.app.clone();
        async move {
            let tx = open_append(&app, tenant_id, "user:waiter", 99).await;
            tx.commit().await.unwrap();
        }
    });
    // Wait until the waiter is blocked on a lane's lock, so the holders commit after
    // its statement began.
    let blocked = async {
        loop {
            let n_waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND state = 'active'
                   AND wait_event_type = 'Lock' AND query LIKE '%audit.chain_heads%'",
            )
            .fetch_one(&db.admin)
            .await
            .unwrap();
            if n_waiting == 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), blocked)
        .await
        .expect("the waiter waits for a lane while every lane is held");
    assert!(!waiter.is_finished(), "appended while every lane was held");
    assert_eq!(n_events(&db, tenant_id).await, 0, "nothing committed yet");
    // The holders commit: the waiter's lane head moved on after its statement began,
    // and its event must follow the head as it is now, not as it was.
    for tx in holders {
        tx.commit().await.unwrap();
    }
    tokio::time::timeout(std::time::Duration::from_secs(10), waiter)
        .await
        .expect("the waiter got a lane once the holders committed")
        .unwrap();
    let n_total = i64::from(LANES) + 1;
    assert_eq!(n_events(&db, tenant_id).await, n_total);
    assert_eq!(head_seqs_total(&db, tenant_id).await, n_total);
    let report = verify_with(&db, tenant_id, &[]).await;
    assert_eq!(report.problems, vec![]);
    assert_eq!(report.n_events, u64::try_from(n_total).unwrap());
}

#[tokio::test]
async fn an_append_whose_transaction_rolls_back_leaves_no_event() {
    let db = database().await;
    let tenant_id = create_tenant(&db, "Clinic").await;
    let key = CheckpointKey::generate();
    append_events(&db, tenant_id, 5).await;

    let tx = open_append(&db.app, tenant_id, "user:tester", 0).await;
    tx.rollback().await.unwrap();
    // A transaction dropped without commit (a handler that returned early) too.
    drop(open_append(&db.app, tenant_id, "user:tester", 1).await);

    assert_eq!(n_events(&db, tenant_id).await, 5);
    assert_eq!(head_seqs_total(&db, tenant_id).await, 5);
    assert_eq!(problems(&db, tenant_id, &key).await, vec![]);
    // The lanes those transactions held are free again.
    append_events(&db, tenant_id, 16).await;
    assert_eq!(n_events(&db, tenant_id).await, 21);
    assert_eq!(problems(&db, tenant_id, &key).await, vec![]);
}

/// Whether a user with `handle` exists in `tenant_id` (read as the superuser).
async fn user_exists(db: &TestDb, tenant_id: TenantId, handle: &str) -> bool {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM identity.users WHERE tenant_id = $1 AND handle = $2)",
    )
    .bind(tenant_id.as_uuid())
    .bind(handle)
    .fetch_one(&db.admin)
    .await
    .unwrap()
}

/// After a failed append, the transaction refuses further work, and committing it
/// commits nothing: whatever the caller does with the error, the access it was
/// recording cannot be committed without its event.
async fn assert_transaction_failed(db: &TestDb, mut tx: TenantTx, handle: &str) {
    let tenant_id = tx.tenant_id();
    let err = sqlx::query("SELECT 1")
        .execute(&mut *tx)
        .await
        .expect_err("the transaction is aborted");
    assert_eq!(
        err.as_database_error()
            .and_then(|err| err.code())
            .as_deref(),
        Some("25P02"),
        "in_failed_sql_transaction, got {err}"
    );
    // A careless caller commits anyway: PostgreSQL rolls back.
    let _ = tx.commit().await;
    assert!(
        !user_exists(db, tenant_id, handle).await,
        "the write before the failed append was committed without its audit event"
    );
}

#[tokio::test]
async fn a_failed_append_fails_the_callers_whole_transaction() {
    let db = database().await;
    let tenant_id = create_tenant(&db, "Clinic").await;

    // The database refuses the event (an action that breaks the column's rule).
    let mut tx = TenantTx::begin_as(&db.app, tenant_id, "user:tester", None)
        .await
        .unwrap();
    identity::user::create(&mut tx, "refused-event", Role::Clinician, None)
        .await
        .unwrap();
    let entry = AuditEntry {
        action: "Not A Valid Action",
        ..AuditEntry::patient("patient.read", PatientId::generate())
    };
    let err = audit::append(&mut tx, entry)
        .await
        .expect_err("the action breaks the check constraint");
    assert!(matches!(err, AuditError::Database(_)), "got {err:?}");
    assert_transaction_failed(&db, tx, "refused-event").await;

    // The tenant has no chain heads (lost, or never created).
    sqlx::query("DELETE FROM audit.chain_heads WHERE tenant_id = $1")
        .bind(tenant_id.as_uuid())
        .execute(&db.admin)
        .await
        .unwrap();
    let mut tx = TenantTx::begin_as(&db.app, tenant_id, "user:tester", None)
        .await
        .unwrap();
    identity::user::create(&mut tx, "no-chain", Role::Clinician, None)
        .await
        .unwrap();
    let err = audit::append(&mut tx, crate::entry(0, PatientId::generate()))
        .await
        .expect_err("no chain to append to");
    assert!(matches!(err, AuditError::NoChain), "got {err:?}");
    assert_transaction_failed(&db, tx, "no-chain").await;
}

#[tokio::test]
async fn a_vault_write_whose_audit_append_fails_leaves_no_record() {
    let db = database().await;
    let keyring = Keyring::new(MasterKey::generate());
    let tenant_id = identity::tenant::create(&db.app, &keyring, "Clinic")
        .await
        .unwrap();
    sqlx::query("DELETE FROM audit.chain_heads WHERE tenant_id = $1")
        .bind(tenant_id.as_uuid())
        .execute(&db.admin)
        .await
        .unwrap();

    let patient_id = PatientId::generate();
    let mut tx = TenantTx::begin_as(&db.app, tenant_id, "user:tester", None)
        .await
        .unwrap();
    let demographics = identity::vault::Demographics {
        family_name: "Canary".into(),
        given_names: vec!["Jane".into()],
        ..Default::default()
    };
    let err = identity::vault::insert(
        &mut tx,
        &keyring,
        patient_id,
        &demographics,
        &identity::vault::Access::default(),
    )
    .await
    .expect_err("the insert cannot be audited");
    assert!(
        matches!(err, identity::vault::VaultError::Audit(AuditError::NoChain)),
        "got {err:?}"
    );
    let _ = tx.commit().await;

    let n_records: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM identity.patient_phi WHERE tenant_id = $1 AND patient_id = $2",
    )
    .bind(tenant_id.as_uuid())
    .bind(patient_id.as_uuid())
    .fetch_one(&db.admin)
    .await
    .unwrap();
    assert_eq!(n_records, 0, "PHI stored without its audit event");
}
