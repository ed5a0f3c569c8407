//! Known end states (issue "durable work", part 7): what `tenet check` reports about
//! work in flight. Everything the platform runs must be either done or visibly on
//! its way; a finding names what is neither — a job running past its lease that no
//! worker rescued, a job overdue that no worker claims, a schedule slot that did not
//! fire, a saga with no job driving it, an outbox event or a delivery not relayed —
//! or what waits on an operator (dead letters).
//!
//! Findings are grouped (per job kind and queue, not per job), so a stuck fleet reads
//! as a few lines, not thousands. Each query reads across tenants, through the owner
//! role's dispatch policies (the job queries share one read-only snapshot); nothing
//! here changes the database, and no finding carries PHI (job arguments are never
//! read).

use std::time::Duration;

use serde::Serialize;
use sqlx::PgPool;

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Work that is neither done nor on its way: `tenet check` fails.
    Problem,
    /// Work in a known end state that waits on an operator (a dead letter): reported,
    /// but the check passes.
    Notice,
}

/// One thing `tenet check` found about work in flight.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// Stable, kebab-case: `job-lease-expired`.
    pub check: &'static str,
    /// What it is about: `jobs platform.probe (queue default)`.
    pub object: String,
    /// Why, in words an operator can act on.
    pub detail: String,
}

/// When work counts as stuck.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthConfig {
    /// A running job whose lease expired longer ago than this has no live worker
    /// rescuing it (workers look for expired leases every few seconds).
    pub lease_grace: Duration,
    /// A runnable job due longer ago than this is not being claimed; an outbox event
    /// or a delivery pending longer than this is not being relayed.
    pub overdue_after: Duration,
    /// An enabled schedule whose slot is this late has not fired: no scheduler runs.
    pub slot_late_after: Duration,
    /// A saga unchanged this long is reported (a notice: a step may be in a long
    /// backoff); one with no job driving it is always a problem.
    pub saga_idle_after: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            lease_grace: Duration::from_secs(60),
            overdue_after: Duration::from_secs(15 * 60),
            slot_late_after: Duration::from_secs(5 * 60),
            saga_idle_after: Duration::from_secs(60 * 60),
        }
    }
}

/// What each query returns: object, count, oldest age in seconds, a hint.
type Row = (String, i64, f64, String);

const JOB_LEASE_EXPIRED: &str = r#"
SELECT format('jobs %s (queue %s)', j.kind, j.queue), count(*),
       extract(epoch FROM now() - min(l.expires_at))::float8,
       string_agg(DISTINCT coalesce(j.worker_id, '?'), ', ')
FROM platform.job_leases l
CROSS JOIN LATERAL unnest(l.job_ids) AS held(id)
JOIN platform.jobs j ON j.tenant_id = l.tenant_id AND j.id = held.id AND j.lease_id = l.id
WHERE l.expires_at < now() - make_interval(secs => $1)
GROUP BY j.kind, j.queue
ORDER BY j.kind, j.queue
"#;

const JOB_OVERDUE: &str = r#"
SELECT format('jobs %s (queue %s)', kind, queue), count(*),
       extract(epoch FROM now() - min(run_at))::float8, ''
FROM platform.jobs
WHERE runnable AND run_at < now() - make_interval(secs => $1)
GROUP BY kind, queue
ORDER BY kind, queue
"#;

const DEAD_LETTERS: &str = r#"
SELECT format('jobs %s (queue %s)', kind, queue), count(*),
       extract(epoch FROM now() - min(dead_letter_at))::float8, ''
FROM platform.jobs
WHERE dead_letter_at IS NOT NULL
GROUP BY kind, queue
ORDER BY kind, queue
"#;

