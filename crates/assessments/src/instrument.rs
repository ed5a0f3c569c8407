//! Instrument definitions: what a questionnaire asks, what each answer is worth and
//! how the answers become a score.
//!
//! An [`Instrument`] is data, not code: items with their answer options, the
//! respondents allowed, the ages it is meant for, one [`ScoringRule`] from a small
//! closed set, severity [`Band`]s, subscales, a screening cut-point and the items
//! that raise safety [`Flag`]s. The published definitions live in
//! [`mod@crate::catalogue`]; nothing outside this crate can build one, so every
//! `Instrument` a caller holds is a catalogue entry that the catalogue tests have
//! checked (bands cover the whole range, options are consistent, and so on).
//!
//! A definition never changes under a published `(code, version)`: a response is
//! stored with both, and must score the same way forever. A change of wording,
//! options or rules is a new version beside the old one.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::change::ChangeCriteria;

/// The longest instrument code accepted.
pub const INSTRUMENT_CODE_LEN_MAX: usize = 32;

/// The stable code of an instrument, such as `phq-9` or `pcl-5`: lowercase ASCII
/// letters and digits in groups joined by single hyphens, starting with a letter.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String")]
pub struct InstrumentCode(Cow<'static, str>);

/// The error for a string that is not a valid instrument code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "not a valid instrument code: expected up to 32 lowercase letters and digits in groups joined by hyphens, starting with a letter"
)]
pub struct InvalidInstrumentCode;

impl InstrumentCode {
    /// Wraps a code written in this crate's catalogue (checked by its tests).
    pub const fn new_unchecked(code: &'static str) -> Self {
        Self(Cow::Borrowed(code))
    }

    pub fn parse(code: &str) -> Result<Self, InvalidInstrumentCode> {
        let well_formed = !code.is_empty()
            && code.len() <= INSTRUMENT_CODE_LEN_MAX
            && code.starts_with(|c: char| c.is_ascii_lowercase())
            && code.split('-').all(|group| {
                !group.is_empty()
                    && group
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            });
        if well_formed {
            Ok(Self(Cow::Owned(code.to_owned())))
        } else {
            Err(InvalidInstrumentCode)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for InstrumentCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InstrumentCode({:?})", self.as_str())
    }
}

impl fmt::Display for InstrumentCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for InstrumentCode {
    type Err = InvalidInstrumentCode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for InstrumentCode {
    type Error = InvalidInstrumentCode;

    fn try_from(code: String) -> Result<Self, Self::Error> {
        Self::parse(&code)
    }
}

/// Who gives the answers. A self-report instrument read aloud by a clinician is
/// still answered by the patient; `Clinician` is for clinician-rated instruments.
///
/// Serialized as [`Respondent::as_str`] (`"patient"`, `"parent_guardian"`,
/// `"clinician"`), the form plan definitions are stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Respondent {
    /// The patient, about themself.
    Patient,
    /// A parent or guardian, about the child in their care.
    ParentGuardian,
    /// A clinician, rating what they observed or elicited.
    Clinician,
}

impl Respondent {
    pub const ALL: [Respondent; 3] = [
        Respondent::Patient,
        Respondent::ParentGuardian,
        Respondent::Clinician,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Respondent::Patient => "patient",
            Respondent::ParentGuardian => "parent_guardian",
            Respondent::Clinician => "clinician",
        }
    }
}

impl fmt::Display for Respondent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an instrument is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A brief first step: a positive result calls for the full instrument or an
    /// interview, and its score is not a severity to track.
    Screening,
    /// A severity measure, repeated to follow a patient over time.
    Severity,
}

/// The ages, in whole years, an instrument was written and validated for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgeRange {
    pub(crate) years_min: u8,
    /// `None`: no upper bound.
    pub(crate) years_max: Option<u8>,
}

impl AgeRange {
    pub const fn years_min(&self) -> u8 {
        self.years_min
    }

