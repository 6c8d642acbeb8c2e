//! The metric catalog: one table, shipped as data (`catalog/metrics.toml`), that drives
//! normalization (codes and units in, catalog key out), FHIR mapping, the avatar's body regions
//! and clinical scores. Codes come from published sources named in the file, never from memory.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::BodyRegion;

const EMBEDDED: &str = include_str!("../catalog/metrics.toml");

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog is not valid TOML: {0}")]
    Syntax(#[from] toml::de::Error),
    #[error("metric `{key}`: {problem}")]
    Row { key: String, problem: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    Numeric,
    Waveform,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MetricCategory {
    /// A vital sign in the sense of the FHIR vital-signs profile.
    VitalSigns,
    /// Other patient measurements (ECG, pleth, capnography, glucose).
    Patient,
    /// Room sensors: temperature, humidity, CO2, noise, light, air quality.
    Environment,
    /// The device's own state: battery, signal, posture, steps, falls.
    Device,
    /// Charted at the bedside by a clinician or read off a flowmeter (level of consciousness,
    /// supplemental oxygen): LOINC-coded, with no IEEE 11073 term required.
    Assessment,
}

#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
pub struct Range {
    pub low: f64,
    pub high: f64,
}

impl Range {
    pub fn contains(&self, value: f64) -> bool {
        value >= self.low && value <= self.high
    }
}

/// One row of the catalog.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metric {
    /// Our stable key, used in payloads, the API and the browser.
    pub key: String,
    pub display: String,
    pub kind: MetricKind,
    pub category: MetricCategory,
    /// IEEE 11073-10101 code (partition << 16 | term code) and reference id, where one exists.
    pub mdc_code: Option<u32>,
    pub mdc_refid: Option<String>,
    /// LOINC code used in FHIR, where one exists (the vital-signs profile code for vital signs).
    pub loinc: Option<String>,
    pub loinc_display: Option<String>,
    /// UCUM unit of the values we store and serve.
    pub ucum: String,
    /// IEEE 11073-10101 unit code and reference id, as PCD-01 senders may use them in OBX-6.
    pub mdc_unit_code: Option<u32>,
    pub mdc_unit_refid: Option<String>,
    /// Where the avatar shows it when neither the observation nor the device placement says.
    /// Absent for room and device metrics.
    pub region: Option<String>,
    /// The NEWS2 parameter this metric feeds, if any.
    pub news2: Option<String>,
    /// Outside this range a value is flagged implausible (an artefact), never silently dropped.
    pub plausible: Range,
    /// The range an adult at rest is expected in; drives the "distance from normal" colour.
    pub normal: Option<Range>,
    /// Nominal sample rate of a waveform.
    pub sample_rate_hz: Option<f64>,
    /// Decimals worth showing.
    pub decimals: u8,
    /// Where the codes come from.
    pub source: String,
}

impl Metric {
    pub fn default_region(&self) -> Option<BodyRegion> {
        self.region.as_deref().and_then(|key| key.parse().ok())
    }
}

#[derive(Debug)]
pub struct Catalog {
    metrics: Vec<Metric>,
    by_key: HashMap<String, usize>,
    by_mdc: HashMap<u32, usize>,
    by_loinc: HashMap<String, usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    metric: Vec<Metric>,
}

impl Catalog {
    /// The catalog shipped with the project.
    pub fn embedded() -> &'static Catalog {
        static CATALOG: OnceLock<Catalog> = OnceLock::new();
        CATALOG.get_or_init(|| Catalog::parse(EMBEDDED).expect("the embedded catalog is valid"))
    }

    pub fn parse(text: &str) -> Result<Catalog, CatalogError> {
        let file: CatalogFile = toml::from_str(text)?;
        let mut catalog = Catalog {
            metrics: Vec::new(),
            by_key: HashMap::new(),
            by_mdc: HashMap::new(),
            by_loinc: HashMap::new(),
        };
        for metric in file.metric {
            let index = catalog.metrics.len();
            let row_error = |problem: String| CatalogError::Row {
                key: metric.key.clone(),
                problem,
            };
            validate(&metric).map_err(row_error)?;
            if catalog.by_key.insert(metric.key.clone(), index).is_some() {
                return Err(row_error("duplicate key".into()));
            }
            if let Some(code) = metric.mdc_code
                && catalog.by_mdc.insert(code, index).is_some()
            {
                return Err(row_error(format!("duplicate MDC code {code}")));
            }
            if let Some(loinc) = &metric.loinc
                && catalog.by_loinc.insert(loinc.clone(), index).is_some()
            {
                return Err(row_error(format!("duplicate LOINC code {loinc}")));
            }
            catalog.metrics.push(metric);
        }
        Ok(catalog)
    }

    pub fn metrics(&self) -> &[Metric] {
        &self.metrics
    }

    pub fn by_key(&self, key: &str) -> Option<&Metric> {
        self.by_key.get(key).map(|&i| &self.metrics[i])
    }

    pub fn by_mdc(&self, code: u32) -> Option<&Metric> {
        self.by_mdc.get(&code).map(|&i| &self.metrics[i])
    }

    pub fn by_loinc(&self, code: &str) -> Option<&Metric> {
        self.by_loinc.get(code).map(|&i| &self.metrics[i])
    }
}

