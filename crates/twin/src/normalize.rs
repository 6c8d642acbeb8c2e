//! From what a source understood (a metric named by key, MDC or LOINC code, a value, a unit)
//! to a catalog observation: the metric is the catalog's, the value is in the catalog's unit,
//! and a value outside the plausible range is flagged as implausible, never dropped.

use model::{
    BodyRegion, Catalog, DeviceId, Metric, MetricKind, Observation, ObservedValue, Quality,
    Timestamp, WaveformChunk,
};

/// How a source named a metric.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetricRef {
    Key(String),
    Mdc(u32),
    Loinc(String),
}

impl MetricRef {
    /// Parses `heart_rate`, `mdc:147842` or `loinc:8867-4`.
    pub fn parse(text: &str) -> MetricRef {
        if let Some(code) = text.strip_prefix("mdc:")
            && let Ok(code) = code.parse()
        {
            return MetricRef::Mdc(code);
        }
        match text.strip_prefix("loinc:") {
            Some(code) => MetricRef::Loinc(code.to_owned()),
            None => MetricRef::Key(text.to_owned()),
        }
    }

    fn lookup<'c>(&self, catalog: &'c Catalog) -> Option<&'c Metric> {
        match self {
            MetricRef::Key(key) => catalog.by_key(key),
            MetricRef::Mdc(code) => catalog.by_mdc(*code),
            MetricRef::Loinc(code) => catalog.by_loinc(code),
        }
    }
}

impl std::fmt::Display for MetricRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetricRef::Key(key) => f.write_str(key),
            MetricRef::Mdc(code) => write!(f, "mdc:{code}"),
            MetricRef::Loinc(code) => write!(f, "loinc:{code}"),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum NormalizeError {
    #[error("unknown metric `{0}`")]
    UnknownMetric(String),
    #[error("metric `{metric}` is a {actual}, not a {expected}")]
    WrongKind {
        metric: String,
        expected: &'static str,
        actual: &'static str,
    },
    #[error("metric `{metric}` expects unit `{expected}`, got `{got}`")]
    UnitMismatch {
        metric: String,
        expected: String,
        got: String,
    },
    #[error("metric `{0}` has a value that is not a finite number")]
    NotFinite(String),
    #[error("unknown body site `{0}`")]
    UnknownBodySite(String),
    #[error("waveform `{0}` needs a positive sample rate and at least one sample")]
    EmptyWaveform(String),
}

pub struct RawNumeric {
    pub metric: MetricRef,
    pub value: f64,
    pub unit: Option<String>,
    pub device_time: Timestamp,
    pub body_site: Option<String>,
    pub device_flagged: bool,
}

pub struct RawWaveform {
    pub metric: MetricRef,
    pub start: Timestamp,
    pub sample_rate_hz: f64,
    pub samples: Vec<f32>,
    pub body_site: Option<String>,
    pub device_flagged: bool,
}

pub fn normalize_numeric(
    catalog: &Catalog,
    device_id: &DeviceId,
    raw: RawNumeric,
    received_time: Timestamp,
) -> Result<Observation, NormalizeError> {
    let metric = find(catalog, &raw.metric, MetricKind::Numeric)?;
    let value = match &raw.unit {
        Some(unit) => convert(metric, unit, raw.value)?,
        None => raw.value,
    };
    if !value.is_finite() {
        return Err(NormalizeError::NotFinite(metric.key.clone()));
    }
    Ok(Observation {
        device_id: device_id.clone(),
        metric: metric.key.clone(),
        value: ObservedValue::Numeric(value),
        device_time: raw.device_time,
        received_time,
        body_site: body_site(raw.body_site.as_deref())?,
        quality: Quality {
            implausible: !metric.plausible.contains(value),
            device_flagged: raw.device_flagged,
        },
        reference_range: None,
    })
}

pub fn normalize_waveform(
    catalog: &Catalog,
    device_id: &DeviceId,
    raw: RawWaveform,
    received_time: Timestamp,
) -> Result<Observation, NormalizeError> {
    let metric = find(catalog, &raw.metric, MetricKind::Waveform)?;
    if !(raw.sample_rate_hz > 0.0 && raw.sample_rate_hz.is_finite()) || raw.samples.is_empty() {
        return Err(NormalizeError::EmptyWaveform(metric.key.clone()));
    }
    if raw.samples.iter().any(|sample| !sample.is_finite()) {
        return Err(NormalizeError::NotFinite(metric.key.clone()));
    }
    let implausible = raw
        .samples
        .iter()
        .any(|&sample| !metric.plausible.contains(f64::from(sample)));
    Ok(Observation {
        device_id: device_id.clone(),
        metric: metric.key.clone(),
        value: ObservedValue::Waveform(WaveformChunk {
            sample_rate_hz: raw.sample_rate_hz,
            samples: raw.samples,
        }),
        device_time: raw.start,
        received_time,
        body_site: body_site(raw.body_site.as_deref())?,
        quality: Quality {
            implausible,
            device_flagged: raw.device_flagged,
        },
        reference_range: None,
    })
}

