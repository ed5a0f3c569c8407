//! Enrolments: a patient on a plan, on their own wall clock.
//!
//! [`enroll`] checks the patient exists (clinical's Rust API, in the caller's
//! transaction), the plan is active and the time zone is an IANA name; a patient has
//! at most one active enrolment per plan (a second is reported as
//! [`Enrolled::Already`], not refused). The new enrolment's `next_evaluation_at` is
//! `now`: the materialiser ([`crate::materialize`]) evaluates the family rules and
//! makes the first instances on its next run. [`stop`] ends an enrolment and cancels
//! its unanswered instances.
//!
//! [`facts`] is what the rules read: the birth date through the identity vault
//! (audited there, as `patient.read`) and the guardianships; [`sessions`] are the
//! patient's finished encounters (clinical). Neither is ever logged.

use audit::AuditEntry;
use db::TenantTx;
use identity::keyring::Keyring;
use identity::vault::{self, Access, VaultError};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use kernel::{PatientId, UserId};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::instant::{date_to_jiff, to_jiff};
use crate::rules::PatientFacts;

/// The purpose recorded when the assessments context reads a birth date.
pub const PURPOSE: &str = "treatment";

/// A patient to enrol.
#[derive(Debug, Clone)]
pub struct NewEnrollment {
    pub plan_id: Uuid,
    pub patient_id: PatientId,
    /// Who owns the due list; `None`: nobody's list.
    pub clinician_id: Option<UserId>,
    /// IANA name: `America/New_York`.
    pub time_zone: String,
    /// Where the cadence counts from; `None`: now.
    pub anchor_at: Option<OffsetDateTime>,
}

/// What [`enroll`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enrolled {
    New(Uuid),
    /// The patient already has an active enrolment in the plan; nothing was added.
    Already(Uuid),
}

impl Enrolled {
    pub fn enrollment_id(self) -> Uuid {
        match self {
            Enrolled::New(id) | Enrolled::Already(id) => id,
        }
    }
}

/// Why a patient was not enrolled. Messages name the field, never a value.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("plan_id: no such plan")]
    PlanNotFound,
    #[error("plan_id: the plan is retired")]
    PlanRetired,
    #[error("patient_id: no such patient")]
    PatientNotFound,
    #[error("time_zone: not an IANA time zone name")]
    InvalidTimeZone,
    #[error("writing the audit event")]
    Audit(#[from] audit::AuditError),
    #[error(transparent)]
    Unexpected(#[from] sqlx::Error),
}

impl EnrollError {
    /// A stable code for a refused row (batch reports, problem JSON).
    pub fn code(&self) -> &'static str {
        match self {
            EnrollError::PlanNotFound => "plan_not_found",
            EnrollError::PlanRetired => "plan_retired",
            EnrollError::PatientNotFound => "patient_not_found",
            EnrollError::InvalidTimeZone => "invalid_time_zone",
            EnrollError::Audit(_) | EnrollError::Unexpected(_) => "unexpected",
        }
    }
}

/// Whether `name` is an IANA time zone this build knows.
pub fn is_time_zone(name: &str) -> bool {
    !name.is_empty() && TimeZone::get(name).is_ok()
}

