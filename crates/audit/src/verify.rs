//! Verification: re-walk every lane of a tenant's chain and check every checkpoint.
//!
//! Reports, rather than stops at, every problem it finds, each with the lane and
//! sequence number where it shows, so an operator knows what was touched.

use std::collections::HashMap;
use std::fmt;

use db::TenantTx;
use ed25519_dalek::VerifyingKey;
use futures::TryStreamExt;
use kernel::TenantId;
use uuid::Uuid;

use crate::chain::{Hash, RawEvent, genesis};
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

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// The columns the verifier's COPY selects.
const N_COLUMNS: usize = 13;
/// The signature that opens PostgreSQL's binary COPY format.
const COPY_SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

fn protocol(what: &str) -> sqlx::Error {
    sqlx::Error::Protocol(format!("reading the audit log: {what}"))
}

/// A fixed-width binary field.
fn fixed<const N: usize>(field: Option<&[u8]>) -> Result<[u8; N], sqlx::Error> {
    field
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| protocol("a fixed-width column has the wrong width"))
}

/// An incremental reader of PostgreSQL's binary COPY format: a signature and
/// header, then tuples of length-prefixed fields, then a trailer of -1.
#[derive(Default)]
struct BinaryCopy {
    buf: Vec<u8>,
    pos: usize,
    header_read: bool,
    finished: bool,
}

impl BinaryCopy {
    fn push(&mut self, chunk: &[u8]) {
        // Drop what was consumed before growing; rows are small, so this stays short.
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(chunk);
    }

    fn field(&self, range: Option<(usize, usize)>) -> Option<&[u8]> {
        range.map(|(start, end)| &self.buf[start..end])
    }

    /// Reads the next complete tuple into `fields` (byte ranges of `buf`, `None` for
    /// NULL). Returns false when more bytes are needed or the trailer was read.
    fn next_row(
        &mut self,
        fields: &mut [Option<(usize, usize)>; N_COLUMNS],
    ) -> Result<bool, sqlx::Error> {
        let available = &self.buf[self.pos..];
        let mut at = 0;
        if !self.header_read {
            let fixed_len = COPY_SIGNATURE.len() + 8;
            if available.len() < fixed_len {
                return Ok(false);
            }
            if &available[..COPY_SIGNATURE.len()] != COPY_SIGNATURE {
                return Err(protocol("not a binary COPY stream"));
            }
            let extension = u32::from_be_bytes(
                available[COPY_SIGNATURE.len() + 4..fixed_len]
                    .try_into()
                    .expect("BUG: 4 bytes"),
            ) as usize;
            if available.len() < fixed_len + extension {
                return Ok(false);
            }
            self.pos += fixed_len + extension;
            self.header_read = true;
            return self.next_row(fields);
        }
        if self.finished || available.len() < 2 {
            return Ok(false);
        }
        let n_fields = i16::from_be_bytes([available[0], available[1]]);
        at += 2;
        if n_fields == -1 {
            self.finished = true;
            self.pos += at;
            return Ok(false);
        }
        if n_fields as usize != N_COLUMNS {
            return Err(protocol("unexpected column count"));
        }
        for slot in fields.iter_mut() {
            if available.len() < at + 4 {
                return Ok(false);
            }
            let len = i32::from_be_bytes(available[at..at + 4].try_into().expect("BUG: 4 bytes"));
            at += 4;
            if len < 0 {
                *slot = None;
                continue;
            }
            let len = len as usize;
            if available.len() < at + len {
                return Ok(false);
            }
            *slot = Some((self.pos + at, self.pos + at + len));
            at += len;
        }
        self.pos += at;
        Ok(true)
    }
}

/// The state of one lane while walking it.
struct LaneWalk {
    last_seq: i64,
    last_hash: Hash,
    /// seq → hash, kept only for positions some checkpoint names.
    checkpointed: HashMap<i64, Hash>,
    problems: Vec<ProblemKind>,
    /// A row arrived out of sequence order; the lane must be walked again in order.
    disordered: bool,
}

/// The columns of an event, in the order [`walk`] reads them.
const EVENT_COLUMNS: &str = "lane, seq, id, occurred_at, actor, action, patient_id, purpose, request_id, \
     break_glass, details::text, prev_hash, hash";

