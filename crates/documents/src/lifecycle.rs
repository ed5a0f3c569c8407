//! The lifecycle job: deletes what its retention rule says has expired — and
//! nothing under legal hold — and removes orphaned objects.
//!
//! [`try_run_once`] does one tenant's pass at an injected `now` in the caller's
//! transaction, so tests step it deterministically; the [`Lifecycle`] job kind runs it
//! on a daily platform schedule ([`ensure_schedule`], made with the tenant's first
//! document or retention rule). Each deletion marks the row deleted with reason
//! `retention_expired` and writes a `document.delete` audit event as `system`; the
//! object goes once that deletion has been committed for [`ORPHAN_AGE`] (below), so a
//! pass that rolls back never leaves a `stored` row without its content. Held
//! documents are not even selected, so they never use up a pass's budget. The patient's last encounter is read through the clinical context's
//! Rust API (`clinical::encounter::of_patient`), never its tables. A patient with an
//! encounter in progress keeps every last-encounter-anchored document.
//!
//! Orphans — objects no stored row names, left by an upload whose transaction never
//! committed, or by a deletion — are removed once older than [`ORPHAN_AGE`] (a
//! deleted document's once its deletion is that old), so an upload still between its
//! object write and its commit, or a deletion not yet committed, is never touched.
//! Objects are checked against the rows in batches while listing, and only real
//! orphans count towards [`ORPHANS_MAX`], so live documents never crowd them out.

use std::collections::HashMap;
use std::time::Duration;

use db::TenantTx;
use futures::StreamExt;
use kernel::PatientId;
use platform::jobs::{JobContext, JobError, JobKind};
use platform::schedules::{self, CatchUp, ScheduleError, ScheduleSpec};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::category::DocumentId;
use crate::document::{self, COLUMNS, DeleteError, DeletionReason, Document, Row};
use crate::retention::{self, Anchor};
use crate::storage::Storage;

/// How old an object without a stored row must be before it is removed.
pub const ORPHAN_AGE: time::Duration = time::Duration::hours(6);
/// Documents one pass examines at most; the rest wait for the next pass.
pub const EXAMINED_MAX: i64 = 2_000;
/// Objects one pass removes as orphans at most.
pub const ORPHANS_MAX: usize = 1_000;
/// Objects one pass lists at most, orphans or not.
pub const LISTED_MAX: usize = 200_000;
/// Objects checked against the rows in one query.
const ORPHAN_BATCH: usize = 500;

const SCHEDULE_NAME: &str = "documents.lifecycle";
/// Daily, at a quiet hour.
const SCHEDULE_CRON: &str = "17 3 * * *";

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Deleted because their retention ended.
    pub deleted: Vec<DocumentId>,
    /// Expired, but kept by a legal hold.
    pub n_held: u64,
    /// Kept because the patient has an encounter in progress.
    pub n_active_patient: u64,
    pub n_orphans_removed: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    Delete(#[from] DeleteError),
    #[error("listing the document store")]
    Storage(#[from] object_store::Error),
    #[error("reading documents")]
    Database(#[from] sqlx::Error),
}

/// One pass over the transaction's tenant at `now`.
pub async fn try_run_once(
    tx: &mut TenantTx,
    storage: &Storage,
    now: OffsetDateTime,
) -> Result<SweepReport, SweepError> {
    let mut report = SweepReport::default();
    let mut last_activity: HashMap<PatientId, Option<Option<OffsetDateTime>>> = HashMap::new();
    let mut budget = EXAMINED_MAX;
    for rule in retention::rules(tx).await? {
        if budget <= 0 {
            break;
        }
        let keep = time::Duration::days(i64::from(rule.keep_days));
        // Creation is a lower bound of every anchor: only documents created before
        // `now - keep` can have expired.
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM documents.documents
             WHERE tenant_id = $1 AND category = $2 AND status = 'stored' AND created_at <= $3
               AND NOT legal_hold
             ORDER BY created_at, id LIMIT $4 FOR UPDATE"
        ))
        .bind(tx.tenant_id().as_uuid())
        .bind(rule.category)
        .bind(now - keep)
        .bind(budget)
        .fetch_all(&mut **tx)
        .await?;
        let n_held: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM documents.documents
             WHERE tenant_id = $1 AND category = $2 AND status = 'stored' AND created_at <= $3
               AND legal_hold",
        )
        .bind(tx.tenant_id().as_uuid())
        .bind(rule.category)
        .bind(now - keep)
        .fetch_one(&mut **tx)
        .await?;
        report.n_held += u64::try_from(n_held).unwrap_or(0);
        budget -= rows.len() as i64;
        for document in rows.into_iter().map(Document::from) {
            let anchor_at = match rule.anchor {
                Anchor::Created => document.created_at,
                Anchor::LastEncounter => {
                    let activity = match last_activity.get(&document.patient_id) {
                        Some(activity) => *activity,
                        None => {
                            let activity = patient_activity(tx, document.patient_id).await?;
                            last_activity.insert(document.patient_id, activity);
                            activity
                        }
                    };
                    match activity {
                        // An encounter in progress: the patient is in care.
                        None => {
                            report.n_active_patient += 1;
                            continue;
                        }
                        Some(last) => {
                            last.map_or(document.created_at, |last| last.max(document.created_at))
                        }
                    }
                }
            };
            if anchor_at + keep > now {
                continue;
            }
            let id = document.id;
            document::remove(tx, document, DeletionReason::RetentionExpired).await?;
            report.deleted.push(id);
        }
    }
    report.n_orphans_removed = remove_orphans(tx, storage, now).await?;
    Ok(report)
}

