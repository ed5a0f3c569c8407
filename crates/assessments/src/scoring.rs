//! Scoring: one set of answers to one instrument becomes a [`Score`] or a
//! [`ScoreError`] saying why it cannot.
//!
//! Scoring is a pure function of the definition and the answers. It checks every
//! answer against the definition first (who answered, that each item exists, is
//! answered once and with one of its options), then applies the instrument's
//! [`ScoringRule`], including its rule for unanswered items: a form the published
//! guidance calls invalid gets no score, never a guess.
//!
//! Answers and scores are health information. Their `Debug` prints no values, and
//! no error carries one: errors name items, never answers. Nothing here panics on
//! what a respondent sent.

use std::collections::BTreeSet;
use std::fmt;

use crate::instrument::{Band, Flag, Instrument, Respondent, ScoringRule};

/// The longest unknown item key an error repeats; longer or odder keys are not
/// echoed, so an error never carries arbitrary text from a request.
const ITEM_KEY_ECHO_LEN_MAX: usize = 32;

/// What one respondent answered: item codes with the value of the option chosen.
///
/// Unanswered items are simply absent. `Debug` shows who answered and how many
/// answers there are, never the answers.
#[derive(Clone, PartialEq, Eq)]
pub struct Answers {
    respondent: Respondent,
    values: Vec<(String, u8)>,
}

impl Answers {
    pub fn new(respondent: Respondent) -> Self {
        Self {
            respondent,
            values: Vec::new(),
        }
    }

    /// Adds an answer. An item answered twice is refused when scored, not here.
    pub fn answer(mut self, item: impl Into<String>, value: u8) -> Self {
        self.push(item, value);
        self
    }

    pub fn push(&mut self, item: impl Into<String>, value: u8) {
        self.values.push((item.into(), value));
    }

    pub const fn respondent(&self) -> Respondent {
        self.respondent
    }

    /// The answers, in the order given.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u8)> {
        self.values
            .iter()
            .map(|(item, value)| (item.as_str(), *value))
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

impl fmt::Debug for Answers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Answers")
            .field("respondent", &self.respondent)
            .field("n_answers", &self.values.len())
            .field("values", &format_args!("[redacted]"))
            .finish()
    }
}

/// Why a set of answers has no score. Names items, never answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScoreError {
    #[error("a {respondent} may not answer this instrument")]
    RespondentNotAllowed { respondent: Respondent },
    #[error("an answer names item {item}, which this instrument does not have")]
    UnknownItem { item: ItemKey },
    #[error("item {item} is answered more than once")]
    DuplicateAnswer { item: &'static str },
    #[error("the answer to item {item} is not one of its options")]
    NotAnOption { item: &'static str },
    #[error(
        "unanswered items: {}; the instrument is valid with at most {missing_items_max} missing",
        .missing.join(", ")
    )]
    TooManyMissing {
        /// The unanswered scored items, in the instrument's order.
        missing: Vec<&'static str>,
        missing_items_max: u8,
    },
}

/// An item key from a request that named no item. Shown only when it looks like an
/// item code (short, lowercase letters, digits and hyphens); otherwise withheld.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemKey(Option<String>);

impl ItemKey {
    fn from_request(key: &str) -> Self {
        let echoable = !key.is_empty()
            && key.len() <= ITEM_KEY_ECHO_LEN_MAX
            && key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        Self(echoable.then(|| key.to_owned()))
    }

    /// The key, when it was safe to keep.
    pub fn as_str(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl fmt::Display for ItemKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(key) => write!(f, "{key:?}"),
            None => f.write_str("[not shown]"),
        }
    }
}

/// The sum of one subscale and, under a cluster rule, its endorsed items.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SubscaleScore {
    code: &'static str,
    total: u16,
    n_endorsed: u8,
    criterion_met: Option<bool>,
    positive_from: Option<u16>,
}

impl SubscaleScore {
    pub const fn code(&self) -> &'static str {
        self.code
    }

    /// The sum of its answered items. Never prorated: a prorating rule defines no
    /// subscales (a catalogue test holds every instrument to that); under
    /// [`ScoringRule::SumUnansweredAsZero`] an unanswered item adds 0, as to the total.
    pub const fn total(&self) -> u16 {
        self.total
    }

    /// Items at or above the endorsement threshold (0 when the rule has none).
    pub const fn n_endorsed(&self) -> u8 {
        self.n_endorsed
    }

    /// Whether the cluster has its needed symptoms; `None` without a cluster rule.
    pub const fn criterion_met(&self) -> Option<bool> {
        self.criterion_met
    }

    /// Whether the sum reaches the subscale's cut-point; `None` if it has none.
    pub fn positive_screen(&self) -> Option<bool> {
        self.positive_from.map(|cut_point| self.total >= cut_point)
    }
}

