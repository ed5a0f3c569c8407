//! Reliable change, response and remission on the PHQ-9 and the GAD-7.

use assessments::{ChangeError, InstrumentCode, Reliability, Score, progress};

use crate::{answers_with_total, instrument, scored};

fn phq9(total: u16) -> Score {
    let phq_9 = instrument("phq-9");
    scored(phq_9, &answers_with_total(phq_9, total))
}

fn gad7(total: u16) -> Score {
    let gad_7 = instrument("gad-7");
    scored(gad_7, &answers_with_total(gad_7, total))
}

#[test]
fn a_phq9_fall_of_six_points_is_reliable_improvement_and_five_is_not() {
    let six = progress(&phq9(18), None, &phq9(12)).unwrap();
    assert_eq!(six.since_baseline().delta(), -6);
    assert_eq!(
        six.since_baseline().reliability(),
        Reliability::ReliablyImproved
    );
    let five = progress(&phq9(18), None, &phq9(13)).unwrap();
    assert_eq!(
        five.since_baseline().reliability(),
        Reliability::NotReliable
    );
}

#[test]
fn a_gad7_fall_of_four_points_is_reliable_improvement_and_three_is_not() {
    let four = progress(&gad7(14), None, &gad7(10)).unwrap();
    assert_eq!(
        four.since_baseline().reliability(),
        Reliability::ReliablyImproved
    );
    let three = progress(&gad7(14), None, &gad7(11)).unwrap();
    assert_eq!(
        three.since_baseline().reliability(),
        Reliability::NotReliable
    );
}

#[test]
fn a_rise_by_the_threshold_is_reliable_deterioration() {
    let phq = progress(&phq9(5), None, &phq9(11)).unwrap();
    assert_eq!(phq.since_baseline().delta(), 6);
    assert_eq!(
        phq.since_baseline().reliability(),
        Reliability::ReliablyDeteriorated
    );
    let gad = progress(&gad7(3), None, &gad7(7)).unwrap();
    assert_eq!(
        gad.since_baseline().reliability(),
        Reliability::ReliablyDeteriorated
    );
}

#[test]
fn halving_the_baseline_is_a_response_and_less_is_not() {
    assert!(progress(&phq9(20), None, &phq9(10)).unwrap().is_response());
    assert!(!progress(&phq9(20), None, &phq9(11)).unwrap().is_response());
    // 15 halved is 7.5: 7 is a response, 8 is not.
    assert!(progress(&gad7(15), None, &gad7(7)).unwrap().is_response());
    assert!(!progress(&gad7(15), None, &gad7(8)).unwrap().is_response());
}

#[test]
fn a_baseline_of_zero_never_shows_a_response() {
    assert!(!progress(&phq9(0), None, &phq9(0)).unwrap().is_response());
}

#[test]
fn a_score_below_five_is_remission() {
    let remitted = progress(&phq9(12), None, &phq9(4)).unwrap();
    assert!(remitted.is_remission() && remitted.is_response());
    assert_eq!(
        remitted.since_baseline().reliability(),
        Reliability::ReliablyImproved
    );
    assert!(!progress(&phq9(12), None, &phq9(5)).unwrap().is_remission());
    assert!(progress(&gad7(9), None, &gad7(4)).unwrap().is_remission());
}

#[test]
fn change_since_the_previous_response_is_measured_from_that_response() {
    let progress = progress(&phq9(22), Some(&phq9(14)), &phq9(11)).unwrap();
    assert_eq!(progress.since_baseline().delta(), -11);
    assert_eq!(
        progress.since_baseline().reliability(),
        Reliability::ReliablyImproved
    );
    let since_previous = progress.since_previous().unwrap();
    assert_eq!(since_previous.delta(), -3);
    assert_eq!(since_previous.reliability(), Reliability::NotReliable);
    assert!(progress.is_response());
}

#[test]
fn instruments_without_change_criteria_are_refused() {
    let pcl_5 = instrument("pcl-5");
    let before = scored(pcl_5, &answers_with_total(pcl_5, 50));
    let after = scored(pcl_5, &answers_with_total(pcl_5, 20));
    assert_eq!(
        progress(&before, None, &after).unwrap_err(),
        ChangeError::NotDefined {
            instrument: InstrumentCode::new_unchecked("pcl-5")
        }
    );
}

#[test]
fn scores_of_different_instruments_cannot_be_compared() {
    assert_eq!(
        progress(&phq9(20), None, &gad7(10)).unwrap_err(),
        ChangeError::NotComparable
    );
    assert_eq!(
        progress(&phq9(20), Some(&gad7(15)), &phq9(10)).unwrap_err(),
        ChangeError::NotComparable
    );
    let phq_a = instrument("phq-a");
    let adolescent = scored(phq_a, &answers_with_total(phq_a, 20));
    assert_eq!(
        progress(&adolescent, None, &phq9(10)).unwrap_err(),
        ChangeError::NotComparable
    );
}
