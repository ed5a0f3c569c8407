//! What operators and tenants see and do with the relay.
//!
//! - Dead letters (`tenet deadletters …`, `/v1/dead-letters`): [`list_dead`], [`show`],
//!   [`retry`], [`discard`]. They take a connection and see what it may see: on the
//!   owner role, whose `relay_dispatch` policies span tenants, an operator's view
//!   (never reachable from a request); in a request's `TenantTx`, that tenant's only.
//! - Webhook subscriptions: [`create_subscription`], [`list_subscriptions`],
//!   [`disable_subscription`], [`enable_subscription`]. They take the tenant's own
//!   [`TenantTx`], so row-level security scopes them to that tenant.
//! - [`relay_lag`]: how far behind the relay is, per context (metrics, `tenet check`).

use db::TenantTx;
use kernel::TenantId;
use rand::RngCore;
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::outbox::Outbox;

/// The most rows one listing returns.
pub const LIST_LEN_MAX: i64 = 1000;
/// The most event types one subscription filters on.
pub const EVENT_TYPES_MAX: usize = 100;
/// The longest subscription URL.
pub const URL_LEN_MAX: usize = 2000;

/// A delivery as operators see it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryRow {
    pub tenant_id: Uuid,
    pub id: Uuid,
    pub event_id: Uuid,
    pub event_type: String,
    /// `handler`, `webhook` or `nats`.
    pub sink: String,
    /// A handler's name, `webhook:<subscription id>` or `nats`.
    pub consumer: String,
    pub subscription_id: Option<Uuid>,
    pub aggregate_type: String,
    pub aggregate_id: Uuid,
    pub occurred_at: OffsetDateTime,
    /// `pending`, `delivered`, `dead` or `discarded`.
    pub state: String,
    pub attempts: i32,
    pub attempts_max: i32,
    pub next_attempt_at: OffsetDateTime,
    pub last_error: Option<String>,
    pub created_at: OffsetDateTime,
    pub finished_at: Option<OffsetDateTime>,
}

/// One attempt of a delivery and what came back.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AttemptRow {
    pub attempt: i32,
    pub relay_id: String,
    pub started_at: OffsetDateTime,
    pub duration_ms: i32,
    pub succeeded: bool,
    pub status_code: Option<i16>,
    pub response_excerpt: Option<String>,
    pub error: Option<String>,
    /// When the next attempt was scheduled, if this one failed and was retried.
    pub retry_at: Option<OffsetDateTime>,
}

/// A delivery with its attempts, oldest first.
#[derive(Debug, Clone)]
pub struct DeliveryDetail {
    pub delivery: DeliveryRow,
    pub attempts: Vec<AttemptRow>,
}

const DELIVERY_COLUMNS: &str = "d.tenant_id, d.id, d.event_id, ev.event_type, d.sink::text AS sink, d.consumer, d.subscription_id, d.aggregate_type, d.aggregate_id, d.occurred_at, d.state::text AS state, d.attempts, d.attempts_max, d.next_attempt_at, d.last_error, d.created_at, d.finished_at";

/// Dead deliveries, most recently dead first, optionally of one tenant.
pub async fn list_dead(
    conn: &mut PgConnection,
    tenant_id: Option<TenantId>,
    limit: i64,
) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {DELIVERY_COLUMNS}
         FROM platform.relay_deliveries d
         JOIN platform.relay_events ev ON ev.tenant_id = d.tenant_id AND ev.id = d.event_id
         WHERE d.state = 'dead' AND ($1::uuid IS NULL OR d.tenant_id = $1)
         ORDER BY d.finished_at DESC, d.id DESC
         LIMIT $2"
    ))
    .bind(tenant_id.map(TenantId::into_uuid))
    .bind(limit.clamp(1, LIST_LEN_MAX))
    .fetch_all(conn)
    .await
}

/// Every delivery of one event (its fan-out), for "where did event X go?".
pub async fn deliveries_of_event(
    owner: &PgPool,
    event_id: Uuid,
) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {DELIVERY_COLUMNS}
         FROM platform.relay_deliveries d
         JOIN platform.relay_events ev ON ev.tenant_id = d.tenant_id AND ev.id = d.event_id
         WHERE d.event_id = $1
         ORDER BY d.consumer"
    ))
    .bind(event_id)
    .fetch_all(owner)
    .await
}

