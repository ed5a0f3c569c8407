//! Property tests of scoring and change, over every catalogue instrument.

use assessments::{
    Answers, Flag, Instrument, Reliability, Respondent, ScoreError, ScoringRule, catalogue,
    progress, score,
};
use proptest::prelude::*;
use proptest::sample::Index;

use crate::{answers_with_total, instrument, respondent_of, scored};

/// One slot per item of `instrument`: an offered value, or `None` for unanswered.
fn slots(
    instrument: &'static Instrument,
    p_answered: f64,
) -> impl Strategy<Value = Vec<Option<u8>>> {
    instrument
        .items()
        .iter()
        .map(|item| {
            let values: Vec<u8> = item.options().iter().map(|option| option.value()).collect();
            let value = proptest::sample::select(values);
            // `weighted` wants a probability below 1: every item answered is `Some` always.
            if p_answered < 1.0 {
                proptest::option::weighted(p_answered, value).boxed()
            } else {
                value.prop_map(Some).boxed()
            }
        })
        .collect::<Vec<_>>()
}

/// A catalogue instrument and answers to it, some items possibly left out.
fn instrument_and_slots() -> impl Strategy<Value = (&'static Instrument, Vec<Option<u8>>)> {
    proptest::sample::select(catalogue().iter().collect::<Vec<_>>())
        .prop_flat_map(|instrument| (Just(instrument), slots(instrument, 0.9)))
}