/// Looks at the work in flight in the database `owner` is connected to. Needs the
/// owner role: only its dispatch policies see every tenant's work.
pub async fn run(owner: &PgPool, config: &HealthConfig) -> Result<Vec<Finding>, sqlx::Error> {
    let mut tx = owner.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let mut findings = Vec::new();
    // Each query takes its threshold in seconds as $1, if it has one.
    let checks: [(&'static str, Severity, &str, Option<Duration>); 3] = [
        (
            "job-lease-expired",
            Severity::Problem,
            JOB_LEASE_EXPIRED,
            Some(config.lease_grace),
        ),
        (
            "job-overdue",
            Severity::Problem,
            JOB_OVERDUE,
            Some(config.overdue_after),
        ),
        ("dead-letters", Severity::Notice, DEAD_LETTERS, None),
    ];
    for (check, severity, query, threshold) in checks {
        let mut query = sqlx::query_as(query);
        if let Some(threshold) = threshold {
            query = query.bind(threshold.as_secs_f64());
        }
        let rows: Vec<Row> = query.fetch_all(&mut *tx).await?;
        findings.extend(rows.into_iter().map(|(object, n, age_secs, hint)| Finding {
            severity,
            check,
            object,
            detail: detail(check, n, age_secs, &hint),
        }));
    }
    tx.rollback().await?;
    findings.extend(relay_findings(owner, config).await?);
    let now: time::OffsetDateTime = sqlx::query_scalar("SELECT now()").fetch_one(owner).await?;
    let missed = crate::schedules::missed_slots(owner, now, config.slot_late_after).await?;
    findings.extend(missed.into_iter().map(|slot| Finding {
        severity: Severity::Problem,
        check: "schedule-missed-slot",
        object: format!("schedule {} {:?} of tenant {}", slot.schedule_id, slot.name, slot.tenant_id),
        detail: format!(
            "its slot due {} ago has not fired: is a scheduler running (`tenet serve` with --workers > 0)?",
            age((now - slot.next_slot_at).as_seconds_f64())
        ),
    }));
    let stuck = crate::sagas::stuck_sagas(owner, now, config.saga_idle_after).await?;
    findings.extend(stuck.into_iter().map(|saga| {
        let (severity, detail) = match saga.reason {
            crate::sagas::StuckReason::NoPendingJob => (
                Severity::Problem,
                format!(
                    "{} with no job driving it (its job {} ended or was cancelled): `tenet jobs retry` that job to resume it",
                    saga.state.as_str(),
                    saga.job_id.map_or_else(|| "-".to_owned(), |id| id.to_string())
                ),
            ),
            crate::sagas::StuckReason::Overdue => (
                Severity::Notice,
                format!(
                    "{} and unchanged for {}: a step may be backing off; see its job {}",
                    saga.state.as_str(),
                    age((now - saga.updated_at).as_seconds_f64()),
                    saga.job_id.map_or_else(|| "-".to_owned(), |id| id.to_string())
                ),
            ),
        };
        Finding {
            severity,
            check: "saga-stuck",
            object: format!("saga {} {} of tenant {}", saga.saga_id, saga.kind, saga.tenant_id),
            detail,
        }
    }));
    findings.sort();
    Ok(findings)
}

/// Outbox events not fanned out and deliveries not delivered for longer than
/// `overdue_after` (the relay is not running, or cannot keep up), and dead deliveries.
async fn relay_findings(
    owner: &PgPool,
    config: &HealthConfig,
) -> Result<Vec<Finding>, sqlx::Error> {
    let lag = crate::relay::admin::relay_lag(owner).await?;
    let overdue = config.overdue_after.as_secs_f64();
    let mut findings = Vec::new();
    for outbox in &lag.outboxes {
        if let Some(age_secs) = outbox.oldest_pending_age_secs.filter(|age| *age > overdue) {
            findings.push(Finding {
                severity: Severity::Problem,
                check: "outbox-stale",
                object: format!("{}.outbox", outbox.context.schema()),
                detail: format!(
                    "{} event(s) not relayed, the oldest for {}: is a relay running (`tenet serve` with --workers > 0)?",
                    outbox.n_pending,
                    age(age_secs)
                ),
            });
        }
    }
    if let Some(age_secs) = lag
        .oldest_delivery_pending_age_secs
        .filter(|age| *age > overdue)
    {
        // A notice: a delivery retried with backoff while its receiver is down is on
        // its way; its attempts say why it waits.
        findings.push(Finding {
            severity: Severity::Notice,
            check: "delivery-overdue",
            object: "platform.relay_deliveries".to_owned(),
            detail: format!(
                "{} delivery(ies) pending, the oldest for {}: a receiver may be failing (see `tenet deadletters` and the attempts), or no relay runs",
                lag.n_deliveries_pending,
                age(age_secs)
            ),
        });
    }
    if lag.n_deliveries_dead > 0 {
        findings.push(Finding {
            severity: Severity::Notice,
            check: "dead-letters",
            object: "event deliveries".to_owned(),
            detail: format!(
                "{} dead delivery(ies): inspect with `tenet deadletters list`, then retry or discard",
                lag.n_deliveries_dead
            ),
        });
    }
    Ok(findings)
}

fn detail(check: &str, n: i64, age_secs: f64, hint: &str) -> String {
    let age = age(age_secs);
    match check {
        "job-lease-expired" => format!(
            "{n} running past their lease (the oldest expired {age} ago, held by {hint}); no live worker rescued them: are workers running?"
        ),
        "job-overdue" => format!(
            "{n} due but not claimed (the oldest due {age} ago): are workers running, with this job kind registered?"
        ),
        "dead-letters" => format!(
            "{n} dead letter(s) (the oldest dead {age}): inspect with `tenet deadletters list`, then retry or discard"
        ),
        _ => format!("{n} ({age})"),
    }
}

/// `45 s`, `12 min`, `3 h`, `2 d`.
fn age(secs: f64) -> String {
    let secs = secs.max(0.0);
    if secs < 120.0 {
        format!("{secs:.0} s")
    } else if secs < 7200.0 {
        format!("{:.0} min", secs / 60.0)
    } else if secs < 172_800.0 {
        format!("{:.0} h", secs / 3600.0)
    } else {
        format!("{:.0} d", secs / 86_400.0)
    }
}

/// The jobs of one queue in one state, for metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueStat {
    pub queue: String,
    /// `scheduled`, `running`, `retrying`, or `dead` (dead letters not discarded).
    pub state: String,
    pub n_jobs: i64,
    /// How long the oldest has waited: since it was due (scheduled, retrying,
    /// running) or since it died (dead). Zero when all are due in the future.
    pub oldest_secs: f64,
}

