//! SenML (RFC 8428) JSON packs from devices, as an edge type, resolved to normalized
//! observations through the same catalog as our own payload (docs/mqtt.md, "SenML").
//!
//! Naming: a record's name is base name + name. Either it is a metric reference as in our JSON
//! payload (`heart_rate`, `mdc:150456`, `loinc:59408-5`), or it names the device first,
//! `urn:dev:<subtype>:<device_id>:<metric key>` (RFC 9039 device URNs, e.g. `urn:dev:mac:…`);
//! the device there must be the topic's device, since the topic (and the broker's credentials)
//! say who is publishing. Units are SenML units (RFC 8428 §12.1, RFC 8798) mapped to the
//! catalog's UCUM units; anything else is refused rather than guessed.

use std::collections::BTreeMap;

use model::{Catalog, DeviceId, Observation, Timestamp};
use serde::Deserialize;
use serde_json::Value;
use twin::{MetricRef, RawNumeric, normalize_numeric};

/// The SenML version this parser implements (RFC 8428 §4.4: 10).
pub const SENML_VERSION: i64 = 10;

/// RFC 8428 §4.5.3: times below 2**28 seconds are relative to now.
const RELATIVE_TIME_LIMIT: f64 = 268_435_456.0;

#[derive(Deserialize)]
struct Record {
    bn: Option<String>,
    bt: Option<f64>,
    bu: Option<String>,
    bv: Option<f64>,
    bs: Option<f64>,
    bver: Option<i64>,
    n: Option<String>,
    u: Option<String>,
    v: Option<f64>,
    vs: Option<String>,
    vb: Option<bool>,
    vd: Option<String>,
    s: Option<f64>,
    t: Option<f64>,
    ut: Option<f64>,
    /// Fields this version does not define: ignored, unless they end in `_` ("must
    /// understand", RFC 8428 §4.4).
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SenmlError {
    #[error("payload is not a SenML JSON pack (RFC 8428): {0}")]
    Json(String),
    #[error("SenML pack has no records")]
    Empty,
    #[error(
        "records[{at}]: SenML version {version} is newer than {SENML_VERSION}, which this server implements"
    )]
    Version { at: usize, version: i64 },
    #[error("records[{at}]: field `{field}` must be understood and is not")]
    MustUnderstand { at: usize, field: String },
    #[error("records[{at}]: the record has no name (n or bn)")]
    NoName { at: usize },
    #[error("records[{at}]: `{name}` names device `{named}`, but the topic is device `{topic}`")]
    OtherDevice {
        at: usize,
        name: String,
        named: String,
        topic: String,
    },
    #[error("records[{at}]: `{name}` is not urn:dev:<subtype>:<device_id>:<metric>")]
    BadDeviceName { at: usize, name: String },
    #[error(
        "records[{at}]: `{metric}` takes a number (v); string, boolean and data values are not measurements in the catalog"
    )]
    NotNumeric { at: usize, metric: String },
    #[error("records[{at}]: `{metric}` has no value")]
    NoValue { at: usize, metric: String },
    #[error("records[{at}]: time {time} is not a finite number of seconds")]
    BadTime { at: usize, time: f64 },
    #[error("records[{at}]: SenML unit `{unit}` has no UCUM equivalent for `{metric}`")]
    Unit {
        at: usize,
        metric: String,
        unit: String,
    },
    #[error("records[{at}]: {error}")]
    Normalize {
        at: usize,
        error: twin::NormalizeError,
    },
}

impl SenmlError {
    /// The pack claims to be another device's: an authorization problem, not a format one.
    pub fn names_another_device(&self) -> bool {
        matches!(self, SenmlError::OtherDevice { .. })
    }
}

