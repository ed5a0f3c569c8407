//! What a superuser can do to the log, and what verification says about it.
//!
//! Each test appends a clean log, tampers with it as the cluster superuser (user
//! triggers off, as an attacker would), and asserts that `verify_tenant` names
//! exactly what was done and where — and that a second tenant's log, untouched,
//! still verifies.

use audit::chain::{ChainedEvent, Hash, genesis};
use audit::{CheckpointKey, ProblemKind};
use db::testing::TestDb;
use kernel::{PatientId, RequestId, TenantId};
use sqlx::Row;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{
    append_events, as_attacker, attacker_tx, busiest_lane, checkpoint, create_tenant, database,
    problems,
};

/// Events appended to each tenant: the busiest lane gets at least 64 / 8 = 8.
const N_EVENTS: usize = 64;

/// A database with two tenants' clean logs: the victim's and a bystander's.
async fn two_logs() -> (TestDb, TenantId, TenantId) {
    let db = database().await;
    let victim = create_tenant(&db, "Victim").await;
    let bystander = create_tenant(&db, "Bystander").await;
    append_events(&db, victim, N_EVENTS).await;
    append_events(&db, bystander, N_EVENTS).await;
    (db, victim, bystander)
}

/// The row of `tenant_id`'s `lane` at `seq`, in SQL.
fn row(tenant_id: TenantId, lane: i16, seq: i64) -> String {
    format!("tenant_id = '{tenant_id}' AND lane = {lane} AND seq = {seq}")
}

/// The rows of one lane from `from_seq` on, as the chain sees them, with their
/// stored hashes: what an attacker who knows the algorithm reads before rewriting.
async fn lane_rows(
    db: &TestDb,
    tenant_id: TenantId,
    lane: i16,
    from_seq: i64,
) -> Vec<(ChainedEvent, Hash)> {
    let rows = sqlx::query(
        "SELECT seq, id, occurred_at, actor, action, patient_id, purpose, request_id, break_glass,
                details, hash
         FROM audit.events WHERE tenant_id = $1 AND lane = $2 AND seq >= $3 ORDER BY seq",
    )
    .bind(tenant_id.as_uuid())
    .bind(lane)
    .bind(from_seq)
    .fetch_all(&db.admin)
    .await
    .unwrap();
    rows.into_iter()
        .map(|row| {
            let event = ChainedEvent {
                tenant_id,
                lane,
                seq: row.get("seq"),
                id: row.get("id"),
                occurred_at: row.get::<OffsetDateTime, _>("occurred_at"),
                actor: row.get("actor"),
                action: row.get("action"),
                patient_id: row
                    .get::<Option<Uuid>, _>("patient_id")
                    .map(PatientId::new_unchecked),
                purpose: row.get("purpose"),
                request_id: row
                    .get::<Option<Uuid>, _>("request_id")
                    .map(RequestId::new_unchecked),
                break_glass: row.get("break_glass"),
                details: row.get("details"),
            };
            let hash: Vec<u8> = row.get("hash");
            (event, hash.try_into().unwrap())
        })
        .collect()
}

/// The stored hash of the row before `seq` (the genesis hash for the first row).
async fn hash_before(db: &TestDb, tenant_id: TenantId, lane: i16, seq: i64) -> Hash {
    if seq == 1 {
        return genesis(tenant_id, lane);
    }
    let (_, hash) = lane_rows(db, tenant_id, lane, seq - 1).await.remove(0);
    hash
}

#[tokio::test]
async fn an_edited_action_or_purpose_is_reported_as_edited_at_its_lane_and_seq() {
    let (db, victim, bystander) = two_logs().await;
    let key = CheckpointKey::generate();
    let (lane, last_seq) = busiest_lane(&db, victim).await;
    let other_lane = (lane + 1) % audit::LANES;
    let (seq, other_seq) = (last_seq / 2, 1);

    as_attacker(
        &db,
        &format!(
            "UPDATE audit.events SET action = 'patient.list' WHERE {};
             UPDATE audit.events SET purpose = 'marketing' WHERE {}",
            row(victim, lane, seq),
            row(victim, other_lane, other_seq),
        ),
    )
    .await;

    let mut found = problems(&db, victim, &key).await;
    found.sort_by_key(|kind| match kind {
        ProblemKind::Edited { lane, .. } => *lane,
        _ => i16::MAX,
    });
    let mut expected = vec![
        ProblemKind::Edited { lane, seq },
        ProblemKind::Edited {
            lane: other_lane,
            seq: other_seq,
        },
    ];
    expected.sort_by_key(|kind| match kind {
        ProblemKind::Edited { lane, .. } => *lane,
        _ => i16::MAX,
    });
    assert_eq!(found, expected);
    assert_eq!(problems(&db, bystander, &key).await, vec![]);
}

