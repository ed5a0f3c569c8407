//! Measurement plans: which instruments are answered, by whom, how often, in which
//! window and until when — as one [`PlanDefinition`], a value stored as JSON.
//!
//! A plan is data: its [`InstrumentRule`]s are interpreted by [`crate::rules`], its
//! [`Cadence`] by [`crate::cadence`]. [`PlanDefinition::validate`] refuses a plan
//! that could not be carried out as written (an unknown instrument, a respondent or
//! ages the instrument is not meant for, windows that would overlap), naming the rule
//! and the field. [`instances`] puts both halves together: the instances a patient's
//! plan calls for over a period, each with a stable key.
//!
//! **The JSON form** is stable: fields are named as below, unknown fields are
//! refused (a typo must not silently become a default), optional fields may be left
//! out, and `local_time` is `"HH:MM"`:
//!
//! ```json
//! {
//!   "rules": [
//!     { "when": { "age_from": 4, "age_until": 12 }, "instrument": "psc-17", "respondent": "parent_guardian" },
//!     { "when": { "age_from": 18 }, "instrument": "phq-9", "respondent": "patient" }
//!   ],
//!   "cadence": { "every_days": 28, "every_sessions": 4 },
//!   "window": { "before_days": 3, "after_days": 7 },
//!   "local_time": "09:00",
//!   "stop": { "after_days": 365, "on_remission": false },
//!   "guardian_access_until_age": 18
//! }
//! ```
//!
//! Nothing in a plan is about a particular patient, so it may be logged; the facts
//! and the slots computed from it may not.

use std::fmt;

use jiff::Timestamp;
use jiff::civil::Time;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use crate::cadence::{Cadence, Slot, slots};
use crate::instrument::{Instrument, InstrumentCode, Respondent};
use crate::rules::{Assignment, GuardianRequirement, InstrumentRule, PatientFacts, evaluate};

/// The most rules a plan holds.
pub const RULES_MAX: usize = 32;
/// The longest calendar period: ten years.
pub const EVERY_DAYS_MAX: u32 = 3_660;
pub const EVERY_MONTHS_MAX: u32 = 120;
pub const EVERY_SESSIONS_MAX: u32 = 100;
/// The most days a window reaches before or after a due date.
pub const WINDOW_DAYS_MAX: u32 = 366;
/// The longest `stop.after_days`: a hundred years.
pub const STOP_AFTER_DAYS_MAX: u32 = 36_525;
/// The default age at which guardians lose access: the usual age of majority.
pub const GUARDIAN_ACCESS_UNTIL_AGE_DEFAULT: u8 = 18;

/// A measurement plan. Build one in code or read it from JSON, then
/// [`validate`](PlanDefinition::validate) it before use: the cadence engine and the
/// rules assume a valid plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanDefinition {
    /// Which instrument, answered by whom, under which condition. Evaluated on each
    /// slot's local due date.
    pub rules: Vec<InstrumentRule>,
    pub cadence: Cadence,
    pub window: Window,
    /// The time of day a calendar due date falls on, on the patient's wall clock.
    #[serde(default = "default_local_time", with = "hh_mm")]
    pub local_time: Time,
    #[serde(default)]
    pub stop: StopConditions,
    /// From this age guardians have no access and answer nothing (see
    /// [`crate::rules`]).
    #[serde(default = "default_guardian_access_until_age")]
    pub guardian_access_until_age: u8,
    /// When the plan changes, or a patient is enrolled, the instances the past this
    /// many days should have had are made afterwards, marked backfilled (see
    /// [`crate::backfill`]). `None`: only by an operator's `backfill` command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backfill_days: Option<u32>,
}

fn default_local_time() -> Time {
    Time::constant(9, 0, 0, 0)
}

fn default_guardian_access_until_age() -> u8 {
    GUARDIAN_ACCESS_UNTIL_AGE_DEFAULT
}

/// When an instance can be answered: from `before_days` days before its due time to
/// `after_days` days after it, on the patient's wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    pub before_days: u32,
    pub after_days: u32,
}

/// When the plan ends. Each condition set ends it on its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopConditions {
    /// No slot is due after the anchor's local date + this many days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_days: Option<u32>,
    /// The plan ends once this many instances have been answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_responses: Option<u32>,
    /// The plan ends when the latest score is in remission (as `change::progress`
    /// reports it).
    #[serde(default)]
    pub on_remission: bool,
}