/// Queue depth and age, per queue and state, across tenants (owner role). Reads the
/// partial indexes of runnable and dead jobs and the leases of running ones, never the
/// finished history.
pub async fn queue_stats(owner: &PgPool) -> Result<Vec<QueueStat>, sqlx::Error> {
    let rows: Vec<(String, String, i64, f64)> = sqlx::query_as(
        "SELECT queue, state::text, count(*),
                coalesce(extract(epoch FROM now() - min(since))::float8, 0)
         FROM (
             SELECT queue, state, run_at AS since FROM platform.jobs WHERE runnable
             UNION ALL
             SELECT j.queue, j.state, j.run_at
             FROM platform.job_leases l
             CROSS JOIN LATERAL unnest(l.job_ids) AS held(id)
             JOIN platform.jobs j
               ON j.tenant_id = l.tenant_id AND j.id = held.id AND j.lease_id = l.id
             UNION ALL
             SELECT queue, state, dead_letter_at FROM platform.jobs
             WHERE dead_letter_at IS NOT NULL
         ) AS pending
         GROUP BY queue, state
         ORDER BY queue, state",
    )
    .fetch_all(owner)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(queue, state, n_jobs, oldest_secs)| QueueStat {
            queue,
            state,
            n_jobs,
            oldest_secs: oldest_secs.max(0.0),
        })
        .collect())
}

/// A report for people: a summary line, then each finding.
pub fn render_text(findings: &[Finding]) -> String {
    use std::fmt::Write as _;

    let n_problems = findings
        .iter()
        .filter(|finding| finding.severity == Severity::Problem)
        .count();
    let mut text = format!(
        "work in flight: {n_problems} problem{}, {} notice{}\n",
        if n_problems == 1 { "" } else { "s" },
        findings.len() - n_problems,
        if findings.len() - n_problems == 1 {
            ""
        } else {
            "s"
        },
    );
    for finding in findings {
        let severity = match finding.severity {
            Severity::Problem => "problem",
            Severity::Notice => "notice",
        };
        // Writing to a String cannot fail.
        let _ = writeln!(
            text,
            "  {severity} {}: {}: {}",
            finding.check, finding.object, finding.detail
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_in_the_unit_an_operator_expects() {
        assert_eq!(age(-1.0), "0 s");
        assert_eq!(age(45.2), "45 s");
        assert_eq!(age(600.0), "10 min");
        assert_eq!(age(3.0 * 3600.0), "3 h");
        assert_eq!(age(5.0 * 86_400.0), "5 d");
    }
}
