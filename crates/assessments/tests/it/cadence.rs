//! The cadence engine: worked examples (month ends, daylight saving time, sessions
//! against days) and properties over random plans, zones, anchors and sessions.

use assessments::plan::examples;
use assessments::{
    Basis, Cadence, PlanDefinition, Slot, StopConditions, Window, next_slot_after, open_slot_at,
    slot_iter, slots,
};
use jiff::civil::{Date, Time, date, time};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Span, Timestamp};
use proptest::prelude::*;

fn tz(name: &str) -> TimeZone {
    TimeZone::get(name).expect("in the bundled time zone database")
}

fn ts(text: &str) -> Timestamp {
    text.parse().expect("an RFC 3339 timestamp")
}

/// The family plan's rules with this cadence, window and time of day, no stop.
fn plan(cadence: Cadence, before_days: u32, after_days: u32, local_time: Time) -> PlanDefinition {
    PlanDefinition {
        cadence,
        window: Window {
            before_days,
            after_days,
        },
        local_time,
        stop: StopConditions::default(),
        ..examples::family_mood()
    }
}

fn every_days(days: u32) -> Cadence {
    Cadence {
        every_days: Some(days),
        ..Cadence::default()
    }
}

fn every_months(months: u32) -> Cadence {
    Cadence {
        every_months: Some(months),
        ..Cadence::default()
    }
}

fn first(
    def: &PlanDefinition,
    anchor: Timestamp,
    tz: &TimeZone,
    sessions: &[Timestamp],
    n: usize,
) -> Vec<Slot> {
    slot_iter(def, anchor, tz, sessions).take(n).collect()
}

fn due_dates(slots: &[Slot]) -> Vec<Date> {
    slots.iter().map(|slot| slot.due_on).collect()
}

// ---------------------------------------------------------------------------------
// Worked examples

#[test]
fn the_baseline_is_due_on_the_anchor_date_at_the_local_time_and_keys_count_from_zero() {
    let tz = tz("America/New_York");
    // Enrolled at 15:20 local on 2025-01-06.
    let anchor = ts("2025-01-06T20:20:00Z");
    let def = plan(every_days(7), 2, 2, time(9, 0, 0, 0));
    let slots = first(&def, anchor, &tz, &[], 3);
    assert_eq!(slots[0].seq, 0);
    assert_eq!(slots[0].key, "k:0");
    assert_eq!(slots[0].due_at, ts("2025-01-06T14:00:00Z"));
    assert_eq!(slots[0].opens_at, ts("2025-01-04T14:00:00Z"));
    assert_eq!(slots[0].closes_at, ts("2025-01-08T14:00:00Z"));
    assert_eq!(slots[0].basis, Basis::Calendar);
    assert_eq!(
        slots
            .iter()
            .map(|slot| slot.key.as_str())
            .collect::<Vec<_>>(),
        ["k:0", "k:1", "k:2"]
    );
    assert_eq!(slots[2].due_at, ts("2025-01-20T14:00:00Z"));
}

#[test]
fn monthly_from_the_31st_of_january_clamps_to_month_ends_without_drifting() {
    let tz = tz("UTC");
    let def = plan(every_months(1), 3, 3, time(9, 0, 0, 0));
    let slots = first(&def, ts("2024-01-31T12:00:00Z"), &tz, &[], 14);
    assert_eq!(
        due_dates(&slots),
        [
            date(2024, 1, 31),
            date(2024, 2, 29),
            date(2024, 3, 31),
            date(2024, 4, 30),
            date(2024, 5, 31),
            date(2024, 6, 30),
            date(2024, 7, 31),
            date(2024, 8, 31),
            date(2024, 9, 30),
            date(2024, 10, 31),
            date(2024, 11, 30),
            date(2024, 12, 31),
            date(2025, 1, 31),
            date(2025, 2, 28),
        ]
    );
}

