//! Daily partitions of `ingest.messages`, and retention by dropping whole days.
//!
//! Each UTC day of `received_at` is a partition (`ingest.messages_YYYYMMDD`), made
//! [`DAYS_AHEAD`] days ahead; a message for a day with no partition lands in the
//! default partition instead of failing (no acknowledged-to-be message is ever lost),
//! and the next [`maintain`] gives that day its partition and moves the message in.
//! [`apply_retention`] drops partitions wholly older than the retention and then the
//! de-duplication keys of the messages that went with them (in bounded batches), so a
//! resend is recognised as a duplicate within the retention window only.
//!
//! Everything here runs on the **owner** pool, through the SQL functions of migration
//! 2026112502 (`ingest.ensure_partitions`, `ingest.drop_partitions_before`,
//! `ingest.delete_expired_keys`): the service role can neither call them nor run DDL.
//! Each step bounds how long it waits for a table lock (`lock_timeout`): a DDL
//! statement waiting for its lock holds up every insert queued behind it, and an ACK
//! must not wait for housekeeping. A step that times out is tried again next round.
//!
//! This module must never read a message's contents: it counts and drops.

use std::time::Duration;

use platform::health::{Finding, Severity};
use sqlx::{PgConnection, PgPool};
use time::{Date, OffsetDateTime};

/// How many days ahead partitions exist (today's included, so eight in all).
pub const DAYS_AHEAD: i32 = 7;

/// How long messages are kept when nothing is configured.
pub const RETENTION_DAYS_DEFAULT: u32 = 90;

/// How often the server maintains partitions.
pub const MAINTENANCE_EVERY: Duration = Duration::from_secs(3600);

/// How long the server's maintenance waits for a table lock before it gives up until
/// the next round (an operator's command waits longer).
pub const SERVER_LOCK_TIMEOUT: Duration = Duration::from_millis(250);

/// Partitions dropped per transaction: each drop locks the parent briefly.
const DROP_PARTITIONS_MAX: i32 = 31;

/// Partition drops per retention run (about ten years of days).
const DROP_ROUNDS_MAX: usize = 120;

/// Keys deleted per transaction.
const KEY_BATCH_MAX: i32 = 10_000;

/// Key batches per retention run; the rest waits for the next run.
const KEY_BATCHES_MAX: usize = 100;

/// Partitions a dry run lists.
const DRY_RUN_PARTITIONS_MAX: i32 = 10_000;

/// How long raw messages are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// Never dropped.
    Forever,
    /// Dropped once every message of their day is at least this many days old.
    Days(u32),
}

impl Retention {
    /// `0` means forever, as the setting `TENET_INGEST_RETENTION_DAYS` spells it.
    pub fn from_days(days: u32) -> Self {
        if days == 0 {
            Self::Forever
        } else {
            Self::Days(days)
        }
    }
}

/// One partition of `ingest.messages` and the UTC day range it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// The table's name in schema `ingest`.
    pub name: String,
    pub lower_bound: OffsetDateTime,
    pub upper_bound: OffsetDateTime,
}

/// What one retention run did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Messages received before the start of this UTC day are past the retention.
    pub cutoff: Option<Date>,
    pub partitions: Vec<Partition>,
    pub n_keys_deleted: u64,
}

/// What one round of maintenance did.
#[derive(Debug, Clone, Default)]
pub struct MaintenanceReport {
    pub created: Vec<String>,
    pub retention: RetentionReport,
}

/// Makes the partitions of today and the next [`DAYS_AHEAD`] days, and gives each day
/// with messages in the default partition its partition (moving them in). Returns the
/// partitions created.
pub async fn ensure(owner: &PgPool, lock_timeout: Duration) -> Result<Vec<String>, sqlx::Error> {
    let mut tx = owner.begin().await?;
    set_lock_timeout(&mut tx, lock_timeout).await?;
    let created: Vec<String> = sqlx::query_scalar("SELECT ingest.ensure_partitions($1)")
        .bind(DAYS_AHEAD)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(created)
}

/// The partitions a retention of `days` drops now, oldest first, without dropping
/// anything.
pub async fn expired(owner: &PgPool, retention: Retention) -> Result<RetentionReport, sqlx::Error> {
    let Retention::Days(days) = retention else {
        return Ok(RetentionReport::default());
    };
    let mut tx = owner.begin().await?;
    let cutoff = cutoff(&mut tx, days).await?;
    let partitions = drop_before(&mut tx, cutoff, true, DRY_RUN_PARTITIONS_MAX).await?;
    tx.rollback().await?;
    Ok(RetentionReport {
        cutoff: Some(cutoff),
        partitions,
        n_keys_deleted: 0,
    })
}

