//! Cron expressions and the slots they give in a time zone.
//!
//! [`Cron`] is the standard five-field syntax — minute, hour, day of month, month, day
//! of week — with `*`, lists (`1,15`), ranges (`9-17`), steps (`*/15`, `0-30/10`,
//! `5/20` meaning `5-59/20`), month and weekday names (`JAN`, `mon-fri`), `7` as a
//! second Sunday, and the macros `@yearly`, `@annually`, `@monthly`, `@weekly`,
//! `@daily`, `@midnight`, `@hourly`. As in Vixie cron, when both the day of month and
//! the day of week are restricted (neither starts with `*`), a day matches when
//! either does. Seconds, `L`, `W`, `#` and `?` are refused rather than guessed at.
//!
//! [`Recurrence`] pairs a cron with an IANA time zone and turns civil times into
//! instants ("slots"). The cron is matched against the wall clock of the zone; the
//! slot is stored as an instant. Daylight saving time:
//!
//! - **Gap** (spring forward): a wall time that does not exist that day (02:30 in
//!   `America/New_York` on the March change day) fires at the first instant after the
//!   gap (03:00 EDT). Several slots inside one gap collapse into that one instant, and
//!   so does a slot at the gap's end: it fires once.
//! - **Fold** (fall back): a wall time that occurs twice (01:30 on the November change
//!   day) fires once, at its first occurrence (01:30 EDT); its repeat does not fire.
//!
//! Both rules keep the map from wall time to instant monotone, which the searches
//! below rely on: the first candidate wall time whose instant passes `t` gives the
//! earliest slot after `t`.
//!
//! This module must never search without a bound: every search stops after
//! [`SEARCH_DAYS_MAX`] days.

use std::fmt;

use jiff::civil::{Date, DateTime};
use jiff::tz::{AmbiguousOffset, Offset, TimeZone};
use jiff::{SignedDuration, Timestamp};

/// The most days a search for the next (or previous) slot walks. A slot on 29
/// February that must also be a Monday can be 28 years away; anything rarer than
/// that is refused when the schedule is written.
pub const SEARCH_DAYS_MAX: usize = 366 * 29;
/// The longest cron expression accepted.
pub const CRON_LEN_MAX: usize = 200;

/// Why a cron expression or time zone was refused. The expression is not PHI, so the
/// message may quote the offending part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    #[error(
        "a cron expression has 5 fields (minute hour day-of-month month day-of-week), found {0}"
    )]
    FieldCount(usize),
    #[error("cron {field} field: {reason}")]
    Field { field: &'static str, reason: String },
    #[error("unknown cron macro {0:?}")]
    UnknownMacro(String),
    #[error("a cron expression is at most {CRON_LEN_MAX} characters")]
    TooLong,
    #[error("the cron expression matches no time within {SEARCH_DAYS_MAX} days")]
    NeverMatches,
    #[error("unknown time zone {0:?} (an IANA name such as America/New_York is expected)")]
    UnknownTimeZone(String),
}

/// One field's bounds and names.
struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    /// Names for `min`, `min + 1`, …
    names: &'static [&'static str],
}