/// Enrols a patient, or reports the active enrolment they already have.
pub async fn enroll(
    tx: &mut TenantTx,
    new: &NewEnrollment,
    now: OffsetDateTime,
) -> Result<Enrolled, EnrollError> {
    if !is_time_zone(&new.time_zone) {
        return Err(EnrollError::InvalidTimeZone);
    }
    let plan: Option<(i32, String)> = sqlx::query_as(
        "SELECT version, status::text FROM assessments.plans WHERE tenant_id = $1 AND id = $2 FOR SHARE",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(new.plan_id)
    .fetch_optional(&mut **tx)
    .await?;
    let (version, status) = plan.ok_or(EnrollError::PlanNotFound)?;
    if status != "active" {
        return Err(EnrollError::PlanRetired);
    }
    if clinical::patient::get(tx, new.patient_id).await?.is_none() {
        return Err(EnrollError::PatientNotFound);
    }
    let enrollment_id = Uuid::now_v7();
    let inserted: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO assessments.enrollments
             (tenant_id, id, plan_id, plan_version, patient_id, clinician_id, time_zone, anchor_at, next_evaluation_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (tenant_id, plan_id, patient_id) WHERE status = 'active' DO NOTHING
         RETURNING id",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(enrollment_id)
    .bind(new.plan_id)
    .bind(version)
    .bind(new.patient_id.as_uuid())
    .bind(new.clinician_id.map(|id| id.into_uuid()))
    .bind(&new.time_zone)
    .bind(new.anchor_at.unwrap_or(now))
    .bind(now)
    .fetch_optional(&mut **tx)
    .await?;
    match inserted {
        Some(enrollment_id) => {
            let mut entry = AuditEntry::patient("assessments.enrollment.create", new.patient_id);
            entry.details = json!({ "enrollment_id": enrollment_id, "plan_id": new.plan_id });
            audit::append(tx, entry).await?;
            Ok(Enrolled::New(enrollment_id))
        }
        None => {
            let existing: Uuid = sqlx::query_scalar(
                "SELECT id FROM assessments.enrollments
                 WHERE tenant_id = $1 AND plan_id = $2 AND patient_id = $3 AND status = 'active'",
            )
            .bind(tx.tenant_id().as_uuid())
            .bind(new.plan_id)
            .bind(new.patient_id.as_uuid())
            .fetch_one(&mut **tx)
            .await?;
            Ok(Enrolled::Already(existing))
        }
    }
}

/// Enrols one patient, as [`enroll`], and enqueues the backfill of the new
/// enrolment's past when its plan asks for one (`backfill_days`). A batch enrols with
/// [`enroll`] and backfills the whole plan once it has finished.
pub async fn enroll_one(
    tx: &mut TenantTx,
    new: &NewEnrollment,
    now: OffsetDateTime,
) -> Result<Enrolled, EnrollError> {
    let enrolled = enroll(tx, new, now).await?;
    if let Enrolled::New(enrollment_id) = enrolled
        && let Some(plan) = crate::plan_store::get(tx, new.plan_id).await?
    {
        crate::backfill::enqueue_for_enrollment(
            tx,
            new.plan_id,
            enrollment_id,
            &plan.definition,
            now,
        )
        .await?;
    }
    Ok(enrolled)
}

/// Whether reading a patient's facts failed on that patient's record itself (no
/// identity record, a field or data key that no longer decrypts) rather than on the
/// database: automation skips such an enrolment instead of failing for everyone. The
/// failure happens in Rust, after the queries, so the transaction stays usable.
pub(crate) fn is_unreadable_record(err: &identity::vault::VaultError) -> bool {
    use identity::keyring::KeyringError;
    use identity::vault::VaultError;
    matches!(
        err,
        VaultError::NotFound
            | VaultError::Undecryptable
            | VaultError::Keyring(KeyringError::Corrupt { .. })
    )
}

/// An enrolment as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Enrollment {
    pub id: Uuid,
    pub plan_id: Uuid,
    pub plan_version: i32,
    pub patient_id: Uuid,
    pub clinician_id: Option<Uuid>,
    pub time_zone: String,
    pub anchor_at: OffsetDateTime,
    /// `active`, `stopped` or `completed`.
    pub status: String,
    /// A code: `stopped_by_clinician`, `remission`, `responses_reached`, `ended`.
    pub stop_reason: Option<String>,
    pub next_evaluation_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub stopped_at: Option<OffsetDateTime>,
}

pub(crate) const COLUMNS: &str = "id, plan_id, plan_version, patient_id, clinician_id, time_zone, anchor_at, status::text AS status, stop_reason, next_evaluation_at, created_at, stopped_at";

/// The tenant's enrolment; `None` for an unknown id or another tenant's. Audited as a
/// read of the patient's assessment data.
pub async fn get(
    tx: &mut TenantTx,
    enrollment_id: Uuid,
) -> Result<Option<Enrollment>, EnrollError> {
    let enrollment: Option<Enrollment> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM assessments.enrollments WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tx.tenant_id().as_uuid())
    .bind(enrollment_id)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(enrollment) = &enrollment {
        let mut entry = AuditEntry::patient(
            "assessments.enrollment.read",
            PatientId::new_unchecked(enrollment.patient_id),
        );
        entry.details = json!({ "enrollment_id": enrollment.id });
        audit::append(tx, entry).await?;
    }
    Ok(enrollment)
}

