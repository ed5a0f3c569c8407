//! The outbox relay: delivers the events every context writes to its own outbox, in
//! order per aggregate, to in-process handlers, signed webhooks and NATS JetStream.
//!
//! Two steps, each its own transaction, so that an outbox row's state and each
//! subscriber's state always mean something (ARCHITECTURE.md, "The outbox relay"):
//!
//! 1. **Fan-out** ([`Relay::fan_out`]): under a per-context advisory lock (one relay
//!    fans out a context at a time, so events enter the delivery queues in the order
//!    they occurred), a batch of `pending` outbox rows is copied once into
//!    `platform.relay_events`, one `platform.relay_deliveries` row is written per
//!    subscriber — every registered [`EventHandler`] that wants the type, every active
//!    webhook subscription *of the event's tenant* that wants it, and the NATS stream
//!    when one is configured — and the outbox rows are marked `delivered`. An outbox
//!    row is therefore `delivered` once durable deliveries hold it, never before.
//! 2. **Delivery** ([`Relay::deliver_due`]): the relay claims, `FOR UPDATE SKIP
//!    LOCKED` under a lease, deliveries that are due and are the oldest still
//!    `pending` of their (consumer, aggregate) queue, delivers them, and marks each
//!    `delivered` only after its sink confirmed: a handler's transaction committed, a
//!    webhook answered 2xx, JetStream returned its PubAck (I4). A failure backs off
//!    (exponential, jittered, stored in `next_attempt_at`); past its attempts the
//!    delivery is `dead` with its last error (I5) and stops holding back the
//!    deliveries behind it, so a poison event never blocks its aggregate for good.
//!
//! The contract is **at-least-once**: a relay that dies after a sink confirmed but
//! before it recorded that, or whose lease ran out mid-delivery, causes a redelivery.
//! Consumers are idempotent: handlers by `platform.processed_events`, written by this
//! module in the handler's own transaction (I6); webhook receivers by the event id;
//! NATS by `Nats-Msg-Id`, which JetStream de-duplicates.
//!
//! The relay reads every tenant's outbox and deliveries as the owner role (the
//! `relay_dispatch` policies), and runs handlers in a [`TenantTx`] of the event's
//! tenant as the service role, like the job worker.
//!
//! This module must never put PHI anywhere: events carry ids and codes only, and
//! errors stored in `last_error` name causes, never payload values.

pub mod admin;
pub mod nats;
pub mod webhook;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use db::TenantTx;
use kernel::TenantId;
use rand::Rng;
use sqlx::PgPool;
use time::OffsetDateTime;
use tokio::sync::watch;
use uuid::Uuid;

use crate::jobs::worker::backoff;
use crate::outbox::Outbox;

pub use nats::NatsConfig;
pub use webhook::{SIGNATURE_HEADER, SignatureError, sign, verify_signature};

/// The most outbox rows one fan-out takes from one context.
pub const FAN_OUT_BATCH_MAX: usize = 1000;
/// The most deliveries one claim takes (and delivers at once).
pub const CLAIM_BATCH_MAX: usize = 256;
/// The most attempts a delivery may be given.
pub const ATTEMPTS_MAX: u32 = 100;
/// The longest `last_error` kept, in characters.
pub const LAST_ERROR_LEN_MAX: usize = 2000;
/// The longest consumer name.
pub const CONSUMER_LEN_MAX: usize = 200;

/// The first key of the fan-out advisory locks (`tenet` in ASCII); the second is the
/// context's position in [`Outbox::ALL`].
const FAN_OUT_LOCK_CLASS: i32 = 0x7465_6e74;

/// An event as the relay delivers it: the standard envelope, read back from the
/// outbox it was written to.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub id: Uuid,
    pub tenant_id: TenantId,
    /// The context whose outbox it came from.
    pub context: Outbox,
    pub event_type: String,
    pub event_version: i32,
    pub aggregate_type: String,
    pub aggregate_id: Uuid,
    pub occurred_at: OffsetDateTime,
    /// Ids and codes only: no PHI.
    pub payload: serde_json::Value,
}

impl Envelope {
    /// The JSON document webhooks and NATS receive. Its field names are a public
    /// contract: add fields, never rename them.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "type": self.event_type,
            "version": self.event_version,
            "tenant_id": self.tenant_id.as_uuid(),
            "context": self.context.schema(),
            "aggregate_type": self.aggregate_type,
            "aggregate_id": self.aggregate_id,
            "occurred_at": self
                .occurred_at
                .format(&time::format_description::well_known::Rfc3339)
                .expect("BUG: a timestamptz formats as RFC 3339"),
            "payload": self.payload,
        })
    }
}