const MINUTE: FieldSpec = FieldSpec {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: FieldSpec = FieldSpec {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY_OF_MONTH: FieldSpec = FieldSpec {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ],
};
/// 0 and 7 are both Sunday.
const DAY_OF_WEEK: FieldSpec = FieldSpec {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
};

/// A parsed five-field cron expression: one bit set per allowed value.
#[derive(Clone, PartialEq, Eq)]
pub struct Cron {
    source: String,
    minutes: u64,
    hours: u64,
    days_of_month: u64,
    months: u64,
    /// Bit 0 is Sunday.
    days_of_week: u64,
    /// Whether each day field was restricted (did not start with `*`): when both are,
    /// a day matches if either matches.
    day_of_month_restricted: bool,
    day_of_week_restricted: bool,
}

impl fmt::Debug for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cron({:?})", self.source)
    }
}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl Cron {
    pub fn parse(text: &str) -> Result<Self, CronError> {
        if text.len() > CRON_LEN_MAX {
            return Err(CronError::TooLong);
        }
        let trimmed = text.trim();
        let expanded = if let Some(name) = trimmed.strip_prefix('@') {
            match name.to_ascii_lowercase().as_str() {
                "yearly" | "annually" => "0 0 1 1 *",
                "monthly" => "0 0 1 * *",
                "weekly" => "0 0 * * 0",
                "daily" | "midnight" => "0 0 * * *",
                "hourly" => "0 * * * *",
                _ => return Err(CronError::UnknownMacro(trimmed.to_owned())),
            }
        } else {
            trimmed
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let [minute, hour, day_of_month, month, day_of_week] = fields[..] else {
            return Err(CronError::FieldCount(fields.len()));
        };
        let mut days_of_week = parse_field(day_of_week, &DAY_OF_WEEK)?;
        if days_of_week & (1 << 7) != 0 {
            days_of_week = (days_of_week & !(1 << 7)) | 1;
        }
        Ok(Self {
            source: trimmed.to_owned(),
            minutes: parse_field(minute, &MINUTE)?,
            hours: parse_field(hour, &HOUR)?,
            days_of_month: parse_field(day_of_month, &DAY_OF_MONTH)?,
            months: parse_field(month, &MONTH)?,
            days_of_week,
            day_of_month_restricted: !day_of_month.starts_with('*'),
            day_of_week_restricted: !day_of_week.starts_with('*'),
        })
    }

    /// The expression as written (trimmed).
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the cron fires on `date` at some time.
    pub fn matches_date(&self, date: Date) -> bool {
        if !bit(self.months, date.month()) {
            return false;
        }
        let by_day_of_month = bit(self.days_of_month, date.day());
        let by_day_of_week = bit(self.days_of_week, date.weekday().to_sunday_zero_offset());
        if self.day_of_month_restricted && self.day_of_week_restricted {
            by_day_of_month || by_day_of_week
        } else {
            by_day_of_month && by_day_of_week
        }
    }

    /// Whether the cron fires at the wall time `datetime` (seconds ignored).
    pub fn matches(&self, datetime: DateTime) -> bool {
        self.matches_date(datetime.date())
            && bit(self.hours, datetime.hour())
            && bit(self.minutes, datetime.minute())
    }

    /// The first wall time from `from` (inclusive, at minute precision) in the
    /// direction given for which `accept` holds, within [`SEARCH_DAYS_MAX`] days.
    fn scan(
        &self,
        from: DateTime,
        forward: bool,
        mut accept: impl FnMut(DateTime) -> bool,
    ) -> Option<DateTime> {
        let from = from.date().at(from.hour(), from.minute(), 0, 0);
        let mut date = from.date();
        for n_day in 0..SEARCH_DAYS_MAX {
            if self.matches_date(date) {
                for hour in ordered(self.hours, 24, forward) {
                    for minute in ordered(self.minutes, 60, forward) {
                        let candidate = date.at(hour, minute, 0, 0);
                        let reached = if forward {
                            candidate >= from
                        } else {
                            candidate <= from
                        };
                        if n_day == 0 && !reached {
                            continue;
                        }
                        if accept(candidate) {
                            return Some(candidate);
                        }
                    }
                }
            }
            date = if forward {
                date.tomorrow().ok()?
            } else {
                date.yesterday().ok()?
            };
        }
        None
    }
}

/// The values of `set` below `n`, ascending or descending.
fn ordered(set: u64, n: i8, forward: bool) -> impl Iterator<Item = i8> {
    let values = (0..n).filter(move |value| bit(set, *value));
    let values: Vec<i8> = if forward {
        values.collect()
    } else {
        values.rev().collect()
    };
    values.into_iter()
}

fn bit(set: u64, value: i8) -> bool {
    u32::try_from(value).is_ok_and(|value| value < 64 && set & (1 << value) != 0)
}

fn parse_field(text: &str, spec: &FieldSpec) -> Result<u64, CronError> {
    let error = |reason: String| CronError::Field {
        field: spec.name,
        reason,
    };
    let mut set = 0u64;
    for item in text.split(',') {
        if item.is_empty() {
            return Err(error(format!("empty item in {text:?}")));
        }
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step
                    .parse()
                    .map_err(|_| error(format!("step {step:?} is not a number")))?;
                if step == 0 || step > spec.max - spec.min + 1 {
                    return Err(error(format!(
                        "step {step} is outside 1..={}",
                        spec.max - spec.min + 1
                    )));
                }
                (range, Some(step))
            }
            None => (item, None),
        };
        let (low, high) = if range == "*" {
            (spec.min, spec.max)
        } else if let Some((low, high)) = range.split_once('-') {
            let (low, high) = (value(low, spec)?, value(high, spec)?);
            if low > high {
                return Err(error(format!(
                    "range {range:?} runs backwards (wrap-around is not supported)"
                )));
            }
            (low, high)
        } else {
            let low = value(range, spec)?;
            // `5/20` is `5-max/20`, as in Vixie cron.
            (low, if step.is_some() { spec.max } else { low })
        };
        let step = step.unwrap_or(1) as usize;
        for v in (low..=high).step_by(step) {
            set |= 1 << v;
        }
    }
    Ok(set)
}