impl fmt::Debug for SubscaleScore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscaleScore")
            .field("code", &self.code)
            .finish_non_exhaustive()
    }
}

/// The outcome of scoring. `Debug` names the instrument only.
#[derive(Clone, PartialEq, Eq)]
pub struct Score {
    instrument: &'static Instrument,
    total: u16,
    band: &'static Band,
    subscales: Vec<SubscaleScore>,
    provisional_diagnosis: Option<bool>,
    flags: BTreeSet<Flag>,
    prorated_items: Vec<&'static str>,
    unanswered_items: Vec<&'static str>,
}

impl Score {
    /// The instrument and version that produced this score.
    pub const fn instrument(&self) -> &'static Instrument {
        self.instrument
    }

    /// The total on the instrument's scale, prorated if items were missing.
    pub const fn total(&self) -> u16 {
        self.total
    }

    pub const fn band(&self) -> &'static Band {
        self.band
    }

    /// Whether the total reaches the instrument's cut-point; `None` if it has none.
    pub fn positive_screen(&self) -> Option<bool> {
        self.instrument
            .positive_from()
            .map(|cut_point| self.total >= cut_point)
    }

    /// One entry per subscale of the instrument, in its order.
    pub fn subscales(&self) -> &[SubscaleScore] {
        &self.subscales
    }

    pub fn subscale(&self, code: &str) -> Option<&SubscaleScore> {
        self.subscales.iter().find(|subscale| subscale.code == code)
    }

    /// Under a cluster rule, whether every cluster's criterion is met; `None` otherwise.
    pub const fn provisional_diagnosis(&self) -> Option<bool> {
        self.provisional_diagnosis
    }

    pub fn flags(&self) -> &BTreeSet<Flag> {
        &self.flags
    }

    pub fn has_flag(&self, flag: Flag) -> bool {
        self.flags.contains(&flag)
    }

    /// Whether any flag needs a person now.
    pub fn is_urgent(&self) -> bool {
        self.flags.iter().any(|flag| flag.is_urgent())
    }

    /// Whether missing items were given the mean of the answered ones.
    pub fn is_prorated(&self) -> bool {
        !self.prorated_items.is_empty()
    }

    /// The scored items that were missing and prorated.
    pub fn prorated_items(&self) -> &[&'static str] {
        &self.prorated_items
    }

    /// Every unanswered item, scored or not, in the instrument's order.
    pub fn unanswered_items(&self) -> &[&'static str] {
        &self.unanswered_items
    }
}

impl fmt::Debug for Score {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Score")
            .field("instrument", &format_args!("{}", self.instrument))
            .field("values", &format_args!("[redacted]"))
            .finish()
    }
}

