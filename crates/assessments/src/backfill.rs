//! Backfill: the instances a plan's enrolments should have had over a past window,
//! made afterwards and marked `backfilled`.
//!
//! For each active enrolment of the plan (in id order), [`crate::plan::instances`]
//! over `[from, until)` gives the slots and the family rules' assignments on each
//! slot's date; the slots whose window has closed by `now` are inserted with
//! `ON CONFLICT DO NOTHING` on the slot key, so an instance the materialiser (or an
//! earlier backfill) made is left alone and a re-run creates nothing new.
//!
//! **Status.** A backfilled instance is `completed` when the patient has a response
//! to the same instrument, from the same respondent, submitted inside the slot's
//! window and not already the answer of another instance (each response answers at
//! most one, the earliest slot first); it links the response (`response_id`,
//! `completed_at` = its submission). Otherwise it is `missed`. Either way it is never
//! reminded and never escalated: nobody was asked at the time.
//!
//! Progress is kept in `assessments.backfills`: the last enrolment done, committed
//! with that enrolment's instances, so an interrupted backfill resumes after it.
//!
//! **Automatic.** A plan that sets `backfill_days` is backfilled over that many past
//! days by the durable [`Backfill`] job: for the whole plan when its definition
//! changes or a batch enrolment into it finishes ([`enqueue_for_plan`]: one page of
//! [`ENROLLMENTS_PER_TX`] enrolments per run, the next run enqueued until done), and
//! for one enrolment when a patient is enrolled ([`enqueue_for_enrollment`]). The
//! job's arguments are ids and instants only.

use std::collections::HashSet;

use audit::AuditEntry;
use db::TenantTx;
use identity::keyring::Keyring;
use jiff::tz::TimeZone;
use kernel::{PatientId, TenantId};
use serde_json::json;
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use std::time::Duration;

use platform::jobs::{JobContext, JobError, JobKind, JobSpec};
use serde::{Deserialize, Serialize};

use crate::enrollment;
use crate::instant::{to_jiff, to_time};
use crate::materialize::{NewInstance, insert_instances, respondent_sql};
use crate::plan::PlanDefinition;

/// Enrolments backfilled per transaction.
pub const ENROLLMENTS_PER_TX: i64 = 200;
/// The longest window one backfill covers: ten years.
pub const WINDOW_DAYS_MAX: i64 = 3_660;

#[derive(Debug, Clone, Copy)]
pub struct BackfillOptions {
    pub enrollments_per_tx: i64,
    /// Stop after this many enrolments of this run, as an interruption would.
    pub stop_after_enrollments: Option<usize>,
}

impl Default for BackfillOptions {
    fn default() -> Self {
        Self {
            enrollments_per_tx: ENROLLMENTS_PER_TX,
            stop_after_enrollments: None,
        }
    }
}

