//! Group commit with several groups in flight: a group that meets a key in another
//! open transaction waits for it and answers with what that transaction committed
//! (or stores the message if it rolled back) while other groups go on, and many
//! connections sending the same control ids at once store each once and all get its
//! answer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use db::TenantTx;
use db::testing::TestDb;
use hl7::ack::AckCode;
use ingest::store::{CommitterConfig, Stored};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::partitions::{lock_waits_until, message, setup, visible};

/// Another transaction that has written the key (LAB, HOSP, `control_id`) with the
/// answer `ack_code`, as another group's transaction does, and not committed yet.
async fn hold_key(
    ingest: &crate::partitions::Ingest,
    control_id: &str,
    ack_code: &str,
) -> TenantTx {
    let mut other = TenantTx::begin_as(&ingest.db.app, ingest.tenant_id, "system:ingest", None)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO ingest.message_keys (tenant_id, sending_application, sending_facility, \
         control_id, message_id, ack_code, received_at) \
         VALUES ($1, 'LAB', 'HOSP', $2, $3, $4, now())",
    )
    .bind(ingest.tenant_id.as_uuid())
    .bind(control_id)
    .bind(Uuid::now_v7())
    .bind(ack_code)
    .execute(&mut *other)
    .await
    .unwrap();
    other
}

#[tokio::test]
async fn a_group_meeting_its_key_in_another_open_transaction_waits_and_answers_with_the_committed_code()
 {
    let ingest = setup(CommitterConfig::default()).await;
    let now = OffsetDateTime::now_utc();
    let other = hold_key(&ingest, "W1", "AR").await;
    let waiting = {
        let committer = ingest.committer.clone();
        let tenant_id = ingest.tenant_id;
        let message = message(now, "W1", "AA");
        tokio::spawn(async move { committer.store(tenant_id, message).await.unwrap() })
    };
    // Its insert waits on the other transaction's key.
    lock_waits_until(&ingest.db, 1).await;
    // Meanwhile other groups commit: a waiting group holds only its own slot.
    let other_group = tokio::time::timeout(
        Duration::from_secs(10),
        ingest
            .committer
            .store(ingest.tenant_id, message(now, "W2", "AA")),
    )
    .await
    .expect("another group commits while one waits");
    assert_eq!(other_group.unwrap(), Stored::New);
    assert!(!waiting.is_finished(), "answered before the other commit");
    other.commit().await.unwrap();
    // The first answer, committed while this group waited, is the one it reads.
    assert_eq!(
        waiting.await.unwrap(),
        Stored::Duplicate {
            ack_code: AckCode::from_code("AR").unwrap()
        }
    );
    // Not stored: the other transaction wrote the key (and only the key, here).
    assert_eq!(
        visible(&ingest.db.app, ingest.tenant_id, "control_id = 'W1'").await,
        0
    );
    assert_eq!(
        visible(&ingest.db.app, ingest.tenant_id, "control_id = 'W2'").await,
        1
    );
}

#[tokio::test]
async fn a_group_meeting_its_key_in_another_transaction_that_rolls_back_stores_the_message() {
    let ingest = setup(CommitterConfig::default()).await;
    let now = OffsetDateTime::now_utc();
    let other = hold_key(&ingest, "R1", "AR").await;
    let sent = message(now, "R1", "AA");
    let id = sent.id;
    let waiting = {
        let committer = ingest.committer.clone();
        let tenant_id = ingest.tenant_id;
        tokio::spawn(async move { committer.store(tenant_id, sent).await.unwrap() })
    };
    lock_waits_until(&ingest.db, 1).await;
    other.rollback().await.unwrap();
    assert_eq!(waiting.await.unwrap(), Stored::New);
    let stored: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT message_id, ack_code FROM ingest.message_keys WHERE control_id = 'R1'",
    )
    .fetch_all(&ingest.db.admin)
    .await
    .unwrap();
    assert_eq!(stored, vec![(id, "AA".to_owned())]);
    assert_eq!(
        visible(&ingest.db.app, ingest.tenant_id, "control_id = 'R1'").await,
        1
    );
}

