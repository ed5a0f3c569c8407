//! The scheduler: claims due schedules across tenants and fires their slots.
//!
//! [`Scheduler::tick`] is one pass at a given instant (tests pass a clock of their
//! own); [`Scheduler::run`] is the loop, ticking at the database's clock so that
//! schedulers on machines whose clocks disagree still agree on what is due.
//!
//! Any number of schedulers may run at once. Exactly one fires each slot because of
//! three layers, each enough alone for the cases it covers:
//!
//! 1. **Claim**: due schedules are taken on the owner pool with `FOR UPDATE SKIP
//!    LOCKED`, marked claimed until a short lease ends and given a new claim token, in
//!    one statement — a second scheduler skips them.
//! 2. **Fence**: firing runs in a [`TenantTx`] of the schedule's tenant as the service
//!    role and advances the schedule only while the claim token is still its own;
//!    otherwise (its lease ran out and another scheduler claimed the schedule, or an
//!    operator changed it) the whole firing rolls back.
//! 3. **Ledger**: the slot's row in `platform.schedule_slots` is inserted in that same
//!    transaction, keyed by (tenant, schedule, slot); a slot already there is not
//!    fired again, whatever the schedule row says.
//!
//! This module must never fire a slot outside its tenant's transaction.

use std::sync::Arc;
use std::time::Duration;

use db::TenantTx;
use kernel::{JobId, TenantId};
use sqlx::PgPool;
use time::OffsetDateTime;
use tokio::sync::watch;
use uuid::Uuid;

use super::cron::{Recurrence, from_timestamp, to_timestamp};
use super::{CATCH_UP_ALL_MAX, CatchUp, ScheduleId};
use crate::jobs::{ErasedJob, enqueue_erased};

/// The most schedules one claim takes.
pub const CLAIM_BATCH_MAX: i64 = 64;
/// The most claims one tick makes (so one tick fires at most this many batches).
pub const TICK_CLAIMS_MAX: usize = 100;

/// How a scheduler behaves.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Named in logs: `host:pid`.
    pub scheduler_id: String,
    /// How often [`Scheduler::run`] ticks. Slots are whole minutes; a second keeps a
    /// slot's job within about a second of its time.
    pub tick_interval: Duration,
    /// How long a claim holds a schedule: longer than any firing takes.
    pub claim_lease: Duration,
    /// Under [`CatchUp::None`], a slot reached later than this after its time counts
    /// as missed and is skipped. Also a fair threshold for [`super::missed_slots`].
    pub late_after: Duration,
}

impl SchedulerConfig {
    pub fn new(scheduler_id: impl Into<String>) -> Self {
        Self {
            scheduler_id: scheduler_id.into(),
            tick_interval: Duration::from_secs(1),
            claim_lease: Duration::from_secs(30),
            late_after: Duration::from_secs(60),
        }
    }
}

/// What one tick did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Schedules claimed and fired (or found to need nothing).
    pub n_schedules: usize,
    /// Slots fired: a ledger row and a job each.
    pub n_fired: usize,
    /// Slots found in the ledger already: not fired again.
    pub n_already_fired: usize,
    /// Schedules whose claim was lost before their firing committed (rolled back).
    pub n_claims_lost: usize,
    /// Schedules whose firing failed on the database: they stay due.
    pub n_failed: usize,
    /// Schedules whose definition no longer reads (an unknown zone after a tz database
    /// change): left for operators, reported by `missed_slots`.
    pub n_broken: usize,
}