    pub const fn years_max(&self) -> Option<u8> {
        self.years_max
    }

    pub fn contains(&self, age_years: u8) -> bool {
        age_years >= self.years_min && self.years_max.is_none_or(|max| age_years <= max)
    }
}

/// One answer an item offers, and what it is worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnswerOption {
    pub(crate) value: u8,
    pub(crate) label: &'static str,
}

impl AnswerOption {
    pub const fn value(&self) -> u8 {
        self.value
    }

    pub const fn label(&self) -> &'static str {
        self.label
    }
}

/// Something a single answer says that must reach a person whatever the total is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Flag {
    /// Thoughts of being better off dead, of hurting oneself, or of ending one's
    /// life. Urgent: it raises a safety event whatever the score says.
    SelfHarm,
    /// A suicide attempt at any time in the respondent's life.
    SuicideAttemptHistory,
    /// An item that can raise a safety flag was left unanswered, so the absence of
    /// that flag says nothing. Someone should ask the question.
    SafetyItemUnanswered,
}

impl Flag {
    pub const fn as_str(self) -> &'static str {
        match self {
            Flag::SelfHarm => "self_harm",
            Flag::SuicideAttemptHistory => "suicide_attempt_history",
            Flag::SafetyItemUnanswered => "safety_item_unanswered",
        }
    }

    /// Whether the flag needs a person now rather than at the next review.
    pub const fn is_urgent(self) -> bool {
        matches!(self, Flag::SelfHarm)
    }
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An item raises `flag` when its answer is `at_least` or more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlagRule {
    pub(crate) flag: Flag,
    pub(crate) at_least: u8,
}

impl FlagRule {
    pub const fn flag(&self) -> Flag {
        self.flag
    }

    pub const fn at_least(&self) -> u8 {
        self.at_least
    }
}

/// One question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item {
    /// Stable within the instrument: `"1"` to `"9"` for the numbered symptom items,
    /// a word for the others (`"difficulty"`).
    pub(crate) code: &'static str,
    pub(crate) text: &'static str,
    /// In ascending order of value.
    pub(crate) options: &'static [AnswerOption],
    /// Whether the answer counts towards the total. Unscored items (the PHQ-9's
    /// difficulty question) are recorded, never summed, and may be left out.
    pub(crate) scored: bool,
    pub(crate) flags: &'static [FlagRule],
}

impl Item {
    pub const fn code(&self) -> &'static str {
        self.code
    }

    pub const fn text(&self) -> &'static str {
        self.text
    }

    pub const fn options(&self) -> &'static [AnswerOption] {
        self.options
    }

    pub const fn is_scored(&self) -> bool {
        self.scored
    }

    pub const fn flag_rules(&self) -> &'static [FlagRule] {
        self.flags
    }

    /// The option with this value, if the item offers one.
    pub fn option(&self, value: u8) -> Option<&'static AnswerOption> {
        self.options.iter().find(|option| option.value == value)
    }

    pub fn value_min(&self) -> u8 {
        self.options.first().map_or(0, |option| option.value)
    }

    pub fn value_max(&self) -> u8 {
        self.options.last().map_or(0, |option| option.value)
    }
}

/// A range of totals, inclusive at both ends, and what it is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Band {
    pub(crate) code: &'static str,
    pub(crate) label: &'static str,
    pub(crate) min: u16,
    pub(crate) max: u16,
}

impl Band {
    pub const fn code(&self) -> &'static str {
        self.code
    }

    pub const fn label(&self) -> &'static str {
        self.label
    }

    pub const fn min(&self) -> u16 {
        self.min
    }

    pub const fn max(&self) -> u16 {
        self.max
    }

    pub const fn contains(&self, total: u16) -> bool {
        total >= self.min && total <= self.max
    }
}

