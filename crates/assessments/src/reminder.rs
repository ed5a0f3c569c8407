//! Reminders: when an assessment instance opens, and before it closes, its respondent
//! is told — by email (SMTP) and by webhook (where SMS providers hang) — at most once
//! per slot, kind and channel.
//!
//! **How a reminder travels.** The sweep ([`ReminderSweep`], a job on a durable
//! schedule of each tenant, every minute) runs in one transaction of the tenant:
//!
//! 1. *Create*: for each open instance (`status = 'open'`, never a backfilled one)
//!    whose opening or closing trigger has come, one `assessments.reminders` row per
//!    channel, keyed `(tenant, instance, kind, channel)` (`ON CONFLICT DO NOTHING`, so
//!    any number of sweepers make it once). Its `due_at` is the trigger (or now, if
//!    later) moved out of the quiet hours on the patient's wall clock
//!    ([`QuietHours::defer`]); a channel the patient opted out of is written
//!    `skipped` at once.
//! 2. *Release*: reminders `pending` and due (`FOR UPDATE SKIP LOCKED`) become
//!    `queued` with an `assessment.reminder_due` event in `assessments.outbox`, in the
//!    same transaction — ids and codes only. A webhook reminder is `sent` there and
//!    then: the relay's webhook deliveries carry it to every subscription of the
//!    tenant (at least once, de-duplicated on `Tenet-Event-Id` or `reminder_id`), or
//!    it is `skipped` when the tenant has no subscription wanting it.
//!
//! The relay hands the event to [`ReminderMailer`] (an [`EventHandler`]), which sends
//! email reminders. **At most once across crashes:** the mailer first claims the
//! reminder (`queued → sending`) in a transaction it commits *before* the SMTP
//! conversation — together with the audited read of the recipient's address and the
//! answer link. Only a `queued` reminder can be claimed, so a redelivered event, a
//! second relay, or a relay that died mid-conversation finds it `sending` and does
//! nothing. Afterwards: accepted → `sent`; refused before the server took the message
//! (connection, `MAIL`, `RCPT`, `DATA`, or a 4xx verdict) → back to `queued` and
//! retried by the relay's backoff, up to [`SEND_ATTEMPTS_MAX`], then `failed`; refused
//! for good (5xx) → `failed`; the connection lost after the message was handed over →
//! `unknown`. A reminder left `sending` (a crash between the send and its mark) or
//! `unknown` is never retried by itself: [`findings`] shows it to operators (`tenet
//! check`), who can look at the mail server's log for its `Message-ID`
//! (`<reminder id>@tenet`). Sending twice is the worse failure for a message about
//! health care; missing one is visible.
//!
//! **What a reminder says.** A fixed template ([`render`]) with the answer link and
//! nothing else: no instrument, no clinic, no date; the respondent's first name only
//! when the tenant's settings allow it (`personalisation = first_name`).
//!
//! The link comes from a [`LinkIssuer`], called in the claim's transaction, so the
//! context's one-time link tokens (`assessments.link_tokens`) are the only way in.
//!
//! This module must never store or log an address, a name or a link: they exist only
//! in memory between the vault read and the SMTP conversation.

pub mod smtp;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use db::TenantTx;
use identity::keyring::Keyring;
use identity::related_person;
use identity::vault::{self, Access};
use jiff::civil::Time;
use jiff::tz::TimeZone;
use kernel::{PatientId, PersonId, TenantId};
use platform::health::{Finding, Severity};
use platform::jobs::{JobContext, JobError, JobKind};
use platform::outbox::{self, Event, Outbox};
use platform::relay::{Envelope as RelayEnvelope, EventHandler, HandlerError};
use platform::schedules::{self, CatchUp, ScheduleError, ScheduleSpec};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

pub use smtp::{SendOutcome, SmtpConfig, SmtpConfigError, SmtpTls};

/// The event a due reminder writes to `assessments.outbox`.
pub const REMINDER_DUE: &str = "assessment.reminder_due";
/// The most instances one sweep creates reminders for, and the most reminders it
/// releases; the next sweep (a minute later) takes the rest.
pub const SWEEP_BATCH_MAX: i64 = 500;
/// Attempts of one email reminder refused before the server took it; then `failed`.
pub const SEND_ATTEMPTS_MAX: i32 = 5;
/// A reminder `sending` for longer than this is not being sent any more: its outcome
/// is unknown and an operator must look.
pub const SENDING_STALE_AFTER: Duration = Duration::from_secs(10 * 60);
/// How long a reminder may wait — `pending` past its due time (no sweep ran), or
/// `queued` (no relay or mailer took it) — before `tenet check` reports it stalled.
pub const STALLED_AFTER: Duration = Duration::from_secs(60 * 60);
/// The name of each tenant's sweep schedule.
pub const SWEEP_SCHEDULE: &str = "assessments.reminders";
/// How long an answer link issued for a reminder lasts at least.
pub const LINK_LIFETIME_MIN: Duration = Duration::from_secs(24 * 3600);

/// When a reminder goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// When the instance opens.
    Opening,
    /// A lead time before it closes.
    Closing,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Opening => "opening",
            Kind::Closing => "closing",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        match name {
            "opening" => Some(Kind::Opening),
            "closing" => Some(Kind::Closing),
            _ => None,
        }
    }
}

/// How a reminder travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// An email through the configured SMTP server.
    Email,
    /// The `assessment.reminder_due` event to the tenant's webhook subscriptions (an
    /// SMS bridge, say).
    Webhook,
}

impl Channel {
    pub const ALL: [Channel; 2] = [Channel::Email, Channel::Webhook];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Webhook => "webhook",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|channel| channel.as_str() == name)
    }
}

