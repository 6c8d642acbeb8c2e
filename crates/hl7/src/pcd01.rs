//! IHE PCD-01 "Communicate PCD Data" (ORU^R01) to the core model's observations.
//!
//! - OBX-3: the MDC code (or LOINC), looked up in the metric catalog; the reference id alone
//!   (OBX-3.2) is used only when OBX-3.1 is empty, since a code that contradicts its name is
//!   not ours to resolve.
//! - OBX-4: the containment sub-id `<MDS>.<VMD>.<channel>.<metric>`; vendors put an index or the
//!   metric's own MDC code in the last part, and write headers as `1.13.1.0` or `1.13.1`. Device
//!   identity (OBX-18) and time (OBX-14) flow from a header down to the metrics it contains.
//! - OBX-5/6: NM values converted to the catalog's unit (UCUM or MDC dimension codes) through
//!   `twin::normalize`; NA arrays become waveform chunks at the sample period that a
//!   MDC_ATTR_TIME_PD_SAMP observation (67981) below or beside them gives.
//! - OBX-7 reference or alarm limits, OBX-8 abnormal flags, OBX-11 result status: kept with the
//!   mapped value; a status or flag that says the device does not vouch for the value marks it
//!   `device_flagged` (shown as an artefact, never dropped).
//! - OBX-14, else the header's, else OBR-7, else MSH-7, else the time received.
//! - OBX-18 device identifier (EUI-64 preferred), else the header's, else OBR-3, else MSH-3.
//! - OBX-20 body site, HL7 table 0163 or a metaward body region key.
//!
//! Who the data belongs to (PID-3, PV1-3) is read here but resolved by the server, which knows
//! the ward's patients and beds.

use std::collections::HashMap;

use model::{
    BodyPart, BodyRegion, Catalog, DeviceId, Metric, MetricKind, Observation, Side, Timestamp,
};
use twin::normalize::{self, MetricRef, NormalizeError, RawNumeric, RawWaveform};

use crate::message::{Component, Message, Segment, component_text};
use crate::time::parse_dtm;
use crate::{ErrorCode, Issue};

/// MDC_ATTR_TIME_PD_SAMP: partition 1 (object attributes) << 16 | term 2445. The partition
/// arithmetic is checked against MDC_ATTR_TIME_ABS 2439 = 67975 in the PCD-01 samples.
pub const MDC_ATTR_TIME_PD_SAMP: u32 = 67981;

/// A patient as PID-3 names them: the first identifier of type PI (patient internal), else MR
/// (medical record number), else the first identifier given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatientRef {
    pub id: String,
    pub identifier_type: String,
}

/// A location as PV1-3 (PL) gives it: point of care ^ room ^ bed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocationRef {
    pub point_of_care: String,
    pub room: String,
    pub bed: String,
}

impl LocationRef {
    pub fn is_empty(&self) -> bool {
        self.point_of_care.is_empty() && self.room.is_empty() && self.bed.is_empty()
    }
}

/// Reference or alarm limits (OBX-7), as `low - high`, `<high`, `>low`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    pub low: Option<f64>,
    pub high: Option<f64>,
}