#[test]
fn yearly_from_the_29th_of_february_falls_on_the_28th_until_the_next_leap_year() {
    let tz = tz("Europe/London");
    let def = plan(every_months(12), 7, 7, time(9, 0, 0, 0));
    let slots = first(&def, ts("2024-02-29T10:00:00Z"), &tz, &[], 5);
    assert_eq!(
        due_dates(&slots),
        [
            date(2024, 2, 29),
            date(2025, 2, 28),
            date(2026, 2, 28),
            date(2027, 2, 28),
            date(2028, 2, 29),
        ]
    );
    // Monthly from the 29th: the 29th every month, the 28th in a common February.
    let monthly = plan(every_months(1), 3, 3, time(9, 0, 0, 0));
    let slots = first(&monthly, ts("2024-02-29T10:00:00Z"), &tz, &[], 14);
    assert_eq!(slots[1].due_on, date(2024, 3, 29));
    assert_eq!(slots[12].due_on, date(2025, 2, 28));
    assert_eq!(slots[13].due_on, date(2025, 3, 29));
}

#[test]
fn nine_in_the_morning_stays_nine_local_across_both_changes_in_new_york() {
    let tz = tz("America/New_York");
    let def = plan(every_days(7), 3, 3, time(9, 0, 0, 0));
    // Saturdays around 2025-03-09 (spring forward) and 2025-11-02 (fall back).
    let slots = first(&def, ts("2025-03-01T12:00:00Z"), &tz, &[], 40);
    assert_eq!(slots[0].due_at, ts("2025-03-01T14:00:00Z")); // EST, UTC-5
    assert_eq!(slots[1].due_at, ts("2025-03-08T14:00:00Z"));
    assert_eq!(slots[2].due_at, ts("2025-03-15T13:00:00Z")); // EDT, UTC-4
    let november = slots
        .iter()
        .find(|slot| slot.due_on == date(2025, 11, 8))
        .unwrap();
    assert_eq!(november.due_at, ts("2025-11-08T14:00:00Z")); // EST again
    for slot in &slots {
        assert_eq!(
            tz.to_datetime(slot.due_at).time(),
            time(9, 0, 0, 0),
            "{slot:?}"
        );
    }
    // The window of the slot due just after the change is counted on the wall
    // clock: it opened three days before at 09:00 EST.
    assert_eq!(slots[2].opens_at, ts("2025-03-12T13:00:00Z"));
    assert_eq!(slots[1].closes_at, ts("2025-03-11T13:00:00Z"));
}

#[test]
fn nine_in_the_morning_stays_nine_local_across_british_summer_time() {
    let tz = tz("Europe/London");
    let def = plan(every_days(14), 5, 5, time(9, 0, 0, 0));
    let slots = first(&def, ts("2025-03-20T08:00:00Z"), &tz, &[], 30);
    assert_eq!(slots[0].due_at, ts("2025-03-20T09:00:00Z")); // GMT
    assert_eq!(slots[1].due_at, ts("2025-04-03T08:00:00Z")); // BST, UTC+1
    for slot in &slots {
        assert_eq!(tz.to_datetime(slot.due_at).time(), time(9, 0, 0, 0));
    }
}

#[test]
fn a_local_time_that_does_not_exist_that_day_is_due_at_the_end_of_the_gap() {
    let tz = tz("America/New_York");
    // Daily-ish at 02:30: on 2025-03-09 there is no 02:30; it is due at 03:00 EDT.
    let def = plan(every_days(2), 0, 1, time(2, 30, 0, 0));
    let slots = first(&def, ts("2025-03-07T12:00:00Z"), &tz, &[], 3);
    assert_eq!(slots[1].due_on, date(2025, 3, 9));
    assert_eq!(slots[1].due_at, ts("2025-03-09T07:00:00Z"));
    assert_eq!(tz.to_datetime(slots[1].due_at).time(), time(3, 0, 0, 0));
    // An hour that happens twice: 01:30 on 2025-11-02 is its first occurrence (EDT).
    let def = plan(every_days(2), 0, 1, time(1, 30, 0, 0));
    let slots = first(&def, ts("2025-10-31T12:00:00Z"), &tz, &[], 2);
    assert_eq!(slots[1].due_at, ts("2025-11-02T05:30:00Z"));
}

/// 28 days or 4 sessions, whichever first; window 3 days before, 7 after.
fn days_or_sessions() -> PlanDefinition {
    plan(
        Cadence {
            every_days: Some(28),
            every_months: None,
            every_sessions: Some(4),
        },
        3,
        7,
        time(9, 0, 0, 0),
    )
}

