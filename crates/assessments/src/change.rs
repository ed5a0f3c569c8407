//! Change over time: how a score moved since the baseline and since the previous
//! response, whether the move is reliable, and response and remission.
//!
//! Defined for the PHQ-9 and the GAD-7, the instruments whose definitions carry
//! [`ChangeCriteria`]. On both a higher score means more symptoms, so improvement is
//! a fall.
//!
//! - **Reliable change** uses the fixed thresholds of the NHS Talking Therapies
//!   (formerly IAPT) manual: a fall of **6 or more** points on the PHQ-9, or **4 or
//!   more** on the GAD-7, is reliable improvement, and a rise of as much is reliable
//!   deterioration. Such thresholds stand in for the Jacobson–Truax reliable change
//!   index (1.96 · SD · √(2(1 − r))): a change larger than the scale's measurement
//!   error. Other sources give other figures (5 for the PHQ-9; 6 for the GAD-7 in
//!   Bischoff et al. 2020); we use the manual's throughout, because it is the one
//!   most services report against, so a reliable change means the same in every
//!   practice. A different choice would be a new version of the definition.
//! - **Response** is a fall of at least 50% from the baseline, the usual definition
//!   in depression and anxiety treatment research and collaborative care. A baseline
//!   of 0 has nothing to fall from and never shows a response.
//! - **Remission** is a current score below 5: back in the "minimal" band of the
//!   published bands (Kroenke et al. 2001 for the PHQ-9, Spitzer et al. 2006 for the
//!   GAD-7). It is reported on the current score alone, so a patient who started
//!   below 5 is "in remission" from the first response; whom to report it for is the
//!   caller's decision.
//!
//! Changes are health information: `Debug` prints no values.

use std::fmt;

use crate::instrument::InstrumentCode;
use crate::scoring::Score;

/// The fall from baseline, in percent, that counts as a response.
pub const RESPONSE_REDUCTION_PERCENT: u16 = 50;

/// An instrument's thresholds for change. Part of its versioned definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangeCriteria {
    /// A change of at least this many points, either way, is reliable.
    pub(crate) reliable_change_min: u16,
    /// A score below this is remission.
    pub(crate) remission_below: u16,
}

impl ChangeCriteria {
    pub const fn reliable_change_min(&self) -> u16 {
        self.reliable_change_min
    }

    pub const fn remission_below(&self) -> u16 {
        self.remission_below
    }
}

/// Whether a change is larger than the scale's measurement error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reliability {
    /// Fell by at least the reliable-change threshold: fewer symptoms.
    ReliablyImproved,
    /// Rose by at least the threshold: more symptoms.
    ReliablyDeteriorated,
    /// Moved by less than the threshold, which measurement error can explain.
    NotReliable,
}

/// The move from one score to a later one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// Later minus earlier: negative is fewer symptoms.
    delta: i32,
    reliability: Reliability,
}

impl Change {
    fn between(earlier: &Score, later: &Score, criteria: ChangeCriteria) -> Self {
        let delta = i32::from(later.total()) - i32::from(earlier.total());
        let threshold = i32::from(criteria.reliable_change_min);
        let reliability = if delta <= -threshold {
            Reliability::ReliablyImproved
        } else if delta >= threshold {
            Reliability::ReliablyDeteriorated
        } else {
            Reliability::NotReliable
        };
        Self { delta, reliability }
    }

    pub const fn delta(&self) -> i32 {
        self.delta
    }

    pub const fn reliability(&self) -> Reliability {
        self.reliability
    }
}

impl fmt::Debug for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Change { [redacted] }")
    }
}

/// Where a patient stands on one instrument compared with earlier responses.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    since_baseline: Change,
    since_previous: Option<Change>,
    response: bool,
    remission: bool,
}

impl Progress {
    pub const fn since_baseline(&self) -> Change {
        self.since_baseline
    }

    /// `None` when there was no response between the baseline and this one.
    pub const fn since_previous(&self) -> Option<Change> {
        self.since_previous
    }

    /// At least a 50% fall from the baseline.
    pub const fn is_response(&self) -> bool {
        self.response
    }

    /// The current score is below the instrument's remission threshold.
    pub const fn is_remission(&self) -> bool {
        self.remission
    }
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Progress { [redacted] }")
    }
}

/// Why scores cannot be compared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    #[error("the instrument {instrument} defines no reliable change, response or remission")]
    NotDefined { instrument: InstrumentCode },
    #[error(
        "scores of different instruments, or of versions on different scales, cannot be compared"
    )]
    NotComparable,
}

/// Compares `current` with the `baseline` and, when there is one, the `previous`
/// response. All three must be scores of the same instrument on the same scale.
pub fn progress(
    baseline: &Score,
    previous: Option<&Score>,
    current: &Score,
) -> Result<Progress, ChangeError> {
    let instrument = current.instrument();
    let comparable = |earlier: &Score| {
        earlier.instrument().code() == instrument.code()
            && earlier.instrument().total_max() == instrument.total_max()
    };
    if !comparable(baseline) || !previous.is_none_or(comparable) {
        return Err(ChangeError::NotComparable);
    }
    let Some(criteria) = instrument.change_criteria() else {
        return Err(ChangeError::NotDefined {
            instrument: instrument.code().clone(),
        });
    };

    let baseline_total = u32::from(baseline.total());
    let current_total = u32::from(current.total());
    let response = baseline_total > 0
        && current_total * 100 <= baseline_total * u32::from(100 - RESPONSE_REDUCTION_PERCENT);
    Ok(Progress {
        since_baseline: Change::between(baseline, current, criteria),
        since_previous: previous.map(|previous| Change::between(previous, current, criteria)),
        response,
        remission: current.total() < criteria.remission_below,
    })
}