#[tokio::test]
async fn many_connections_sending_the_same_control_ids_at_once_store_each_once_and_all_get_its_answer()
 {
    const CONNECTIONS: usize = 24;
    const ROUNDS: usize = 15;
    const KEYS: usize = 3;
    let db = TestDb::migrated(&schema::migrator()).await;
    let server = crate::start(&db, |_| {}).await;
    let barrier = Arc::new(tokio::sync::Barrier::new(CONNECTIONS));
    let mut clients = Vec::new();
    for c in 0..CONNECTIONS {
        let mut client = crate::connect(&server).await;
        let barrier = barrier.clone();
        clients.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            for round in 0..ROUNDS {
                // Every connection sends one of the round's keys, all at once: the
                // groups committing together carry the same keys, in different orders.
                let control_id = format!("S{round}-{}", (c + round) % KEYS);
                // Half of them would be accepted, half rejected (an unsupported
                // type): all must get the answer of the one that was stored.
                let sent = if c % 2 == 0 {
                    crate::adt("LAB", &control_id)
                } else {
                    format!(
                        "MSH|^~\\&|LAB|HOSP|TENET|CLINIC|20240102030405||ZZZ^Z01|{control_id}|P|2.5.1\r"
                    )
                };
                barrier.wait().await;
                let ack = crate::exchange(&mut client, &sent).await;
                assert_eq!(ack.control_id, control_id);
                answers.push((control_id, ack.code));
            }
            answers
        }));
    }
    let mut answers: HashMap<String, Vec<String>> = HashMap::new();
    for client in clients {
        for (control_id, code) in client.await.unwrap() {
            answers.entry(control_id).or_default().push(code);
        }
    }
    let stored: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT control_id, min(ack_code), count(*) FROM ingest.messages \
         WHERE tenant_id = $1 GROUP BY control_id",
    )
    .bind(server.tenant_id.as_uuid())
    .fetch_all(&db.admin)
    .await
    .unwrap();
    assert_eq!(stored.len(), ROUNDS * KEYS);
    assert_eq!(answers.len(), ROUNDS * KEYS);
    for (control_id, ack_code, n) in stored {
        assert_eq!(n, 1, "{control_id} stored {n} times");
        let codes = &answers[&control_id];
        assert_eq!(codes.len(), CONNECTIONS / KEYS);
        assert!(
            codes.iter().all(|code| *code == ack_code),
            "{control_id} was stored answered {ack_code}, its senders got {codes:?}"
        );
    }
    let n_keys: i64 = sqlx::query_scalar("SELECT count(*) FROM ingest.message_keys")
        .fetch_one(&db.admin)
        .await
        .unwrap();
    assert_eq!(n_keys, i64::try_from(ROUNDS * KEYS).unwrap());
}

#[tokio::test]
async fn a_group_takes_its_keys_in_key_order_so_a_transaction_taking_them_in_another_order_cannot_deadlock_with_it()
 {
    // One group at a time, so the two messages below are one group.
    let ingest = setup(CommitterConfig {
        commits_in_flight: 1,
        group_max: 8,
        queue_max: 16,
    })
    .await;
    let now = OffsetDateTime::now_utc();
    let insert_key = |control_id: &'static str, ack_code: &'static str| {
        sqlx::query(
            "INSERT INTO ingest.message_keys (tenant_id, sending_application, sending_facility, \
             control_id, message_id, ack_code, received_at) \
             VALUES ($1, 'LAB', 'HOSP', $2, $3, $4, now())",
        )
        .bind(ingest.tenant_id.as_uuid())
        .bind(control_id)
        .bind(Uuid::now_v7())
        .bind(ack_code)
    };
    // Another writer (as another node's group would) holds K1 and will take K2 next,
    // and looks for a deadlock soon after it starts waiting: if the group held K2
    // while waiting for K1, this transaction would be the one to fail.
    let mut other = ingest.db.admin.begin().await.unwrap();
    sqlx::query("SET LOCAL deadlock_timeout = '20ms'")
        .execute(&mut *other)
        .await
        .unwrap();
    insert_key("K1", "AE").execute(&mut *other).await.unwrap();

    // The group [K2, K1], in that order of arrival: held back behind a first group
    // until both are queued (the owner's lock: the superuser pool has two connections).
    let mut lock = ingest.db.owner.begin().await.unwrap();
    sqlx::query("LOCK TABLE ingest.messages IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let store = |control_id: &str| {
        let committer = ingest.committer.clone();
        let tenant_id = ingest.tenant_id;
        let message = message(now, control_id, "AA");
        tokio::spawn(async move { committer.store(tenant_id, message).await.unwrap() })
    };
    let first = store("K0");
    lock_waits_until(&ingest.db, 1).await;
    let k2 = store("K2");
    let backlog = ingest.committer.backlog();
    crate::partitions::wait_until(|| backlog.get() == 1).await;
    let k1 = store("K1");
    crate::partitions::wait_until(|| backlog.get() == 2).await;
    lock.commit().await.unwrap();
    assert_eq!(first.await.unwrap(), Stored::New);
    // The group waits on K1, holding nothing the other writer needs.
    lock_waits_until(&ingest.db, 1).await;
    insert_key("K2", "AR")
        .execute(&mut *other)
        .await
        .expect("no deadlock");
    other.commit().await.unwrap();
    assert_eq!(
        k1.await.unwrap(),
        Stored::Duplicate {
            ack_code: AckCode::from_code("AE").unwrap()
        }
    );
    assert_eq!(
        k2.await.unwrap(),
        Stored::Duplicate {
            ack_code: AckCode::from_code("AR").unwrap()
        }
    );
}
