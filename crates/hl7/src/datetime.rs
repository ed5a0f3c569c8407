//! HL7 date/time values (DTM, and the first component of TS and DT):
//! `YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]`, with the precision that was
//! written and the UTC offset when there is one.
//!
//! A birth date is PHI, so errors here must never repeat the value they
//! refused; they say only what was wrong with it. Nothing here reads a clock.

use std::fmt;

/// How much of a date/time was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Precision {
    /// `YYYY`
    Year,
    /// `YYYYMM`
    Month,
    /// `YYYYMMDD`
    Day,
    /// `YYYYMMDDHH`
    Hour,
    /// `YYYYMMDDHHMM`
    Minute,
    /// `YYYYMMDDHHMMSS`
    Second,
    /// `YYYYMMDDHHMMSS.S` to `YYYYMMDDHHMMSS.SSSS`.
    Fraction {
        /// How many digits follow the point, 1 to 4.
        digits: u8,
    },
}

/// An HL7 date/time. Parts below its [`Precision`] read as `None`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DateTime {
    year: u16,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
    /// The fraction digits as an integer (`.25` is 25, with 2 digits).
    fraction: u16,
    precision: Precision,
    offset_minutes: Option<i16>,
}

/// Why a value is not an HL7 date/time. Never holds the value itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DateTimeError {
    /// The value is empty.
    #[error("the date/time is empty")]
    Empty,
    /// The value does not have the form `YYYY[MM[DD[HH[MM[SS[.S…]]]]]][+/-ZZZZ]`.
    #[error("the date/time is not of the form YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]: {0}")]
    Syntax(&'static str),
    /// A part is out of its range, such as month 13 or 31 April.
    #[error("the date/time has an impossible {0}")]
    OutOfRange(&'static str),
}

impl DateTime {
    /// Parses a DTM value, or the first component of a TS. Spaces around it
    /// are ignored.
    pub fn parse(text: &str) -> Result<Self, DateTimeError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(DateTimeError::Empty);
        }
        let (body, offset) = match text.find(['+', '-']) {
            Some(i) => (&text[..i], Some(&text[i..])),
            None => (text, None),
        };
        let (digits, fraction) = match body.split_once('.') {
            Some((digits, fraction)) => (digits, Some(fraction)),
            None => (body, None),
        };
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DateTimeError::Syntax("a non-digit in the date or time"));
        }
        let precision = match digits.len() {
            4 => Precision::Year,
            6 => Precision::Month,
            8 => Precision::Day,
            10 => Precision::Hour,
            12 => Precision::Minute,
            14 => Precision::Second,
            _ => {
                return Err(DateTimeError::Syntax(
                    "the date and time must have 4, 6, 8, 10, 12 or 14 digits",
                ));
            }
        };
        let part = |at: usize| -> u8 {
            digits
                .get(at..at + 2)
                .and_then(|p| p.parse().ok())
                .unwrap_or(0)
        };
        let mut value = DateTime {
            year: digits[..4].parse().unwrap_or(0),
            month: if digits.len() >= 6 { part(4) } else { 1 },
            day: if digits.len() >= 8 { part(6) } else { 1 },
            hour: part(8),
            minute: part(10),
            second: part(12),
            fraction: 0,
            precision,
            offset_minutes: None,
        };
        if let Some(fraction) = fraction {
            if precision != Precision::Second {
                return Err(DateTimeError::Syntax(
                    "a fraction of a second needs the seconds",
                ));
            }
            if fraction.is_empty()
                || fraction.len() > 4
                || !fraction.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(DateTimeError::Syntax(
                    "a fraction of a second has 1 to 4 digits",
                ));
            }
            value.fraction = fraction.parse().unwrap_or(0);
            value.precision = Precision::Fraction {
                // At most 4 digits, checked above.
                digits: u8::try_from(fraction.len()).unwrap_or(4),
            };
        }
        if let Some(offset) = offset {
            value.offset_minutes = Some(parse_offset(offset)?);
        }
        value.check()?;
        Ok(value)
    }

    /// A date/time to the second, with no offset.
    pub fn from_ymd_hms(
        year: u16,
        month: u8,
        day: u8,
        hour: u8,
        minute: u8,
        second: u8,
    ) -> Result<Self, DateTimeError> {
        let value = DateTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
            fraction: 0,
            precision: Precision::Second,
            offset_minutes: None,
        };
        value.check()?;
        Ok(value)
    }

    /// A date, with no time.
    pub fn from_ymd(year: u16, month: u8, day: u8) -> Result<Self, DateTimeError> {
        let mut value = Self::from_ymd_hms(year, month, day, 0, 0, 0)?;
        value.precision = Precision::Day;
        Ok(value)
    }

    /// The same value with a UTC offset, in minutes east of UTC.
    pub fn with_offset_minutes(mut self, offset_minutes: i16) -> Result<Self, DateTimeError> {
        if offset_minutes.unsigned_abs() >= 24 * 60 {
            return Err(DateTimeError::OutOfRange("UTC offset"));
        }
        self.offset_minutes = Some(offset_minutes);
        Ok(self)
    }

    fn check(&self) -> Result<(), DateTimeError> {
        if self.year > 9999 {
            return Err(DateTimeError::OutOfRange("year"));
        }
        if !(1..=12).contains(&self.month) {
            return Err(DateTimeError::OutOfRange("month"));
        }
        if self.day < 1 || self.day > days_in_month(self.year, self.month) {
            return Err(DateTimeError::OutOfRange("day"));
        }
        if self.hour > 23 {
            return Err(DateTimeError::OutOfRange("hour"));
        }
        if self.minute > 59 {
            return Err(DateTimeError::OutOfRange("minute"));
        }
        if self.second > 59 {
            return Err(DateTimeError::OutOfRange("second"));
        }
        Ok(())
    }

    /// How much was written.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The year.
    pub fn year(&self) -> u16 {
        self.year
    }

    /// The month, 1 to 12, when written.
    pub fn month(&self) -> Option<u8> {
        (self.precision >= Precision::Month).then_some(self.month)
    }

    /// The day of the month, when written.
    pub fn day(&self) -> Option<u8> {
        (self.precision >= Precision::Day).then_some(self.day)
    }

    /// The hour, 0 to 23, when written.
    pub fn hour(&self) -> Option<u8> {
        (self.precision >= Precision::Hour).then_some(self.hour)
    }

    /// The minute, when written.
    pub fn minute(&self) -> Option<u8> {
        (self.precision >= Precision::Minute).then_some(self.minute)
    }

    /// The second, when written.
    pub fn second(&self) -> Option<u8> {
        (self.precision >= Precision::Second).then_some(self.second)
    }

    /// The fraction of the second in nanoseconds, when written.
    pub fn nanosecond(&self) -> Option<u32> {
        match self.precision {
            Precision::Fraction { digits } => {
                Some(u32::from(self.fraction) * 10u32.pow(9 - u32::from(digits)))
            }
            _ => None,
        }
    }

    /// The UTC offset in minutes east of UTC, when written.
    pub fn offset_minutes(&self) -> Option<i16> {
        self.offset_minutes
    }
}

