//! The cadence engine: when the instances of a plan fall due, computed from the plan,
//! its anchor (the enrolment), the patient's time zone and the sessions held.
//!
//! A [`Cadence`] counts in days, in months or in sessions: `every_days` or
//! `every_months` (at most one), and `every_sessions`, alone or with either, in which
//! case whichever comes first sets the next due date. Each due date becomes a
//! [`Slot`]: a sequence number, a stable key (`"k:12"`), the instant it is due, and
//! the window in which it can be answered.
//!
//! **The rules**, applied in this order, slot by slot:
//!
//! - **Slot 0** (the baseline) is due on the anchor's local date at the plan's
//!   `local_time`, even if that time of day had passed when the patient was enrolled
//!   (its window is there for that).
//! - **Calendar due dates** are local dates at `local_time`. With `every_days: n`,
//!   the next is the previous calendar due date + n days. With `every_months: m` it is
//!   the origin + k·m months, always computed from the origin (never from the
//!   previous, clamped date) and clamped to the end of shorter months: an origin on
//!   31 January gives 28 (or 29) February, then 31 March — never drifting to the 28th.
//!   The origin is the anchor's local date, until a slot falls due on sessions; from
//!   then the origin is that slot's local date.
//! - **Session due dates**: with `every_sessions: n`, the next slot is due at the time
//!   of the n-th session strictly after the previous due instant — but never before
//!   `before_days + after_days` days after it on the wall clock, so that the next
//!   window opens no earlier than the previous one closes. When sessions come faster
//!   than that, the slot is due at that earliest moment instead of at a session.
//!   Sessions are deduplicated (the same instant twice is one session) and may be
//!   given in any order.
//! - **Whichever comes first**: with both bases the earlier due instant wins; a tie
//!   goes to the calendar. [`Slot::basis`] says which won.
//! - **Windows**: an instance opens `before_days` days before its due time and
//!   closes `after_days` days after it, counted on the patient's wall clock. Windows
//!   are half-open — answerable from `opens_at`, until just before `closes_at` — and
//!   consecutive windows never overlap (`PlanDefinition::validate` checks the calendar
//!   case; the session rule above guarantees the rest).
//! - **Stop**: with `stop.after_days: n`, no slot is due after the anchor's local
//!   date plus n days. The other stop conditions (a number of responses, remission)
//!   depend on responses and are the caller's, through `StopConditions::reached`.
//!
//! **Daylight saving time.** Due times are read on the wall clock of the patient's
//! IANA time zone and stored as instants, so a 09:00 plan stays at 09:00 local across
//! changes of offset. A wall time that does not exist that day (02:30 on the spring-
//! forward day in `America/New_York`) resolves forward, to the first instant after the
//! gap (03:00 EDT); a wall time that occurs twice (01:30 on the fall-back day)
//! resolves to its earlier occurrence. These are the rules of the platform's schedules,
//! and they keep the map from wall time to instant monotone, which the window
//! guarantees rely on.
//!
//! **Determinism.** The slots are a pure function of the plan, the anchor, the time
//! zone and the set of sessions: the same inputs give the same slots and keys, so a
//! scheduler that runs twice (or a backfill over a past period) creates nothing new.
//! A slot depends only on sessions held before it is due: sessions recorded after an
//! instant never move a slot due at or before it, though a new session can make a
//! future slot fall due sooner. Every walk stops after [`SLOTS_MAX`] slots.
//!
//! Nothing here reads a clock, a database or a log.

use std::collections::BTreeSet;

use jiff::civil::{Date, DateTime};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{Span, Timestamp};
use serde::{Deserialize, Serialize};

use crate::plan::PlanDefinition;

/// The most slots one walk of a plan yields: daily for 270 years. A plan that would
/// go further ends there.
pub const SLOTS_MAX: u32 = 100_000;

/// How often a plan's instances fall due. At most one of `every_days` and
/// `every_months`; `every_sessions` alone or with either (whichever comes first).
/// `PlanDefinition::validate` enforces the combination and the bounds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cadence {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every_days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every_months: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every_sessions: Option<u32>,
}

impl Cadence {
    /// The shortest time between two calendar due dates, in days: `every_days`, or 28
    /// per month (a February) for `every_months`. `None` with sessions only.
    pub fn shortest_period_days(&self) -> Option<u32> {
        match (self.every_days, self.every_months) {
            (Some(days), _) => Some(days),
            (None, Some(months)) => Some(months.saturating_mul(28)),
            (None, None) => None,
        }
    }
}

/// What set a slot's due date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// The calendar: the anchor's date (slot 0) or a period after the origin.
    Calendar,
    /// The n-th session after the previous due date.
    Sessions,
}

/// One due date of a plan and its window.
///
/// Times of a patient's schedule: like any date tied to a patient, never log them
/// beside who the patient is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Slot {
    /// 0 for the baseline, then 1, 2, … in order of due date.
    pub seq: u32,
    /// `"k:{seq}"`: stable for the same inputs, unique within the plan's slots.
    pub key: String,
    pub due_at: Timestamp,
    /// The local date of `due_at` in the patient's time zone: the date the plan's
    /// rules are evaluated on for this slot.
    pub due_on: Date,
    /// The first instant the instance can be answered.
    pub opens_at: Timestamp,
    /// The instant the instance stops accepting answers (exclusive).
    pub closes_at: Timestamp,
    pub basis: Basis,
}

