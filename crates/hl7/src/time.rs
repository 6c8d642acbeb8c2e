//! HL7 DTM / TS values (`YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]`) to milliseconds
//! since the epoch, and back for the acknowledgments we write. A time without an offset is
//! read as UTC: the sender's zone is not in the message, and the same rule applied every time
//! keeps ordering intact (docs/hl7.md says so to the sender's engineers).

use model::Timestamp;
use model::civil::{civil_from_days, days_from_civil, days_in_month};

/// Parses a DTM; `None` when it is not one.
pub fn parse_dtm(text: &str) -> Option<Timestamp> {
    let text = text.trim();
    // TS in v2.5 may carry a precision component after '^'; the value is the first component.
    let (body, offset_minutes) = match text.find(['+', '-']) {
        Some(at) => {
            let zone = &text[at + 1..];
            if zone.len() != 4 || !zone.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let hours: i64 = zone[..2].parse().ok()?;
            let minutes: i64 = zone[2..].parse().ok()?;
            if hours > 14 || minutes > 59 {
                return None;
            }
            let sign = if text.as_bytes()[at] == b'-' { -1 } else { 1 };
            (&text[..at], sign * (hours * 60 + minutes))
        }
        None => (text, 0),
    };
    let (digits, fraction) = match body.split_once('.') {
        Some((digits, fraction)) => (digits, Some(fraction)),
        None => (body, None),
    };
    if !matches!(digits.len(), 4 | 6 | 8 | 10 | 12 | 14)
        || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let part = |from: usize, default: i64| -> i64 {
        digits
            .get(from..from + 2)
            .and_then(|p| p.parse().ok())
            .unwrap_or(default)
    };
    let year: i64 = digits[..4].parse().ok()?;
    let (month, day, hour, minute, second) =
        (part(4, 1), part(6, 1), part(8, 0), part(10, 0), part(12, 0));
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let millis = match fraction {
        Some(fraction) => {
            if digits.len() != 14
                || fraction.is_empty()
                || fraction.len() > 4
                || !fraction.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            let padded = format!("{fraction:0<4}");
            padded[..3].parse::<i64>().ok()?
        }
        None => 0,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Some(Timestamp(seconds * 1000 + millis))
}

/// `YYYYMMDDHHMMSS.sss+0000`, in UTC.
pub fn format_dtm(time: Timestamp) -> String {
    let millis = time.0.rem_euclid(1000);
    let seconds = time.0.div_euclid(1000);
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}{month:02}{day:02}{:02}{:02}{:02}.{millis:03}+0000",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// `YYYYMMDD` of a DTM (PID-7 birth dates), as `YYYY-MM-DD`.
pub fn parse_date(text: &str) -> Option<String> {
    let digits = text.trim().get(..8)?;
    let stamp = parse_dtm(digits)?;
    let (year, month, day) = civil_from_days(stamp.0.div_euclid(86_400_000));
    Some(format!("{year:04}-{month:02}-{day:02}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtm_with_and_without_offsets() {
        // 2009-08-13 09:57:15 +0500 = 04:57:15 UTC = 1250139435 s.
        assert_eq!(
            parse_dtm("20090813095715+0500"),
            Some(Timestamp(1_250_139_435_000))
        );
        assert_eq!(
            parse_dtm("20090813045715"),
            Some(Timestamp(1_250_139_435_000))
        );
        assert_eq!(
            parse_dtm("20090813045715.25+0000"),
            Some(Timestamp(1_250_139_435_250))
        );
        assert_eq!(
            parse_dtm("20090813005715-0400"),
            Some(Timestamp(1_250_139_435_000))
        );
        assert_eq!(parse_dtm("1970"), Some(Timestamp(0)));
        assert_eq!(parse_dtm("200902"), Some(Timestamp(1_233_446_400_000)));
        for bad in [
            "",
            "2009081",
            "20090230",
            "20091313",
            "20090813246000",
            "2009+05",
            "20090813095715+05",
            "x0090813",
        ] {
            assert_eq!(parse_dtm(bad), None, "{bad}");
        }
    }

    #[test]
    fn formatted_times_read_back() {
        for t in [0, 1_250_139_435_250, 951_782_400_000, 4_102_444_799_999] {
            assert_eq!(parse_dtm(&format_dtm(Timestamp(t))), Some(Timestamp(t)));
        }
        assert_eq!(
            format_dtm(Timestamp(1_250_139_435_250)),
            "20090813045715.250+0000"
        );
        assert_eq!(parse_date("19770404").as_deref(), Some("1977-04-04"));
    }
}