fn channel_names(channels: &[Channel]) -> Vec<String> {
    channels
        .iter()
        .map(|channel| channel.as_str().to_owned())
        .collect()
}

fn channels_from_names(names: &[String]) -> Vec<Channel> {
    names
        .iter()
        .filter_map(|name| Channel::from_name(name))
        .collect()
}

/// What a reminder may say about its recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Personalisation {
    /// Nothing: "Hello," (the default).
    #[default]
    None,
    /// The recipient's first given name: "Hello Ana,".
    FirstName,
}

impl Personalisation {
    fn as_str(self) -> &'static str {
        match self {
            Personalisation::None => "none",
            Personalisation::FirstName => "first_name",
        }
    }
}

/// A daily quiet period on a wall clock, `start` to `end`, wrapping past midnight when
/// `end` comes before `start` (21:00–08:00). Equal ends mean no quiet hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    pub start: Time,
    pub end: Time,
}

impl QuietHours {
    /// The tenant default: 21:00 to 08:00.
    pub const DEFAULT: QuietHours = QuietHours {
        start: jiff::civil::time(21, 0, 0, 0),
        end: jiff::civil::time(8, 0, 0, 0),
    };

    /// Whether `local` is inside the quiet period.
    pub fn contains(&self, local: Time) -> bool {
        if self.start == self.end {
            false
        } else if self.start < self.end {
            self.start <= local && local < self.end
        } else {
            local >= self.start || local < self.end
        }
    }

    /// The first instant at or after `at` outside the quiet hours on `time_zone`'s
    /// wall clock: `at` itself, or the end of the quiet period it falls in (a wall
    /// time in a daylight-saving gap resolves to the gap's end).
    pub fn defer(&self, at: jiff::Timestamp, time_zone: &TimeZone) -> jiff::Timestamp {
        let local = at.to_zoned(time_zone.clone());
        if !self.contains(local.time()) {
            return at;
        }
        let mut date = local.date();
        if self.start > self.end && local.time() >= self.start {
            date = date
                .tomorrow()
                .expect("BUG: reminders are not due at the end of time");
        }
        date.to_datetime(self.end)
            .to_zoned(time_zone.clone())
            .map(|zoned| zoned.timestamp())
            .expect("BUG: a civil date-time in range resolves in any zone")
            .max(at)
    }
}

/// A tenant's reminder settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The channels reminders go by (those the deployment can send).
    pub channels: Vec<Channel>,
    pub quiet_hours: QuietHours,
    /// How long before an instance closes the closing reminder is due.
    pub closing_lead: Duration,
    pub personalisation: Personalisation,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            channels: Channel::ALL.to_vec(),
            quiet_hours: QuietHours::DEFAULT,
            closing_lead: Duration::from_secs(24 * 3600),
            personalisation: Personalisation::None,
        }
    }
}