impl Slot {
    /// Whether the window is open at `t`: `opens_at <= t < closes_at`.
    pub fn is_open_at(&self, t: Timestamp) -> bool {
        self.opens_at <= t && t < self.closes_at
    }
}

/// Every slot of the plan, in order, lazily. Ends at the plan's `stop.after_days`, when
/// a sessions-only plan runs out of sessions, at [`SLOTS_MAX`], or at the end of the
/// representable calendar.
pub fn slot_iter(
    def: &PlanDefinition,
    anchor: Timestamp,
    tz: &TimeZone,
    sessions: &[Timestamp],
) -> SlotIter {
    let anchor_date = tz.to_datetime(anchor).date();
    let last_date = def.last_date(anchor, tz);
    let sessions: BTreeSet<Timestamp> = sessions.iter().copied().collect();
    SlotIter {
        cadence: def.cadence,
        before_days: def.window.before_days,
        after_days: def.window.after_days,
        local_time: def.local_time,
        tz: tz.clone(),
        sessions: sessions.into_iter().collect(),
        last_date,
        next_seq: 0,
        origin: anchor_date,
        n_periods: 0,
        previous: None,
        done: false,
    }
}

/// The slots due in `[from, until)`, in order. `from` and `until` may lie in the
/// past (a backfill of the instances that should have existed) or the future.
pub fn slots(
    def: &PlanDefinition,
    anchor: Timestamp,
    tz: &TimeZone,
    sessions: &[Timestamp],
    from: Timestamp,
    until: Timestamp,
) -> Vec<Slot> {
    slot_iter(def, anchor, tz, sessions)
        .take_while(|slot| slot.due_at < until)
        .filter(|slot| slot.due_at >= from)
        .collect()
}

/// The first slot due strictly after `after`, for a scheduler to wake up for (at its
/// `opens_at`). Computed from the sessions known now: a session held before it may
/// bring it forward, so compute again after each session.
pub fn next_slot_after(
    def: &PlanDefinition,
    anchor: Timestamp,
    tz: &TimeZone,
    sessions: &[Timestamp],
    after: Timestamp,
) -> Option<Slot> {
    slot_iter(def, anchor, tz, sessions).find(|slot| slot.due_at > after)
}

/// The slot whose window is open at `t`, if any (windows never overlap, so there is
/// at most one).
pub fn open_slot_at(
    def: &PlanDefinition,
    anchor: Timestamp,
    tz: &TimeZone,
    sessions: &[Timestamp],
    t: Timestamp,
) -> Option<Slot> {
    slot_iter(def, anchor, tz, sessions)
        .take_while(|slot| slot.opens_at <= t)
        .find(|slot| slot.is_open_at(t))
}

/// The lazy walk behind [`slot_iter`]. `Debug` shows how far it has gone, not the
/// patient's session times.
#[derive(Clone)]
pub struct SlotIter {
    cadence: Cadence,
    before_days: u32,
    after_days: u32,
    local_time: jiff::civil::Time,
    tz: TimeZone,
    /// Sorted, distinct.
    sessions: Vec<Timestamp>,
    last_date: Option<Date>,
    next_seq: u32,
    /// The local date calendar periods are counted from, and how many have passed.
    origin: Date,
    n_periods: u32,
    /// The previous slot's due instant, its wall-clock reading and its close.
    previous: Option<(Timestamp, DateTime, Timestamp)>,
    done: bool,
}