/// Sessions at 14:00 UTC on these days of January–March 2025.
fn sessions_on(days: &[(i8, i8)]) -> Vec<Timestamp> {
    days.iter()
        .map(|(month, day)| {
            date(2025, *month, *day)
                .at(14, 0, 0, 0)
                .to_zoned(TimeZone::UTC)
                .unwrap()
                .timestamp()
        })
        .collect()
}

#[test]
fn weekly_sessions_leave_the_28_days_first_by_a_few_hours() {
    let tz = TimeZone::UTC;
    let anchor = ts("2025-01-01T09:00:00Z");
    // Sessions on days 7, 14, 21 and 28: the fourth is on 29 January at 14:00, the
    // 28 days on 29 January at 09:00 — the calendar is first.
    let sessions = sessions_on(&[(1, 8), (1, 15), (1, 22), (1, 29), (2, 5)]);
    let slots = first(&days_or_sessions(), anchor, &tz, &sessions, 2);
    assert_eq!(slots[1].due_at, ts("2025-01-29T09:00:00Z"));
    assert_eq!(slots[1].basis, Basis::Calendar);
}

#[test]
fn twice_weekly_sessions_bring_the_next_due_date_to_the_fourth_session() {
    let tz = TimeZone::UTC;
    let anchor = ts("2025-01-01T09:00:00Z");
    let sessions = sessions_on(&[
        (1, 3),
        (1, 6),
        (1, 10),
        (1, 13),
        (1, 17),
        (1, 20),
        (1, 24),
        (1, 27),
    ]);
    let slots = first(&days_or_sessions(), anchor, &tz, &sessions, 4);
    // The fourth session after the baseline, 13 January at 14:00.
    assert_eq!(slots[1].due_at, ts("2025-01-13T14:00:00Z"));
    assert_eq!(slots[1].basis, Basis::Sessions);
    assert_eq!(slots[1].opens_at, ts("2025-01-10T14:00:00Z"));
    assert_eq!(slots[1].closes_at, ts("2025-01-20T14:00:00Z"));
    // Four more after it: 17, 20, 24, 27 January.
    assert_eq!(slots[2].due_at, ts("2025-01-27T14:00:00Z"));
    assert_eq!(slots[2].basis, Basis::Sessions);
    // No more sessions: 28 days after the last due date, at 09:00.
    assert_eq!(slots[3].due_at, ts("2025-02-24T09:00:00Z"));
    assert_eq!(slots[3].basis, Basis::Calendar);
}

#[test]
fn daily_sessions_cannot_bring_a_window_over_the_previous_one() {
    let tz = TimeZone::UTC;
    let anchor = ts("2025-01-01T09:00:00Z");
    let sessions: Vec<Timestamp> = (2..=31).flat_map(|day| sessions_on(&[(1, day)])).collect();
    let slots = first(&days_or_sessions(), anchor, &tz, &sessions, 3);
    // The fourth session is on 5 January, but the next window may open only when
    // the baseline's closes (8 January 09:00): due 3 days later, 11 January 09:00.
    assert_eq!(slots[1].due_at, ts("2025-01-11T09:00:00Z"));
    assert_eq!(slots[1].basis, Basis::Sessions);
    assert_eq!(slots[1].opens_at, slots[0].closes_at);
    assert_eq!(slots[2].due_at, ts("2025-01-21T09:00:00Z"));
}

#[test]
fn sessions_only_plans_end_when_the_sessions_do() {
    let tz = TimeZone::UTC;
    let def = plan(
        Cadence {
            every_sessions: Some(2),
            ..Cadence::default()
        },
        1,
        2,
        time(9, 0, 0, 0),
    );
    let sessions = sessions_on(&[(1, 8), (1, 15), (1, 22), (1, 29), (2, 5)]);
    let slots: Vec<Slot> = slot_iter(&def, ts("2025-01-01T09:00:00Z"), &tz, &sessions).collect();
    assert_eq!(
        slots.iter().map(|slot| slot.due_at).collect::<Vec<_>>(),
        [
            ts("2025-01-01T09:00:00Z"),
            ts("2025-01-15T14:00:00Z"),
            ts("2025-01-29T14:00:00Z"),
        ]
    );
}

