//! Family rules: who answers what around birthdays and changes of guardian, guardian
//! access, and that `next_change` predicts every change of `evaluate`.

use assessments::plan::examples::family_mood;
use assessments::{
    Assignment, Condition, Guardian, GuardianRequirement, InstrumentCode, InstrumentRule,
    PatientFacts, PlanDefinition, Respondent, evaluate, guardians_with_access, has_access,
    next_change,
};
use jiff::ToSpan;
use jiff::civil::{Date, date};
use proptest::prelude::*;
use uuid::Uuid;

const MOTHER: Uuid = Uuid::from_u128(0x1111);
const FATHER: Uuid = Uuid::from_u128(0x2222);
const FOSTER: Uuid = Uuid::from_u128(0x3333);

fn guardian(person_id: Uuid, since: Date, until: Option<Date>) -> Guardian {
    Guardian {
        person_id,
        since,
        until,
    }
}

/// Born 2014-05-10, with both parents since birth.
fn child() -> PatientFacts {
    PatientFacts {
        birth_date: Some(date(2014, 5, 10)),
        guardians: vec![
            guardian(MOTHER, date(2014, 5, 10), None),
            guardian(FATHER, date(2014, 5, 10), None),
        ],
    }
}

/// (instrument, respondent, person) of each assignment, in order.
fn who(assignments: &[Assignment]) -> Vec<(&str, Respondent, Option<Uuid>)> {
    assignments
        .iter()
        .map(|a| (a.instrument.as_str(), a.respondent, a.respondent_person))
        .collect()
}

#[test]
fn the_day_before_the_12th_birthday_each_guardian_answers_the_psc17() {
    let assignments = evaluate(&family_mood(), &child(), date(2026, 5, 9));
    assert_eq!(
        who(&assignments),
        [
            ("psc-17", Respondent::ParentGuardian, Some(MOTHER)),
            ("psc-17", Respondent::ParentGuardian, Some(FATHER)),
        ]
    );
    assert!(assignments.iter().all(|a| a.rule == 0));
}

#[test]
fn on_the_12th_birthday_the_patient_answers_the_phq_a_and_guardians_nothing() {
    let assignments = evaluate(&family_mood(), &child(), date(2026, 5, 10));
    assert_eq!(who(&assignments), [("phq-a", Respondent::Patient, None)]);
    // Guardians still have access: they just have nothing to answer.
    assert_eq!(
        guardians_with_access(&family_mood(), &child(), date(2026, 5, 10)),
        [MOTHER, FATHER]
    );
}

#[test]
fn on_the_18th_birthday_guardians_lose_access_and_the_patient_answers_the_phq9() {
    let def = family_mood();
    let facts = child();
    let eve = date(2032, 5, 9);
    let birthday = date(2032, 5, 10);
    assert_eq!(
        who(&evaluate(&def, &facts, eve)),
        [("phq-a", Respondent::Patient, None)]
    );
    assert!(has_access(&def, &facts, MOTHER, eve));
    assert_eq!(
        who(&evaluate(&def, &facts, birthday)),
        [("phq-9", Respondent::Patient, None)]
    );
    assert!(!has_access(&def, &facts, MOTHER, birthday));
    assert!(!has_access(&def, &facts, FATHER, birthday));
    assert!(guardians_with_access(&def, &facts, birthday).is_empty());
}

#[test]
fn a_rule_answered_by_guardians_gives_nothing_once_they_lose_access_whatever_its_ages() {
    // A plan with a lower age of access: at 16 guardians stop answering the PSC-17
    // even though the rule itself runs to 17.
    let def = PlanDefinition {
        rules: vec![InstrumentRule {
            when: Condition {
                age_from: Some(4),
                age_until: Some(16),
                guardian: None,
            },
            instrument: InstrumentCode::new_unchecked("psc-17"),
            respondent: Respondent::ParentGuardian,
        }],
        guardian_access_until_age: 16,
        ..family_mood()
    };
    assert_eq!(def.validate(), Ok(()));
    assert_eq!(evaluate(&def, &child(), date(2030, 5, 9)).len(), 2);
    assert!(evaluate(&def, &child(), date(2030, 5, 10)).is_empty());
}

