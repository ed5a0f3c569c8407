//! The transactional outbox: an event is written in the same transaction as the
//! change it announces, to the outbox table of the context that owns the change.
//!
//! [`crate::relay`] delivers them to in-process handlers, webhooks and NATS; an event
//! waits here as `pending` until the relay has handed it to its deliveries. Payloads
//! carry ids, never PHI.

use db::TenantTx;
use uuid::Uuid;

/// The contexts that have an outbox. Each writes only its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outbox {
    Identity,
    Clinical,
    Audit,
    Platform,
    Assessments,
    Notes,
    Compliance,
    Documents,
}

impl Outbox {
    /// Every outbox, in the order the relay visits them.
    pub const ALL: [Outbox; 8] = [
        Outbox::Identity,
        Outbox::Clinical,
        Outbox::Audit,
        Outbox::Platform,
        Outbox::Assessments,
        Outbox::Notes,
        Outbox::Compliance,
        Outbox::Documents,
    ];

    /// The schema that owns this outbox, which is also the context's name.
    pub const fn schema(self) -> &'static str {
        match self {
            Outbox::Identity => "identity",
            Outbox::Clinical => "clinical",
            Outbox::Audit => "audit",
            Outbox::Platform => "platform",
            Outbox::Assessments => "assessments",
            Outbox::Notes => "notes",
            Outbox::Compliance => "compliance",
            Outbox::Documents => "documents",
        }
    }

    /// The outbox of the context named `schema`.
    pub fn from_schema(schema: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|outbox| outbox.schema() == schema)
    }

    const fn insert_sql(self) -> &'static str {
        // One literal per schema: table names cannot be bound as parameters.
        macro_rules! insert {
            ($schema:literal) => {
                concat!(
                    "INSERT INTO ",
                    $schema,
                    ".outbox (tenant_id, id, event_type, event_version, aggregate_type, aggregate_id, occurred_at, payload)
                     VALUES ($1, $2, $3, $4, $5, $6, clock_timestamp(), $7)"
                )
            };
        }
        match self {
            Outbox::Identity => insert!("identity"),
            Outbox::Clinical => insert!("clinical"),
            Outbox::Audit => insert!("audit"),
            Outbox::Platform => insert!("platform"),
            Outbox::Assessments => insert!("assessments"),
            Outbox::Notes => insert!("notes"),
            Outbox::Compliance => insert!("compliance"),
            Outbox::Documents => insert!("documents"),
        }
    }
}

/// An event in the standard envelope.
#[derive(Debug, Clone)]
pub struct Event {
    /// Dotted lowercase: `break_glass.opened`, `patient.created`.
    pub event_type: &'static str,
    pub event_version: i32,
    pub aggregate_type: &'static str,
    pub aggregate_id: Uuid,
    /// Ids and codes only: no PHI.
    pub payload: serde_json::Value,
}

/// Writes `event` to `outbox` in `tx`; returns the event id.
///
/// `occurred_at` is the database's `clock_timestamp()` at this statement, not this
/// node's clock: the relay delivers an aggregate's events in `occurred_at` order, and
/// one clock orders events emitted by every node. An event emitted after writing its
/// aggregate's row is stamped after the previous transaction on that row committed.
pub async fn emit(tx: &mut TenantTx, outbox: Outbox, event: Event) -> Result<Uuid, sqlx::Error> {
    let id = Uuid::now_v7();
    sqlx::query(outbox.insert_sql())
        .bind(tx.tenant_id().as_uuid())
        .bind(id)
        .bind(event.event_type)
        .bind(event.event_version)
        .bind(event.aggregate_type)
        .bind(event.aggregate_id)
        .bind(&event.payload)
        .execute(&mut **tx)
        .await?;
    Ok(id)
}