/// Why a plan ended on its responses. (A plan that ran its `stop.after_days` simply
/// has no more slots; [`PlanDefinition::last_date`] says when.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StopReason {
    /// `stop.after_responses` instances have been answered.
    Responses,
    /// The latest score is in remission and the plan stops `on_remission`.
    Remission,
}

impl StopConditions {
    /// Whether the conditions that depend on responses end the plan: `n_responses`
    /// instances answered so far, `in_remission` from the latest score's progress.
    /// (`after_days` is applied by the cadence engine, which stops producing slots.)
    pub fn reached(&self, n_responses: u32, in_remission: bool) -> Option<StopReason> {
        if self.after_responses.is_some_and(|n| n_responses >= n) {
            Some(StopReason::Responses)
        } else if self.on_remission && in_remission {
            Some(StopReason::Remission)
        } else {
            None
        }
    }
}

/// Why a plan was refused. The message starts with the field at fault
/// (`rules[2].respondent: …`); plans hold no health information, so it may be shown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("rules: a plan needs at least one rule")]
    NoRules,
    #[error("rules: a plan holds at most {RULES_MAX} rules")]
    TooManyRules,
    #[error("rules[{rule}].instrument: {instrument} is not in the catalogue")]
    UnknownInstrument {
        rule: usize,
        instrument: InstrumentCode,
    },
    #[error("rules[{rule}].respondent: {instrument} is not answered by a {respondent}")]
    RespondentNotAllowed {
        rule: usize,
        instrument: InstrumentCode,
        respondent: Respondent,
    },
    #[error("rules[{rule}].when.age_until: must be above age_from")]
    EmptyAgeRange { rule: usize },
    #[error(
        "rules[{rule}].when: the rule's ages ({}) are not all within the ages {instrument} is meant for ({})",
        rule_ages(.age_from, .age_until),
        instrument_ages(.instrument_min, .instrument_max)
    )]
    AgesOutsideInstrument {
        rule: usize,
        instrument: InstrumentCode,
        /// The rule's ages, `age_until` exclusive.
        age_from: u8,
        age_until: Option<u8>,
        /// The instrument's ages, both inclusive.
        instrument_min: u8,
        instrument_max: Option<u8>,
    },
    #[error(
        "rules[{rule}].when.age_until: guardians have no access from age {guardian_access_until_age}, so a rule answered by a guardian must end by then"
    )]
    GuardianRuleBeyondAccess {
        rule: usize,
        guardian_access_until_age: u8,
    },
    #[error(
        "rules[{rule}].when.guardian: a rule answered by a guardian cannot require that no guardian has access"
    )]
    GuardianRuleWithoutGuardian { rule: usize },
    #[error("cadence: at least one of every_days, every_months and every_sessions is needed")]
    NoCadence,
    #[error("cadence.every_months: every_days and every_months cannot both be set")]
    DaysAndMonths,
    #[error("cadence.{field}: must be between 1 and {max}")]
    CadenceOutOfRange { field: &'static str, max: u32 },
    #[error("window: before_days + after_days must be at least 1, or no one could answer")]
    EmptyWindow,
    #[error("window.{field}: at most {WINDOW_DAYS_MAX} days")]
    WindowTooLong { field: &'static str },
    #[error(
        "window: before_days + after_days ({window_days}) must be less than the shortest period between due dates ({period_days} days), or consecutive windows would overlap"
    )]
    WindowOverlapsPeriod { window_days: u32, period_days: u32 },
    #[error("stop.after_days: at most {STOP_AFTER_DAYS_MAX}")]
    StopAfterDaysTooLong,
    #[error("stop.after_responses: must be at least 1")]
    StopAfterNoResponses,
    #[error("guardian_access_until_age: must be between 1 and 25")]
    GuardianAccessAge,
    #[error(
        "backfill_days: must be between 1 and {}",
        crate::backfill::WINDOW_DAYS_MAX
    )]
    BackfillDays,
}

impl PlanError {
    /// The field at fault, as the message starts with it: `rules[2].respondent`.
    pub fn field(&self) -> String {
        let message = self.to_string();
        message
            .split_once(": ")
            .map_or(message.clone(), |(field, _)| field.to_owned())
    }
}

/// `4–11`, `18+`: ages in whole years, both ends inclusive.
fn years(from: u8, to: Option<u8>) -> String {
    match to {
        Some(to) => format!("{from}–{to}"),
        None => format!("{from}+"),
    }
}

fn rule_ages(age_from: &u8, age_until: &Option<u8>) -> String {
    years(*age_from, age_until.map(|until| until.saturating_sub(1)))
}