fn find<'c>(
    catalog: &'c Catalog,
    metric: &MetricRef,
    expected: MetricKind,
) -> Result<&'c Metric, NormalizeError> {
    let found = metric
        .lookup(catalog)
        .ok_or_else(|| NormalizeError::UnknownMetric(metric.to_string()))?;
    if found.kind != expected {
        return Err(NormalizeError::WrongKind {
            metric: found.key.clone(),
            expected: kind_name(expected),
            actual: kind_name(found.kind),
        });
    }
    Ok(found)
}

fn kind_name(kind: MetricKind) -> &'static str {
    match kind {
        MetricKind::Numeric => "numeric",
        MetricKind::Waveform => "waveform",
    }
}

fn body_site(key: Option<&str>) -> Result<Option<BodyRegion>, NormalizeError> {
    key.map(|key| {
        key.parse()
            .map_err(|_| NormalizeError::UnknownBodySite(key.to_owned()))
    })
    .transpose()
}

/// Converts a value given in `unit` into the catalog's unit. Besides the catalog's own UCUM
/// unit, the MDC unit reference id and a few spellings devices really send are accepted;
/// anything else is refused rather than guessed.
pub fn convert(metric: &Metric, unit: &str, value: f64) -> Result<f64, NormalizeError> {
    let unit = unit.trim();
    let same = unit == metric.ucum
        || metric.mdc_unit_refid.as_deref() == Some(unit)
        || metric
            .mdc_unit_code
            .is_some_and(|code| unit == code.to_string())
        || matches!(
            (metric.ucum.as_str(), unit),
            ("mm[Hg]", "mmHg") | ("/min", "bpm" | "{beats}/min" | "{breaths}/min") | ("Cel", "°C")
        );
    if same {
        return Ok(value);
    }
    match (metric.ucum.as_str(), unit) {
        ("Cel", "[degF]" | "°F") => Ok((value - 32.0) * 5.0 / 9.0),
        ("mm[Hg]", "kPa") => Ok(value * 7.500_616_827),
        _ => Err(NormalizeError::UnitMismatch {
            metric: metric.key.clone(),
            expected: metric.ucum.clone(),
            got: unit.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(metric: &str, value: f64, unit: Option<&str>) -> RawNumeric {
        RawNumeric {
            metric: MetricRef::parse(metric),
            value,
            unit: unit.map(str::to_owned),
            device_time: Timestamp(1),
            body_site: None,
            device_flagged: false,
        }
    }

    fn run(raw: RawNumeric) -> Result<Observation, NormalizeError> {
        normalize_numeric(Catalog::embedded(), &"d".into(), raw, Timestamp(2))
    }

    #[test]
    fn metrics_are_found_by_key_mdc_and_loinc() {
        for name in ["spo2", "mdc:150456", "loinc:59408-5"] {
            assert_eq!(run(numeric(name, 97.0, None)).unwrap().metric, "spo2");
        }
        assert_eq!(
            run(numeric("mdc:1", 1.0, None)),
            Err(NormalizeError::UnknownMetric("mdc:1".into()))
        );
    }

    #[test]
    fn units_are_converted_or_refused() {
        let obs = run(numeric("body_temperature", 98.6, Some("[degF]"))).unwrap();
        assert_eq!(obs.value, ObservedValue::Numeric(37.0));
        let obs = run(numeric("nibp_systolic", 120.0, Some("266016"))).unwrap();
        assert_eq!(obs.value, ObservedValue::Numeric(120.0));
        assert!(matches!(
            run(numeric("spo2", 0.97, Some("1"))),
            Err(NormalizeError::UnitMismatch { .. })
        ));
    }

    #[test]
    fn implausible_values_are_flagged_not_dropped() {
        let obs = run(numeric("spo2", 0.0, None)).unwrap();
        assert!(obs.quality.implausible);
        assert!(
            !run(numeric("spo2", 97.0, None))
                .unwrap()
                .quality
                .is_artefact()
        );
        assert!(matches!(
            run(numeric("spo2", f64::NAN, None)),
            Err(NormalizeError::NotFinite(_))
        ));
    }

    #[test]
    fn waveforms_and_numerics_are_not_confused() {
        assert!(matches!(
            run(numeric("ecg_ii", 1.0, None)),
            Err(NormalizeError::WrongKind { .. })
        ));
        let raw = RawWaveform {
            metric: MetricRef::parse("ecg_ii"),
            start: Timestamp(0),
            sample_rate_hz: 250.0,
            samples: vec![],
            body_site: None,
            device_flagged: false,
        };
        assert_eq!(
            normalize_waveform(Catalog::embedded(), &"d".into(), raw, Timestamp(0)),
            Err(NormalizeError::EmptyWaveform("ecg_ii".into()))
        );
    }
}
