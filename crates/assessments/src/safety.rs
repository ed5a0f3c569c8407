//! Urgent safety events: a response that says the patient may harm themself.
//!
//! [`crate::response::submit`] calls [`raise`] in the response's own transaction when
//! a score carries [`crate::Flag::SelfHarm`] (PHQ-9 item 9, PHQ-A item 9 above zero),
//! whatever the total: the `assessments.safety_events` row and the outbox event
//! `assessment.safety_flagged` commit with the response or not at all.
//!
//! **How the care team hears of it.** The event carries ids and codes only — the
//! safety event, the patient, the response, the kind and the instrument — and the
//! relay delivers it within seconds to every webhook subscription of the tenant that
//! wants `assessment.safety_flagged` (a paging or messaging integration) and to NATS
//! when configured. The care team's own view is the open list ([`list`], `GET
//! /v1/assessments/safety-events`, `tenet assessments safety list`): a clinician sees
//! the open events of the patients whose care team they are on, until one of them
//! [`acknowledge`]s it (`assessment.safety_acknowledged`). An event stays open, and
//! listed, until someone acknowledges it.
//!
//! Every listing and acknowledgement is audited per patient. This module must never
//! put an answer or a score into an event, an error or a log line.

use std::fmt;

use audit::AuditEntry;
use db::TenantTx;
use identity::vault::Access;
use kernel::{PatientId, UserId};
use platform::outbox::{Event, Outbox};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::instrument::InstrumentCode;
use crate::response::Unexpected;

/// The most events one listing returns.
pub const LIST_LEN_MAX: i64 = 200;
/// The most patients of one care team a listing filters on.
const CARE_TEAM_PATIENTS_MAX: usize = 50_000;
/// The page in which a care team's patient ids are read: clinical's largest.
const CARE_TEAM_PAGE_LEN: i64 = clinical::patient::PAGE_LEN_MAX;

/// What kind of danger a response signalled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SafetyKind {
    /// Thoughts of being better off dead or of self-harm.
    SelfHarm,
}

impl SafetyKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            SafetyKind::SelfHarm => "self_harm",
        }
    }

    fn from_sql(kind: &str) -> Self {
        match kind {
            "self_harm" => SafetyKind::SelfHarm,
            other => panic!("BUG: assessments.safety_kind {other:?} unknown to Rust"),
        }
    }
}

impl fmt::Display for SafetyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A safety event: ids and times only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafetyEvent {
    pub id: Uuid,
    pub patient_id: PatientId,
    pub response_id: Uuid,
    pub kind: SafetyKind,
    pub raised_at: OffsetDateTime,
    pub acknowledged_at: Option<OffsetDateTime>,
    pub acknowledged_by: Option<UserId>,
}

impl SafetyEvent {
    pub fn is_open(&self) -> bool {
        self.acknowledged_at.is_none()
    }
}

type Row = (
    Uuid,
    Uuid,
    Uuid,
    String,
    OffsetDateTime,
    Option<OffsetDateTime>,
    Option<Uuid>,
);

const SELECT: &str =
    "SELECT id, patient_id, response_id, kind::text, raised_at, acknowledged_at, acknowledged_by
 FROM assessments.safety_events";

fn event(
    (id, patient_id, response_id, kind, raised_at, acknowledged_at, acknowledged_by): Row,
) -> SafetyEvent {
    SafetyEvent {
        id,
        patient_id: PatientId::new_unchecked(patient_id),
        response_id,
        kind: SafetyKind::from_sql(&kind),
        raised_at,
        acknowledged_at,
        acknowledged_by: acknowledged_by.map(UserId::new_unchecked),
    }
}

/// Records a safety event for `response_id` and announces it; returns its id.
pub(crate) async fn raise(
    tx: &mut TenantTx,
    patient_id: PatientId,
    response_id: Uuid,
    instrument: &InstrumentCode,
    kind: SafetyKind,
) -> Result<Uuid, Unexpected> {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO assessments.safety_events (tenant_id, id, patient_id, response_id, kind)
         VALUES ($1, $2, $3, $4, $5::assessments.safety_kind)",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(id)
    .bind(patient_id.as_uuid())
    .bind(response_id)
    .bind(kind.as_str())
    .execute(&mut **tx)
    .await?;
    platform::outbox::emit(
        tx,
        Outbox::Assessments,
        Event {
            event_type: "assessment.safety_flagged",
            event_version: 1,
            aggregate_type: "assessment_safety_event",
            aggregate_id: id,
            payload: json!({
                "safety_event_id": id,
                "patient_id": patient_id,
                "response_id": response_id,
                "kind": kind.as_str(),
                "instrument": instrument.as_str(),
                "urgent": true,
            }),
        },
    )
    .await?;
    let mut entry = AuditEntry::patient("assessment_safety.raise", patient_id).purpose("treatment");
    entry.details =
        json!({ "safety_event_id": id, "response_id": response_id, "kind": kind.as_str() });
    audit::append(tx, entry).await?;
    Ok(id)
}

/// Whose events a listing may show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every patient of the tenant (admins, integrations, the operator).
    Tenant,
    /// The patients whose care team this user is on.
    CareTeamOf(UserId),
}

/// What to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Filter {
    /// Only events no one has acknowledged yet.
    pub open_only: bool,
    pub patient_id: Option<PatientId>,
    /// At most this many (capped at [`LIST_LEN_MAX`]).
    pub limit: i64,
}

