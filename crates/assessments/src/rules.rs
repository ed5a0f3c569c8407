//! Family-based rules: which instruments a plan assigns on a date, and to whom —
//! the patient, or each of their guardians — from the patient's age and guardians.
//!
//! Rules are data ([`InstrumentRule`]: a [`Condition`], an instrument and a
//! respondent), interpreted by one function, [`evaluate`]; nothing here knows a
//! particular instrument. For a plan "PSC-17 from each guardian under 12, PHQ-A from
//! the patient from 12 to 17, PHQ-9 from 18", see `plan::examples::family_mood`.
//!
//! **Ages** are whole years on the date of evaluation. A person turns N on the N-th
//! anniversary of their birth; someone born on **29 February** turns N on **1 March**
//! in a common year, the day after 28 February — the rule written into, for example,
//! Hong Kong's Age of Majority (Related Provisions) Ordinance (Cap. 410), and the
//! common reading where a statute says only that an age is attained on the
//! anniversary of birth, since a common year has no 29 February. Some jurisdictions
//! use 28 February instead; the choice only ever moves an age change by one day.
//!
//! **Unknown birth date.** A rule with an age condition (`age_from` or `age_until`)
//! does not apply to a patient whose birth date is unknown, and no guardian has access
//! to such a patient (access needs the patient to be known to be a minor). Since a
//! valid plan fits every rule to its instrument's ages, in practice nothing is
//! assigned until the birth date is recorded.
//!
//! **Guardians** are active from `since` (inclusive) to `until` (exclusive; `None`:
//! still active). A guardian **has access** on a date when they are active and the
//! patient is under the plan's `guardian_access_until_age` (18 by default): on the
//! 18th birthday every guardian loses access, whatever the relationship says. Adult
//! guardianship (a court-appointed guardian of an adult) is not modelled. A rule
//! answered by [`Respondent::ParentGuardian`] yields one [`Assignment`] per guardian
//! with access, and none when there is none.
//!
//! [`next_change`] gives the next date on which [`evaluate`] may give a different
//! answer (a birthday at one of the plan's age thresholds, a guardian's start or
//! end), so a scheduler evaluates again then rather than daily.
//!
//! Birth dates and guardianship dates are health information: the `Debug` of
//! [`PatientFacts`] and [`Guardian`] prints none of them.

use std::fmt;

use jiff::civil::Date;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::instrument::{InstrumentCode, Respondent};
use crate::plan::PlanDefinition;

/// One rule of a plan: when `when` holds, `instrument` is to be answered by
/// `respondent`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstrumentRule {
    #[serde(default)]
    pub when: Condition,
    pub instrument: InstrumentCode,
    pub respondent: Respondent,
}

/// When a rule applies. Every condition set must hold; an empty condition always
/// holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// From this age in whole years, inclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_from: Option<u8>,
    /// Until this age in whole years, exclusive: `age_until: 12` stops on the 12th
    /// birthday.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_until: Option<u8>,
    /// Whether the patient must have, or must not have, a guardian with access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardian: Option<GuardianRequirement>,
}

impl Condition {
    /// Whether the condition names an age.
    pub fn has_age(&self) -> bool {
        self.age_from.is_some() || self.age_until.is_some()
    }

    /// Whether the condition holds for a patient of `age` years (`None`: unknown)
    /// with `n_guardians_with_access` guardians who have access.
    pub fn holds(&self, age: Option<u16>, n_guardians_with_access: usize) -> bool {
        let age_holds = match age {
            Some(age) => {
                self.age_from.is_none_or(|from| age >= u16::from(from))
                    && self.age_until.is_none_or(|until| age < u16::from(until))
            }
            None => !self.has_age(),
        };
        let guardian_holds = match self.guardian {
            None => true,
            Some(GuardianRequirement::Present) => n_guardians_with_access > 0,
            Some(GuardianRequirement::Absent) => n_guardians_with_access == 0,
        };
        age_holds && guardian_holds
    }
}

/// A requirement on the patient's guardians.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardianRequirement {
    /// At least one guardian has access on the date.
    Present,
    /// No guardian has access on the date.
    Absent,
}

/// What the rules need to know about a patient. Built by the caller from the
/// patient's record; `Debug` prints no dates.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PatientFacts {
    pub birth_date: Option<Date>,
    pub guardians: Vec<Guardian>,
}

impl fmt::Debug for PatientFacts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PatientFacts")
            .field("birth_date_known", &self.birth_date.is_some())
            .field("guardians", &self.guardians)
            .finish()
    }
}

/// A person who is the patient's parent or guardian, from `since` until `until`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Guardian {
    pub person_id: Uuid,
    /// The first day of the relationship.
    pub since: Date,
    /// The day it ended (the guardian is no longer active on it); `None`: ongoing.
    pub until: Option<Date>,
}

impl Guardian {
    /// Whether the relationship is in force on `on`: `since <= on < until`.
    pub fn is_active_on(&self, on: Date) -> bool {
        self.since <= on && self.until.is_none_or(|until| on < until)
    }
}

impl fmt::Debug for Guardian {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guardian")
            .field("person_id", &self.person_id)
            .field("dates", &format_args!("[redacted]"))
            .finish()
    }
}

/// One instrument to be answered by one respondent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Assignment {
    /// The index of the rule that assigned it (the first, when several would).
    pub rule: usize,
    pub instrument: InstrumentCode,
    pub respondent: Respondent,
    /// The guardian who answers, for [`Respondent::ParentGuardian`]; `None` for the
    /// patient (about themself) and for a clinician.
    pub respondent_person: Option<Uuid>,
}

