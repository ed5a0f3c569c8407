//! Dead letters: work that failed past its attempts and waits on a person — a `dead`
//! job not yet discarded, or a `dead` relay delivery (a webhook, a handler, NATS).
//! One list, one way to retry or discard, whichever it is: `tenet deadletters …` on
//! the owner role (every tenant) and `/v1/dead-letters` in a tenant's transaction
//! (row-level security shows that tenant's only, and another tenant's id is unknown).
//!
//! A dead letter is named by the id of its job or delivery; both are UUIDv7 from one
//! generator, so an id names at most one of them.

use kernel::{JobId, TenantId};
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::jobs::admin::{self as jobs_admin, AdminError, JobRow};
use crate::relay::admin::{self as relay_admin, DeliveryDetail};

/// Where a dead letter comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Job,
    Delivery,
}

/// One dead letter, as a list shows it.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub source: Source,
    /// The job's kind (`platform.probe`), or the delivery's consumer and event type
    /// (`webhook:<subscription> ← patient.created`).
    pub what: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub dead_since: Option<OffsetDateTime>,
}

/// One dead letter, whole.
#[derive(Debug, Clone)]
pub enum Detail {
    Job(JobRow),
    Delivery(DeliveryDetail),
}

#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("no dead letter {0}")]
    NotFound(Uuid),
    #[error("{0} is not a dead letter: its {1} is {2}")]
    NotDead(Uuid, Source, String),
    #[error(transparent)]
    Job(#[from] AdminError),
    #[error(transparent)]
    Unexpected(#[from] sqlx::Error),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Source::Job => "job",
            Source::Delivery => "delivery",
        })
    }
}

/// Dead letters, most recently dead first: up to `limit` jobs and `limit` deliveries,
/// merged, then cut to `limit`.
pub async fn list(
    conn: &mut PgConnection,
    tenant_id: Option<TenantId>,
    limit: i64,
) -> Result<Vec<DeadLetter>, sqlx::Error> {
    let jobs = jobs_admin::dead_letters(&mut *conn, tenant_id, limit).await?;
    let deliveries = relay_admin::list_dead(&mut *conn, tenant_id, limit).await?;
    let mut letters: Vec<DeadLetter> = jobs
        .into_iter()
        .map(|job| DeadLetter {
            id: job.id,
            tenant_id: job.tenant_id,
            source: Source::Job,
            what: job.kind,
            attempts: job.attempts,
            last_error: job.last_error,
            dead_since: job.finished_at,
        })
        .chain(deliveries.into_iter().map(|delivery| DeadLetter {
            id: delivery.id,
            tenant_id: delivery.tenant_id,
            source: Source::Delivery,
            what: format!("{} ← {}", delivery.consumer, delivery.event_type),
            attempts: delivery.attempts,
            last_error: delivery.last_error,
            dead_since: delivery.finished_at,
        }))
        .collect();
    letters.sort_by(|a, b| b.dead_since.cmp(&a.dead_since).then(b.id.cmp(&a.id)));
    letters.truncate(usize::try_from(limit.max(0)).unwrap_or(0));
    Ok(letters)
}

/// The job or delivery `id`, whatever its state (the caller decides what to say of
/// one that is not dead).
pub async fn show(conn: &mut PgConnection, id: Uuid) -> Result<Option<Detail>, sqlx::Error> {
    if let Some(job) = jobs_admin::show(&mut *conn, JobId::new_unchecked(id)).await? {
        return Ok(Some(Detail::Job(job)));
    }
    Ok(relay_admin::show(&mut *conn, id)
        .await?
        .map(Detail::Delivery))
}

/// Runs a dead letter again now, with fresh attempts. A retried delivery may now
/// arrive after later events of its aggregate: retrying is the operator's choice.
pub async fn retry(conn: &mut PgConnection, id: Uuid) -> Result<Source, DeadLetterError> {
    let source = dead(conn, id).await?;
    match source {
        Source::Job => jobs_admin::retry(conn, JobId::new_unchecked(id)).await?,
        Source::Delivery => {
            if !relay_admin::retry(conn, id).await? {
                return Err(not_dead(conn, id).await);
            }
        }
    }
    Ok(source)
}

/// Gives up on a dead letter: it leaves the list and stays recorded (a job as `dead`
/// with `discarded_at`, a delivery as `discarded`).
pub async fn discard(conn: &mut PgConnection, id: Uuid) -> Result<Source, DeadLetterError> {
    let source = dead(conn, id).await?;
    match source {
        Source::Job => jobs_admin::discard(conn, JobId::new_unchecked(id)).await?,
        Source::Delivery => {
            if !relay_admin::discard(conn, id).await? {
                return Err(not_dead(conn, id).await);
            }
        }
    }
    Ok(source)
}

/// Where the dead letter `id` comes from, if it is one.
async fn dead(conn: &mut PgConnection, id: Uuid) -> Result<Source, DeadLetterError> {
    match show(conn, id).await? {
        None => Err(DeadLetterError::NotFound(id)),
        Some(Detail::Job(job)) if job.state == "dead" && job.discarded_at.is_none() => {
            Ok(Source::Job)
        }
        Some(Detail::Job(job)) => Err(DeadLetterError::NotDead(
            id,
            Source::Job,
            if job.state == "dead" {
                "discarded".to_owned()
            } else {
                job.state
            },
        )),
        Some(Detail::Delivery(detail)) if detail.delivery.state == "dead" => Ok(Source::Delivery),
        Some(Detail::Delivery(detail)) => Err(DeadLetterError::NotDead(
            id,
            Source::Delivery,
            detail.delivery.state,
        )),
    }
}

/// Why a dead letter that was dead a moment ago could not be changed: someone else
/// changed it in between.
async fn not_dead(conn: &mut PgConnection, id: Uuid) -> DeadLetterError {
    match dead(conn, id).await {
        Ok(source) => DeadLetterError::NotDead(id, source, "being changed".to_owned()),
        Err(err) => err,
    }
}
