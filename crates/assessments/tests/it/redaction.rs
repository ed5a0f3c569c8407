//! Answers, scores and changes are health information: `Debug` and error messages
//! never carry them.

use assessments::{Answers, Guardian, PatientFacts, Respondent, ScoreError, progress, score};
use jiff::civil::date;
use uuid::Uuid;

use crate::{answers, answers_with_total, instrument, scored};

#[test]
fn answers_debug_shows_who_answered_and_how_many_but_never_the_answers() {
    let answers = Answers::new(Respondent::Patient)
        .answer("1", 3)
        .answer("9", 2);
    assert_eq!(
        format!("{answers:?}"),
        "Answers { respondent: Patient, n_answers: 2, values: [redacted] }"
    );
}

#[test]
fn score_debug_names_the_instrument_only() {
    let phq_9 = instrument("phq-9");
    let score = scored(phq_9, &answers_with_total(phq_9, 23));
    assert_eq!(
        format!("{score:?}"),
        "Score { instrument: phq-9@1, values: [redacted] }"
    );
    let subscales = format!(
        "{:?}",
        scored(
            instrument("pcl-5"),
            &answers_with_total(instrument("pcl-5"), 47)
        )
        .subscales()
    );
    assert!(
        !subscales.contains("47") && !subscales.contains("total"),
        "{subscales}"
    );
}

#[test]
fn progress_debug_prints_no_values() {
    let phq_9 = instrument("phq-9");
    let baseline = scored(phq_9, &answers_with_total(phq_9, 21));
    let current = scored(phq_9, &answers_with_total(phq_9, 8));
    let progress = progress(&baseline, Some(&baseline), &current).unwrap();
    assert_eq!(format!("{progress:?}"), "Progress { [redacted] }");
    assert_eq!(
        format!("{:?}", progress.since_baseline()),
        "Change { [redacted] }"
    );
}

#[test]
fn error_messages_name_items_never_the_answers_given() {
    let gad_7 = instrument("gad-7");
    let not_an_option = score(gad_7, &answers(&[("3", 97)])).unwrap_err();
    assert_eq!(
        not_an_option.to_string(),
        "the answer to item 3 is not one of its options"
    );
    assert!(!format!("{not_an_option:?}").contains("97"));

    let too_many_missing = score(gad_7, &answers(&[("1", 3), ("2", 3)])).unwrap_err();
    assert_eq!(
        too_many_missing.to_string(),
        "unanswered items: 3, 4, 5, 6, 7; the instrument is valid with at most 2 missing"
    );
}

#[test]
fn an_unknown_item_key_that_could_carry_free_text_is_not_echoed() {
    let phq_9 = instrument("phq-9");
    let error = score(phq_9, &answers(&[("Jane Doe, born 1980-02-03", 1)])).unwrap_err();
    assert!(matches!(&error, ScoreError::UnknownItem { item } if item.as_str().is_none()));
    assert_eq!(
        error.to_string(),
        "an answer names item [not shown], which this instrument does not have"
    );
    assert!(!format!("{error:?}").contains("Jane"));
}

#[test]
fn patient_facts_debug_shows_no_birth_date_and_no_guardianship_dates() {
    let facts = PatientFacts {
        birth_date: Some(date(2013, 6, 15)),
        guardians: vec![Guardian {
            person_id: Uuid::from_u128(7),
            since: date(2019, 4, 2),
            until: Some(date(2024, 11, 30)),
        }],
    };
    let shown = format!("{facts:?}");
    for secret in ["2013", "06-15", "2019", "2024", "15"] {
        assert!(!shown.contains(secret), "{shown}");
    }
    assert!(shown.contains("birth_date_known: true") && shown.contains("[redacted]"));
}
