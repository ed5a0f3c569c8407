//! The assessments context, first slice: standardised instruments (PHQ-9, GAD-7,
//! PHQ-2, GAD-2, PCL-5, PHQ-A) as versioned definitions, their scoring, and change
//! over time.
//!
//! Instruments are data ([`mod@catalogue`]), scored by one pure function
//! ([`scoring::score`]) that follows each instrument's published manual, including
//! when to refuse: a form with more missing items than the guidance allows has no
//! score. A self-harm answer raises [`Flag::SelfHarm`] whatever the total.
//! [`change::progress`] compares a score with the baseline and the previous one.
//!
//! Answers, scores and changes are health information: their `Debug` prints no
//! values, and errors name items, never answers. This crate must never log, and
//! never put an answer or a score in an error. It holds no database yet:
//! persistence, enrolment and schedules come in later slices.

pub mod catalogue;
pub mod change;
pub mod instrument;
pub mod scoring;

pub use catalogue::catalogue;
pub use change::{Change, ChangeCriteria, ChangeError, Progress, Reliability, progress};
pub use instrument::{
    AgeRange, AnswerOption, Band, Flag, FlagRule, Instrument, InstrumentCode,
    InvalidInstrumentCode, Item, Purpose, Respondent, ScoringRule, Subscale,
};
pub use scoring::{Answers, ItemKey, Score, ScoreError, SubscaleScore, score};

use db::Migration;

/// The assessments context's migrations: schema `assessments`.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 2026112601,
    context: "assessments",
    name: "assessments",
    up: include_str!("../migrations/2026112601_assessments.up.sql"),
    down: include_str!("../migrations/2026112601_assessments.down.sql"),
}];