/// Drops every partition wholly older than the retention, then deletes the keys of
/// the messages dropped with them, each step in transactions of its own.
pub async fn apply_retention(
    owner: &PgPool,
    retention: Retention,
    lock_timeout: Duration,
) -> Result<RetentionReport, sqlx::Error> {
    let Retention::Days(days) = retention else {
        return Ok(RetentionReport::default());
    };
    let cutoff = cutoff(&mut *owner.acquire().await?, days).await?;
    let mut report = RetentionReport {
        cutoff: Some(cutoff),
        ..RetentionReport::default()
    };
    for _ in 0..DROP_ROUNDS_MAX {
        let mut tx = owner.begin().await?;
        set_lock_timeout(&mut tx, lock_timeout).await?;
        let dropped = drop_before(&mut tx, cutoff, false, DROP_PARTITIONS_MAX).await?;
        tx.commit().await?;
        let n_dropped = dropped.len();
        report.partitions.extend(dropped);
        if n_dropped < usize::try_from(DROP_PARTITIONS_MAX).expect("BUG: a small constant") {
            break;
        }
    }
    for _ in 0..KEY_BATCHES_MAX {
        let mut tx = owner.begin().await?;
        set_lock_timeout(&mut tx, lock_timeout).await?;
        let n: i32 = sqlx::query_scalar("SELECT ingest.delete_expired_keys($1, $2)")
            .bind(cutoff)
            .bind(KEY_BATCH_MAX)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        report.n_keys_deleted += u64::try_from(n).unwrap_or(0);
        if n < KEY_BATCH_MAX {
            break;
        }
    }
    Ok(report)
}

/// One round of what the server does every [`MAINTENANCE_EVERY`]: partitions ahead
/// (and out of the default partition), then retention.
pub async fn maintain(
    owner: &PgPool,
    retention: Retention,
    lock_timeout: Duration,
) -> Result<MaintenanceReport, sqlx::Error> {
    let created = ensure(owner, lock_timeout).await?;
    let retention = apply_retention(owner, retention, lock_timeout).await?;
    Ok(MaintenanceReport { created, retention })
}

/// How many messages a partition holds (counted through the parent, which is where
/// the owner sees every tenant's rows).
pub async fn count_messages(owner: &PgPool, partition: &Partition) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM ingest.messages WHERE received_at >= $1 AND received_at < $2",
    )
    .bind(partition.lower_bound)
    .bind(partition.upper_bound)
    .fetch_one(owner)
    .await
}

/// What `tenet check` reports: messages sitting in the default partition mean
/// partitions are not being made ahead (maintenance is not running, or keeps failing),
/// and until they move to a partition of their own, retention cannot drop them.
pub async fn findings(owner: &PgPool) -> Result<Vec<Finding>, sqlx::Error> {
    let (n, oldest): (i64, Option<OffsetDateTime>) =
        sqlx::query_as("SELECT count(*), min(received_at) FROM ingest.messages_default")
            .fetch_one(owner)
            .await?;
    let Some(oldest) = oldest.filter(|_| n > 0) else {
        return Ok(Vec::new());
    };
    Ok(vec![Finding {
        severity: Severity::Problem,
        check: "ingest-default-partition",
        object: "ingest.messages_default".to_owned(),
        detail: format!(
            "{n} message(s) received with no partition for their day, the oldest at {}: \
             partitions are not being made ahead; is `tenet serve` (with --mllp or --workers) \
             running? `tenet ingest retention` makes them now and moves these messages in",
            oldest
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|_| oldest.to_string())
        ),
    }])
}

/// The first UTC day kept: today (by the database's clock) less `days`.
async fn cutoff(conn: &mut PgConnection, days: u32) -> Result<Date, sqlx::Error> {
    sqlx::query_scalar("SELECT (now() AT TIME ZONE 'UTC')::date - $1::integer")
        .bind(i32::try_from(days).unwrap_or(i32::MAX))
        .fetch_one(conn)
        .await
}

async fn drop_before(
    conn: &mut PgConnection,
    cutoff: Date,
    dry_run: bool,
    partitions_max: i32,
) -> Result<Vec<Partition>, sqlx::Error> {
    let rows: Vec<(String, OffsetDateTime, OffsetDateTime)> = sqlx::query_as(
        "SELECT partition_name, lower_bound, upper_bound \
         FROM ingest.drop_partitions_before($1, $2, $3)",
    )
    .bind(cutoff)
    .bind(dry_run)
    .bind(partitions_max)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(partition).collect())
}

fn partition(
    (name, lower_bound, upper_bound): (String, OffsetDateTime, OffsetDateTime),
) -> Partition {
    Partition {
        name,
        lower_bound,
        upper_bound,
    }
}

async fn set_lock_timeout(conn: &mut PgConnection, timeout: Duration) -> Result<(), sqlx::Error> {
    let ms = timeout.as_millis().clamp(1, i32::MAX as u128);
    sqlx::query("SELECT set_config('lock_timeout', $1, true)")
        .bind(ms.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retention_of_zero_days_keeps_messages_forever() {
        assert_eq!(Retention::from_days(0), Retention::Forever);
        assert_eq!(Retention::from_days(90), Retention::Days(90));
    }
}