fn instrument_ages(min: &u8, max: &Option<u8>) -> String {
    years(*min, *max)
}

impl PlanDefinition {
    /// Checks the plan can be carried out as written; the first problem found is
    /// returned, naming the rule and field.
    pub fn validate(&self) -> Result<(), PlanError> {
        if self.rules.is_empty() {
            return Err(PlanError::NoRules);
        }
        if self.rules.len() > RULES_MAX {
            return Err(PlanError::TooManyRules);
        }
        if !(1..=25).contains(&self.guardian_access_until_age) {
            return Err(PlanError::GuardianAccessAge);
        }
        for (index, rule) in self.rules.iter().enumerate() {
            self.validate_rule(index, rule)?;
        }

        let cadence = self.cadence;
        if cadence.every_days.is_none()
            && cadence.every_months.is_none()
            && cadence.every_sessions.is_none()
        {
            return Err(PlanError::NoCadence);
        }
        if cadence.every_days.is_some() && cadence.every_months.is_some() {
            return Err(PlanError::DaysAndMonths);
        }
        for (field, value, max) in [
            ("every_days", cadence.every_days, EVERY_DAYS_MAX),
            ("every_months", cadence.every_months, EVERY_MONTHS_MAX),
            ("every_sessions", cadence.every_sessions, EVERY_SESSIONS_MAX),
        ] {
            if value.is_some_and(|value| value == 0 || value > max) {
                return Err(PlanError::CadenceOutOfRange { field, max });
            }
        }

        let window = self.window;
        for (field, days) in [
            ("before_days", window.before_days),
            ("after_days", window.after_days),
        ] {
            if days > WINDOW_DAYS_MAX {
                return Err(PlanError::WindowTooLong { field });
            }
        }
        let window_days = window.before_days + window.after_days;
        if window_days == 0 {
            return Err(PlanError::EmptyWindow);
        }
        if let Some(period_days) = cadence.shortest_period_days()
            && window_days >= period_days
        {
            return Err(PlanError::WindowOverlapsPeriod {
                window_days,
                period_days,
            });
        }

        if self
            .stop
            .after_days
            .is_some_and(|days| days > STOP_AFTER_DAYS_MAX)
        {
            return Err(PlanError::StopAfterDaysTooLong);
        }
        if self.stop.after_responses == Some(0) {
            return Err(PlanError::StopAfterNoResponses);
        }
        if self
            .backfill_days
            .is_some_and(|days| days == 0 || i64::from(days) > crate::backfill::WINDOW_DAYS_MAX)
        {
            return Err(PlanError::BackfillDays);
        }
        Ok(())
    }

    /// The last local date a slot can be due on, with `stop.after_days`: the anchor's
    /// local date + that many days.
    pub fn last_date(&self, anchor: Timestamp, tz: &TimeZone) -> Option<jiff::civil::Date> {
        let days = self.stop.after_days?;
        tz.to_datetime(anchor)
            .date()
            .checked_add(jiff::Span::new().days(i64::from(days)))
            .ok()
    }

    fn validate_rule(&self, index: usize, rule: &InstrumentRule) -> Result<(), PlanError> {
        let Some(instrument) = Instrument::latest(&rule.instrument) else {
            return Err(PlanError::UnknownInstrument {
                rule: index,
                instrument: rule.instrument.clone(),
            });
        };
        if !instrument.allows(rule.respondent) {
            return Err(PlanError::RespondentNotAllowed {
                rule: index,
                instrument: rule.instrument.clone(),
                respondent: rule.respondent,
            });
        }
        let when = rule.when;
        let age_from = when.age_from.unwrap_or(0);
        if when.age_until.is_some_and(|until| until <= age_from) {
            return Err(PlanError::EmptyAgeRange { rule: index });
        }
        let ages = instrument.ages();
        let fits = age_from >= ages.years_min()
            && match (ages.years_max(), when.age_until) {
                (None, _) => true,
                (Some(max), Some(until)) => until - 1 <= max,
                (Some(_), None) => false,
            };
        if !fits {
            return Err(PlanError::AgesOutsideInstrument {
                rule: index,
                instrument: rule.instrument.clone(),
                age_from,
                age_until: when.age_until,
                instrument_min: ages.years_min(),
                instrument_max: ages.years_max(),
            });
        }
        if rule.respondent == Respondent::ParentGuardian {
            if when.guardian == Some(GuardianRequirement::Absent) {
                return Err(PlanError::GuardianRuleWithoutGuardian { rule: index });
            }
            if when
                .age_until
                .is_none_or(|until| until > self.guardian_access_until_age)
            {
                return Err(PlanError::GuardianRuleBeyondAccess {
                    rule: index,
                    guardian_access_until_age: self.guardian_access_until_age,
                });
            }
        }
        Ok(())
    }
}

