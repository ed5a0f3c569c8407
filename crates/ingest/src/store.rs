//! Group commit: many connections hand their messages to one [`Committer`], which
//! stores them in groups, one transaction per tenant per group, and only then answers
//! each sender.
//!
//! The pipeline: up to [`CommitterConfig::commits_in_flight`] groups commit at once,
//! each on its own pooled connection. A group starts as soon as a commit slot is free
//! and a message waits, and takes every message waiting then (up to
//! [`CommitterConfig::group_max`]); there is no timed wait, so a lone message is
//! written at once, and messages that arrive while every slot is busy wait in the
//! queue and form the next group together.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use db::TenantTx;
use hl7::ack::{AckCode, AckMode};
use identity::keyring::{DataKey, Keyring, KeyringError};
use kernel::TenantId;
use sqlx::PgPool;
use time::OffsetDateTime;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use uuid::Uuid;

use crate::process::{Process, ProcessArgs};
use platform::jobs::JobSpec;

/// The job queue processing runs on.
pub const PROCESS_QUEUE: &str = "ingest";

/// The default most groups committing at once.
pub const COMMITS_IN_FLIGHT_DEFAULT: usize = 4;

/// The most groups that may be configured to commit at once.
pub const COMMITS_IN_FLIGHT_MAX: usize = 64;

/// How groups are formed and committed.
#[derive(Clone, Debug)]
pub struct CommitterConfig {
    /// The most groups committing at once, each in its own transaction on its own
    /// pooled connection.
    pub commits_in_flight: usize,
    /// The most messages in one group.
    pub group_max: usize,
    /// How many messages may wait for the committer before senders block.
    pub queue_max: usize,
}

impl Default for CommitterConfig {
    fn default() -> Self {
        Self {
            commits_in_flight: COMMITS_IN_FLIGHT_DEFAULT,
            group_max: 128,
            queue_max: 1024,
        }
    }
}

/// Whether a stored message was accepted or kept as rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Accepted,
    Rejected,
}

impl Status {
    /// As the database enum `ingest.message_status` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Accepted => "accepted",
            Status::Rejected => "rejected",
        }
    }
}

/// One message to store. The routing fields are `None` when the message did not
/// parse.
#[derive(Clone)]
pub struct NewMessage {
    pub id: Uuid,
    pub received_at: OffsetDateTime,
    pub listener: String,
    pub sending_application: Option<String>,
    pub sending_facility: Option<String>,
    pub control_id: Option<String>,
    pub message_type: Option<String>,
    pub trigger_event: Option<String>,
    pub processing_id: Option<String>,
    pub version: Option<String>,
    pub ack_mode: AckMode,
    pub status: Status,
    /// The ACK code this message is answered with once stored.
    pub ack_code: AckCode,
    /// Why it was rejected: positions and rule names only, never content.
    pub error: Option<String>,
    /// Whether a job turns it into records ([`crate::process`]): accepted messages of
    /// a supported type.
    pub process: bool,
    /// The patient identifier it is about (PID-3: assigning authority, value), whose
    /// keyed hash orders the processing of one patient's messages. PHI: only its hash
    /// is stored.
    pub patient_identifier: Option<(String, String)>,
    /// Enhanced mode: MSH-16, when the sender wants an application acknowledgement.
    pub application_ack_type: Option<&'static str>,
    /// Where application acknowledgements go (the listener's reply address).
    pub reply_to: Option<String>,
    pub raw: Bytes,
}

impl NewMessage {
    /// The de-duplication key (MSH-3.1, MSH-4.1, MSH-10); `None` for a message that
    /// did not parse, which is never a duplicate.
    fn key(&self) -> Option<(&str, &str, &str)> {
        Some((
            self.sending_application.as_deref()?,
            self.sending_facility.as_deref()?,
            self.control_id.as_deref()?,
        ))
    }
}

impl std::fmt::Debug for NewMessage {
    // Never the routing fields' values or the raw bytes: they may be PHI.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewMessage")
            .field("id", &self.id)
            .field("status", &self.status)
            .field("ack_code", &self.ack_code)
            .field("raw_bytes", &self.raw.len())
            .finish_non_exhaustive()
    }
}

