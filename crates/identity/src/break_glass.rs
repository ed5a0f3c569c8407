//! Break-glass: emergency access to a patient outside one's care team.
//!
//! A clinician states a reason and receives a grant that expires on its own. Opening
//! it is recorded in the audit log (flagged) and announced as an event, so a privacy
//! officer sees every use; each read under it is flagged too.

use audit::AuditEntry;
use db::TenantTx;
use kernel::{PatientId, UserId};
use platform::outbox::{Event, Outbox};
use time::OffsetDateTime;
use uuid::Uuid;

/// How long a grant lasts unless configured otherwise.
pub const GRANT_SECS_DEFAULT: i64 = 60 * 60;
pub const REASON_LEN_MIN: usize = 10;
pub const REASON_LEN_MAX: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum BreakGlassError {
    #[error("state a reason of {REASON_LEN_MIN} to {REASON_LEN_MAX} characters")]
    InvalidReason,
    #[error("writing the audit event")]
    Audit(#[from] audit::AuditError),
    #[error("recording the grant")]
    Database(#[from] sqlx::Error),
}

/// An active grant.
#[derive(Debug, Clone)]
pub struct Grant {
    pub id: Uuid,
    pub reason: String,
    pub expires_at: OffsetDateTime,
}

/// Opens a grant for `user_id` on `patient_id` (which must exist: checked by the
/// composite foreign key, so another tenant's patient is simply not found).
pub async fn open(
    tx: &mut TenantTx,
    user_id: UserId,
    patient_id: PatientId,
    reason: &str,
    grant_secs: i64,
) -> Result<Grant, BreakGlassError> {
    let reason = reason.trim();
    let n_chars = reason.chars().count();
    if !(REASON_LEN_MIN..=REASON_LEN_MAX).contains(&n_chars) {
        return Err(BreakGlassError::InvalidReason);
    }
    let grant = Grant {
        id: Uuid::now_v7(),
        reason: reason.to_owned(),
        expires_at: OffsetDateTime::now_utc() + time::Duration::seconds(grant_secs),
    };
    sqlx::query(
        "INSERT INTO identity.break_glass_grants (tenant_id, id, patient_id, user_id, reason, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(grant.id)
    .bind(patient_id.as_uuid())
    .bind(user_id.as_uuid())
    .bind(&grant.reason)
    .bind(grant.expires_at)
    .execute(&mut **tx)
    .await?;
    audit::append(
        tx,
        AuditEntry::patient("break_glass.open", patient_id)
            .purpose(grant.reason.clone())
            .break_glass(true),
    )
    .await?;
    platform::outbox::emit(
        tx,
        Outbox::Identity,
        Event {
            event_type: "break_glass.opened",
            event_version: 1,
            aggregate_type: "patient",
            aggregate_id: patient_id.into_uuid(),
            payload: serde_json::json!({
                "grant_id": grant.id,
                "patient_id": patient_id,
                "user_id": user_id,
                "expires_at": grant.expires_at.unix_timestamp(),
            }),
        },
    )
    .await?;
    Ok(grant)
}

/// The user's unexpired grant on the patient, if any.
pub async fn active_grant(
    tx: &mut TenantTx,
    user_id: UserId,
    patient_id: PatientId,
) -> Result<Option<Grant>, sqlx::Error> {
    let row: Option<(Uuid, String, OffsetDateTime)> = sqlx::query_as(
        "SELECT id, reason, expires_at FROM identity.break_glass_grants
         WHERE tenant_id = $1 AND patient_id = $2 AND user_id = $3 AND expires_at > now()
         ORDER BY expires_at DESC LIMIT 1",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(patient_id.as_uuid())
    .bind(user_id.as_uuid())
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(|(id, reason, expires_at)| Grant {
        id,
        reason,
        expires_at,
    }))
}

/// A grant of the transaction's tenant by id.
pub async fn get(tx: &mut TenantTx, grant_id: Uuid) -> Result<Option<Grant>, sqlx::Error> {
    let row: Option<(Uuid, String, OffsetDateTime)> = sqlx::query_as(
        "SELECT id, reason, expires_at FROM identity.break_glass_grants WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(grant_id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(|(id, reason, expires_at)| Grant {
        id,
        reason,
        expires_at,
    }))
}