/// The patient's age in whole years on `on`; `None` before `birth`.
pub fn age_on(birth: Date, on: Date) -> Option<u16> {
    if on < birth {
        return None;
    }
    let mut years = on.year() - birth.year();
    if anniversary(birth, on.year()).is_none_or(|birthday| birthday > on) {
        years -= 1;
    }
    u16::try_from(years).ok()
}

/// The date a person born on `birth` turns `years` old (see the module on 29
/// February); `None` beyond the calendar.
pub fn turns(birth: Date, years: u16) -> Option<Date> {
    let year = i16::try_from(i32::from(birth.year()) + i32::from(years)).ok()?;
    anniversary(birth, year)
}

/// The birthday in `year`: 29 February becomes 1 March in a common year.
fn anniversary(birth: Date, year: i16) -> Option<Date> {
    match Date::new(year, birth.month(), birth.day()) {
        Ok(date) => Some(date),
        Err(_) if birth.month() == 2 && birth.day() == 29 => Date::new(year, 3, 1).ok(),
        Err(_) => None,
    }
}

/// Whether `guardian` is one of the patient's guardians with access on `on`: active,
/// and the patient known to be under the plan's `guardian_access_until_age`.
pub fn has_access(def: &PlanDefinition, facts: &PatientFacts, guardian: Uuid, on: Date) -> bool {
    guardians_with_access(def, facts, on).contains(&guardian)
}

/// The guardians with access on `on`, in the order of `facts.guardians`, each once.
pub fn guardians_with_access(def: &PlanDefinition, facts: &PatientFacts, on: Date) -> Vec<Uuid> {
    let minor = facts
        .birth_date
        .and_then(|birth| age_on(birth, on))
        .is_some_and(|age| age < u16::from(def.guardian_access_until_age));
    let mut with_access: Vec<Uuid> = Vec::new();
    if minor {
        for guardian in &facts.guardians {
            if guardian.is_active_on(on) && !with_access.contains(&guardian.person_id) {
                with_access.push(guardian.person_id);
            }
        }
    }
    with_access
}

/// The assignments of the plan's rules on `on`: in rule order, guardians in the order
/// of `facts.guardians`, each (instrument, respondent, person) once.
pub fn evaluate(def: &PlanDefinition, facts: &PatientFacts, on: Date) -> Vec<Assignment> {
    let age = facts.birth_date.and_then(|birth| age_on(birth, on));
    let with_access = guardians_with_access(def, facts, on);
    let mut assignments: Vec<Assignment> = Vec::new();
    let mut push = |assignment: Assignment| {
        let duplicate = assignments.iter().any(|other| {
            other.instrument == assignment.instrument
                && other.respondent == assignment.respondent
                && other.respondent_person == assignment.respondent_person
        });
        if !duplicate {
            assignments.push(assignment);
        }
    };
    for (index, rule) in def.rules.iter().enumerate() {
        if !rule.when.holds(age, with_access.len()) {
            continue;
        }
        let assignment = |respondent_person| Assignment {
            rule: index,
            instrument: rule.instrument.clone(),
            respondent: rule.respondent,
            respondent_person,
        };
        match rule.respondent {
            Respondent::ParentGuardian => {
                for person_id in &with_access {
                    push(assignment(Some(*person_id)));
                }
            }
            Respondent::Patient | Respondent::Clinician => push(assignment(None)),
        }
    }
    assignments
}

/// The first date after `after` on which [`evaluate`] (or guardian access) may give
/// a different answer than on `after`: a birthday at one of the plan's age thresholds
/// or at the age guardians lose access, the birth date itself, or a guardian's
/// `since` or `until`. Between `after` and that date the answer is the same; `None`
/// when nothing can change any more.
pub fn next_change(def: &PlanDefinition, facts: &PatientFacts, after: Date) -> Option<Date> {
    let mut candidates: Vec<Date> = Vec::new();
    if let Some(birth) = facts.birth_date {
        candidates.push(birth);
        let thresholds = def
            .rules
            .iter()
            .flat_map(|rule| [rule.when.age_from, rule.when.age_until])
            .flatten()
            .chain([def.guardian_access_until_age]);
        candidates.extend(thresholds.filter_map(|years| turns(birth, u16::from(years))));
    }
    for guardian in &facts.guardians {
        candidates.push(guardian.since);
        candidates.extend(guardian.until);
    }
    candidates.into_iter().filter(|date| *date > after).min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn age_goes_up_on_the_birthday_not_the_day_before() {
        let birth = date(2010, 6, 15);
        assert_eq!(age_on(birth, date(2022, 6, 14)), Some(11));
        assert_eq!(age_on(birth, date(2022, 6, 15)), Some(12));
        assert_eq!(age_on(birth, birth), Some(0));
        assert_eq!(age_on(birth, date(2010, 6, 14)), None);
    }

    #[test]
    fn a_leap_day_birth_turns_a_year_older_on_the_first_of_march_in_common_years() {
        let birth = date(2008, 2, 29);
        assert_eq!(age_on(birth, date(2026, 2, 28)), Some(17));
        assert_eq!(age_on(birth, date(2026, 3, 1)), Some(18));
        assert_eq!(age_on(birth, date(2028, 2, 28)), Some(19));
        assert_eq!(age_on(birth, date(2028, 2, 29)), Some(20));
        assert_eq!(turns(birth, 18), Some(date(2026, 3, 1)));
        assert_eq!(turns(birth, 20), Some(date(2028, 2, 29)));
    }
}