/// Parses a SenML JSON pack from `device_id` into observations in catalog terms. All or
/// nothing, like our JSON payload.
pub fn parse(
    catalog: &Catalog,
    device_id: &DeviceId,
    bytes: &[u8],
    received: Timestamp,
) -> Result<Vec<Observation>, SenmlError> {
    let records: Vec<Record> =
        serde_json::from_slice(bytes).map_err(|e| SenmlError::Json(e.to_string()))?;
    if records.is_empty() {
        return Err(SenmlError::Empty);
    }
    // Base fields apply to every later record until a record sets them again (§4.1).
    let (mut base_name, mut base_time, mut base_unit) = (String::new(), 0.0, None::<String>);
    let (mut base_value, mut base_sum) = (None::<f64>, None::<f64>);
    let mut observations = Vec::with_capacity(records.len());
    for (at, record) in records.into_iter().enumerate() {
        if let Some(version) = record.bver
            && version > SENML_VERSION
        {
            return Err(SenmlError::Version { at, version });
        }
        if let Some(field) = record.other.keys().find(|key| key.ends_with('_')) {
            return Err(SenmlError::MustUnderstand {
                at,
                field: field.clone(),
            });
        }
        if let Some(bn) = record.bn {
            base_name = bn;
        }
        if let Some(bt) = record.bt {
            base_time = bt;
        }
        if let Some(bu) = record.bu {
            base_unit = Some(bu);
        }
        if let Some(bv) = record.bv {
            base_value = Some(bv);
        }
        if let Some(bs) = record.bs {
            base_sum = Some(bs);
        }
        let _ = record.ut;
        let name = format!("{base_name}{}", record.n.as_deref().unwrap_or(""));
        if name.is_empty() {
            return Err(SenmlError::NoName { at });
        }
        let metric = metric_of_name(&name, device_id, at)?;
        if record.vs.is_some() || record.vb.is_some() || record.vd.is_some() {
            return Err(SenmlError::NotNumeric { at, metric });
        }
        // A record with only a sum (s) is a running total, not a measurement we keep.
        let _ = (record.s, base_sum);
        let value = match (record.v, base_value) {
            (Some(v), base) => v + base.unwrap_or(0.0),
            (None, _) => return Err(SenmlError::NoValue { at, metric }),
        };
        let time = base_time + record.t.unwrap_or(0.0);
        if !time.is_finite() {
            return Err(SenmlError::BadTime { at, time });
        }
        let device_time = if time < RELATIVE_TIME_LIMIT {
            Timestamp(
                received
                    .millis()
                    .saturating_add((time * 1000.0).round() as i64),
            )
        } else {
            Timestamp((time * 1000.0).round() as i64)
        };
        let unit = match record.u.as_deref().or(base_unit.as_deref()) {
            Some(unit) => Some(
                ucum_of_senml_unit(unit)
                    .ok_or_else(|| SenmlError::Unit {
                        at,
                        metric: metric.clone(),
                        unit: unit.to_owned(),
                    })?
                    .to_owned(),
            ),
            None => None,
        };
        let (value, unit) = match unit.as_deref() {
            // kelvin and pascal have no catalog metric; convert to the catalog's scale here.
            Some("K") => (value - 273.15, Some("Cel".to_owned())),
            Some("Pa") => (value / 1000.0, Some("kPa".to_owned())),
            _ => (value, unit),
        };
        let raw = RawNumeric {
            metric: MetricRef::parse(&metric),
            value,
            unit,
            device_time,
            body_site: None,
            device_flagged: false,
        };
        let observation = normalize_numeric(catalog, device_id, raw, received)
            .map_err(|error| SenmlError::Normalize { at, error })?;
        observations.push(observation);
    }
    Ok(observations)
}

/// A resolved SenML name to the metric reference it carries, checking the device it names.
fn metric_of_name(name: &str, device_id: &DeviceId, at: usize) -> Result<String, SenmlError> {
    let Some(rest) = name.strip_prefix("urn:dev:") else {
        return Ok(name.to_owned());
    };
    // urn:dev:<subtype>:<device_id>:<metric>; device ids may hold ':', metric keys do not.
    let bad = || SenmlError::BadDeviceName {
        at,
        name: name.to_owned(),
    };
    let (_subtype, rest) = rest.split_once(':').ok_or_else(bad)?;
    let (named, metric) = rest.rsplit_once(':').ok_or_else(bad)?;
    if named.is_empty() || metric.is_empty() {
        return Err(bad());
    }
    if named != device_id.as_str() {
        return Err(SenmlError::OtherDevice {
            at,
            name: name.to_owned(),
            named: named.to_owned(),
            topic: device_id.to_string(),
        });
    }
    Ok(metric.to_owned())
}

