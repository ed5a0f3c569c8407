//! Verification: re-walk every lane of a tenant's chain and check every checkpoint.
//!
//! Reports, rather than stops at, every problem it finds, each with the lane and
//! sequence number where it shows, so an operator knows what was touched.

use std::collections::HashMap;
use std::fmt;

use db::TenantTx;
use ed25519_dalek::VerifyingKey;
use futures::TryStreamExt;
use kernel::{PatientId, RequestId, TenantId};
use sqlx::Row;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::chain::{ChainedEvent, Hash, genesis};
use crate::checkpoint::{Checkpoint, checkpoints};

/// What was wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    /// The row's content no longer matches its hash: it was edited (or moved).
    Edited { lane: i16, seq: i64 },
    /// The row does not follow the one before it: rows were inserted or reordered.
    BrokenLink { lane: i16, seq: i64 },
    /// Sequence numbers are missing: rows were deleted.
    Missing {
        lane: i16,
        from_seq: i64,
        to_seq: i64,
    },
    /// The lane's recorded head is not its last row: the tail was cut off, or rows
    /// were added without going through the chain. A lane with rows but no head at
    /// all is reported with `head_seq` 0.
    HeadMismatch {
        lane: i16,
        head_seq: i64,
        last_seq: i64,
    },
    /// A signed checkpoint covers rows that are gone.
    Truncated {
        lane: i16,
        checkpoint_seq: i64,
        last_seq: i64,
    },
    /// The chain at a checkpointed position is not the chain that was signed.
    CheckpointMismatch {
        lane: i16,
        seq: i64,
        checkpoint: Uuid,
    },
    /// A checkpoint's signature does not verify: it was forged or edited.
    BadSignature { checkpoint: Uuid },
    /// A checkpoint was signed by a key we do not know.
    UnknownKey { checkpoint: Uuid, key_id: String },
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Edited { lane, seq } => write!(
                f,
                "lane {lane} seq {seq}: row edited (content does not match its hash)"
            ),
            Self::BrokenLink { lane, seq } => write!(
                f,
                "lane {lane} seq {seq}: row does not follow its predecessor (inserted or reordered)"
            ),
            Self::Missing {
                lane,
                from_seq,
                to_seq,
            } => write!(f, "lane {lane} seq {from_seq}..={to_seq}: rows deleted"),
            Self::HeadMismatch {
                lane,
                head_seq,
                last_seq,
            } => write!(
                f,
                "lane {lane}: head says seq {head_seq} but the last row is seq {last_seq} (tail truncated or rows added outside the chain)"
            ),
            Self::Truncated {
                lane,
                checkpoint_seq,
                last_seq,
            } => write!(
                f,
                "lane {lane}: checkpoint covers seq {checkpoint_seq} but the log ends at seq {last_seq} (truncated)"
            ),
            Self::CheckpointMismatch {
                lane,
                seq,
                checkpoint,
            } => write!(
                f,
                "lane {lane} seq {seq}: chain differs from checkpoint {checkpoint} (rewritten)"
            ),
            Self::BadSignature { checkpoint } => write!(
                f,
                "checkpoint {checkpoint}: signature invalid (forged or edited)"
            ),
            Self::UnknownKey { checkpoint, key_id } => {
                write!(f, "checkpoint {checkpoint}: signed by unknown key {key_id}")
            }
        }
    }
}

/// A problem in one tenant's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub tenant_id: TenantId,
    pub kind: ProblemKind,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tenant {}: {}", self.tenant_id, self.kind)
    }
}

/// The outcome of verifying one tenant.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub n_events: u64,
    pub n_checkpoints: u64,
    pub problems: Vec<Problem>,
}

/// The state of one lane while walking it.
struct LaneWalk {
    last_seq: i64,
    last_hash: Hash,
    /// seq → hash, kept only for positions some checkpoint names.
    checkpointed: HashMap<i64, Hash>,
}

