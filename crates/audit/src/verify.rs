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
use sqlx::PgPool;
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
    /// How many connections read the log at once (see [`VerifyOptions`]).
    pub streams: usize,
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

/// How [`verify_tenant`] reads a log.
#[derive(Debug, Clone, Copy)]
pub struct VerifyOptions {
    /// Connections that read disjoint block ranges of the table at once, in one
    /// snapshot, when the tenant holds most of it (PostgreSQL producing the rows is
    /// the bound, not hashing them). The walking and hashing stay on one core.
    pub streams: usize,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            streams: std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .clamp(1, 4),
        }
    }
}

/// How long a verification waits for each extra connection before reading with the
/// ones it has.
const HELPER_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// A lane's first row in one segment (a stream's share of the table), kept to be
/// checked against the end of the lane in the segments before it once all are read.
struct FirstRow {
    seq: i64,
    prev_hash: Vec<u8>,
    stored_hash: Hash,
    /// The row's canonical encoding, to hash after the predecessor it must follow.
    encoded: Vec<u8>,
}

/// One lane's rows as one segment saw them. After the first, each row is checked
/// against the one before it as it arrives; the first is checked at the merge.
struct LaneWalk {
    /// `None` when the segment started the lane from its genesis (the first segment,
    /// or a walk of the lane in one piece).
    first: Option<FirstRow>,
    last_seq: i64,
    last_hash: Hash,
    /// seq → hash, kept only for positions some checkpoint names (after the first).
    checkpointed: HashMap<i64, Hash>,
    problems: Vec<ProblemKind>,
    /// A row arrived out of sequence order; the lane must be walked again in order.
    disordered: bool,
    /// The seq of the first row that arrived out of order.
    disordered_at: i64,
}

/// A whole lane after the merge.
#[derive(Debug, PartialEq, Eq)]
struct Lane {
    last_seq: i64,
    last_hash: Hash,
    checkpointed: HashMap<i64, Hash>,
    problems: Vec<ProblemKind>,
}

/// The columns of an event, in the order [`walk`] reads them.
const EVENT_COLUMNS: &str = "lane, seq, id, occurred_at, actor, action, patient_id, purpose, request_id, \
     break_glass, details::text, prev_hash, hash";

/// Counts rows across the segments read at once and reports progress.
struct Progress<'a, F: FnMut(u64)> {
    n_rows: std::cell::Cell<u64>,
    report: std::cell::RefCell<&'a mut F>,
}

impl<F: FnMut(u64)> Progress<'_, F> {
    fn add(&self, n: u64) {
        let total = self.n_rows.get() + n;
        self.n_rows.set(total);
        (self.report.borrow_mut())(total);
    }
}

/// The lanes of one segment: a reader's share of the table, in its order.
struct Segment {
    tenant_id: TenantId,
    /// Lanes start at their genesis (the first segment, or a lane read in one piece)
    /// rather than at a row whose predecessor is in an earlier segment.
    from_genesis: bool,
    lanes: HashMap<i16, LaneWalk>,
    scratch: Vec<u8>,
}

impl Segment {
    fn new(tenant_id: TenantId, from_genesis: bool) -> Self {
        Self {
            tenant_id,
            from_genesis,
            lanes: HashMap::new(),
            scratch: Vec::with_capacity(512),
        }
    }

    /// Whether the row at `lane`/`seq` is passed over: its lane already went out of
    /// order (it is walked again in order), or this row does so now.
    fn skips(&mut self, lane: i16, seq: i64) -> bool {
        match self.lanes.get_mut(&lane) {
            Some(walk) if walk.disordered || seq <= walk.last_seq => {
                if !walk.disordered {
                    walk.disordered = true;
                    walk.disordered_at = seq;
                }
                true
            }
            _ => false,
        }
    }