/// An in-process subscriber.
///
/// `handle` gets a [`TenantTx`] of the event's tenant. The relay records the event
/// in `platform.processed_events` in that same transaction before calling it, and skips
/// the call if the record is already there: an effect written through `tx` happens once
/// however often the event is delivered. Work outside the database must be idempotent.
pub trait EventHandler: Send + Sync + 'static {
    /// Stable, dotted lowercase: `assessments.on_patient_created`. It keys what was
    /// processed; renaming it redelivers everything not yet delivered to the new name.
    const CONSUMER: &'static str;
    /// The event types wanted; empty means every type.
    const EVENT_TYPES: &'static [&'static str];
    /// Attempts before a delivery to this handler is `dead`.
    const ATTEMPTS_MAX: u32 = 10;

    fn handle(
        &self,
        tx: &mut TenantTx,
        event: &Envelope,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

/// Why a handler did not succeed. Messages are stored and shown to operators: name ids
/// and causes, never PHI.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Try again later (with backoff), while attempts remain.
    #[error("{0}")]
    Retry(String),
    /// Retrying cannot help: the delivery is `dead` now.
    #[error("{0}")]
    Fail(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

trait ErasedHandler: Send + Sync {
    fn handle<'a>(
        &'a self,
        tx: &'a mut TenantTx,
        event: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), HandlerError>>;
}

struct Erased<H>(H);

impl<H: EventHandler> ErasedHandler for Erased<H> {
    fn handle<'a>(
        &'a self,
        tx: &'a mut TenantTx,
        event: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(self.0.handle(tx, event))
    }
}

struct Registered {
    event_types: &'static [&'static str],
    attempts_max: u32,
    handler: Arc<dyn ErasedHandler>,
}

/// The in-process handlers of a relay, by consumer name.
///
/// Fan-out writes deliveries for the handlers of the relay that fans out, so every
/// relay of an installation must register the same handlers (they do: one binary).
/// A relay claims only deliveries to handlers it has, so during a rolling deploy an
/// older relay leaves a newer handler's deliveries to the relays that know it.
#[derive(Clone, Default)]
pub struct Handlers {
    handlers: HashMap<&'static str, Arc<Registered>>,
}

impl Handlers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a handler. A consumer name registered twice, empty, too long or shaped
    /// like a webhook's or NATS's is a wiring mistake and panics.
    pub fn register<H: EventHandler>(mut self, handler: H) -> Self {
        assert!(
            !H::CONSUMER.is_empty()
                && H::CONSUMER.len() <= CONSUMER_LEN_MAX
                && !H::CONSUMER.starts_with("webhook:")
                && H::CONSUMER != nats::CONSUMER,
            "BUG: {:?} is not a valid handler consumer name",
            H::CONSUMER
        );
        assert!(
            (1..=ATTEMPTS_MAX).contains(&H::ATTEMPTS_MAX),
            "BUG: attempts_max must be 1..={ATTEMPTS_MAX}"
        );
        let previous = self.handlers.insert(
            H::CONSUMER,
            Arc::new(Registered {
                event_types: H::EVENT_TYPES,
                attempts_max: H::ATTEMPTS_MAX,
                handler: Arc::new(Erased(handler)),
            }),
        );
        assert!(
            previous.is_none(),
            "BUG: event handler {} registered twice",
            H::CONSUMER
        );
        self
    }

    /// The registered consumer names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.handlers.keys().map(|n| (*n).to_owned()).collect();
        names.sort();
        names
    }

    fn wanting<'a>(
        &'a self,
        event_type: &'a str,
    ) -> impl Iterator<Item = (&'static str, u32)> + 'a {
        self.handlers.iter().filter_map(move |(name, registered)| {
            wants(registered.event_types, event_type).then_some((*name, registered.attempts_max))
        })
    }
}

/// Whether a subscriber with `filter` (empty: everything) wants `event_type`.
fn wants<S: AsRef<str>>(filter: &[S], event_type: &str) -> bool {
    filter.is_empty() || filter.iter().any(|wanted| wanted.as_ref() == event_type)
}

/// How a relay behaves.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Recorded on the deliveries it holds and on every attempt: `host:pid`.
    pub relay_id: String,
    /// Outbox rows one fan-out takes per context.
    pub fan_out_batch: usize,
    /// Deliveries one claim takes; they are delivered concurrently.
    pub claim_batch: usize,
    /// How long a claim holds a delivery. Must exceed the slowest sink's timeout, or a
    /// slow delivery is claimed again and sent twice.
    pub lease: Duration,
    /// How long an idle relay waits before looking again.
    pub poll_interval: Duration,
    /// The first retry's delay; each further retry doubles it, up to `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Attempts before a webhook delivery is `dead`.
    pub webhook_attempts_max: u32,
    /// Failed attempts in a row (over all its deliveries) that disable a webhook
    /// subscription.
    pub webhook_failures_to_disable: u32,
    /// How long a webhook receiver has to answer.
    pub webhook_timeout: Duration,
    /// Attempts before a NATS delivery is `dead`. Attempts are made (and counted) only
    /// while the client is connected: an outage leaves deliveries `pending`.
    pub nats_attempts_max: u32,
    /// Publish every event to JetStream too.
    pub nats: Option<NatsConfig>,
}

