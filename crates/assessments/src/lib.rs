//! The assessments context, pure logic: standardised instruments (PHQ-9, GAD-7,
//! PHQ-2, GAD-2, PCL-5, PHQ-A, and the parent-report PSC-17) as versioned
//! definitions, their scoring, change over time, and measurement plans — who answers
//! what, how often, until when.
//!
//! Instruments are data ([`mod@catalogue`]), scored by one pure function
//! ([`scoring::score`]) that follows each instrument's published manual, including
//! when to refuse: a form with more missing items than the guidance allows has no
//! score. A self-harm answer raises [`Flag::SelfHarm`] whatever the total.
//! [`change::progress`] compares a score with the baseline and the previous one.
//!
//! A [`PlanDefinition`] ([`mod@plan`], stored as JSON) pairs family-based
//! [`InstrumentRule`]s with a [`Cadence`]. [`mod@rules`] says, on a date, which
//! instruments are due from the patient and from each guardian with access, and
//! when that answer may next change (a birthday, a guardian's start or end);
//! [`mod@cadence`] turns the cadence into [`Slot`]s — due instants on the patient's
//! wall clock with their answer windows, by days, months or sessions, deterministic
//! and safe across daylight saving time; [`plan::instances`] combines the two for a
//! period, past (backfill) or future, each instance with a stable key.
//!
//! [`mod@reminder`] tells respondents when an instance opens and before it closes,
//! by email (SMTP) and webhook, through the outbox, at most once per slot and channel,
//! outside quiet hours and never against an opt-out.
//!
//! Answers, scores, changes, birth dates and guardianship dates are health
//! information: their `Debug` prints no values, and errors name items or plan
//! fields, never answers. The pure modules never log, read a clock or touch a
//! database; the stores and jobs built on them take the tenant's transaction first.
//!
//! Persistence and automation, in the tenant's transaction:
//! [`mod@plan_store`] (plans and their versions), [`mod@guardian`],
//! [`mod@enrollment`], [`mod@materialize`] (due instances made by durable schedules,
//! exactly once, with open/missed transitions and escalation), [`mod@batch`]
//! (resumable batch enrolment), [`mod@backfill`] (past slots, resumable) and
//! [`mod@due`] (the due and overdue lists). They take `now` as a parameter.
//! On the database (schema `assessments`, always in the caller's tenant
//! transaction, every access audited): [`mod@response`] checks, scores and stores a
//! submitted questionnaire, completes its instance and records progress;
//! [`mod@safety`] raises and lists urgent safety events; [`mod@link`] issues and
//! redeems one-time links for patients and guardians. None of them puts an answer
//! or a score into an event, an error or a log line.

pub mod backfill;
pub mod batch;
pub mod cadence;
pub mod catalogue;
pub mod change;
pub mod due;
pub mod enrollment;
pub mod guardian;
pub mod instant;
pub mod instrument;
pub mod link;
pub mod materialize;
pub mod plan;
pub mod plan_store;
pub mod reminder;
pub mod response;
pub mod rules;
pub mod safety;
pub mod scoring;

pub use cadence::{
    Basis, Cadence, Slot, SlotIter, next_slot_after, open_slot_at, slot_iter, slots,
};
pub use catalogue::catalogue;
pub use change::{Change, ChangeCriteria, ChangeError, Progress, Reliability, progress};
pub use instrument::{
    AgeRange, AnswerOption, Band, Flag, FlagRule, Instrument, InstrumentCode,
    InvalidInstrumentCode, Item, Purpose, Respondent, ScoringRule, Subscale,
};
pub use plan::{
    PlanDefinition, PlanError, PlannedInstance, StopConditions, StopReason, Window, instances,
};
pub use rules::{
    Assignment, Condition, Guardian, GuardianRequirement, InstrumentRule, PatientFacts, evaluate,
    guardians_with_access, has_access, next_change,
};
pub use scoring::{Answers, ItemKey, Score, ScoreError, SubscaleScore, score};

use db::Migration;

/// The assessments context's migrations: schema `assessments`.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 2026112601,
        context: "assessments",
        name: "assessments",
        up: include_str!("../migrations/2026112601_assessments.up.sql"),
        down: include_str!("../migrations/2026112601_assessments.down.sql"),
    },
    Migration {
        version: 2026112603,
        context: "assessments",
        name: "assessments_automation",
        up: include_str!("../migrations/2026112603_assessments_automation.up.sql"),
        down: include_str!("../migrations/2026112603_assessments_automation.down.sql"),
    },
    Migration {
        version: 2026112605,
        context: "assessments",
        name: "reminders",
        up: include_str!("../migrations/2026112605_reminders.up.sql"),
        down: include_str!("../migrations/2026112605_reminders.down.sql"),
    },
];
