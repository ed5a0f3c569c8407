//! The pseudonymous patient record.

use db::TenantTx;
use kernel::PatientId;
use platform::outbox::{Event, Outbox};
use time::OffsetDateTime;
use uuid::Uuid;

/// A patient's lifecycle state (`clinical.patient_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatientStatus {
    Active,
    Inactive,
    /// Merged into another record (HL7 A40); kept, never deleted.
    Merged,
}

impl PatientStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Inactive => "inactive",
            Self::Merged => "merged",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "active" => Self::Active,
            "inactive" => Self::Inactive,
            "merged" => Self::Merged,
            other => panic!("BUG: clinical.patient_status has unknown value {other}"),
        }
    }
}

/// A patient as the clinical context knows them.
#[derive(Debug, Clone)]
pub struct Patient {
    pub id: PatientId,
    pub status: PatientStatus,
    /// The record this one was merged into (status `Merged`).
    pub merged_into: Option<PatientId>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// Registers a new patient and announces `patient.registered`.
pub async fn insert(tx: &mut TenantTx, patient_id: PatientId) -> Result<Patient, sqlx::Error> {
    let (created_at, updated_at): (OffsetDateTime, OffsetDateTime) = sqlx::query_as(
        "INSERT INTO clinical.patients (tenant_id, id) VALUES ($1, $2) RETURNING created_at, updated_at",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(patient_id.as_uuid())
    .fetch_one(&mut **tx)
    .await?;
    platform::outbox::emit(
        tx,
        Outbox::Clinical,
        Event {
            event_type: "patient.registered",
            event_version: 1,
            aggregate_type: "patient",
            aggregate_id: patient_id.into_uuid(),
            payload: serde_json::json!({ "patient_id": patient_id }),
        },
    )
    .await?;
    Ok(Patient {
        id: patient_id,
        status: PatientStatus::Active,
        merged_into: None,
        created_at,
        updated_at,
    })
}

/// A patient of the transaction's tenant; `None` for an unknown id or another
/// tenant's (row-level security makes the two indistinguishable).
pub async fn get(tx: &mut TenantTx, patient_id: PatientId) -> Result<Option<Patient>, sqlx::Error> {
    let rows = get_many(tx, &[patient_id]).await?;
    Ok(rows.into_iter().next())
}

/// Several patients, in no particular order.
pub async fn get_many(
    tx: &mut TenantTx,
    patient_ids: &[PatientId],
) -> Result<Vec<Patient>, sqlx::Error> {
    let ids: Vec<Uuid> = patient_ids.iter().map(|id| id.into_uuid()).collect();
    let rows: Vec<(Uuid, String, Option<Uuid>, OffsetDateTime, OffsetDateTime)> = sqlx::query_as(
        "SELECT id, status::text, merged_into, created_at, updated_at FROM clinical.patients WHERE tenant_id = $1 AND id = ANY($2)",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(&ids)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(id, status, merged_into, created_at, updated_at)| Patient {
                id: PatientId::new_unchecked(id),
                status: PatientStatus::parse(&status),
                merged_into: merged_into.map(PatientId::new_unchecked),
                created_at,
                updated_at,
            },
        )
        .collect())
}

/// Marks a patient as updated (their identity changed in the vault).
pub async fn touch(tx: &mut TenantTx, patient_id: PatientId) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE clinical.patients SET updated_at = now() WHERE tenant_id = $1 AND id = $2")
        .bind(tx.tenant_id().as_uuid())
        .bind(patient_id.as_uuid())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// How many patients one page lists at most.
pub const PAGE_LEN_MAX: i64 = 100;

/// A page of patient ids, oldest first, after `after` (keyset pagination).
pub async fn list_ids(
    tx: &mut TenantTx,
    after: Option<PatientId>,
    limit: i64,
) -> Result<Vec<PatientId>, sqlx::Error> {
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM clinical.patients WHERE tenant_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(after.map(|id| id.into_uuid()))
    .bind(limit.clamp(1, PAGE_LEN_MAX))
    .fetch_all(&mut **tx)
    .await?;
    Ok(ids.into_iter().map(PatientId::new_unchecked).collect())
}

/// How many merges [`resolve`] follows: a longer chain is a loop or a data error.
pub const MERGE_CHAIN_MAX: usize = 16;

/// The record that stands for `patient_id` now: itself, or the survivor it was merged
/// into (following merges of merges). `None` for an unknown id.
pub async fn resolve(
    tx: &mut TenantTx,
    patient_id: PatientId,
) -> Result<Option<PatientId>, sqlx::Error> {
    let mut current = patient_id;
    for _ in 0..MERGE_CHAIN_MAX {
        let Some(patient) = get(tx, current).await? else {
            return Ok(None);
        };
        match patient.merged_into {
            Some(survivor) => current = survivor,
            None => return Ok(Some(current)),
        }
    }
    Err(sqlx::Error::Protocol(format!(
        "patient {patient_id}: more than {MERGE_CHAIN_MAX} merges to follow"
    )))
}

/// Why a merge was refused.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("a patient cannot be merged into itself")]
    SamePatient,
    #[error("patient {0} does not exist")]
    NotFound(PatientId),
    #[error("patient {0} was already merged into another record")]
    AlreadyMerged(PatientId),
    #[error(transparent)]
    Unexpected(#[from] sqlx::Error),
}

/// Merges `merged` into `survivor` (HL7 A40): `merged` is kept, marked `merged` and
/// pointing at `survivor`; its encounters and observations stay where they are, and
/// readers follow the pointer ([`resolve`]). Announces `patient.merged`. Merging a
/// record into the survivor it already points at is a no-op (a resent A40).
pub async fn merge(
    tx: &mut TenantTx,
    merged: PatientId,
    survivor: PatientId,
) -> Result<(), MergeError> {
    if merged == survivor {
        return Err(MergeError::SamePatient);
    }
    // Both rows locked, in id order: two merges of one pair in opposite directions
    // cannot both pass the checks below (and make a cycle), nor deadlock.
    let rows: Vec<(Uuid, Option<Uuid>)> = sqlx::query_as(
        "SELECT id, merged_into FROM clinical.patients WHERE tenant_id = $1 AND id = ANY($2)
         ORDER BY id FOR UPDATE",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(vec![merged.into_uuid(), survivor.into_uuid()])
    .fetch_all(&mut **tx)
    .await?;
    let merged_into = |id: PatientId| {
        rows.iter()
            .find(|(row_id, _)| *row_id == id.into_uuid())
            .map(|(_, into)| *into)
    };
    match merged_into(survivor) {
        None => return Err(MergeError::NotFound(survivor)),
        Some(Some(_)) => return Err(MergeError::AlreadyMerged(survivor)),
        Some(None) => {}
    }
    let current = merged_into(merged);
    match current {
        None => return Err(MergeError::NotFound(merged)),
        Some(Some(into)) if into == survivor.into_uuid() => return Ok(()),
        Some(Some(_)) => return Err(MergeError::AlreadyMerged(merged)),
        Some(None) => {}
    }
    sqlx::query(
        "UPDATE clinical.patients SET status = 'merged', merged_into = $3, updated_at = now()
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(merged.as_uuid())
    .bind(survivor.as_uuid())
    .execute(&mut **tx)
    .await?;
    platform::outbox::emit(
        tx,
        Outbox::Clinical,
        Event {
            event_type: "patient.merged",
            event_version: 1,
            aggregate_type: "patient",
            aggregate_id: merged.into_uuid(),
            payload: serde_json::json!({ "patient_id": merged, "merged_into": survivor }),
        },
    )
    .await?;
    Ok(())
}