/// A named group of scored items with its own sum, such as a PCL-5 symptom cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscale {
    pub(crate) code: &'static str,
    pub(crate) title: &'static str,
    pub(crate) items: &'static [&'static str],
    /// Under [`ScoringRule::SumWithClusterCriteria`], how many of its items must be
    /// endorsed for the cluster's criterion to be met.
    pub(crate) endorsed_needed: u8,
    /// A subscale sum at or above this is a positive screen on the subscale (the
    /// PSC-17's internalizing, attention and externalizing cut-points).
    pub(crate) positive_from: Option<u16>,
}

impl Subscale {
    pub const fn code(&self) -> &'static str {
        self.code
    }

    pub const fn title(&self) -> &'static str {
        self.title
    }

    pub const fn items(&self) -> &'static [&'static str] {
        self.items
    }

    pub const fn endorsed_needed(&self) -> u8 {
        self.endorsed_needed
    }

    /// The subscale's own cut-point, where the instrument defines one.
    pub const fn positive_from(&self) -> Option<u16> {
        self.positive_from
    }
}

/// How answers become a total, and what an unanswered scored item does to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoringRule {
    /// The sum of the scored items; every one must be answered.
    Sum,
    /// The sum of the scored items. Up to `missing_items_max` of them may be
    /// unanswered: each is then given the mean of the answered ones, and the
    /// total is rounded to the nearest whole number, halves up, so it stays on the
    /// instrument's scale and in its bands. More missing items and there is no
    /// score.
    ProratedSum { missing_items_max: u8 },
    /// The sum of the scored items, every one answered, plus a provisional
    /// diagnosis: an item rated `endorsed_at` or higher counts as a symptom, and
    /// every subscale must have its `endorsed_needed` symptoms (the DSM-5
    /// symptom-cluster rule of the PCL-5).
    SumWithClusterCriteria { endorsed_at: u8 },
    /// The sum of the scored items, an unanswered item counting as 0 (its lowest
    /// option), never prorated. Up to `missing_items_max` may be unanswered; more
    /// and there is no score. The PSC-17's published rule: a blank lowers the total,
    /// so a positive screen with blanks stands, while a negative one is less sure.
    SumUnansweredAsZero { missing_items_max: u8 },
}

/// A versioned instrument definition. Only the catalogue makes them.
#[derive(Debug)]
pub struct Instrument {
    pub(crate) code: InstrumentCode,
    pub(crate) version: u16,
    pub(crate) title: &'static str,
    /// The instruction above the items, which sets the recall period.
    pub(crate) prompt: &'static str,
    /// The published source its items and scoring follow.
    pub(crate) source: &'static str,
    pub(crate) purpose: Purpose,
    pub(crate) respondents: &'static [Respondent],
    pub(crate) ages: AgeRange,
    pub(crate) items: &'static [Item],
    pub(crate) rule: ScoringRule,
    /// Ascending, contiguous, covering every total from the minimum to the maximum.
    pub(crate) bands: &'static [Band],
    pub(crate) subscales: &'static [Subscale],
    /// A total at or above this is a positive screen.
    pub(crate) positive_from: Option<u16>,
    /// Reliable change and remission, where defined (PHQ-9, GAD-7).
    pub(crate) change: Option<ChangeCriteria>,
}