/// The associated data of a sealed raw message: a ciphertext moved to another
/// message or tenant does not open.
fn raw_aad(tenant_id: TenantId, message_id: Uuid) -> Vec<u8> {
    let mut aad = Vec::with_capacity(51);
    aad.extend_from_slice(b"tenet-hl7-raw-v1");
    aad.extend_from_slice(tenant_id.as_uuid().as_bytes());
    aad.extend_from_slice(message_id.as_bytes());
    aad
}

/// Seals a raw message (AES-256-GCM under the tenant's data key, bound to the tenant
/// and the message id).
fn seal_raw(data_key: &DataKey, tenant_id: TenantId, message_id: Uuid, raw: &[u8]) -> Vec<u8> {
    data_key.key.seal(raw, &raw_aad(tenant_id, message_id))
}

/// Opens a stored raw message (`raw_sealed`, under the data key named by its
/// `data_key_id`); `None` if it was moved, altered or sealed under another key.
pub fn open_raw(
    data_key: &DataKey,
    tenant_id: TenantId,
    message_id: Uuid,
    sealed: &[u8],
) -> Option<Vec<u8>> {
    data_key.key.open(sealed, &raw_aad(tenant_id, message_id))
}

/// What the store did with a message, once its transaction committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    /// Stored now; answer with the message's own ACK code.
    New,
    /// A message with the same sender and control id was stored before; answer with
    /// its ACK code.
    Duplicate { ack_code: AckCode },
}

/// Why a message was not stored. The sender must not be told it was accepted.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the group's transaction failed")]
    Database(#[source] std::sync::Arc<sqlx::Error>),
    #[error("the committer has stopped")]
    Stopped,
}

struct Pending {
    tenant_id: TenantId,
    message: NewMessage,
    reply: oneshot::Sender<Result<Stored, StoreError>>,
}

/// A handle for submitting messages to a [`Committer`]; cheap to clone.
#[derive(Clone)]
pub struct CommitterHandle {
    tx: mpsc::Sender<Pending>,
}

impl CommitterHandle {
    /// Stores `message` for `tenant_id` and returns once its transaction committed
    /// (or failed).
    pub async fn store(
        &self,
        tenant_id: TenantId,
        message: NewMessage,
    ) -> Result<Stored, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Pending {
                tenant_id,
                message,
                reply,
            })
            .await
            .map_err(|_| StoreError::Stopped)?;
        answer.await.map_err(|_| StoreError::Stopped)?
    }

    /// A reading of how many messages wait for the committer to take them, that
    /// does not keep the committer running.
    pub fn backlog(&self) -> Backlog {
        Backlog {
            tx: self.tx.downgrade(),
        }
    }
}

/// How many messages wait in the committer's queue (not yet in a group); see
/// [`CommitterHandle::backlog`].
#[derive(Clone)]
pub struct Backlog {
    tx: mpsc::WeakSender<Pending>,
}

impl Backlog {
    /// Messages queued now; 0 once the committer stopped.
    pub fn get(&self) -> usize {
        self.tx
            .upgrade()
            .map_or(0, |tx| tx.max_capacity() - tx.capacity())
    }
}

/// The task that commits messages in groups. It stops when every
/// [`CommitterHandle`] is dropped, after committing what it holds.
pub struct Committer;

impl Committer {
    /// Starts the committer on the service-role pool.
    /// Raw messages are sealed with the tenant's active data key from `keyring`
    /// before they are written: they are PHI (invariant I2).
    pub fn spawn(
        pool: PgPool,
        keyring: Keyring,
        config: CommitterConfig,
    ) -> (CommitterHandle, JoinHandle<()>) {
        assert!(
            config.group_max <= platform::jobs::ENQUEUE_MANY_MAX,
            "BUG: a commit group enqueues a job per message: group_max is at most {}",
            platform::jobs::ENQUEUE_MANY_MAX
        );
        assert!(
            config.commits_in_flight <= COMMITS_IN_FLIGHT_MAX,
            "BUG: commits_in_flight is at most {COMMITS_IN_FLIGHT_MAX}"
        );
        let (tx, rx) = mpsc::channel(config.queue_max.max(1));
        let task = tokio::spawn(run(pool, keyring, config, rx));
        (CommitterHandle { tx }, task)
    }
}

