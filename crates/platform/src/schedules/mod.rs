//! Schedules: cron-like recurring jobs, read on a time zone's wall clock, fired exactly
//! once per slot by any number of schedulers (issue 4, part 3; invariants I5, I6).
//!
//! - A schedule names a [`JobKind`], its arguments (ids only, never PHI), a cron
//!   expression, an IANA time zone and a [`CatchUp`] policy. Its *slots* are the
//!   instants the cron gives on that zone's wall clock ([`cron::Recurrence`], which
//!   also states the daylight-saving rules).
//! - Firing a slot is one transaction of the schedule's tenant: a row in the **slot
//!   ledger** `platform.schedule_slots` (primary key tenant, schedule, slot), the job
//!   ([`crate::jobs::enqueue`]'s insert) and the schedule's advance to its next slot.
//!   The ledger remembers a slot after its job finished, which the jobs' unique index
//!   (pending jobs only) cannot, so a slot fires once, ever.
//! - [`scheduler::Scheduler`] claims due schedules across tenants and fires them;
//!   the functions here are the operator's library (create, update, enable, disable,
//!   delete, list, [`missed_slots`]).
//!
//! Store functions take the tenant's [`TenantTx`] first, like every store in Tenet;
//! only [`list_all`] and [`missed_slots`] read across tenants, on the owner pool, for
//! operators and `tenet check`.
//!
//! This module must never put PHI in a schedule: its arguments are copied into every
//! job it fires and read across tenants.

pub mod cron;
pub mod scheduler;

use std::time::Duration;

use db::TenantTx;
use kernel::{JobId, TenantId};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::jobs::{ATTEMPTS_MAX, JobKind};
use cron::{CronError, Recurrence, from_timestamp, to_timestamp};

/// The most missed slots the `all` policy fires after one downtime (the most recent
/// ones); older missed slots are skipped.
pub const CATCH_UP_ALL_MAX: usize = 100;
/// The most schedules one listing returns.
pub const LIST_LEN_MAX: i64 = 1000;
/// The longest schedule name.
pub const NAME_LEN_MAX: usize = 100;

pub use kernel::ScheduleId;

/// What a scheduler does with slots it reaches late — after downtime, or after every
/// scheduler was stopped — stored as `platform.schedule_catch_up`.
///
/// The default is [`CatchUp::Skip`]: a recurring job is usually "make things current"
/// (send today's reminders, take the nightly snapshot), so after an outage one run
/// catches up, and a burst of stale runs would only repeat it; yet unlike
/// [`CatchUp::None`] an outage never silently costs a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// Fire only the most recent missed slot; skip the older ones.
    #[default]
    Skip,
    /// Fire every missed slot, oldest first — at most the [`CATCH_UP_ALL_MAX`] most
    /// recent; older ones are skipped. For work per period (one billing run per day).
    All,
    /// Fire none of the missed slots: a slot reached more than the scheduler's
    /// `late_after` after its time is skipped, and the schedule continues from its
    /// next slot. For work that is wrong when late (a "your session starts now"
    /// reminder).
    None,
}

impl CatchUp {
    pub fn as_str(self) -> &'static str {
        match self {
            CatchUp::Skip => "skip",
            CatchUp::All => "all",
            CatchUp::None => "none",
        }
    }

    /// The policy named `text`, as the database enum spells it.
    pub fn from_name(text: &str) -> Option<Self> {
        match text {
            "skip" => Some(CatchUp::Skip),
            "all" => Some(CatchUp::All),
            "none" => Some(CatchUp::None),
            _ => None,
        }
    }
}

/// A schedule to create: when, what, and how to catch up.
#[derive(Debug, Clone)]
pub struct ScheduleSpec<K: JobKind> {
    /// Unique within the tenant: `nightly-reassessments`.
    pub name: String,
    /// Five-field cron or a macro (`@daily`); see [`cron::Cron`].
    pub cron: String,
    /// IANA name: `America/New_York`.
    pub time_zone: String,
    /// Ids and codes only: never PHI.
    pub args: K::Args,
    pub queue: String,
    pub priority: i16,
    pub attempts_max: u32,
    pub catch_up: CatchUp,
    pub enabled: bool,
}

