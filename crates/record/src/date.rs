//! FHIR date, dateTime and instant values as ranges of milliseconds since the Unix epoch, for
//! the date search index and the `date` search prefixes (FHIR R4 §3.1.1.5.6 / search.html#date).
//!
//! A value stands for the whole range its precision covers: `2013` is all of 2013, `2013-03-04`
//! that day. A value without a time zone is taken as UTC (the spec leaves it to the server; the
//! record is one hospital's, and analysts get one rule). Ranges are inclusive at both ends.

use model::civil::days_in_month;
pub use model::civil::{civil_from_days, days_from_civil};

/// An inclusive range of epoch milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateRange {
    pub low: i64,
    pub high: i64,
}

/// Open ends of a Period without a start or an end.
pub const MIN_MS: i64 = i64::MIN / 2;
pub const MAX_MS: i64 = i64::MAX / 2;

/// Parses `YYYY`, `YYYY-MM`, `YYYY-MM-DD`, `YYYY-MM-DDThh:mm[:ss[.fff]][Z|±hh:mm]`.
pub fn parse(text: &str) -> Option<DateRange> {
    let text = text.trim();
    let (date, time) = match text.split_once('T') {
        Some((date, time)) => (date, Some(time)),
        None => (text, None),
    };
    let mut parts = date.split('-');
    let year: i64 = number(parts.next()?, 4)?;
    let month = match parts.next() {
        Some(text) => Some(number(text, 2)?),
        None => None,
    };
    let day = match parts.next() {
        Some(text) => Some(number(text, 2)?),
        None => None,
    };
    if parts.next().is_some() {
        return None;
    }
    if let Some(month) = month {
        if !(1..=12).contains(&month) {
            return None;
        }
        if let Some(day) = day
            && !(1..=days_in_month(year, month)).contains(&day)
        {
            return None;
        }
    }
    let Some(time) = time else {
        return Some(match (month, day) {
            (None, _) => {
                range_of_days(days_from_civil(year, 1, 1), days_from_civil(year + 1, 1, 1))
            }
            (Some(m), None) => {
                let (next_year, next_month) = if m == 12 {
                    (year + 1, 1)
                } else {
                    (year, m + 1)
                };
                range_of_days(
                    days_from_civil(year, m, 1),
                    days_from_civil(next_year, next_month, 1),
                )
            }
            (Some(m), Some(d)) => {
                let start = days_from_civil(year, m, d);
                range_of_days(start, start + 1)
            }
        });
    };
    let (month, day) = (month?, day?);
    // Split off the zone: `Z`, `+hh:mm` or `-hh:mm` after the clock time.
    let (clock, offset_minutes) = if let Some(clock) = time.strip_suffix('Z') {
        (clock, 0)
    } else if let Some(position) = time.rfind(['+', '-']) {
        let (clock, zone) = time.split_at(position);
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let (hours, minutes) = zone[1..].split_once(':')?;
        (clock, sign * (number(hours, 2)? * 60 + number(minutes, 2)?))
    } else {
        (time, 0)
    };
    let mut clock_parts = clock.split(':');
    let hour = number(clock_parts.next()?, 2)?;
    let minute = number(clock_parts.next()?, 2)?;
    let (second, millis, precision_ms) = match clock_parts.next() {
        None => (0, 0, 60_000),
        Some(seconds) => {
            let (whole, fraction) = match seconds.split_once('.') {
                Some((whole, fraction)) => (whole, Some(fraction)),
                None => (seconds, None),
            };
            let second = number(whole, 2)?;
            match fraction {
                None => (second, 0, 1_000),
                Some(fraction) => {
                    if fraction.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()) {
                        return None;
                    }
                    let padded = format!("{fraction:0<3}");
                    (second, padded[..3].parse::<i64>().ok()?, 1)
                }
            }
        }
    };
    if clock_parts.next().is_some() || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let start = days_from_civil(year, month, day) * 86_400_000
        + ((hour * 60 + minute - offset_minutes) * 60 + second) * 1_000
        + millis;
    Some(DateRange {
        low: start,
        high: start + precision_ms - 1,
    })
}

fn range_of_days(first_day: i64, end_day: i64) -> DateRange {
    DateRange {
        low: first_day * 86_400_000,
        high: end_day * 86_400_000 - 1,
    }
}

fn number(text: &str, digits: usize) -> Option<i64> {
    if text.len() != digits || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// An FHIR `instant` in UTC with milliseconds: `2026-11-25T06:09:42.123Z` (for `meta.lastUpdated`).
pub fn format_instant(epoch_ms: i64) -> String {
    let days = epoch_ms.div_euclid(86_400_000);
    let in_day = epoch_ms.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1_000 % 60,
        in_day % 1_000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_sets_the_range() {
        let day = parse("2013-03-04").unwrap();
        assert_eq!(day.low, 1_362_355_200_000);
        assert_eq!(day.high, 1_362_355_200_000 + 86_400_000 - 1);
        let year = parse("2013").unwrap();
        assert_eq!(year.low, parse("2013-01-01").unwrap().low);
        assert_eq!(year.high, parse("2013-12-31").unwrap().high);
        let month = parse("2012-02").unwrap();
        assert_eq!(month.high, parse("2012-02-29").unwrap().high);
        let second = parse("2013-03-04T05:28:45+00:00").unwrap();
        assert_eq!(
            second.low,
            1_362_355_200_000 + (5 * 3600 + 28 * 60 + 45) * 1000
        );
        assert_eq!(second.high - second.low, 999);
    }

    #[test]
    fn zones_shift_to_utc() {
        assert_eq!(
            parse("2015-08-31T08:14:33+10:00").unwrap().low,
            parse("2015-08-30T22:14:33Z").unwrap().low
        );
        assert_eq!(
            parse("2015-08-31T08:14:33.5-02:30").unwrap().low,
            parse("2015-08-31T10:44:33.500Z").unwrap().low
        );
    }

    #[test]
    fn nonsense_is_refused() {
        for bad in [
            "",
            "13",
            "2013-13",
            "2013-02-30",
            "2013-3-4",
            "2013-03-04T25:00",
            "abcd",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn instants_round_trip() {
        let ms = parse("2026-11-25T06:09:42.123Z").unwrap().low;
        assert_eq!(format_instant(ms), "2026-11-25T06:09:42.123Z");
        assert_eq!(format_instant(0), "1970-01-01T00:00:00.000Z");
        for days in [-800_000, -1, 0, 59, 11_016, 20_000, 3_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