#[test]
fn a_child_born_on_the_29th_of_february_turns_18_on_the_1st_of_march() {
    let def = family_mood();
    let facts = PatientFacts {
        birth_date: Some(date(2008, 2, 29)),
        guardians: vec![guardian(MOTHER, date(2008, 2, 29), None)],
    };
    // 2026 is a common year: 17 on 28 February, 18 on 1 March.
    assert_eq!(
        who(&evaluate(&def, &facts, date(2026, 2, 28))),
        [("phq-a", Respondent::Patient, None)]
    );
    assert!(has_access(&def, &facts, MOTHER, date(2026, 2, 28)));
    assert_eq!(
        who(&evaluate(&def, &facts, date(2026, 3, 1))),
        [("phq-9", Respondent::Patient, None)]
    );
    assert!(!has_access(&def, &facts, MOTHER, date(2026, 3, 1)));
    assert_eq!(
        next_change(&def, &facts, date(2026, 2, 28)),
        Some(date(2026, 3, 1))
    );
    // 2020 is a leap year: 12 on 29 February itself.
    assert_eq!(
        who(&evaluate(&def, &facts, date(2020, 2, 28))),
        [("psc-17", Respondent::ParentGuardian, Some(MOTHER))]
    );
    assert_eq!(
        who(&evaluate(&def, &facts, date(2020, 2, 29))),
        [("phq-a", Respondent::Patient, None)]
    );
}

#[test]
fn a_guardian_answers_from_the_day_they_start_until_the_day_before_they_end() {
    let def = family_mood();
    let facts = PatientFacts {
        birth_date: Some(date(2016, 1, 1)),
        guardians: vec![
            guardian(MOTHER, date(2016, 1, 1), Some(date(2024, 9, 1))),
            guardian(FOSTER, date(2024, 9, 1), None),
        ],
    };
    assert_eq!(
        who(&evaluate(&def, &facts, date(2024, 8, 31))),
        [("psc-17", Respondent::ParentGuardian, Some(MOTHER))]
    );
    assert_eq!(
        who(&evaluate(&def, &facts, date(2024, 9, 1))),
        [("psc-17", Respondent::ParentGuardian, Some(FOSTER))]
    );
    assert_eq!(
        next_change(&def, &facts, date(2024, 6, 1)),
        Some(date(2024, 9, 1))
    );
    assert!(!has_access(&def, &facts, MOTHER, date(2024, 9, 1)));
    assert!(has_access(&def, &facts, FOSTER, date(2024, 9, 1)));
}

#[test]
fn a_guardian_recorded_twice_answers_once() {
    let facts = PatientFacts {
        birth_date: Some(date(2016, 1, 1)),
        guardians: vec![
            guardian(MOTHER, date(2016, 1, 1), None),
            guardian(MOTHER, date(2018, 1, 1), None),
        ],
    };
    assert_eq!(evaluate(&family_mood(), &facts, date(2022, 1, 1)).len(), 1);
}

#[test]
fn without_a_birth_date_no_age_rule_applies_and_no_guardian_has_access() {
    let facts = PatientFacts {
        birth_date: None,
        ..child()
    };
    let def = family_mood();
    assert!(evaluate(&def, &facts, date(2022, 1, 1)).is_empty());
    assert!(!has_access(&def, &facts, MOTHER, date(2022, 1, 1)));
    // Only a guardian's start or end can change anything now.
    let facts = PatientFacts {
        birth_date: None,
        guardians: vec![guardian(MOTHER, date(2025, 1, 1), None)],
    };
    assert_eq!(
        next_change(&def, &facts, date(2022, 1, 1)),
        Some(date(2025, 1, 1))
    );
    assert_eq!(next_change(&def, &facts, date(2025, 1, 1)), None);
}

#[test]
fn under_four_nothing_is_assigned_and_the_fourth_birthday_is_the_next_change() {
    let def = family_mood();
    let facts = child();
    assert!(evaluate(&def, &facts, date(2018, 5, 9)).is_empty());
    assert_eq!(
        next_change(&def, &facts, date(2016, 1, 1)),
        Some(date(2018, 5, 10))
    );
    assert_eq!(evaluate(&def, &facts, date(2018, 5, 10)).len(), 2);
    // After the 18th birthday nothing changes any more.
    assert_eq!(next_change(&def, &facts, date(2032, 5, 10)), None);
}

