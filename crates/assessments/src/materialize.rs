//! The materialiser: due instances made by durable schedules, never by requests.
//!
//! Each tenant with a plan has a platform schedule ([`ensure_schedule`], every
//! minute) that fires the [`Materialize`] job. One run, in the job's transaction:
//!
//! 1. claims up to [`ENROLLMENTS_PER_RUN_MAX`] active enrolments whose
//!    `next_evaluation_at` has passed (`FOR NO KEY UPDATE SKIP LOCKED`: concurrent
//!    runs share the work instead of waiting for each other; not `FOR UPDATE`, which
//!    would make another run's foreign-key checks on instances of a claimed
//!    enrolment wait, and deadlock);
//! 2. for each, checks the stop conditions on its responses, evaluates the family
//!    rules on each upcoming slot's local due date and inserts the instances with
//!    `INSERT … ON CONFLICT DO NOTHING` on the slot key — so each instance exists
//!    once however many workers race, crash and retry — withdraws scheduled
//!    instances the rules no longer call for (a guardian gone), and sets the next
//!    evaluation: the next slot to create, the next birthday or guardianship change
//!    ([`crate::rules::next_change`]), the last window's close, or within
//!    [`SESSIONS_RECHECK`] when the plan counts sessions;
//! 3. moves instances on: `scheduled → open` at `opens_at`, `→ missed` after
//!    `closes_at`, and escalates, once, an instance open past its due time by the
//!    plan's grace (or the tenant's default), or missed: `escalated_at` and an
//!    `assessment.overdue` event (ids and codes only) for the care team.
//!
//! An enrolment whose patient record cannot be read (no identity record, a field
//! that no longer decrypts) is skipped — the record is read before the enrolment's
//! first write, so nothing of it is half done — counted in [`Report::n_failed`] and
//! looked at again after [`FAILED_RECHECK`], so one bad record never stalls the
//! tenant's other enrolments. Database errors still fail the run, which the job
//! retries.
//!
//! A backfilled instance is never escalated. `now` is a parameter everywhere
//! ([`run_due`]), so tests step the clock like the scheduler's `tick(now)`.
//!
//! This module must never put a birth date, an answer or a score in a log, an
//! event, a job argument or an error.

use std::collections::HashSet;
use std::time::Duration;

use db::TenantTx;
use identity::keyring::Keyring;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use kernel::PatientId;
use platform::jobs::{JobContext, JobError, JobKind, JobSpec};
use platform::outbox::{Event, Outbox};
use platform::schedules::{self, CatchUp, ScheduleError, ScheduleSpec};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::enrollment;
use crate::instant::{to_jiff, to_time};
use crate::instrument::{Instrument, InstrumentCode, Respondent};
use crate::plan::{PlanDefinition, StopReason};
use crate::rules::{PatientFacts, evaluate, next_change};

/// The most enrolments one run evaluates; a run that finds more enqueues the next.
pub const ENROLLMENTS_PER_RUN_MAX: i64 = 500;
/// The most instances one run moves on per transition (open, missed, escalated).
pub const TRANSITIONS_PER_RUN_MAX: i64 = 5_000;
/// How long before a slot opens its instances are made (`scheduled`), so the due
/// list shows what is coming.
pub const CREATE_AHEAD: SignedDuration = SignedDuration::from_hours(24);
/// How often an enrolment whose plan counts sessions is looked at again at the
/// latest: a finished encounter can bring its next slot forward.
pub const SESSIONS_RECHECK: SignedDuration = SignedDuration::from_hours(1);
/// How long an enrolment whose evaluation failed on its patient's record waits
/// before it is tried again.
pub const FAILED_RECHECK: SignedDuration = SignedDuration::from_hours(1);
/// The overdue grace when neither the plan nor the tenant's schedule sets one.
pub const OVERDUE_GRACE_HOURS_DEFAULT: u32 = 48;
/// The tenant's schedule that fires [`Materialize`].
pub const SCHEDULE_NAME: &str = "assessments.materialize";
pub const SCHEDULE_CRON: &str = "* * * * *";

