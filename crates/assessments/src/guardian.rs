//! Guardianship as the family rules read it: who may answer for a patient, from
//! `since` until the day before `until` (`assessments.guardians`). The guardian is an
//! identity related-person id; their name and contact live in the identity vault.
//!
//! A change re-evaluates the patient's active enrolments: their
//! `next_evaluation_at` becomes now, so the materialiser assigns (or withdraws) the
//! guardian's instruments on its next run. Dates of a relationship are health
//! information about the patient: every change is audited and no date is logged.

use audit::AuditEntry;
use db::TenantTx;
use jiff::civil::Date;
use kernel::{PatientId, PersonId};
use serde_json::json;
use uuid::Uuid;

use crate::instant::{date_to_jiff, date_to_time};
use crate::rules::Guardian;

#[derive(Debug, thiserror::Error)]
pub enum GuardianError {
    #[error("patient_id: no such patient")]
    PatientNotFound,
    #[error("person_id: no such related person")]
    PersonNotFound,
    #[error("no such guardian relationship in force")]
    NotFound,
    #[error("until: must be after the relationship's since")]
    EndsBeforeStart,
    #[error("writing the audit event")]
    Audit(#[from] audit::AuditError),
    #[error(transparent)]
    Unexpected(#[from] sqlx::Error),
}

/// Records that `person_id` is the patient's guardian from `since` on. Adding a
/// relationship that is still in force (whatever its start) is a no-op: there is at
/// most one open relationship per guardian (`guardians_one_open`), so [`end`] ends it.
pub async fn add(
    tx: &mut TenantTx,
    patient_id: PatientId,
    person_id: Uuid,
    since: Date,
) -> Result<(), GuardianError> {
    if clinical::patient::get(tx, patient_id).await?.is_none() {
        return Err(GuardianError::PatientNotFound);
    }
    // The guardian is a related person of the identity vault; an id that names
    // nobody would assign instruments no one can be reminded to answer.
    if !identity::related_person::exists(tx, PersonId::new_unchecked(person_id)).await? {
        return Err(GuardianError::PersonNotFound);
    }
    sqlx::query(
        "INSERT INTO assessments.guardians (tenant_id, patient_id, person_id, since)
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(patient_id.as_uuid())
    .bind(person_id)
    .bind(date_to_time(since))
    .execute(&mut **tx)
    .await?;
    changed(tx, "assessments.guardian.add", patient_id, person_id).await
}

/// Ends the relationship in force: from `until` on, `person_id` is no longer the
/// patient's guardian.
pub async fn end(
    tx: &mut TenantTx,
    patient_id: PatientId,
    person_id: Uuid,
    until: Date,
) -> Result<(), GuardianError> {
    let since: Option<time::Date> = sqlx::query_scalar(
        "SELECT since FROM assessments.guardians
         WHERE tenant_id = $1 AND patient_id = $2 AND person_id = $3 AND until IS NULL
         ORDER BY since DESC LIMIT 1 FOR UPDATE",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(patient_id.as_uuid())
    .bind(person_id)
    .fetch_optional(&mut **tx)
    .await?;
    let since = since.ok_or(GuardianError::NotFound)?;
    if date_to_jiff(since) >= until {
        return Err(GuardianError::EndsBeforeStart);
    }
    sqlx::query(
        "UPDATE assessments.guardians SET until = $5, updated_at = now()
         WHERE tenant_id = $1 AND patient_id = $2 AND person_id = $3 AND since = $4",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(patient_id.as_uuid())
    .bind(person_id)
    .bind(since)
    .bind(date_to_time(until))
    .execute(&mut **tx)
    .await?;
    changed(tx, "assessments.guardian.end", patient_id, person_id).await
}

/// The patient's guardians, past and present, as the rules read them.
pub async fn of_patient(
    tx: &mut TenantTx,
    patient_id: PatientId,
) -> Result<Vec<Guardian>, sqlx::Error> {
    let rows: Vec<(Uuid, time::Date, Option<time::Date>)> = sqlx::query_as(
        "SELECT person_id, since, until FROM assessments.guardians
         WHERE tenant_id = $1 AND patient_id = $2 ORDER BY since, person_id",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(patient_id.as_uuid())
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(person_id, since, until)| Guardian {
            person_id,
            since: date_to_jiff(since),
            until: until.map(date_to_jiff),
        })
        .collect())
}

async fn changed(
    tx: &mut TenantTx,
    action: &'static str,
    patient_id: PatientId,
    person_id: Uuid,
) -> Result<(), GuardianError> {
    sqlx::query(
        "UPDATE assessments.enrollments SET next_evaluation_at = now(), updated_at = now()
         WHERE tenant_id = $1 AND patient_id = $2 AND status = 'active'",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(patient_id.as_uuid())
    .execute(&mut **tx)
    .await?;
    let mut entry = AuditEntry::patient(action, patient_id);
    entry.details = json!({ "person_id": person_id });
    audit::append(tx, entry).await?;
    Ok(())
}