#[test]
fn a_guardian_condition_chooses_between_rules_by_whether_a_guardian_has_access() {
    let rule = |guardian, instrument| InstrumentRule {
        when: Condition {
            age_from: Some(12),
            age_until: Some(18),
            guardian: Some(guardian),
        },
        instrument: InstrumentCode::new_unchecked(instrument),
        respondent: Respondent::Patient,
    };
    let def = PlanDefinition {
        rules: vec![
            rule(GuardianRequirement::Present, "phq-a"),
            rule(GuardianRequirement::Absent, "phq-9"),
        ],
        ..family_mood()
    };
    // (A PHQ-9 for a minor would not validate; the rules are evaluated as written.)
    let with = child();
    let without = PatientFacts {
        guardians: vec![],
        ..child()
    };
    assert_eq!(
        who(&evaluate(&def, &with, date(2027, 1, 1))),
        [("phq-a", Respondent::Patient, None)]
    );
    assert_eq!(
        who(&evaluate(&def, &without, date(2027, 1, 1))),
        [("phq-9", Respondent::Patient, None)]
    );
}

// ---------------------------------------------------------------------------------
// next_change predicts every change

fn any_date(from_year: i16, to_year: i16) -> impl Strategy<Value = Date> {
    let first = date(from_year, 1, 1);
    let n_days = i64::from(date(to_year, 1, 1).since(first).unwrap().get_days());
    (0..n_days).prop_map(move |offset| first.checked_add(offset.days()).unwrap())
}

fn any_rule() -> impl Strategy<Value = InstrumentRule> {
    (
        proptest::option::of(0u8..20),
        proptest::option::of(1u8..21),
        proptest::option::of(prop_oneof![
            Just(GuardianRequirement::Present),
            Just(GuardianRequirement::Absent)
        ]),
        proptest::sample::select(vec![
            ("psc-17", Respondent::ParentGuardian),
            ("phq-a", Respondent::Patient),
            ("phq-9", Respondent::Patient),
            ("gad-7", Respondent::Clinician),
        ]),
    )
        .prop_map(
            |(age_from, age_until, guardian, (instrument, respondent))| InstrumentRule {
                when: Condition {
                    age_from,
                    age_until,
                    guardian,
                },
                instrument: InstrumentCode::new_unchecked(instrument),
                respondent,
            },
        )
}

fn any_facts() -> impl Strategy<Value = PatientFacts> {
    let guardian = (
        proptest::sample::select(vec![MOTHER, FATHER, FOSTER]),
        any_date(2000, 2030),
        proptest::option::of(1i64..4_000),
    )
        .prop_map(|(person_id, since, length)| Guardian {
            person_id,
            since,
            until: length.map(|days| since.checked_add(days.days()).unwrap()),
        });
    (
        proptest::option::weighted(0.9, any_date(1996, 2012)),
        proptest::collection::vec(guardian, 0..4),
    )
        .prop_map(|(birth_date, guardians)| PatientFacts {
            birth_date,
            guardians,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Walking every day, the answer changes only on the day `next_change` named the
    /// day before.
    #[test]
    fn evaluate_and_access_change_only_on_the_dates_next_change_predicts(
        rules in proptest::collection::vec(any_rule(), 1..5),
        access_age in 14u8..=21,
        facts in any_facts(),
        start in any_date(1996, 2000),
    ) {
        let def = PlanDefinition {
            rules,
            guardian_access_until_age: access_age,
            ..family_mood()
        };
        let state = |on: Date| (evaluate(&def, &facts, on), guardians_with_access(&def, &facts, on));
        let mut previous_day = start;
        let mut previous = state(start);
        let mut predicted = next_change(&def, &facts, start);
        let end = date(2035, 1, 1);
        while previous_day < end {
            let day = previous_day.tomorrow().unwrap();
            let current = state(day);
            if current != previous {
                prop_assert_eq!(predicted, Some(day), "a change on {} not predicted", day);
                prop_assert_eq!(next_change(&def, &facts, previous_day), Some(day));
            }
            if predicted == Some(day) || current != previous {
                predicted = next_change(&def, &facts, day);
            }
            prop_assert!(predicted.is_none_or(|next| next > day));
            previous_day = day;
            previous = current;
        }
    }
}