/// One OBX that became an observation, with what the model has no place for.
#[derive(Clone, Debug, PartialEq)]
pub struct Mapped {
    pub observation: Observation,
    /// OBX-4 as sent.
    pub sub_id: String,
    /// OBX position in the message (for ERR).
    pub position: usize,
    pub limits: Option<Limits>,
    pub abnormal_flags: Vec<String>,
    pub result_status: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct OruResult {
    pub patient: Option<PatientRef>,
    pub location: Option<LocationRef>,
    pub mapped: Vec<Mapped>,
    /// Errors refuse the message; warnings go back with its AA.
    pub issues: Vec<Issue>,
}

impl OruResult {
    pub fn has_errors(&self) -> bool {
        self.issues
            .iter()
            .any(|i| i.severity == crate::Severity::Error)
    }
}

/// OBX-11 values (HL7 table 0085) under which a device stands behind its value. Others (X
/// cannot be obtained, D deleted, W wrong, I pending, N not asked, O order detail) mark it.
const TRUSTED_STATUS: [&str; 7] = ["F", "R", "P", "C", "S", "U", "A"];

/// OBX-8 values that say the device does not vouch for the value: the IHE PCD measurement
/// status codes (invalid, questionable, calibration ongoing, test data, demo data) and its null
/// flavors (no information, not applicable, not available, off, masked, other, not a number,
/// infinities).
const UNTRUSTED_FLAGS: [&str; 14] = [
    "INV", "QUES", "CAL", "TEST", "DEMO", "NI", "NA", "NAV", "OFF", "MSK", "OTH", "NAN", "PINF",
    "NINF",
];

pub fn map_oru(message: &Message, catalog: &Catalog, received: Timestamp) -> OruResult {
    let mut issues = Vec::new();
    let msh = message.msh();
    let message_time = parse_dtm(msh.value(7));
    let sender_device = eui64_of_hd(msh.components(3)).or_else(|| {
        let namespace = msh.value(3);
        (!namespace.is_empty()).then(|| namespace.to_owned())
    });
    let patient = message.first("PID").and_then(patient_of_pid);
    let location = message
        .first("PV1")
        .map(location_of_pv1)
        .filter(|location| !location.is_empty());

    let mut mapped = Vec::new();
    let mut saw_obr = false;
    // Each OBR opens a group; the OBX that follow belong to it.
    let mut groups: Vec<(Option<&Segment>, Vec<&Segment>)> = Vec::new();
    for segment in &message.segments {
        match segment.name.as_str() {
            "OBR" => {
                saw_obr = true;
                groups.push((Some(segment), Vec::new()));
            }
            "OBX" => match groups.last_mut() {
                Some((_, obxs)) => obxs.push(segment),
                None => groups.push((None, vec![segment])),
            },
            _ => {}
        }
    }
    if !saw_obr {
        issues.push(Issue::error(
            None,
            ErrorCode::SegmentSequence,
            "ORU^R01 needs an OBR segment before its OBX segments",
        ));
    }
    for (obr, obxs) in groups {
        let obr_time = match obr.map(|obr| obr.value(7)).filter(|t| !t.is_empty()) {
            Some(text) => match parse_dtm(text) {
                Some(t) => Some(t),
                None => {
                    issues.push(Issue::error(
                        obr.map(|obr| obr.location(7)),
                        ErrorCode::DataType,
                        "OBR-7 is not a valid date/time",
                    ));
                    None
                }
            },
            None => None,
        };
        let obr_device = obr.and_then(|obr| eui64_of_ei(obr.components(3)));
        let group = Group::of(&obxs, &mut issues);
        for obx in &obxs {
            let context = Context {
                catalog,
                received,
                fallback_time: obr_time.or(message_time).unwrap_or(received),
                fallback_device: obr_device.clone().or_else(|| sender_device.clone()),
                group: &group,
                obxs: &obxs,
            };
            if let Some(result) = map_obx(&context, obx, &mut issues) {
                mapped.push(result);
            }
        }
    }
    OruResult {
        patient,
        location,
        mapped,
        issues,
    }
}

pub fn patient_of_pid(pid: &Segment) -> Option<PatientRef> {
    let identifiers: Vec<(&str, &str)> = pid
        .repetitions(3)
        .iter()
        .map(|cx| (component_text(cx, 1).trim(), component_text(cx, 5).trim()))
        .filter(|(id, _)| !id.is_empty())
        .collect();
    let pick = identifiers
        .iter()
        .find(|(_, kind)| *kind == "PI")
        .or_else(|| identifiers.iter().find(|(_, kind)| *kind == "MR"))
        .or_else(|| identifiers.first())?;
    Some(PatientRef {
        id: pick.0.to_owned(),
        identifier_type: pick.1.to_owned(),
    })
}

pub fn location_of_pv1(pv1: &Segment) -> LocationRef {
    LocationRef {
        point_of_care: pv1.get(3, 1).trim().to_owned(),
        room: pv1.get(3, 2).trim().to_owned(),
        bed: pv1.get(3, 3).trim().to_owned(),
    }
}

/// What the headers of one OBR group say about the rows they contain.
struct Group {
    device_of: HashMap<String, String>,
    time_of: HashMap<String, Timestamp>,
}

impl Group {
    fn of(obxs: &[&Segment], issues: &mut Vec<Issue>) -> Group {
        let mut group = Group {
            device_of: HashMap::new(),
            time_of: HashMap::new(),
        };
        for obx in obxs {
            let key = canonical_sub_id(obx.value(4));
            if let Some(device) = device_of_obx(obx) {
                group.device_of.entry(key.clone()).or_insert(device);
            }
            let time = obx.value(14);
            if !time.is_empty() {
                match parse_dtm(time) {
                    Some(t) => {
                        group.time_of.entry(key).or_insert(t);
                    }
                    None => issues.push(Issue::error(
                        Some(obx.location(14)),
                        ErrorCode::DataType,
                        "OBX-14 is not a valid date/time",
                    )),
                }
            }
        }
        group
    }