impl<K: JobKind> ScheduleSpec<K> {
    pub fn new(
        name: impl Into<String>,
        cron: impl Into<String>,
        time_zone: impl Into<String>,
        args: K::Args,
    ) -> Self {
        Self {
            name: name.into(),
            cron: cron.into(),
            time_zone: time_zone.into(),
            args,
            queue: "default".to_owned(),
            priority: 0,
            attempts_max: K::ATTEMPTS_MAX,
            catch_up: CatchUp::default(),
            enabled: true,
        }
    }

    pub fn catch_up(mut self, catch_up: CatchUp) -> Self {
        self.catch_up = catch_up;
        self
    }

    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = queue.into();
        self
    }

    pub fn priority(mut self, priority: i16) -> Self {
        self.priority = priority;
        self
    }

    pub fn attempts_max(mut self, attempts_max: u32) -> Self {
        self.attempts_max = attempts_max;
        self
    }

    pub fn disabled(mut self) -> Self {
        self.enabled = false;
        self
    }
}

/// A change to an existing schedule's timing or handling; `None` keeps a field. The
/// job's arguments change with [`update_args`], which knows their type.
#[derive(Debug, Clone, Default)]
pub struct ScheduleChange {
    pub cron: Option<String>,
    pub time_zone: Option<String>,
    pub catch_up: Option<CatchUp>,
    pub queue: Option<String>,
    pub priority: Option<i16>,
    pub attempts_max: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error(transparent)]
    Cron(#[from] CronError),
    #[error("a schedule name is 1 to {NAME_LEN_MAX} characters")]
    InvalidName,
    #[error("a queue name is 1 to 100 of a-z, 0-9, '.', '_' and '-'")]
    InvalidQueue,
    #[error("attempts_max must be 1..={ATTEMPTS_MAX}")]
    InvalidAttempts,
    #[error("a job kind is 1 to 100 characters, with an argument version that fits 31 bits")]
    InvalidKind,
    #[error("this tenant already has a schedule with that name")]
    NameTaken,
    #[error("no such schedule")]
    NotFound,
    #[error("job arguments do not serialize: {0}")]
    Arguments(#[source] serde_json::Error),
    #[error(transparent)]
    Unexpected(#[from] sqlx::Error),
}

/// A schedule as its tenant and operators see it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ScheduleRow {
    pub tenant_id: Uuid,
    pub id: Uuid,
    pub name: String,
    pub cron: String,
    pub time_zone: String,
    pub job_kind: String,
    pub args_version: i32,
    pub args: serde_json::Value,
    pub queue: String,
    pub priority: i16,
    pub attempts_max: i32,
    pub catch_up: String,
    pub enabled: bool,
    /// The slot due next (`None` while disabled).
    pub next_slot_at: Option<OffsetDateTime>,
    /// The last slot fired, and when it was fired.
    pub last_slot_at: Option<OffsetDateTime>,
    pub last_fired_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

const COLUMNS: &str = "tenant_id, id, name, cron, time_zone, job_kind, args_version, args, queue, priority, attempts_max, catch_up::text AS catch_up, enabled, next_slot_at, last_slot_at, last_fired_at, created_at, updated_at";

fn validate(
    name: Option<&str>,
    queue: Option<&str>,
    attempts_max: Option<u32>,
) -> Result<(), ScheduleError> {
    if name.is_some_and(|name| name.is_empty() || name.chars().count() > NAME_LEN_MAX) {
        return Err(ScheduleError::InvalidName);
    }
    // Queue names are codes, not text: they become metric labels and name fleet-wide
    // limits, so they are short, lowercase and free of anything a person would write.
    let queue_ok = |queue: &str| {
        (1..=100).contains(&queue.len())
            && queue
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
    };
    if queue.is_some_and(|queue| !queue_ok(queue)) {
        return Err(ScheduleError::InvalidQueue);
    }
    if attempts_max.is_some_and(|n| !(1..=ATTEMPTS_MAX).contains(&n)) {
        return Err(ScheduleError::InvalidAttempts);
    }
    Ok(())
}

/// The first slot after `now`. A recurrence that was accepted fires within its search
/// bound, so `None` cannot happen short of the end of time.
fn first_slot_after(recurrence: &Recurrence, now: OffsetDateTime) -> OffsetDateTime {
    from_timestamp(
        recurrence
            .next_after(to_timestamp(now))
            .expect("BUG: an accepted recurrence has a next slot"),
    )
}

/// A schedule whose job is named by kind and JSON arguments: what the CLI and the
/// admin API create, having checked the arguments with
/// [`crate::jobs::Registry::check_args`]. Code that knows the kind uses
/// [`ScheduleSpec`] and [`create`].
#[derive(Debug, Clone)]
pub struct ErasedScheduleSpec {
    pub name: String,
    pub cron: String,
    pub time_zone: String,
    pub job_kind: String,
    pub args_version: u32,
    /// Ids and codes only: never PHI.
    pub args: serde_json::Value,
    pub queue: String,
    pub priority: i16,
    pub attempts_max: u32,
    pub catch_up: CatchUp,
    pub enabled: bool,
}

impl<K: JobKind> ScheduleSpec<K> {
    /// The spec with its kind named and its arguments as JSON.
    pub fn erase(self) -> Result<ErasedScheduleSpec, ScheduleError> {
        Ok(ErasedScheduleSpec {
            args: serde_json::to_value(&self.args).map_err(ScheduleError::Arguments)?,
            name: self.name,
            cron: self.cron,
            time_zone: self.time_zone,
            job_kind: K::NAME.to_owned(),
            args_version: K::VERSION,
            queue: self.queue,
            priority: self.priority,
            attempts_max: self.attempts_max,
            catch_up: self.catch_up,
            enabled: self.enabled,
        })
    }
}

/// Creates a schedule in `tx`; its first slot is the first after `now`. It exists
/// only if `tx` commits.
pub async fn create<K: JobKind>(
    tx: &mut TenantTx,
    spec: ScheduleSpec<K>,
    now: OffsetDateTime,
) -> Result<ScheduleId, ScheduleError> {
    create_erased(tx, spec.erase()?, now).await
}

/// [`create`] for a kind known by name.
pub async fn create_erased(
    tx: &mut TenantTx,
    spec: ErasedScheduleSpec,
    now: OffsetDateTime,
) -> Result<ScheduleId, ScheduleError> {
    validate(Some(&spec.name), Some(&spec.queue), Some(spec.attempts_max))?;
    if spec.job_kind.is_empty() || spec.job_kind.len() > 100 {
        return Err(ScheduleError::InvalidKind);
    }
    let args_version = i32::try_from(spec.args_version).map_err(|_| ScheduleError::InvalidKind)?;
    let recurrence = Recurrence::new(&spec.cron, &spec.time_zone)?;
    let schedule_id = ScheduleId::generate();
    let next_slot_at = spec.enabled.then(|| first_slot_after(&recurrence, now));
    let inserted = sqlx::query(
        "INSERT INTO platform.schedules
             (tenant_id, id, name, cron, time_zone, job_kind, args_version, args, queue,
              priority, attempts_max, catch_up, enabled, next_slot_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::platform.schedule_catch_up, $13, $14)
         ON CONFLICT (tenant_id, name) DO NOTHING",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(schedule_id.as_uuid())
    .bind(&spec.name)
    .bind(recurrence.cron().as_str())
    .bind(&spec.time_zone)
    .bind(&spec.job_kind)
    .bind(args_version)
    .bind(&spec.args)
    .bind(&spec.queue)
    .bind(spec.priority)
    .bind(i32::try_from(spec.attempts_max).expect("BUG: attempts_max is bounded"))
    .bind(spec.catch_up.as_str())
    .bind(spec.enabled)
    .bind(next_slot_at)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Err(ScheduleError::NameTaken);
    }
    Ok(schedule_id)
}

/// Locks the tenant's schedule for a change, or says it does not exist (another
/// tenant's schedule does not exist, by row-level security).
async fn lock(tx: &mut TenantTx, schedule_id: ScheduleId) -> Result<ScheduleRow, ScheduleError> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM platform.schedules WHERE tenant_id = $1 AND id = $2 FOR UPDATE"
    ))
    .bind(tx.tenant_id().as_uuid())
    .bind(schedule_id.as_uuid())
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(ScheduleError::NotFound)
}