fn value(text: &str, spec: &FieldSpec) -> Result<u32, CronError> {
    let error = |reason: String| CronError::Field {
        field: spec.name,
        reason,
    };
    let v = if text.bytes().all(|b| b.is_ascii_digit()) && !text.is_empty() && text.len() <= 2 {
        text.parse::<u32>().expect("BUG: one or two digits parse")
    } else if let Some(index) = spec
        .names
        .iter()
        .position(|name| name.eq_ignore_ascii_case(text))
    {
        spec.min + u32::try_from(index).expect("BUG: a dozen names fit u32")
    } else {
        return Err(error(format!("{text:?} is not a value")));
    };
    if !(spec.min..=spec.max).contains(&v) {
        return Err(error(format!("{v} is outside {}..={}", spec.min, spec.max)));
    }
    Ok(v)
}

/// A cron read on the wall clock of one time zone: the slots of a schedule.
#[derive(Clone)]
pub struct Recurrence {
    cron: Cron,
    time_zone: TimeZone,
    time_zone_name: String,
}

impl fmt::Debug for Recurrence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Recurrence({:?} in {})",
            self.cron.source, self.time_zone_name
        )
    }
}

impl Recurrence {
    /// Parses `cron` and looks `time_zone` up in the system's IANA database (the
    /// bundled copy when the system has none), and refuses a cron that never fires.
    pub fn new(cron: &str, time_zone: &str) -> Result<Self, CronError> {
        let cron = Cron::parse(cron)?;
        let tz = TimeZone::get(time_zone)
            .map_err(|_| CronError::UnknownTimeZone(time_zone.to_owned()))?;
        let recurrence = Self {
            cron,
            time_zone: tz,
            time_zone_name: time_zone.to_owned(),
        };
        // A month/day pair that never exists (`0 0 30 2 *`) would make every search
        // walk its full bound; refuse it once, here.
        if recurrence
            .cron
            .scan(jiff::civil::date(2024, 1, 1).at(0, 0, 0, 0), true, |_| true)
            .is_none()
        {
            return Err(CronError::NeverMatches);
        }
        Ok(recurrence)
    }

    pub fn cron(&self) -> &Cron {
        &self.cron
    }

    pub fn time_zone_name(&self) -> &str {
        &self.time_zone_name
    }

    /// The instant a wall time fires at, by the gap and fold rules of the module.
    pub fn instant(&self, datetime: DateTime) -> Option<Timestamp> {
        match self.time_zone.to_ambiguous_timestamp(datetime).offset() {
            AmbiguousOffset::Unambiguous { offset } => offset.to_timestamp(datetime).ok(),
            AmbiguousOffset::Fold { before, .. } => before.to_timestamp(datetime).ok(),
            AmbiguousOffset::Gap { after, .. } => {
                // Read with the offset after the gap, the wall time names an instant
                // before the gap; the next transition from there is the gap itself.
                let before_gap = after.to_timestamp(datetime).ok()?;
                self.time_zone
                    .following(before_gap)
                    .next()
                    .map(|transition| transition.timestamp())
            }
        }
    }

    /// The smallest and largest UTC offsets of the zone within a day of `t`: wall
    /// times outside `t + min ..= t + max` cannot fire near `t`.
    fn offsets_around(&self, t: Timestamp) -> (Offset, Offset) {
        let day = SignedDuration::from_hours(24);
        let offsets = [t.checked_sub(day).ok(), Some(t), t.checked_add(day).ok()]
            .into_iter()
            .flatten()
            .map(|t| self.time_zone.to_offset(t));
        let min = offsets.clone().min().expect("BUG: t itself is there");
        let max = offsets.max().expect("BUG: t itself is there");
        (min, max)
    }