#[tokio::test]
async fn a_deleted_middle_row_is_reported_missing() {
    let (db, victim, bystander) = two_logs().await;
    let key = CheckpointKey::generate();
    let (lane, last_seq) = busiest_lane(&db, victim).await;
    let seq = last_seq / 2;

    as_attacker(
        &db,
        &format!("DELETE FROM audit.events WHERE {}", row(victim, lane, seq)),
    )
    .await;

    assert_eq!(
        problems(&db, victim, &key).await,
        vec![ProblemKind::Missing {
            lane,
            from_seq: seq,
            to_seq: seq
        }]
    );
    assert_eq!(problems(&db, bystander, &key).await, vec![]);
}

#[tokio::test]
async fn two_rows_with_swapped_seqs_are_reported_where_they_moved() {
    let (db, victim, bystander) = two_logs().await;
    let key = CheckpointKey::generate();
    let (lane, last_seq) = busiest_lane(&db, victim).await;
    let (a, b) = (2, last_seq - 2);
    assert!(a + 1 < b, "BUG: the busiest lane is too short");

    // Through a free seq, as the primary key wants.
    as_attacker(
        &db,
        &format!(
            "UPDATE audit.events SET seq = 1000000 WHERE {};
             UPDATE audit.events SET seq = {a} WHERE {};
             UPDATE audit.events SET seq = {b} WHERE {}",
            row(victim, lane, a),
            row(victim, lane, b),
            row(victim, lane, 1_000_000),
        ),
    )
    .await;

    let found = problems(&db, victim, &key).await;
    let at = |seq: i64| {
        found.iter().any(|kind| {
            matches!(kind, ProblemKind::Edited { lane: l, seq: s } | ProblemKind::BrokenLink { lane: l, seq: s }
                if *l == lane && *s == seq)
        })
    };
    assert!(at(a) && at(b), "both moved rows are reported: {found:?}");
    assert!(
        found.iter().all(|kind| matches!(
            kind,
            ProblemKind::Edited { lane: l, seq: s } | ProblemKind::BrokenLink { lane: l, seq: s }
                if *l == lane && (a..=b + 1).contains(s)
        )),
        "only edits and broken links around the swap: {found:?}"
    );
    assert_eq!(problems(&db, bystander, &key).await, vec![]);
}

#[tokio::test]
async fn a_forged_row_inserted_mid_lane_is_reported_even_with_a_correct_hash() {
    let (db, victim, bystander) = two_logs().await;
    let key = CheckpointKey::generate();
    let (lane, last_seq) = busiest_lane(&db, victim).await;
    let seq = last_seq / 2;

    // The forged event claims `seq`, follows the real row before it, and carries a
    // hash correctly computed by an attacker who knows the algorithm.
    let prev = hash_before(&db, victim, lane, seq).await;
    let (displaced, _) = lane_rows(&db, victim, lane, seq).await.remove(0);
    let forged = ChainedEvent {
        id: Uuid::now_v7(),
        actor: "user:someone-else".into(),
        action: "patient.read".into(),
        patient_id: Some(PatientId::generate()),
        purpose: Some("treatment".into()),
        request_id: None,
        break_glass: false,
        details: serde_json::json!({}),
        ..displaced
    };
    let forged_hash = forged.hash(&prev, &mut Vec::new());
    let mut tx = attacker_tx(&db).await;
    // Make room: every later row moves up one seq (through free seqs, for the key).
    sqlx::raw_sql(&format!(
        "UPDATE audit.events SET seq = seq + 1000000 WHERE tenant_id = '{victim}' AND lane = {lane} AND seq >= {seq};
         UPDATE audit.events SET seq = seq - 999999 WHERE tenant_id = '{victim}' AND lane = {lane} AND seq >= 1000000;
         UPDATE audit.chain_heads SET seq = seq + 1 WHERE tenant_id = '{victim}' AND lane = {lane}"
    ))
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO audit.events (tenant_id, lane, seq, id, occurred_at, actor, action, patient_id,
                                   purpose, request_id, break_glass, details, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, false, '{}', $10, $11)",
    )
    .bind(victim.as_uuid())
    .bind(lane)
    .bind(seq)
    .bind(forged.id)
    .bind(forged.occurred_at)
    .bind(&forged.actor)
    .bind(&forged.action)
    .bind(forged.patient_id.map(PatientId::into_uuid))
    .bind(&forged.purpose)
    .bind(&prev[..])
    .bind(&forged_hash[..])
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();

    // The forged row links, but the row it displaced no longer follows it, and every
    // row that moved up carries a seq its hash does not cover.
    let mut expected = vec![ProblemKind::BrokenLink { lane, seq: seq + 1 }];
    expected.extend((seq + 1..=last_seq + 1).map(|seq| ProblemKind::Edited { lane, seq }));
    assert_eq!(problems(&db, victim, &key).await, expected);
    assert_eq!(problems(&db, bystander, &key).await, vec![]);
}

