//! FHIR `instant` and `dateTime` with a time of day, to and from epoch milliseconds (UTC).
//! A date without a time cannot place a device measurement and is refused by the caller.

use model::Timestamp;
use model::civil::{civil_from_days, days_from_civil, days_in_month};

/// `YYYY-MM-DDThh:mm:ss[.fff…](Z|±hh:mm)` to epoch milliseconds.
pub fn parse(text: &str) -> Option<Timestamp> {
    let bytes = text.as_bytes();
    if bytes.len() < 20 || bytes[4] != b'-' || bytes[7] != b'-' || bytes[10] != b'T' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        if !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if bytes[13] != b':'
        || bytes[16] != b':'
        || !(1..=12).contains(&month)
        || !(1..=days_in_month(year, month)).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = text.get(19..)?;
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let padded = format!("{:0<3}", &fraction[..digits.min(3)]);
        millis = padded.parse::<i64>().ok()?;
        rest = &fraction[digits..];
    }
    let offset_minutes = match rest {
        "Z" => 0,
        _ if rest.len() == 6 && rest.as_bytes()[3] == b':' => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let hours: i64 = rest.get(1..3)?.parse().ok()?;
            let minutes: i64 = rest.get(4..6)?.parse().ok()?;
            if hours > 14 || minutes > 59 {
                return None;
            }
            sign * (hours * 60 + minutes)
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Some(Timestamp(seconds * 1000 + millis))
}

/// Epoch milliseconds to an `instant` in UTC with milliseconds.
pub fn format(time: Timestamp) -> String {
    let millis = time.millis();
    let (days, in_day) = (millis.div_euclid(86_400_000), millis.rem_euclid(86_400_000));
    let (year, month, day) = civil_from_days(days);
    let seconds = in_day / 1000;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60,
        in_day % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_parse_with_offsets_and_fractions() {
        assert_eq!(parse("1970-01-01T00:00:00Z"), Some(Timestamp(0)));
        assert_eq!(
            parse("2025-11-25T04:40:00.5Z"),
            Some(Timestamp(1_764_045_600_500))
        );
        assert_eq!(
            parse("2025-11-25T05:40:00+01:00"),
            Some(Timestamp(1_764_045_600_000))
        );
        for bad in [
            "2025-11-25",
            "2025-11-25T04:40:00",
            "2025-02-30T00:00:00Z",
            "2025-11-25T04:40:00.Z",
            "2025-11-25T04:40:00+1:00",
            "yesterday at noon please",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn formatting_round_trips() {
        for millis in [0, 1_764_045_600_500, 951_782_400_000, -86_400_001] {
            let text = format(Timestamp(millis));
            assert_eq!(parse(&text), Some(Timestamp(millis)), "{text}");
        }
        assert_eq!(
            format(Timestamp(1_764_045_600_500)),
            "2025-11-25T04:40:00.500Z"
        );
    }
}
