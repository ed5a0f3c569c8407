//! Encounters: a patient's stay or visit, from admission (HL7 A01/A04) to discharge
//! (A03).

use db::TenantTx;
use kernel::PatientId;
use platform::outbox::{Event, Outbox};
use time::OffsetDateTime;
use uuid::Uuid;

/// Opens an encounter for `patient_id` and announces `encounter.started`; returns its
/// id. `class` is an HL7 table 0004 code (I, O, E, ...).
pub async fn start(
    tx: &mut TenantTx,
    patient_id: PatientId,
    class: Option<&str>,
    started_at: Option<OffsetDateTime>,
) -> Result<Uuid, sqlx::Error> {
    let encounter_id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO clinical.encounters (tenant_id, id, patient_id, status, class, started_at)
         VALUES ($1, $2, $3, 'in_progress', $4, $5)",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(encounter_id)
    .bind(patient_id.as_uuid())
    .bind(class)
    .bind(started_at)
    .execute(&mut **tx)
    .await?;
    emit(tx, "encounter.started", encounter_id, patient_id).await?;
    Ok(encounter_id)
}

/// Finishes the patient's most recent open encounter and announces
/// `encounter.finished`; `None` if the patient has none open.
pub async fn finish_latest(
    tx: &mut TenantTx,
    patient_id: PatientId,
    ended_at: Option<OffsetDateTime>,
) -> Result<Option<Uuid>, sqlx::Error> {
    let finished: Option<Uuid> = sqlx::query_scalar(
        "UPDATE clinical.encounters SET status = 'finished', ended_at = coalesce($3, now()), updated_at = now()
         WHERE tenant_id = $1 AND id = (
             SELECT id FROM clinical.encounters
             WHERE tenant_id = $1 AND patient_id = $2 AND status = 'in_progress'
             ORDER BY started_at DESC NULLS LAST, id DESC LIMIT 1
             FOR UPDATE)
         RETURNING id",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(patient_id.as_uuid())
    .bind(ended_at)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(encounter_id) = finished {
        emit(tx, "encounter.finished", encounter_id, patient_id).await?;
    }
    Ok(finished)
}

/// An encounter as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encounter {
    pub id: Uuid,
    pub patient_id: PatientId,
    pub in_progress: bool,
    pub class: Option<String>,
    pub started_at: Option<OffsetDateTime>,
    pub ended_at: Option<OffsetDateTime>,
}

type EncounterRow = (
    Uuid,
    bool,
    Option<String>,
    Option<OffsetDateTime>,
    Option<OffsetDateTime>,
);

/// A patient's encounters, oldest first.
pub async fn of_patient(
    tx: &mut TenantTx,
    patient_id: PatientId,
) -> Result<Vec<Encounter>, sqlx::Error> {
    let rows: Vec<EncounterRow> = sqlx::query_as(
        "SELECT id, status = 'in_progress', class, started_at, ended_at FROM clinical.encounters
             WHERE tenant_id = $1 AND patient_id = $2 ORDER BY id",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(patient_id.as_uuid())
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, in_progress, class, started_at, ended_at)| Encounter {
            id,
            patient_id,
            in_progress,
            class,
            started_at,
            ended_at,
        })
        .collect())
}

async fn emit(
    tx: &mut TenantTx,
    event_type: &'static str,
    encounter_id: Uuid,
    patient_id: PatientId,
) -> Result<(), sqlx::Error> {
    platform::outbox::emit(
        tx,
        Outbox::Clinical,
        Event {
            event_type,
            event_version: 1,
            aggregate_type: "encounter",
            aggregate_id: encounter_id,
            payload: serde_json::json!({ "encounter_id": encounter_id, "patient_id": patient_id }),
        },
    )
    .await
    .map(drop)
}