#[tokio::test]
async fn a_tail_cut_after_a_checkpoint_is_reported_truncated_even_with_the_head_moved_back() {
    let (db, victim, bystander) = two_logs().await;
    let key = CheckpointKey::generate();
    checkpoint(&db, victim, &key).await;
    let (lane, last_seq) = busiest_lane(&db, victim).await;
    let new_last_seq = last_seq - 3;

    // A careful attacker cuts the last three rows and points the head at the new
    // last row, so the chain itself is consistent again.
    let (_, new_last_hash) = lane_rows(&db, victim, lane, new_last_seq).await.remove(0);
    as_attacker(
        &db,
        &format!(
            "DELETE FROM audit.events WHERE tenant_id = '{victim}' AND lane = {lane} AND seq > {new_last_seq};
             UPDATE audit.chain_heads SET seq = {new_last_seq}, hash = '\\x{}'::bytea
                 WHERE tenant_id = '{victim}' AND lane = {lane}",
            hex::encode(new_last_hash)
        ),
    )
    .await;

    assert_eq!(
        problems(&db, victim, &key).await,
        vec![ProblemKind::Truncated {
            lane,
            checkpoint_seq: last_seq,
            last_seq: new_last_seq
        }]
    );
    assert_eq!(problems(&db, bystander, &key).await, vec![]);
}

#[tokio::test]
async fn a_tail_cut_without_touching_the_heads_is_a_head_mismatch() {
    let (db, victim, bystander) = two_logs().await;
    let key = CheckpointKey::generate();
    let (lane, last_seq) = busiest_lane(&db, victim).await;

    as_attacker(
        &db,
        &format!(
            "DELETE FROM audit.events WHERE tenant_id = '{victim}' AND lane = {lane} AND seq > {}",
            last_seq - 2
        ),
    )
    .await;
    assert_eq!(
        problems(&db, victim, &key).await,
        vec![ProblemKind::HeadMismatch {
            lane,
            head_seq: last_seq,
            last_seq: last_seq - 2
        }]
    );

    // And a whole lane cut away.
    as_attacker(
        &db,
        &format!("DELETE FROM audit.events WHERE tenant_id = '{victim}' AND lane = {lane}"),
    )
    .await;
    assert_eq!(
        problems(&db, victim, &key).await,
        vec![ProblemKind::HeadMismatch {
            lane,
            head_seq: last_seq,
            last_seq: 0
        }]
    );
    assert_eq!(problems(&db, bystander, &key).await, vec![]);
}