/// The rules every row keeps; a row that breaks one would mislabel data downstream.
fn validate(metric: &Metric) -> Result<(), String> {
    let key_ok = !metric.key.is_empty()
        && metric
            .key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !key_ok {
        return Err("key must be lowercase ascii, digits and underscores".into());
    }
    if metric.display.trim().is_empty() || metric.source.trim().is_empty() {
        return Err("display and source are required".into());
    }
    if metric.mdc_code.is_some() != metric.mdc_refid.is_some() {
        return Err("mdc_code and mdc_refid go together".into());
    }
    if let (Some(code), Some(refid)) = (metric.mdc_code, &metric.mdc_refid) {
        if !refid.starts_with("MDC_") {
            return Err(format!(
                "MDC reference id `{refid}` does not start with MDC_"
            ));
        }
        if code >> 16 == 0 {
            return Err(format!("MDC code {code} has no partition"));
        }
    }
    if metric.mdc_unit_code.is_some() != metric.mdc_unit_refid.is_some() {
        return Err("mdc_unit_code and mdc_unit_refid go together".into());
    }
    if metric.loinc.is_some() != metric.loinc_display.is_some() {
        return Err("loinc and loinc_display go together".into());
    }
    if let Some(loinc) = &metric.loinc
        && !is_loinc_code(loinc)
    {
        return Err(format!(
            "`{loinc}` is not a LOINC code with a valid check digit"
        ));
    }
    if metric.category == MetricCategory::VitalSigns && metric.loinc.is_none() {
        return Err("a vital sign needs its LOINC code".into());
    }
    if metric.category == MetricCategory::Assessment {
        if metric.loinc.is_none() {
            return Err("an assessment needs its LOINC code".into());
        }
        if metric.default_region().is_none() {
            return Err("an assessment needs a valid body region".into());
        }
    }
    if matches!(
        metric.category,
        MetricCategory::VitalSigns | MetricCategory::Patient
    ) {
        if metric.mdc_code.is_none() {
            return Err("a patient measurement needs its MDC code".into());
        }
        match metric.default_region() {
            Some(_) => {}
            None => return Err("a patient measurement needs a valid body region".into()),
        }
    } else if metric.region.is_some() && metric.category != MetricCategory::Assessment {
        return Err("room and device metrics have no body region".into());
    }
    if metric.ucum.trim().is_empty() {
        return Err("ucum unit is required".into());
    }
    if metric.plausible.low >= metric.plausible.high {
        return Err("plausible range is empty".into());
    }
    if let Some(normal) = metric.normal
        && (normal.low < metric.plausible.low
            || normal.high > metric.plausible.high
            || normal.low > normal.high)
    {
        return Err("normal range must lie within the plausible range".into());
    }
    match (metric.kind, metric.sample_rate_hz) {
        (MetricKind::Waveform, Some(rate)) if rate > 0.0 => {}
        (MetricKind::Waveform, _) => return Err("a waveform needs a sample rate".into()),
        (MetricKind::Numeric, None) => {}
        (MetricKind::Numeric, Some(_)) => return Err("a numeric has no sample rate".into()),
    }
    // The seven parameters of NEWS2 Chart 1 (crates/clinical names them the same way).
    const NEWS2_PARAMETERS: [&str; 7] = [
        "respiration_rate",
        "spo2",
        "air_or_oxygen",
        "systolic_bp",
        "pulse",
        "consciousness",
        "temperature",
    ];
    if let Some(news2) = &metric.news2
        && !NEWS2_PARAMETERS.contains(&news2.as_str())
    {
        return Err(format!("unknown NEWS2 parameter `{news2}`"));
    }
    Ok(())
}

/// LOINC codes are digits, a dash and a mod-10 check digit (LOINC Users' Guide, appendix).
fn is_loinc_code(code: &str) -> bool {
    let Some((body, check)) = code.split_once('-') else {
        return false;
    };
    if body.is_empty() || check.len() != 1 || !body.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let Some(check) = check.chars().next().and_then(|c| c.to_digit(10)) else {
        return false;
    };
    // Mod 10 (Luhn): double every second digit from the right, starting with the rightmost.
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let digit = u32::from(b - b'0');
            if i % 2 == 0 {
                let doubled = digit * 2;
                doubled / 10 + doubled % 10
            } else {
                digit
            }
        })
        .sum();
    (10 - sum % 10) % 10 == check
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loinc_check_digits() {
        for good in [
            "8867-4", "59408-5", "2708-6", "9279-1", "8310-5", "8480-6", "8462-4", "3151-8",
            "80288-4",
        ] {
            assert!(is_loinc_code(good), "{good}");
        }
        for bad in ["8867-5", "8867", "-4", "88a7-4", "8867-44"] {
            assert!(!is_loinc_code(bad), "{bad}");
        }
    }
}

#[cfg(test)]
mod embedded_catalog_tests {
    use super::*;

    #[test]
    fn the_embedded_catalog_loads_and_covers_the_required_metrics() {
        let catalog = Catalog::embedded();
        for key in [
            "heart_rate",
            "pulse_rate",
            "spo2",
            "respiration_rate",
            "nibp_systolic",
            "nibp_diastolic",
            "nibp_mean",
            "body_temperature",
            "ecg_ii",
            "pleth",
            "etco2",
            "blood_glucose",
            "room_temperature",
            "room_humidity",
            "room_co2",
            "room_noise",
            "room_illuminance",
            "inhaled_oxygen_flow",
            "consciousness_acvpu",
        ] {
            assert!(catalog.by_key(key).is_some(), "catalog lacks {key}");
        }
    }

    #[test]
    fn end_tidal_co2_carries_the_reference_id_of_its_code() {
        // 151708 = 2 << 16 | 20636 is MDC_CONC_AWAY_CO2_ET; MDC_AWAY_CO2_ET is 20656 (151728).
        let etco2 = Catalog::embedded()
            .by_mdc(151_708)
            .expect("etco2 by MDC code");
        assert_eq!(etco2.key, "etco2");
        assert_eq!(etco2.mdc_refid.as_deref(), Some("MDC_CONC_AWAY_CO2_ET"));
    }
}
