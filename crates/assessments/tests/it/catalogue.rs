use std::collections::BTreeSet;

use assessments::{Instrument, InstrumentCode, Respondent, ScoringRule, catalogue};

use crate::instrument;

#[test]
fn every_instrument_has_a_valid_code_and_a_unique_version() {
    let mut seen = BTreeSet::new();
    for instrument in catalogue() {
        let code = instrument.code().as_str();
        assert_eq!(InstrumentCode::parse(code).as_ref(), Ok(instrument.code()));
        assert!(instrument.version() >= 1, "{instrument}");
        assert!(
            seen.insert((code, instrument.version())),
            "{instrument} twice"
        );
        assert!(!instrument.title().is_empty() && !instrument.prompt().is_empty());
        assert!(
            !instrument.source().is_empty(),
            "{instrument} cites no source"
        );
    }
}

#[test]
fn the_catalogue_holds_the_self_report_instruments_and_the_psc17() {
    let codes: BTreeSet<&str> = catalogue().iter().map(|i| i.code().as_str()).collect();
    assert_eq!(
        codes,
        BTreeSet::from([
            "gad-2", "gad-7", "pcl-5", "phq-2", "phq-9", "phq-a", "psc-17"
        ])
    );
}

#[test]
fn lookup_finds_a_definition_by_code_and_version_and_nothing_else() {
    let phq_9 = InstrumentCode::parse("phq-9").unwrap();
    assert_eq!(
        Instrument::by_code(&phq_9, 1).unwrap().title(),
        "Patient Health Questionnaire-9 (PHQ-9)"
    );
    assert!(Instrument::by_code(&phq_9, 2).is_none());
    assert_eq!(Instrument::latest(&phq_9).unwrap().version(), 1);
    let unknown = InstrumentCode::parse("bdi-2").unwrap();
    assert!(Instrument::by_code(&unknown, 1).is_none() && Instrument::latest(&unknown).is_none());
}

#[test]
fn bands_cover_every_possible_total_without_gaps_or_overlaps() {
    for instrument in catalogue() {
        let bands = instrument.bands();
        assert!(!bands.is_empty(), "{instrument}");
        assert_eq!(
            bands[0].min(),
            instrument.total_min(),
            "{instrument} starts with a gap"
        );
        assert_eq!(
            bands[bands.len() - 1].max(),
            instrument.total_max(),
            "{instrument} ends with a gap or runs past its maximum"
        );
        for band in bands {
            assert!(band.min() <= band.max(), "{instrument} {}", band.code());
            assert!(!band.label().is_empty());
        }
        for pair in bands.windows(2) {
            assert_eq!(
                pair[0].max() + 1,
                pair[1].min(),
                "{instrument}: a gap or an overlap between {} and {}",
                pair[0].code(),
                pair[1].code()
            );
        }
        let codes: BTreeSet<&str> = bands.iter().map(|band| band.code()).collect();
        assert_eq!(codes.len(), bands.len(), "{instrument} repeats a band code");
        for total in instrument.total_min()..=instrument.total_max() {
            let n_bands = bands.iter().filter(|band| band.contains(total)).count();
            assert_eq!(n_bands, 1, "{instrument}: {total} is in {n_bands} bands");
        }
    }
}

#[test]
fn every_item_offers_distinct_ascending_labelled_options_from_zero() {
    for instrument in catalogue() {
        let mut codes = BTreeSet::new();
        assert!(instrument.scored_items().count() >= 2, "{instrument}");
        for item in instrument.items() {
            assert!(
                !item.code().is_empty() && !item.text().is_empty(),
                "{instrument}"
            );
            assert!(
                codes.insert(item.code()),
                "{instrument} repeats item {}",
                item.code()
            );
            let options = item.options();
            assert!(options.len() >= 2, "{instrument} item {}", item.code());
            for (index, option) in options.iter().enumerate() {
                // Contiguous from 0: the value is the option's rank, as on every form here.
                assert_eq!(
                    usize::from(option.value()),
                    index,
                    "{instrument} item {}",
                    item.code()
                );
                assert!(!option.label().is_empty());
            }
            let labels: BTreeSet<&str> = options.iter().map(|option| option.label()).collect();
            assert_eq!(
                labels.len(),
                options.len(),
                "{instrument} item {} repeats a label",
                item.code()
            );
        }
    }
}

#[test]
fn flag_rules_can_fire_on_an_offered_option() {
    for instrument in catalogue() {
        for item in instrument.items() {
            for rule in item.flag_rules() {
                assert!(
                    rule.at_least() > item.value_min() && rule.at_least() <= item.value_max(),
                    "{instrument} item {}: a flag that always or never fires",
                    item.code()
                );
            }
        }
    }
}

