//! What operators see of received messages (`tenet ingest list|show`).
//!
//! [`list`] and [`show`] take a connection and see what its role and transaction may
//! see: on the owner role, whose `ingest_operations` policy spans every tenant, the
//! whole database (never reachable from a request); in a `TenantTx`, that tenant's
//! messages. They return routing fields, status and ACK only — never a message's
//! contents. [`read_raw`] is the one way to the contents: in the message's tenant's
//! transaction, it appends an audit event (I3) and decrypts; the event commits with
//! the caller's transaction, which must commit before the contents are shown.

use audit::AuditEntry;
use db::TenantTx;
use identity::keyring::{Keyring, KeyringError};
use kernel::{Phi, TenantId};
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::store::{Status, open_raw};

/// The most messages one listing returns.
pub const LIST_LEN_MAX: i64 = 1000;

/// How far a message's `received_at` may be from the instant its id carries. Both come
/// from the receiving node's clock a moment apart (`listener`), so a day is generous;
/// it lets a lookup by id reach two or three daily partitions instead of every one.
const ID_CLOCK_SLACK: time::Duration = time::Duration::days(1);

/// A stored message as operators see it: its header fields and outcome, never its
/// contents.
#[derive(Clone, sqlx::FromRow)]
pub struct MessageRow {
    pub tenant_id: Uuid,
    pub id: Uuid,
    pub received_at: OffsetDateTime,
    pub listener: String,
    /// MSH-3.1.
    pub sending_application: Option<String>,
    /// MSH-4.1.
    pub sending_facility: Option<String>,
    /// MSH-10.
    pub control_id: Option<String>,
    /// MSH-9.1.
    pub message_type: Option<String>,
    /// MSH-9.2.
    pub trigger_event: Option<String>,
    /// MSH-11.
    pub processing_id: Option<String>,
    /// MSH-12.
    pub version: Option<String>,
    pub ack_mode: String,
    pub status: String,
    pub ack_code: String,
    /// Why it was rejected: positions and rule names, never contents.
    pub error: Option<String>,
    pub data_key_id: Uuid,
    /// The size of the sealed message, in bytes.
    pub sealed_bytes: i32,
}

impl std::fmt::Debug for MessageRow {
    // Like `NewMessage`: ids and outcome only, so a stray `{:?}` in a log shows no
    // routing field.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageRow")
            .field("tenant_id", &self.tenant_id)
            .field("id", &self.id)
            .field("status", &self.status)
            .field("ack_code", &self.ack_code)
            .finish_non_exhaustive()
    }
}

const COLUMNS: &str = "tenant_id, id, received_at, listener, sending_application, \
    sending_facility, control_id, message_type, trigger_event, processing_id, version, \
    ack_mode::text AS ack_mode, status::text AS status, ack_code, error, data_key_id, \
    octet_length(raw_sealed) AS sealed_bytes";

/// Which messages [`list`] returns.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub tenant_id: Option<TenantId>,
    pub status: Option<Status>,
    pub listener: Option<String>,
    /// Only messages received at or after this instant (which also spares the query
    /// every older partition).
    pub since: Option<OffsetDateTime>,
    /// At most this many, 1 to [`LIST_LEN_MAX`].
    pub limit: i64,
}

/// Messages, newest first. "Newest" is by id: ids are UUIDv7, time-ordered, and the
/// primary key starts with them, so each partition is read backwards along its index
/// and the listing stops after `limit` rows, where ordering by `received_at` would
/// sort every partition the filter reaches.
pub async fn list(
    conn: &mut PgConnection,
    filter: &ListFilter,
) -> Result<Vec<MessageRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM ingest.messages
         WHERE ($1::uuid IS NULL OR tenant_id = $1)
           AND ($2::ingest.message_status IS NULL OR status = $2::ingest.message_status)
           AND ($3::text IS NULL OR listener = $3)
           AND ($4::timestamptz IS NULL OR received_at >= $4)
         ORDER BY id DESC
         LIMIT $5"
    ))
    .bind(filter.tenant_id.map(TenantId::into_uuid))
    .bind(filter.status.map(Status::as_str))
    .bind(filter.listener.as_deref())
    .bind(filter.since)
    .bind(filter.limit.clamp(1, LIST_LEN_MAX))
    .fetch_all(conn)
    .await
}