/// The claim: due, enabled schedules nobody holds, oldest slot first.
const CLAIM: &str = r#"
WITH due AS (
    SELECT tenant_id, id FROM platform.schedules
    WHERE enabled AND next_slot_at <= $1
      AND (claimed_until IS NULL OR claimed_until < clock_timestamp())
    ORDER BY next_slot_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE platform.schedules s
SET claimed_until = clock_timestamp() + make_interval(secs => $3),
    claim_token = s.claim_token + 1
FROM due
WHERE s.tenant_id = due.tenant_id AND s.id = due.id
RETURNING s.tenant_id, s.id, s.claim_token, s.cron, s.time_zone, s.job_kind, s.args_version,
          s.args, s.queue, s.priority, s.attempts_max, s.catch_up::text AS catch_up, s.next_slot_at
"#;

/// Advances a fired schedule, only under its claim.
const ADVANCE: &str = r#"
UPDATE platform.schedules
SET next_slot_at = $4,
    last_slot_at = coalesce($5, last_slot_at),
    last_fired_at = CASE WHEN $5::timestamptz IS NULL THEN last_fired_at ELSE now() END,
    claimed_until = NULL, updated_at = now()
WHERE tenant_id = $1 AND id = $2 AND claim_token = $3 AND enabled
"#;

/// A schedule this scheduler holds, with the claim token it was claimed under.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimedSchedule {
    pub tenant_id: Uuid,
    pub id: Uuid,
    pub claim_token: i64,
    pub cron: String,
    pub time_zone: String,
    pub job_kind: String,
    pub args_version: i32,
    pub args: serde_json::Value,
    pub queue: String,
    pub priority: i16,
    pub attempts_max: i32,
    pub catch_up: String,
    /// The slot that was due when it was claimed.
    pub next_slot_at: OffsetDateTime,
}

/// Fires due schedules of every tenant.
pub struct Scheduler {
    owner: PgPool,
    app: PgPool,
    config: SchedulerConfig,
}

/// The slots a policy fires, oldest first, when `due` is the schedule's due slot and
/// the time is `now` (`due <= now`).
pub fn slots_to_fire(
    recurrence: &Recurrence,
    catch_up: CatchUp,
    due: OffsetDateTime,
    now: OffsetDateTime,
    late_after: Duration,
) -> Vec<OffsetDateTime> {
    let due = to_timestamp(due);
    let now_ts = to_timestamp(now);
    let Some(latest) = recurrence
        .latest_at_or_before(now_ts)
        .filter(|latest| *latest >= due)
    else {
        return Vec::new();
    };
    match catch_up {
        CatchUp::Skip => vec![from_timestamp(latest)],
        CatchUp::None => {
            let late = now - from_timestamp(latest);
            if late <= late_after {
                vec![from_timestamp(latest)]
            } else {
                Vec::new()
            }
        }
        CatchUp::All => {
            let mut slots = vec![latest];
            let one_second = jiff::SignedDuration::from_secs(1);
            while slots.len() < CATCH_UP_ALL_MAX {
                let before = slots
                    .last()
                    .expect("BUG: slots start non-empty")
                    .checked_sub(one_second)
                    .ok()
                    .and_then(|t| recurrence.latest_at_or_before(t));
                match before {
                    Some(slot) if slot >= due => slots.push(slot),
                    _ => break,
                }
            }
            slots.into_iter().rev().map(from_timestamp).collect()
        }
    }
}