    /// Checks one row (not [`Segment::skips`]) against the one before it in its lane.
    fn row(
        &mut self,
        event: &RawEvent<'_>,
        prev_hash: &[u8],
        stored_hash: &[u8],
        wanted: &HashMap<(i16, i64), ()>,
    ) {
        let (lane, seq) = (event.lane, event.seq);
        if self.from_genesis && !self.lanes.contains_key(&lane) {
            self.lanes.insert(
                lane,
                LaneWalk {
                    first: None,
                    last_seq: 0,
                    last_hash: genesis(self.tenant_id, lane),
                    checkpointed: HashMap::new(),
                    problems: Vec::new(),
                    disordered: false,
                    disordered_at: 0,
                },
            );
        }
        let Some(walk) = self.lanes.get_mut(&lane) else {
            // The lane's first row in a later segment: what it must follow is known
            // only at the join. A stored hash of the wrong width cannot be continued
            // from, so such a lane is walked again, in order, in one piece.
            let mut encoded = Vec::with_capacity(256);
            event.encode(&mut encoded);
            let stored: Option<Hash> = stored_hash.try_into().ok();
            self.lanes.insert(
                lane,
                LaneWalk {
                    first: Some(FirstRow {
                        seq,
                        prev_hash: prev_hash.to_vec(),
                        stored_hash: stored.unwrap_or_default(),
                        encoded,
                    }),
                    last_seq: seq,
                    last_hash: stored.unwrap_or_default(),
                    checkpointed: HashMap::new(),
                    problems: Vec::new(),
                    disordered: stored.is_none(),
                    disordered_at: seq,
                },
            );
            return;
        };
        if seq != walk.last_seq + 1 {
            walk.problems.push(ProblemKind::Missing {
                lane,
                from_seq: walk.last_seq + 1,
                to_seq: seq - 1,
            });
        } else if prev_hash != walk.last_hash {
            walk.problems.push(ProblemKind::BrokenLink { lane, seq });
        }
        let scratch = &mut self.scratch;
        let computed = event.hash(&walk.last_hash, scratch);
        // Recompute against the row's own claimed predecessor too: a row whose
        // content is intact but which was moved is a broken link, not an edit.
        if computed != stored_hash && event.hash(prev_hash, scratch) != stored_hash {
            walk.problems.push(ProblemKind::Edited { lane, seq });
        }
        // Continue from the stored hash so one bad row is reported once, not as a
        // cascade down the rest of the lane.
        walk.last_hash = stored_hash.try_into().unwrap_or(computed);
        walk.last_seq = seq;
        if !wanted.is_empty() && wanted.contains_key(&(lane, seq)) {
            walk.checkpointed.insert(seq, computed);
        }
    }
}

/// Streams the rows `statement` (a binary COPY of [`EVENT_COLUMNS`]) yields through
/// the chain check of their lanes, as one segment. Returns how many rows it read.
async fn walk<F: FnMut(u64)>(
    tx: &mut TenantTx,
    statement: &str,
    from_genesis: bool,
    wanted: &HashMap<(i16, i64), ()>,
    progress: &Progress<'_, F>,
) -> Result<(u64, HashMap<i16, LaneWalk>), sqlx::Error> {
    let tenant_id = tx.tenant_id();
    let tenant_bytes = *tenant_id.as_uuid().as_bytes();
    let mut segment = Segment::new(tenant_id, from_genesis);
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
            progress.add(65_536);
        }
        let field = |i: usize| copy.field(fields[i]);
        let lane = i16::from_be_bytes(fixed(field(0))?);
        let seq = i64::from_be_bytes(fixed(field(1))?);
        if segment.skips(lane, seq) {
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
        segment.row(
            &event,
            field(11).unwrap_or_default(),
            field(12).unwrap_or_default(),
            wanted,
        );
    }
    progress.add(n_rows % 65_536);
    Ok((n_rows, segment.lanes))
}

/// SHA-256 of `prev` followed by an already encoded event.
fn hash_encoded(prev: &[u8], encoded: &[u8]) -> Hash {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(prev);
    hasher.update(encoded);
    hasher.finalize().into()
}