/// SenML unit symbols (RFC 8428 §12.1 registry, plus `ppm` and `mV` from RFC 8798) to UCUM,
/// for the units the catalog's metrics use. `K` and `Pa` are converted by the caller.
pub fn ucum_of_senml_unit(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "beat/min" | "1/min" => "/min",
        "%" | "%RH" | "%EL" => "%",
        "Cel" => "Cel",
        "K" => "K",
        "Pa" => "Pa",
        "lx" => "lx",
        "dB" => "dB",
        "ppm" => "[ppm]",
        "mV" => "mV",
        "/" => "1",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::ObservedValue;

    const RECEIVED: Timestamp = Timestamp(1_764_045_600_000);

    fn run(device: &str, json: &str) -> Result<Vec<Observation>, SenmlError> {
        parse(
            Catalog::embedded(),
            &DeviceId::new(device),
            json.as_bytes(),
            RECEIVED,
        )
    }

    fn value(observation: &Observation) -> f64 {
        match observation.value {
            ObservedValue::Numeric(v) => v,
            ObservedValue::Waveform(_) => panic!("numeric expected"),
        }
    }

    #[test]
    fn base_fields_carry_over_and_times_resolve() {
        let observations = run(
            "0012ab34cd56ef78",
            r#"[
                {"bn": "urn:dev:mac:0012ab34cd56ef78:", "bt": 1764045500, "bver": 10,
                 "n": "heart_rate", "u": "beat/min", "v": 72},
                {"n": "spo2", "u": "%", "v": 97, "t": -1.5},
                {"n": "body_temperature", "u": "K", "v": 310.15, "t": 2},
                {"bn": "", "bt": 0, "n": "respiration_rate", "u": "1/min", "v": 16, "t": -3}
            ]"#,
        )
        .unwrap();
        assert_eq!(observations.len(), 4);
        assert_eq!(observations[0].metric, "heart_rate");
        assert_eq!(observations[0].device_time, Timestamp(1_764_045_500_000));
        assert_eq!(observations[1].device_time, Timestamp(1_764_045_498_500));
        assert!((value(&observations[2]) - 37.0).abs() < 1e-9);
        // bt 0 and t -3: relative to the time the message was received
        assert_eq!(observations[3].device_time, Timestamp(RECEIVED.0 - 3000));
        assert_eq!(value(&observations[3]), 16.0);
    }

    #[test]
    fn base_value_and_plain_metric_names() {
        let observations = run(
            "dev-1",
            r#"[{"bv": 20, "bu": "Cel", "n": "room_temperature", "v": 1.5, "t": 1764045600},
                {"n": "mdc:150456", "bv": 0, "v": 95, "u": "%", "t": 1764045600}]"#,
        )
        .unwrap();
        assert_eq!(value(&observations[0]), 21.5);
        assert_eq!(observations[1].metric, "spo2");
    }

    #[test]
    fn another_device_in_the_name_is_an_authorization_error() {
        let error = run(
            "dev-1",
            r#"[{"bn": "urn:dev:id:dev-2:", "n": "heart_rate", "v": 72}]"#,
        )
        .unwrap_err();
        assert!(error.names_another_device(), "{error}");
        assert_eq!(
            error.to_string(),
            "records[0]: `urn:dev:id:dev-2:heart_rate` names device `dev-2`, but the topic is device `dev-1`"
        );
    }

    #[test]
    fn invalid_packs_say_what_is_wrong() {
        let cases = [
            ("{}", "not a SenML JSON pack"),
            ("[]", "no records"),
            (
                r#"[{"n": "heart_rate", "v": 1, "bver": 11}]"#,
                "newer than 10",
            ),
            (
                r#"[{"n": "heart_rate", "v": 1, "x_": 1}]"#,
                "must be understood",
            ),
            (r#"[{"v": 1}]"#, "no name"),
            (r#"[{"n": "heart_rate", "vs": "high"}]"#, "takes a number"),
            (r#"[{"n": "heart_rate", "vb": true}]"#, "takes a number"),
            (r#"[{"n": "heart_rate"}]"#, "has no value"),
            (
                r#"[{"n": "heart_rate", "v": 1, "u": "furlong"}]"#,
                "no UCUM",
            ),
            (r#"[{"n": "heart_rate", "v": 1, "u": "%"}]"#, "expects unit"),
            (r#"[{"n": "nope", "v": 1}]"#, "unknown metric"),
            (r#"[{"n": "urn:dev:heart_rate", "v": 1}]"#, "is not urn:dev"),
        ];
        for (json, expected) in cases {
            let error = run("dev-1", json).unwrap_err().to_string();
            assert!(error.contains(expected), "{json}: {error}");
        }
        // Unknown fields that need not be understood are ignored (RFC 8428 §4.4).
        assert!(run("dev-1", r#"[{"n": "heart_rate", "v": 1, "foo": 2}]"#).is_ok());
    }
}