impl Instrument {
    /// The definition with this code and version.
    pub fn by_code(code: &InstrumentCode, version: u16) -> Option<&'static Instrument> {
        crate::catalogue::catalogue()
            .iter()
            .find(|instrument| instrument.code == *code && instrument.version == version)
    }

    /// The newest version of the instrument with this code.
    pub fn latest(code: &InstrumentCode) -> Option<&'static Instrument> {
        crate::catalogue::catalogue()
            .iter()
            .filter(|instrument| instrument.code == *code)
            .max_by_key(|instrument| instrument.version)
    }

    pub const fn code(&self) -> &InstrumentCode {
        &self.code
    }

    pub const fn version(&self) -> u16 {
        self.version
    }

    pub const fn title(&self) -> &'static str {
        self.title
    }

    pub const fn prompt(&self) -> &'static str {
        self.prompt
    }

    pub const fn source(&self) -> &'static str {
        self.source
    }

    pub const fn purpose(&self) -> Purpose {
        self.purpose
    }

    pub const fn respondents(&self) -> &'static [Respondent] {
        self.respondents
    }

    pub fn allows(&self, respondent: Respondent) -> bool {
        self.respondents.contains(&respondent)
    }

    pub const fn ages(&self) -> AgeRange {
        self.ages
    }

    pub const fn items(&self) -> &'static [Item] {
        self.items
    }

    pub fn item(&self, code: &str) -> Option<&'static Item> {
        self.items.iter().find(|item| item.code == code)
    }

    pub fn scored_items(&self) -> impl Iterator<Item = &'static Item> + use<> {
        self.items.iter().filter(|item| item.scored)
    }

    pub const fn rule(&self) -> ScoringRule {
        self.rule
    }

    pub const fn bands(&self) -> &'static [Band] {
        self.bands
    }

    /// The band a total falls in.
    pub fn band(&self, total: u16) -> Option<&'static Band> {
        self.bands.iter().find(|band| band.contains(total))
    }

    pub const fn subscales(&self) -> &'static [Subscale] {
        self.subscales
    }

    pub const fn positive_from(&self) -> Option<u16> {
        self.positive_from
    }

    pub const fn change_criteria(&self) -> Option<ChangeCriteria> {
        self.change
    }

    /// The lowest possible total: every scored item at its lowest option.
    pub fn total_min(&self) -> u16 {
        self.scored_items()
            .map(|item| u16::from(item.value_min()))
            .sum()
    }

    /// The highest possible total: every scored item at its highest option.
    pub fn total_max(&self) -> u16 {
        self.scored_items()
            .map(|item| u16::from(item.value_max()))
            .sum()
    }
}

/// Two definitions are the same when their code and version are: the catalogue
/// holds one definition per pair.
impl PartialEq for Instrument {
    fn eq(&self, other: &Self) -> bool {
        self.code == other.code && self.version == other.version
    }
}

impl Eq for Instrument {}

impl fmt::Display for Instrument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.code, self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instrument_codes_accept_the_catalogue_shape() {
        for code in ["phq-9", "gad-7", "phq-a", "pcl-5", "x", "a1-b2-c3"] {
            assert_eq!(InstrumentCode::parse(code).unwrap().as_str(), code);
        }
    }

    #[test]
    fn instrument_codes_refuse_anything_else() {
        let too_long = "a".repeat(INSTRUMENT_CODE_LEN_MAX + 1);
        for code in [
            "",
            "PHQ-9",
            "9-phq",
            "-phq",
            "phq-",
            "phq--9",
            "phq_9",
            "phq 9",
            "phq-9\n",
            "phé",
            too_long.as_str(),
        ] {
            assert_eq!(
                InstrumentCode::parse(code),
                Err(InvalidInstrumentCode),
                "{code:?}"
            );
        }
    }

    #[test]
    fn instrument_codes_are_validated_when_deserialized() {
        let code: InstrumentCode = serde_json::from_str("\"gad-7\"").unwrap();
        assert_eq!(code, InstrumentCode::new_unchecked("gad-7"));
        assert!(serde_json::from_str::<InstrumentCode>("\"GAD 7\"").is_err());
        assert_eq!(serde_json::to_string(&code).unwrap(), "\"gad-7\"");
    }

    #[test]
    fn an_open_age_range_has_no_upper_bound() {
        let adults = AgeRange {
            years_min: 18,
            years_max: None,
        };
        assert!(!adults.contains(17));
        assert!(adults.contains(18) && adults.contains(u8::MAX));
        let adolescents = AgeRange {
            years_min: 12,
            years_max: Some(18),
        };
        assert!(!adolescents.contains(11) && !adolescents.contains(19));
        assert!(adolescents.contains(12) && adolescents.contains(18));
    }
}