/// Joins one lane's segments, in table order, into the walk of the whole lane, as if
/// it had been read in one piece. `None`: the lane's rows are out of order across or
/// within segments, and it must be walked again in sequence order.
fn merge_lane(
    tenant_id: TenantId,
    lane: i16,
    segments: Vec<LaneWalk>,
    wanted: &HashMap<(i16, i64), ()>,
) -> Option<Lane> {
    let mut whole = Lane {
        last_seq: 0,
        last_hash: genesis(tenant_id, lane),
        checkpointed: HashMap::new(),
        problems: Vec::new(),
    };
    for (i, segment) in segments.into_iter().enumerate() {
        if segment.disordered {
            return None;
        }
        let Some(first) = &segment.first else {
            // Walked from the genesis: only ever the first segment.
            assert_eq!(i, 0, "BUG: a later segment walked from the genesis");
            whole.problems = segment.problems;
            whole.checkpointed = segment.checkpointed;
            whole.last_seq = segment.last_seq;
            whole.last_hash = segment.last_hash;
            continue;
        };
        if first.seq <= whole.last_seq {
            return None;
        }
        if first.seq != whole.last_seq + 1 {
            whole.problems.push(ProblemKind::Missing {
                lane,
                from_seq: whole.last_seq + 1,
                to_seq: first.seq - 1,
            });
        } else if first.prev_hash != whole.last_hash {
            whole.problems.push(ProblemKind::BrokenLink {
                lane,
                seq: first.seq,
            });
        }
        let computed = hash_encoded(&whole.last_hash, &first.encoded);
        if computed != first.stored_hash
            && hash_encoded(&first.prev_hash, &first.encoded) != first.stored_hash
        {
            whole.problems.push(ProblemKind::Edited {
                lane,
                seq: first.seq,
            });
        }
        if wanted.contains_key(&(lane, first.seq)) {
            whole.checkpointed.insert(first.seq, computed);
        }
        whole.problems.extend(segment.problems);
        whole.checkpointed.extend(segment.checkpointed);
        whole.last_seq = segment.last_seq;
        whole.last_hash = segment.last_hash;
    }
    Some(whole)
}

/// The lane walked in one piece in sequence order. Still out of order there means two
/// rows share a seq (only possible once a superuser dropped the primary key): the walk
/// up to there is kept, with the second row reported as not following its predecessor.
fn walk_in_order(
    tenant_id: TenantId,
    lane: i16,
    segment: LaneWalk,
    wanted: &HashMap<(i16, i64), ()>,
) -> Lane {
    let duplicate = segment.disordered.then_some(segment.disordered_at);
    let partial = LaneWalk {
        disordered: false,
        ..segment
    };
    let mut whole = merge_lane(tenant_id, lane, vec![partial], wanted)
        .expect("BUG: a lane walked from its genesis always joins");
    if let Some(seq) = duplicate {
        whole.problems.push(ProblemKind::BrokenLink { lane, seq });
    }
    whole
}