/// Scores `answers` by `instrument`'s published rules.
pub fn score(instrument: &'static Instrument, answers: &Answers) -> Result<Score, ScoreError> {
    if !instrument.allows(answers.respondent) {
        return Err(ScoreError::RespondentNotAllowed {
            respondent: answers.respondent,
        });
    }

    // One slot per item of the definition, in its order.
    let items = instrument.items();
    let mut values: Vec<Option<u8>> = vec![None; items.len()];
    for (key, value) in answers.iter() {
        let Some(index) = items.iter().position(|item| item.code() == key) else {
            return Err(ScoreError::UnknownItem {
                item: ItemKey::from_request(key),
            });
        };
        let item = &items[index];
        if values[index].is_some() {
            return Err(ScoreError::DuplicateAnswer { item: item.code() });
        }
        if item.option(value).is_none() {
            return Err(ScoreError::NotAnOption { item: item.code() });
        }
        values[index] = Some(value);
    }
    let value_of = |code: &str| {
        items
            .iter()
            .position(|item| item.code() == code)
            .and_then(|index| values[index])
    };

    let missing: Vec<&'static str> = items
        .iter()
        .zip(&values)
        .filter(|(item, value)| item.is_scored() && value.is_none())
        .map(|(item, _)| item.code())
        .collect();
    let (missing_items_max, prorates) = match instrument.rule() {
        ScoringRule::Sum | ScoringRule::SumWithClusterCriteria { .. } => (0, false),
        ScoringRule::ProratedSum { missing_items_max } => (missing_items_max, true),
        ScoringRule::SumUnansweredAsZero { missing_items_max } => (missing_items_max, false),
    };
    let n_scored = instrument.scored_items().count();
    let n_answered = n_scored - missing.len();
    if missing.len() > usize::from(missing_items_max) || n_answered == 0 {
        return Err(ScoreError::TooManyMissing {
            missing,
            missing_items_max,
        });
    }

    let sum: u16 = items
        .iter()
        .zip(&values)
        .filter(|(item, _)| item.is_scored())
        .filter_map(|(_, value)| value.map(u16::from))
        .sum();
    let total = if missing.is_empty() || !prorates {
        sum
    } else {
        prorate(sum, n_scored, n_answered)
    };
    let band = instrument
        .band(total)
        .expect("BUG: a catalogue instrument's bands cover every total it can produce");

    let endorsed_at = match instrument.rule() {
        ScoringRule::SumWithClusterCriteria { endorsed_at } => Some(endorsed_at),
        ScoringRule::Sum
        | ScoringRule::ProratedSum { .. }
        | ScoringRule::SumUnansweredAsZero { .. } => None,
    };
    let subscales: Vec<SubscaleScore> = instrument
        .subscales()
        .iter()
        .map(|subscale| {
            let subscale_values = subscale.items().iter().filter_map(|code| value_of(code));
            let total = subscale_values.clone().map(u16::from).sum();
            let n_endorsed = endorsed_at.map_or(0, |threshold| {
                let n = subscale_values.filter(|value| *value >= threshold).count();
                u8::try_from(n).unwrap_or(u8::MAX)
            });
            SubscaleScore {
                code: subscale.code(),
                total,
                n_endorsed,
                criterion_met: endorsed_at.map(|_| n_endorsed >= subscale.endorsed_needed()),
                positive_from: subscale.positive_from(),
            }
        })
        .collect();
    let provisional_diagnosis = endorsed_at.map(|_| {
        subscales
            .iter()
            .all(|subscale| subscale.criterion_met == Some(true))
    });

    let mut flags = BTreeSet::new();
    for (item, value) in items.iter().zip(&values) {
        for rule in item.flag_rules() {
            match value {
                Some(value) if *value >= rule.at_least() => {
                    flags.insert(rule.flag());
                }
                Some(_) => {}
                None => {
                    flags.insert(Flag::SafetyItemUnanswered);
                }
            }
        }
    }

    let unanswered_items = items
        .iter()
        .zip(&values)
        .filter(|(_, value)| value.is_none())
        .map(|(item, _)| item.code())
        .collect();

    Ok(Score {
        instrument,
        total,
        band,
        subscales,
        provisional_diagnosis,
        flags,
        prorated_items: if prorates { missing } else { Vec::new() },
        unanswered_items,
    })
}

/// `sum` of `n_answered` items scaled to `n_items`: each missing item takes the mean
/// of the answered ones. Rounded to the nearest whole number, halves up. Never above
/// the instrument's maximum, since `sum <= n_answered * item_max`.
fn prorate(sum: u16, n_items: usize, n_answered: usize) -> u16 {
    debug_assert!(n_answered > 0 && n_answered <= n_items);
    let scaled_twice = 2 * u64::from(sum) * n_items as u64 + n_answered as u64;
    let total = scaled_twice / (2 * n_answered as u64);
    u16::try_from(total).unwrap_or(u16::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prorating_rounds_to_the_nearest_whole_number_halves_up() {
        // 8 answered items summing to 9, scaled to 9 items: 10.125.
        assert_eq!(prorate(9, 9, 8), 10);
        // 7 answered summing to 10: 12.857.
        assert_eq!(prorate(10, 9, 7), 13);
        // 6 answered of 7 summing to 3: 3.5, a half, goes up.
        assert_eq!(prorate(3, 7, 6), 4);
        // 5 answered of 7 summing to 5: exactly 7.
        assert_eq!(prorate(5, 7, 5), 7);
        assert_eq!(prorate(0, 9, 7), 0);
    }

    #[test]
    fn an_unknown_item_key_is_echoed_only_when_it_looks_like_an_item_code() {
        assert_eq!(ItemKey::from_request("10").as_str(), Some("10"));
        assert_eq!(
            ItemKey::from_request("past-month").as_str(),
            Some("past-month")
        );
        for key in ["", "Jane Doe", "item 9", "x".repeat(33).as_str(), "é"] {
            assert_eq!(ItemKey::from_request(key).as_str(), None, "{key:?}");
            assert_eq!(ItemKey::from_request(key).to_string(), "[not shown]");
        }
    }
}
