//! Stored measurement plans: create, change (each change a new version, kept in
//! `assessments.plan_versions`), list, retire.
//!
//! A definition is validated ([`PlanDefinition::validate`]) before it is written, so
//! every stored version can be carried out. A change moves the plan's active
//! enrolments to the new version and asks the materialiser to look at them again. A
//! retired plan takes no new enrolments; its enrolments run on.
//!
//! Creating a tenant's first plan also creates the tenant's durable schedule that
//! drives the materialiser ([`crate::materialize::ensure_schedule`]).
//!
//! Plans hold no health information; their changes are audited all the same, since
//! they decide what patients are asked.

use audit::AuditEntry;
use db::TenantTx;
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::plan::{PlanDefinition, PlanError};

/// The most plans one listing returns.
pub const LIST_LEN_MAX: i64 = 1000;
/// The longest overdue grace: a year, in hours.
pub const OVERDUE_GRACE_HOURS_MAX: u32 = 8784;

/// A plan as stored: its current version.
#[derive(Debug, Clone)]
pub struct StoredPlan {
    pub id: Uuid,
    pub name: String,
    pub version: i32,
    pub definition: PlanDefinition,
    pub retired: bool,
    /// Hours an instance may stay open past its due time before the care team is
    /// told; `None`: the tenant's default.
    pub overdue_grace_hours: Option<u32>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// Why a plan was not stored or not found. Messages name fields, never values.
#[derive(Debug, thiserror::Error)]
pub enum PlanStoreError {
    #[error(transparent)]
    Invalid(#[from] PlanError),
    #[error("name: a plan name is 1 to 200 characters")]
    InvalidName,
    #[error("overdue_grace_hours: at most {OVERDUE_GRACE_HOURS_MAX}")]
    InvalidGrace,
    #[error("this tenant already has a plan with that name")]
    NameTaken,
    #[error("no such plan")]
    NotFound,
    #[error("the plan is retired")]
    Retired,
    #[error("writing the audit event")]
    Audit(#[from] audit::AuditError),
    #[error(transparent)]
    Unexpected(#[from] sqlx::Error),
}

type PlanRow = (
    Uuid,
    String,
    i32,
    serde_json::Value,
    String,
    Option<i32>,
    OffsetDateTime,
    OffsetDateTime,
);

const COLUMNS: &str =
    "id, name, version, definition, status::text, overdue_grace_hours, created_at, updated_at";

fn from_row(row: PlanRow) -> StoredPlan {
    let (id, name, version, definition, status, grace, created_at, updated_at) = row;
    StoredPlan {
        id,
        name,
        version,
        definition: serde_json::from_value(definition)
            .expect("BUG: a stored plan definition was validated before it was written"),
        retired: status == "retired",
        overdue_grace_hours: grace.map(|hours| u32::try_from(hours).unwrap_or(0)),
        created_at,
        updated_at,
    }
}

fn check(
    name: Option<&str>,
    definition: &PlanDefinition,
    grace: Option<u32>,
) -> Result<(), PlanStoreError> {
    if name.is_some_and(|name| name.trim().is_empty() || name.chars().count() > 200) {
        return Err(PlanStoreError::InvalidName);
    }
    if grace.is_some_and(|hours| hours > OVERDUE_GRACE_HOURS_MAX) {
        return Err(PlanStoreError::InvalidGrace);
    }
    definition.validate()?;
    Ok(())
}

fn grace_column(grace: Option<u32>) -> Option<i32> {
    grace.map(|hours| i32::try_from(hours).expect("BUG: the grace is bounded"))
}

async fn audit_plan(
    tx: &mut TenantTx,
    action: &'static str,
    plan_id: Uuid,
    version: i32,
) -> Result<(), PlanStoreError> {
    audit::append(
        tx,
        AuditEntry {
            action,
            patient_id: None,
            purpose: None,
            break_glass: false,
            details: json!({ "plan_id": plan_id, "version": version }),
        },
    )
    .await?;
    Ok(())
}

/// Stores a new plan (version 1) and makes sure the tenant's materialise schedule
/// exists; both only if `tx` commits.
pub async fn create(
    tx: &mut TenantTx,
    name: &str,
    definition: &PlanDefinition,
    overdue_grace_hours: Option<u32>,
    now: OffsetDateTime,
) -> Result<StoredPlan, PlanStoreError> {
    check(Some(name), definition, overdue_grace_hours)?;
    let plan_id = Uuid::now_v7();
    let json = serde_json::to_value(definition).expect("BUG: a plan serialises");
    let row: Option<PlanRow> = sqlx::query_as(&format!(
        "INSERT INTO assessments.plans (tenant_id, id, name, definition, overdue_grace_hours)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (tenant_id, name) DO NOTHING
         RETURNING {COLUMNS}"
    ))
    .bind(tx.tenant_id().as_uuid())
    .bind(plan_id)
    .bind(name.trim())
    .bind(&json)
    .bind(grace_column(overdue_grace_hours))
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else {
        return Err(PlanStoreError::NameTaken);
    };
    sqlx::query(
        "INSERT INTO assessments.plan_versions (tenant_id, plan_id, version, definition) VALUES ($1, $2, 1, $3)",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(plan_id)
    .bind(&json)
    .execute(&mut **tx)
    .await?;
    crate::materialize::ensure_schedule(tx, now).await?;
    // Reminders follow the first plan with the tenant's settings (or the defaults)
    // rather than waiting for an operator to remember `tenet reminders configure`.
    crate::reminder::ensure_sweep_schedule(tx, now)
        .await
        .map_err(|err| match err {
            crate::reminder::ReminderError::Unexpected(err) => PlanStoreError::from(err),
            other => panic!("BUG: the reminder sweep schedule is valid: {other}"),
        })?;
    audit_plan(tx, "assessments.plan.create", plan_id, 1).await?;
    Ok(from_row(row))
}

/// Replaces the plan's definition (and grace) with a new version; the plan's active
/// enrolments move to it and are re-evaluated by the materialiser at once.
pub async fn update(
    tx: &mut TenantTx,
    plan_id: Uuid,
    definition: &PlanDefinition,
    overdue_grace_hours: Option<u32>,
) -> Result<StoredPlan, PlanStoreError> {
    check(None, definition, overdue_grace_hours)?;
    let json = serde_json::to_value(definition).expect("BUG: a plan serialises");
    let row: Option<PlanRow> = sqlx::query_as(&format!(
        "UPDATE assessments.plans SET version = version + 1, definition = $3,
             overdue_grace_hours = $4, updated_at = now()
         WHERE tenant_id = $1 AND id = $2
         RETURNING {COLUMNS}"
    ))
    .bind(tx.tenant_id().as_uuid())
    .bind(plan_id)
    .bind(&json)
    .bind(grace_column(overdue_grace_hours))
    .fetch_optional(&mut **tx)
    .await?;
    let plan = from_row(row.ok_or(PlanStoreError::NotFound)?);
    sqlx::query(
        "INSERT INTO assessments.plan_versions (tenant_id, plan_id, version, definition) VALUES ($1, $2, $3, $4)",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(plan_id)
    .bind(plan.version)
    .bind(&json)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE assessments.enrollments SET plan_version = $3, next_evaluation_at = now(), updated_at = now()
         WHERE tenant_id = $1 AND plan_id = $2 AND status = 'active'",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(plan_id)
    .bind(plan.version)
    .execute(&mut **tx)
    .await?;
    audit_plan(tx, "assessments.plan.update", plan_id, plan.version).await?;
    crate::backfill::enqueue_for_plan(tx, plan_id, definition, OffsetDateTime::now_utc()).await?;
    Ok(plan)
}

/// The tenant's plan; `None` for an unknown id or another tenant's.
pub async fn get(tx: &mut TenantTx, plan_id: Uuid) -> Result<Option<StoredPlan>, sqlx::Error> {
    let row: Option<PlanRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM assessments.plans WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tx.tenant_id().as_uuid())
    .bind(plan_id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(from_row))
}

/// One version of a plan's definition.
pub async fn version(
    tx: &mut TenantTx,
    plan_id: Uuid,
    version: i32,
) -> Result<Option<PlanDefinition>, sqlx::Error> {
    let definition: Option<serde_json::Value> = sqlx::query_scalar(
        "SELECT definition FROM assessments.plan_versions WHERE tenant_id = $1 AND plan_id = $2 AND version = $3",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(plan_id)
    .bind(version)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(definition.map(|definition| {
        serde_json::from_value(definition).expect("BUG: stored plan versions were validated")
    }))
}

/// The tenant's plans by name, retired ones too.
pub async fn list(tx: &mut TenantTx) -> Result<Vec<StoredPlan>, sqlx::Error> {
    let rows: Vec<PlanRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM assessments.plans WHERE tenant_id = $1 ORDER BY name LIMIT $2"
    ))
    .bind(tx.tenant_id().as_uuid())
    .bind(LIST_LEN_MAX)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows.into_iter().map(from_row).collect())
}

/// Retires a plan: it takes no new enrolments; the ones it has run on. Retiring a
/// retired plan is a no-op.
pub async fn retire(tx: &mut TenantTx, plan_id: Uuid) -> Result<StoredPlan, PlanStoreError> {
    let row: Option<PlanRow> = sqlx::query_as(&format!(
        "UPDATE assessments.plans SET status = 'retired', updated_at = now()
         WHERE tenant_id = $1 AND id = $2 RETURNING {COLUMNS}"
    ))
    .bind(tx.tenant_id().as_uuid())
    .bind(plan_id)
    .fetch_optional(&mut **tx)
    .await?;
    let plan = from_row(row.ok_or(PlanStoreError::NotFound)?);
    audit_plan(tx, "assessments.plan.retire", plan_id, plan.version).await?;
    Ok(plan)
}