/// Every change below moves the claim token on, so a scheduler firing the schedule
/// under the old definition cannot advance it, and rolls its firing back.
const CHANGE: &str = "UPDATE platform.schedules
    SET cron = $3, time_zone = $4, catch_up = $5::platform.schedule_catch_up, queue = $6,
        priority = $7, attempts_max = $8, enabled = $9, next_slot_at = $10,
        claim_token = claim_token + 1, claimed_until = NULL, updated_at = now()
    WHERE tenant_id = $1 AND id = $2";

#[allow(clippy::too_many_arguments)]
async fn write_change(
    tx: &mut TenantTx,
    row: &ScheduleRow,
    cron: &str,
    time_zone: &str,
    catch_up: &str,
    queue: &str,
    priority: i16,
    attempts_max: i32,
    enabled: bool,
    next_slot_at: Option<OffsetDateTime>,
) -> Result<(), ScheduleError> {
    sqlx::query(CHANGE)
        .bind(row.tenant_id)
        .bind(row.id)
        .bind(cron)
        .bind(time_zone)
        .bind(catch_up)
        .bind(queue)
        .bind(priority)
        .bind(attempts_max)
        .bind(enabled)
        .bind(next_slot_at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Changes a schedule's timing or handling. When the cron or zone changes, the next
/// slot is the new definition's first after `now` (and after the last slot fired):
/// slots of the old definition still pending are dropped, never fired late.
pub async fn update(
    tx: &mut TenantTx,
    schedule_id: ScheduleId,
    change: ScheduleChange,
    now: OffsetDateTime,
) -> Result<ScheduleRow, ScheduleError> {
    validate(None, change.queue.as_deref(), change.attempts_max)?;
    let row = lock(tx, schedule_id).await?;
    let cron = change.cron.unwrap_or_else(|| row.cron.clone());
    let time_zone = change.time_zone.unwrap_or_else(|| row.time_zone.clone());
    let recurrence = Recurrence::new(&cron, &time_zone)?;
    let timing_changed = recurrence.cron().as_str() != row.cron || time_zone != row.time_zone;
    let next_slot_at = if !row.enabled {
        None
    } else if timing_changed {
        let from = row.last_slot_at.map_or(now, |last| last.max(now));
        Some(first_slot_after(&recurrence, from))
    } else {
        row.next_slot_at
    };
    write_change(
        tx,
        &row,
        recurrence.cron().as_str(),
        &time_zone,
        change.catch_up.unwrap_or(row.catch_up()).as_str(),
        change.queue.as_deref().unwrap_or(&row.queue),
        change.priority.unwrap_or(row.priority),
        change.attempts_max.map_or(row.attempts_max, |n| {
            i32::try_from(n).expect("BUG: bounded")
        }),
        row.enabled,
        next_slot_at,
    )
    .await?;
    get(tx, schedule_id).await
}

/// Replaces the arguments of a schedule's job (their kind stays). Jobs already fired
/// keep the arguments they were fired with.
pub async fn update_args<K: JobKind>(
    tx: &mut TenantTx,
    schedule_id: ScheduleId,
    args: K::Args,
) -> Result<(), ScheduleError> {
    let args = serde_json::to_value(&args).map_err(ScheduleError::Arguments)?;
    let n_updated = sqlx::query(
        "UPDATE platform.schedules
         SET job_kind = $3, args_version = $4, args = $5,
             claim_token = claim_token + 1, claimed_until = NULL, updated_at = now()
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(schedule_id.as_uuid())
    .bind(K::NAME)
    .bind(i32::try_from(K::VERSION).expect("BUG: job args version fits i32"))
    .bind(&args)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if n_updated == 0 {
        return Err(ScheduleError::NotFound);
    }
    Ok(())
}

/// Stops a schedule firing. Its ledger stays.
pub async fn disable(tx: &mut TenantTx, schedule_id: ScheduleId) -> Result<(), ScheduleError> {
    let row = lock(tx, schedule_id).await?;
    write_change(
        tx,
        &row,
        &row.cron,
        &row.time_zone,
        &row.catch_up,
        &row.queue,
        row.priority,
        row.attempts_max,
        false,
        None,
    )
    .await
}

/// Starts a disabled schedule again from its first slot after `now`: slots that came
/// while it was disabled were not missed but refused, so no policy fires them.
pub async fn enable(
    tx: &mut TenantTx,
    schedule_id: ScheduleId,
    now: OffsetDateTime,
) -> Result<(), ScheduleError> {
    let row = lock(tx, schedule_id).await?;
    if row.enabled {
        return Ok(());
    }
    let recurrence = Recurrence::new(&row.cron, &row.time_zone)?;
    let from = row.last_slot_at.map_or(now, |last| last.max(now));
    write_change(
        tx,
        &row,
        &row.cron,
        &row.time_zone,
        &row.catch_up,
        &row.queue,
        row.priority,
        row.attempts_max,
        true,
        Some(first_slot_after(&recurrence, from)),
    )
    .await
}

/// Deletes a schedule and its ledger. Jobs it fired stay. Prefer [`disable`] where the
/// record of what fired matters.
pub async fn delete(tx: &mut TenantTx, schedule_id: ScheduleId) -> Result<(), ScheduleError> {
    let n_deleted = sqlx::query("DELETE FROM platform.schedules WHERE tenant_id = $1 AND id = $2")
        .bind(tx.tenant_id().as_uuid())
        .bind(schedule_id.as_uuid())
        .execute(&mut **tx)
        .await?
        .rows_affected();
    if n_deleted == 0 {
        return Err(ScheduleError::NotFound);
    }
    Ok(())
}

pub async fn get(tx: &mut TenantTx, schedule_id: ScheduleId) -> Result<ScheduleRow, ScheduleError> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM platform.schedules WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tx.tenant_id().as_uuid())
    .bind(schedule_id.as_uuid())
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(ScheduleError::NotFound)
}

/// The tenant's schedules by name, with their next and last slots.
pub async fn list(tx: &mut TenantTx) -> Result<Vec<ScheduleRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM platform.schedules WHERE tenant_id = $1 ORDER BY name LIMIT $2"
    ))
    .bind(tx.tenant_id().as_uuid())
    .bind(LIST_LEN_MAX)
    .fetch_all(&mut **tx)
    .await
}