#[tokio::test]
async fn rows_forged_into_a_lane_that_has_no_head_are_reported() {
    let (db, victim, bystander) = two_logs().await;
    let key = CheckpointKey::generate();
    checkpoint(&db, victim, &key).await;

    // A whole chain of forged events, correctly hashed from its own genesis, in a
    // lane the tenant's heads do not list: rows added without going through the chain.
    let forged_lane = audit::LANES + 3;
    let mut prev = genesis(victim, forged_lane);
    let mut tx = attacker_tx(&db).await;
    for seq in 1..=3 {
        let event = ChainedEvent {
            tenant_id: victim,
            lane: forged_lane,
            seq,
            id: Uuid::now_v7(),
            occurred_at: audit::chain::to_stored_precision(OffsetDateTime::now_utc()),
            actor: "user:framed".into(),
            action: "patient.read".into(),
            patient_id: Some(PatientId::generate()),
            purpose: None,
            request_id: None,
            break_glass: false,
            details: serde_json::json!({}),
        };
        let hash = event.hash(&prev, &mut Vec::new());
        sqlx::query(
            "INSERT INTO audit.events (tenant_id, lane, seq, id, occurred_at, actor, action, patient_id,
                                       break_glass, details, prev_hash, hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, false, '{}', $9, $10)",
        )
        .bind(victim.as_uuid())
        .bind(forged_lane)
        .bind(seq)
        .bind(event.id)
        .bind(event.occurred_at)
        .bind(&event.actor)
        .bind(&event.action)
        .bind(event.patient_id.map(PatientId::into_uuid))
        .bind(&prev[..])
        .bind(&hash[..])
        .execute(&mut *tx)
        .await
        .unwrap();
        prev = hash;
    }
    tx.commit().await.unwrap();

    assert_eq!(
        problems(&db, victim, &key).await,
        vec![ProblemKind::HeadMismatch {
            lane: forged_lane,
            head_seq: 0,
            last_seq: 3
        }]
    );
    assert_eq!(problems(&db, bystander, &key).await, vec![]);
}

#[tokio::test]
async fn an_edited_checkpoint_has_a_bad_signature() {
    let (db, victim, bystander) = two_logs().await;
    let key = CheckpointKey::generate();
    let signed = checkpoint(&db, victim, &key).await;
    let (lane, last_seq) = busiest_lane(&db, victim).await;
    let new_last_seq = last_seq - 2;

    // The attacker cuts a tail, moves the head back, and rewrites the checkpoint's
    // heads to match: the chain and the heads agree, only the signature does not.
    let (_, new_last_hash) = lane_rows(&db, victim, lane, new_last_seq).await.remove(0);
    let heads: Vec<audit::checkpoint::LaneHead> = signed
        .heads
        .iter()
        .map(|head| {
            if head.lane == lane {
                audit::checkpoint::LaneHead {
                    lane,
                    seq: new_last_seq,
                    hash: new_last_hash,
                }
            } else {
                head.clone()
            }
        })
        .collect();
    let mut tx = attacker_tx(&db).await;
    sqlx::raw_sql(&format!(
        "DELETE FROM audit.events WHERE tenant_id = '{victim}' AND lane = {lane} AND seq > {new_last_seq};
         UPDATE audit.chain_heads SET seq = {new_last_seq}, hash = '\\x{}'::bytea
             WHERE tenant_id = '{victim}' AND lane = {lane}",
        hex::encode(new_last_hash)
    ))
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query("UPDATE audit.checkpoints SET heads = $2 WHERE tenant_id = $1 AND id = $3")
        .bind(victim.as_uuid())
        .bind(serde_json::to_value(&heads).unwrap())
        .bind(signed.id)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        problems(&db, victim, &key).await,
        vec![ProblemKind::BadSignature {
            checkpoint: signed.id
        }]
    );

    // A flipped bit of the signature itself.
    let other = checkpoint(&db, bystander, &key).await;
    as_attacker(
        &db,
        &format!(
            "UPDATE audit.checkpoints SET signature = set_byte(signature, 10, get_byte(signature, 10) # 1)
             WHERE tenant_id = '{bystander}' AND id = '{}'",
            other.id
        ),
    )
    .await;
    let flipped: Vec<u8> =
        sqlx::query_scalar("SELECT signature FROM audit.checkpoints WHERE id = $1")
            .bind(other.id)
            .fetch_one(&db.admin)
            .await
            .unwrap();
    assert_ne!(
        flipped, other.signature,
        "BUG: the signature was not changed"
    );
    assert_eq!(
        problems(&db, bystander, &key).await,
        vec![ProblemKind::BadSignature {
            checkpoint: other.id
        }]
    );
}

