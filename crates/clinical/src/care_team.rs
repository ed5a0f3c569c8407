//! Care teams: who has a treatment relationship with a patient.
//!
//! Membership is what lets a clinician read a patient without breaking the glass.

use db::TenantTx;
use kernel::{PatientId, UserId};
use uuid::Uuid;

/// Adds `user_id` to the patient's care team; false if the patient does not exist in
/// this tenant (the composite foreign key makes another tenant's id "not found").
pub async fn add(
    tx: &mut TenantTx,
    patient_id: PatientId,
    user_id: UserId,
) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(
        "INSERT INTO clinical.care_team_members (tenant_id, patient_id, user_id) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(patient_id.as_uuid())
    .bind(user_id.as_uuid())
    .execute(&mut **tx)
    .await;
    match result {
        Ok(_) => Ok(true),
        Err(sqlx::Error::Database(e))
            if e.kind() == sqlx::error::ErrorKind::ForeignKeyViolation =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Whether `user_id` is on the patient's care team.
pub async fn is_member(
    tx: &mut TenantTx,
    patient_id: PatientId,
    user_id: UserId,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM clinical.care_team_members WHERE tenant_id = $1 AND patient_id = $2 AND user_id = $3)",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(patient_id.as_uuid())
    .bind(user_id.as_uuid())
    .fetch_one(&mut **tx)
    .await
}

/// The members of a patient's care team.
pub async fn members(tx: &mut TenantTx, patient_id: PatientId) -> Result<Vec<UserId>, sqlx::Error> {
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT user_id FROM clinical.care_team_members WHERE tenant_id = $1 AND patient_id = $2 ORDER BY added_at",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(patient_id.as_uuid())
    .fetch_all(&mut **tx)
    .await?;
    Ok(ids.into_iter().map(UserId::new_unchecked).collect())
}

/// A page of the ids of patients `user_id` cares for, after `after`.
pub async fn patient_ids_of(
    tx: &mut TenantTx,
    user_id: UserId,
    after: Option<PatientId>,
    limit: i64,
) -> Result<Vec<PatientId>, sqlx::Error> {
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT patient_id FROM clinical.care_team_members
         WHERE tenant_id = $1 AND user_id = $2 AND ($3::uuid IS NULL OR patient_id > $3)
         ORDER BY patient_id LIMIT $4",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(user_id.as_uuid())
    .bind(after.map(|id| id.into_uuid()))
    .bind(limit.clamp(1, crate::patient::PAGE_LEN_MAX))
    .fetch_all(&mut **tx)
    .await?;
    Ok(ids.into_iter().map(PatientId::new_unchecked).collect())
}