#[test]
fn missing_item_rules_always_leave_answers_to_prorate_from() {
    for instrument in catalogue() {
        if let ScoringRule::ProratedSum { missing_items_max } = instrument.rule() {
            assert!(
                usize::from(missing_items_max) < instrument.scored_items().count(),
                "{instrument}"
            );
        }
    }
}

#[test]
fn subscales_name_distinct_scored_items_and_can_meet_their_criterion() {
    for instrument in catalogue() {
        let mut seen = BTreeSet::new();
        for subscale in instrument.subscales() {
            assert!(
                !subscale.items().is_empty(),
                "{instrument} {}",
                subscale.code()
            );
            for code in subscale.items() {
                let item = instrument
                    .item(code)
                    .unwrap_or_else(|| panic!("{instrument} has no item {code}"));
                assert!(item.is_scored(), "{instrument} item {code}");
                assert!(
                    seen.insert(*code),
                    "{instrument} item {code} is in two subscales"
                );
                if let ScoringRule::SumWithClusterCriteria { endorsed_at } = instrument.rule() {
                    assert!(endorsed_at <= item.value_max());
                }
            }
            assert!(usize::from(subscale.endorsed_needed()) <= subscale.items().len());
        }
        match instrument.rule() {
            ScoringRule::SumWithClusterCriteria { .. } => assert!(
                !instrument.subscales().is_empty(),
                "{instrument}: a cluster rule with no clusters"
            ),
            ScoringRule::ProratedSum { .. } => assert!(
                instrument.subscales().is_empty(),
                "{instrument}: subscale sums are never prorated, so a prorating rule cannot have them"
            ),
            ScoringRule::Sum | ScoringRule::SumUnansweredAsZero { .. } => {}
        }
        for subscale in instrument.subscales() {
            if let Some(cut_point) = subscale.positive_from() {
                let max: u16 = subscale
                    .items()
                    .iter()
                    .map(|code| u16::from(instrument.item(code).unwrap().value_max()))
                    .sum();
                assert!(
                    cut_point > 0 && cut_point <= max,
                    "{instrument} {}: a cut-point outside the subscale's range",
                    subscale.code()
                );
            }
        }
    }
}

#[test]
fn cut_points_and_change_criteria_lie_within_the_scale() {
    for instrument in catalogue() {
        if let Some(cut_point) = instrument.positive_from() {
            assert!(
                cut_point > instrument.total_min() && cut_point <= instrument.total_max(),
                "{instrument}"
            );
        }
        if let Some(criteria) = instrument.change_criteria() {
            assert!(criteria.reliable_change_min() > 0, "{instrument}");
            assert!(
                criteria.remission_below() <= instrument.total_max(),
                "{instrument}"
            );
        }
    }
}

#[test]
fn change_criteria_are_defined_for_the_phq9_and_the_gad7_only() {
    let with_criteria: BTreeSet<&str> = catalogue()
        .iter()
        .filter(|instrument| instrument.change_criteria().is_some())
        .map(|instrument| instrument.code().as_str())
        .collect();
    assert_eq!(with_criteria, BTreeSet::from(["gad-7", "phq-9"]));
    assert_eq!(
        instrument("phq-9")
            .change_criteria()
            .unwrap()
            .reliable_change_min(),
        6
    );
    assert_eq!(
        instrument("gad-7")
            .change_criteria()
            .unwrap()
            .reliable_change_min(),
        4
    );
}

#[test]
fn every_instrument_says_who_may_answer_and_for_which_ages() {
    for instrument in catalogue() {
        let respondents = instrument.respondents();
        assert!(!respondents.is_empty(), "{instrument}");
        let distinct: BTreeSet<_> = respondents.iter().collect();
        assert_eq!(distinct.len(), respondents.len(), "{instrument}");
        let ages = instrument.ages();
        assert!(
            ages.years_max().is_none_or(|max| ages.years_min() <= max),
            "{instrument}"
        );
    }
    assert!(instrument("phq-a").ages().contains(14) && !instrument("phq-a").ages().contains(30));
    assert!(instrument("phq-9").ages().contains(30) && !instrument("phq-9").ages().contains(14));
    let psc_17 = instrument("psc-17");
    assert_eq!(psc_17.respondents(), [Respondent::ParentGuardian]);
    assert!(psc_17.ages().contains(4) && psc_17.ages().contains(17));
    assert!(!psc_17.ages().contains(3) && !psc_17.ages().contains(18));
}

/// A published definition must never change under its version: a response stored
/// with `(code, version)` has to score the same way forever. If this fails because
/// an item, option, band, rule or threshold changed, add a new version instead of
/// editing the old one; only a corrected title or citation may be accepted as is.
#[test]
fn published_definitions_never_change_under_their_version() {
    for instrument in catalogue() {
        insta::assert_debug_snapshot!(
            format!("{}-v{}", instrument.code(), instrument.version()),
            instrument
        );
    }
}