#[tokio::test]
async fn a_checkpoint_signed_by_an_unknown_key_is_reported() {
    let (db, victim, _) = two_logs().await;
    let key = CheckpointKey::generate();
    let rogue = CheckpointKey::generate();
    let signed = checkpoint(&db, victim, &rogue).await;

    assert_eq!(
        problems(&db, victim, &key).await,
        vec![ProblemKind::UnknownKey {
            checkpoint: signed.id,
            key_id: rogue.key_id().to_owned()
        }]
    );
    // Once the key is known (a key retired from signing), its checkpoints verify.
    let report =
        crate::verify_with(&db, victim, &[key.verifying_key(), rogue.verifying_key()]).await;
    assert_eq!(report.problems, vec![]);
}

#[tokio::test]
async fn a_lane_rewritten_with_recomputed_hashes_is_caught_only_by_the_checkpoint() {
    let (db, victim, bystander) = two_logs().await;
    let key = CheckpointKey::generate();
    let signed = checkpoint(&db, victim, &key).await;
    let (lane, last_seq) = busiest_lane(&db, victim).await;
    let from_seq = last_seq / 2;

    // The attacker changes one event and recomputes every hash from it to the head,
    // exactly as `append` would have: every link and every hash is right again.
    let mut prev = hash_before(&db, victim, lane, from_seq).await;
    let mut tx = attacker_tx(&db).await;
    for (i, (mut event, _)) in lane_rows(&db, victim, lane, from_seq)
        .await
        .into_iter()
        .enumerate()
    {
        if i == 0 {
            event.action = "patient.list".into();
            event.purpose = Some("operations".into());
        }
        let hash = event.hash(&prev, &mut Vec::new());
        sqlx::query(
            "UPDATE audit.events SET action = $4, purpose = $5, prev_hash = $6, hash = $7
             WHERE tenant_id = $1 AND lane = $2 AND seq = $3",
        )
        .bind(victim.as_uuid())
        .bind(lane)
        .bind(event.seq)
        .bind(&event.action)
        .bind(&event.purpose)
        .bind(&prev[..])
        .bind(&hash[..])
        .execute(&mut *tx)
        .await
        .unwrap();
        prev = hash;
    }
    sqlx::query("UPDATE audit.chain_heads SET hash = $3 WHERE tenant_id = $1 AND lane = $2")
        .bind(victim.as_uuid())
        .bind(lane)
        .bind(&prev[..])
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    assert_eq!(
        problems(&db, victim, &key).await,
        vec![ProblemKind::CheckpointMismatch {
            lane,
            seq: last_seq,
            checkpoint: signed.id
        }]
    );
    assert_eq!(problems(&db, bystander, &key).await, vec![]);
}

#[tokio::test]
async fn rows_moved_on_disk_but_unchanged_still_verify_and_a_moved_edit_is_still_found() {
    // Verification reads rows in physical order first; a lane whose rows sit out of
    // sequence on disk (rewritten by VACUUM FULL, a restore, or a superuser) must be
    // walked again in sequence order, neither hiding nor inventing a problem.
    let (db, victim, bystander) = two_logs().await;
    let key = CheckpointKey::generate();
    let (lane, last_seq) = busiest_lane(&db, victim).await;
    let moved = format!(
        "tenant_id = '{victim}' AND lane = {lane} AND seq <= {}",
        last_seq / 2
    );
    // Re-insert the first half of the lane after the rest, byte for byte.
    as_attacker(
        &db,
        &format!(
            "CREATE TEMP TABLE moved AS SELECT * FROM audit.events WHERE {moved};
             DELETE FROM audit.events WHERE {moved};
             INSERT INTO audit.events SELECT * FROM moved ORDER BY seq DESC;"
        ),
    )
    .await;
    assert_eq!(
        problems(&db, victim, &key).await,
        vec![],
        "same rows, other places: intact"
    );

    // The same move with one row edited on the way is still an edit, at its seq.
    let seq = last_seq / 4 + 1;
    as_attacker(
        &db,
        &format!(
            "CREATE TEMP TABLE moved2 AS SELECT * FROM audit.events WHERE {moved};
             DELETE FROM audit.events WHERE {moved};
             UPDATE moved2 SET purpose = 'marketing' WHERE seq = {seq};
             INSERT INTO audit.events SELECT * FROM moved2 ORDER BY seq DESC;"
        ),
    )
    .await;
    assert_eq!(
        problems(&db, victim, &key).await,
        vec![ProblemKind::Edited { lane, seq }]
    );
    assert_eq!(problems(&db, bystander, &key).await, vec![]);
}