/// What a backfill has done (all its runs together).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackfillReport {
    pub backfill_id: Uuid,
    pub n_enrollments: i64,
    pub n_created: i64,
    pub finished: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error("plan_id: no such plan")]
    PlanNotFound,
    #[error("from: must be before until, at most {WINDOW_DAYS_MAX} days before it")]
    InvalidWindow,
    #[error("reading a patient's facts: {0}")]
    Vault(#[from] identity::vault::VaultError),
    #[error("writing the audit event")]
    Audit(#[from] audit::AuditError),
    #[error(transparent)]
    Unexpected(#[from] sqlx::Error),
}

/// Backfills the plan's enrolments over `[from, until)` (or resumes the unfinished
/// backfill of that window). `progress` is told how many enrolments each committed
/// transaction did.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    pool: &PgPool,
    keyring: &Keyring,
    tenant_id: TenantId,
    actor: &str,
    plan_id: Uuid,
    from: OffsetDateTime,
    until: OffsetDateTime,
    now: OffsetDateTime,
    options: BackfillOptions,
    mut progress: impl FnMut(u64),
) -> Result<BackfillReport, BackfillError> {
    let mut tx = TenantTx::begin_as(pool, tenant_id, actor, None).await?;
    let (backfill_id, n_done) = start(&mut tx, plan_id, from, until).await?;
    tx.commit().await?;
    progress(u64::try_from(n_done).unwrap_or(0));

    let budget = options.stop_after_enrollments.unwrap_or(usize::MAX);
    let mut n_this_run = 0usize;
    while n_this_run < budget {
        let limit = options
            .enrollments_per_tx
            .min(i64::try_from(budget - n_this_run).unwrap_or(i64::MAX));
        let mut tx = TenantTx::begin_as(pool, tenant_id, actor, None).await?;
        let page = step(&mut tx, keyring, backfill_id, now, limit).await?;
        tx.commit().await?;
        progress(page.n_enrollments as u64);
        n_this_run += page.n_enrollments;
        if page.finished {
            break;
        }
    }

    let mut tx = TenantTx::begin_as(pool, tenant_id, actor, None).await?;
    let (n_enrollments, n_created, status): (i32, i64, String) = sqlx::query_as(
        "SELECT n_enrollments, n_created, status::text FROM assessments.backfills WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant_id.as_uuid())
    .bind(backfill_id)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(BackfillReport {
        backfill_id,
        n_enrollments: i64::from(n_enrollments),
        n_created,
        finished: status == "done",
    })
}

/// Starts the backfill of the plan over `[from, until)`, or finds the one of that
/// window still running. Returns its id and how many enrolments it has done.
pub async fn start(
    tx: &mut TenantTx,
    plan_id: Uuid,
    from: OffsetDateTime,
    until: OffsetDateTime,
) -> Result<(Uuid, i32), BackfillError> {
    if from >= until || (until - from).whole_days() > WINDOW_DAYS_MAX {
        return Err(BackfillError::InvalidWindow);
    }
    if crate::plan_store::get(tx, plan_id).await?.is_none() {
        return Err(BackfillError::PlanNotFound);
    }
    let tenant_id = tx.tenant_id();
    sqlx::query(
        "INSERT INTO assessments.backfills (tenant_id, id, plan_id, from_at, until_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (tenant_id, plan_id, from_at, until_at) WHERE status = 'running' DO NOTHING",
    )
    .bind(tenant_id.as_uuid())
    .bind(Uuid::now_v7())
    .bind(plan_id)
    .bind(from)
    .bind(until)
    .execute(&mut **tx)
    .await?;
    let started = sqlx::query_as(
        "SELECT id, n_enrollments FROM assessments.backfills
         WHERE tenant_id = $1 AND plan_id = $2 AND from_at = $3 AND until_at = $4 AND status = 'running'",
    )
    .bind(tenant_id.as_uuid())
    .bind(plan_id)
    .bind(from)
    .bind(until)
    .fetch_one(&mut **tx)
    .await?;
    Ok(started)
}

/// What one [`step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub n_enrollments: usize,
    pub n_created: u64,
    /// The backfill has done its last enrolment.
    pub finished: bool,
}

/// Backfills the next `limit` enrolments of a started backfill, in `tx`, and records
/// the progress in the same transaction.
pub async fn step(
    tx: &mut TenantTx,
    keyring: &Keyring,
    backfill_id: Uuid,
    now: OffsetDateTime,
    limit: i64,
) -> Result<Step, BackfillError> {
    let tenant_id = tx.tenant_id();
    // The backfill's row, locked: two runs of one backfill take turns.
    let (plan_id, from, until, after, status): (
        Uuid,
        OffsetDateTime,
        OffsetDateTime,
        Option<Uuid>,
        String,
    ) = sqlx::query_as(
        "SELECT plan_id, from_at, until_at, after_enrollment_id, status::text FROM assessments.backfills
         WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
    )
    .bind(tenant_id.as_uuid())
    .bind(backfill_id)
    .fetch_one(&mut **tx)
    .await?;
    if status != "running" {
        // Another run finished it while this one waited for the lock.
        return Ok(Step {
            n_enrollments: 0,
            n_created: 0,
            finished: true,
        });
    }
    let page: Vec<Page> = sqlx::query_as(&format!(
        "{PAGE_SELECT} WHERE e.tenant_id = $1 AND e.plan_id = $2 AND e.status = 'active'
           AND ($3::uuid IS NULL OR e.id > $3)
         ORDER BY e.id LIMIT $4"
    ))
    .bind(tenant_id.as_uuid())
    .bind(plan_id)
    .bind(after)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?;
    let mut n_created = 0u64;
    for enrollment in &page {
        match backfill_one(tx, keyring, enrollment, from, until, now).await {
            Ok(n) => n_created += n,
            // The patient's record is read before the enrolment's first write: one that
            // cannot be read is passed over (and logged, ids only) rather than stopping
            // the backfill of every enrolment after it; a re-run tries it again.
            Err(BackfillError::Vault(err)) if enrollment::is_unreadable_record(&err) => {
                tracing::warn!(
                    enrollment_id = %enrollment.id,
                    error = %err,
                    "an enrolment was left out of the backfill: its patient's record cannot be read"
                );
            }
            Err(err) => return Err(err),
        }
    }
    // A page shorter than asked for is the last.
    let finished = (page.len() as i64) < limit;
    sqlx::query(
        "UPDATE assessments.backfills
         SET after_enrollment_id = coalesce($3, after_enrollment_id),
             n_enrollments = n_enrollments + $4, n_created = n_created + $5,
             status = CASE WHEN $6 THEN 'done'::assessments.batch_status ELSE status END,
             finished_at = CASE WHEN $6 THEN now() ELSE finished_at END,
             updated_at = now()
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant_id.as_uuid())
    .bind(backfill_id)
    .bind(page.last().map(|enrollment| enrollment.id))
    .bind(i32::try_from(page.len()).expect("BUG: pages are bounded"))
    .bind(i64::try_from(n_created).expect("BUG: fits"))
    .bind(finished)
    .execute(&mut **tx)
    .await?;
    Ok(Step {
        n_enrollments: page.len(),
        n_created,
        finished,
    })
}

/// The durable backfill job's arguments: ids and instants only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackfillArgs {
    pub plan_id: Uuid,
    /// Only this enrolment; `None`: every active enrolment of the plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrollment_id: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339")]
    pub from: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub until: OffsetDateTime,
}

