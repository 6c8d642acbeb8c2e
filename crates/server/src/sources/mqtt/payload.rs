//! The JSON payload devices publish (docs/mqtt.md), as an edge type, and its conversion to
//! normalized observations. Every problem is reported with where it is in the payload, so a
//! device integrator can fix their firmware from the dead-letter entry alone.

use model::civil::days_from_civil;
use model::{Catalog, DeviceId, Observation, Timestamp};
use serde::Deserialize;
use twin::{MetricRef, RawNumeric, RawWaveform, normalize_numeric, normalize_waveform};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    time: Option<Time>,
    #[serde(default)]
    numerics: Vec<Numeric>,
    #[serde(default)]
    waveforms: Vec<Waveform>,
    battery: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Numeric {
    metric: String,
    value: f64,
    unit: Option<String>,
    time: Option<Time>,
    body_site: Option<String>,
    #[serde(default)]
    flags: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Waveform {
    metric: String,
    start: Option<Time>,
    rate_hz: f64,
    samples: Vec<f32>,
    body_site: Option<String>,
    #[serde(default)]
    flags: Vec<String>,
}

/// Milliseconds since the epoch, or an RFC 3339 string.
#[derive(Deserialize)]
#[serde(untagged)]
enum Time {
    Millis(i64),
    Text(String),
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PayloadError {
    #[error("payload is not valid JSON for docs/mqtt.md: {0}")]
    Json(String),
    #[error("payload has no numerics and no waveforms")]
    Empty,
    #[error("{at}: time `{text}` is neither epoch milliseconds nor RFC 3339")]
    BadTime { at: String, text: String },
    #[error("{at}: no time given and the message has no `time`")]
    NoTime { at: String },
    #[error("{at}: unknown flag `{flag}`")]
    UnknownFlag { at: String, flag: String },
    #[error("{at}: {error}")]
    Normalize {
        at: String,
        error: twin::NormalizeError,
    },
}

const FLAGS: [&str; 3] = ["artefact", "probe_off", "leads_off"];

/// Parses a device's payload into observations in catalog terms. All or nothing: a message with
/// one bad entry is refused whole, so a device never half-succeeds silently.
pub fn parse(
    catalog: &Catalog,
    device_id: &DeviceId,
    bytes: &[u8],
    received: Timestamp,
) -> Result<Vec<Observation>, PayloadError> {
    let payload: Payload =
        serde_json::from_slice(bytes).map_err(|e| PayloadError::Json(e.to_string()))?;
    if payload.numerics.is_empty() && payload.waveforms.is_empty() && payload.battery.is_none() {
        return Err(PayloadError::Empty);
    }
    let message_time = payload
        .time
        .as_ref()
        .map(|time| parse_time(time, "time"))
        .transpose()?;
    let time_of = |time: Option<&Time>, at: &str| match time {
        Some(time) => parse_time(time, at),
        None => message_time.ok_or_else(|| PayloadError::NoTime { at: at.to_owned() }),
    };
    let mut observations = Vec::with_capacity(payload.numerics.len() + payload.waveforms.len());
    for (i, numeric) in payload.numerics.into_iter().enumerate() {
        let at = format!("numerics[{i}]");
        let raw = RawNumeric {
            device_time: time_of(numeric.time.as_ref(), &at)?,
            device_flagged: flagged(&numeric.flags, &at)?,
            metric: MetricRef::parse(&numeric.metric),
            value: numeric.value,
            unit: numeric.unit,
            body_site: numeric.body_site,
        };
        let observation = normalize_numeric(catalog, device_id, raw, received)
            .map_err(|error| PayloadError::Normalize { at, error })?;
        observations.push(observation);
    }
    for (i, waveform) in payload.waveforms.into_iter().enumerate() {
        let at = format!("waveforms[{i}]");
        let raw = RawWaveform {
            start: time_of(waveform.start.as_ref(), &at)?,
            device_flagged: flagged(&waveform.flags, &at)?,
            metric: MetricRef::parse(&waveform.metric),
            sample_rate_hz: waveform.rate_hz,
            samples: waveform.samples,
            body_site: waveform.body_site,
        };
        let observation = normalize_waveform(catalog, device_id, raw, received)
            .map_err(|error| PayloadError::Normalize { at, error })?;
        observations.push(observation);
    }
    if let Some(battery) = payload.battery {
        let raw = RawNumeric {
            device_time: time_of(None, "battery")?,
            device_flagged: false,
            metric: MetricRef::Key("battery".into()),
            value: battery,
            unit: None,
            body_site: None,
        };
        let observation =
            normalize_numeric(catalog, device_id, raw, received).map_err(|error| {
                PayloadError::Normalize {
                    at: "battery".into(),
                    error,
                }
            })?;
        observations.push(observation);
    }
    Ok(observations)
}

fn flagged(flags: &[String], at: &str) -> Result<bool, PayloadError> {
    match flags.iter().find(|flag| !FLAGS.contains(&flag.as_str())) {
        Some(flag) => Err(PayloadError::UnknownFlag {
            at: at.to_owned(),
            flag: flag.clone(),
        }),
        None => Ok(!flags.is_empty()),
    }
}

fn parse_time(time: &Time, at: &str) -> Result<Timestamp, PayloadError> {
    match time {
        Time::Millis(ms) => Ok(Timestamp(*ms)),
        Time::Text(text) => parse_rfc3339(text).ok_or_else(|| PayloadError::BadTime {
            at: at.to_owned(),
            text: text.clone(),
        }),
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)` to epoch milliseconds.
pub fn parse_rfc3339(text: &str) -> Option<Timestamp> {
    let bytes = text.as_bytes();
    if bytes.len() < 20
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || !matches!(bytes[10], b'T' | b't' | b' ')
    {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if bytes[13] != b':'
        || bytes[16] != b':'
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &text[19..];
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
        "Z" | "z" => 0,
        // ASCII first: the byte slicing below must not split a character (found by the
        // property test in `fuzz.rs`: a UTF-8 offset such as "+0Ѩ0" used to panic).
        _ if rest.len() == 6 && rest.is_ascii() && matches!(&rest[3..4], ":") => {
            let sign = match &rest[0..1] {
                "+" => 1,
                "-" => -1,
                _ => return None,
            };
            let hours: i64 = rest[1..3].parse().ok()?;
            let minutes: i64 = rest[4..6].parse().ok()?;
            sign * (hours * 60 + minutes)
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Some(Timestamp(seconds * 1000 + millis))
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::ObservedValue;

    fn run(json: &str) -> Result<Vec<Observation>, PayloadError> {
        parse(
            Catalog::embedded(),
            &"dev".into(),
            json.as_bytes(),
            Timestamp(5),
        )
    }

    #[test]
    fn the_documented_example_parses() {
        let observations = run(r#"{
            "time": 1764045600123,
            "numerics": [
                { "metric": "heart_rate", "value": 72 },
                { "metric": "spo2", "value": 97, "body_site": "finger_left" },
                { "metric": "body_temperature", "value": 37.2, "time": 1764045598000, "flags": ["artefact"] }
            ],
            "waveforms": [
                { "metric": "ecg_ii", "start": 1764045599123, "rate_hz": 250, "samples": [0.01, 0.02] }
            ],
            "battery": 80
        }"#)
        .unwrap();
        assert_eq!(observations.len(), 5);
        assert_eq!(observations[0].device_time, Timestamp(1_764_045_600_123));
        assert_eq!(observations[2].device_time, Timestamp(1_764_045_598_000));
        assert!(observations[2].quality.device_flagged);
        assert!(
            matches!(&observations[3].value, ObservedValue::Waveform(w) if w.samples.len() == 2)
        );
        assert_eq!(observations[4].metric, "battery");
    }

    #[test]
    fn errors_say_where_and_what() {
        let error = run(r#"{"time": 1, "numerics": [{"metric": "heart_rate", "value": 1}, {"metric": "nope", "value": 1}]}"#)
            .unwrap_err();
        assert_eq!(error.to_string(), "numerics[1]: unknown metric `nope`");
        let error = run(r#"{"numerics": [{"metric": "heart_rate", "value": 1}]}"#).unwrap_err();
        assert_eq!(
            error.to_string(),
            "numerics[0]: no time given and the message has no `time`"
        );
        assert_eq!(run("{}").unwrap_err(), PayloadError::Empty);
        assert!(matches!(run("not json"), Err(PayloadError::Json(_))));
        assert!(matches!(
            run(r#"{"time": 1, "extra": 2}"#),
            Err(PayloadError::Json(_))
        ));
    }

    #[test]
    fn rfc3339_times() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(Timestamp(0)));
        assert_eq!(
            parse_rfc3339("2025-11-25T04:40:00.5Z"),
            Some(Timestamp(1_764_045_600_500))
        );
        assert_eq!(
            parse_rfc3339("2025-11-25T05:40:00+01:00"),
            Some(Timestamp(1_764_045_600_000))
        );
        assert_eq!(parse_rfc3339("2025-13-25T05:40:00Z"), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(parse_rfc3339("2025-11-25T05:40:000ѨѨ<"), None);
        assert_eq!(parse_rfc3339("2025-11-25T05:40:00+0Ѩ:0"), None);
    }
}