/// What one run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    pub n_evaluated: usize,
    pub n_created: u64,
    /// Scheduled instances the rules no longer call for.
    pub n_withdrawn: u64,
    /// Enrolments that ended (stop conditions, or the plan's last slot closed).
    pub n_completed: usize,
    pub n_opened: u64,
    pub n_missed: u64,
    pub n_escalated: usize,
    /// Enrolments skipped because their patient's record could not be read; each
    /// is retried after [`FAILED_RECHECK`].
    pub n_failed: usize,
    /// Some work was left for the next run.
    pub more: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum MaterializeError {
    #[error("reading a patient's facts: {0}")]
    Vault(#[from] identity::vault::VaultError),
    #[error("ending an enrolment: {0}")]
    Stop(#[from] enrollment::StopError),
    #[error("writing the audit event")]
    Audit(#[from] audit::AuditError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Makes sure the tenant has its materialise schedule (every minute, UTC; a slot
/// missed during downtime fires once on return). Idempotent.
pub async fn ensure_schedule(tx: &mut TenantTx, now: OffsetDateTime) -> Result<(), sqlx::Error> {
    let spec = ScheduleSpec::<Materialize>::new(
        SCHEDULE_NAME,
        SCHEDULE_CRON,
        "UTC",
        MaterializeArgs::default(),
    )
    .catch_up(CatchUp::Skip)
    .attempts_max(3);
    match schedules::create(tx, spec, now).await {
        Ok(_) | Err(ScheduleError::NameTaken) => Ok(()),
        Err(ScheduleError::Unexpected(err)) => Err(err),
        Err(err) => panic!("BUG: the materialise schedule is valid: {err}"),
    }
}

/// The materialise job's arguments: the tenant's overdue grace (ids and numbers
/// only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaterializeArgs {
    /// Hours an instance may stay open past its due time before escalation, for
    /// plans that set none; `None`: [`OVERDUE_GRACE_HOURS_DEFAULT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overdue_grace_hours: Option<u32>,
}

/// The job kind `assessments.materialize`.
#[derive(Debug, Clone)]
pub struct Materialize {
    pub keyring: Keyring,
}

impl JobKind for Materialize {
    const NAME: &'static str = "assessments.materialize";
    const VERSION: u32 = 1;
    const ATTEMPTS_MAX: u32 = 3;
    const TIMEOUT: Duration = Duration::from_secs(240);
    type Args = MaterializeArgs;

    async fn run(
        &self,
        _ctx: &JobContext,
        tx: &mut TenantTx,
        args: MaterializeArgs,
    ) -> Result<(), JobError> {
        let now = OffsetDateTime::now_utc();
        let report = run_due(
            tx,
            &self.keyring,
            now,
            args.overdue_grace_hours
                .unwrap_or(OVERDUE_GRACE_HOURS_DEFAULT),
        )
        .await
        .map_err(|err| match err {
            MaterializeError::Database(err) => JobError::Database(err),
            other => JobError::Retry(other.to_string()),
        })?;
        if report.more {
            // The rest of the backlog now, not at the next minute.
            platform::jobs::enqueue(tx, JobSpec::<Materialize>::new(args))
                .await
                .map_err(|err| JobError::Retry(err.to_string()))?;
        }
        tracing::debug!(
            n_evaluated = report.n_evaluated,
            n_created = report.n_created,
            n_opened = report.n_opened,
            n_missed = report.n_missed,
            n_escalated = report.n_escalated,
            n_failed = report.n_failed,
            "assessments materialised"
        );
        Ok(())
    }
}

/// One run at `now`: the due enrolments, then the transitions. Everything in `tx`.
pub async fn run_due(
    tx: &mut TenantTx,
    keyring: &Keyring,
    now: OffsetDateTime,
    overdue_grace_hours_default: u32,
) -> Result<Report, MaterializeError> {
    let mut report = evaluate_due(tx, keyring, now, ENROLLMENTS_PER_RUN_MAX).await?;
    transitions(tx, now, overdue_grace_hours_default, &mut report).await?;
    Ok(report)
}

#[derive(sqlx::FromRow)]
struct Claimed {
    id: Uuid,
    patient_id: Uuid,
    clinician_id: Option<Uuid>,
    time_zone: String,
    anchor_at: OffsetDateTime,
    created_at: OffsetDateTime,
    definition: serde_json::Value,
}

/// Evaluates up to `limit` enrolments due at `now`.
pub async fn evaluate_due(
    tx: &mut TenantTx,
    keyring: &Keyring,
    now: OffsetDateTime,
    limit: i64,
) -> Result<Report, MaterializeError> {
    let claimed: Vec<Claimed> = sqlx::query_as(
        "SELECT e.id, e.patient_id, e.clinician_id, e.time_zone, e.anchor_at, e.created_at, v.definition
         FROM assessments.enrollments e
         JOIN assessments.plan_versions v
             ON v.tenant_id = e.tenant_id AND v.plan_id = e.plan_id AND v.version = e.plan_version
         WHERE e.tenant_id = $1 AND e.status = 'active' AND e.next_evaluation_at <= $2
         ORDER BY e.next_evaluation_at, e.id
         LIMIT $3
         FOR NO KEY UPDATE OF e SKIP LOCKED",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(now)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?;
    let mut report = Report {
        more: claimed.len() as i64 >= limit,
        ..Report::default()
    };
    for enrollment in claimed {
        match evaluate_one(tx, keyring, &enrollment, now, &mut report).await {
            Ok(()) => report.n_evaluated += 1,
            // No savepoint is needed (and none is taken: hundreds of subtransactions
            // in one run would overflow PostgreSQL's per-backend subtransaction cache):
            // the patient's record is read before the enrolment's first write, and a
            // record that cannot be read fails in Rust, leaving the transaction usable.
            Err(err) if err.is_the_patients_record() => {
                // Ids and the error's kind only: its message names no value.
                tracing::warn!(
                    enrollment_id = %enrollment.id,
                    error = %err,
                    "an enrolment was skipped; it is tried again later"
                );
                let retry_at = to_jiff(now)
                    .saturating_add(FAILED_RECHECK)
                    .expect("BUG: an hour fits");
                sqlx::query(
                    "UPDATE assessments.enrollments SET next_evaluation_at = $3, updated_at = now()
                     WHERE tenant_id = $1 AND id = $2",
                )
                .bind(tx.tenant_id().as_uuid())
                .bind(enrollment.id)
                .bind(to_time(retry_at))
                .execute(&mut **tx)
                .await?;
                report.n_failed += 1;
            }
            Err(err) => return Err(err),
        }
    }
    Ok(report)
}

impl MaterializeError {
    /// The evaluation failed on this one patient's record, not on the database or
    /// the audit log: skipping it leaves the others' work intact.
    pub(crate) fn is_the_patients_record(&self) -> bool {
        matches!(self, Self::Vault(err) if enrollment::is_unreadable_record(err))
    }
}

/// The respondent as the SQL enum spells it.
pub(crate) fn respondent_sql(respondent: Respondent) -> &'static str {
    match respondent {
        Respondent::Patient => "patient",
        Respondent::ParentGuardian => "guardian",
        Respondent::Clinician => "clinician",
    }
}

/// One instance to insert.
pub(crate) struct NewInstance {
    pub slot_key: String,
    pub instrument: InstrumentCode,
    pub respondent: Respondent,
    pub respondent_person: Option<Uuid>,
    pub due_at: Timestamp,
    pub opens_at: Timestamp,
    pub closes_at: Timestamp,
    pub status: &'static str,
    pub completed_at: Option<OffsetDateTime>,
    pub response_id: Option<Uuid>,
}

/// Inserts `instances` of one enrolment, skipping any whose slot key exists; returns
/// how many were new.
pub(crate) async fn insert_instances(
    tx: &mut TenantTx,
    enrollment_id: Uuid,
    patient_id: Uuid,
    clinician_id: Option<Uuid>,
    backfilled: bool,
    instances: &[NewInstance],
) -> Result<u64, sqlx::Error> {
    if instances.is_empty() {
        return Ok(0);
    }
    let n = instances.len();
    let mut ids = Vec::with_capacity(n);
    let mut codes = Vec::with_capacity(n);
    let mut versions = Vec::with_capacity(n);
    let mut respondents = Vec::with_capacity(n);
    let mut persons = Vec::with_capacity(n);
    let mut keys = Vec::with_capacity(n);
    let mut dues = Vec::with_capacity(n);
    let mut opens = Vec::with_capacity(n);
    let mut closes = Vec::with_capacity(n);
    let mut statuses = Vec::with_capacity(n);
    let mut completed = Vec::with_capacity(n);
    let mut responses = Vec::with_capacity(n);
    for instance in instances {
        let version = Instrument::latest(&instance.instrument)
            .expect("BUG: plans are validated against the catalogue")
            .version();
        ids.push(Uuid::now_v7());
        codes.push(instance.instrument.as_str().to_owned());
        versions.push(i32::from(version));
        respondents.push(respondent_sql(instance.respondent));
        persons.push(instance.respondent_person);
        keys.push(instance.slot_key.clone());
        dues.push(to_time(instance.due_at));
        opens.push(to_time(instance.opens_at));
        closes.push(to_time(instance.closes_at));
        statuses.push(instance.status);
        completed.push(instance.completed_at);
        responses.push(instance.response_id);
    }
    let inserted = sqlx::query(
        "INSERT INTO assessments.instances
             (tenant_id, id, enrollment_id, patient_id, clinician_id, instrument_code, instrument_version,
              respondent, respondent_person_id, slot_key, due_at, opens_at, closes_at, status,
              backfilled, completed_at, response_id)
         SELECT $1, u.id, $2, $3, $4, u.code, u.version, u.respondent::assessments.respondent, u.person,
                u.key, u.due, u.opens, u.closes, u.status::assessments.instance_status, $5, u.completed, u.response
         FROM unnest($6::uuid[], $7::text[], $8::int[], $9::text[], $10::uuid[], $11::text[],
                     $12::timestamptz[], $13::timestamptz[], $14::timestamptz[], $15::text[],
                     $16::timestamptz[], $17::uuid[])
             AS u(id, code, version, respondent, person, key, due, opens, closes, status, completed, response)
         ON CONFLICT (tenant_id, enrollment_id, slot_key, instrument_code, respondent, respondent_person_id)
             DO NOTHING",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(enrollment_id)
    .bind(patient_id)
    .bind(clinician_id)
    .bind(backfilled)
    .bind(&ids)
    .bind(&codes)
    .bind(&versions)
    .bind(&respondents)
    .bind(&persons)
    .bind(&keys)
    .bind(&dues)
    .bind(&opens)
    .bind(&closes)
    .bind(&statuses)
    .bind(&completed)
    .bind(&responses)
    .execute(&mut **tx)
    .await?;
    Ok(inserted.rows_affected())
}

/// The status an instance has at `now` from its window.
fn status_at(now: Timestamp, opens_at: Timestamp, closes_at: Timestamp) -> &'static str {
    if now >= closes_at {
        "missed"
    } else if now >= opens_at {
        "open"
    } else {
        "scheduled"
    }
}

/// Whether the plan's response-based stop conditions are met for the enrolment.
async fn stop_reached(
    tx: &mut TenantTx,
    def: &PlanDefinition,
    enrollment_id: Uuid,
) -> Result<Option<StopReason>, sqlx::Error> {
    if def.stop.after_responses.is_none() && !def.stop.on_remission {
        return Ok(None);
    }
    let (n_responses, latest): (i64, Option<(String, Option<f64>)>) = {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM assessments.instances
             WHERE tenant_id = $1 AND enrollment_id = $2 AND status = 'completed'",
        )
        .bind(tx.tenant_id().as_uuid())
        .bind(enrollment_id)
        .fetch_one(&mut **tx)
        .await?;
        let latest: Option<(String, Option<f64>)> = sqlx::query_as(
            "SELECT r.instrument_code, r.total::float8 FROM assessments.responses r
             JOIN assessments.instances i ON i.tenant_id = r.tenant_id AND i.id = r.instance_id
             WHERE r.tenant_id = $1 AND i.enrollment_id = $2
             ORDER BY r.submitted_at DESC, r.id DESC LIMIT 1",
        )
        .bind(tx.tenant_id().as_uuid())
        .bind(enrollment_id)
        .fetch_optional(&mut **tx)
        .await?;
        (n, latest)
    };
    // Remission as `change::progress` has it: the latest total below the
    // instrument's remission threshold.
    let in_remission = latest.is_some_and(|(code, total)| {
        let criteria = InstrumentCode::parse(&code)
            .ok()
            .and_then(|code| Instrument::latest(&code))
            .and_then(|instrument| instrument.change_criteria());
        match (criteria, total) {
            (Some(criteria), Some(total)) => total < f64::from(criteria.remission_below()),
            _ => false,
        }
    });
    Ok(def
        .stop
        .reached(u32::try_from(n_responses).unwrap_or(u32::MAX), in_remission))
}

async fn evaluate_one(
    tx: &mut TenantTx,
    keyring: &Keyring,
    claimed: &Claimed,
    now: OffsetDateTime,
    report: &mut Report,
) -> Result<(), MaterializeError> {
    let def: PlanDefinition = serde_json::from_value(claimed.definition.clone())
        .expect("BUG: stored plan versions were validated");
    if let Some(reason) = stop_reached(tx, &def, claimed.id).await? {
        let code = match reason {
            StopReason::Responses => "responses_reached",
            StopReason::Remission => "remission",
        };
        enrollment::finish(tx, claimed.id, "completed", code, now).await?;
        report.n_completed += 1;
        return Ok(());
    }
    let tz = TimeZone::get(&claimed.time_zone)
        .expect("BUG: enrolment time zones are checked when enrolled");
    let patient_id = PatientId::new_unchecked(claimed.patient_id);
    let needs_birth_date = def.rules.iter().any(|rule| rule.when.has_age());
    // Read before this enrolment's first write: a record that cannot be read is then
    // skipped by the caller with nothing half done (see `evaluate_due`).
    let facts = enrollment::facts(tx, keyring, patient_id, needs_birth_date).await?;
    let sessions = if def.cadence.every_sessions.is_some() {
        enrollment::sessions(tx, patient_id).await?
    } else {
        Vec::new()
    };
    let now_j = to_jiff(now);
    let created_at = to_jiff(claimed.created_at);
    let horizon = now_j.saturating_add(CREATE_AHEAD).expect("BUG: a day fits");

    // The slots this run is responsible for: not wholly before the enrolment (those
    // are a backfill's), opening by the horizon.
    let mut candidates = Vec::new();
    let mut next_slot_opens = None;
    let mut exhausted = true;
    for slot in crate::cadence::slot_iter(&def, to_jiff(claimed.anchor_at), &tz, &sessions) {
        if slot.closes_at <= created_at {
            continue;
        }
        if slot.opens_at > horizon {
            next_slot_opens = Some(slot.opens_at);
            exhausted = false;
            break;
        }
        candidates.push(slot);
    }

    let mut wanted = Vec::new();
    for slot in &candidates {
        for assignment in evaluate(&def, &facts, slot.due_on) {
            wanted.push(NewInstance {
                slot_key: slot.key.clone(),
                instrument: assignment.instrument,
                respondent: assignment.respondent,
                respondent_person: assignment.respondent_person,
                due_at: slot.due_at,
                opens_at: slot.opens_at,
                closes_at: slot.closes_at,
                status: status_at(now_j, slot.opens_at, slot.closes_at),
                completed_at: None,
                response_id: None,
            });
        }
    }
    let n_created = insert_instances(
        tx,
        claimed.id,
        claimed.patient_id,
        claimed.clinician_id,
        false,
        &wanted,
    )
    .await?;
    if n_created > 0 {
        let mut entry = audit::AuditEntry::patient("assessments.instances.create", patient_id);
        entry.details = json!({ "enrollment_id": claimed.id, "n_created": n_created });
        audit::append(tx, entry).await?;
    }
    report.n_created += n_created;
    report.n_withdrawn += withdraw(tx, claimed.id, &candidates, &wanted).await?;

    // Every window closed and no slot left: the plan has run its course.
    let last_close = candidates.iter().map(|slot| slot.closes_at).max();
    if exhausted && last_close.is_none_or(|close| close <= now_j) {
        enrollment::finish(tx, claimed.id, "completed", "ended", now).await?;
        report.n_completed += 1;
        return Ok(());
    }
    let last_close = if exhausted { last_close } else { None };
    let next = next_evaluation(&def, &facts, &tz, now_j, next_slot_opens, last_close);
    sqlx::query(
        "UPDATE assessments.enrollments SET next_evaluation_at = $3, updated_at = now()
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(claimed.id)
    .bind(next.map(to_time))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// When to look at the enrolment again: the next slot to create, the next change of
/// the rules' answer (a birthday, a guardianship's start or end, at local midnight),
/// or the last window's close (to complete the enrolment).
fn next_evaluation(
    def: &PlanDefinition,
    facts: &PatientFacts,
    tz: &TimeZone,
    now: Timestamp,
    next_slot_opens: Option<Timestamp>,
    last_close: Option<Timestamp>,
) -> Option<Timestamp> {
    let create_at = next_slot_opens.map(|opens| {
        opens
            .saturating_sub(CREATE_AHEAD)
            .expect("BUG: a day fits")
            .max(now)
    });
    let today = tz.to_datetime(now).date();
    let rules_change = next_change(def, facts, today)
        .and_then(|date| date.to_zoned(tz.clone()).ok())
        .map(|zoned| zoned.timestamp());
    let sessions_recheck = def.cadence.every_sessions.map(|_| {
        now.saturating_add(SESSIONS_RECHECK)
            .expect("BUG: an hour fits")
    });
    [create_at, rules_change, last_close, sessions_recheck]
        .into_iter()
        .flatten()
        .filter(|at| *at > now)
        .min()
}

/// Cancels the enrolment's scheduled (not yet open) instances of `candidates` that
/// the rules no longer call for.
async fn withdraw(
    tx: &mut TenantTx,
    enrollment_id: Uuid,
    candidates: &[crate::cadence::Slot],
    wanted: &[NewInstance],
) -> Result<u64, sqlx::Error> {
    if candidates.is_empty() {
        return Ok(0);
    }
    let keys: Vec<String> = candidates.iter().map(|slot| slot.key.clone()).collect();
    let scheduled: Vec<(Uuid, String, String, String, Option<Uuid>)> = sqlx::query_as(
        "SELECT id, slot_key, instrument_code, respondent::text, respondent_person_id
         FROM assessments.instances
         WHERE tenant_id = $1 AND enrollment_id = $2 AND status = 'scheduled' AND slot_key = ANY($3)",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(enrollment_id)
    .bind(&keys)
    .fetch_all(&mut **tx)
    .await?;
    let wanted: HashSet<(&str, &str, &str, Option<Uuid>)> = wanted
        .iter()
        .map(|instance| {
            (
                instance.slot_key.as_str(),
                instance.instrument.as_str(),
                respondent_sql(instance.respondent),
                instance.respondent_person,
            )
        })
        .collect();
    let withdrawn: Vec<Uuid> = scheduled
        .iter()
        .filter(|(_, key, code, respondent, person)| {
            !wanted.contains(&(key.as_str(), code.as_str(), respondent.as_str(), *person))
        })
        .map(|(id, ..)| *id)
        .collect();
    if withdrawn.is_empty() {
        return Ok(0);
    }
    Ok(sqlx::query(
        "UPDATE assessments.instances SET status = 'cancelled', updated_at = now()
         WHERE tenant_id = $1 AND id = ANY($2) AND status = 'scheduled'",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(&withdrawn)
    .execute(&mut **tx)
    .await?
    .rows_affected())
}

/// Opens, misses and escalates the tenant's instances at `now`.
pub async fn transitions(
    tx: &mut TenantTx,
    now: OffsetDateTime,
    overdue_grace_hours_default: u32,
    report: &mut Report,
) -> Result<(), MaterializeError> {
    let tenant_id = *tx.tenant_id().as_uuid();
    report.n_opened = sqlx::query(
        "UPDATE assessments.instances SET status = 'open', updated_at = now()
         WHERE tenant_id = $1 AND id IN (
             SELECT id FROM assessments.instances
             WHERE tenant_id = $1 AND status = 'scheduled' AND opens_at <= $2 AND closes_at > $2
             LIMIT $3 FOR UPDATE SKIP LOCKED)",
    )
    .bind(tenant_id)
    .bind(now)
    .bind(TRANSITIONS_PER_RUN_MAX)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    report.n_missed = sqlx::query(
        "UPDATE assessments.instances SET status = 'missed', updated_at = now()
         WHERE tenant_id = $1 AND id IN (
             SELECT id FROM assessments.instances
             WHERE tenant_id = $1 AND status IN ('scheduled', 'open') AND closes_at <= $2
             LIMIT $3 FOR UPDATE SKIP LOCKED)",
    )
    .bind(tenant_id)
    .bind(now)
    .bind(TRANSITIONS_PER_RUN_MAX)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    // Escalated once: `escalated_at IS NULL` is re-checked under the row lock, so a
    // racing run that waited on the row sees it set and skips it.
    let escalated: Vec<(Uuid, Uuid, Uuid, Option<Uuid>, String, String)> = sqlx::query_as(
        "UPDATE assessments.instances i SET escalated_at = $2, updated_at = now()
         WHERE i.tenant_id = $1 AND i.id IN (
             SELECT i.id FROM assessments.instances i
             JOIN assessments.enrollments e ON e.tenant_id = i.tenant_id AND e.id = i.enrollment_id
             JOIN assessments.plans p ON p.tenant_id = e.tenant_id AND p.id = e.plan_id
             WHERE i.tenant_id = $1 AND i.escalated_at IS NULL AND NOT i.backfilled
               AND (i.status = 'missed'
                    OR (i.status = 'open'
                        AND i.due_at + make_interval(hours => coalesce(p.overdue_grace_hours, $3)) <= $2))
             LIMIT $4 FOR UPDATE OF i SKIP LOCKED)
           AND i.escalated_at IS NULL
         RETURNING i.id, i.enrollment_id, i.patient_id, i.clinician_id, i.instrument_code, i.status::text",
    )
    .bind(tenant_id)
    .bind(now)
    .bind(i32::try_from(overdue_grace_hours_default).unwrap_or(i32::MAX))
    .bind(TRANSITIONS_PER_RUN_MAX)
    .fetch_all(&mut **tx)
    .await?;
    report.n_escalated = escalated.len();
    report.more |= report.n_opened >= TRANSITIONS_PER_RUN_MAX as u64
        || report.n_missed >= TRANSITIONS_PER_RUN_MAX as u64
        || escalated.len() >= TRANSITIONS_PER_RUN_MAX as usize;
    for (instance_id, enrollment_id, patient_id, clinician_id, code, status) in escalated {
        let care_team =
            clinical::care_team::members(tx, PatientId::new_unchecked(patient_id)).await?;
        platform::outbox::emit(
            tx,
            Outbox::Assessments,
            Event {
                event_type: "assessment.overdue",
                event_version: 1,
                aggregate_type: "instance",
                aggregate_id: instance_id,
                payload: json!({
                    "instance_id": instance_id,
                    "enrollment_id": enrollment_id,
                    "patient_id": patient_id,
                    "clinician_id": clinician_id,
                    "care_team": care_team,
                    "instrument": code,
                    "status": status,
                }),
            },
        )
        .await?;
    }
    Ok(())
}