/// Every tenant's schedules, or one tenant's, for operators: takes the owner pool
/// (the `schedule_dispatch` policy) and must never be reachable from a request.
pub async fn list_all(
    owner: &PgPool,
    tenant_id: Option<TenantId>,
) -> Result<Vec<ScheduleRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM platform.schedules
         WHERE ($1::uuid IS NULL OR tenant_id = $1)
         ORDER BY tenant_id, name LIMIT $2"
    ))
    .bind(tenant_id.map(TenantId::into_uuid))
    .bind(LIST_LEN_MAX)
    .fetch_all(owner)
    .await
}

/// An enabled schedule whose due slot has not fired long after its time.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct MissedSlot {
    pub tenant_id: Uuid,
    pub schedule_id: Uuid,
    pub name: String,
    pub next_slot_at: OffsetDateTime,
}

/// For `tenet check`: enabled schedules whose due slot is older than `late_after` at
/// `now` and has not fired — no scheduler is running, or one keeps failing on the
/// schedule. Takes the owner pool.
pub async fn missed_slots(
    owner: &PgPool,
    now: OffsetDateTime,
    late_after: Duration,
) -> Result<Vec<MissedSlot>, sqlx::Error> {
    sqlx::query_as(
        "SELECT tenant_id, id AS schedule_id, name, next_slot_at FROM platform.schedules
         WHERE enabled AND next_slot_at < $1 - make_interval(secs => $2)
         ORDER BY next_slot_at LIMIT $3",
    )
    .bind(now)
    .bind(late_after.as_secs_f64())
    .bind(LIST_LEN_MAX)
    .fetch_all(owner)
    .await
}

/// The slot a job was fired for, if a schedule fired it: a scheduled job's arguments
/// are the schedule's, the same every time, so this is how it learns which period it
/// runs for (the day of a nightly report).
pub async fn slot_of(
    tx: &mut TenantTx,
    job_id: JobId,
) -> Result<Option<OffsetDateTime>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT slot_at FROM platform.schedule_slots WHERE tenant_id = $1 AND job_id = $2",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(job_id.as_uuid())
    .fetch_optional(&mut **tx)
    .await
}

impl ScheduleRow {
    pub fn catch_up(&self) -> CatchUp {
        CatchUp::from_name(&self.catch_up).expect("BUG: the database enum matches CatchUp")
    }
}