/// `None`: an encounter is in progress. `Some(None)`: no encounter. `Some(Some(t))`:
/// the last one ended (or started) at `t`.
async fn patient_activity(
    tx: &mut TenantTx,
    patient_id: PatientId,
) -> Result<Option<Option<OffsetDateTime>>, sqlx::Error> {
    let encounters = clinical::encounter::of_patient(tx, patient_id).await?;
    if encounters.iter().any(|encounter| encounter.in_progress) {
        return Ok(None);
    }
    Ok(Some(
        encounters
            .iter()
            .filter_map(|encounter| encounter.ended_at.or(encounter.started_at))
            .max(),
    ))
}

async fn remove_orphans(
    tx: &mut TenantTx,
    storage: &Storage,
    now: OffsetDateTime,
) -> Result<u64, SweepError> {
    let prefix = Storage::tenant_prefix(tx.tenant_id());
    let mut n_removed = 0u64;
    let mut n_listed = 0usize;
    let mut batch: Vec<(object_store::path::Path, Option<Uuid>)> = Vec::new();
    let mut objects = storage.store().list(Some(&prefix));
    while let Some(object) = objects.next().await {
        let object = object?;
        n_listed += 1;
        let modified = OffsetDateTime::from_unix_timestamp(object.last_modified.timestamp())
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        if modified + ORPHAN_AGE <= now {
            let document_id = object
                .location
                .filename()
                .and_then(|name| Uuid::parse_str(name).ok());
            batch.push((object.location, document_id));
        }
        if batch.len() >= ORPHAN_BATCH {
            n_removed += remove_batch(tx, storage, &mut batch, now).await?;
        }
        if n_removed >= ORPHANS_MAX as u64 || n_listed >= LISTED_MAX {
            break;
        }
    }
    drop(objects);
    n_removed += remove_batch(tx, storage, &mut batch, now).await?;
    Ok(n_removed)
}

/// Removes the objects of `batch` that no row keeps: none names them, or their
/// document's deletion is older than [`ORPHAN_AGE`] (so it has been committed).
async fn remove_batch(
    tx: &mut TenantTx,
    storage: &Storage,
    batch: &mut Vec<(object_store::path::Path, Option<Uuid>)>,
    now: OffsetDateTime,
) -> Result<u64, SweepError> {
    let ids: Vec<Uuid> = batch.iter().filter_map(|(_, id)| *id).collect();
    let kept: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM documents.documents WHERE tenant_id = $1 AND id = ANY ($2)
           AND (status = 'stored' OR deleted_at > $3)",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(&ids)
    .bind(now - ORPHAN_AGE)
    .fetch_all(&mut **tx)
    .await?;
    let mut n_removed = 0;
    for (location, document_id) in batch.drain(..) {
        if document_id.is_some_and(|id| kept.contains(&id)) {
            continue;
        }
        match storage.store().delete(&location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => n_removed += 1,
            Err(err) => return Err(err.into()),
        }
    }
    Ok(n_removed)
}

/// Makes sure the tenant has its daily lifecycle schedule. Idempotent.
pub async fn ensure_schedule(tx: &mut TenantTx, now: OffsetDateTime) -> Result<(), sqlx::Error> {
    let spec =
        ScheduleSpec::<Lifecycle>::new(SCHEDULE_NAME, SCHEDULE_CRON, "UTC", LifecycleArgs {})
            .catch_up(CatchUp::Skip)
            .attempts_max(3);
    match schedules::create(tx, spec, now).await {
        Ok(_) | Err(ScheduleError::NameTaken) => Ok(()),
        Err(ScheduleError::Unexpected(err)) => Err(err),
        Err(err) => panic!("BUG: the lifecycle schedule is valid: {err}"),
    }
}

/// The lifecycle job's arguments: none (no ids, no PHI).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleArgs {}

/// The job kind `documents.lifecycle`.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    pub storage: Storage,
}

impl JobKind for Lifecycle {
    const NAME: &'static str = "documents.lifecycle";
    const VERSION: u32 = 1;
    const ATTEMPTS_MAX: u32 = 3;
    const TIMEOUT: Duration = Duration::from_secs(600);
    type Args = LifecycleArgs;

    async fn run(
        &self,
        _ctx: &JobContext,
        tx: &mut TenantTx,
        _args: LifecycleArgs,
    ) -> Result<(), JobError> {
        let now: OffsetDateTime = sqlx::query_scalar("SELECT now()")
            .fetch_one(&mut **tx)
            .await?;
        let report = try_run_once(tx, &self.storage, now)
            .await
            .map_err(|err| match err {
                SweepError::Database(err) => JobError::Database(err),
                other => JobError::Retry(other.to_string()),
            })?;
        tracing::info!(
            n_deleted = report.deleted.len(),
            n_held = report.n_held,
            n_orphans_removed = report.n_orphans_removed,
            "document lifecycle pass"
        );
        Ok(())
    }
}