#[test]
fn the_same_sessions_in_another_order_or_repeated_give_the_same_slots() {
    let tz = TimeZone::UTC;
    let anchor = ts("2025-01-01T09:00:00Z");
    let sessions = sessions_on(&[(1, 3), (1, 6), (1, 10), (1, 13), (1, 17)]);
    let mut shuffled = sessions.clone();
    shuffled.reverse();
    shuffled.extend_from_slice(&sessions[..2]);
    assert_eq!(
        first(&days_or_sessions(), anchor, &tz, &sessions, 5),
        first(&days_or_sessions(), anchor, &tz, &shuffled, 5)
    );
}

#[test]
fn a_plan_that_stops_after_ninety_days_has_no_slot_due_after_the_ninetieth_day() {
    let tz = tz("Europe/Paris");
    let def = PlanDefinition {
        stop: StopConditions {
            after_days: Some(90),
            ..StopConditions::default()
        },
        ..plan(every_days(30), 3, 3, time(9, 0, 0, 0))
    };
    let anchor = ts("2025-01-01T20:00:00Z");
    let slots: Vec<Slot> = slot_iter(&def, anchor, &tz, &[]).collect();
    // Days 0, 30, 60 and 90: the 90th day itself is included.
    assert_eq!(
        due_dates(&slots),
        [
            date(2025, 1, 1),
            date(2025, 1, 31),
            date(2025, 3, 2),
            date(2025, 4, 1)
        ]
    );
    assert_eq!(def.last_date(anchor, &tz), Some(date(2025, 4, 1)));
}

#[test]
fn a_past_period_gives_the_slots_that_should_have_existed() {
    let tz = tz("America/Chicago");
    let def = plan(every_days(14), 3, 3, time(8, 30, 0, 0));
    let anchor = ts("2024-01-01T12:00:00Z");
    let from = ts("2024-06-01T00:00:00Z");
    let until = ts("2024-07-01T00:00:00Z");
    let past = slots(&def, anchor, &tz, &[], from, until);
    let seqs: Vec<u32> = past.iter().map(|slot| slot.seq).collect();
    assert_eq!(seqs, [11, 12]);
    assert_eq!(past[0].due_on, date(2024, 6, 3));
    assert_eq!(past[0].due_at, ts("2024-06-03T13:30:00Z"));
    assert_eq!(past[1].due_on, date(2024, 6, 17));
    // The scheduler's view from inside the period agrees.
    let next = next_slot_after(&def, anchor, &tz, &[], from).unwrap();
    assert_eq!(next, past[0]);
    assert_eq!(
        open_slot_at(&def, anchor, &tz, &[], ts("2024-06-01T12:00:00Z")),
        Some(past[0].clone())
    );
    assert_eq!(
        open_slot_at(&def, anchor, &tz, &[], ts("2024-06-10T12:00:00Z")),
        None
    );
}

// ---------------------------------------------------------------------------------
// Properties

const ZONES: [&str; 6] = [
    "UTC",
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",
    "America/Sao_Paulo",
    "Asia/Kolkata",
];

/// A valid cadence with a window that fits it.
fn cadence_and_window() -> impl Strategy<Value = (Cadence, Window)> {
    let calendar = prop_oneof![
        (2u32..=60).prop_map(|days| (Some(days), None)),
        (1u32..=6).prop_map(|months| (None, Some(months))),
        Just((None, None)),
    ];
    (calendar, proptest::option::of(1u32..=6))
        .prop_filter("at least one basis", |((days, months), sessions)| {
            days.is_some() || months.is_some() || sessions.is_some()
        })
        .prop_flat_map(|((every_days, every_months), every_sessions)| {
            let cadence = Cadence {
                every_days,
                every_months,
                every_sessions,
            };
            let period = cadence.shortest_period_days().unwrap_or(30);
            (Just(cadence), 1..period, 0u32..=100).prop_map(|(cadence, total, share)| {
                let before_days = total * share / 100;
                (
                    cadence,
                    Window {
                        before_days,
                        after_days: total - before_days,
                    },
                )
            })
        })
}