/// Streams the rows `statement` (a binary COPY of [`EVENT_COLUMNS`]) yields through
/// the chain check of their lanes. Returns how many rows it read.
async fn walk(
    tx: &mut TenantTx,
    statement: &str,
    wanted: &HashMap<(i16, i64), ()>,
    lanes: &mut HashMap<i16, LaneWalk>,
    on_progress: &mut impl FnMut(u64),
) -> Result<u64, sqlx::Error> {
    let tenant_id = tx.tenant_id();
    let tenant_bytes = *tenant_id.as_uuid().as_bytes();
    let mut scratch = Vec::with_capacity(512);
    let mut n_rows = 0u64;
    let mut stream = tx.copy_out_raw(statement).await?;
    let mut copy = BinaryCopy::default();
    let mut fields = [None; N_COLUMNS];
    loop {
        if !copy.next_row(&mut fields)? {
            match stream.try_next().await? {
                Some(chunk) => {
                    copy.push(&chunk);
                    continue;
                }
                None if copy.finished => break,
                None => return Err(protocol("the COPY stream ended mid-row")),
            }
        }
        n_rows += 1;
        if n_rows.is_multiple_of(65_536) {
            on_progress(n_rows);
        }
        let field = |i: usize| copy.field(fields[i]);
        let lane = i16::from_be_bytes(fixed(field(0))?);
        let seq = i64::from_be_bytes(fixed(field(1))?);
        let walk = lanes.entry(lane).or_insert_with(|| LaneWalk {
            last_seq: 0,
            last_hash: genesis(tenant_id, lane),
            checkpointed: HashMap::new(),
            problems: Vec::new(),
            disordered: false,
        });
        if walk.disordered {
            continue;
        }
        if seq <= walk.last_seq {
            walk.disordered = true;
            continue;
        }
        let occurred_at = i64::from_be_bytes(fixed(field(3))?) + PG_EPOCH_MICROS;
        let details_text = field(10).unwrap_or(b"{}");
        let details_owned;
        let details: &[u8] = if details_text == b"{}" {
            details_text
        } else {
            // jsonb prints with spaces and its own key order; the chain hashed
            // serde_json's form, so re-serialise.
            let value: serde_json::Value =
                serde_json::from_slice(details_text).unwrap_or(serde_json::Value::Null);
            details_owned = serde_json::to_vec(&value).expect("BUG: JSON value always serialises");
            &details_owned
        };
        let event = RawEvent {
            tenant_id: &tenant_bytes,
            lane,
            seq,
            id: field(2).unwrap_or_default(),
            occurred_at_micros: occurred_at,
            actor: field(4).unwrap_or_default(),
            action: field(5).unwrap_or_default(),
            patient_id: field(6),
            purpose: field(7),
            request_id: field(8),
            break_glass: field(9) == Some(&[1][..]),
            details,
        };
        let prev_hash = field(11).unwrap_or_default();
        let stored_hash = field(12).unwrap_or_default();
        if seq != walk.last_seq + 1 {
            walk.problems.push(ProblemKind::Missing {
                lane,
                from_seq: walk.last_seq + 1,
                to_seq: seq - 1,
            });
        } else if prev_hash != walk.last_hash {
            walk.problems.push(ProblemKind::BrokenLink { lane, seq });
        }
        let computed = event.hash(&walk.last_hash, &mut scratch);
        // Recompute against the row's own claimed predecessor too: a row whose
        // content is intact but which was moved is a broken link, not an edit.
        if computed != stored_hash && event.hash(prev_hash, &mut scratch) != stored_hash {
            walk.problems.push(ProblemKind::Edited { lane, seq });
        }
        // Continue from the stored hash so one bad row is reported once, not as a
        // cascade down the rest of the lane.
        walk.last_hash = stored_hash.try_into().unwrap_or(computed);
        walk.last_seq = seq;
        if wanted.contains_key(&(lane, seq)) {
            walk.checkpointed.insert(seq, computed);
        }
    }
    Ok(n_rows)
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

    // Pass 1 reads the tenant's rows in physical order, which skips a sort. The log is
    // insert-only and a lane's appends are serialised by its head lock, so each
    // lane's rows arrive in sequence; a lane whose rows do not (a superuser moved
    // them) is walked again in sequence order by pass 2, and only pass 2's findings
    // count for it.
    let mut lanes: HashMap<i16, LaneWalk> = HashMap::new();
    // One big sequential read: compiling it with JIT costs more than it saves.
    sqlx::query("SET LOCAL jit = off")
        .execute(&mut **tx)
        .await?;
    let unordered = format!(
        "COPY (SELECT {EVENT_COLUMNS} FROM audit.events WHERE tenant_id = '{tenant_id}') TO STDOUT (FORMAT binary)"
    );
    report.n_events = walk(tx, &unordered, &wanted, &mut lanes, &mut on_progress).await?;
    let mut disordered: Vec<i16> = lanes
        .iter()
        .filter(|(_, walk)| walk.disordered)
        .map(|(lane, _)| *lane)
        .collect();
    disordered.sort_unstable();
    for lane in disordered {
        lanes.remove(&lane);
        let ordered = format!(
            "COPY (SELECT {EVENT_COLUMNS} FROM audit.events WHERE tenant_id = '{tenant_id}' AND lane = {lane}
                   ORDER BY seq) TO STDOUT (FORMAT binary)"
        );
        walk(tx, &ordered, &wanted, &mut lanes, &mut |_| {}).await?;
    }
    let mut lane_ids: Vec<i16> = lanes.keys().copied().collect();
    lane_ids.sort_unstable();
    for lane in lane_ids {
        let walk = lanes.get_mut(&lane).expect("BUG: lane listed from the map");
        report.problems.extend(walk.problems.drain(..).map(problem));
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