/// The job kind `assessments.backfill`.
#[derive(Debug, Clone)]
pub struct Backfill {
    pub keyring: Keyring,
}

impl JobKind for Backfill {
    const NAME: &'static str = "assessments.backfill";
    const VERSION: u32 = 1;
    const ATTEMPTS_MAX: u32 = 5;
    const TIMEOUT: Duration = Duration::from_secs(240);
    type Args = BackfillArgs;

    async fn run(
        &self,
        _ctx: &JobContext,
        tx: &mut TenantTx,
        args: BackfillArgs,
    ) -> Result<(), JobError> {
        let now = OffsetDateTime::now_utc();
        let failed = |err: BackfillError| match err {
            BackfillError::Unexpected(err) => JobError::Database(err),
            // The plan was deleted or the window is impossible: nothing to retry.
            err @ (BackfillError::PlanNotFound | BackfillError::InvalidWindow) => {
                JobError::Fail(err.to_string())
            }
            other => JobError::Retry(other.to_string()),
        };
        if let Some(enrollment_id) = args.enrollment_id {
            let enrollment: Option<Page> = sqlx::query_as(&format!(
                "{PAGE_SELECT} WHERE e.tenant_id = $1 AND e.id = $2 AND e.status = 'active'"
            ))
            .bind(tx.tenant_id().as_uuid())
            .bind(enrollment_id)
            .fetch_optional(&mut **tx)
            .await?;
            // An enrolment stopped before its backfill ran needs none.
            if let Some(enrollment) = enrollment {
                backfill_one(tx, &self.keyring, &enrollment, args.from, args.until, now)
                    .await
                    .map_err(failed)?;
            }
            return Ok(());
        }
        let (backfill_id, _) = start(tx, args.plan_id, args.from, args.until)
            .await
            .map_err(failed)?;
        let page = step(tx, &self.keyring, backfill_id, now, ENROLLMENTS_PER_TX)
            .await
            .map_err(failed)?;
        if !page.finished {
            // The next page in its own job and transaction, so progress is kept.
            platform::jobs::enqueue(tx, JobSpec::<Backfill>::new(args))
                .await
                .map_err(|err| JobError::Retry(err.to_string()))?;
        }
        Ok(())
    }
}