#[derive(Debug, Clone)]
struct Case {
    def: PlanDefinition,
    zone: &'static str,
    anchor: Timestamp,
    sessions: Vec<Timestamp>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        cadence_and_window(),
        (0i8..24, proptest::sample::select(vec![0i8, 30, 59])),
        proptest::sample::select(ZONES.to_vec()),
        // 2020-01-01 to 2030-01-01.
        1_577_836_800i64..1_893_456_000,
        proptest::collection::vec(-30 * 86_400i64..400 * 86_400, 0..50),
        proptest::option::of(0u32..400),
    )
        .prop_map(
            |((cadence, window), (hour, minute), zone, anchor, offsets, after_days)| {
                let anchor = Timestamp::from_second(anchor).unwrap();
                let mut sessions: Vec<Timestamp> = offsets
                    .iter()
                    .map(|offset| anchor + SignedDuration::from_secs(*offset))
                    .collect();
                // Some sessions twice, as a duplicate record would be.
                sessions.extend(sessions.clone().into_iter().step_by(5));
                let def = PlanDefinition {
                    cadence,
                    window,
                    local_time: time(hour, minute, 0, 0),
                    stop: StopConditions {
                        after_days,
                        ..StopConditions::default()
                    },
                    ..examples::family_mood()
                };
                Case {
                    def,
                    zone,
                    anchor,
                    sessions,
                }
            },
        )
}