impl RelayConfig {
    pub fn new(relay_id: impl Into<String>) -> Self {
        Self {
            relay_id: relay_id.into(),
            fan_out_batch: 500,
            claim_batch: 64,
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_millis(250),
            backoff_base: Duration::from_secs(5),
            backoff_max: Duration::from_secs(3600),
            webhook_attempts_max: 12,
            webhook_failures_to_disable: 50,
            webhook_timeout: Duration::from_secs(10),
            nats_attempts_max: 20,
            nats: None,
        }
    }
}

/// Why a relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("building the webhook HTTP client: {0}")]
    Http(#[source] reqwest::Error),
    #[error("connecting to NATS: {0}")]
    Nats(#[source] async_nats::ConnectError),
}

/// What one [`Relay::run_once`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Step {
    /// Outbox rows handed to deliveries.
    pub n_fanned_out: u64,
    pub n_delivered: u64,
    pub n_retrying: u64,
    pub n_dead: u64,
    /// Outcomes not recorded because another relay took the delivery over meanwhile.
    pub n_lease_lost: u64,
}

impl Step {
    /// Nothing was there to do.
    pub fn is_idle(&self) -> bool {
        *self == Step::default()
    }
}

/// A relay: fans out outbox rows and delivers them. Any number may run at once.
pub struct Relay {
    owner: PgPool,
    app: PgPool,
    handlers: Handlers,
    handler_names: Vec<String>,
    config: RelayConfig,
    http: reqwest::Client,
    nats: Option<nats::NatsSink>,
}

/// A claimed delivery, with its event and (for webhooks) its endpoint. No `Debug`: it
/// holds the subscription's secret.
struct Claimed {
    tenant_id: TenantId,
    delivery_id: Uuid,
    sink: String,
    consumer: String,
    subscription_id: Option<Uuid>,
    attempt: u32,
    attempts_max: u32,
    lease_token: i64,
    url: Option<String>,
    secret: Option<String>,
    event: Envelope,
}

/// How one attempt went.
#[derive(Debug, Clone, Default)]
pub(crate) struct Attempt {
    pub succeeded: bool,
    /// Retrying cannot help.
    pub permanent: bool,
    pub status_code: Option<u16>,
    pub response_excerpt: Option<String>,
    pub error: Option<String>,
}

impl Attempt {
    fn ok() -> Self {
        Self {
            succeeded: true,
            ..Self::default()
        }
    }

    fn failed(error: impl Into<String>) -> Self {
        Self {
            error: Some(error.into()),
            ..Self::default()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Delivered,
    Retrying,
    Dead,
    LeaseLost,
}

/// One context's pending rows, oldest first. One literal per schema: table names
/// cannot be bound.
const fn pending_sql(outbox: Outbox) -> &'static str {
    macro_rules! pending {
        ($schema:literal) => {
            concat!(
                "SELECT tenant_id, id, event_type, event_version, aggregate_type, aggregate_id, occurred_at, payload
                 FROM ",
                $schema,
                ".outbox WHERE status = 'pending' ORDER BY occurred_at, id LIMIT $1 FOR UPDATE"
            )
        };
    }
    match outbox {
        Outbox::Identity => pending!("identity"),
        Outbox::Clinical => pending!("clinical"),
        Outbox::Audit => pending!("audit"),
        Outbox::Platform => pending!("platform"),
        Outbox::Assessments => pending!("assessments"),
        Outbox::Notes => pending!("notes"),
        Outbox::Compliance => pending!("compliance"),
        Outbox::Documents => pending!("documents"),
    }
}

const fn mark_delivered_sql(outbox: Outbox) -> &'static str {
    macro_rules! mark {
        ($schema:literal) => {
            concat!(
                "UPDATE ",
                $schema,
                ".outbox o SET status = 'delivered', delivered_at = now()
                 FROM unnest($1::uuid[], $2::uuid[]) AS b(tenant_id, id)
                 WHERE o.tenant_id = b.tenant_id AND o.id = b.id AND o.status = 'pending'"
            )
        };
    }
    match outbox {
        Outbox::Identity => mark!("identity"),
        Outbox::Clinical => mark!("clinical"),
        Outbox::Audit => mark!("audit"),
        Outbox::Platform => mark!("platform"),
        Outbox::Assessments => mark!("assessments"),
        Outbox::Notes => mark!("notes"),
        Outbox::Compliance => mark!("compliance"),
        Outbox::Documents => mark!("documents"),
    }
}

type PendingRow = (
    Uuid,
    Uuid,
    String,
    i32,
    String,
    Uuid,
    OffsetDateTime,
    serde_json::Value,
);

const INSERT_EVENTS: &str = r#"
INSERT INTO platform.relay_events
    (tenant_id, id, context, event_type, event_version, aggregate_type, aggregate_id, occurred_at, payload)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::int[], $6::text[], $7::uuid[],
                     $8::timestamptz[], $9::jsonb[])
ON CONFLICT (tenant_id, id) DO NOTHING
"#;