/// One instance a plan calls for: a slot and one assignment on the slot's due date.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PlannedInstance {
    pub slot: Slot,
    pub assignment: Assignment,
}

impl PlannedInstance {
    /// A key unique among the instances of one enrolment and the same for the same
    /// inputs: `k:3/phq-9/patient`, `k:3/psc-17/parent_guardian/{person uuid}`.
    /// Holds ids and codes only, no health information.
    pub fn key(&self) -> String {
        let Assignment {
            instrument,
            respondent,
            respondent_person,
            ..
        } = &self.assignment;
        match respondent_person {
            Some(person) => format!("{}/{instrument}/{respondent}/{person}", self.slot.key),
            None => format!("{}/{instrument}/{respondent}", self.slot.key),
        }
    }
}

/// The instances a plan calls for with slots due in `[from, until)`: for each slot,
/// the rules evaluated on its local due date. For a backfill, pass a past period and
/// the facts as they stood (a guardian's dates and the birth date are enough: the
/// rules read them on each slot's date).
pub fn instances(
    def: &PlanDefinition,
    facts: &PatientFacts,
    anchor: Timestamp,
    tz: &TimeZone,
    sessions: &[Timestamp],
    from: Timestamp,
    until: Timestamp,
) -> Vec<PlannedInstance> {
    slots(def, anchor, tz, sessions, from, until)
        .into_iter()
        .flat_map(|slot| {
            evaluate(def, facts, slot.due_on)
                .into_iter()
                .map(move |assignment| PlannedInstance {
                    slot: slot.clone(),
                    assignment,
                })
        })
        .collect()
}

/// `local_time` as `"HH:MM"`: minutes are the finest a plan needs, and one spelling
/// keeps the stored JSON stable.
mod hh_mm {
    use jiff::civil::Time;
    use serde::{Deserialize, Deserializer, Serializer, de};

    pub fn serialize<S: Serializer>(time: &Time, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format!("{:02}:{:02}", time.hour(), time.minute()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Time, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse(&text)
            .ok_or_else(|| de::Error::custom("local_time: expected \"HH:MM\", 00:00 to 23:59"))
    }

    fn parse(text: &str) -> Option<Time> {
        let (hour, minute) = text.split_once(':')?;
        let two_digits = |part: &str| part.len() == 2 && part.bytes().all(|b| b.is_ascii_digit());
        if !two_digits(hour) || !two_digits(minute) {
            return None;
        }
        Time::new(hour.parse().ok()?, minute.parse().ok()?, 0, 0).ok()
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StopReason::Responses => "responses",
            StopReason::Remission => "remission",
        })
    }
}

/// Ready-made plans, valid as they stand.
pub mod examples {
    use super::*;
    use crate::rules::Condition;

    /// Mood across childhood, for a family: the PSC-17 from each guardian with access
    /// from 4 to 11 (the PSC-17 is not meant for under-4s, so nothing is assigned
    /// before 4), the PHQ-A from the patient from 12 to 17, the PHQ-9 from the patient
    /// from 18, when guardians no longer answer. Every 28 days or every 4 sessions,
    /// whichever comes first; open from 3 days before to 7 days after the due date;
    /// due at 09:00 local; for a year.
    pub fn family_mood() -> PlanDefinition {
        let rule = |age_from, age_until, instrument, respondent| InstrumentRule {
            when: Condition {
                age_from: Some(age_from),
                age_until,
                guardian: None,
            },
            instrument: InstrumentCode::new_unchecked(instrument),
            respondent,
        };
        PlanDefinition {
            rules: vec![
                rule(4, Some(12), "psc-17", Respondent::ParentGuardian),
                rule(12, Some(18), "phq-a", Respondent::Patient),
                rule(18, None, "phq-9", Respondent::Patient),
            ],
            cadence: Cadence {
                every_days: Some(28),
                every_months: None,
                every_sessions: Some(4),
            },
            window: Window {
                before_days: 3,
                after_days: 7,
            },
            local_time: default_local_time(),
            stop: StopConditions {
                after_days: Some(365),
                after_responses: None,
                on_remission: false,
            },
            guardian_access_until_age: GUARDIAN_ACCESS_UNTIL_AGE_DEFAULT,
            backfill_days: None,
        }
    }
}