/// The window a plan's automatic backfill covers at `now`, if it has one.
fn window(def: &PlanDefinition, now: OffsetDateTime) -> Option<(OffsetDateTime, OffsetDateTime)> {
    def.backfill_days
        .map(|days| (now - time::Duration::days(i64::from(days)), now))
}

/// Enqueues the backfill of every enrolment of the plan, if its definition asks for
/// one: after the plan changed or a batch enrolled into it. At most one such job
/// waits per plan.
pub async fn enqueue_for_plan(
    tx: &mut TenantTx,
    plan_id: Uuid,
    def: &PlanDefinition,
    now: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    let Some((from, until)) = window(def, now) else {
        return Ok(());
    };
    let args = BackfillArgs {
        plan_id,
        enrollment_id: None,
        from,
        until,
    };
    platform::jobs::enqueue(
        tx,
        JobSpec::<Backfill>::new(args).unique_key(format!("assessments.backfill:{plan_id}")),
    )
    .await
    .map_err(enqueue_error)?;
    Ok(())
}

/// Enqueues the backfill of one new enrolment, if its plan asks for one.
pub async fn enqueue_for_enrollment(
    tx: &mut TenantTx,
    plan_id: Uuid,
    enrollment_id: Uuid,
    def: &PlanDefinition,
    now: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    let Some((from, until)) = window(def, now) else {
        return Ok(());
    };
    let args = BackfillArgs {
        plan_id,
        enrollment_id: Some(enrollment_id),
        from,
        until,
    };
    platform::jobs::enqueue(tx, JobSpec::<Backfill>::new(args))
        .await
        .map_err(enqueue_error)?;
    Ok(())
}

fn enqueue_error(err: platform::jobs::EnqueueError) -> sqlx::Error {
    match err {
        platform::jobs::EnqueueError::Unexpected(err) => err,
        other => panic!("BUG: a backfill job is valid: {other}"),
    }
}

const PAGE_SELECT: &str =
    "SELECT e.id, e.patient_id, e.clinician_id, e.time_zone, e.anchor_at, v.definition
     FROM assessments.enrollments e
     JOIN assessments.plan_versions v
         ON v.tenant_id = e.tenant_id AND v.plan_id = e.plan_id AND v.version = e.plan_version";

#[derive(sqlx::FromRow)]
struct Page {
    id: Uuid,
    patient_id: Uuid,
    clinician_id: Option<Uuid>,
    time_zone: String,
    anchor_at: OffsetDateTime,
    definition: serde_json::Value,
}

/// A response that may complete a backfilled instance.
struct Answer {
    id: Uuid,
    instrument_code: String,
    respondent: String,
    respondent_person_id: Option<Uuid>,
    submitted_at: OffsetDateTime,
}

