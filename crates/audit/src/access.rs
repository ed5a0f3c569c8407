//! The access report: who touched a patient's record, when, what they did and why
//! (HIPAA's accounting of disclosures, and the patient's right to see it).

use db::TenantTx;
use kernel::PatientId;
use time::OffsetDateTime;

/// One line of a patient's access report.
#[derive(Debug, Clone)]
pub struct AccessEntry {
    pub occurred_at: OffsetDateTime,
    pub actor: String,
    pub action: String,
    pub purpose: Option<String>,
    pub break_glass: bool,
}

/// How many entries one report returns at most.
pub const ACCESS_LOG_LIMIT_MAX: i64 = 1_000;

/// The newest accesses to `patient_id`, newest first.
pub async fn access_log(
    tx: &mut TenantTx,
    patient_id: PatientId,
    limit: i64,
) -> Result<Vec<AccessEntry>, sqlx::Error> {
    let rows: Vec<(OffsetDateTime, String, String, Option<String>, bool)> = sqlx::query_as(
        "SELECT occurred_at, actor, action, purpose, break_glass FROM audit.events
         WHERE tenant_id = $1 AND patient_id = $2 ORDER BY occurred_at DESC, id DESC LIMIT $3",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(patient_id.as_uuid())
    .bind(limit.clamp(1, ACCESS_LOG_LIMIT_MAX))
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(occurred_at, actor, action, purpose, break_glass)| AccessEntry {
                occurred_at,
                actor,
                action,
                purpose,
                break_glass,
            },
        )
        .collect())
}