    /// The value for a sub-id: its own, else its nearest container's.
    fn inherited<'a, T>(map: &'a HashMap<String, T>, sub_id: &str) -> Option<&'a T> {
        let mut key = canonical_sub_id(sub_id);
        loop {
            if let Some(value) = map.get(&key) {
                return Some(value);
            }
            match key.rfind('.') {
                Some(at) => key = canonical_sub_id(&key[..at]),
                None => return None,
            }
        }
    }
}

/// `1.13.1.0` and `1.13.1` are the same channel header; `1.0.0.0` is MDS 1.
fn canonical_sub_id(sub_id: &str) -> String {
    let mut parts: Vec<&str> = sub_id.trim().split('.').collect();
    while parts.len() > 1
        && parts
            .last()
            .is_some_and(|p| p.trim_start_matches('0').is_empty())
    {
        parts.pop();
    }
    parts.join(".")
}

struct Context<'a> {
    catalog: &'a Catalog,
    received: Timestamp,
    fallback_time: Timestamp,
    fallback_device: Option<String>,
    group: &'a Group,
    obxs: &'a [&'a Segment],
}

fn map_obx(context: &Context<'_>, obx: &Segment, issues: &mut Vec<Issue>) -> Option<Mapped> {
    let value_type = obx.value(2).trim();
    let value_present = !obx.repetitions(5).is_empty() && !obx.get(5, 1).is_empty();
    let code_text = obx.get(3, 1).trim();
    let code = code_text.parse::<u32>().ok();
    if code == Some(MDC_ATTR_TIME_PD_SAMP) {
        return None; // read by the waveform it belongs to
    }
    let metric = find_metric(context.catalog, obx);
    let Some(metric) = metric else {
        // Containment headers and device attributes carry no value we model.
        if value_present && matches!(value_type, "NM" | "NA") {
            issues.push(Issue::warning(
                Some(obx.location(3)),
                ErrorCode::TableValueNotFound,
                format!(
                    "OBX-3 `{}` is not in the metric catalog; this value was not stored",
                    if code_text.is_empty() {
                        obx.get(3, 2)
                    } else {
                        code_text
                    }
                ),
            ));
        }
        return None;
    };
    if !value_present {
        return None;
    }
    let sub_id = obx.value(4).to_owned();
    let device = device_of_obx(obx)
        .or_else(|| Group::inherited(&context.group.device_of, &sub_id).cloned())
        .or_else(|| context.fallback_device.clone());
    let Some(device) = device else {
        issues.push(Issue::error(
            Some(obx.location(18)),
            ErrorCode::RequiredFieldMissing,
            "no device identifier in OBX-18, its containing OBX, OBR-3 or MSH-3",
        ));
        return None;
    };
    let device_id = DeviceId::new(device);
    let time = Group::inherited(&context.group.time_of, &sub_id)
        .copied()
        .unwrap_or(context.fallback_time);
    let abnormal_flags: Vec<String> = obx
        .repetitions(8)
        .iter()
        .map(|flag| component_text(flag, 1).trim().to_owned())
        .filter(|flag| !flag.is_empty())
        .collect();
    let result_status = obx.value(11).trim().to_owned();
    let device_flagged = (!result_status.is_empty()
        && !TRUSTED_STATUS.contains(&result_status.as_str()))
        || abnormal_flags
            .iter()
            .any(|flag| UNTRUSTED_FLAGS.contains(&flag.as_str()));
    let body_site = body_site_of(obx, issues);
    let unit = unit_of(obx.components(6));
    let observation = match (value_type, metric.kind) {
        ("NM", MetricKind::Numeric) => {
            let text = obx.get(5, 1);
            let Some(value) = parse_nm(text) else {
                issues.push(Issue::error(
                    Some(obx.location(5)),
                    ErrorCode::DataType,
                    "OBX-5 is not a number (NM)",
                ));
                return None;
            };
            normalize::normalize_numeric(
                context.catalog,
                &device_id,
                RawNumeric {
                    metric: MetricRef::Key(metric.key.clone()),
                    value,
                    unit,
                    device_time: time,
                    body_site,
                    device_flagged,
                },
                context.received,
            )
        }
        ("NA", MetricKind::Waveform) => {
            let mut samples = Vec::new();
            for component in obx.components(5) {
                let text = component.first().map(String::as_str).unwrap_or("");
                match parse_nm(text) {
                    Some(sample) => samples.push(sample as f32),
                    None => {
                        issues.push(Issue::error(
                            Some(obx.location(5)),
                            ErrorCode::DataType,
                            "OBX-5 holds an element that is not a number (NA)",
                        ));
                        return None;
                    }
                }
            }
            let sample_rate_hz = sample_rate_for(context.obxs, obx, issues)?;
            if let Some(unit) = &unit
                && !unit_matches(metric, unit)
            {
                issues.push(Issue::error(
                    Some(obx.location(6)),
                    ErrorCode::TableValueNotFound,
                    format!(
                        "OBX-6 unit `{unit}` is not the catalog's `{}` for this waveform",
                        metric.ucum
                    ),
                ));
                return None;
            }
            normalize::normalize_waveform(
                context.catalog,
                &device_id,
                RawWaveform {
                    metric: MetricRef::Key(metric.key.clone()),
                    start: time,
                    sample_rate_hz,
                    samples,
                    body_site,
                    device_flagged,
                },
                context.received,
            )
        }
        (other, kind) => {
            issues.push(Issue::error(
                Some(obx.location(2)),
                ErrorCode::DataType,
                format!(
                    "OBX-2 value type `{other}` does not fit `{}`, a {} (NM for numerics, NA for waveforms)",
                    metric.key,
                    match kind {
                        MetricKind::Numeric => "numeric",
                        MetricKind::Waveform => "waveform",
                    }
                ),
            ));
            return None;
        }
    };
    match observation {
        Ok(mut observation) => {
            let limits = limits_of(obx.value(7));
            // OBX-7 travels with the value: the log, the store and REST history keep it.
            observation.reference_range = limits.map(|limits| model::ReferenceRange {
                low: limits.low,
                high: limits.high,
            });
            Some(Mapped {
                observation,
                sub_id,
                position: obx.position,
                limits,
                abnormal_flags,
                result_status,
            })
        }
        Err(error) => {
            let (field, code) = match &error {
                NormalizeError::UnitMismatch { .. } => (6, ErrorCode::TableValueNotFound),
                NormalizeError::UnknownBodySite(_) => (20, ErrorCode::TableValueNotFound),
                _ => (5, ErrorCode::DataType),
            };
            issues.push(Issue::error(
                Some(obx.location(field)),
                code,
                error.to_string(),
            ));
            None
        }
    }
}

