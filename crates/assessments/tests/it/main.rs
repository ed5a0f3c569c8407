//! The integration tests of the `assessments` crate: the catalogue's consistency,
//! worked examples from the manuals, property tests of scoring and change, plans,
//! their cadence and family rules, and the redaction of answers, scores and patient
//! facts — all through the public API; and on a real PostgreSQL, responses
//! ([`responses`]), one-time links ([`links`]) and safety events ([`safety`]).

mod automation;
mod cadence;
mod catalogue;
mod change;
mod examples;
mod links;
mod plan;
mod props;
mod redaction;
mod reminder;
mod responses;
mod rules;
mod safety;
mod world;

use assessments::{Answers, Instrument, InstrumentCode, Respondent, Score, score};

/// The version 1 definition of a catalogue instrument.
pub fn instrument(code: &'static str) -> &'static Instrument {
    Instrument::by_code(&InstrumentCode::new_unchecked(code), 1).expect("in the catalogue")
}

/// A patient's answers: `(item, value)` pairs.
pub fn answers(pairs: &[(&str, u8)]) -> Answers {
    pairs.iter().fold(
        Answers::new(Respondent::Patient),
        |answers, (item, value)| answers.answer(*item, *value),
    )
}

/// The first respondent the instrument allows: the patient for self-report, the
/// parent or guardian for the PSC-17.
pub fn respondent_of(instrument: &Instrument) -> Respondent {
    instrument.respondents()[0]
}

/// Answers with every scored item at `value`, from the instrument's respondent.
pub fn every_scored_item_at(instrument: &Instrument, value: u8) -> Answers {
    instrument
        .scored_items()
        .fold(Answers::new(respondent_of(instrument)), |answers, item| {
            answers.answer(item.code(), value)
        })
}

/// Answers to every scored item adding up to `total`, from the instrument's
/// respondent: items in order, each given as much as is left, up to its highest option.
pub fn answers_with_total(instrument: &Instrument, total: u16) -> Answers {
    let mut left = total;
    let mut answers = Answers::new(respondent_of(instrument));
    for item in instrument.scored_items() {
        let value = item
            .options()
            .iter()
            .map(|option| option.value())
            .filter(|value| u16::from(*value) <= left)
            .max()
            .expect("every item offers 0");
        left -= u16::from(value);
        answers.push(item.code(), value);
    }
    assert_eq!(left, 0, "{total} is beyond {instrument}'s maximum");
    answers
}

/// Scores answers that must be scorable.
pub fn scored(instrument: &'static Instrument, answers: &Answers) -> Score {
    score(instrument, answers).expect("scorable answers")
}