const INSERT_DELIVERIES: &str = r#"
INSERT INTO platform.relay_deliveries
    (tenant_id, id, event_id, sink, consumer, subscription_id, aggregate_type, aggregate_id, occurred_at, attempts_max)
SELECT d.tenant_id, d.id, d.event_id, d.sink::platform.relay_sink, d.consumer, d.subscription_id,
       d.aggregate_type, d.aggregate_id, d.occurred_at, d.attempts_max
FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::uuid[], $7::text[],
            $8::uuid[], $9::timestamptz[], $10::int[])
     AS d(tenant_id, id, event_id, sink, consumer, subscription_id, aggregate_type, aggregate_id, occurred_at, attempts_max)
ON CONFLICT (tenant_id, event_id, consumer) DO NOTHING
"#;

/// The claim: due deliveries that head their (consumer, aggregate) queue — no earlier
/// delivery of the same consumer and aggregate is still `pending` — whose sink this
/// relay can serve now and whose subscription (if any) is active. Earlier deliveries
/// that are `dead` or `discarded` no longer count, so a poison event holds its
/// aggregate back only while it is being retried.
///
/// Ordering across relays: a later delivery is never claimable while an earlier one
/// of its queue is pending, whoever holds it, and fan-out writes a queue's deliveries
/// in occurrence order (one fan-out per context at a time), so each consumer sees an
/// aggregate's events in order.
const CLAIM: &str = r#"
WITH picked AS (
    SELECT d.tenant_id, d.id, d.event_id, d.subscription_id
    FROM platform.relay_deliveries d
    WHERE d.state = 'pending' AND d.next_attempt_at <= now()
      AND (d.leased_until IS NULL OR d.leased_until < now())
      AND ((d.sink = 'handler' AND d.consumer = ANY ($1)) OR d.sink = 'webhook'
           OR (d.sink = 'nats' AND $2))
      AND NOT EXISTS (
          SELECT 1 FROM platform.relay_deliveries e
          WHERE e.tenant_id = d.tenant_id AND e.consumer = d.consumer
            AND e.aggregate_type = d.aggregate_type AND e.aggregate_id = d.aggregate_id
            AND e.state = 'pending'
            AND (e.occurred_at, e.event_id) < (d.occurred_at, d.event_id))
      AND (d.subscription_id IS NULL OR EXISTS (
          SELECT 1 FROM platform.webhook_subscriptions s
          WHERE s.tenant_id = d.tenant_id AND s.id = d.subscription_id AND s.state = 'active'))
    ORDER BY d.next_attempt_at
    LIMIT $3
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE platform.relay_deliveries d
SET leased_until = now() + make_interval(secs => $4), lease_token = d.lease_token + 1,
    attempts = d.attempts + 1, relay_id = $5, updated_at = now()
FROM picked
JOIN platform.relay_events ev ON ev.tenant_id = picked.tenant_id AND ev.id = picked.event_id
LEFT JOIN platform.webhook_subscriptions s
    ON s.tenant_id = picked.tenant_id AND s.id = picked.subscription_id
WHERE d.tenant_id = picked.tenant_id AND d.id = picked.id
RETURNING d.tenant_id, d.id, d.sink::text, d.consumer, d.subscription_id, d.attempts, d.attempts_max,
          d.lease_token, s.url, s.secret, ev.id, ev.context, ev.event_type, ev.event_version,
          ev.aggregate_type, ev.aggregate_id, ev.occurred_at, ev.payload
"#;

/// Marks a delivery done, only under the claimed token.
const DELIVERED: &str = r#"
UPDATE platform.relay_deliveries
SET state = 'delivered', leased_until = NULL, last_error = NULL, finished_at = now(), updated_at = now()
WHERE tenant_id = $1 AND id = $2 AND lease_token = $3 AND state = 'pending'
"#;

/// Records a failed attempt, only under the claimed token.
const FAILED: &str = r#"
UPDATE platform.relay_deliveries
SET state = $4::platform.relay_delivery_state,
    next_attempt_at = CASE WHEN $4 = 'pending' THEN now() + make_interval(secs => $5) ELSE next_attempt_at END,
    leased_until = NULL, last_error = $6, updated_at = now(),
    finished_at = CASE WHEN $4 = 'dead' THEN now() END
WHERE tenant_id = $1 AND id = $2 AND lease_token = $3 AND state = 'pending'
RETURNING next_attempt_at
"#;

const RECORD_ATTEMPT: &str = r#"
INSERT INTO platform.relay_attempts
    (tenant_id, delivery_id, attempt, relay_id, started_at, duration_ms, succeeded, status_code,
     response_excerpt, error, retry_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (tenant_id, delivery_id, attempt) DO NOTHING
"#;

const SUBSCRIPTION_SUCCEEDED: &str = r#"
UPDATE platform.webhook_subscriptions SET consecutive_failures = 0, updated_at = now()
WHERE tenant_id = $1 AND id = $2 AND consecutive_failures <> 0
"#;

/// Counts a failure against a subscription and disables it at the threshold.
const SUBSCRIPTION_FAILED: &str = r#"
UPDATE platform.webhook_subscriptions
SET consecutive_failures = consecutive_failures + 1,
    state = CASE WHEN consecutive_failures + 1 >= $3 THEN 'disabled' ELSE state END::platform.webhook_subscription_state,
    disabled_reason = CASE WHEN consecutive_failures + 1 >= $3 AND state = 'active'
                           THEN format('%s failed attempts in a row; last: %s', consecutive_failures + 1, $4::text)
                           ELSE disabled_reason END,
    updated_at = now()
WHERE tenant_id = $1 AND id = $2
RETURNING state::text
"#;

impl Relay {
    /// A relay over `owner` (fan-out, claims, outcomes) and `app` (handlers, as the
    /// service role). With NATS configured, the client connects in the background and
    /// keeps reconnecting; NATS deliveries wait while it is not connected.
    pub async fn new(
        owner: PgPool,
        app: PgPool,
        handlers: Handlers,
        config: RelayConfig,
    ) -> Result<Self, RelayError> {
        assert!(
            (1..=FAN_OUT_BATCH_MAX).contains(&config.fan_out_batch),
            "BUG: fan_out_batch must be 1..={FAN_OUT_BATCH_MAX}"
        );
        assert!(
            (1..=CLAIM_BATCH_MAX).contains(&config.claim_batch),
            "BUG: claim_batch must be 1..={CLAIM_BATCH_MAX}"
        );
        for attempts_max in [config.webhook_attempts_max, config.nats_attempts_max] {
            assert!(
                (1..=ATTEMPTS_MAX).contains(&attempts_max),
                "BUG: attempts_max must be 1..={ATTEMPTS_MAX}"
            );
        }
        assert!(
            config.webhook_failures_to_disable >= 1,
            "BUG: webhook_failures_to_disable must be at least 1"
        );
        assert!(
            config.webhook_timeout < config.lease,
            "BUG: the lease must outlast the webhook timeout, or slow deliveries are sent twice"
        );
        let http = reqwest::Client::builder()
            .timeout(config.webhook_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tenet-relay/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(RelayError::Http)?;
        let nats = match &config.nats {
            Some(nats_config) => {
                assert!(
                    nats_config.ack_timeout < config.lease,
                    "BUG: the lease must outlast the PubAck timeout"
                );
                Some(
                    nats::NatsSink::connect(nats_config.clone())
                        .await
                        .map_err(RelayError::Nats)?,
                )
            }
            None => None,
        };
        let handler_names = handlers.names();
        Ok(Self {
            owner,
            app,
            handlers,
            handler_names,
            config,
            http,
            nats,
        })
    }

    pub fn config(&self) -> &RelayConfig {
        &self.config
    }

    /// One unit of work: fan out every context, then claim and deliver one batch.
    pub async fn run_once(&self) -> Result<Step, sqlx::Error> {
        let n_fanned_out = self.fan_out().await?;
        let mut step = self.deliver_due().await?;
        step.n_fanned_out = n_fanned_out;
        Ok(step)
    }

    /// Hands a batch of each context's pending outbox rows to deliveries; returns how
    /// many rows. A context another relay is fanning out right now is skipped.
    pub async fn fan_out(&self) -> Result<u64, sqlx::Error> {
        let mut n_fanned_out = 0;
        for (position, outbox) in Outbox::ALL.into_iter().enumerate() {
            n_fanned_out += self.fan_out_context(outbox, position).await?;
        }
        Ok(n_fanned_out)
    }

    async fn fan_out_context(&self, outbox: Outbox, position: usize) -> Result<u64, sqlx::Error> {
        let mut tx = self.owner.begin().await?;
        // One fan-out per context at a time: two relays interleaving their inserts
        // could otherwise queue an aggregate's later event before its earlier one.
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1, $2)")
            .bind(FAN_OUT_LOCK_CLASS)
            .bind(i32::try_from(position).expect("BUG: four contexts"))
            .fetch_one(&mut *tx)
            .await?;
        if !locked {
            tx.rollback().await?;
            return Ok(0);
        }
        let rows: Vec<PendingRow> = sqlx::query_as(pending_sql(outbox))
            .bind(i64::try_from(self.config.fan_out_batch).expect("BUG: batch fits i64"))
            .fetch_all(&mut *tx)
            .await?;
        if rows.is_empty() {
            tx.rollback().await?;
            return Ok(0);
        }
        let mut tenants: Vec<Uuid> = rows.iter().map(|row| row.0).collect();
        tenants.sort_unstable();
        tenants.dedup();
        let subscriptions: Vec<(Uuid, Uuid, Vec<String>)> = sqlx::query_as(
            "SELECT tenant_id, id, event_types FROM platform.webhook_subscriptions
             WHERE state = 'active' AND tenant_id = ANY ($1) ORDER BY tenant_id, id",
        )
        .bind(&tenants)
        .fetch_all(&mut *tx)
        .await?;

        let mut events = EventColumns::default();
        let mut deliveries = DeliveryColumns::default();
        for (
            tenant_id,
            id,
            event_type,
            event_version,
            aggregate_type,
            aggregate_id,
            occurred_at,
            payload,
        ) in &rows
        {
            let n_before = deliveries.id.len();
            let mut add =
                |sink: &str, consumer: String, subscription_id: Option<Uuid>, attempts_max: u32| {
                    deliveries.tenant_id.push(*tenant_id);
                    deliveries.id.push(Uuid::now_v7());
                    deliveries.event_id.push(*id);
                    deliveries.sink.push(sink.to_owned());
                    deliveries.consumer.push(consumer);
                    deliveries.subscription_id.push(subscription_id);
                    deliveries.aggregate_type.push(aggregate_type.clone());
                    deliveries.aggregate_id.push(*aggregate_id);
                    deliveries.occurred_at.push(*occurred_at);
                    deliveries
                        .attempts_max
                        .push(i32::try_from(attempts_max).expect("BUG: attempts_max is bounded"));
                };
            for (consumer, attempts_max) in self.handlers.wanting(event_type) {
                add("handler", consumer.to_owned(), None, attempts_max);
            }
            // Only the event's own tenant's subscriptions: the tenant boundary of
            // webhooks is this comparison.
            for (_, subscription_id, _) in subscriptions.iter().filter(|(sub_tenant, _, types)| {
                sub_tenant == tenant_id && wants(types, event_type)
            }) {
                add(
                    "webhook",
                    webhook::consumer(*subscription_id),
                    Some(*subscription_id),
                    self.config.webhook_attempts_max,
                );
            }
            if self.nats.is_some() {
                add(
                    "nats",
                    nats::CONSUMER.to_owned(),
                    None,
                    self.config.nats_attempts_max,
                );
            }
            // An event nobody wants is handed to nobody: it is delivered, to no one.
            if deliveries.id.len() > n_before {
                events.tenant_id.push(*tenant_id);
                events.id.push(*id);
                events.context.push(outbox.schema().to_owned());
                events.event_type.push(event_type.clone());
                events.event_version.push(*event_version);
                events.aggregate_type.push(aggregate_type.clone());
                events.aggregate_id.push(*aggregate_id);
                events.occurred_at.push(*occurred_at);
                events.payload.push(payload.clone());
            }
        }
        if !events.id.is_empty() {
            sqlx::query(INSERT_EVENTS)
                .bind(&events.tenant_id)
                .bind(&events.id)
                .bind(&events.context)
                .bind(&events.event_type)
                .bind(&events.event_version)
                .bind(&events.aggregate_type)
                .bind(&events.aggregate_id)
                .bind(&events.occurred_at)
                .bind(&events.payload)
                .execute(&mut *tx)
                .await?;
            sqlx::query(INSERT_DELIVERIES)
                .bind(&deliveries.tenant_id)
                .bind(&deliveries.id)
                .bind(&deliveries.event_id)
                .bind(&deliveries.sink)
                .bind(&deliveries.consumer)
                .bind(&deliveries.subscription_id)
                .bind(&deliveries.aggregate_type)
                .bind(&deliveries.aggregate_id)
                .bind(&deliveries.occurred_at)
                .bind(&deliveries.attempts_max)
                .execute(&mut *tx)
                .await?;
        }
        let tenant_ids: Vec<Uuid> = rows.iter().map(|row| row.0).collect();
        let ids: Vec<Uuid> = rows.iter().map(|row| row.1).collect();
        let n_marked = sqlx::query(mark_delivered_sql(outbox))
            .bind(&tenant_ids)
            .bind(&ids)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        tracing::debug!(
            context = outbox.schema(),
            n_marked,
            n_deliveries = deliveries.id.len(),
            "fanned out outbox events"
        );
        Ok(n_marked)
    }

    /// Claims one batch of due deliveries and delivers them concurrently.
    pub async fn deliver_due(&self) -> Result<Step, sqlx::Error> {
        let claimed = self.claim().await?;
        let outcomes =
            futures::future::join_all(claimed.into_iter().map(|claimed| self.deliver(claimed)))
                .await;
        let mut step = Step::default();
        for outcome in outcomes {
            match outcome? {
                Outcome::Delivered => step.n_delivered += 1,
                Outcome::Retrying => step.n_retrying += 1,
                Outcome::Dead => step.n_dead += 1,
                Outcome::LeaseLost => step.n_lease_lost += 1,
            }
        }
        Ok(step)
    }

    fn nats_ready(&self) -> bool {
        self.nats.as_ref().is_some_and(nats::NatsSink::is_connected)
    }

    async fn claim(&self) -> Result<Vec<Claimed>, sqlx::Error> {
        let rows = sqlx::query(CLAIM)
            .bind(&self.handler_names)
            .bind(self.nats_ready())
            .bind(i64::try_from(self.config.claim_batch).expect("BUG: batch fits i64"))
            .bind(self.config.lease.as_secs_f64())
            .bind(&self.config.relay_id)
            .fetch_all(&self.owner)
            .await?;
        rows.into_iter().map(claimed_from_row).collect()
    }

    async fn deliver(&self, claimed: Claimed) -> Result<Outcome, sqlx::Error> {
        let started_at = OffsetDateTime::now_utc();
        let clock = Instant::now();
        let attempt = match claimed.sink.as_str() {
            "handler" => self.deliver_to_handler(&claimed).await,
            "webhook" => {
                let (Some(url), Some(secret)) = (&claimed.url, &claimed.secret) else {
                    unreachable!("BUG: a webhook delivery has a subscription (table CHECK)");
                };
                webhook::post(&self.http, url, secret, claimed.delivery_id, &claimed.event).await
            }
            "nats" => match &self.nats {
                Some(sink) => sink.publish(&claimed.event).await,
                // Claimed only when connected, so only by a relay with NATS configured.
                None => unreachable!("BUG: a relay without NATS claimed a NATS delivery"),
            },
            other => unreachable!("BUG: unknown sink {other}"),
        };
        let duration_ms = i32::try_from(clock.elapsed().as_millis()).unwrap_or(i32::MAX);
        self.record(&claimed, &attempt, started_at, duration_ms)
            .await
    }

    /// Runs a handler in its tenant's transaction, with the processed-event record
    /// written first in the same transaction: if it is already there the effect has
    /// been committed before, and the handler is not called again.
    async fn deliver_to_handler(&self, claimed: &Claimed) -> Attempt {
        let Some(registered) = self.handlers.handlers.get(claimed.consumer.as_str()) else {
            unreachable!("BUG: a relay claims only handlers it has registered");
        };
        let actor = format!("relay:{}", claimed.consumer);
        let result: Result<bool, HandlerError> = async {
            let mut tx = TenantTx::begin_as(&self.app, claimed.tenant_id, &actor, None).await?;
            let n_new = sqlx::query(
                "INSERT INTO platform.processed_events (tenant_id, consumer, event_id)
                 VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(claimed.tenant_id.as_uuid())
            .bind(&claimed.consumer)
            .bind(claimed.event.id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n_new == 0 {
                tx.rollback().await?;
                return Ok(false);
            }
            // On an error the transaction is dropped, rolling back the effect and the
            // processed record together.
            registered.handler.handle(&mut tx, &claimed.event).await?;
            tx.commit().await?;
            Ok(true)
        }
        .await;
        match result {
            Ok(true) => Attempt::ok(),
            Ok(false) => {
                tracing::info!(consumer = %claimed.consumer, event_id = %claimed.event.id, "event redelivered to a handler that had processed it; skipped");
                Attempt::ok()
            }
            Err(err) => Attempt {
                permanent: matches!(err, HandlerError::Fail(_)),
                ..Attempt::failed(err.to_string())
            },
        }
    }

    /// Records an attempt and its outcome, and (for webhooks) the subscription's run
    /// of failures, in one transaction.
    async fn record(
        &self,
        claimed: &Claimed,
        attempt: &Attempt,
        started_at: OffsetDateTime,
        duration_ms: i32,
    ) -> Result<Outcome, sqlx::Error> {
        let error: Option<String> = attempt
            .error
            .as_ref()
            .map(|error| error.chars().take(LAST_ERROR_LEN_MAX).collect());
        let mut tx = self.owner.begin().await?;
        let (outcome, retry_at) = if attempt.succeeded {
            let n = sqlx::query(DELIVERED)
                .bind(claimed.tenant_id.as_uuid())
                .bind(claimed.delivery_id)
                .bind(claimed.lease_token)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if let Some(subscription_id) = claimed.subscription_id {
                sqlx::query(SUBSCRIPTION_SUCCEEDED)
                    .bind(claimed.tenant_id.as_uuid())
                    .bind(subscription_id)
                    .execute(&mut *tx)
                    .await?;
            }
            (
                if n == 1 {
                    Outcome::Delivered
                } else {
                    Outcome::LeaseLost
                },
                None,
            )
        } else {
            let dead = attempt.permanent || claimed.attempt >= claimed.attempts_max;
            let delay = backoff(
                claimed.attempt,
                self.config.backoff_base,
                self.config.backoff_max,
                rand::thread_rng().gen_range(0.0..1.0),
            );
            let next_attempt_at: Option<OffsetDateTime> = sqlx::query_scalar(FAILED)
                .bind(claimed.tenant_id.as_uuid())
                .bind(claimed.delivery_id)
                .bind(claimed.lease_token)
                .bind(if dead { "dead" } else { "pending" })
                .bind(delay.as_secs_f64())
                .bind(&error)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(subscription_id) = claimed.subscription_id {
                let state: Option<String> = sqlx::query_scalar(SUBSCRIPTION_FAILED)
                    .bind(claimed.tenant_id.as_uuid())
                    .bind(subscription_id)
                    .bind(
                        i32::try_from(self.config.webhook_failures_to_disable).unwrap_or(i32::MAX),
                    )
                    .bind(error.as_deref().unwrap_or("failed"))
                    .fetch_optional(&mut *tx)
                    .await?;
                if state.as_deref() == Some("disabled") {
                    tracing::warn!(tenant_id = %claimed.tenant_id, %subscription_id, "webhook subscription disabled after repeated failures");
                }
            }
            match (next_attempt_at, dead) {
                (None, _) => (Outcome::LeaseLost, None),
                (Some(_), true) => (Outcome::Dead, None),
                (Some(at), false) => (Outcome::Retrying, Some(at)),
            }
        };
        sqlx::query(RECORD_ATTEMPT)
            .bind(claimed.tenant_id.as_uuid())
            .bind(claimed.delivery_id)
            .bind(i32::try_from(claimed.attempt).expect("BUG: attempts are bounded"))
            .bind(&self.config.relay_id)
            .bind(started_at)
            .bind(duration_ms)
            .bind(attempt.succeeded)
            .bind(
                attempt
                    .status_code
                    .map(|code| i16::try_from(code).unwrap_or(i16::MAX)),
            )
            .bind(&attempt.response_excerpt)
            .bind(&error)
            .bind(retry_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        if !attempt.succeeded {
            tracing::info!(
                tenant_id = %claimed.tenant_id,
                delivery_id = %claimed.delivery_id,
                consumer = %claimed.consumer,
                attempt = claimed.attempt,
                outcome = ?outcome,
                error = error.as_deref().unwrap_or(""),
                "event delivery failed"
            );
        }
        Ok(outcome)
    }

    /// Fans out and delivers until `shutdown` turns true. A step that found work is
    /// followed at once by the next; an idle one waits `poll_interval`. Deliveries in
    /// flight at shutdown finish (each bounded by its sink's timeout); one cut off by
    /// the process ending is redelivered when its lease expires.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        tracing::info!(relay_id = %self.config.relay_id, handlers = ?self.handler_names, nats = self.nats.is_some(), "outbox relay started");
        loop {
            if *shutdown.borrow() {
                break;
            }
            let wait = match self.run_once().await {
                Ok(step) if step.is_idle() => true,
                Ok(_) => false,
                Err(err) => {
                    tracing::warn!(error = %err, "relay step failed; retrying");
                    true
                }
            };
            if wait {
                tokio::select! {
                    () = tokio::time::sleep(self.config.poll_interval) => {}
                    _ = shutdown.wait_for(|stop| *stop) => break,
                }
            }
        }
        tracing::info!(relay_id = %self.config.relay_id, "outbox relay stopped");
    }
}

#[derive(Default)]
struct EventColumns {
    tenant_id: Vec<Uuid>,
    id: Vec<Uuid>,
    context: Vec<String>,
    event_type: Vec<String>,
    event_version: Vec<i32>,
    aggregate_type: Vec<String>,
    aggregate_id: Vec<Uuid>,
    occurred_at: Vec<OffsetDateTime>,
    payload: Vec<serde_json::Value>,
}

#[derive(Default)]
struct DeliveryColumns {
    tenant_id: Vec<Uuid>,
    id: Vec<Uuid>,
    event_id: Vec<Uuid>,
    sink: Vec<String>,
    consumer: Vec<String>,
    subscription_id: Vec<Option<Uuid>>,
    aggregate_type: Vec<String>,
    aggregate_id: Vec<Uuid>,
    occurred_at: Vec<OffsetDateTime>,
    attempts_max: Vec<i32>,
}

fn claimed_from_row(row: sqlx::postgres::PgRow) -> Result<Claimed, sqlx::Error> {
    use sqlx::Row;
    let context: String = row.try_get(11)?;
    let context = Outbox::from_schema(&context).ok_or_else(|| {
        sqlx::Error::Decode(format!("relay event from unknown context {context:?}").into())
    })?;
    Ok(Claimed {
        tenant_id: TenantId::new_unchecked(row.try_get(0)?),
        delivery_id: row.try_get(1)?,
        sink: row.try_get(2)?,
        consumer: row.try_get(3)?,
        subscription_id: row.try_get(4)?,
        attempt: u32::try_from(row.try_get::<i32, _>(5)?).unwrap_or(1),
        attempts_max: u32::try_from(row.try_get::<i32, _>(6)?).unwrap_or(1),
        lease_token: row.try_get(7)?,
        url: row.try_get(8)?,
        secret: row.try_get(9)?,
        event: Envelope {
            id: row.try_get(10)?,
            tenant_id: TenantId::new_unchecked(row.try_get(0)?),
            context,
            event_type: row.try_get(12)?,
            event_version: row.try_get(13)?,
            aggregate_type: row.try_get(14)?,
            aggregate_id: row.try_get(15)?,
            occurred_at: row.try_get(16)?,
            payload: row.try_get(17)?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_filter_wants_every_event_type_and_a_list_only_its_own() {
        assert!(wants::<&str>(&[], "patient.created"));
        assert!(wants(&["patient.created"], "patient.created"));
        assert!(!wants(&["patient.created"], "patient.updated"));
    }
}
