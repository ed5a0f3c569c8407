//! Worked examples from the manuals, boundaries of every band, and the refusals.

use assessments::{Answers, Flag, Respondent, ScoreError, score};
use assessments::{Instrument, Score};

use crate::{answers, answers_with_total, every_scored_item_at, instrument, scored};

/// Scores a total built from complete answers and returns its band's code.
fn band_of(code: &'static str, total: u16) -> &'static str {
    let instrument = instrument(code);
    let score = scored(instrument, &answers_with_total(instrument, total));
    assert_eq!(score.total(), total);
    score.band().code()
}

#[test]
fn phq9_with_every_item_at_one_scores_nine_which_is_mild() {
    let phq_9 = instrument("phq-9");
    let score = scored(phq_9, &every_scored_item_at(phq_9, 1));
    assert_eq!(score.total(), 9);
    assert_eq!(score.band().code(), "mild");
    assert_eq!(score.positive_screen(), Some(false));
    assert!(!score.is_prorated());
    // Item 9 at 1 is among them: the flag is raised whatever the band.
    assert!(score.has_flag(Flag::SelfHarm));
}

#[test]
fn phq9_bands_change_exactly_at_five_ten_fifteen_and_twenty() {
    for (total, band) in [
        (0, "minimal"),
        (4, "minimal"),
        (5, "mild"),
        (9, "mild"),
        (10, "moderate"),
        (14, "moderate"),
        (15, "moderately-severe"),
        (19, "moderately-severe"),
        (20, "severe"),
        (27, "severe"),
    ] {
        assert_eq!(band_of("phq-9", total), band, "PHQ-9 total {total}");
    }
}

#[test]
fn gad7_bands_change_exactly_at_five_ten_and_fifteen() {
    for (total, band) in [
        (0, "minimal"),
        (4, "minimal"),
        (5, "mild"),
        (9, "mild"),
        (10, "moderate"),
        (14, "moderate"),
        (15, "severe"),
        (21, "severe"),
    ] {
        assert_eq!(band_of("gad-7", total), band, "GAD-7 total {total}");
    }
}

#[test]
fn phq2_and_gad2_screen_positive_from_three() {
    for code in ["phq-2", "gad-2"] {
        for (total, band, positive) in [
            (0, "negative", false),
            (2, "negative", false),
            (3, "positive", true),
            (6, "positive", true),
        ] {
            assert_eq!(band_of(code, total), band, "{code} total {total}");
            let instrument = instrument(code);
            let score = scored(instrument, &answers_with_total(instrument, total));
            assert_eq!(
                score.positive_screen(),
                Some(positive),
                "{code} total {total}"
            );
        }
    }
}

#[test]
fn pcl5_totals_run_from_0_to_80_with_the_cut_point_at_33() {
    for (total, band) in [
        (0, "below-cut-point"),
        (32, "below-cut-point"),
        (33, "probable-ptsd"),
        (80, "probable-ptsd"),
    ] {
        assert_eq!(band_of("pcl-5", total), band, "PCL-5 total {total}");
    }
    let pcl_5 = instrument("pcl-5");
    assert_eq!(
        scored(pcl_5, &answers_with_total(pcl_5, 32)).positive_screen(),
        Some(false)
    );
    assert_eq!(
        scored(pcl_5, &answers_with_total(pcl_5, 33)).positive_screen(),
        Some(true)
    );
}

#[test]
fn phq_a_uses_the_phq9_bands_and_the_adolescent_cut_point_of_eleven() {
    for (total, band) in [
        (4, "minimal"),
        (5, "mild"),
        (10, "moderate"),
        (15, "moderately-severe"),
        (20, "severe"),
    ] {
        assert_eq!(band_of("phq-a", total), band, "PHQ-A total {total}");
    }
    let phq_a = instrument("phq-a");
    assert_eq!(
        scored(phq_a, &answers_with_total(phq_a, 10)).positive_screen(),
        Some(false)
    );
    assert_eq!(
        scored(phq_a, &answers_with_total(phq_a, 11)).positive_screen(),
        Some(true)
    );
}

#[test]
fn phq9_item_nine_above_zero_flags_self_harm_even_with_a_minimal_total() {
    let answers = answers(&[
        ("1", 1),
        ("2", 1),
        ("3", 0),
        ("4", 0),
        ("5", 0),
        ("6", 0),
        ("7", 0),
        ("8", 0),
        ("9", 1),
    ]);
    let score = scored(instrument("phq-9"), &answers);
    assert_eq!(score.total(), 3);
    assert_eq!(score.band().code(), "minimal");
    assert!(score.has_flag(Flag::SelfHarm));
    assert!(score.is_urgent());
}

#[test]
fn phq9_item_nine_at_zero_raises_no_flag_even_with_a_severe_total() {
    let answers = answers(&[
        ("1", 3),
        ("2", 3),
        ("3", 3),
        ("4", 3),
        ("5", 3),
        ("6", 3),
        ("7", 3),
        ("8", 3),
        ("9", 0),
    ]);
    let score = scored(instrument("phq-9"), &answers);
    assert_eq!(score.total(), 24);
    assert_eq!(score.band().code(), "severe");
    assert!(score.flags().is_empty());
    assert!(!score.is_urgent());
}

#[test]
fn phq9_with_one_missing_item_is_prorated_from_the_mean_of_the_others() {
    let answers = answers(&[
        ("1", 1),
        ("2", 1),
        ("3", 1),
        ("4", 1),
        ("6", 1),
        ("7", 1),
        ("8", 1),
        ("9", 1),
    ]);
    let score = scored(instrument("phq-9"), &answers);
    assert_eq!(score.total(), 9);
    assert!(score.is_prorated());
    assert_eq!(score.prorated_items(), ["5"]);
}

#[test]
fn phq9_with_two_missing_items_rounds_the_prorated_total_to_the_nearest_point() {
    // Seven answers summing to 10: 10 × 9 / 7 = 12.86, which rounds to 13.
    let answers = answers(&[
        ("1", 2),
        ("2", 2),
        ("3", 2),
        ("4", 1),
        ("5", 1),
        ("6", 1),
        ("9", 1),
    ]);
    let score = scored(instrument("phq-9"), &answers);
    assert_eq!(score.total(), 13);
    assert_eq!(score.band().code(), "moderate");
    assert_eq!(score.prorated_items(), ["7", "8"]);
}

#[test]
fn phq9_with_three_missing_items_is_refused_naming_them() {
    let answers = answers(&[("1", 1), ("3", 1), ("4", 1), ("5", 1), ("7", 1), ("9", 0)]);
    assert_eq!(
        score(instrument("phq-9"), &answers).unwrap_err(),
        ScoreError::TooManyMissing {
            missing: vec!["2", "6", "8"],
            missing_items_max: 2,
        }
    );
}

#[test]
fn phq9_without_item_nine_is_prorated_but_flags_the_unasked_safety_question() {
    let answers = answers(&[
        ("1", 2),
        ("2", 2),
        ("3", 2),
        ("4", 2),
        ("5", 2),
        ("6", 2),
        ("7", 2),
        ("8", 2),
    ]);
    let score = scored(instrument("phq-9"), &answers);
    assert_eq!(score.total(), 18);
    assert!(score.has_flag(Flag::SafetyItemUnanswered));
    assert!(!score.has_flag(Flag::SelfHarm));
}

#[test]
fn phq9_difficulty_question_is_recorded_but_never_scored() {
    let phq_9 = instrument("phq-9");
    let without = scored(phq_9, &every_scored_item_at(phq_9, 2));
    let with = scored(
        phq_9,
        &every_scored_item_at(phq_9, 2).answer("difficulty", 3),
    );
    assert_eq!(without.total(), 18);
    assert_eq!(with.total(), 18);
    assert_eq!(without.unanswered_items(), ["difficulty"]);
    assert!(with.unanswered_items().is_empty());
}

#[test]
fn gad7_prorates_two_missing_items_and_refuses_three() {
    let gad_7 = instrument("gad-7");
    let five = answers(&[("1", 3), ("2", 3), ("3", 2), ("4", 2), ("5", 2)]);
    // 12 × 7 / 5 = 16.8, which rounds to 17.
    let prorated = scored(gad_7, &five);
    assert_eq!(prorated.total(), 17);
    assert_eq!(prorated.band().code(), "severe");
    assert_eq!(prorated.prorated_items(), ["6", "7"]);

    let four = answers(&[("1", 3), ("2", 3), ("3", 2), ("4", 2)]);
    assert_eq!(
        score(gad_7, &four).unwrap_err(),
        ScoreError::TooManyMissing {
            missing: vec!["5", "6", "7"],
            missing_items_max: 2,
        }
    );
}

#[test]
fn gad7_with_every_item_at_three_scores_the_maximum_of_21() {
    let gad_7 = instrument("gad-7");
    let score = scored(gad_7, &every_scored_item_at(gad_7, 3));
    assert_eq!(score.total(), 21);
    assert_eq!(score.band().code(), "severe");
    assert_eq!(score.positive_screen(), Some(true));
}

#[test]
fn screeners_refuse_a_form_with_either_item_missing() {
    for code in ["phq-2", "gad-2"] {
        assert_eq!(
            score(instrument(code), &answers(&[("1", 3)])).unwrap_err(),
            ScoreError::TooManyMissing {
                missing: vec!["2"],
                missing_items_max: 0,
            },
            "{code}"
        );
    }
}

/// The PCL-5 answers with `endorsed` items at 2 and every other item at `rest`.
fn pcl5(endorsed: &[&str], rest: u8) -> Answers {
    let pcl_5 = instrument("pcl-5");
    pcl_5
        .scored_items()
        .fold(Answers::new(Respondent::Patient), |answers, item| {
            let value = if endorsed.contains(&item.code()) {
                2
            } else {
                rest
            };
            answers.answer(item.code(), value)
        })
}

#[test]
fn pcl5_meeting_every_cluster_with_a_low_total_is_a_provisional_diagnosis_below_the_cut_point() {
    // One B, one C, two D and two E items at "moderately": the DSM-5 rule is met with
    // a total of only 12.
    let score = scored(
        instrument("pcl-5"),
        &pcl5(&["1", "6", "8", "9", "15", "16"], 0),
    );
    assert_eq!(score.total(), 12);
    assert_eq!(score.provisional_diagnosis(), Some(true));
    assert_eq!(score.positive_screen(), Some(false));
    let clusters: Vec<_> = score
        .subscales()
        .iter()
        .map(|cluster| {
            (
                cluster.code(),
                cluster.total(),
                cluster.n_endorsed(),
                cluster.criterion_met(),
            )
        })
        .collect();
    assert_eq!(
        clusters,
        [
            ("B", 2, 1, Some(true)),
            ("C", 2, 1, Some(true)),
            ("D", 4, 2, Some(true)),
            ("E", 4, 2, Some(true)),
        ]
    );
}

#[test]
fn pcl5_with_one_endorsed_d_item_has_no_provisional_diagnosis() {
    let score = scored(instrument("pcl-5"), &pcl5(&["1", "6", "8", "15", "16"], 1));
    assert_eq!(score.provisional_diagnosis(), Some(false));
    assert_eq!(score.subscale("D").unwrap().n_endorsed(), 1);
    assert_eq!(score.subscale("D").unwrap().criterion_met(), Some(false));
    assert_eq!(score.subscale("B").unwrap().criterion_met(), Some(true));
}

#[test]
fn pcl5_ratings_of_one_endorse_no_symptom() {
    let pcl_5 = instrument("pcl-5");
    let score = scored(pcl_5, &every_scored_item_at(pcl_5, 1));
    assert_eq!(score.total(), 20);
    assert_eq!(score.provisional_diagnosis(), Some(false));
    assert!(
        score
            .subscales()
            .iter()
            .all(|cluster| cluster.n_endorsed() == 0)
    );
}

#[test]
fn pcl5_a_high_total_without_avoidance_passes_the_cut_point_but_not_the_cluster_rule() {
    let pcl_5 = instrument("pcl-5");
    let answers = pcl_5
        .scored_items()
        .fold(Answers::new(Respondent::Patient), |answers, item| {
            let value = if ["6", "7"].contains(&item.code()) {
                1
            } else {
                4
            };
            answers.answer(item.code(), value)
        });
    let score = scored(pcl_5, &answers);
    assert_eq!(score.total(), 74);
    assert_eq!(score.positive_screen(), Some(true));
    assert_eq!(score.provisional_diagnosis(), Some(false));
    assert_eq!(score.subscale("C").unwrap().criterion_met(), Some(false));
    assert_eq!(score.subscale("C").unwrap().total(), 2);
}

#[test]
fn pcl5_refuses_a_form_with_any_item_missing() {
    let pcl_5 = instrument("pcl-5");
    let nineteen = pcl_5
        .scored_items()
        .filter(|item| item.code() != "13")
        .fold(Answers::new(Respondent::Patient), |answers, item| {
            answers.answer(item.code(), 2)
        });
    assert_eq!(
        score(pcl_5, &nineteen).unwrap_err(),
        ScoreError::TooManyMissing {
            missing: vec!["13"],
            missing_items_max: 0,
        }
    );
}

/// The PHQ-A with every symptom item at 0 and the four extra questions answered.
fn phq_a_all_clear() -> Answers {
    let phq_a = instrument("phq-a");
    every_scored_item_at(phq_a, 0)
        .answer("past-year", 0)
        .answer("difficulty", 0)
}

#[test]
fn phq_a_serious_thoughts_of_ending_ones_life_flag_self_harm_with_a_total_of_zero() {
    let answers = phq_a_all_clear()
        .answer("ideation-past-month", 1)
        .answer("attempt-lifetime", 0);
    let score = scored(instrument("phq-a"), &answers);
    assert_eq!(score.total(), 0);
    assert!(score.has_flag(Flag::SelfHarm));
    assert!(score.is_urgent());
}

#[test]
fn phq_a_item_nine_above_zero_flags_self_harm() {
    let answers = phq_a_all_clear()
        .answer("ideation-past-month", 0)
        .answer("attempt-lifetime", 0);
    let mut answers_with_item_nine = Answers::new(Respondent::Patient);
    for (item, value) in answers.iter() {
        answers_with_item_nine.push(item, if item == "9" { 2 } else { value });
    }
    let score = scored(instrument("phq-a"), &answers_with_item_nine);
    assert_eq!(score.total(), 2);
    assert!(score.has_flag(Flag::SelfHarm));
}

#[test]
fn phq_a_a_past_suicide_attempt_is_flagged_but_not_urgent() {
    let answers = phq_a_all_clear()
        .answer("ideation-past-month", 0)
        .answer("attempt-lifetime", 1);
    let score = scored(instrument("phq-a"), &answers);
    assert_eq!(
        score.flags().iter().copied().collect::<Vec<_>>(),
        [Flag::SuicideAttemptHistory]
    );
    assert!(!score.is_urgent());
}

#[test]
fn phq_a_skipped_suicide_questions_are_flagged_as_unanswered_safety_items() {
    let score = scored(instrument("phq-a"), &phq_a_all_clear());
    assert_eq!(
        score.flags().iter().copied().collect::<Vec<_>>(),
        [Flag::SafetyItemUnanswered]
    );
    assert_eq!(
        score.unanswered_items(),
        ["ideation-past-month", "attempt-lifetime"]
    );
}

#[test]
fn a_parent_cannot_answer_a_self_report_instrument() {
    let phq_a = instrument("phq-a");
    let mut by_parent = Answers::new(Respondent::ParentGuardian);
    for (item, value) in every_scored_item_at(phq_a, 1).iter() {
        by_parent.push(item, value);
    }
    assert_eq!(
        score(phq_a, &by_parent).unwrap_err(),
        ScoreError::RespondentNotAllowed {
            respondent: Respondent::ParentGuardian
        }
    );
}

#[test]
fn an_answer_to_an_item_the_instrument_lacks_is_refused() {
    let phq_9 = instrument("phq-9");
    let error = score(phq_9, &every_scored_item_at(phq_9, 0).answer("10", 1)).unwrap_err();
    assert!(matches!(&error, ScoreError::UnknownItem { item } if item.as_str() == Some("10")));
    assert_eq!(
        error.to_string(),
        "an answer names item \"10\", which this instrument does not have"
    );
}

#[test]
fn a_value_that_is_not_one_of_the_items_options_is_refused() {
    let gad_2 = instrument("gad-2");
    assert_eq!(
        score(gad_2, &answers(&[("1", 4), ("2", 0)])).unwrap_err(),
        ScoreError::NotAnOption { item: "1" }
    );
    let phq_a = instrument("phq-a");
    assert_eq!(
        score(phq_a, &phq_a_all_clear().answer("attempt-lifetime", 2)).unwrap_err(),
        ScoreError::NotAnOption {
            item: "attempt-lifetime"
        }
    );
}

#[test]
fn an_item_answered_twice_is_refused_even_with_the_same_value() {
    let phq_2 = instrument("phq-2");
    assert_eq!(
        score(phq_2, &answers(&[("1", 1), ("2", 1), ("1", 1)])).unwrap_err(),
        ScoreError::DuplicateAnswer { item: "1" }
    );
}

// ---------------------------------------------------------------------------------
// PSC-17

/// A parent's answers to the PSC-17: `(item, value)` pairs.
fn parent_answers(pairs: &[(&str, u8)]) -> Answers {
    pairs.iter().fold(
        Answers::new(Respondent::ParentGuardian),
        |answers, (item, value)| answers.answer(*item, *value),
    )
}

/// Items 1 to 17 at these values, in order.
fn psc17(values: [u8; 17]) -> Score {
    let numbered: Vec<(String, u8)> = values
        .iter()
        .enumerate()
        .map(|(index, value)| ((index + 1).to_string(), *value))
        .collect();
    let answers = numbered.iter().fold(
        Answers::new(Respondent::ParentGuardian),
        |answers, (item, value)| answers.answer(item.clone(), *value),
    );
    scored(instrument("psc-17"), &answers)
}

fn subscale_result(score: &Score, code: &str) -> (u16, Option<bool>) {
    let subscale = score.subscale(code).unwrap();
    (subscale.total(), subscale.positive_screen())
}

#[test]
fn psc17_worked_example_positive_total_with_a_positive_attention_subscale() {
    // Attention items (1, 3, 7, 13, 17) all "often": 10. Internalizing items (2, 6,
    // 9, 11, 15) "sometimes" for three of them: 3. Externalizing (4, 5, 8, 10, 12, 14,
    // 16) "sometimes" for two: 2. Total 15: a positive screen, just.
    let score = psc17([2, 1, 2, 0, 1, 1, 2, 0, 1, 0, 0, 1, 2, 0, 0, 0, 2]);
    assert_eq!(score.total(), 15);
    assert_eq!(score.band().code(), "positive");
    assert_eq!(score.positive_screen(), Some(true));
    assert_eq!(subscale_result(&score, "attention"), (10, Some(true)));
    assert_eq!(subscale_result(&score, "internalizing"), (3, Some(false)));
    assert_eq!(subscale_result(&score, "externalizing"), (2, Some(false)));
    assert!(score.flags().is_empty());
}

#[test]
fn psc17_total_screens_positive_from_fifteen() {
    let psc_17 = instrument("psc-17");
    for (total, positive) in [(0, false), (14, false), (15, true), (34, true)] {
        let score = scored(psc_17, &answers_with_total(psc_17, total));
        assert_eq!(score.total(), total);
        assert_eq!(score.positive_screen(), Some(positive), "total {total}");
        let band = if positive { "positive" } else { "negative" };
        assert_eq!(score.band().code(), band);
    }
}

#[test]
fn psc17_subscales_screen_positive_at_five_seven_and_seven() {
    // Internalizing only: 4 is negative, 5 positive (items 2, 6, 9, 11, 15).
    let four = psc17([0, 2, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let five = psc17([0, 2, 0, 0, 0, 2, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(subscale_result(&four, "internalizing"), (4, Some(false)));
    assert_eq!(subscale_result(&five, "internalizing"), (5, Some(true)));
    // The total stays negative: a subscale can be positive on its own.
    assert_eq!(five.positive_screen(), Some(false));
    // Attention: 6 and 7 (items 1, 3, 7, 13, 17).
    let six = psc17([2, 0, 2, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let seven = psc17([2, 0, 2, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
    assert_eq!(subscale_result(&six, "attention"), (6, Some(false)));
    assert_eq!(subscale_result(&seven, "attention"), (7, Some(true)));
    // Externalizing: 6 and 7 (items 4, 5, 8, 10, 12, 14, 16).
    let six = psc17([0, 0, 0, 2, 2, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let seven = psc17([0, 0, 0, 2, 2, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
    assert_eq!(subscale_result(&six, "externalizing"), (6, Some(false)));
    assert_eq!(subscale_result(&seven, "externalizing"), (7, Some(true)));
}

#[test]
fn psc17_subscales_partition_the_items_and_add_up_to_the_total() {
    let psc_17: &Instrument = instrument("psc-17");
    let mut items: Vec<&str> = psc_17
        .subscales()
        .iter()
        .flat_map(|subscale| subscale.items().iter().copied())
        .collect();
    items.sort_by_key(|code| code.parse::<u8>().unwrap());
    let all: Vec<String> = (1..=17).map(|n| n.to_string()).collect();
    assert_eq!(items, all);
    let score = psc17([1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2]);
    let sum: u16 = score
        .subscales()
        .iter()
        .map(|subscale| subscale.total())
        .sum();
    assert_eq!(sum, score.total());
}

#[test]
fn psc17_blank_items_count_as_zero_up_to_three_and_four_make_the_form_invalid() {
    let psc_17 = instrument("psc-17");
    // Everything "often" except three blanks: 14 × 2 = 28, not prorated to 34.
    let three_blank: Vec<(String, u8)> = (1..=17)
        .filter(|n| ![2, 7, 16].contains(n))
        .map(|n| (n.to_string(), 2))
        .collect();
    let answers = three_blank.iter().fold(
        Answers::new(Respondent::ParentGuardian),
        |answers, (item, value)| answers.answer(item.clone(), *value),
    );
    let three = scored(psc_17, &answers);
    assert_eq!(three.total(), 28);
    assert!(!three.is_prorated());
    assert_eq!(three.unanswered_items(), ["2", "7", "16"]);
    assert_eq!(subscale_result(&three, "internalizing"), (8, Some(true)));
    assert_eq!(subscale_result(&three, "attention"), (8, Some(true)));

    let four_blank = answers.iter().filter(|(item, _)| *item != "1").fold(
        Answers::new(Respondent::ParentGuardian),
        |answers, (item, value)| answers.answer(item, value),
    );
    assert_eq!(
        score(psc_17, &four_blank).unwrap_err(),
        ScoreError::TooManyMissing {
            missing: vec!["1", "2", "7", "16"],
            missing_items_max: 3,
        }
    );
}

#[test]
fn psc17_is_answered_by_a_parent_or_guardian_not_by_the_child() {
    let psc_17 = instrument("psc-17");
    let answers: Answers = (1..=17).fold(Answers::new(Respondent::Patient), |answers, n| {
        answers.answer(n.to_string(), 0)
    });
    assert_eq!(
        score(psc_17, &answers).unwrap_err(),
        ScoreError::RespondentNotAllowed {
            respondent: Respondent::Patient
        }
    );
    let from_parent = parent_answers(&[("1", 0), ("2", 0), ("3", 0)]);
    assert!(matches!(
        score(psc_17, &from_parent),
        Err(ScoreError::TooManyMissing { .. })
    ));
}