async fn run(
    pool: PgPool,
    keyring: Keyring,
    config: CommitterConfig,
    mut rx: mpsc::Receiver<Pending>,
) {
    let group_max = config.group_max.max(1);
    let slots = Arc::new(Semaphore::new(config.commits_in_flight.max(1)));
    let mut commits = JoinSet::new();
    loop {
        // A free slot first, then the messages: while every slot is committing,
        // arrivals wait in the queue and the next group takes them all at once.
        let slot = slots
            .clone()
            .acquire_owned()
            .await
            .expect("BUG: the committer's semaphore is never closed");
        let Some(first) = rx.recv().await else {
            break;
        };
        let mut group = vec![first];
        while group.len() < group_max {
            match rx.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        // Reap finished commits so the set does not grow.
        while commits.try_join_next().is_some() {}
        let (pool, keyring) = (pool.clone(), keyring.clone());
        commits.spawn(async move {
            commit_and_answer(&pool, &keyring, group).await;
            drop(slot);
        });
    }
    // Every handle is gone and the queue is empty: finish the groups in flight.
    while commits.join_next().await.is_some() {}
}

/// Commits one group, in one transaction per tenant, and answers each sender.
///
/// Groups commit concurrently, so a message may meet another with its key in another
/// group's open transaction: its insert into `ingest.message_keys` waits for that
/// transaction, then does nothing if it committed (a duplicate, answered with the
/// committed row's ACK code, read by a later statement that sees it) or inserts if it
/// rolled back. Each connection has one message in flight, so a sender's messages
/// still commit in the order it sent them.
async fn commit_and_answer(pool: &PgPool, keyring: &Keyring, group: Vec<Pending>) {
    let mut by_tenant: HashMap<TenantId, Vec<Pending>> = HashMap::new();
    for pending in group {
        by_tenant
            .entry(pending.tenant_id)
            .or_default()
            .push(pending);
    }
    for (tenant_id, pendings) in by_tenant {
        let n = pendings.len();
        match commit_group(pool, keyring, tenant_id, &pendings).await {
            Ok(outcomes) => {
                for (pending, outcome) in pendings.into_iter().zip(outcomes) {
                    let _ = pending.reply.send(Ok(outcome));
                }
            }
            Err(error) if n > 1 => {
                // One bad message must not fail its neighbours forever (they would
                // be resent into the same fate): commit each alone.
                tracing::warn!(%tenant_id, messages = n, %error, "committing a group of HL7 messages failed; committing them one by one");
                for pending in pendings {
                    let outcome =
                        commit_group(pool, keyring, tenant_id, std::slice::from_ref(&pending))
                            .await
                            .map(|mut outcomes| outcomes.remove(0));
                    answer(pending, tenant_id, outcome);
                }
            }
            Err(error) => {
                if let Some(pending) = pendings.into_iter().next() {
                    answer(pending, tenant_id, Err(error));
                }
            }
        }
    }
}

/// Answers one sender; a failure is logged here, with the message's id only.
fn answer(pending: Pending, tenant_id: TenantId, outcome: Result<Stored, sqlx::Error>) {
    let outcome = outcome.map_err(|error| {
        tracing::error!(%tenant_id, message_id = %pending.message.id, %error, "committing an HL7 message failed");
        StoreError::Database(std::sync::Arc::new(error))
    });
    let _ = pending.reply.send(outcome);
}

fn mode_str(mode: AckMode) -> &'static str {
    match mode {
        AckMode::Original => "original",
        AckMode::Enhanced => "enhanced",
    }
}