/// One message by id.
pub async fn show(conn: &mut PgConnection, id: Uuid) -> Result<Option<MessageRow>, sqlx::Error> {
    if let Some((from, to)) = received_window(id) {
        let found = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM ingest.messages
             WHERE id = $1 AND received_at >= $2 AND received_at < $3"
        ))
        .bind(id)
        .bind(from)
        .bind(to)
        .fetch_optional(&mut *conn)
        .await?;
        if found.is_some() {
            return Ok(found);
        }
    }
    // Not where its id says (a message stored by hand, or a clock that jumped): every
    // partition's index, one probe each.
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM ingest.messages WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// Where a message with this id was received, give or take [`ID_CLOCK_SLACK`]: the
/// instant a UUIDv7 carries. A bound on `received_at` lets PostgreSQL prune every
/// partition outside it. `None` for an id of another version.
pub fn received_window(id: Uuid) -> Option<(OffsetDateTime, OffsetDateTime)> {
    if id.get_version_num() != 7 {
        return None;
    }
    let (secs, nanos) = id.get_timestamp()?.to_unix();
    let at = OffsetDateTime::from_unix_timestamp(i64::try_from(secs).ok()?).ok()?
        + time::Duration::nanoseconds(i64::from(nanos));
    Some((at - ID_CLOCK_SLACK, at + ID_CLOCK_SLACK))
}

/// Why a raw message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadRawError {
    #[error("the tenant has no message {0}")]
    NotFound(Uuid),
    #[error(
        "message {0} does not open under its data key: it was altered, moved, or sealed under another key"
    )]
    Unreadable(Uuid),
    #[error("the tenant's data key")]
    Key(#[source] KeyringError),
    #[error("recording the read in the audit log")]
    Audit(#[source] audit::AuditError),
    #[error(transparent)]
    Unexpected(#[from] sqlx::Error),
}

/// The raw message `id` of the transaction's tenant, decrypted, with an audit event
/// (`ingest_message.read`, naming the message and `purpose`) appended in `tx`. Commit
/// `tx` before showing the result: the read and its record go together.
pub async fn read_raw(
    tx: &mut TenantTx,
    keyring: &Keyring,
    id: Uuid,
    purpose: &str,
) -> Result<Phi<Vec<u8>>, ReadRawError> {
    let tenant_id = tx.tenant_id();
    let mut found: Option<(Vec<u8>, Uuid)> = None;
    if let Some((from, to)) = received_window(id) {
        found = sqlx::query_as(
            "SELECT raw_sealed, data_key_id FROM ingest.messages
             WHERE tenant_id = $1 AND id = $2 AND received_at >= $3 AND received_at < $4",
        )
        .bind(tenant_id.as_uuid())
        .bind(id)
        .bind(from)
        .bind(to)
        .fetch_optional(&mut **tx)
        .await?;
    }
    if found.is_none() {
        found = sqlx::query_as(
            "SELECT raw_sealed, data_key_id FROM ingest.messages WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant_id.as_uuid())
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    }
    let (sealed, data_key_id) = found.ok_or(ReadRawError::NotFound(id))?;
    audit::append(
        tx,
        AuditEntry {
            action: "ingest_message.read",
            patient_id: None,
            purpose: Some(purpose.to_owned()),
            break_glass: false,
            details: serde_json::json!({ "message_id": id }),
        },
    )
    .await
    .map_err(ReadRawError::Audit)?;
    let data_key = keyring
        .key(tx, data_key_id)
        .await
        .map_err(ReadRawError::Key)?;
    open_raw(&data_key, tenant_id, id, &sealed)
        .map(Phi::new)
        .ok_or(ReadRawError::Unreadable(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uuid_v7_places_its_message_within_a_day_of_its_instant() {
        let at = OffsetDateTime::from_unix_timestamp(1_790_000_000).unwrap();
        let id = Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            1_790_000_000,
            0,
        ));
        let (from, to) = received_window(id).unwrap();
        assert_eq!((from, to), (at - ID_CLOCK_SLACK, at + ID_CLOCK_SLACK));
    }

    #[test]
    fn an_id_of_another_version_gives_no_window() {
        assert_eq!(received_window(Uuid::new_v4()), None);
    }
}