/// One delivery (in any state) and its attempts.
pub async fn show(
    conn: &mut PgConnection,
    delivery_id: Uuid,
) -> Result<Option<DeliveryDetail>, sqlx::Error> {
    let delivery: Option<DeliveryRow> = sqlx::query_as(&format!(
        "SELECT {DELIVERY_COLUMNS}
         FROM platform.relay_deliveries d
         JOIN platform.relay_events ev ON ev.tenant_id = d.tenant_id AND ev.id = d.event_id
         WHERE d.id = $1"
    ))
    .bind(delivery_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(delivery) = delivery else {
        return Ok(None);
    };
    let attempts = sqlx::query_as(
        "SELECT attempt, relay_id, started_at, duration_ms, succeeded, status_code,
                response_excerpt, error, retry_at
         FROM platform.relay_attempts WHERE tenant_id = $1 AND delivery_id = $2
         ORDER BY attempt",
    )
    .bind(delivery.tenant_id)
    .bind(delivery.id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(Some(DeliveryDetail { delivery, attempts }))
}

/// Gives a dead delivery a fresh set of attempts, due now. `false` if it is not dead.
///
/// The retried event may now arrive after later events of its aggregate that were
/// delivered while it was dead: retrying is the operator's decision to accept that.
pub async fn retry(conn: &mut PgConnection, delivery_id: Uuid) -> Result<bool, sqlx::Error> {
    let n = sqlx::query(
        "UPDATE platform.relay_deliveries
         SET state = 'pending', attempts = 0, next_attempt_at = now(), leased_until = NULL,
             finished_at = NULL, updated_at = now()
         WHERE id = $1 AND state = 'dead'",
    )
    .bind(delivery_id)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Gives up on a dead delivery for good: it stays, as `discarded`, for the record.
/// `false` if it is not dead.
pub async fn discard(conn: &mut PgConnection, delivery_id: Uuid) -> Result<bool, sqlx::Error> {
    let n = sqlx::query(
        "UPDATE platform.relay_deliveries SET state = 'discarded', updated_at = now()
         WHERE id = $1 AND state = 'dead'",
    )
    .bind(delivery_id)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// A webhook subscription, without its secret.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Subscription {
    pub tenant_id: Uuid,
    pub id: Uuid,
    pub url: String,
    /// Empty: every event type.
    pub event_types: Vec<String>,
    /// `active` or `disabled`.
    pub state: String,
    pub consecutive_failures: i32,
    pub disabled_reason: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// A subscription just made, with the secret that signs its deliveries. The secret is
/// returned here only: give it to the receiver now.
#[derive(Clone)]
pub struct CreatedSubscription {
    pub subscription: Subscription,
    pub secret: String,
}

impl std::fmt::Debug for CreatedSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedSubscription")
            .field("subscription", &self.subscription)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// What a new subscription listens to.
#[derive(Debug, Clone)]
pub struct NewSubscription {
    /// `http://` or `https://`.
    pub url: String,
    /// Empty: every event type.
    pub event_types: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SubscriptionError {
    #[error("the URL must be http:// or https:// and at most {URL_LEN_MAX} characters")]
    InvalidUrl,
    #[error("at most {EVENT_TYPES_MAX} event types, each dotted lowercase")]
    InvalidEventTypes,
    #[error(transparent)]
    Unexpected(#[from] sqlx::Error),
}

const SUBSCRIPTION_COLUMNS: &str = "tenant_id, id, url, event_types, state::text AS state, consecutive_failures, disabled_reason, created_at, updated_at";

/// Creates a subscription of `tx`'s tenant, active, with a fresh secret.
pub async fn create_subscription(
    tx: &mut TenantTx,
    new: NewSubscription,
) -> Result<CreatedSubscription, SubscriptionError> {
    let url_ok = (new.url.starts_with("http://") || new.url.starts_with("https://"))
        && new.url.len() <= URL_LEN_MAX
        && reqwest::Url::parse(&new.url).is_ok();
    if !url_ok {
        return Err(SubscriptionError::InvalidUrl);
    }
    let types_ok = new.event_types.len() <= EVENT_TYPES_MAX
        && new.event_types.iter().all(|event_type| {
            !event_type.is_empty()
                && event_type.len() <= 100
                && event_type
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_')
        });
    if !types_ok {
        return Err(SubscriptionError::InvalidEventTypes);
    }
    let mut key = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    let secret = format!("whsec_{}", hex::encode(key));
    let subscription: Subscription = sqlx::query_as(&format!(
        "INSERT INTO platform.webhook_subscriptions (tenant_id, id, url, event_types, secret)
         VALUES ($1, $2, $3, $4, $5)
         RETURNING {SUBSCRIPTION_COLUMNS}"
    ))
    .bind(tx.tenant_id().as_uuid())
    .bind(Uuid::now_v7())
    .bind(&new.url)
    .bind(&new.event_types)
    .bind(&secret)
    .fetch_one(&mut **tx)
    .await?;
    Ok(CreatedSubscription {
        subscription,
        secret,
    })
}

/// The subscriptions of `tx`'s tenant, oldest first.
pub async fn list_subscriptions(tx: &mut TenantTx) -> Result<Vec<Subscription>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM platform.webhook_subscriptions
         WHERE tenant_id = $1 ORDER BY created_at, id LIMIT $2"
    ))
    .bind(tx.tenant_id().as_uuid())
    .bind(LIST_LEN_MAX)
    .fetch_all(&mut **tx)
    .await
}

/// One subscription of `tx`'s tenant.
pub async fn show_subscription(
    tx: &mut TenantTx,
    subscription_id: Uuid,
) -> Result<Option<Subscription>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM platform.webhook_subscriptions
         WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tx.tenant_id().as_uuid())
    .bind(subscription_id)
    .fetch_optional(&mut **tx)
    .await
}

/// Stops deliveries to a subscription: new events are no longer queued for it, and its
/// pending deliveries wait. `false` if it does not exist (in this tenant).
pub async fn disable_subscription(
    tx: &mut TenantTx,
    subscription_id: Uuid,
) -> Result<bool, sqlx::Error> {
    let n = sqlx::query(
        "UPDATE platform.webhook_subscriptions
         SET state = 'disabled', disabled_reason = 'disabled by ' || $3, updated_at = now()
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(subscription_id)
    .bind(tx.actor().to_owned())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Resumes a subscription with a clean run of failures: its waiting deliveries go out.
/// `false` if it does not exist (in this tenant).
pub async fn enable_subscription(
    tx: &mut TenantTx,
    subscription_id: Uuid,
) -> Result<bool, sqlx::Error> {
    let n = sqlx::query(
        "UPDATE platform.webhook_subscriptions
         SET state = 'active', consecutive_failures = 0, disabled_reason = NULL, updated_at = now()
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(subscription_id)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// How far one outbox is behind.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxLag {
    pub context: Outbox,
    pub n_pending: i64,
    /// Age of the oldest pending event; `None` when none is pending.
    pub oldest_pending_age_secs: Option<f64>,
}

/// How far the relay is behind: outbox rows not yet fanned out, deliveries not yet
/// confirmed, and dead letters waiting for an operator.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayLag {
    pub outboxes: Vec<OutboxLag>,
    pub n_deliveries_pending: i64,
    pub oldest_delivery_pending_age_secs: Option<f64>,
    pub n_deliveries_dead: i64,
}

/// Reads the relay's lag, across tenants (owner pool).
pub async fn relay_lag(owner: &PgPool) -> Result<RelayLag, sqlx::Error> {
    let mut outboxes = Vec::with_capacity(Outbox::ALL.len());
    for context in Outbox::ALL {
        // Table names cannot be bound; the schema is one of four literals.
        let (n_pending, oldest): (i64, Option<f64>) = sqlx::query_as(&format!(
            "SELECT count(*), extract(epoch FROM now() - min(occurred_at))::float8
             FROM {}.outbox WHERE status = 'pending'",
            context.schema()
        ))
        .fetch_one(owner)
        .await?;
        outboxes.push(OutboxLag {
            context,
            n_pending,
            oldest_pending_age_secs: oldest,
        });
    }
    let (n_deliveries_pending, oldest_delivery_pending_age_secs, n_deliveries_dead): (
        i64,
        Option<f64>,
        i64,
    ) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE state = 'pending'),
                extract(epoch FROM now() - min(created_at) FILTER (WHERE state = 'pending'))::float8,
                count(*) FILTER (WHERE state = 'dead')
         FROM platform.relay_deliveries WHERE state IN ('pending', 'dead')",
    )
    .fetch_one(owner)
    .await?;
    Ok(RelayLag {
        outboxes,
        n_deliveries_pending,
        oldest_delivery_pending_age_secs,
        n_deliveries_dead,
    })
}