/// Inserts one tenant's group in one transaction and commits it; returns, in order,
/// what happened to each message.
async fn commit_group(
    pool: &PgPool,
    keyring: &Keyring,
    tenant_id: TenantId,
    pendings: &[Pending],
) -> Result<Vec<Stored>, sqlx::Error> {
    let messages: Vec<&NewMessage> = pendings.iter().map(|p| &p.message).collect();
    // The ACK promises durability: never acknowledge on an asynchronous commit
    // (`synchronous_commit` on, set with BEGIN in one round trip).
    let mut tx = TenantTx::begin_as_durable(pool, tenant_id, "system:ingest").await?;
    let data_key = keyring.active_key(&mut tx).await.map_err(|err| match err {
        KeyringError::Database(err) => err,
        // No PHI in it: a key id or "no data key" at most.
        other => sqlx::Error::Protocol(format!("the tenant's data key: {other}")),
    })?;
    let col = |f: fn(&NewMessage) -> Option<String>| -> Vec<Option<String>> {
        messages.iter().map(|m| f(m)).collect()
    };
    // One statement stores the group: the keys of the messages that have one go into
    // `ingest.message_keys`, where a key already there (stored earlier, by another
    // group's transaction, or by an earlier message of this group) is a conflict and
    // skipped; then every message whose key was new, and every message without a key,
    // goes into `ingest.messages`. Keys are inserted in key order (one key's messages
    // in the group's order, so the first of them is stored): every group takes the
    // keys' index entries in the same order, so two groups committing at once never
    // wait on each other's keys in a cycle (a deadlock). A key held by another open
    // transaction makes this insert wait for it to end.
    let inserted: Vec<Uuid> = sqlx::query_scalar(
        "WITH keys AS ( \
             INSERT INTO ingest.message_keys (tenant_id, sending_application, sending_facility, \
                 control_id, message_id, ack_code, received_at) \
             SELECT $1, k.application, k.facility, k.control_id, k.id, k.ack_code, k.received_at \
             FROM unnest($2::uuid[], $3::timestamptz[], $5::text[], $6::text[], $7::text[], \
                 $14::text[]) WITH ORDINALITY \
                 AS k(id, received_at, application, facility, control_id, ack_code, n) \
             WHERE k.application IS NOT NULL AND k.facility IS NOT NULL \
                 AND k.control_id IS NOT NULL \
             ORDER BY k.application, k.facility, k.control_id, k.n \
             ON CONFLICT DO NOTHING \
             RETURNING message_id \
         ) \
         INSERT INTO ingest.messages (tenant_id, id, received_at, listener, sending_application, \
             sending_facility, control_id, message_type, trigger_event, processing_id, version, \
             ack_mode, status, ack_code, error, raw_sealed, processing, order_key, \
             application_ack_type, reply_to, data_key_id) \
         SELECT $1, u.*, $17 FROM unnest($2::uuid[], $3::timestamptz[], $4::text[], $5::text[], \
             $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], \
             $12::ingest.ack_mode[], $13::ingest.message_status[], $14::text[], $15::text[], \
             $16::bytea[], $18::ingest.processing_state[], $19::bytea[], $20::text[], \
             $21::text[]) AS u(id, received_at, listener, sending_application, sending_facility, \
             control_id, message_type, trigger_event, processing_id, version, ack_mode, status, \
             ack_code, error, raw_sealed, processing, order_key, application_ack_type, reply_to) \
         WHERE u.sending_application IS NULL OR u.sending_facility IS NULL \
             OR u.control_id IS NULL OR u.id IN (SELECT message_id FROM keys) \
         RETURNING id",
    )
    .bind(tenant_id.as_uuid())
    .bind(messages.iter().map(|m| m.id).collect::<Vec<_>>())
    .bind(messages.iter().map(|m| m.received_at).collect::<Vec<_>>())
    .bind(
        messages
            .iter()
            .map(|m| m.listener.clone())
            .collect::<Vec<_>>(),
    )
    .bind(col(|m| m.sending_application.clone()))
    .bind(col(|m| m.sending_facility.clone()))
    .bind(col(|m| m.control_id.clone()))
    .bind(col(|m| m.message_type.clone()))
    .bind(col(|m| m.trigger_event.clone()))
    .bind(col(|m| m.processing_id.clone()))
    .bind(col(|m| m.version.clone()))
    .bind(
        messages
            .iter()
            .map(|m| mode_str(m.ack_mode))
            .collect::<Vec<_>>(),
    )
    .bind(
        messages
            .iter()
            .map(|m| m.status.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        messages
            .iter()
            .map(|m| m.ack_code.code())
            .collect::<Vec<_>>(),
    )
    .bind(col(|m| m.error.clone()))
    .bind(
        messages
            .iter()
            .map(|m| seal_raw(&data_key, tenant_id, m.id, &m.raw))
            .collect::<Vec<_>>(),
    )
    .bind(data_key.id)
    .bind(
        messages
            .iter()
            .map(|m| m.process.then_some("pending"))
            .collect::<Vec<_>>(),
    )
    .bind(
        messages
            .iter()
            .map(|m| {
                m.patient_identifier.as_ref().map(|(authority, value)| {
                    identity::vault::ordering_key(&data_key, authority, value)
                })
            })
            .collect::<Vec<_>>(),
    )
    .bind(
        messages
            .iter()
            .map(|m| m.application_ack_type)
            .collect::<Vec<_>>(),
    )
    .bind(col(|m| m.reply_to.clone()))
    .fetch_all(&mut *tx)
    .await?;
    let inserted: HashSet<Uuid> = inserted.into_iter().collect();
    // Duplicates (of a message stored earlier, by a group that committed while this
    // one waited on its key, or earlier in this group) are answered with that
    // message's ACK code, read for the whole group at once. This is a statement of its
    // own: under READ COMMITTED its snapshot is taken after the insert above finished
    // waiting, so it sees the key another transaction committed meanwhile (the
    // insert's own snapshot does not), and the keys this transaction just wrote.
    let duplicates: Vec<(&str, &str, &str)> = messages
        .iter()
        .filter(|m| !inserted.contains(&m.id))
        .filter_map(|m| m.key())
        .collect();
    let mut first_codes: HashMap<(String, String, String), String> = HashMap::new();
    if !duplicates.is_empty() {
        let rows: Vec<(String, String, String, String)> = sqlx::query_as(
            "SELECT k.sending_application, k.sending_facility, k.control_id, k.ack_code \
             FROM ingest.message_keys k \
             JOIN unnest($2::text[], $3::text[], $4::text[]) AS d(application, facility, control_id) \
               ON k.sending_application = d.application AND k.sending_facility = d.facility \
              AND k.control_id = d.control_id \
             WHERE k.tenant_id = $1",
        )
        .bind(tenant_id.as_uuid())
        .bind(duplicates.iter().map(|k| k.0).collect::<Vec<_>>())
        .bind(duplicates.iter().map(|k| k.1).collect::<Vec<_>>())
        .bind(duplicates.iter().map(|k| k.2).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await?;
        first_codes.extend(
            rows.into_iter()
                .map(|(application, facility, control_id, code)| {
                    ((application, facility, control_id), code)
                }),
        );
    }
    // Storing a raw message is a write of PHI: one audit event names the group's.
    if !inserted.is_empty() {
        let mut ids: Vec<Uuid> = inserted.iter().copied().collect();
        ids.sort();
        audit::append(
            &mut tx,
            audit::AuditEntry {
                action: "ingest.message.store",
                patient_id: None,
                purpose: Some("operations".to_owned()),
                break_glass: false,
                details: serde_json::json!({ "message_ids": ids }),
            },
        )
        .await
        .map_err(|err| match err {
            audit::AuditError::Database(err) => err,
            other => sqlx::Error::Protocol(other.to_string()),
        })?;
    }
    // Processing is durable work enqueued with the message: it exists iff the message
    // does.
    let jobs: Vec<JobSpec<Process>> = messages
        .iter()
        .filter(|m| m.process && inserted.contains(&m.id))
        .map(|m| JobSpec::new(ProcessArgs { message_id: m.id }).queue(PROCESS_QUEUE))
        .collect();
    platform::jobs::enqueue_many(&mut tx, jobs)
        .await
        .map_err(|err| match err {
            platform::jobs::EnqueueError::Unexpected(err) => err,
            other => sqlx::Error::Protocol(other.to_string()),
        })?;
    let mut outcomes = Vec::with_capacity(messages.len());
    for message in &messages {
        if inserted.contains(&message.id) {
            outcomes.push(Stored::New);
            continue;
        }
        let code = message
            .key()
            .and_then(|(application, facility, control_id)| {
                first_codes.get(&(
                    application.to_owned(),
                    facility.to_owned(),
                    control_id.to_owned(),
                ))
            })
            // A key that was there when the insert skipped it and is gone now (retention
            // deleted it in between): the message is not stored, so it must not be
            // answered; failing the group makes the committer store it on its own.
            .ok_or_else(|| {
                sqlx::Error::Protocol(format!(
                    "message {} was neither stored nor found as a duplicate",
                    message.id
                ))
            })?;
        let ack_code = AckCode::from_code(code).ok_or_else(|| {
            sqlx::Error::Decode(format!("an unknown stored ACK code {code:?}").into())
        })?;
        outcomes.push(Stored::Duplicate { ack_code });
    }
    tx.commit().await?;
    Ok(outcomes)
}