impl std::fmt::Debug for SlotIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotIter")
            .field("cadence", &self.cadence)
            .field("next_seq", &self.next_seq)
            .field("n_sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

impl SlotIter {
    /// The calendar due instant `n_periods + 1` periods after the origin.
    fn next_calendar(&self) -> Option<(Timestamp, u32)> {
        let n = self.n_periods.checked_add(1)?;
        let date = match (self.cadence.every_days, self.cadence.every_months) {
            (Some(days), _) => self
                .origin
                .checked_add(Span::new().try_days(i64::from(days) * i64::from(n)).ok()?)
                .ok()?,
            (None, Some(months)) => self
                .origin
                .checked_add(
                    Span::new()
                        .try_months(i64::from(months) * i64::from(n))
                        .ok()?,
                )
                .ok()?,
            (None, None) => return None,
        };
        Some((resolve(&self.tz, date.to_datetime(self.local_time))?, n))
    }

    /// The session due instant after `previous_due` (wall clock `previous_wall`).
    fn next_by_sessions(
        &self,
        previous_due: Timestamp,
        previous_wall: DateTime,
    ) -> Option<Timestamp> {
        let n = usize::try_from(self.cadence.every_sessions?).ok()?;
        let first_after = self
            .sessions
            .partition_point(|session| *session <= previous_due);
        let nth = *self
            .sessions
            .get(first_after.checked_add(n.checked_sub(1)?)?)?;
        let earliest = resolve(
            &self.tz,
            add_days(
                previous_wall,
                i64::from(self.before_days) + i64::from(self.after_days),
            )?,
        )?;
        Some(nth.max(earliest))
    }

    fn slot(&self, seq: u32, due_at: Timestamp, basis: Basis) -> Option<(Slot, DateTime)> {
        let wall = self.tz.to_datetime(due_at);
        let mut opens_at = resolve(&self.tz, add_days(wall, -i64::from(self.before_days))?)?;
        let mut closes_at = resolve(&self.tz, add_days(wall, i64::from(self.after_days))?)?;
        // A due time inside a repeated hour reads back to its earlier occurrence; keep
        // the window around the due instant and after the previous window even then.
        opens_at = opens_at.min(due_at);
        closes_at = closes_at.max(due_at);
        if let Some((_, _, previous_close)) = self.previous {
            opens_at = opens_at.max(previous_close);
        }
        let slot = Slot {
            seq,
            key: format!("k:{seq}"),
            due_at,
            due_on: wall.date(),
            opens_at,
            closes_at,
            basis,
        };
        Some((slot, wall))
    }

    fn advance(&mut self) -> Option<Slot> {
        if self.next_seq >= SLOTS_MAX {
            return None;
        }
        let seq = self.next_seq;
        let (due_at, basis, origin, n_periods) = match self.previous {
            None => {
                let due_at = resolve(&self.tz, self.origin.to_datetime(self.local_time))?;
                (due_at, Basis::Calendar, self.origin, 0)
            }
            Some((previous_due, previous_wall, _)) => {
                let calendar = self.next_calendar();
                let by_sessions = self.next_by_sessions(previous_due, previous_wall);
                match (calendar, by_sessions) {
                    (Some((calendar_due, _)), Some(session_due)) if session_due < calendar_due => {
                        let date = self.tz.to_datetime(session_due).date();
                        (session_due, Basis::Sessions, date, 0)
                    }
                    (Some((calendar_due, n)), _) => (calendar_due, Basis::Calendar, self.origin, n),
                    (None, Some(session_due)) => {
                        let date = self.tz.to_datetime(session_due).date();
                        (session_due, Basis::Sessions, date, 0)
                    }
                    (None, None) => return None,
                }
            }
        };
        let (slot, wall) = self.slot(seq, due_at, basis)?;
        if self.last_date.is_some_and(|last| slot.due_on > last) {
            return None;
        }
        debug_assert!(
            self.previous
                .is_none_or(|(previous_due, _, _)| previous_due < due_at),
            "BUG: due dates must strictly increase"
        );
        self.origin = origin;
        self.n_periods = n_periods;
        self.previous = Some((due_at, wall, slot.closes_at));
        self.next_seq += 1;
        Some(slot)
    }
}

impl Iterator for SlotIter {
    type Item = Slot;

    fn next(&mut self) -> Option<Slot> {
        if self.done {
            return None;
        }
        let slot = self.advance();
        self.done = slot.is_none();
        slot
    }
}

impl std::iter::FusedIterator for SlotIter {}

fn add_days(wall: DateTime, days: i64) -> Option<DateTime> {
    wall.checked_add(Span::new().try_days(days).ok()?).ok()
}

/// The instant a wall-clock time names in `tz`: a time in a gap (spring forward)
/// resolves to the first instant after the gap, a time in a fold (fall back) to its
/// earlier occurrence. Monotone in the wall time.
pub fn resolve(tz: &TimeZone, wall: DateTime) -> Option<Timestamp> {
    match tz.to_ambiguous_timestamp(wall).offset() {
        AmbiguousOffset::Unambiguous { offset } => offset.to_timestamp(wall).ok(),
        AmbiguousOffset::Fold { before, .. } => before.to_timestamp(wall).ok(),
        AmbiguousOffset::Gap { after, .. } => {
            // Read with the offset after the gap, the wall time names an instant
            // before the gap; the next transition from there is the gap's end.
            let before_gap = after.to_timestamp(wall).ok()?;
            tz.following(before_gap)
                .next()
                .map(|transition| transition.timestamp())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn a_wall_time_in_the_spring_gap_resolves_to_the_end_of_the_gap() {
        let tz = TimeZone::get("America/New_York").unwrap();
        let wall = jiff::civil::date(2025, 3, 9).at(2, 30, 0, 0);
        assert_eq!(resolve(&tz, wall), Some(ts("2025-03-09T07:00:00Z")));
    }

    #[test]
    fn a_wall_time_in_the_autumn_fold_resolves_to_its_first_occurrence() {
        let tz = TimeZone::get("America/New_York").unwrap();
        let wall = jiff::civil::date(2025, 11, 2).at(1, 30, 0, 0);
        // 01:30 EDT (UTC-4), not 01:30 EST.
        assert_eq!(resolve(&tz, wall), Some(ts("2025-11-02T05:30:00Z")));
    }
}