async fn backfill_one(
    tx: &mut TenantTx,
    keyring: &Keyring,
    enrollment: &Page,
    from: OffsetDateTime,
    until: OffsetDateTime,
    now: OffsetDateTime,
) -> Result<u64, BackfillError> {
    let def: PlanDefinition = serde_json::from_value(enrollment.definition.clone())
        .expect("BUG: stored plan versions were validated");
    let tz = TimeZone::get(&enrollment.time_zone)
        .expect("BUG: enrolment time zones are checked when enrolled");
    let patient_id = PatientId::new_unchecked(enrollment.patient_id);
    let needs_birth_date = def.rules.iter().any(|rule| rule.when.has_age());
    let facts = enrollment::facts(tx, keyring, patient_id, needs_birth_date).await?;
    let sessions = if def.cadence.every_sessions.is_some() {
        enrollment::sessions(tx, patient_id).await?
    } else {
        Vec::new()
    };
    let now_j = to_jiff(now);
    let planned: Vec<_> = crate::plan::instances(
        &def,
        &facts,
        to_jiff(enrollment.anchor_at),
        &tz,
        &sessions,
        to_jiff(from),
        to_jiff(until.min(now)),
    )
    .into_iter()
    .filter(|planned| planned.slot.closes_at <= now_j)
    .collect();
    if planned.is_empty() {
        return Ok(0);
    }
    let answers: Vec<(Uuid, String, String, Option<Uuid>, OffsetDateTime)> = sqlx::query_as(
        "SELECT r.id, r.instrument_code, r.respondent::text, r.respondent_person_id, r.submitted_at
         FROM assessments.responses r
         WHERE r.tenant_id = $1 AND r.patient_id = $2 AND r.submitted_at >= $3 AND r.submitted_at < $4
           AND r.instance_id IS NULL
           AND NOT EXISTS (SELECT 1 FROM assessments.instances i
                           WHERE i.tenant_id = r.tenant_id AND i.response_id = r.id)
         ORDER BY r.submitted_at, r.id",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(enrollment.patient_id)
    .bind(to_time(planned[0].slot.opens_at))
    .bind(to_time(planned.iter().map(|p| p.slot.closes_at).max().expect("BUG: not empty")))
    .fetch_all(&mut **tx)
    .await?;
    let answers: Vec<Answer> = answers
        .into_iter()
        .map(
            |(id, instrument_code, respondent, respondent_person_id, submitted_at)| Answer {
                id,
                instrument_code,
                respondent,
                respondent_person_id,
                submitted_at,
            },
        )
        .collect();
    let mut used = HashSet::new();
    let mut instances = Vec::with_capacity(planned.len());
    for planned in planned {
        let assignment = &planned.assignment;
        let slot = &planned.slot;
        let answer = answers.iter().find(|answer| {
            !used.contains(&answer.id)
                && answer.instrument_code == assignment.instrument.as_str()
                && answer.respondent == respondent_sql(assignment.respondent)
                && answer.respondent_person_id == assignment.respondent_person
                && to_jiff(answer.submitted_at) >= slot.opens_at
                && to_jiff(answer.submitted_at) < slot.closes_at
        });
        if let Some(answer) = answer {
            used.insert(answer.id);
        }
        instances.push(NewInstance {
            slot_key: slot.key.clone(),
            instrument: assignment.instrument.clone(),
            respondent: assignment.respondent,
            respondent_person: assignment.respondent_person,
            due_at: slot.due_at,
            opens_at: slot.opens_at,
            closes_at: slot.closes_at,
            status: if answer.is_some() {
                "completed"
            } else {
                "missed"
            },
            completed_at: answer.map(|answer| answer.submitted_at),
            response_id: answer.map(|answer| answer.id),
        });
    }
    let n_created = insert_instances(
        tx,
        enrollment.id,
        enrollment.patient_id,
        enrollment.clinician_id,
        true,
        &instances,
    )
    .await?;
    if n_created > 0 {
        let mut entry = AuditEntry::patient("assessments.backfill", patient_id);
        entry.details = json!({ "enrollment_id": enrollment.id, "n_created": n_created });
        audit::append(tx, entry).await?;
    }
    Ok(n_created)
}