fn find_metric<'c>(catalog: &'c Catalog, obx: &Segment) -> Option<&'c Metric> {
    let code = obx.get(3, 1).trim();
    let system = obx.get(3, 3).trim();
    if !code.is_empty() {
        return match system {
            "LN" | "LOINC" => catalog.by_loinc(code),
            _ => code.parse().ok().and_then(|code| catalog.by_mdc(code)),
        };
    }
    let refid = obx.get(3, 2).trim();
    if refid.is_empty() {
        return None;
    }
    catalog
        .metrics()
        .iter()
        .find(|metric| metric.mdc_refid.as_deref() == Some(refid))
}

/// OBX-6 as the string `twin::normalize` understands: an MDC unit's code (or its reference id
/// when the code is missing), a UCUM unit, else what the sender wrote.
fn unit_of(units: &[Component]) -> Option<String> {
    let code = component_text(units, 1).trim();
    let text = component_text(units, 2).trim();
    let unit = if code.is_empty() { text } else { code };
    (!unit.is_empty()).then(|| unit.to_owned())
}

fn unit_matches(metric: &Metric, unit: &str) -> bool {
    unit == metric.ucum
        || metric.mdc_unit_refid.as_deref() == Some(unit)
        || metric
            .mdc_unit_code
            .is_some_and(|code| unit == code.to_string())
}