/// Verifies `tenant_id`'s log against `keys` (the verifying keys of every checkpoint
/// key ever used), reading as the pool's role (the owner, for `tenet audit verify`)
/// in one read-only snapshot, so appends committed meanwhile are neither half seen
/// nor mistaken for tampering. `on_progress` is called with the number of events
/// walked so far, every few thousand events.
pub async fn verify_tenant(
    pool: &PgPool,
    tenant_id: TenantId,
    keys: &[VerifyingKey],
    options: VerifyOptions,
    mut on_progress: impl FnMut(u64),
) -> Result<VerifyReport, sqlx::Error> {
    let mut snapshot_tx = TenantTx::begin_as_snapshot(pool, tenant_id, "system", None).await?;
    let tx = &mut snapshot_tx;
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
    // count for it. A tenant holding most of the table is read as several block
    // ranges over as many connections sharing this snapshot; the segments are joined
    // lane by lane afterwards.
    let (n_blocks, n_rows_estimate, n_tenant_rows): (i64, f64, i64) = sqlx::query_as(
        "SELECT pg_relation_size('audit.events') / current_setting('block_size')::bigint,
                greatest(reltuples, 0)::float8,
                (SELECT coalesce(sum(seq), 0)::bigint FROM audit.chain_heads WHERE tenant_id = $1)
         FROM pg_class WHERE oid = 'audit.events'::regclass",
    )
    .bind(tenant_id.as_uuid())
    .fetch_one(&mut **tx)
    .await?;
    let streams = if n_tenant_rows as f64 >= 0.5 * n_rows_estimate && n_blocks >= 64 {
        // Every stream holds a connection of the pool at once.
        options
            .streams
            .clamp(1, pool.options().get_max_connections() as usize)
    } else {
        1
    };
    report.streams = streams;
    // One big sequential read: compiling it with JIT costs more than it saves.
    let no_jit = "SET LOCAL jit = off";
    sqlx::query(no_jit).execute(&mut **tx).await?;
    let select =
        format!("SELECT {EVENT_COLUMNS} FROM audit.events WHERE tenant_id = '{tenant_id}'");
    let progress = Progress {
        n_rows: std::cell::Cell::new(0),
        report: std::cell::RefCell::new(&mut on_progress),
    };
    let segments: Vec<(u64, HashMap<i16, LaneWalk>)> = if streams == 1 {
        let statement = format!("COPY ({select}) TO STDOUT (FORMAT binary)");
        vec![walk(tx, &statement, true, &wanted, &progress).await?]
    } else {
        let snapshot = tx.export_snapshot().await?;
        // Only the connections the pool can give soon: a busy pool slows the
        // verification down instead of making it wait on itself.
        let mut helpers = Vec::with_capacity(streams - 1);
        for _ in 1..streams {
            let begin = TenantTx::begin_as_snapshot(pool, tenant_id, "system", Some(&snapshot));
            match tokio::time::timeout(HELPER_WAIT, begin).await {
                Ok(helper) => {
                    let mut helper = helper?;
                    sqlx::query(no_jit).execute(&mut *helper).await?;
                    helpers.push(helper);
                }
                Err(_) => break,
            }
        }
        let streams = 1 + helpers.len();
        report.streams = streams;
        let statements: Vec<String> = (0..streams as i64)
            .map(|i| {
                let from = n_blocks * i / streams as i64;
                let to = n_blocks * (i + 1) / streams as i64;
                // The last range is open: rows of the snapshot in blocks added since
                // the size was read are still read.
                let upper = if i + 1 == streams as i64 {
                    String::new()
                } else {
                    format!(" AND ctid < '({to},0)'::tid")
                };
                format!(
                    "COPY ({select} AND ctid >= '({from},0)'::tid{upper}) TO STDOUT (FORMAT binary)"
                )
            })
            .collect();
        let mut txs: Vec<&mut TenantTx> = vec![&mut *tx];
        txs.extend(helpers.iter_mut());
        // One task: the streams interleave on this core while PostgreSQL's backends
        // produce their rows on the others.
        let reads = txs
            .into_iter()
            .zip(&statements)
            .enumerate()
            .map(|(i, (tx, statement))| walk(tx, statement, i == 0, &wanted, &progress));
        let segments = futures::future::try_join_all(reads).await?;
        for helper in helpers {
            helper.rollback().await?;
        }
        segments
    };
    let mut by_lane: HashMap<i16, Vec<LaneWalk>> = HashMap::new();
    for (n_rows, lanes) in segments {
        report.n_events += n_rows;
        for (lane, segment) in lanes {
            by_lane.entry(lane).or_default().push(segment);
        }
    }
    let mut lanes: HashMap<i16, Lane> = HashMap::new();
    let mut disordered: Vec<i16> = Vec::new();
    for (lane, segments) in by_lane {
        match merge_lane(tenant_id, lane, segments, &wanted) {
            Some(whole) => {
                lanes.insert(lane, whole);
            }
            None => disordered.push(lane),
        }
    }
    disordered.sort_unstable();
    for lane in disordered {
        let ordered =
            format!("COPY ({select} AND lane = {lane} ORDER BY seq) TO STDOUT (FORMAT binary)");
        let mut ignore = |_| {};
        let quiet = Progress {
            n_rows: std::cell::Cell::new(0),
            report: std::cell::RefCell::new(&mut ignore),
        };
        let (_, mut segment) = walk(tx, &ordered, true, &wanted, &quiet).await?;
        if let Some(segment) = segment.remove(&lane) {
            lanes.insert(lane, walk_in_order(tenant_id, lane, segment, &wanted));
        }
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
    snapshot_tx.rollback().await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row as the verifier reads it, owned.
    #[derive(Clone)]
    struct Row {
        lane: i16,
        seq: i64,
        id: [u8; 16],
        action: Vec<u8>,
        prev_hash: Vec<u8>,
        hash: Vec<u8>,
    }

    impl Row {
        fn raw<'a>(&'a self, tenant: &'a [u8; 16]) -> RawEvent<'a> {
            RawEvent {
                tenant_id: tenant,
                lane: self.lane,
                seq: self.seq,
                id: &self.id,
                occurred_at_micros: 1_700_000_000_000_000 + self.seq,
                actor: b"user:tester",
                action: &self.action,
                patient_id: None,
                purpose: Some(b"treatment"),
                request_id: None,
                break_glass: false,
                details: b"{}",
            }
        }
    }

    /// A clean log of `n` rows over 3 lanes, in the (uneven) order appends made it.
    fn log(tenant_id: TenantId, n: usize) -> Vec<Row> {
        let tenant = *tenant_id.as_uuid().as_bytes();
        let mut heads: Vec<(i64, Hash)> =
            (0..3).map(|lane| (0, genesis(tenant_id, lane))).collect();
        let mut scratch = Vec::new();
        (0..n)
            .map(|i| {
                let lane = [0, 1, 0, 2, 1, 0][i % 6];
                let (seq, prev) = heads[lane as usize];
                let mut row = Row {
                    lane,
                    seq: seq + 1,
                    id: uuid::Uuid::from_u128(i as u128).into_bytes(),
                    action: b"patient.read".to_vec(),
                    prev_hash: prev.to_vec(),
                    hash: Vec::new(),
                };
                let hash = row.raw(&tenant).hash(&prev, &mut scratch);
                row.hash = hash.to_vec();
                heads[lane as usize] = (seq + 1, hash);
                row
            })
            .collect()
    }

    /// The lanes as read in segments split before each index of `splits`, joined, and
    /// a lane that cannot be joined read again in sequence order, as `verify_tenant`
    /// does.
    fn read(
        tenant_id: TenantId,
        rows: &[Row],
        splits: &[usize],
        wanted: &HashMap<(i16, i64), ()>,
    ) -> Vec<(i16, Option<Lane>)> {
        let tenant = *tenant_id.as_uuid().as_bytes();
        let mut bounds = vec![0];
        bounds.extend_from_slice(splits);
        bounds.push(rows.len());
        let mut by_lane: HashMap<i16, Vec<LaneWalk>> = HashMap::new();
        for (i, range) in bounds.windows(2).enumerate() {
            let mut segment = Segment::new(tenant_id, i == 0);
            for row in &rows[range[0]..range[1]] {
                if !segment.skips(row.lane, row.seq) {
                    segment.row(&row.raw(&tenant), &row.prev_hash, &row.hash, wanted);
                }
            }
            for (lane, walk) in segment.lanes {
                by_lane.entry(lane).or_default().push(walk);
            }
        }
        let mut lanes: Vec<(i16, Option<Lane>)> = by_lane
            .into_iter()
            .map(|(lane, segments)| {
                let joined = merge_lane(tenant_id, lane, segments, wanted).or_else(|| {
                    let mut ordered: Vec<&Row> =
                        rows.iter().filter(|row| row.lane == lane).collect();
                    ordered.sort_by_key(|row| row.seq);
                    let mut segment = Segment::new(tenant_id, true);
                    for row in ordered {
                        if !segment.skips(row.lane, row.seq) {
                            segment.row(&row.raw(&tenant), &row.prev_hash, &row.hash, wanted);
                        }
                    }
                    let walk = segment.lanes.remove(&lane)?;
                    Some(walk_in_order(tenant_id, lane, walk, wanted))
                });
                (lane, joined)
            })
            .collect();
        lanes.sort_by_key(|(lane, _)| *lane);
        lanes
    }

    #[test]
    fn segments_joined_find_exactly_what_one_reader_finds_wherever_the_split_falls() {
        let tenant_id = TenantId::generate();
        let clean = log(tenant_id, 24);
        let wanted: HashMap<(i16, i64), ()> = [((0, 3), ()), ((1, 2), ()), ((2, 4), ())]
            .into_iter()
            .collect();
        type Tamper = fn(&mut Vec<Row>, usize);
        let tampers: [(&str, Tamper); 8] = [
            ("none", |_, _| {}),
            ("edited", |rows, at| {
                rows[at].action = b"patient.list".to_vec()
            }),
            ("deleted", |rows, at| {
                rows.remove(at);
            }),
            ("prev hash rewritten", |rows, at| {
                rows[at].prev_hash = vec![7; 32]
            }),
            ("hash replaced", |rows, at| {
                rows[at].hash = rows[at].prev_hash.clone()
            }),
            ("hash of the wrong width", |rows, at| {
                rows[at].hash.truncate(31)
            }),
            // Only once a superuser dropped the primary key: the lane must still be
            // reported, not left out.
            ("duplicated", |rows, at| {
                let copy = rows[at].clone();
                rows.insert(at + 1, copy);
            }),
            ("moved after the next row", |rows, at| {
                let row = rows.remove(at);
                rows.insert((at + 4).min(rows.len()), row);
            }),
        ];
        let mut seen_problems = 0;
        for (name, tamper) in tampers {
            for at in 0..clean.len() {
                let mut rows = clean.clone();
                tamper(&mut rows, at);
                let one = read(tenant_id, &rows, &[], &wanted);
                // What one reader finds is right, too: the tampered lane shows a
                // problem (a deleted last row shows only at the head, and a moved
                // row is no tampering at all).
                let hit = &clean[at];
                let last_of_lane = !clean[at + 1..].iter().any(|row| row.lane == hit.lane);
                let (_, joined) = one
                    .iter()
                    .find(|(lane, _)| *lane == hit.lane)
                    .expect("the tampered lane is read");
                let problems = &joined
                    .as_ref()
                    .expect("a lane read in order joins")
                    .problems;
                seen_problems += problems.len();
                match name {
                    "none" | "moved after the next row" => {
                        assert_eq!(problems, &vec![], "{name} at {at}");
                    }
                    "deleted" if last_of_lane => {}
                    _ => assert!(!problems.is_empty(), "{name} at {at} went unseen"),
                }
                let mut splits: Vec<Vec<usize>> = (1..rows.len()).map(|s| vec![s]).collect();
                splits.extend((1..rows.len() - 3).map(|s| vec![s, s + 1, s + 3]));
                for split in splits {
                    assert_eq!(
                        read(tenant_id, &rows, &split, &wanted),
                        one,
                        "{name} at {at}, read in segments split at {split:?}"
                    );
                }
            }
        }
        assert!(
            seen_problems > 100,
            "the tampering was seen: {seen_problems}"
        );
    }
}
