//! What operators see and do with jobs (`tenet jobs list|show|retry|cancel`,
//! `tenet deadletters …`) and what a tenant's admins see and do with their own
//! (`/v1/jobs`, `/v1/dead-letters`).
//!
//! Every function takes a connection, and sees what the connection's role and
//! transaction may see: on the owner role, whose `job_dispatch` policy spans every
//! tenant, an operator's view of the whole database (never reachable from a request);
//! in a request's `TenantTx`, row-level security narrows it to that tenant's jobs.

use kernel::{JobId, TenantId};
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

/// The most jobs one listing returns.
pub const LIST_LEN_MAX: i64 = 1000;

/// A job as operators see it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JobRow {
    pub tenant_id: Uuid,
    pub id: Uuid,
    pub kind: String,
    pub args_version: i32,
    pub args: serde_json::Value,
    pub queue: String,
    pub priority: i16,
    pub run_at: OffsetDateTime,
    pub state: String,
    pub attempts: i32,
    pub attempts_max: i32,
    pub lease_expires_at: Option<OffsetDateTime>,
    pub fencing_token: i64,
    pub worker_id: Option<String>,
    pub last_error: Option<String>,
    pub unique_key: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub finished_at: Option<OffsetDateTime>,
    /// When an operator took it off the dead-letter view.
    pub discarded_at: Option<OffsetDateTime>,
}

const COLUMNS: &str = "tenant_id, id, kind, args_version, args, queue, priority, run_at, state::text AS state, attempts, attempts_max, (SELECT l.expires_at FROM platform.job_leases l WHERE l.tenant_id = jobs.tenant_id AND l.id = jobs.lease_id) AS lease_expires_at, fencing_token, worker_id, last_error, unique_key, created_at, updated_at, finished_at, discarded_at";

/// The job states, as the database enum spells them.
pub const STATES: &[&str] = &[
    "scheduled",
    "running",
    "succeeded",
    "retrying",
    "dead",
    "cancelled",
];

/// Jobs, newest first, optionally of one state and one tenant.
pub async fn list(
    conn: &mut PgConnection,
    state: Option<&str>,
    tenant_id: Option<TenantId>,
    limit: i64,
) -> Result<Vec<JobRow>, sqlx::Error> {
    assert!(
        state.is_none_or(|state| STATES.contains(&state)),
        "BUG: the job state must be validated at the edge"
    );
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM platform.jobs
         WHERE ($1::platform.job_state IS NULL OR state = $1::platform.job_state)
           AND ($2::uuid IS NULL OR tenant_id = $2)
         ORDER BY created_at DESC, id DESC
         LIMIT $3"
    ))
    .bind(state)
    .bind(tenant_id.map(TenantId::into_uuid))
    .bind(limit.clamp(1, LIST_LEN_MAX))
    .fetch_all(conn)
    .await
}

/// Dead letters: jobs that are `dead` and not discarded, most recently dead first.
pub async fn dead_letters(
    conn: &mut PgConnection,
    tenant_id: Option<TenantId>,
    limit: i64,
) -> Result<Vec<JobRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM platform.jobs
         WHERE dead_letter_at IS NOT NULL
           AND ($1::uuid IS NULL OR tenant_id = $1)
         ORDER BY dead_letter_at DESC, id DESC
         LIMIT $2"
    ))
    .bind(tenant_id.map(TenantId::into_uuid))
    .bind(limit.clamp(1, LIST_LEN_MAX))
    .fetch_all(conn)
    .await
}

/// How many dead letters wait, of the jobs the connection sees.
pub async fn count_dead_letters(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM platform.jobs WHERE dead_letter_at IS NOT NULL")
        .fetch_one(conn)
        .await
}

pub async fn show(conn: &mut PgConnection, job_id: JobId) -> Result<Option<JobRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM platform.jobs WHERE id = $1"
    ))
    .bind(job_id.as_uuid())
    .fetch_optional(conn)
    .await
}

/// The jobs of `kind` whose arguments contain `args` (JSON containment), newest first:
/// how a context finds the jobs it enqueued for one of its records.
pub async fn find_by_args(
    conn: &mut PgConnection,
    kind: &str,
    args: &serde_json::Value,
) -> Result<Vec<JobRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM platform.jobs WHERE kind = $1 AND args @> $2 ORDER BY id DESC LIMIT 100"
    ))
    .bind(kind)
    .bind(args)
    .fetch_all(conn)
    .await
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("no job {0}")]
    NotFound(JobId),
    #[error("job {job_id} is {state}; only {allowed} jobs can be {action}")]
    WrongState {
        job_id: JobId,
        state: String,
        allowed: &'static str,
        action: &'static str,
    },
    #[error("another pending job of the tenant holds the unique key of job {0}")]
    UniqueKeyTaken(JobId),
    #[error(transparent)]
    Unexpected(#[from] sqlx::Error),
}

/// Runs a `dead`, `cancelled` or `retrying` job again, now, with its attempts reset.
/// A discarded dead letter can be retried too.
pub async fn retry(conn: &mut PgConnection, job_id: JobId) -> Result<(), AdminError> {
    let updated = sqlx::query(
        "UPDATE platform.jobs
         SET state = 'scheduled', run_at = now(), attempts = 0, finished_at = NULL,
             discarded_at = NULL, updated_at = now()
         WHERE id = $1 AND state IN ('dead', 'cancelled', 'retrying')",
    )
    .bind(job_id.as_uuid())
    .execute(&mut *conn)
    .await;
    match updated {
        Ok(done) if done.rows_affected() == 1 => Ok(()),
        Ok(_) => Err(wrong_state(conn, job_id, "dead, cancelled or retrying", "retried").await),
        Err(sqlx::Error::Database(err)) if err.constraint() == Some("jobs_unique_pending") => {
            Err(AdminError::UniqueKeyTaken(job_id))
        }
        Err(err) => Err(err.into()),
    }
}

/// Cancels a job that has not finished. A running job's worker loses its lease (the
/// token moves on): its effects roll back and it does not run again.
pub async fn cancel(conn: &mut PgConnection, job_id: JobId) -> Result<(), AdminError> {
    let done = sqlx::query(
        "UPDATE platform.jobs
         SET state = 'cancelled', fencing_token = fencing_token + 1, lease_id = NULL,
             worker_id = NULL, finished_at = now(), updated_at = now()
         WHERE id = $1 AND state IN ('scheduled', 'retrying', 'running')",
    )
    .bind(job_id.as_uuid())
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 1 {
        Ok(())
    } else {
        Err(wrong_state(conn, job_id, "scheduled, retrying or running", "cancelled").await)
    }
}

/// Takes a dead letter off the dead-letter view: the job stays `dead`, with its error,
/// for the record.
pub async fn discard(conn: &mut PgConnection, job_id: JobId) -> Result<(), AdminError> {
    let done = sqlx::query(
        "UPDATE platform.jobs SET discarded_at = now(), updated_at = now()
         WHERE id = $1 AND state = 'dead' AND discarded_at IS NULL",
    )
    .bind(job_id.as_uuid())
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 1 {
        Ok(())
    } else {
        Err(wrong_state(conn, job_id, "dead (not yet discarded)", "discarded").await)
    }
}

async fn wrong_state(
    conn: &mut PgConnection,
    job_id: JobId,
    allowed: &'static str,
    action: &'static str,
) -> AdminError {
    match show(conn, job_id).await {
        Ok(Some(job)) => AdminError::WrongState {
            job_id,
            state: job.state,
            allowed,
            action,
        },
        Ok(None) => AdminError::NotFound(job_id),
        Err(err) => err.into(),
    }
}