/// NM: optional sign, digits, at most one decimal point; nothing else (no exponent, no NaN).
fn parse_nm(text: &str) -> Option<f64> {
    let text = text.trim();
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    let valid = digits.bytes().any(|b| b.is_ascii_digit())
        && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && digits.bytes().filter(|&b| b == b'.').count() <= 1;
    if !valid {
        return None;
    }
    text.trim_start_matches('+').parse().ok()
}

fn limits_of(text: &str) -> Option<Limits> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Some(high) = text.strip_prefix('<') {
        return Some(Limits {
            low: None,
            high: parse_nm(high.trim_start_matches('=')),
        });
    }
    if let Some(low) = text.strip_prefix('>') {
        return Some(Limits {
            low: parse_nm(low.trim_start_matches('=')),
            high: None,
        });
    }
    // `low - high`; the '-' between the numbers, not a sign.
    let split = text.char_indices().skip(1).find(|&(_, c)| c == '-')?;
    let (low, high) = (&text[..split.0], &text[split.0 + 1..]);
    Some(Limits {
        low: parse_nm(low),
        high: parse_nm(high),
    })
}

/// OBX-18: the EUI-64 among its identifiers, else the first identifier.
fn device_of_obx(obx: &Segment) -> Option<String> {
    let repetitions = obx.repetitions(18);
    repetitions
        .iter()
        .find_map(|ei| eui64_of_ei(ei))
        .or_else(|| {
            repetitions
                .iter()
                .map(|ei| component_text(ei, 1).trim())
                .find(|id| !id.is_empty())
                .map(str::to_owned)
        })
}

/// EI: `id^namespace^universal id^universal id type`. PCD senders write the EUI-64 either as
/// `id^EUI-64` or `…^…^id^EUI-64`.
fn eui64_of_ei(ei: &[Component]) -> Option<String> {
    if component_text(ei, 4).trim() == "EUI-64" && !component_text(ei, 3).trim().is_empty() {
        return Some(normalize_eui64(component_text(ei, 3)));
    }
    if component_text(ei, 2).trim() == "EUI-64" && !component_text(ei, 1).trim().is_empty() {
        return Some(normalize_eui64(component_text(ei, 1)));
    }
    None
}

/// HD: `namespace^universal id^universal id type`.
fn eui64_of_hd(hd: &[Component]) -> Option<String> {
    (component_text(hd, 3).trim() == "EUI-64" && !component_text(hd, 2).trim().is_empty())
        .then(|| normalize_eui64(component_text(hd, 2)))
}

/// One spelling per device, so the same monitor over MQTT and HL7 is one device:
/// lowercase hex, separators removed.
pub fn normalize_eui64(text: &str) -> String {
    text.trim()
        .chars()
        .filter(|c| !matches!(c, '-' | ':' | ' '))
        .flat_map(char::to_lowercase)
        .collect()
}