/// One patient's choices.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Preferences {
    /// Channels never used for reminders about this patient.
    pub opted_out: Vec<Channel>,
    /// Overrides the tenant's quiet hours.
    pub quiet_hours: Option<QuietHours>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReminderError {
    #[error("closing_lead must be whole minutes, at most 28 days")]
    InvalidLead,
    #[error("setting up the reminder schedule: {0}")]
    Schedule(#[from] ScheduleError),
    #[error("writing the audit event")]
    Audit(#[from] audit::AuditError),
    #[error(transparent)]
    Unexpected(#[from] sqlx::Error),
}

fn to_sql_time(time: Time) -> time::Time {
    time::Time::from_hms(
        u8::try_from(time.hour()).expect("BUG: hours fit u8"),
        u8::try_from(time.minute()).expect("BUG: minutes fit u8"),
        u8::try_from(time.second()).expect("BUG: seconds fit u8"),
    )
    .expect("BUG: a civil time is a valid time")
}

fn from_sql_time(time: time::Time) -> Time {
    jiff::civil::time(
        i8::try_from(time.hour()).expect("BUG: hours fit i8"),
        i8::try_from(time.minute()).expect("BUG: minutes fit i8"),
        i8::try_from(time.second()).expect("BUG: seconds fit i8"),
        0,
    )
}

fn to_jiff(at: OffsetDateTime) -> jiff::Timestamp {
    jiff::Timestamp::from_nanosecond(at.unix_timestamp_nanos())
        .expect("BUG: database timestamps are in jiff's range")
}

fn from_jiff(at: jiff::Timestamp) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(at.as_nanosecond())
        .expect("BUG: jiff timestamps are in time's range")
}

/// Writes the tenant's reminder settings and makes sure its sweep schedule exists
/// (every minute, catching up only the latest missed slot).
pub async fn configure(
    tx: &mut TenantTx,
    settings: &Settings,
    now: OffsetDateTime,
) -> Result<(), ReminderError> {
    let lead_minutes = settings.closing_lead.as_secs() / 60;
    if !settings.closing_lead.as_secs().is_multiple_of(60) || lead_minutes > 40_320 {
        return Err(ReminderError::InvalidLead);
    }
    sqlx::query(
        "INSERT INTO assessments.reminder_settings
             (tenant_id, channels, quiet_start, quiet_end, closing_lead_minutes, personalisation)
         VALUES ($1, $2::assessments.reminder_channel[], $3, $4, $5, $6::assessments.reminder_personalisation)
         ON CONFLICT (tenant_id) DO UPDATE SET channels = EXCLUDED.channels,
             quiet_start = EXCLUDED.quiet_start, quiet_end = EXCLUDED.quiet_end,
             closing_lead_minutes = EXCLUDED.closing_lead_minutes,
             personalisation = EXCLUDED.personalisation, updated_at = now()",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(channel_names(&settings.channels))
    .bind(to_sql_time(settings.quiet_hours.start))
    .bind(to_sql_time(settings.quiet_hours.end))
    .bind(i32::try_from(lead_minutes).expect("BUG: bounded above"))
    .bind(settings.personalisation.as_str())
    .execute(&mut **tx)
    .await?;
    ensure_sweep_schedule(tx, now).await
}

/// Creates the tenant's sweep schedule unless it exists.
pub async fn ensure_sweep_schedule(
    tx: &mut TenantTx,
    now: OffsetDateTime,
) -> Result<(), ReminderError> {
    let spec = ScheduleSpec::<ReminderSweep>::new(SWEEP_SCHEDULE, "* * * * *", "UTC", SweepArgs {})
        .catch_up(CatchUp::Skip);
    match schedules::create(tx, spec, now).await {
        Ok(_) | Err(ScheduleError::NameTaken) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// The tenant's settings, or the defaults.
pub async fn settings(tx: &mut TenantTx) -> Result<Settings, sqlx::Error> {
    let row: Option<(Vec<String>, time::Time, time::Time, i32, String)> = sqlx::query_as(
        "SELECT channels::text[], quiet_start, quiet_end, closing_lead_minutes, personalisation::text
         FROM assessments.reminder_settings WHERE tenant_id = $1",
    )
    .bind(tx.tenant_id().as_uuid())
    .fetch_optional(&mut **tx)
    .await?;
    Ok(match row {
        None => Settings::default(),
        Some((channels, start, end, lead_minutes, personalisation)) => Settings {
            channels: channels_from_names(&channels),
            quiet_hours: QuietHours {
                start: from_sql_time(start),
                end: from_sql_time(end),
            },
            closing_lead: Duration::from_secs(u64::try_from(lead_minutes).unwrap_or_default() * 60),
            personalisation: if personalisation == "first_name" {
                Personalisation::FirstName
            } else {
                Personalisation::None
            },
        },
    })
}

/// Sets a patient's opt-outs and quiet hours; records `reminder_preferences.update`.
pub async fn set_preferences(
    tx: &mut TenantTx,
    patient_id: PatientId,
    preferences: &Preferences,
) -> Result<(), ReminderError> {
    sqlx::query(
        "INSERT INTO assessments.reminder_preferences (tenant_id, patient_id, opted_out, quiet_start, quiet_end)
         VALUES ($1, $2, $3::assessments.reminder_channel[], $4, $5)
         ON CONFLICT (tenant_id, patient_id) DO UPDATE SET opted_out = EXCLUDED.opted_out,
             quiet_start = EXCLUDED.quiet_start, quiet_end = EXCLUDED.quiet_end, updated_at = now()",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(patient_id.as_uuid())
    .bind(channel_names(&preferences.opted_out))
    .bind(preferences.quiet_hours.map(|quiet| to_sql_time(quiet.start)))
    .bind(preferences.quiet_hours.map(|quiet| to_sql_time(quiet.end)))
    .execute(&mut **tx)
    .await?;
    audit::append(
        tx,
        audit::AuditEntry::patient("reminder_preferences.update", patient_id),
    )
    .await?;
    Ok(())
}

/// A patient's choices (none when never set).
pub async fn preferences(
    tx: &mut TenantTx,
    patient_id: PatientId,
) -> Result<Preferences, sqlx::Error> {
    let row: Option<(Vec<String>, Option<time::Time>, Option<time::Time>)> = sqlx::query_as(
        "SELECT opted_out::text[], quiet_start, quiet_end FROM assessments.reminder_preferences
         WHERE tenant_id = $1 AND patient_id = $2",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(patient_id.as_uuid())
    .fetch_optional(&mut **tx)
    .await?;
    Ok(match row {
        None => Preferences::default(),
        Some((opted_out, start, end)) => Preferences {
            opted_out: channels_from_names(&opted_out),
            quiet_hours: start.zip(end).map(|(start, end)| QuietHours {
                start: from_sql_time(start),
                end: from_sql_time(end),
            }),
        },
    })
}

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Reminder rows written (any state).
    pub n_created: u64,
    /// Reminders whose event was written to the outbox.
    pub n_released: u64,
    /// Reminders skipped (opted out, no subscription, instance closed).
    pub n_skipped: u64,
}

/// The channels this deployment can send (email only with an SMTP server).
#[derive(Debug, Clone)]
pub struct Sweep {
    pub available: Vec<Channel>,
}

type Candidate = (
    Uuid,
    Uuid,
    OffsetDateTime,
    OffsetDateTime,
    String,
    Vec<String>,
    Option<time::Time>,
    Option<time::Time>,
    Vec<String>,
);

impl Sweep {
    /// Creates the reminders whose triggers have come by `now` and releases those due,
    /// in `tx`. Idempotent: a second sweep, concurrent or later, adds nothing.
    pub async fn run(
        &self,
        tx: &mut TenantTx,
        now: OffsetDateTime,
    ) -> Result<SweepReport, sqlx::Error> {
        let settings = settings(tx).await?;
        let channels: Vec<Channel> = settings
            .channels
            .iter()
            .copied()
            .filter(|channel| self.available.contains(channel))
            .collect();
        let mut report = SweepReport::default();
        if !channels.is_empty() {
            report.n_created = create(tx, &settings, &channels, now).await?;
        }
        let (n_released, n_skipped) = release(tx, now).await?;
        report.n_released = n_released;
        report.n_skipped += n_skipped;
        Ok(report)
    }
}

/// Step 1: a row per (instance, kind, channel) whose trigger has come.
async fn create(
    tx: &mut TenantTx,
    settings: &Settings,
    channels: &[Channel],
    now: OffsetDateTime,
) -> Result<u64, sqlx::Error> {
    let lead_secs = settings.closing_lead.as_secs_f64();
    let names = channel_names(channels);
    // Open, never backfilled, answered by the patient or a guardian, with at least
    // one of today's reminders still missing. The opening reminder is due from
    // `opens_at` until the closing one's trigger; the closing one from then on.
    let candidates: Vec<Candidate> = sqlx::query_as(
        "SELECT i.id, i.patient_id, i.opens_at, i.closes_at, e.time_zone,
                coalesce(p.opted_out::text[], '{}'), p.quiet_start, p.quiet_end,
                ARRAY(SELECT r.kind::text || '/' || r.channel::text FROM assessments.reminders r
                      WHERE r.tenant_id = i.tenant_id AND r.instance_id = i.id)
         FROM assessments.instances i
         JOIN assessments.enrollments e ON e.tenant_id = i.tenant_id AND e.id = i.enrollment_id
         LEFT JOIN assessments.reminder_preferences p
             ON p.tenant_id = i.tenant_id AND p.patient_id = i.patient_id
         WHERE i.tenant_id = $1 AND i.status = 'open' AND NOT i.backfilled
           AND i.respondent IN ('patient', 'guardian')
           AND i.opens_at <= $2 AND i.closes_at > $2
           AND (SELECT count(*) FROM assessments.reminders r
                WHERE r.tenant_id = i.tenant_id AND r.instance_id = i.id
                  AND r.kind = CASE WHEN $2 < i.closes_at - make_interval(secs => $3)
                                    THEN 'opening' ELSE 'closing' END::assessments.reminder_kind
                  AND r.channel::text = ANY ($4)) < cardinality($4::text[])
         ORDER BY i.opens_at, i.id
         LIMIT $5",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(now)
    .bind(lead_secs)
    .bind(&names)
    .bind(SWEEP_BATCH_MAX)
    .fetch_all(&mut **tx)
    .await?;

    let mut rows = ReminderColumns::default();
    for (instance_id, patient_id, opens_at, closes_at, zone, opted_out, start, end, existing) in
        candidates
    {
        let closing_trigger = closes_at - settings.closing_lead;
        let (kind, trigger) = if now < closing_trigger {
            (Kind::Opening, opens_at)
        } else {
            (Kind::Closing, closing_trigger.max(opens_at))
        };
        let time_zone = TimeZone::get(&zone).unwrap_or_else(|_| {
            tracing::warn!(%instance_id, "an enrolment's time zone is unknown; quiet hours read in UTC");
            TimeZone::UTC
        });
        let quiet_hours = start
            .zip(end)
            .map(|(start, end)| QuietHours {
                start: from_sql_time(start),
                end: from_sql_time(end),
            })
            .unwrap_or(settings.quiet_hours);
        let due_at = from_jiff(quiet_hours.defer(to_jiff(trigger.max(now)), &time_zone));
        let opted_out = channels_from_names(&opted_out);
        for channel in channels {
            if existing.contains(&format!("{}/{}", kind.as_str(), channel.as_str())) {
                continue;
            }
            rows.push(
                instance_id,
                patient_id,
                kind,
                *channel,
                due_at,
                opted_out.contains(channel).then_some("opted_out"),
            );
        }
    }
    if rows.id.is_empty() {
        return Ok(0);
    }
    let n = sqlx::query(
        "INSERT INTO assessments.reminders
             (tenant_id, id, instance_id, patient_id, kind, channel, state, due_at, skip_reason, finished_at)
         SELECT $1, u.id, u.instance_id, u.patient_id, u.kind::assessments.reminder_kind,
                u.channel::assessments.reminder_channel,
                CASE WHEN u.skip_reason IS NULL THEN 'pending' ELSE 'skipped' END::assessments.reminder_state,
                u.due_at, u.skip_reason, CASE WHEN u.skip_reason IS NOT NULL THEN now() END
         FROM unnest($2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::text[], $7::timestamptz[], $8::text[])
             AS u(id, instance_id, patient_id, kind, channel, due_at, skip_reason)
         ON CONFLICT ON CONSTRAINT reminders_once DO NOTHING",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(&rows.id)
    .bind(&rows.instance_id)
    .bind(&rows.patient_id)
    .bind(&rows.kind)
    .bind(&rows.channel)
    .bind(&rows.due_at)
    .bind(&rows.skip_reason)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(n)
}

#[derive(Default)]
struct ReminderColumns {
    id: Vec<Uuid>,
    instance_id: Vec<Uuid>,
    patient_id: Vec<Uuid>,
    kind: Vec<String>,
    channel: Vec<String>,
    due_at: Vec<OffsetDateTime>,
    skip_reason: Vec<Option<String>>,
}

impl ReminderColumns {
    fn push(
        &mut self,
        instance_id: Uuid,
        patient_id: Uuid,
        kind: Kind,
        channel: Channel,
        due_at: OffsetDateTime,
        skip_reason: Option<&str>,
    ) {
        self.id.push(Uuid::now_v7());
        self.instance_id.push(instance_id);
        self.patient_id.push(patient_id);
        self.kind.push(kind.as_str().to_owned());
        self.channel.push(channel.as_str().to_owned());
        self.due_at.push(due_at);
        self.skip_reason.push(skip_reason.map(str::to_owned));
    }
}

type Releasable = (
    Uuid,
    Uuid,
    Uuid,
    String,
    String,
    String,
    Option<Uuid>,
    bool,
    Vec<String>,
);

/// Step 2: due `pending` reminders become `queued` (email) or `sent` (webhook) with
/// their event, or `skipped`.
async fn release(tx: &mut TenantTx, now: OffsetDateTime) -> Result<(u64, u64), sqlx::Error> {
    let due: Vec<Releasable> = sqlx::query_as(
        "SELECT r.id, r.instance_id, r.patient_id, r.kind::text, r.channel::text, i.respondent::text,
                i.respondent_person_id, (i.status = 'open' AND i.closes_at > $2),
                coalesce((SELECT p.opted_out::text[] FROM assessments.reminder_preferences p
                          WHERE p.tenant_id = r.tenant_id AND p.patient_id = r.patient_id), '{}')
         FROM assessments.reminders r
         JOIN assessments.instances i ON i.tenant_id = r.tenant_id AND i.id = r.instance_id
         WHERE r.tenant_id = $1 AND r.state = 'pending' AND r.due_at <= $2
         ORDER BY r.due_at, r.id
         LIMIT $3
         FOR UPDATE OF r SKIP LOCKED",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(now)
    .bind(SWEEP_BATCH_MAX)
    .fetch_all(&mut **tx)
    .await?;
    if due.is_empty() {
        return Ok((0, 0));
    }
    let webhook_wanted: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM platform.webhook_subscriptions
                        WHERE tenant_id = $1 AND state = 'active'
                          AND (cardinality(event_types) = 0 OR $2 = ANY (event_types)))",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(REMINDER_DUE)
    .fetch_one(&mut **tx)
    .await?;
    let (mut n_released, mut n_skipped) = (0, 0);
    for (id, instance_id, patient_id, kind, channel, respondent, person_id, open, opted_out) in due
    {
        let skip_reason = if !open {
            Some("instance_closed")
        } else if opted_out.contains(&channel) {
            Some("opted_out")
        } else if channel == "webhook" && !webhook_wanted {
            Some("no_webhook_subscription")
        } else {
            None
        };
        if let Some(reason) = skip_reason {
            sqlx::query(
                "UPDATE assessments.reminders SET state = 'skipped', skip_reason = $3,
                     finished_at = now(), updated_at = now()
                 WHERE tenant_id = $1 AND id = $2",
            )
            .bind(tx.tenant_id().as_uuid())
            .bind(id)
            .bind(reason)
            .execute(&mut **tx)
            .await?;
            n_skipped += 1;
            continue;
        }
        outbox::emit(
            tx,
            Outbox::Assessments,
            Event {
                event_type: REMINDER_DUE,
                event_version: 1,
                aggregate_type: "assessment_instance",
                aggregate_id: instance_id,
                payload: serde_json::json!({
                    "reminder_id": id,
                    "instance_id": instance_id,
                    "patient_id": patient_id,
                    "kind": kind,
                    "channel": channel,
                    "respondent": respondent,
                    "respondent_person_id": person_id,
                }),
            },
        )
        .await?;
        // A webhook reminder is handed over once its event is in the outbox: the relay
        // delivers it to every subscription, durably.
        sqlx::query(
            "UPDATE assessments.reminders
             SET state = CASE WHEN channel = 'webhook' THEN 'sent' ELSE 'queued' END::assessments.reminder_state,
                 queued_at = now(), finished_at = CASE WHEN channel = 'webhook' THEN now() END,
                 updated_at = now()
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tx.tenant_id().as_uuid())
        .bind(id)
        .execute(&mut **tx)
        .await?;
        n_released += 1;
    }
    Ok((n_released, n_skipped))
}

/// The sweep's job arguments: none (the tenant is the job's).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepArgs {}

/// The job each tenant's sweep schedule fires: [`Sweep::run`] at the database's now.
#[derive(Debug, Clone)]
pub struct ReminderSweep {
    pub sweep: Sweep,
}

impl JobKind for ReminderSweep {
    const NAME: &'static str = "assessments.reminder_sweep";
    const VERSION: u32 = 1;
    const ATTEMPTS_MAX: u32 = 3;
    const TIMEOUT: Duration = Duration::from_secs(120);
    type Args = SweepArgs;

    async fn run(
        &self,
        _ctx: &JobContext,
        tx: &mut TenantTx,
        _args: SweepArgs,
    ) -> Result<(), JobError> {
        let now: OffsetDateTime = sqlx::query_scalar("SELECT now()")
            .fetch_one(&mut **tx)
            .await?;
        let report = self.sweep.run(tx, now).await?;
        if report != SweepReport::default() {
            tracing::info!(
                n_created = report.n_created,
                n_released = report.n_released,
                n_skipped = report.n_skipped,
                "assessment reminders swept"
            );
        }
        Ok(())
    }
}

/// A link that lets the respondent answer one instance: a bearer credential, so its
/// `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct AnswerLink(pub String);

impl fmt::Debug for AnswerLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AnswerLink([redacted])")
    }
}

/// Issues the one-time link a reminder carries, in the transaction that claims the
/// reminder (the link exists only if the claim commits). The context's link tokens
/// (`assessments.link_tokens`) implement it; it is a trait so reminders do not depend
/// on how tokens are made.
pub trait LinkIssuer: Send + Sync + 'static {
    fn issue(
        &self,
        tx: &mut TenantTx,
        instance_id: Uuid,
        expires_at: OffsetDateTime,
    ) -> impl Future<Output = Result<AnswerLink, HandlerError>> + Send;
}

/// One-time link tokens made by [`crate::link::mint`] (`at_<tenant>.<id>.<secret>`,
/// only the secret's SHA-256 stored; [`crate::link`] redeems them): the link is
/// `base_url`, then `#` (unless the base already ends its path with one), then the
/// token: the token travels in the URL's fragment, which browsers never send to a
/// server, so it stays out of web-server, proxy and CDN access logs (I2).
#[derive(Debug, Clone)]
pub struct TokenLinks {
    /// Where respondents answer: `https://answer.clinic.example/a/` (the token
    /// follows in the fragment: `…/a/#at_…`).
    pub base_url: String,
}

impl LinkIssuer for TokenLinks {
    async fn issue(
        &self,
        tx: &mut TenantTx,
        instance_id: Uuid,
        expires_at: OffsetDateTime,
    ) -> Result<AnswerLink, HandlerError> {
        let link = crate::link::mint(tx, instance_id, expires_at).await?;
        let separator = if self.base_url.ends_with('#') {
            ""
        } else {
            "#"
        };
        Ok(AnswerLink(format!(
            "{}{separator}{}",
            self.base_url, link.token
        )))
    }
}

/// A rendered reminder: subject and plain-text body.
#[derive(Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: &'static str,
    pub body: String,
}

impl fmt::Debug for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rendered")
            .field("subject", &self.subject)
            .field("body", &"[redacted]")
            .finish()
    }
}

/// The reminder's text: the link, and the first name only when `first_name` is given
/// (the tenant allows it). Nothing else about the person, the instrument or the clinic.
pub fn render(kind: Kind, first_name: Option<&str>, link: &AnswerLink) -> Rendered {
    let greeting = match first_name
        .map(|name| name.chars().filter(|c| !c.is_control()).collect::<String>())
        .filter(|name| !name.trim().is_empty())
    {
        Some(name) => format!("Hello {},", name.trim()),
        None => "Hello,".to_owned(),
    };
    let (subject, line) = match kind {
        Kind::Opening => (
            "You have a questionnaire to complete",
            "You have a questionnaire to complete:",
        ),
        Kind::Closing => (
            "Reminder: your questionnaire closes soon",
            "Your questionnaire closes soon. Please complete it here:",
        ),
    };
    Rendered {
        subject,
        body: format!(
            "{greeting}\r\n\r\n{line}\r\n{}\r\n\r\nThis link is personal: please do not forward this message.\r\n",
            link.0
        ),
    }
}

/// Sends email reminders as the relay delivers their `assessment.reminder_due`
/// events (see the module's documentation for the states and why a crash never sends
/// twice).
pub struct ReminderMailer<L> {
    /// The service role's pool: the claim commits on its own before the conversation.
    pub app: PgPool,
    pub keyring: Keyring,
    pub smtp: Arc<SmtpConfig>,
    pub links: L,
}

/// A claimed reminder, ready to send. Holds PHI: never printed.
struct Claimed {
    envelope: lettre::address::Envelope,
    message: Vec<u8>,
}

enum Claim {
    /// Nothing to send (already claimed, sent, skipped, or not an email reminder).
    Nothing,
    Send(Box<Claimed>),
}

impl<L: LinkIssuer> ReminderMailer<L> {
    fn actor() -> String {
        format!("relay:{}", <Self as EventHandler>::CONSUMER)
    }

    /// `queued → sending`, the recipient read (audited) and the link issued, committed
    /// before a byte goes to the SMTP server.
    async fn claim(&self, tenant_id: TenantId, reminder_id: Uuid) -> Result<Claim, HandlerError> {
        let mut tx = TenantTx::begin_as(&self.app, tenant_id, &Self::actor(), None).await?;
        type Row = (
            String,
            Uuid,
            Uuid,
            String,
            Option<Uuid>,
            bool,
            OffsetDateTime,
            Vec<String>,
        );
        let row: Option<Row> = sqlx::query_as(
            "UPDATE assessments.reminders r
             SET state = 'sending', attempts = r.attempts + 1, sending_at = now(), updated_at = now()
             FROM assessments.instances i
             WHERE r.tenant_id = $1 AND r.id = $2 AND r.state = 'queued' AND r.channel = 'email'
               AND i.tenant_id = r.tenant_id AND i.id = r.instance_id
             RETURNING r.kind::text, r.instance_id, r.patient_id, i.respondent::text, i.respondent_person_id,
                       (i.status = 'open' AND i.closes_at > now()), i.closes_at,
                       coalesce((SELECT p.opted_out::text[] FROM assessments.reminder_preferences p
                                 WHERE p.tenant_id = r.tenant_id AND p.patient_id = r.patient_id), '{}')",
        )
        .bind(tenant_id.as_uuid())
        .bind(reminder_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((
            kind,
            instance_id,
            patient_id,
            respondent,
            person_id,
            open,
            closes_at,
            opted_out,
        )) = row
        else {
            tx.rollback().await?;
            return Ok(Claim::Nothing);
        };
        let kind = Kind::from_name(&kind).expect("BUG: the enum has two kinds");
        if !open || opted_out.iter().any(|channel| channel == "email") {
            let reason = if open { "opted_out" } else { "instance_closed" };
            skip(&mut tx, reminder_id, reason).await?;
            tx.commit().await?;
            return Ok(Claim::Nothing);
        }
        let access = Access {
            purpose: Some("reminder".to_owned()),
            break_glass: false,
        };
        // The recipient's address and first name, read through the vault (audited).
        let recipient: Result<(Option<String>, Option<String>), HandlerError> =
            match (respondent.as_str(), person_id) {
                ("guardian", Some(person_id)) => related_person::read(
                    &mut tx,
                    &self.keyring,
                    PersonId::new_unchecked(person_id),
                    &access,
                )
                .await
                .map(|record| {
                    (
                        record.contact.email,
                        record.contact.given_names.into_iter().next(),
                    )
                })
                .or_else(|err| match err {
                    related_person::RelatedPersonError::NotFound => Ok((None, None)),
                    err => Err(HandlerError::Retry(format!(
                        "reading the guardian's contact: {err}"
                    ))),
                }),
                _ => vault::read(
                    &mut tx,
                    &self.keyring,
                    PatientId::new_unchecked(patient_id),
                    &access,
                )
                .await
                .map(|record| {
                    (
                        record.demographics.email,
                        record.demographics.given_names.into_iter().next(),
                    )
                })
                .or_else(|err| match err {
                    vault::VaultError::NotFound => Ok((None, None)),
                    err => Err(HandlerError::Retry(format!(
                        "reading the patient's contact: {err}"
                    ))),
                }),
            };
        let (email, first_name) = recipient?;
        let Some(to) = email.and_then(|email| email.trim().parse::<lettre::Address>().ok()) else {
            skip(&mut tx, reminder_id, "no_address").await?;
            tx.commit().await?;
            return Ok(Claim::Nothing);
        };
        let settings = settings(&mut tx).await?;
        let expires_at = closes_at.max(OffsetDateTime::now_utc() + LINK_LIFETIME_MIN);
        let link = self.links.issue(&mut tx, instance_id, expires_at).await?;
        let first_name = match settings.personalisation {
            Personalisation::FirstName => first_name,
            Personalisation::None => None,
        };
        let rendered = render(kind, first_name.as_deref(), &link);
        let message = lettre::Message::builder()
            .from(self.smtp.from.clone())
            .to(lettre::message::Mailbox::new(None, to.clone()))
            .subject(rendered.subject)
            .message_id(Some(format!("<{reminder_id}@tenet>")))
            .header(lettre::message::header::ContentType::TEXT_PLAIN)
            .body(rendered.body)
            .map_err(|_| HandlerError::Fail("building the reminder email failed".to_owned()))?;
        let envelope = lettre::address::Envelope::new(Some(self.smtp.from.email.clone()), vec![to])
            .map_err(|_| HandlerError::Fail("building the reminder envelope failed".to_owned()))?;
        tx.commit().await?;
        Ok(Claim::Send(Box::new(Claimed {
            envelope,
            message: message.formatted(),
        })))
    }

    /// A refusal before the server took the message: back to `queued` for the relay
    /// to retry, or `failed` past [`SEND_ATTEMPTS_MAX`]. Committed on its own, since
    /// the relay rolls the handler's transaction back when it asks for a retry.
    async fn release_for_retry(
        &self,
        tenant_id: TenantId,
        reminder_id: Uuid,
        reason: &str,
    ) -> Result<bool, HandlerError> {
        let mut tx = TenantTx::begin_as(&self.app, tenant_id, &Self::actor(), None).await?;
        let state: Option<String> = sqlx::query_scalar(
            "UPDATE assessments.reminders
             SET state = CASE WHEN attempts >= $3 THEN 'failed' ELSE 'queued' END::assessments.reminder_state,
                 last_error = $4, updated_at = now(),
                 finished_at = CASE WHEN attempts >= $3 THEN now() END
             WHERE tenant_id = $1 AND id = $2 AND state = 'sending'
             RETURNING state::text",
        )
        .bind(tenant_id.as_uuid())
        .bind(reminder_id)
        .bind(SEND_ATTEMPTS_MAX)
        .bind(reason)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(state.as_deref() == Some("queued"))
    }
}

async fn skip(tx: &mut TenantTx, reminder_id: Uuid, reason: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE assessments.reminders SET state = 'skipped', skip_reason = $3, finished_at = now(), updated_at = now()
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(reminder_id)
    .bind(reason)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Marks a claimed reminder's end, only while it is still `sending`.
async fn finish(
    tx: &mut TenantTx,
    reminder_id: Uuid,
    state: &str,
    error: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE assessments.reminders SET state = $3::assessments.reminder_state, last_error = $4,
             finished_at = now(), updated_at = now()
         WHERE tenant_id = $1 AND id = $2 AND state = 'sending'",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(reminder_id)
    .bind(state)
    .bind(error)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl<L: LinkIssuer> EventHandler for ReminderMailer<L> {
    const CONSUMER: &'static str = "assessments.reminder_email";
    const EVENT_TYPES: &'static [&'static str] = &[REMINDER_DUE];
    // More than the reminder's own attempts, so the reminder ends `failed` before the
    // delivery would be dead.
    const ATTEMPTS_MAX: u32 = 10;

    async fn handle(&self, tx: &mut TenantTx, event: &RelayEnvelope) -> Result<(), HandlerError> {
        if event
            .payload
            .get("channel")
            .and_then(|channel| channel.as_str())
            != Some("email")
        {
            return Ok(());
        }
        let reminder_id = event
            .payload
            .get("reminder_id")
            .and_then(|id| id.as_str())
            .and_then(|id| Uuid::try_parse(id).ok())
            .ok_or_else(|| HandlerError::Fail("the event names no reminder_id".to_owned()))?;
        let claimed = match self.claim(event.tenant_id, reminder_id).await? {
            Claim::Nothing => return Ok(()),
            Claim::Send(claimed) => claimed,
        };
        match smtp::send(&self.smtp, &claimed.envelope, &claimed.message).await {
            SendOutcome::Accepted => finish(tx, reminder_id, "sent", None).await?,
            SendOutcome::Refused {
                transient: true,
                reason,
            } => {
                if self
                    .release_for_retry(event.tenant_id, reminder_id, &reason)
                    .await?
                {
                    return Err(HandlerError::Retry(reason));
                }
            }
            SendOutcome::Refused {
                transient: false,
                reason,
            } => finish(tx, reminder_id, "failed", Some(&reason)).await?,
            SendOutcome::Unknown { reason } => {
                tracing::warn!(%reminder_id, "a reminder email's outcome is unknown; it will not be retried");
                finish(tx, reminder_id, "unknown", Some(&reason)).await?;
            }
        }
        Ok(())
    }
}

/// One reminder as operators see it: ids, codes and times.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ReminderRow {
    pub id: Uuid,
    pub instance_id: Uuid,
    pub patient_id: Uuid,
    pub kind: String,
    pub channel: String,
    pub state: String,
    pub due_at: OffsetDateTime,
    pub attempts: i32,
    pub skip_reason: Option<String>,
    pub last_error: Option<String>,
}

/// The reminders of one instance, in the transaction's tenant.
pub async fn of_instance(
    tx: &mut TenantTx,
    instance_id: Uuid,
) -> Result<Vec<ReminderRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, instance_id, patient_id, kind::text AS kind, channel::text AS channel,
                state::text AS state, due_at, attempts, skip_reason, last_error
         FROM assessments.reminders r WHERE tenant_id = $1 AND instance_id = $2
         ORDER BY r.kind, r.channel",
    )
    .bind(tx.tenant_id().as_uuid())
    .bind(instance_id)
    .fetch_all(&mut **tx)
    .await
}

/// What `tenet check` reports: email reminders whose outcome is unknown (`unknown`, or
/// `sending` for longer than [`SENDING_STALE_AFTER`]) — a person must decide whether
/// they went out — `failed` ones, and stalled ones (`pending` or `queued` for longer
/// than [`STALLED_AFTER`]), per tenant. Needs the owner role.
pub async fn findings(owner: &PgPool) -> Result<Vec<Finding>, sqlx::Error> {
    let rows: Vec<(Uuid, String, i64)> = sqlx::query_as(
        "SELECT tenant_id,
                CASE WHEN state = 'failed' THEN 'failed'
                     WHEN state IN ('pending', 'queued') THEN 'stalled'
                     ELSE 'unknown' END AS what,
                count(*)
         FROM assessments.reminders
         WHERE state IN ('unknown', 'failed')
            OR (state = 'sending' AND sending_at < now() - make_interval(secs => $1))
            OR (state = 'pending' AND due_at < now() - make_interval(secs => $2))
            OR (state = 'queued' AND queued_at < now() - make_interval(secs => $2))
         GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .bind(SENDING_STALE_AFTER.as_secs_f64())
    .bind(STALLED_AFTER.as_secs_f64())
    .fetch_all(owner)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(tenant_id, what, n)| {
            let object = format!("assessment reminders of tenant {tenant_id}");
            if what == "stalled" {
                Finding {
                    severity: Severity::Problem,
                    check: "reminder-stalled",
                    object,
                    detail: format!(
                        "{n} reminder(s) waiting more than an hour past their due time: no node runs the reminder sweep, or the relay and mailer are not delivering (is a worker running, and SMTP configured for email?)"
                    ),
                }
            } else if what == "failed" {
                Finding {
                    severity: Severity::Notice,
                    check: "reminder-failed",
                    object,
                    detail: format!(
                        "{n} reminder email(s) refused by the SMTP server or out of attempts; their last_error names the SMTP step and reply code"
                    ),
                }
            } else {
                Finding {
                    severity: Severity::Problem,
                    check: "reminder-outcome-unknown",
                    object,
                    detail: format!(
                        "{n} reminder email(s) may or may not have been sent (the conversation broke after the message was handed over, or a sender stopped mid-way); they are never retried by themselves: check the mail server's log for Message-ID <reminder id>@tenet"
                    ),
                }
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> jiff::Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn outside_quiet_hours_a_reminder_is_due_at_once() {
        let new_york = TimeZone::get("America/New_York").unwrap();
        let noon = at("2026-06-01T16:00:00Z");
        assert_eq!(QuietHours::DEFAULT.defer(noon, &new_york), noon);
    }

    #[test]
    fn late_evening_waits_for_the_morning_across_a_spring_forward() {
        let new_york = TimeZone::get("America/New_York").unwrap();
        // 22:30 EST on Saturday 7 March 2026; clocks go forward at 02:00 on Sunday.
        let evening = at("2026-03-08T03:30:00Z");
        let morning = QuietHours::DEFAULT.defer(evening, &new_york);
        // 08:00 EDT is 12:00 UTC: 7.5 hours later, not 9.5.
        assert_eq!(morning, at("2026-03-08T12:00:00Z"));
    }

    #[test]
    fn small_hours_wait_for_the_same_morning() {
        let london = TimeZone::get("Europe/London").unwrap();
        let night = at("2026-01-10T03:00:00Z");
        assert_eq!(
            QuietHours::DEFAULT.defer(night, &london),
            at("2026-01-10T08:00:00Z")
        );
    }

    #[test]
    fn quiet_hours_within_one_day_and_none_at_all() {
        let utc = TimeZone::UTC;
        let lunch = QuietHours {
            start: jiff::civil::time(12, 0, 0, 0),
            end: jiff::civil::time(13, 30, 0, 0),
        };
        assert_eq!(
            lunch.defer(at("2026-01-10T12:10:00Z"), &utc),
            at("2026-01-10T13:30:00Z")
        );
        assert_eq!(
            lunch.defer(at("2026-01-10T13:30:00Z"), &utc),
            at("2026-01-10T13:30:00Z")
        );
        let none = QuietHours {
            start: jiff::civil::time(9, 0, 0, 0),
            end: jiff::civil::time(9, 0, 0, 0),
        };
        assert_eq!(
            none.defer(at("2026-01-10T09:10:00Z"), &utc),
            at("2026-01-10T09:10:00Z")
        );
    }

    #[test]
    fn the_template_says_nothing_but_the_link_unless_the_first_name_is_allowed() {
        let link = AnswerLink("https://answer.example/a/at_x".to_owned());
        let plain = render(Kind::Opening, None, &link);
        assert_eq!(plain.subject, "You have a questionnaire to complete");
        assert!(plain.body.starts_with("Hello,\r\n"));
        assert!(plain.body.contains("https://answer.example/a/at_x"));
        let named = render(Kind::Closing, Some("Ana\r\nBcc: x"), &link);
        assert!(named.body.starts_with("Hello AnaBcc: x,"));
        assert!(!format!("{named:?}").contains("Ana"));
        assert!(!format!("{link:?}").contains("at_x"));
    }
}