impl Scheduler {
    /// `owner` claims due schedules; `app` fires them in their tenants' transactions.
    pub fn new(owner: PgPool, app: PgPool, config: SchedulerConfig) -> Self {
        assert!(
            config.claim_lease >= Duration::from_secs(1),
            "BUG: a claim lease shorter than a second expires while firing"
        );
        Self { owner, app, config }
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// Fires every slot due at `now`: claims due schedules in batches until none is
    /// left (at most [`TICK_CLAIMS_MAX`] claims) and fires each.
    pub async fn tick(&self, now: OffsetDateTime) -> Result<TickReport, sqlx::Error> {
        let mut report = TickReport::default();
        for _ in 0..TICK_CLAIMS_MAX {
            let claimed = self.claim(now).await?;
            let n_claimed = claimed.len();
            for schedule in claimed {
                report.n_schedules += 1;
                let schedule_id = schedule.id;
                // One schedule's failure must not hold back the others of the batch;
                // its claim runs out and a later tick fires it.
                if let Err(err) = self.fire(schedule, now, &mut report).await {
                    report.n_failed += 1;
                    tracing::warn!(%schedule_id, error = %err, "firing a schedule failed; it stays due");
                }
            }
            if i64::try_from(n_claimed).expect("BUG: a batch fits i64") < CLAIM_BATCH_MAX {
                break;
            }
        }
        // A quiet tick (nothing due) logs nothing: it happens every second.
        if report.n_schedules > 0 {
            tracing::info!(scheduler_id = %self.config.scheduler_id, ?report, "scheduler tick");
        }
        Ok(report)
    }

    /// Claims up to [`CLAIM_BATCH_MAX`] schedules due at `now` that nobody holds, under
    /// a lease of `claim_lease` and a new claim token each.
    pub async fn claim(&self, now: OffsetDateTime) -> Result<Vec<ClaimedSchedule>, sqlx::Error> {
        sqlx::query_as(CLAIM)
            .bind(now)
            .bind(CLAIM_BATCH_MAX)
            .bind(self.config.claim_lease.as_secs_f64())
            .fetch_all(&self.owner)
            .await
    }

    /// Fires one claimed schedule at `now`: its slots' ledger rows and jobs and its
    /// advance, in one transaction of its tenant, or nothing if its claim was lost.
    pub async fn fire_claimed(
        &self,
        schedule: ClaimedSchedule,
        now: OffsetDateTime,
    ) -> Result<TickReport, sqlx::Error> {
        let mut report = TickReport {
            n_schedules: 1,
            ..TickReport::default()
        };
        self.fire(schedule, now, &mut report).await?;
        Ok(report)
    }

    async fn fire(
        &self,
        schedule: ClaimedSchedule,
        now: OffsetDateTime,
        report: &mut TickReport,
    ) -> Result<(), sqlx::Error> {
        let ClaimedSchedule {
            tenant_id,
            id: schedule_id,
            claim_token,
            cron,
            time_zone,
            job_kind,
            args_version,
            args,
            queue,
            priority,
            attempts_max,
            catch_up,
            next_slot_at: due,
        } = schedule;
        let tenant_id = TenantId::new_unchecked(tenant_id);
        let schedule_id = ScheduleId::new_unchecked(schedule_id);
        let recurrence = match Recurrence::new(&cron, &time_zone) {
            Ok(recurrence) => recurrence,
            Err(err) => {
                // The claim runs out and the schedule stays due: `missed_slots` shows
                // it to operators, who fix or disable it.
                tracing::error!(%schedule_id, %tenant_id, error = %err, "a schedule's definition no longer reads; it cannot fire");
                report.n_broken += 1;
                return Ok(());
            }
        };
        let catch_up =
            super::CatchUp::from_name(&catch_up).expect("BUG: the database enum matches CatchUp");
        let slots = slots_to_fire(&recurrence, catch_up, due, now, self.config.late_after);
        let next_slot_at = recurrence
            .next_after(to_timestamp(now))
            .map(from_timestamp)
            .expect("BUG: an accepted recurrence has a next slot");

        let actor = format!("scheduler:{}", self.config.scheduler_id);
        let mut tx = TenantTx::begin_as(&self.app, tenant_id, &actor, None).await?;
        let mut n_fired = 0;
        let mut n_already_fired = 0;
        for slot in &slots {
            let job_id = JobId::generate();
            let recorded = sqlx::query(
                "INSERT INTO platform.schedule_slots (tenant_id, schedule_id, slot_at, job_id)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (tenant_id, schedule_id, slot_at) DO NOTHING",
            )
            .bind(tenant_id.as_uuid())
            .bind(schedule_id.as_uuid())
            .bind(slot)
            .bind(job_id.as_uuid())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if recorded == 0 {
                n_already_fired += 1;
                continue;
            }
            enqueue_erased(
                &mut tx,
                ErasedJob {
                    job_id,
                    kind: &job_kind,
                    args_version: u32::try_from(args_version).unwrap_or(0),
                    args: &args,
                    queue: &queue,
                    priority,
                    run_at: None,
                    attempts_max: u32::try_from(attempts_max).unwrap_or(1),
                    unique_key: None,
                },
            )
            .await
            .map_err(|err| match err {
                crate::jobs::EnqueueError::Unexpected(err) => err,
                crate::jobs::EnqueueError::Arguments(_) => {
                    unreachable!("BUG: stored arguments are JSON already")
                }
            })?;
            n_fired += 1;
        }
        let advanced = sqlx::query(ADVANCE)
            .bind(tenant_id.as_uuid())
            .bind(schedule_id.as_uuid())
            .bind(claim_token)
            .bind(next_slot_at)
            .bind(slots.last())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if advanced == 1 {
            tx.commit().await?;
            report.n_fired += n_fired;
            report.n_already_fired += n_already_fired;
            if slots.is_empty() {
                tracing::info!(%schedule_id, %tenant_id, "missed slots skipped by the schedule's catch-up policy");
            }
        } else {
            tx.rollback().await?;
            report.n_claims_lost += 1;
            tracing::warn!(%schedule_id, %tenant_id, "a schedule changed or was claimed again while firing; its firing was rolled back");
        }
        Ok(())
    }

    /// Ticks every `tick_interval` at the database's clock until `shutdown` turns
    /// true. A failed tick is logged and the next one tries again: claims of a tick
    /// that died run out after `claim_lease`.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        tracing::info!(scheduler_id = %self.config.scheduler_id, "scheduler started");
        loop {
            if *shutdown.borrow() {
                break;
            }
            let ticked = async {
                let now: OffsetDateTime = sqlx::query_scalar("SELECT now()")
                    .fetch_one(&self.owner)
                    .await?;
                self.tick(now).await
            };
            if let Err(err) = ticked.await {
                tracing::warn!(scheduler_id = %self.config.scheduler_id, error = %err, "scheduler tick failed; trying again");
            }
            tokio::select! {
                () = tokio::time::sleep(self.config.tick_interval) => {}
                _ = shutdown.wait_for(|stop| *stop) => break,
            }
        }
        tracing::info!(scheduler_id = %self.config.scheduler_id, "scheduler stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn slots(
        catch_up: CatchUp,
        cron: &str,
        due: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Vec<String> {
        let recurrence = Recurrence::new(cron, "UTC").unwrap();
        slots_to_fire(&recurrence, catch_up, due, now, Duration::from_secs(60))
            .into_iter()
            .map(|slot| slot.to_string())
            .collect()
    }

    #[test]
    fn on_time_every_policy_fires_the_due_slot() {
        let due = datetime!(2026-05-01 10:00 UTC);
        let now = datetime!(2026-05-01 10:00:01 UTC);
        for catch_up in [CatchUp::Skip, CatchUp::All, CatchUp::None] {
            assert_eq!(slots(catch_up, "0 * * * *", due, now), [due.to_string()]);
        }
    }

    #[test]
    fn after_downtime_skip_fires_the_latest_all_fires_each_and_none_fires_nothing() {
        let due = datetime!(2026-05-01 10:00 UTC);
        let now = datetime!(2026-05-01 13:20 UTC);
        assert_eq!(
            slots(CatchUp::Skip, "0 * * * *", due, now),
            ["2026-05-01 13:00:00.0 +00:00:00"]
        );
        assert_eq!(
            slots(CatchUp::All, "0 * * * *", due, now),
            [
                "2026-05-01 10:00:00.0 +00:00:00",
                "2026-05-01 11:00:00.0 +00:00:00",
                "2026-05-01 12:00:00.0 +00:00:00",
                "2026-05-01 13:00:00.0 +00:00:00"
            ]
        );
        assert!(slots(CatchUp::None, "0 * * * *", due, now).is_empty());
        // `none` still fires a slot that is only a little late.
        let now = datetime!(2026-05-01 13:00:30 UTC);
        assert_eq!(
            slots(CatchUp::None, "0 * * * *", due, now),
            ["2026-05-01 13:00:00.0 +00:00:00"]
        );
    }

    #[test]
    fn all_fires_at_most_its_cap_and_keeps_the_most_recent() {
        let due = datetime!(2026-05-01 00:00 UTC);
        let now = datetime!(2026-05-02 00:00 UTC);
        let fired = slots(CatchUp::All, "* * * * *", due, now);
        assert_eq!(fired.len(), CATCH_UP_ALL_MAX);
        assert_eq!(fired.last().unwrap(), "2026-05-02 0:00:00.0 +00:00:00");
        assert_eq!(fired.first().unwrap(), "2026-05-01 22:21:00.0 +00:00:00");
    }
}