/// The sample rate of an NA observation, from the MDC_ATTR_TIME_PD_SAMP observation nearest
/// to it: one it contains (sub-id below it), else one in the same channel.
fn sample_rate_for(obxs: &[&Segment], waveform: &Segment, issues: &mut Vec<Issue>) -> Option<f64> {
    let own = canonical_sub_id(waveform.value(4));
    let channel = own
        .rsplit_once('.')
        .map(|(channel, _)| channel.to_owned())
        .unwrap_or_default();
    let periods: Vec<&Segment> = obxs
        .iter()
        .copied()
        .filter(|obx| {
            obx.get(3, 1).trim().parse::<u32>().ok() == Some(MDC_ATTR_TIME_PD_SAMP)
                || obx.get(3, 2).trim() == "MDC_ATTR_TIME_PD_SAMP"
        })
        .collect();
    let below = |obx: &&Segment| canonical_sub_id(obx.value(4)).starts_with(&format!("{own}."));
    let beside = |obx: &&Segment| {
        let sub = canonical_sub_id(obx.value(4));
        sub.rsplit_once('.').map(|(c, _)| c) == Some(channel.as_str())
    };
    let Some(period) = periods
        .iter()
        .find(|o| below(o))
        .or_else(|| periods.iter().find(|o| beside(o)))
    else {
        issues.push(Issue::error(
            Some(waveform.location(5)),
            ErrorCode::RequiredFieldMissing,
            "an NA waveform needs its sample period (MDC_ATTR_TIME_PD_SAMP, 67981) in the same channel",
        ));
        return None;
    };
    // UCUM or the MDC reference id; numeric MDC unit codes for time are not in our sources.
    let units = period.components(6);
    let named = |names: &[&str]| {
        [
            component_text(units, 1).trim(),
            component_text(units, 2).trim(),
        ]
        .iter()
        .any(|unit| names.contains(unit))
    };
    let seconds_per_unit = if named(&["s", "MDC_DIM_SEC"]) {
        1.0
    } else if named(&["ms", "MDC_DIM_MILLI_SEC"]) {
        1e-3
    } else if named(&["us", "MDC_DIM_MICRO_SEC"]) {
        1e-6
    } else {
        issues.push(Issue::error(
            Some(period.location(6)),
            ErrorCode::TableValueNotFound,
            "the sample period's unit must be s, ms or us (UCUM) or MDC_DIM_SEC, MDC_DIM_MILLI_SEC, MDC_DIM_MICRO_SEC",
        ));
        return None;
    };
    match parse_nm(period.get(5, 1)) {
        Some(value) if value > 0.0 => Some(1.0 / (value * seconds_per_unit)),
        _ => {
            issues.push(Issue::error(
                Some(period.location(5)),
                ErrorCode::DataType,
                "the sample period must be a positive number",
            ));
            None
        }
    }
}

