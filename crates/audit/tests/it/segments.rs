//! A tenant holding most of the table is read as several block ranges over as many
//! connections sharing one snapshot, and its lanes' segments are joined afterwards.
//! The join must find exactly what one reader walking the whole table finds, wherever
//! the tampering sits relative to the ranges' edges; and a verification running while
//! requests append must see one consistent state, not a half-appended one.

use audit::{CheckpointKey, ProblemKind};
use db::TenantTx;
use db::testing::TestDb;
use kernel::{PatientId, TenantId};

use crate::{as_attacker, checkpoint, create_tenant, database, entry, verify_with_options};

/// Enough events for the table to span well over the 64 blocks below which one
/// reader is used.
const N_EVENTS: usize = 4_000;

/// Appends `n` events to `tenant_id`'s log through `audit::append`, in a few large
/// transactions (the test needs many rows, not many commits).
async fn append_many(db: &TestDb, tenant_id: TenantId, n: usize) {
    let patient_id = PatientId::generate();
    for chunk in 0..n.div_ceil(500) {
        let mut tx = TenantTx::begin_as(&db.app, tenant_id, "user:tester", None)
            .await
            .unwrap();
        for i in chunk * 500..((chunk + 1) * 500).min(n) {
            audit::append(&mut tx, entry(i, patient_id))
                .await
                .expect("appending an audit event");
        }
        tx.commit().await.unwrap();
    }
}

/// The row at the start of block `block`, as SQL: the
/// first row of its lane in the segment that starts there, when ranges split there.
fn first_row_of_block(block: i64) -> String {
    format!("ctid = '({block},1)'::tid")
}

#[tokio::test]
async fn several_readers_report_exactly_what_one_reader_reports() {
    let db = database().await;
    let tenant_id = create_tenant(&db, "Large").await;
    append_many(&db, tenant_id, N_EVENTS).await;
    let key = CheckpointKey::generate();
    checkpoint(&db, tenant_id, &key).await;
    let n_blocks: i64 = sqlx::query_scalar(
        "SELECT pg_relation_size('audit.events') / current_setting('block_size')::bigint",
    )
    .fetch_one(&db.admin)
    .await
    .unwrap();
    assert!(n_blocks >= 96, "the log spans {n_blocks} blocks");

    // Clean, several readers and one agree: intact.
    for streams in [1, 2, 3, 4] {
        let report = verify_with_options(&db, tenant_id, &key, streams).await;
        assert_eq!(report.streams, streams, "readers used");
        assert_eq!(report.n_events, N_EVENTS as u64);
        assert_eq!(report.problems, vec![], "{streams} reader(s), clean log");
    }

    // Tamper where the ranges of 2, 3 and 4 readers begin (the first row of a lane
    // in a later segment is checked only at the join), in the middle of a range, and
    // move one row to the end of the table (its lane is then out of order).
    as_attacker(
        &db,
        &format!(
            "UPDATE audit.events SET purpose = 'marketing' WHERE {half};
             DELETE FROM audit.events WHERE {third};
             UPDATE audit.events SET hash = prev_hash WHERE {quarter};
             UPDATE audit.events SET actor = 'user:someone-else' WHERE ctid = '(7,3)'::tid;
             UPDATE audit.events SET details = '{{\"moved\": true}}' WHERE ctid = '(11,2)'::tid",
            half = first_row_of_block(n_blocks / 2),
            third = first_row_of_block(n_blocks / 3),
            quarter = first_row_of_block(n_blocks * 3 / 4),
        ),
    )
    .await;
    let one = verify_with_options(&db, tenant_id, &key, 1).await;
    assert_eq!(one.streams, 1);
    let kinds = |problems: &[audit::Problem]| -> Vec<ProblemKind> {
        problems
            .iter()
            .map(|problem| problem.kind.clone())
            .collect()
    };
    let expected = kinds(&one.problems);
    assert!(
        expected
            .iter()
            .any(|kind| matches!(kind, ProblemKind::Edited { .. })),
        "an edit is found: {expected:?}"
    );
    assert!(
        expected
            .iter()
            .any(|kind| matches!(kind, ProblemKind::Missing { .. })),
        "a deletion is found: {expected:?}"
    );
    assert!(
        expected
            .iter()
            .any(|kind| matches!(kind, ProblemKind::BrokenLink { .. })),
        "the row after the rewritten hash no longer follows it: {expected:?}"
    );
    for streams in [2, 3, 4] {
        let report = verify_with_options(&db, tenant_id, &key, streams).await;
        assert_eq!(report.streams, streams, "readers used");
        assert_eq!(report.n_events, one.n_events);
        assert_eq!(
            kinds(&report.problems),
            expected,
            "{streams} readers against one"
        );
    }
}

#[tokio::test]
async fn verifying_while_requests_append_sees_one_consistent_log() {
    let db = database().await;
    let tenant_id = create_tenant(&db, "Busy").await;
    append_many(&db, tenant_id, N_EVENTS).await;
    let key = CheckpointKey::generate();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (app, stop) = (db.app.clone(), stop.clone());
        tokio::spawn(async move {
            let patient_id = PatientId::generate();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut tx = TenantTx::begin_as(&app, tenant_id, "user:tester", None)
                    .await
                    .unwrap();
                audit::append(&mut tx, entry(n, patient_id)).await.unwrap();
                tx.commit().await.unwrap();
                n += 1;
            }
            n
        })
    };
    for streams in [1, 2, 1, 2, 3] {
        let report = verify_with_options(&db, tenant_id, &key, streams).await;
        assert_eq!(report.streams, streams, "readers used");
        assert_eq!(
            report.problems,
            vec![],
            "{streams} reader(s) while appends commit"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let appended = writer.await.unwrap();
    assert!(appended > 0, "appends ran during the verifications");
    let report = verify_with_options(&db, tenant_id, &key, 2).await;
    assert_eq!(report.n_events, (N_EVENTS + appended) as u64);
    assert_eq!(report.problems, vec![]);
}