fn parse_offset(offset: &str) -> Result<i16, DateTimeError> {
    let (sign, digits) = offset.split_at(1);
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DateTimeError::Syntax(
            "a UTC offset is a sign and 4 digits (+HHMM)",
        ));
    }
    let hours: i16 = digits[..2].parse().unwrap_or(0);
    let minutes: i16 = digits[2..].parse().unwrap_or(0);
    if hours > 23 || minutes > 59 {
        return Err(DateTimeError::OutOfRange("UTC offset"));
    }
    let total = hours * 60 + minutes;
    Ok(if sign == "-" { -total } else { total })
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        _ => 0,
    }
}

impl fmt::Display for DateTime {
    /// The HL7 form, to the precision that was written.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}", self.year)?;
        let parts = [
            (Precision::Month, self.month),
            (Precision::Day, self.day),
            (Precision::Hour, self.hour),
            (Precision::Minute, self.minute),
            (Precision::Second, self.second),
        ];
        for (precision, value) in parts {
            if self.precision >= precision {
                write!(f, "{value:02}")?;
            }
        }
        if let Precision::Fraction { digits } = self.precision {
            write!(f, ".{:0width$}", self.fraction, width = usize::from(digits))?;
        }
        if let Some(offset) = self.offset_minutes {
            let sign = if offset < 0 { '-' } else { '+' };
            let offset = offset.unsigned_abs();
            write!(f, "{sign}{:02}{:02}", offset / 60, offset % 60)?;
        }
        Ok(())
    }
}

impl fmt::Debug for DateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DateTime({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_precision_parses_and_prints_back() {
        for text in [
            "2024",
            "202402",
            "20240229",
            "2024022913",
            "202402291305",
            "20240229130559",
            "20240229130559.1",
            "20240229130559.1234",
            "20240229130559.12-0500",
            "20240229+0100",
        ] {
            assert_eq!(DateTime::parse(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn parts_below_the_precision_are_absent() {
        let value = DateTime::parse("202403").unwrap();
        assert_eq!(value.precision(), Precision::Month);
        assert_eq!(
            (value.year(), value.month(), value.day()),
            (2024, Some(3), None)
        );
    }

    #[test]
    fn fractions_and_offsets_are_read() {
        let value = DateTime::parse("20240301120000.25+0530").unwrap();
        assert_eq!(value.nanosecond(), Some(250_000_000));
        assert_eq!(value.offset_minutes(), Some(330));
        assert_eq!(value.precision(), Precision::Fraction { digits: 2 });
    }

    #[test]
    fn impossible_dates_are_refused_without_repeating_them() {
        assert_eq!(
            DateTime::parse("20230229"),
            Err(DateTimeError::OutOfRange("day"))
        );
        assert_eq!(
            DateTime::parse("20231301"),
            Err(DateTimeError::OutOfRange("month"))
        );
        let err = DateTime::parse("19700431").unwrap_err().to_string();
        assert!(!err.contains("1970"), "{err}");
    }

    #[test]
    fn malformed_values_are_refused() {
        for text in [
            "",
            "2024-",
            "202",
            "2024x1",
            "20240101.5",
            "20240101120000.",
            "20240101120000.12345",
            "2024+01",
            "20240101+2400",
        ] {
            assert!(DateTime::parse(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn values_built_in_code_print_in_hl7_form() {
        let value = DateTime::from_ymd_hms(2024, 1, 2, 3, 4, 5)
            .unwrap()
            .with_offset_minutes(-300)
            .unwrap();
        assert_eq!(value.to_string(), "20240102030405-0500");
        assert_eq!(
            DateTime::from_ymd(1980, 7, 9).unwrap().to_string(),
            "19800709"
        );
    }
}
