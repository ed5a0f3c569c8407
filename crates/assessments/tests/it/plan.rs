//! Plan definitions: the JSON form, validation naming the rule and field, the
//! example plan, stop conditions, and the instances a plan calls for.

use std::collections::BTreeSet;

use assessments::plan::examples::family_mood;
use assessments::{
    Cadence, Condition, Guardian, GuardianRequirement, InstrumentCode, InstrumentRule,
    PatientFacts, PlanDefinition, PlanError, Respondent, StopConditions, StopReason, Window,
    instances,
};
use jiff::Timestamp;
use jiff::civil::{date, time};
use jiff::tz::TimeZone;
use serde_json::json;
use uuid::Uuid;

fn ts(text: &str) -> Timestamp {
    text.parse().unwrap()
}

#[test]
fn the_family_plan_is_valid_and_its_json_form_is_stable() {
    let def = family_mood();
    assert_eq!(def.validate(), Ok(()));
    let stored = json!({
        "rules": [
            { "when": { "age_from": 4, "age_until": 12 }, "instrument": "psc-17", "respondent": "parent_guardian" },
            { "when": { "age_from": 12, "age_until": 18 }, "instrument": "phq-a", "respondent": "patient" },
            { "when": { "age_from": 18 }, "instrument": "phq-9", "respondent": "patient" }
        ],
        "cadence": { "every_days": 28, "every_sessions": 4 },
        "window": { "before_days": 3, "after_days": 7 },
        "local_time": "09:00",
        "stop": { "after_days": 365, "on_remission": false },
        "guardian_access_until_age": 18
    });
    assert_eq!(serde_json::to_value(&def).unwrap(), stored);
    let read: PlanDefinition = serde_json::from_value(stored).unwrap();
    assert_eq!(read, def);
}

#[test]
fn optional_fields_take_their_defaults() {
    let def: PlanDefinition = serde_json::from_value(json!({
        "rules": [{ "when": { "age_from": 18 }, "instrument": "gad-7", "respondent": "patient" }],
        "cadence": { "every_months": 1 },
        "window": { "before_days": 2, "after_days": 5 }
    }))
    .unwrap();
    assert_eq!(def.local_time, time(9, 0, 0, 0));
    assert_eq!(def.stop, StopConditions::default());
    assert_eq!(def.guardian_access_until_age, 18);
    assert_eq!(def.validate(), Ok(()));
}

#[test]
fn a_misspelt_or_malformed_field_is_refused_rather_than_defaulted() {
    let base = serde_json::to_value(family_mood()).unwrap();
    let broken: [(&str, serde_json::Value); 12] = [
        ("/cadense", json!({})),
        ("/cadence/every_day", json!(7)),
        ("/window/before", json!(1)),
        ("/stop/after_day", json!(30)),
        ("/rules/0/instrumnet", json!("phq-9")),
        ("/rules/0/when/age_form", json!(4)),
        ("/rules/0/respondent", json!("parent")),
        ("/rules/0/instrument", json!("PHQ-9")),
        ("/local_time", json!("9:00")),
        ("/local_time", json!("24:00")),
        ("/local_time", json!("09:00:00")),
        ("/rules/0/when/guardian", json!("sometimes")),
    ];
    for (pointer, value) in broken {
        let mut plan = base.clone();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        plan.pointer_mut(parent)
            .unwrap()
            .as_object_mut()
            .unwrap()
            .insert(key.to_owned(), value.clone());
        assert!(
            serde_json::from_value::<PlanDefinition>(plan).is_err(),
            "{pointer} = {value} was accepted"
        );
    }
}

fn rule(
    age_from: Option<u8>,
    age_until: Option<u8>,
    instrument: &'static str,
    respondent: Respondent,
) -> InstrumentRule {
    InstrumentRule {
        when: Condition {
            age_from,
            age_until,
            guardian: None,
        },
        instrument: InstrumentCode::new_unchecked(instrument),
        respondent,
    }
}

/// The family plan with its rules replaced.
fn with_rules(rules: Vec<InstrumentRule>) -> PlanDefinition {
    PlanDefinition {
        rules,
        ..family_mood()
    }
}

fn with_cadence(cadence: Cadence, before_days: u32, after_days: u32) -> PlanDefinition {
    PlanDefinition {
        cadence,
        window: Window {
            before_days,
            after_days,
        },
        ..family_mood()
    }
}