/// Verifies the transaction's tenant against `keys` (the verifying keys of every
/// checkpoint key ever used). `on_progress` is called with the number of events
/// walked so far, every few thousand events.
pub async fn verify_tenant(
    tx: &mut TenantTx,
    keys: &[VerifyingKey],
    mut on_progress: impl FnMut(u64),
) -> Result<VerifyReport, sqlx::Error> {
    let tenant_id = tx.tenant_id();
    let mut report = VerifyReport::default();
    let problem = |kind| Problem { tenant_id, kind };

    let checkpoints: Vec<Checkpoint> = checkpoints(tx).await?;
    report.n_checkpoints = checkpoints.len() as u64;
    let mut wanted: HashMap<(i16, i64), ()> = HashMap::new();
    for checkpoint in &checkpoints {
        match keys
            .iter()
            .find(|key| crate::checkpoint::key_id(key) == checkpoint.key_id)
        {
            None => report.problems.push(problem(ProblemKind::UnknownKey {
                checkpoint: checkpoint.id,
                key_id: checkpoint.key_id.clone(),
            })),
            Some(key) if !checkpoint.signature_is_valid(key) => {
                report.problems.push(problem(ProblemKind::BadSignature {
                    checkpoint: checkpoint.id,
                }));
            }
            Some(_) => {}
        }
        for head in &checkpoint.heads {
            wanted.insert((head.lane, head.seq), ());
        }
    }

    let mut lanes: HashMap<i16, LaneWalk> = HashMap::new();
    let mut scratch = Vec::with_capacity(512);
    {
        let mut rows = sqlx::query(
            "SELECT lane, seq, id, occurred_at, actor, action, patient_id, purpose, request_id,
                    break_glass, details::text, prev_hash, hash
             FROM audit.events WHERE tenant_id = $1 ORDER BY lane, seq",
        )
        .bind(tenant_id.as_uuid())
        .fetch(&mut **tx);
        while let Some(row) = rows.try_next().await? {
            let lane: i16 = row.try_get(0)?;
            let seq: i64 = row.try_get(1)?;
            let details: String = row.try_get(10)?;
            let details = if details == "{}" {
                serde_json::Value::Object(Default::default())
            } else {
                serde_json::from_str(&details).unwrap_or(serde_json::Value::Null)
            };
            let event = ChainedEvent {
                tenant_id,
                lane,
                seq,
                id: row.try_get(2)?,
                occurred_at: row.try_get::<OffsetDateTime, _>(3)?,
                actor: row.try_get(4)?,
                action: row.try_get(5)?,
                patient_id: row
                    .try_get::<Option<Uuid>, _>(6)?
                    .map(PatientId::new_unchecked),
                purpose: row.try_get(7)?,
                request_id: row
                    .try_get::<Option<Uuid>, _>(8)?
                    .map(RequestId::new_unchecked),
                break_glass: row.try_get(9)?,
                details,
            };
            let prev_hash: &[u8] = row.try_get(11)?;
            let stored_hash: &[u8] = row.try_get(12)?;
            let walk = lanes.entry(lane).or_insert_with(|| LaneWalk {
                last_seq: 0,
                last_hash: genesis(tenant_id, lane),
                checkpointed: HashMap::new(),
            });
            if seq != walk.last_seq + 1 {
                report.problems.push(problem(ProblemKind::Missing {
                    lane,
                    from_seq: walk.last_seq + 1,
                    to_seq: seq - 1,
                }));
            } else if prev_hash != walk.last_hash {
                report
                    .problems
                    .push(problem(ProblemKind::BrokenLink { lane, seq }));
            }
            let computed = event.hash(&walk.last_hash, &mut scratch);
            // Recompute against the row's own claimed predecessor too: a row whose
            // content is intact but which was moved is a broken link, not an edit.
            let content_intact = prev_hash.len() == 32
                && event.hash(
                    prev_hash.try_into().expect("BUG: checked length"),
                    &mut scratch,
                ) == stored_hash;
            if computed != stored_hash && !content_intact {
                report
                    .problems
                    .push(problem(ProblemKind::Edited { lane, seq }));
            }
            // Continue from the stored hash so one bad row is reported once, not as a
            // cascade down the rest of the lane.
            walk.last_hash = stored_hash.try_into().unwrap_or(computed);
            walk.last_seq = seq;
            if wanted.contains_key(&(lane, seq)) {
                walk.checkpointed.insert(seq, computed);
            }
            report.n_events += 1;
            if report.n_events % 8192 == 0 {
                on_progress(report.n_events);
            }
        }
    }
    on_progress(report.n_events);

    let heads: Vec<(i16, i64, Vec<u8>)> = sqlx::query_as(
        "SELECT lane, seq, hash FROM audit.chain_heads WHERE tenant_id = $1 ORDER BY lane",
    )
    .bind(tenant_id.as_uuid())
    .fetch_all(&mut **tx)
    .await?;
    let mut headless: Vec<(i16, i64)> = lanes
        .iter()
        .filter(|(lane, _)| !heads.iter().any(|(head_lane, _, _)| head_lane == *lane))
        .map(|(lane, walk)| (*lane, walk.last_seq))
        .collect();
    headless.sort_unstable();
    // Rows in a lane the heads do not list were never appended through the chain.
    for (lane, last_seq) in headless {
        report.problems.push(problem(ProblemKind::HeadMismatch {
            lane,
            head_seq: 0,
            last_seq,
        }));
    }
    for (lane, head_seq, head_hash) in heads {
        let (last_seq, last_hash) = lanes
            .get(&lane)
            .map(|walk| (walk.last_seq, walk.last_hash))
            .unwrap_or((0, genesis(tenant_id, lane)));
        if head_seq != last_seq || head_hash != last_hash {
            report.problems.push(problem(ProblemKind::HeadMismatch {
                lane,
                head_seq,
                last_seq,
            }));
        }
    }
    for checkpoint in &checkpoints {
        for head in &checkpoint.heads {
            let walk = lanes.get(&head.lane);
            let last_seq = walk.map_or(0, |walk| walk.last_seq);
            if head.seq > last_seq {
                report.problems.push(problem(ProblemKind::Truncated {
                    lane: head.lane,
                    checkpoint_seq: head.seq,
                    last_seq,
                }));
            } else if head.seq > 0
                && walk.and_then(|walk| walk.checkpointed.get(&head.seq)) != Some(&head.hash)
            {
                report
                    .problems
                    .push(problem(ProblemKind::CheckpointMismatch {
                        lane: head.lane,
                        seq: head.seq,
                        checkpoint: checkpoint.id,
                    }));
            }
        }
    }
    Ok(report)
}