fn walk(case: &Case, sessions: &[Timestamp]) -> Vec<Slot> {
    slot_iter(&case.def, case.anchor, &tz(case.zone), sessions)
        .take(40)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_generated_plans_are_valid(case in case()) {
        prop_assert_eq!(case.def.validate(), Ok(()));
    }

    #[test]
    fn keys_are_unique_seqs_consecutive_and_due_dates_strictly_increasing(case in case()) {
        let slots = walk(&case, &case.sessions);
        prop_assert!(!slots.is_empty(), "the baseline is always there");
        for (index, slot) in slots.iter().enumerate() {
            prop_assert_eq!(slot.seq as usize, index);
            prop_assert_eq!(&slot.key, &format!("k:{index}"));
            prop_assert_eq!(slot.due_on, tz(case.zone).to_datetime(slot.due_at).date());
        }
        for pair in slots.windows(2) {
            prop_assert!(pair[0].due_at < pair[1].due_at, "{:?}", pair);
            prop_assert!(pair[0].due_on <= pair[1].due_on);
        }
    }

    #[test]
    fn every_window_holds_its_due_time_and_consecutive_windows_never_overlap(case in case()) {
        let slots = walk(&case, &case.sessions);
        for slot in &slots {
            prop_assert!(slot.opens_at <= slot.due_at && slot.due_at <= slot.closes_at, "{:?}", slot);
            prop_assert!(slot.opens_at < slot.closes_at, "{:?}", slot);
        }
        for pair in slots.windows(2) {
            prop_assert!(pair[0].closes_at <= pair[1].opens_at, "{:?}", pair);
        }
    }

    #[test]
    fn slots_in_a_period_are_exactly_the_walks_slots_due_in_it(
        case in case(),
        from_days in -10i64..300,
        length_days in 0i64..200,
    ) {
        let zone = tz(case.zone);
        let from = case.anchor + SignedDuration::from_hours(24 * from_days);
        let until = from + SignedDuration::from_hours(24 * length_days);
        let period = slots(&case.def, case.anchor, &zone, &case.sessions, from, until);
        for slot in &period {
            prop_assert!(from <= slot.due_at && slot.due_at < until);
        }
        let expected: Vec<Slot> = slot_iter(&case.def, case.anchor, &zone, &case.sessions)
            .take_while(|slot| slot.due_at < until)
            .filter(|slot| slot.due_at >= from)
            .collect();
        prop_assert_eq!(&period, &expected);
        // Run again: the same slots, the same keys.
        prop_assert_eq!(&period, &slots(&case.def, case.anchor, &zone, &case.sessions, from, until));
        if let Some(next) = next_slot_after(&case.def, case.anchor, &zone, &case.sessions, from) {
            prop_assert!(next.due_at > from);
            if let Some(first) = period.first() && first.due_at > from {
                prop_assert_eq!(&next, first);
            }
        }
    }

    #[test]
    fn sessions_in_any_order_or_repeated_give_the_same_slots(case in case()) {
        let mut reordered = case.sessions.clone();
        reordered.reverse();
        reordered.extend(case.sessions.iter().take(3));
        prop_assert_eq!(walk(&case, &case.sessions), walk(&case, &reordered));
    }

    #[test]
    fn sessions_recorded_later_never_move_a_slot_already_due(case in case(), cut_days in 0i64..400) {
        let cut = case.anchor + SignedDuration::from_hours(24 * cut_days);
        let known: Vec<Timestamp> = case.sessions.iter().copied().filter(|session| *session <= cut).collect();
        let due_by_cut = |slots: Vec<Slot>| -> Vec<Slot> {
            slots.into_iter().filter(|slot| slot.due_at <= cut).collect()
        };
        prop_assert_eq!(due_by_cut(walk(&case, &known)), due_by_cut(walk(&case, &case.sessions)));
    }

    #[test]
    fn calendar_slots_fall_at_the_local_time_unless_it_does_not_exist_that_day(case in case()) {
        let zone = tz(case.zone);
        for slot in walk(&case, &case.sessions) {
            if slot.basis != Basis::Calendar {
                continue;
            }
            let wall = zone.to_datetime(slot.due_at);
            if wall.time() != case.def.local_time {
                let intended = slot.due_on.to_datetime(case.def.local_time);
                let in_gap = matches!(
                    zone.to_ambiguous_timestamp(intended).offset(),
                    AmbiguousOffset::Gap { .. }
                );
                // Only a time in a gap moves: forward, to the gap's end.
                prop_assert!(in_gap, "{:?} at {} in {}", slot, wall, case.zone);
            }
        }
    }

    #[test]
    fn the_basis_says_truly_whether_sessions_or_the_calendar_came_first(case in case()) {
        let Some(n) = case.def.cadence.every_sessions else { return Ok(()); };
        let mut sessions = case.sessions.clone();
        sessions.sort();
        sessions.dedup();
        let slots = walk(&case, &case.sessions);
        for pair in slots.windows(2) {
            let (previous, slot) = (&pair[0], &pair[1]);
            let held = |until_inclusive: bool| sessions.iter().filter(|session| {
                **session > previous.due_at
                    && (**session < slot.due_at || (until_inclusive && **session == slot.due_at))
            }).count();
            match slot.basis {
                Basis::Sessions => prop_assert!(held(true) >= n as usize, "{:?}", slot),
                Basis::Calendar => prop_assert!(held(false) < n as usize, "{:?}", slot),
            }
        }
    }

    #[test]
    fn no_slot_is_due_after_the_plans_last_day(case in case()) {
        let zone = tz(case.zone);
        if let Some(last) = case.def.last_date(case.anchor, &zone) {
            for slot in slot_iter(&case.def, case.anchor, &zone, &case.sessions).take(1_000) {
                prop_assert!(slot.due_on <= last);
            }
        }
    }

    #[test]
    fn month_plans_fall_on_the_anchor_date_plus_whole_months_clamped(
        months in 1u32..=12,
        anchor_date in (2020i16..2030, 1i8..=12, 1i8..=31),
        zone in proptest::sample::select(ZONES.to_vec()),
    ) {
        let (year, month, day) = anchor_date;
        let Ok(anchor_date) = Date::new(year, month, day) else { return Ok(()); };
        let zone = tz(zone);
        let anchor = anchor_date.at(12, 0, 0, 0).to_zoned(zone.clone()).unwrap().timestamp();
        let def = plan(every_months(months), 3, 3, time(9, 0, 0, 0));
        for slot in slot_iter(&def, anchor, &zone, &[]).take(30) {
            let expected = anchor_date
                .checked_add(Span::new().months(i64::from(months) * i64::from(slot.seq)))
                .unwrap();
            prop_assert_eq!(slot.due_on, expected);
            // Clamped only when the month is too short for the anchor's day.
            if expected.day() != anchor_date.day() {
                prop_assert_eq!(expected.day(), expected.days_in_month());
            }
        }
    }
}

#[test]
fn a_plan_with_a_session_every_day_for_ten_years_is_walked_in_good_time() {
    let tz = tz("Europe/London");
    let def = plan(
        Cadence {
            every_days: Some(2),
            every_months: None,
            every_sessions: Some(1),
        },
        0,
        1,
        time(9, 0, 0, 0),
    );
    let anchor = ts("2020-01-01T09:00:00Z");
    let sessions: Vec<Timestamp> = (1..3_650)
        .map(|day| anchor + SignedDuration::from_hours(24 * day))
        .collect();
    let started = std::time::Instant::now();
    let n = slot_iter(&def, anchor, &tz, &sessions).count();
    assert!(n >= 1_800, "{n}");
    assert!(started.elapsed().as_secs() < 5);
}