/// A catalogue instrument and an answer to every item.
fn instrument_and_complete_slots() -> impl Strategy<Value = (&'static Instrument, Vec<Option<u8>>)>
{
    proptest::sample::select(catalogue().iter().collect::<Vec<_>>())
        .prop_flat_map(|instrument| (Just(instrument), slots(instrument, 1.0)))
}

fn to_answers(instrument: &Instrument, slots: &[Option<u8>]) -> Answers {
    let mut answers = Answers::new(respondent_of(instrument));
    for (item, value) in instrument.items().iter().zip(slots) {
        if let Some(value) = value {
            answers.push(item.code(), *value);
        }
    }
    answers
}

fn n_missing_scored(instrument: &Instrument, slots: &[Option<u8>]) -> usize {
    instrument
        .items()
        .iter()
        .zip(slots)
        .filter(|(item, value)| item.is_scored() && value.is_none())
        .count()
}

fn missing_items_max(instrument: &Instrument) -> usize {
    match instrument.rule() {
        ScoringRule::ProratedSum { missing_items_max }
        | ScoringRule::SumUnansweredAsZero { missing_items_max } => usize::from(missing_items_max),
        ScoringRule::Sum | ScoringRule::SumWithClusterCriteria { .. } => 0,
    }
}

fn prorates(instrument: &Instrument) -> bool {
    matches!(instrument.rule(), ScoringRule::ProratedSum { .. })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_score_lies_within_the_scale_and_in_the_band_that_contains_it(
        (instrument, slots) in instrument_and_slots()
    ) {
        let n_missing = n_missing_scored(instrument, &slots);
        match score(instrument, &to_answers(instrument, &slots)) {
            Ok(score) => {
                prop_assert!(n_missing <= missing_items_max(instrument));
                prop_assert!(score.total() >= instrument.total_min());
                prop_assert!(score.total() <= instrument.total_max());
                prop_assert!(score.band().contains(score.total()));
                prop_assert_eq!(score.is_prorated(), prorates(instrument) && n_missing > 0);
                prop_assert_eq!(score.prorated_items().len(), if prorates(instrument) { n_missing } else { 0 });
                if !prorates(instrument) {
                    // Unanswered items count as nothing: the total is the plain sum.
                    let sum: u16 = instrument.items().iter().zip(&slots)
                        .filter(|(item, _)| item.is_scored())
                        .filter_map(|(_, value)| value.map(u16::from))
                        .sum();
                    prop_assert_eq!(score.total(), sum);
                }
            }
            Err(ScoreError::TooManyMissing { missing, .. }) => {
                prop_assert!(n_missing > missing_items_max(instrument));
                prop_assert_eq!(missing.len(), n_missing);
            }
            Err(other) => prop_assert!(false, "valid answers refused: {other}"),
        }
    }

    #[test]
    fn raising_any_single_answer_never_lowers_the_total_or_removes_a_finding(
        (instrument, slots) in instrument_and_slots(),
        which in any::<Index>(),
        step in 1u8..=4,
    ) {
        let Ok(before) = score(instrument, &to_answers(instrument, &slots)) else {
            return Ok(());
        };
        let answered: Vec<usize> = (0..slots.len()).filter(|index| slots[*index].is_some()).collect();
        prop_assume!(!answered.is_empty());
        let index = answered[which.index(answered.len())];
        let item = &instrument.items()[index];
        let raised_value = slots[index].unwrap().saturating_add(step).min(item.value_max());
        let mut raised = slots.clone();
        raised[index] = Some(raised_value);

        let after = scored(instrument, &to_answers(instrument, &raised));
        prop_assert!(after.total() >= before.total());
        prop_assert!(after.band().min() >= before.band().min());
        if before.provisional_diagnosis() == Some(true) {
            prop_assert_eq!(after.provisional_diagnosis(), Some(true));
        }
        if before.positive_screen() == Some(true) {
            prop_assert_eq!(after.positive_screen(), Some(true));
        }
        prop_assert!(before.flags().is_subset(after.flags()));
        for (earlier, later) in before.subscales().iter().zip(after.subscales()) {
            prop_assert!(later.total() >= earlier.total());
        }
    }

    #[test]
    fn a_prorated_total_never_exceeds_the_maximum_and_reaches_it_only_from_the_top(
        (instrument, slots) in proptest::sample::select(catalogue().iter().collect::<Vec<_>>())
            .prop_filter("prorating instruments", |instrument| prorates(instrument))
            .prop_flat_map(|instrument| (Just(instrument), slots(instrument, 0.8)))
    ) {
        prop_assume!(n_missing_scored(instrument, &slots) <= missing_items_max(instrument));
        let score = scored(instrument, &to_answers(instrument, &slots));
        prop_assert!(score.total() <= instrument.total_max());
        let every_answer_at_the_top = instrument
            .items()
            .iter()
            .zip(&slots)
            .filter(|(item, _)| item.is_scored())
            .all(|(item, value)| value.is_none_or(|value| value == item.value_max()));
        prop_assert_eq!(score.total() == instrument.total_max(), every_answer_at_the_top);
    }

    #[test]
    fn unscored_items_never_change_the_total(
        (instrument, slots) in instrument_and_complete_slots()
    ) {
        let without_unscored: Vec<Option<u8>> = instrument
            .items()
            .iter()
            .zip(&slots)
            .map(|(item, value)| if item.is_scored() { *value } else { None })
            .collect();
        let with = scored(instrument, &to_answers(instrument, &slots));
        let without = scored(instrument, &to_answers(instrument, &without_unscored));
        prop_assert_eq!(with.total(), without.total());
        prop_assert_eq!(with.band(), without.band());
    }

    #[test]
    fn a_self_harm_answer_is_flagged_whatever_the_total(
        (instrument, slots) in proptest::sample::select(vec![instrument("phq-9"), instrument("phq-a")])
            .prop_flat_map(|instrument| (Just(instrument), slots(instrument, 1.0)))
    ) {
        let value_of = |code: &str| {
            let index = instrument.items().iter().position(|item| item.code() == code).unwrap();
            slots[index].unwrap()
        };
        let self_harm = value_of("9") > 0
            || (instrument.code().as_str() == "phq-a" && value_of("ideation-past-month") == 1);
        let score = scored(instrument, &to_answers(instrument, &slots));
        prop_assert_eq!(score.has_flag(Flag::SelfHarm), self_harm);
        prop_assert_eq!(score.is_urgent(), self_harm);
    }

    #[test]
    fn the_pcl5_cluster_rule_matches_a_direct_count_of_the_manuals_criteria(
        slots in slots(instrument("pcl-5"), 1.0)
    ) {
        // Items numbered 1 to 20 in slot order; endorsed means rated 2 or higher.
        let endorsed = |from: usize, to: usize| {
            (from..=to).filter(|number| slots[number - 1].unwrap() >= 2).count()
        };
        let expected = endorsed(1, 5) >= 1
            && endorsed(6, 7) >= 1
            && endorsed(8, 14) >= 2
            && endorsed(15, 20) >= 2;
        let pcl_5 = instrument("pcl-5");
        let score = scored(pcl_5, &to_answers(pcl_5, &slots));
        prop_assert_eq!(score.provisional_diagnosis(), Some(expected));
        let sum: u16 = slots.iter().map(|value| u16::from(value.unwrap())).sum();
        prop_assert_eq!(score.total(), sum);
        prop_assert_eq!(score.subscales().iter().map(|cluster| cluster.total()).sum::<u16>(), sum);
    }

    #[test]
    fn scoring_never_panics_on_whatever_a_request_sends(
        which in any::<Index>(),
        respondent in proptest::sample::select(Respondent::ALL.to_vec()),
        pairs in proptest::collection::vec(
            (prop_oneof![
                proptest::sample::select(vec!["1", "2", "5", "9", "13", "20", "difficulty", "ideation-past-month"])
                    .prop_map(str::to_owned),
                ".{0,40}",
            ], any::<u8>()),
            0..30,
        ),
    ) {
        let instrument = &catalogue()[which.index(catalogue().len())];
        let answers = pairs.iter().fold(Answers::new(respondent), |answers, (item, value)| {
            answers.answer(item.clone(), *value)
        });
        // The property is that this returns at all; an unknown key it repeats must
        // be one that was sent and that looks like an item code.
        if let Err(ScoreError::UnknownItem { item }) = score(instrument, &answers)
            && let Some(key) = item.as_str()
        {
            prop_assert!(key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
            prop_assert!(pairs.iter().any(|(sent, _)| sent == key));
        }
    }

    #[test]
    fn change_flags_follow_their_definitions_exactly(
        code in proptest::sample::select(vec!["phq-9", "gad-7"]),
        fractions in (0.0f64..=1.0, 0.0f64..=1.0, 0.0f64..=1.0),
    ) {
        let instrument = instrument(code);
        let max = f64::from(instrument.total_max());
        let total = |fraction: f64| (fraction * max).round() as u16;
        let (baseline, previous, current) = (total(fractions.0), total(fractions.1), total(fractions.2));
        let scored_at = |total| scored(instrument, &answers_with_total(instrument, total));
        let progress = progress(&scored_at(baseline), Some(&scored_at(previous)), &scored_at(current)).unwrap();
        let criteria = instrument.change_criteria().unwrap();
        let threshold = i32::from(criteria.reliable_change_min());

        for (from, change) in [(baseline, progress.since_baseline()), (previous, progress.since_previous().unwrap())] {
            let delta = i32::from(current) - i32::from(from);
            prop_assert_eq!(change.delta(), delta);
            let expected = if delta <= -threshold {
                Reliability::ReliablyImproved
            } else if delta >= threshold {
                Reliability::ReliablyDeteriorated
            } else {
                Reliability::NotReliable
            };
            prop_assert_eq!(change.reliability(), expected);
        }
        prop_assert_eq!(progress.is_response(), baseline > 0 && f64::from(current) <= f64::from(baseline) / 2.0);
        prop_assert_eq!(progress.is_remission(), current < 5);
    }
}
