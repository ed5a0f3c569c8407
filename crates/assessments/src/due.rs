//! The due and overdue lists: a clinician's unfinished instances, by due time.
//!
//! - **due**: scheduled or open, due before `until` (by default a week from now);
//! - **overdue**: open past their due time, or missed in the last
//!   [`OVERDUE_MISSED_DAYS`] days — never backfilled ones, which nobody was asked.
//!
//! A list shows which patients have assessments outstanding, so each patient listed
//! is audited (`assessments.due_list.read`) in the same transaction.

use std::collections::BTreeSet;

use audit::AuditEntry;
use db::TenantTx;
use kernel::{PatientId, UserId};
use time::OffsetDateTime;
use uuid::Uuid;

/// The most rows one list returns.
pub const LIST_LEN_MAX: i64 = 500;
/// How far back missed instances stay on the overdue list.
pub const OVERDUE_MISSED_DAYS: i64 = 30;

/// Which list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DueList {
    /// Scheduled or open, due before the instant.
    Due {
        until: OffsetDateTime,
    },
    Overdue,
}

/// One outstanding instance: ids, codes and instants.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DueItem {
    pub instance_id: Uuid,
    pub enrollment_id: Uuid,
    pub patient_id: Uuid,
    pub instrument_code: String,
    /// `patient`, `guardian` or `clinician`.
    pub respondent: String,
    pub respondent_person_id: Option<Uuid>,
    pub due_at: OffsetDateTime,
    pub opens_at: OffsetDateTime,
    pub closes_at: OffsetDateTime,
    /// `scheduled`, `open` or `missed`.
    pub status: String,
    pub escalated_at: Option<OffsetDateTime>,
}

const COLUMNS: &str = "id AS instance_id, enrollment_id, patient_id, instrument_code, respondent::text AS respondent, respondent_person_id, due_at, opens_at, closes_at, status::text AS status, escalated_at";

#[derive(Debug, thiserror::Error)]
pub enum DueError {
    #[error("writing the audit event")]
    Audit(#[from] audit::AuditError),
    #[error(transparent)]
    Unexpected(#[from] sqlx::Error),
}

/// The clinician's list at `now`, oldest due first, at most `limit` rows.
pub async fn list(
    tx: &mut TenantTx,
    clinician_id: UserId,
    which: DueList,
    now: OffsetDateTime,
    limit: i64,
) -> Result<Vec<DueItem>, DueError> {
    let limit = limit.clamp(1, LIST_LEN_MAX);
    let items: Vec<DueItem> = match which {
        DueList::Due { until } => {
            sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM assessments.instances
                 WHERE tenant_id = $1 AND clinician_id = $2 AND status IN ('scheduled', 'open')
                   AND due_at < $3
                 ORDER BY due_at, id LIMIT $4"
            ))
            .bind(tx.tenant_id().as_uuid())
            .bind(clinician_id.as_uuid())
            .bind(until)
            .bind(limit)
            .fetch_all(&mut **tx)
            .await?
        }
        DueList::Overdue => {
            sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM assessments.instances
                 WHERE tenant_id = $1 AND clinician_id = $2 AND NOT backfilled
                   AND ((status = 'open' AND due_at < $3)
                        OR (status = 'missed' AND closes_at >= $3 - make_interval(days => $4)))
                 ORDER BY due_at, id LIMIT $5"
            ))
            .bind(tx.tenant_id().as_uuid())
            .bind(clinician_id.as_uuid())
            .bind(now)
            .bind(i32::try_from(OVERDUE_MISSED_DAYS).expect("BUG: fits"))
            .bind(limit)
            .fetch_all(&mut **tx)
            .await?
        }
    };
    let patients: BTreeSet<Uuid> = items.iter().map(|item| item.patient_id).collect();
    for patient_id in patients {
        audit::append(
            tx,
            AuditEntry::patient(
                "assessments.due_list.read",
                PatientId::new_unchecked(patient_id),
            ),
        )
        .await?;
    }
    Ok(items)
}