/// A patient's enrolments, newest first. Audited.
pub async fn of_patient(
    tx: &mut TenantTx,
    patient_id: PatientId,
) -> Result<Vec<Enrollment>, EnrollError> {
    let enrollments: Vec<Enrollment> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM assessments.enrollments WHERE tenant_id = $1 AND patient_id = $2
         ORDER BY created_at DESC, id DESC"
    ))
    .bind(tx.tenant_id().as_uuid())
    .bind(patient_id.as_uuid())
    .fetch_all(&mut **tx)
    .await?;
    audit::append(
        tx,
        AuditEntry::patient("assessments.enrollment.read", patient_id),
    )
    .await?;
    Ok(enrollments)
}

#[derive(Debug, thiserror::Error)]
pub enum StopError {
    #[error("no such enrolment")]
    NotFound,
    #[error("the enrolment has already ended")]
    NotActive,
    #[error("writing the audit event")]
    Audit(#[from] audit::AuditError),
    #[error(transparent)]
    Unexpected(#[from] sqlx::Error),
}

/// Ends an active enrolment with `reason` (a code) and cancels its instances not yet
/// answered or missed. Returns how many instances were cancelled.
pub async fn finish(
    tx: &mut TenantTx,
    enrollment_id: Uuid,
    status: &'static str,
    reason: &'static str,
    now: OffsetDateTime,
) -> Result<u64, StopError> {
    debug_assert!(matches!(status, "stopped" | "completed"));
    let patient_id: Option<Uuid> = sqlx::query_scalar(
        "UPDATE assessments.enrollments
         SET status = $3::assessments.enrollment_status, stop_reason = $4, stopped_at = $5,
             next_evaluation_at = NULL, updated_at = now()
         WHERE tenant_id = $1 AND id = $2 AND status = 'active'
         RETURNING patient_id",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(enrollment_id)
    .bind(status)
    .bind(reason)
    .bind(now)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(patient_id) = patient_id else {
        let exists: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM assessments.enrollments WHERE tenant_id = $1 AND id = $2)",
        )
        .bind(tx.tenant_id().as_uuid())
        .bind(enrollment_id)
        .fetch_one(&mut **tx)
        .await?;
        return Err(if exists {
            StopError::NotActive
        } else {
            StopError::NotFound
        });
    };
    let n_cancelled = sqlx::query(
        "UPDATE assessments.instances SET status = 'cancelled', updated_at = now()
         WHERE tenant_id = $1 AND enrollment_id = $2 AND status IN ('scheduled', 'open')",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(enrollment_id)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    let mut entry = AuditEntry::patient(
        "assessments.enrollment.stop",
        PatientId::new_unchecked(patient_id),
    );
    entry.details = json!({ "enrollment_id": enrollment_id, "reason": reason });
    audit::append(tx, entry).await?;
    Ok(n_cancelled)
}

/// A clinician stops an enrolment.
pub async fn stop(
    tx: &mut TenantTx,
    enrollment_id: Uuid,
    now: OffsetDateTime,
) -> Result<u64, StopError> {
    finish(tx, enrollment_id, "stopped", "stopped_by_clinician", now).await
}

/// What the family rules know about a patient: the birth date from the identity
/// vault (read only when a rule depends on age; the read is audited by the vault)
/// and the guardianships.
pub async fn facts(
    tx: &mut TenantTx,
    keyring: &Keyring,
    patient_id: PatientId,
    needs_birth_date: bool,
) -> Result<PatientFacts, VaultError> {
    let birth_date = if needs_birth_date {
        let access = Access {
            purpose: Some(PURPOSE.to_owned()),
            break_glass: false,
        };
        match vault::read(tx, keyring, patient_id, &access).await {
            Ok(record) => record.demographics.birth_date.map(date_to_jiff),
            Err(VaultError::NotFound) => None,
            Err(err) => return Err(err),
        }
    } else {
        None
    };
    let guardians = crate::guardian::of_patient(tx, patient_id).await?;
    Ok(PatientFacts {
        birth_date,
        guardians,
    })
}

/// The patient's sessions for a cadence that counts them: the end of each finished
/// encounter, oldest first.
pub async fn sessions(
    tx: &mut TenantTx,
    patient_id: PatientId,
) -> Result<Vec<Timestamp>, sqlx::Error> {
    let mut ended: Vec<Timestamp> = clinical::encounter::of_patient(tx, patient_id)
        .await?
        .into_iter()
        .filter(|encounter| !encounter.in_progress)
        .filter_map(|encounter| encounter.ended_at.map(to_jiff))
        .collect();
    ended.sort();
    Ok(ended)
}
