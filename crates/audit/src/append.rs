//! Appending to the log, in the caller's transaction.
//!
//! The event is written by the same transaction as the access it records: if the
//! append fails, the caller's transaction fails with it, and an access that rolled
//! back leaves no event. A lane's head row is locked until the transaction ends, so
//! each lane is a strict chain; the append takes any lane no one else holds. Taking
//! the lane, hashing the event after its head and writing both is one statement.

use db::TenantTx;
use kernel::{AuditEventId, PatientId};
use time::OffsetDateTime;

use crate::LANES;
use crate::chain::{ChainedEvent, genesis, to_stored_json, to_stored_precision};

/// What to record. Never put PHI values here: ids, an action and a purpose.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// Dotted lowercase: `patient.read`, `patient.create`, `break_glass.open`.
    pub action: &'static str,
    pub patient_id: Option<PatientId>,
    /// Why: the purpose of use (`treatment`, `operations`) or a break-glass reason.
    pub purpose: Option<String>,
    pub break_glass: bool,
    pub details: serde_json::Value,
}

impl AuditEntry {
    pub fn patient(action: &'static str, patient_id: PatientId) -> Self {
        Self {
            action,
            patient_id: Some(patient_id),
            purpose: None,
            break_glass: false,
            details: serde_json::Value::Object(Default::default()),
        }
    }

    pub fn purpose(mut self, purpose: impl Into<String>) -> Self {
        self.purpose = Some(purpose.into());
        self
    }

    pub fn break_glass(mut self, break_glass: bool) -> Self {
        self.break_glass = break_glass;
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("the tenant has no audit chain; was it created with `tenet tenant create`?")]
    NoChain,
    #[error("writing the audit event")]
    Database(#[from] sqlx::Error),
}

/// Creates the genesis heads of a new tenant's lanes. Call in the transaction that
/// creates the tenant.
pub async fn init_tenant_chain(tx: &mut TenantTx) -> Result<(), sqlx::Error> {
    let tenant_id = tx.tenant_id();
    let lanes: Vec<i16> = (0..LANES).collect();
    let hashes: Vec<Vec<u8>> = lanes
        .iter()
        .map(|lane| genesis(tenant_id, *lane).to_vec())
        .collect();
    sqlx::query(
        "INSERT INTO audit.chain_heads (tenant_id, lane, seq, hash)
         SELECT $1, lane, 0, hash FROM unnest($2::smallint[], $3::bytea[]) AS h(lane, hash)
         ON CONFLICT DO NOTHING",
    )
    .bind(tenant_id.as_uuid())
    .bind(&lanes)
    .bind(&hashes)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Fails the caller's transaction in the database when there is no chain to append
/// to. A database error already aborts the transaction; this makes `NoChain` do the
/// same, so the access being recorded cannot be committed without its event even by
/// a caller that ignores the error.
async fn fail_transaction(tx: &mut TenantTx) -> AuditError {
    // The statement's error is the point: it leaves the transaction aborted.
    let _ = sqlx::query(
        "DO $$ BEGIN RAISE EXCEPTION 'the tenant has no audit chain' USING ERRCODE = 'no_data_found'; END $$",
    )
    .execute(&mut **tx)
    .await;
    AuditError::NoChain
}

/// The append as one statement, around the `WITH head AS (…)` that picks and locks
/// the lane: the event's hash is made where its place is learnt, from the head's
/// hash and the canonical encoding around the place ([`ChainedEvent::encode_around_place`],
/// `$2` and `$3`), so the lane costs no round trip of its own. Returns the lane
/// appended to; no row when no lane was taken.
macro_rules! append_with_head {
    ($head:literal) => {
        concat!(
            "WITH head AS (",
            $head,
            "),
             event AS (
                 SELECT lane, seq + 1 AS seq, hash AS prev_hash,
                        pg_catalog.sha256(hash || $2 || pg_catalog.int2send(lane) || pg_catalog.int8send(seq + 1) || $3) AS hash
                 FROM head
             ),
             inserted AS (
                 INSERT INTO audit.events (tenant_id, lane, seq, id, occurred_at, actor, action, patient_id,
                                           purpose, request_id, break_glass, details, prev_hash, hash)
                 SELECT $1, lane, seq, $4, $5, $6, $7, $8, $9, $10, $11, $12, prev_hash, hash FROM event
             )
             UPDATE audit.chain_heads h SET seq = event.seq, hash = event.hash FROM event
             WHERE h.tenant_id = $1 AND h.lane = event.lane
             RETURNING h.lane"
        )
    };
}

/// Appends to a lane nobody holds.
const APPEND_TO_A_FREE_LANE: &str = append_with_head!(
    "SELECT lane, seq, hash FROM audit.chain_heads WHERE tenant_id = $1
     ORDER BY random() LIMIT 1 FOR UPDATE SKIP LOCKED"
);

/// Appends to lane `$13`, waiting for whoever holds it.
const APPEND_TO_LANE: &str = append_with_head!(
    "SELECT lane, seq, hash FROM audit.chain_heads WHERE tenant_id = $1 AND lane = $13 FOR UPDATE"
);

/// Appends `entry` to the tenant's log in `tx`.
pub async fn append(tx: &mut TenantTx, entry: AuditEntry) -> Result<AuditEventId, AuditError> {
    let tenant_id = tx.tenant_id();
    let event = ChainedEvent {
        tenant_id,
        // Taken in the database, below.
        lane: 0,
        seq: 0,
        id: uuid::Uuid::now_v7(),
        occurred_at: to_stored_precision(OffsetDateTime::now_utc()),
        actor: tx.actor().to_owned(),
        action: entry.action.to_owned(),
        patient_id: entry.patient_id,
        purpose: entry.purpose,
        request_id: tx.request_id(),
        break_glass: entry.break_glass,
        details: to_stored_json(entry.details),
    };
    let (before_place, after_place) = event.encode_around_place();
    let statement = |sql| {
        sqlx::query_scalar::<_, i16>(sql)
            .bind(tenant_id.as_uuid())
            .bind(&before_place)
            .bind(&after_place)
            .bind(event.id)
            .bind(event.occurred_at)
            .bind(&event.actor)
            .bind(&event.action)
            .bind(event.patient_id.map(|id| id.into_uuid()))
            .bind(&event.purpose)
            .bind(event.request_id.map(|id| id.into_uuid()))
            .bind(event.break_glass)
            .bind(&event.details)
    };
    // Prefer a lane nobody holds; when every lane is busy, wait for one.
    let mut appended = statement(APPEND_TO_A_FREE_LANE)
        .fetch_optional(&mut **tx)
        .await?;
    if appended.is_none() {
        let lane = i16::try_from(rand::random::<u16>() % LANES.unsigned_abs())
            .expect("BUG: lane fits i16");
        appended = statement(APPEND_TO_LANE)
            .bind(lane)
            .fetch_optional(&mut **tx)
            .await?;
    }
    if appended.is_none() {
        return Err(fail_transaction(tx).await);
    }
    crate::APPENDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(AuditEventId::new_unchecked(event.id))
}