#[test]
fn validation_names_the_rule_and_the_field_at_fault() {
    let adults = |code| rule(Some(18), None, code, Respondent::Patient);
    let cases: Vec<(PlanDefinition, PlanError, &str)> = vec![
        (with_rules(vec![]), PlanError::NoRules, "rules"),
        (
            with_rules(vec![adults("phq-9"), adults("bdi-2")]),
            PlanError::UnknownInstrument {
                rule: 1,
                instrument: InstrumentCode::new_unchecked("bdi-2"),
            },
            "rules[1].instrument",
        ),
        (
            with_rules(vec![rule(
                Some(18),
                None,
                "phq-9",
                Respondent::ParentGuardian,
            )]),
            PlanError::RespondentNotAllowed {
                rule: 0,
                instrument: InstrumentCode::new_unchecked("phq-9"),
                respondent: Respondent::ParentGuardian,
            },
            "rules[0].respondent",
        ),
        (
            with_rules(vec![rule(Some(4), Some(12), "psc-17", Respondent::Patient)]),
            PlanError::RespondentNotAllowed {
                rule: 0,
                instrument: InstrumentCode::new_unchecked("psc-17"),
                respondent: Respondent::Patient,
            },
            "rules[0].respondent",
        ),
        (
            with_rules(vec![
                adults("phq-9"),
                rule(Some(2), Some(12), "psc-17", Respondent::ParentGuardian),
            ]),
            PlanError::AgesOutsideInstrument {
                rule: 1,
                instrument: InstrumentCode::new_unchecked("psc-17"),
                age_from: 2,
                age_until: Some(12),
                instrument_min: 4,
                instrument_max: Some(17),
            },
            "rules[1].when",
        ),
        (
            // The PHQ-9 is for adults; a rule without ages would give it to children.
            with_rules(vec![rule(None, None, "phq-9", Respondent::Patient)]),
            PlanError::AgesOutsideInstrument {
                rule: 0,
                instrument: InstrumentCode::new_unchecked("phq-9"),
                age_from: 0,
                age_until: None,
                instrument_min: 18,
                instrument_max: None,
            },
            "rules[0].when",
        ),
        (
            // The PHQ-A runs to 18 inclusive: until 19 fits, until 20 does not.
            with_rules(vec![rule(Some(12), Some(20), "phq-a", Respondent::Patient)]),
            PlanError::AgesOutsideInstrument {
                rule: 0,
                instrument: InstrumentCode::new_unchecked("phq-a"),
                age_from: 12,
                age_until: Some(20),
                instrument_min: 12,
                instrument_max: Some(18),
            },
            "rules[0].when",
        ),
        (
            with_rules(vec![rule(Some(12), Some(12), "phq-a", Respondent::Patient)]),
            PlanError::EmptyAgeRange { rule: 0 },
            "rules[0].when.age_until",
        ),
        (
            // Guardians lose access at 16 here, but the PSC-17 rule runs to 17.
            PlanDefinition {
                guardian_access_until_age: 16,
                ..with_rules(vec![rule(
                    Some(4),
                    Some(18),
                    "psc-17",
                    Respondent::ParentGuardian,
                )])
            },
            PlanError::GuardianRuleBeyondAccess {
                rule: 0,
                guardian_access_until_age: 16,
            },
            "rules[0].when.age_until",
        ),
        (
            with_rules(vec![InstrumentRule {
                when: Condition {
                    guardian: Some(GuardianRequirement::Absent),
                    ..family_mood().rules[0].when
                },
                ..family_mood().rules[0].clone()
            }]),
            PlanError::GuardianRuleWithoutGuardian { rule: 0 },
            "rules[0].when.guardian",
        ),
        (
            with_cadence(Cadence::default(), 1, 1),
            PlanError::NoCadence,
            "cadence",
        ),
        (
            with_cadence(
                Cadence {
                    every_days: Some(14),
                    every_months: Some(1),
                    every_sessions: None,
                },
                1,
                1,
            ),
            PlanError::DaysAndMonths,
            "cadence.every_months",
        ),
        (
            with_cadence(
                Cadence {
                    every_sessions: Some(0),
                    ..Cadence::default()
                },
                1,
                1,
            ),
            PlanError::CadenceOutOfRange {
                field: "every_sessions",
                max: 100,
            },
            "cadence.every_sessions",
        ),
        (
            with_cadence(
                Cadence {
                    every_days: Some(28),
                    ..Cadence::default()
                },
                20,
                8,
            ),
            PlanError::WindowOverlapsPeriod {
                window_days: 28,
                period_days: 28,
            },
            "window",
        ),
        (
            // A month can be as short as a February.
            with_cadence(
                Cadence {
                    every_months: Some(1),
                    ..Cadence::default()
                },
                7,
                21,
            ),
            PlanError::WindowOverlapsPeriod {
                window_days: 28,
                period_days: 28,
            },
            "window",
        ),
        (
            with_cadence(
                Cadence {
                    every_sessions: Some(1),
                    ..Cadence::default()
                },
                0,
                0,
            ),
            PlanError::EmptyWindow,
            "window",
        ),
        (
            with_cadence(
                Cadence {
                    every_sessions: Some(1),
                    ..Cadence::default()
                },
                400,
                0,
            ),
            PlanError::WindowTooLong {
                field: "before_days",
            },
            "window.before_days",
        ),
        (
            PlanDefinition {
                stop: StopConditions {
                    after_responses: Some(0),
                    ..StopConditions::default()
                },
                ..family_mood()
            },
            PlanError::StopAfterNoResponses,
            "stop.after_responses",
        ),
    ];
    for (def, error, field) in cases {
        let refused = def
            .validate()
            .expect_err(&format!("accepted, expected {error}"));
        assert_eq!(refused, error);
        assert_eq!(refused.field(), field, "{refused}");
        assert!(
            refused.to_string().starts_with(&format!("{field}: ")),
            "{refused}"
        );
    }
}

