//! Instants and dates at the database boundary: the pure modules speak `jiff`, sqlx
//! speaks `time`. Conversions are exact (nanoseconds, calendar dates).

use jiff::Timestamp;
use time::OffsetDateTime;

/// `time` → `jiff`, exactly.
pub fn to_jiff(at: OffsetDateTime) -> Timestamp {
    Timestamp::from_nanosecond(at.unix_timestamp_nanos())
        .expect("BUG: a PostgreSQL timestamptz is within jiff's range")
}

/// `jiff` → `time`, exactly.
pub fn to_time(at: Timestamp) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(at.as_nanosecond())
        .expect("BUG: a jiff timestamp is within time's range")
}

/// A `time` calendar date as a `jiff` one.
pub fn date_to_jiff(date: time::Date) -> jiff::civil::Date {
    jiff::civil::Date::new(
        i16::try_from(date.year()).expect("BUG: a stored year fits i16"),
        i8::try_from(u8::from(date.month())).expect("BUG: a month fits i8"),
        i8::try_from(date.day()).expect("BUG: a day fits i8"),
    )
    .expect("BUG: a valid time::Date is a valid jiff date")
}

/// A `jiff` calendar date as a `time` one.
pub fn date_to_time(date: jiff::civil::Date) -> time::Date {
    time::Date::from_calendar_date(
        i32::from(date.year()),
        time::Month::try_from(u8::try_from(date.month()).expect("BUG: a month is positive"))
            .expect("BUG: a month is 1..=12"),
        u8::try_from(date.day()).expect("BUG: a day is positive"),
    )
    .expect("BUG: a valid jiff date is a valid time::Date")
}