    /// The first slot strictly after `t`.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        // Every wall time before `t + min` fires at or before `t` (the map from wall
        // time to instant is monotone), so the search can start there.
        let (min, _) = self.offsets_around(t);
        let mut found = None;
        self.cron.scan(min.to_datetime(t), true, |candidate| {
            match self.instant(candidate) {
                Some(instant) if instant > t => {
                    found = Some(instant);
                    true
                }
                _ => false,
            }
        })?;
        found
    }

    /// The last slot at or before `t`.
    pub fn latest_at_or_before(&self, t: Timestamp) -> Option<Timestamp> {
        let (_, max) = self.offsets_around(t);
        let mut found = None;
        self.cron.scan(max.to_datetime(t), false, |candidate| {
            match self.instant(candidate) {
                Some(instant) if instant <= t => {
                    found = Some(instant);
                    true
                }
                _ => false,
            }
        })?;
        found
    }
}

/// `time` to `jiff` at the boundary (the database speaks `time`).
pub fn to_timestamp(t: time::OffsetDateTime) -> Timestamp {
    Timestamp::from_nanosecond(t.unix_timestamp_nanos())
        .expect("BUG: a database timestamp is within jiff's range")
}

/// `jiff` to `time` at the boundary.
pub fn from_timestamp(t: Timestamp) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(t.as_nanosecond())
        .expect("BUG: a slot is within time's range")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn every(cron: &str, tz: &str) -> Recurrence {
        Recurrence::new(cron, tz).unwrap()
    }

    /// Slots after `from`, `n` of them, in UTC.
    fn slots(recurrence: &Recurrence, from: &str, n: usize) -> Vec<String> {
        let mut t = ts(from);
        (0..n)
            .map(|_| {
                t = recurrence.next_after(t).unwrap();
                t.to_string()
            })
            .collect()
    }

    #[test]
    fn the_standard_syntax_parses_into_the_values_it_names() {
        let cron = Cron::parse("*/15 9-17 * * 1-5").unwrap();
        assert_eq!(cron.minutes, (1 << 0) | (1 << 15) | (1 << 30) | (1 << 45));
        assert_eq!(cron.hours, (9..=17).fold(0, |set, h| set | (1 << h)));
        assert_eq!(cron.days_of_week, 0b0111110);
        let cron = Cron::parse("0,30 8 1,15 jan-mar,Dec sun,7").unwrap();
        assert_eq!(cron.minutes, 1 | (1 << 30));
        assert_eq!(cron.months, 0b1_0000_0000_1110);
        assert_eq!(cron.days_of_week, 1);
        let cron = Cron::parse("5/20 0-10/5 * * *").unwrap();
        assert_eq!(cron.minutes, (1 << 5) | (1 << 25) | (1 << 45));
        assert_eq!(cron.hours, 1 | (1 << 5) | (1 << 10));
        assert_eq!(Cron::parse("@daily").unwrap().minutes, 1);
        assert_eq!(Cron::parse("@hourly").unwrap().hours, (1 << 24) - 1);
    }

    #[test]
    fn malformed_expressions_are_refused_with_the_field_named() {
        for (text, field) in [
            ("60 * * * *", "minute"),
            ("* 24 * * *", "hour"),
            ("* * 0 * *", "day-of-month"),
            ("* * * 13 *", "month"),
            ("* * * * 8", "day-of-week"),
            ("*/0 * * * *", "minute"),
            ("5-1 * * * *", "minute"),
            ("1,,2 * * * *", "minute"),
            ("L * * * *", "minute"),
            ("* * * foo *", "month"),
            ("* * ? * *", "day-of-month"),
            ("-1 * * * *", "minute"),
        ] {
            match Cron::parse(text) {
                Err(CronError::Field { field: found, .. }) => assert_eq!(found, field, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        assert_eq!(Cron::parse("* * * *"), Err(CronError::FieldCount(4)));
        assert_eq!(Cron::parse("0 * * * * *"), Err(CronError::FieldCount(6)));
        assert!(matches!(
            Cron::parse("@often"),
            Err(CronError::UnknownMacro(_))
        ));
        assert_eq!(
            Recurrence::new("0 0 30 2 *", "UTC").unwrap_err(),
            CronError::NeverMatches
        );
        assert!(matches!(
            Recurrence::new("0 0 * * *", "Mars/Olympus_Mons"),
            Err(CronError::UnknownTimeZone(_))
        ));
    }

    #[test]
    fn both_day_fields_restricted_match_either_as_in_vixie_cron() {
        // The 13th, or any Friday.
        let either = every("0 12 13 * 5", "UTC");
        assert_eq!(
            slots(&either, "2026-02-01T00:00:00Z", 3),
            [
                "2026-02-06T12:00:00Z",
                "2026-02-13T12:00:00Z",
                "2026-02-20T12:00:00Z"
            ]
        );
        // One field starting with `*` leaves the other alone.
        let fridays = every("0 12 */1 * 5", "UTC");
        assert_eq!(
            slots(&fridays, "2026-02-01T00:00:00Z", 2),
            ["2026-02-06T12:00:00Z", "2026-02-13T12:00:00Z"]
        );
    }

    #[test]
    fn slots_are_read_on_the_zones_wall_clock_and_stored_in_utc() {
        let working = every("*/15 9-17 * * 1-5", "America/New_York");
        // Friday 17:45 EST, then Monday 09:00 EST.
        assert_eq!(
            slots(&working, "2026-01-09T22:40:00Z", 2),
            ["2026-01-09T22:45:00Z", "2026-01-12T14:00:00Z"]
        );
        let tokyo = every("0 9 * * *", "Asia/Tokyo");
        assert_eq!(
            slots(&tokyo, "2026-06-01T00:00:00Z", 1),
            ["2026-06-02T00:00:00Z"]
        );
    }

    #[test]
    fn a_slot_in_the_spring_forward_gap_fires_at_the_first_instant_after_it() {
        // 2026-03-08: New York's clocks go from 02:00 EST to 03:00 EDT (07:00 UTC).
        let daily = every("30 2 * * *", "America/New_York");
        assert_eq!(
            slots(&daily, "2026-03-07T00:00:00Z", 3),
            [
                "2026-03-07T07:30:00Z", // 02:30 EST
                "2026-03-08T07:00:00Z", // 02:30 does not exist: 03:00 EDT
                "2026-03-09T06:30:00Z", // 02:30 EDT
            ]
        );
        // Every slot of the missing hour, and 03:00 itself, fire once, at 03:00 EDT.
        let quarterly = every("*/15 * * * *", "America/New_York");
        assert_eq!(
            slots(&quarterly, "2026-03-08T06:40:00Z", 4),
            [
                "2026-03-08T06:45:00Z", // 01:45 EST
                "2026-03-08T07:00:00Z", // 02:00 … 03:00, once
                "2026-03-08T07:15:00Z", // 03:15 EDT
                "2026-03-08T07:30:00Z",
            ]
        );
        assert_eq!(
            quarterly
                .latest_at_or_before(ts("2026-03-08T07:10:00Z"))
                .unwrap()
                .to_string(),
            "2026-03-08T07:00:00Z"
        );
    }

    #[test]
    fn a_slot_in_the_fall_back_repeat_fires_once_at_its_first_occurrence() {
        // 2026-11-01: New York's clocks go from 02:00 EDT back to 01:00 EST (06:00 UTC).
        let daily = every("30 1 * * *", "America/New_York");
        assert_eq!(
            slots(&daily, "2026-10-31T00:00:00Z", 3),
            [
                "2026-10-31T05:30:00Z", // 01:30 EDT
                "2026-11-01T05:30:00Z", // the first 01:30 (EDT); the second does not fire
                "2026-11-02T06:30:00Z", // 01:30 EST
            ]
        );
        // Asked from inside the repeated hour, the repeat is still not a slot.
        assert_eq!(
            slots(&daily, "2026-11-01T06:10:00Z", 1),
            ["2026-11-02T06:30:00Z"]
        );
        let half_hourly = every("*/30 * * * *", "America/New_York");
        assert_eq!(
            slots(&half_hourly, "2026-11-01T05:10:00Z", 4),
            [
                "2026-11-01T05:30:00Z", // 01:30 EDT
                // 01:00 and 01:30 EST are repeats: not fired.
                "2026-11-01T07:00:00Z", // 02:00 EST
                "2026-11-01T07:30:00Z",
                "2026-11-01T08:00:00Z",
            ]
        );
        assert_eq!(
            half_hourly
                .latest_at_or_before(ts("2026-11-01T06:45:00Z"))
                .unwrap()
                .to_string(),
            "2026-11-01T05:30:00Z"
        );
    }

    #[test]
    fn the_latest_slot_at_or_before_an_instant_includes_the_instant_itself() {
        let hourly = every("0 * * * *", "Europe/Paris");
        let at = ts("2026-05-05T10:00:00Z");
        assert_eq!(hourly.latest_at_or_before(at), Some(at));
        assert_eq!(
            hourly.next_after(at).unwrap().to_string(),
            "2026-05-05T11:00:00Z"
        );
        let leap = every("0 0 29 2 *", "UTC");
        assert_eq!(
            leap.latest_at_or_before(ts("2027-01-01T00:00:00Z"))
                .unwrap()
                .to_string(),
            "2024-02-29T00:00:00Z"
        );
    }

    #[test]
    fn a_bundled_time_zone_database_is_there_for_systems_without_one() {
        let bundled = jiff::tz::TimeZoneDatabase::bundled();
        let new_york = bundled.get("America/New_York").unwrap();
        assert_eq!(
            new_york.to_offset(ts("2026-07-01T00:00:00Z")).seconds(),
            -4 * 3600
        );
    }

    const ZONES: &[&str] = &[
        "UTC",
        "America/New_York",
        "Europe/London",
        "Australia/Lord_Howe",
        "Asia/Kolkata",
        "America/Santiago",
    ];

    /// One field with values in `min..=max`.
    fn field(min: u32, max: u32) -> impl Strategy<Value = String> {
        let value = min..=max;
        prop_oneof![
            Just("*".to_owned()),
            (1u32..=(max - min + 1).min(20)).prop_map(|step| format!("*/{step}")),
            (value.clone(), value.clone()).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
            (value.clone(), value.clone(), 1u32..5).prop_map(|(a, b, step)| format!(
                "{}-{}/{step}",
                a.min(b),
                a.max(b)
            )),
            (value.clone(), value.clone()).prop_map(|(a, b)| format!("{a},{b}")),
            value.prop_map(|a| a.to_string()),
        ]
    }

    fn cron_text() -> impl Strategy<Value = String> {
        (
            field(0, 59),
            field(0, 23),
            field(1, 31),
            field(1, 12),
            field(0, 7),
        )
            .prop_map(|(mi, h, dom, mo, dow)| format!("{mi} {h} {dom} {mo} {dow}"))
            // `0 0 31 2 *` never fires: such schedules are refused when written.
            .prop_filter("fires at some time", |text| {
                Recurrence::new(text, "UTC").is_ok()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The next slot is after `t`, fires on the cron in the zone, and no minute
        /// between them fires.
        #[test]
        fn next_after_finds_the_first_matching_minute(
            text in cron_text(),
            zone in proptest::sample::select(ZONES),
            start in 1_700_000_000i64..1_900_000_000,
        ) {
            let recurrence = Recurrence::new(&text, zone).unwrap();
            let t = Timestamp::from_second(start).unwrap();
            let next = recurrence.next_after(t).unwrap();
            prop_assert!(next > t);
            prop_assert_eq!(recurrence.latest_at_or_before(next), Some(next));
            // Brute force over the minutes of a short horizon: the first instant whose
            // wall time matches (or which ends a gap holding a match) is `next`.
            let horizon = (next.as_second() - t.as_second()).min(3 * 24 * 3600);
            let mut minute = t.as_second() - t.as_second().rem_euclid(60) + 60;
            while minute < t.as_second() + horizon && minute < next.as_second() {
                let instant = Timestamp::from_second(minute).unwrap();
                let wall = recurrence.time_zone.to_datetime(instant);
                // A wall time in a fold fires only at its first occurrence.
                let first = recurrence.instant(wall) == Some(instant);
                prop_assert!(
                    !(first && recurrence.cron.matches(wall)),
                    "{} matches before {}", instant, next
                );
                minute += 60;
            }
            let wall = recurrence.time_zone.to_datetime(next);
            let in_gap = recurrence.time_zone.to_offset(next)
                != recurrence.time_zone.to_offset(next.checked_sub(SignedDuration::from_secs(1)).unwrap());
            prop_assert!(recurrence.cron.matches(wall) || in_gap, "{} does not match", next);
        }

        /// Walking back from a slot gives the previous slot, whose next is the slot.
        #[test]
        fn latest_before_and_next_after_are_inverse(
            text in cron_text(),
            zone in proptest::sample::select(ZONES),
            start in 1_700_000_000i64..1_900_000_000,
        ) {
            let recurrence = Recurrence::new(&text, zone).unwrap();
            let t = Timestamp::from_second(start).unwrap();
            let latest = recurrence.latest_at_or_before(t).unwrap();
            prop_assert!(latest <= t);
            prop_assert!(recurrence.next_after(latest).unwrap() > t);
        }

        #[test]
        fn any_text_parses_or_is_refused_without_panicking(text in "\\PC{0,40}") {
            let _ = Cron::parse(&text);
        }
    }
}