#[test]
fn validation_accepts_the_edges_it_should() {
    // Just short of the period, monthly: 27 days of window.
    let def = with_cadence(
        Cadence {
            every_months: Some(1),
            every_sessions: Some(3),
            every_days: None,
        },
        7,
        20,
    );
    assert_eq!(def.validate(), Ok(()));
    // Sessions only: no calendar period to fit in.
    let def = with_cadence(
        Cadence {
            every_sessions: Some(1),
            ..Cadence::default()
        },
        30,
        60,
    );
    assert_eq!(def.validate(), Ok(()));
    // The PHQ-A to its last age.
    let def = with_rules(vec![rule(Some(12), Some(19), "phq-a", Respondent::Patient)]);
    assert_eq!(def.validate(), Ok(()));
}

#[test]
fn an_age_error_reads_in_whole_years_inclusive() {
    let refused = with_rules(vec![rule(
        Some(2),
        Some(12),
        "psc-17",
        Respondent::ParentGuardian,
    )])
    .validate()
    .unwrap_err();
    assert_eq!(
        refused.to_string(),
        "rules[0].when: the rule's ages (2–11) are not all within the ages psc-17 is meant for (4–17)"
    );
}

#[test]
fn stop_conditions_on_responses_and_remission_end_the_plan_when_set() {
    let stop = StopConditions {
        after_days: None,
        after_responses: Some(6),
        on_remission: true,
    };
    assert_eq!(stop.reached(5, false), None);
    assert_eq!(stop.reached(6, false), Some(StopReason::Responses));
    assert_eq!(stop.reached(2, true), Some(StopReason::Remission));
    assert_eq!(StopConditions::default().reached(1_000, true), None);
}

const MOTHER: Uuid = Uuid::from_u128(0xa1);
const FATHER: Uuid = Uuid::from_u128(0xb2);

/// A child who turns 12 on 2025-06-15; the father's guardianship ended on 2025-03-01.
fn child_turning_twelve() -> PatientFacts {
    PatientFacts {
        birth_date: Some(date(2013, 6, 15)),
        guardians: vec![
            Guardian {
                person_id: MOTHER,
                since: date(2013, 6, 15),
                until: None,
            },
            Guardian {
                person_id: FATHER,
                since: date(2013, 6, 15),
                until: Some(date(2025, 3, 1)),
            },
        ],
    }
}

#[test]
fn a_backfill_over_a_past_year_gives_each_instance_that_should_have_existed_once() {
    let def = family_mood();
    let tz = TimeZone::get("Europe/London").unwrap();
    let anchor = ts("2025-01-06T10:00:00Z");
    let from = ts("2025-01-01T00:00:00Z");
    let until = ts("2026-02-01T00:00:00Z");
    let planned = instances(&def, &child_turning_twelve(), anchor, &tz, &[], from, until);

    // Every 28 days from 6 January for 365 days: 14 slots.
    let slots: BTreeSet<u32> = planned.iter().map(|p| p.slot.seq).collect();
    assert_eq!(slots, (0..14).collect());
    for instance in &planned {
        let on = instance.slot.due_on;
        let expected: Vec<(&str, Option<Uuid>)> = if on < date(2025, 3, 1) {
            vec![("psc-17", Some(MOTHER)), ("psc-17", Some(FATHER))]
        } else if on < date(2025, 6, 15) {
            vec![("psc-17", Some(MOTHER))]
        } else {
            vec![("phq-a", None)]
        };
        let at_slot: Vec<(&str, Option<Uuid>)> = planned
            .iter()
            .filter(|other| other.slot.seq == instance.slot.seq)
            .map(|other| {
                (
                    other.assignment.instrument.as_str(),
                    other.assignment.respondent_person,
                )
            })
            .collect();
        assert_eq!(at_slot, expected, "on {on}");
    }
    let keys: BTreeSet<String> = planned.iter().map(|p| p.key()).collect();
    assert_eq!(keys.len(), planned.len(), "keys are unique");
    assert!(keys.contains(&format!("k:0/psc-17/parent_guardian/{FATHER}")));
    assert!(keys.contains("k:13/phq-a/patient"));
    // Running it again gives the same instances and keys.
    assert_eq!(
        instances(&def, &child_turning_twelve(), anchor, &tz, &[], from, until),
        planned
    );
}