/// The tenant's safety events in `scope`, newest first; records one
/// `assessment_safety.read` per patient listed.
pub async fn list(
    tx: &mut TenantTx,
    scope: Scope,
    filter: Filter,
    access: &Access,
) -> Result<Vec<SafetyEvent>, Unexpected> {
    let limit = filter.limit.clamp(1, LIST_LEN_MAX);
    // A care-team listing filters in the query, on the ids clinical reports for the
    // user, so a page is full however many other patients' events are newer.
    let patient_ids: Option<Vec<Uuid>> = match scope {
        Scope::Tenant => None,
        Scope::CareTeamOf(user_id) => Some(care_team_patients(tx, user_id).await?),
    };
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "{SELECT} WHERE tenant_id = $1 AND (NOT $2 OR acknowledged_at IS NULL)
           AND ($3::uuid IS NULL OR patient_id = $3)
           AND ($5::uuid[] IS NULL OR patient_id = ANY($5))
         ORDER BY raised_at DESC, id DESC LIMIT $4"
    ))
    .bind(tx.tenant_id().as_uuid())
    .bind(filter.open_only)
    .bind(filter.patient_id.map(PatientId::into_uuid))
    .bind(limit)
    .bind(patient_ids)
    .fetch_all(&mut **tx)
    .await?;
    let events: Vec<SafetyEvent> = rows.into_iter().map(event).collect();
    let mut audited: Vec<PatientId> = Vec::new();
    for event in &events {
        if !audited.contains(&event.patient_id) {
            audited.push(event.patient_id);
            audit::append(
                tx,
                crate::response::audit_entry("assessment_safety.read", event.patient_id, access),
            )
            .await?;
        }
    }
    Ok(events)
}

/// The patient a safety event is about, without disclosing it (for access checks).
pub async fn patient_of(
    tx: &mut TenantTx,
    event_id: Uuid,
) -> Result<Option<PatientId>, sqlx::Error> {
    let patient_id: Option<Uuid> = sqlx::query_scalar(
        "SELECT patient_id FROM assessments.safety_events WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(event_id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(patient_id.map(PatientId::new_unchecked))
}

/// One safety event of the transaction's tenant, read on `access`'s basis (audited);
/// `None` when there is none.
pub async fn get(
    tx: &mut TenantTx,
    event_id: Uuid,
    access: &Access,
) -> Result<Option<SafetyEvent>, Unexpected> {
    let row: Option<Row> = sqlx::query_as(&format!("{SELECT} WHERE tenant_id = $1 AND id = $2"))
        .bind(tx.tenant_id().as_uuid())
        .bind(event_id)
        .fetch_optional(&mut **tx)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let event = event(row);
    audit::append(
        tx,
        crate::response::audit_entry("assessment_safety.read", event.patient_id, access),
    )
    .await?;
    Ok(Some(event))
}

#[derive(Debug, thiserror::Error)]
pub enum AcknowledgeError {
    #[error("no such safety event")]
    NotFound,
    #[error("this safety event was already acknowledged")]
    AlreadyAcknowledged,
    #[error(transparent)]
    Unexpected(#[from] Unexpected),
}

crate::response::unexpected_from!(AcknowledgeError: sqlx::Error, audit::AuditError);

/// Records that `user_id` has taken charge of the event; announces
/// `assessment.safety_acknowledged` and audits it.
pub async fn acknowledge(
    tx: &mut TenantTx,
    event_id: Uuid,
    user_id: UserId,
) -> Result<SafetyEvent, AcknowledgeError> {
    let row: Option<Row> = sqlx::query_as(
        "UPDATE assessments.safety_events SET acknowledged_at = now(), acknowledged_by = $3
         WHERE tenant_id = $1 AND id = $2 AND acknowledged_at IS NULL
         RETURNING id, patient_id, response_id, kind::text, raised_at, acknowledged_at, acknowledged_by",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(event_id)
    .bind(user_id.as_uuid())
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else {
        return Err(match patient_of(tx, event_id).await? {
            Some(_) => AcknowledgeError::AlreadyAcknowledged,
            None => AcknowledgeError::NotFound,
        });
    };
    let event = event(row);
    platform::outbox::emit(
        tx,
        Outbox::Assessments,
        Event {
            event_type: "assessment.safety_acknowledged",
            event_version: 1,
            aggregate_type: "assessment_safety_event",
            aggregate_id: event.id,
            payload: json!({
                "safety_event_id": event.id,
                "patient_id": event.patient_id,
                "acknowledged_by": user_id,
            }),
        },
    )
    .await?;
    let mut entry =
        AuditEntry::patient("assessment_safety.acknowledge", event.patient_id).purpose("treatment");
    entry.details = json!({ "safety_event_id": event.id });
    audit::append(tx, entry).await?;
    Ok(event)
}

/// The ids of the patients `user_id` cares for, up to [`CARE_TEAM_PATIENTS_MAX`].
async fn care_team_patients(tx: &mut TenantTx, user_id: UserId) -> Result<Vec<Uuid>, Unexpected> {
    let mut ids = Vec::new();
    let mut after = None;
    loop {
        let page =
            clinical::care_team::patient_ids_of(tx, user_id, after, CARE_TEAM_PAGE_LEN).await?;
        let full = page.len() as i64 >= CARE_TEAM_PAGE_LEN;
        after = page.last().copied();
        ids.extend(page.into_iter().map(PatientId::into_uuid));
        if !full || ids.len() >= CARE_TEAM_PATIENTS_MAX {
            return Ok(ids);
        }
    }
}