/// OBX-20 to a body region key. HL7 table 0163 codes for the sites where devices sit on the
/// avatar, SNOMED CT is left for the record's own mapping, and our region keys are accepted as
/// they are. An unknown site is a warning: the device's placement or the catalog default
/// applies instead.
fn body_site_of(obx: &Segment, issues: &mut Vec<Issue>) -> Option<String> {
    let code = obx.get(20, 1).trim();
    if code.is_empty() {
        return None;
    }
    let region = match code {
        "LA" | "LUA" | "LD" => Some(BodyRegion::new(BodyPart::UpperArm, Some(Side::Left))),
        "RA" | "RUA" | "RD" => Some(BodyRegion::new(BodyPart::UpperArm, Some(Side::Right))),
        "LH" => Some(BodyRegion::new(BodyPart::Hand, Some(Side::Left))),
        "RH" => Some(BodyRegion::new(BodyPart::Hand, Some(Side::Right))),
        "LT" => Some(BodyRegion::new(BodyPart::Thigh, Some(Side::Left))),
        "RT" => Some(BodyRegion::new(BodyPart::Thigh, Some(Side::Right))),
        other => other.parse::<BodyRegion>().ok(),
    };
    match region {
        Some(region) => Some(region.to_string()),
        None => {
            issues.push(Issue::warning(
                Some(obx.location(20)),
                ErrorCode::TableValueNotFound,
                format!(
                    "OBX-20 body site `{code}` is not one we place; the device placement applies"
                ),
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Location;
    use model::ObservedValue;

    fn run(text: &str) -> OruResult {
        let message = Message::parse(text.replace('\n', "\r").as_bytes()).unwrap();
        map_oru(&message, Catalog::embedded(), Timestamp(5))
    }

    const HEAD: &str = "MSH|^~\\&|GW^0011223344556677^EUI-64|ICU|||20240101120000+0000||ORU^R01^ORU_R01|m1|P|2.6\n\
PID|||P42^^^H^MR~X9^^^H^PI\nPV1||I|ICU^3001^2\nOBR|1|||182777000^monitoring of patient^SNOMED-CT|||20240101115900+0000\n";

    #[test]
    fn identifiers_from_pid_and_pv1() {
        let result = run(HEAD);
        assert_eq!(
            result.patient,
            Some(PatientRef {
                id: "X9".into(),
                identifier_type: "PI".into()
            })
        );
        assert_eq!(
            result.location,
            Some(LocationRef {
                point_of_care: "ICU".into(),
                room: "3001".into(),
                bed: "2".into()
            })
        );
    }

    #[test]
    fn containment_gives_device_and_time_to_the_metrics_below() {
        let result = run(&format!(
            "{HEAD}OBX|1||69798^MDC_DEV_ECG^MDC|1.0.0.0|||||||X|||20240101115930+0000||||AA-BB-CC-DD-EE-FF-00-11^EUI-64\n\
OBX|2||69855^CHAN^MDC|1.1.1.0|||||||X\n\
OBX|3|NM|147842^MDC_ECG_HEART_RATE^MDC|1.1.1.147842|72|264864^MDC_DIM_BEAT_PER_MIN^MDC|50-120||||R\n\
OBX|4|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|2.1.1.1|97|262688^MDC_DIM_PERCENT^MDC|||||R|||20240101115955+0000||||0011^EUI-64\n"
        ));
        assert!(result.issues.is_empty(), "{:?}", result.issues);
        let hr = &result.mapped[0];
        assert_eq!(hr.observation.metric, "heart_rate");
        assert_eq!(hr.observation.device_id.as_str(), "aabbccddeeff0011");
        assert_eq!(
            hr.observation.device_time,
            parse_dtm("20240101115930+0000").unwrap()
        );
        assert_eq!(
            hr.limits,
            Some(Limits {
                low: Some(50.0),
                high: Some(120.0)
            })
        );
        let spo2 = &result.mapped[1];
        assert_eq!(spo2.observation.device_id.as_str(), "0011");
        // MDS 2 has no header: the time is the row's own, the device its own OBX-18.
        assert_eq!(spo2.observation.value, ObservedValue::Numeric(97.0));
    }

    #[test]
    fn without_obx_18_the_device_is_obr_3_then_msh_3() {
        let result = run(&format!(
            "{HEAD}OBX|1|NM|147842^MDC_ECG_HEART_RATE^MDC|1.1.1.1|60|/min^/min^UCUM|||||R\n"
        ));
        assert_eq!(
            result.mapped[0].observation.device_id.as_str(),
            "0011223344556677"
        );
        assert_eq!(
            result.mapped[0].observation.device_time,
            parse_dtm("20240101115900+0000").unwrap()
        );
    }

    #[test]
    fn units_convert_and_a_wrong_unit_refuses_the_message() {
        let ok = run(&format!(
            "{HEAD}OBX|1|NM|150364^MDC_TEMP_BODY^MDC|1.1.1.1|98.6|[degF]^[degF]^UCUM|||||R\n"
        ));
        let ObservedValue::Numeric(value) = ok.mapped[0].observation.value else {
            panic!()
        };
        assert!((value - 37.0).abs() < 1e-9);
        let bad = run(&format!(
            "{HEAD}OBX|1|NM|150456^SPO2^MDC|1.1.1.1|97|kPa^kPa^UCUM|||||R\n"
        ));
        assert!(bad.has_errors());
        assert_eq!(bad.issues[0].location.as_ref().unwrap().field, 6);
    }

    #[test]
    fn flags_and_status_mark_values_without_dropping_them() {
        let result = run(&format!(
            "{HEAD}OBX|1|NM|150456^SPO2^MDC|1.1.1.1|97|%^%^UCUM||QUES|||R\n\
OBX|2|NM|147842^HR^MDC|1.1.1.2|80|/min^/min^UCUM|||||X\n\
OBX|3|NM|149530^PR^MDC|1.1.1.3|81|/min^/min^UCUM||H|||F\n"
        ));
        let flagged: Vec<bool> = result
            .mapped
            .iter()
            .map(|m| m.observation.quality.device_flagged)
            .collect();
        assert_eq!(flagged, [true, true, false]);
        assert_eq!(result.mapped[2].abnormal_flags, ["H"]);
    }

    #[test]
    fn waveforms_take_their_rate_from_the_sample_period() {
        let result = run(&format!(
            "{HEAD}OBX|1|NA|131330^MDC_ECG_ELEC_POTL_II^MDC|1.1.1.1|0.1^0.2^-0.3^0.4|266418^MDC_DIM_MILLI_VOLT^MDC|||||R\n\
OBX|2|NM|67981^MDC_ATTR_TIME_PD_SAMP^MDC|1.1.1.1.1|4|ms^ms^UCUM|||||R\n"
        ));
        assert!(result.issues.is_empty(), "{:?}", result.issues);
        let ObservedValue::Waveform(chunk) = &result.mapped[0].observation.value else {
            panic!()
        };
        assert_eq!(chunk.sample_rate_hz, 250.0);
        assert_eq!(chunk.samples, vec![0.1, 0.2, -0.3, 0.4]);
        let missing = run(&format!(
            "{HEAD}OBX|1|NA|131330^ECG^MDC|1.1.1.1|0.1^0.2|mV^mV^UCUM|||||R\n"
        ));
        assert!(missing.has_errors());
    }

    #[test]
    fn body_sites_and_unknown_codes() {
        let result = run(&format!(
            "{HEAD}OBX|1|NM|150021^NIBP_SYS^MDC|1.1.1.1|120|266016^MDC_DIM_MMHG^MDC|||||R|||||||||RA^Right arm\n\
OBX|2|NM|999999^MDC_UNKNOWN^MDC|1.1.1.2|5|1^1^UCUM|||||R\n\
OBX|3|NM|^MDC_PRESS_BLD_NONINV_DIA^MDC|1.1.1.3|80|266016^MDC_DIM_MMHG^MDC|||||R|||||||||XYZ^Elsewhere\n"
        ));
        assert_eq!(result.mapped.len(), 2);
        assert_eq!(
            result.mapped[0].observation.body_site.unwrap().to_string(),
            "upper_arm_right"
        );
        assert_eq!(result.mapped[1].observation.metric, "nibp_diastolic");
        assert!(!result.has_errors());
        let warnings: Vec<usize> = result
            .issues
            .iter()
            .map(|i| i.location.as_ref().unwrap().field)
            .collect();
        assert_eq!(warnings, [3, 20]);
    }

    #[test]
    fn bad_values_are_errors_with_their_place() {
        let result = run(&format!(
            "{HEAD}OBX|1|NM|150456^SPO2^MDC|1.1.1.1|9x7|%^%^UCUM|||||R\n"
        ));
        let issue = &result.issues[0];
        assert_eq!(issue.code, ErrorCode::DataType);
        assert_eq!(issue.location, Some(Location::field("OBX", 5, 5)));
        let no_obr = run(
            "MSH|^~\\&|A||||20240101||ORU^R01|1|P|2.6\nOBX|1|NM|150456^SPO2^MDC|1|97|%|||||R\n",
        );
        assert!(no_obr.has_errors());
    }

    #[test]
    fn limits() {
        assert_eq!(
            limits_of("75 - 90"),
            Some(Limits {
                low: Some(75.0),
                high: Some(90.0)
            })
        );
        assert_eq!(
            limits_of("<120"),
            Some(Limits {
                low: None,
                high: Some(120.0)
            })
        );
        assert_eq!(
            limits_of("-5-5"),
            Some(Limits {
                low: Some(-5.0),
                high: Some(5.0)
            })
        );
        assert_eq!(parse_nm("+1.5"), Some(1.5));
        for bad in ["", "1e5", "NaN", "inf", "1.2.3", "-"] {
            assert_eq!(parse_nm(bad), None, "{bad}");
        }
    }
}
