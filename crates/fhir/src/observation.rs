//! A device Observation (FHIR vital-signs profile, Point-of-Care Device IG) to core
//! observations: the metric through the catalog (LOINC or MDC coding), the value through
//! `twin::normalize` (UCUM or MDC unit converted to the catalog's), components (a blood
//! pressure panel's systolic and diastolic), `SampledData` waveforms, and `bodySite`.
//!
//! Every refusal is an [`Issue`] naming the element by its FHIRPath, so a device integrator can
//! fix the sender from the answer alone.

use model::{AssociationTarget, Catalog, DeviceId, Metric, Timestamp};
use serde_json::Value;
use twin::normalize::{self, MetricRef, NormalizeError, RawNumeric, RawWaveform};

use crate::body_site::{self, BodySiteError};
use crate::issue::{self, Issue, IssueCode};
use crate::system;
use crate::types::{
    CodeableConcept, Observation, ObservationReferenceRange, Quantity, Reference, SampledData,
};

/// Statuses whose value can be recorded. `entered-in-error` and `cancelled` retract or deny a
/// value, which the device log cannot express; `registered` has no value yet.
const RECORDABLE_STATUSES: &[&str] = &["final", "amended", "corrected", "preliminary"];

/// The value types metaward reads; any other `value[x]` is refused, not ignored.
const SUPPORTED_VALUES: &[&str] = &["valueQuantity", "valueSampledData"];

/// How an Observation names the device that measured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceReference {
    /// `Device/{id}`: the device's logical id is its metaward device id.
    Id(DeviceId),
    /// A logical reference by identifier (an EUI-64 in the PoCD IG), resolved by the registry.
    Identifier { system: String, value: String },
}

/// Parses JSON as an Observation, with the FHIRPath of any structural problem.
pub fn parse(json: Value) -> Result<Observation, Issue> {
    let Value::Object(object) = &json else {
        return Err(Issue::new(
            400,
            IssueCode::Invalid,
            "structure",
            None,
            "an Observation must be a JSON object",
        ));
    };
    match object.get("resourceType").and_then(Value::as_str) {
        Some("Observation") => {}
        Some(other) => {
            return Err(Issue::new(
                400,
                IssueCode::Invalid,
                "resource_type",
                Some("Observation.resourceType"),
                format!("expected resourceType Observation, got {other}"),
            ));
        }
        None => {
            return Err(Issue::new(
                400,
                IssueCode::Invalid,
                "resource_type",
                Some("Observation.resourceType"),
                "resourceType is required and must be \"Observation\"",
            ));
        }
    }
    unsupported_values(object, "Observation")?;
    if let Some(Value::Array(components)) = object.get("component") {
        for (index, component) in components.iter().enumerate() {
            if let Value::Object(component) = component {
                unsupported_values(component, &format!("Observation.component[{index}]"))?;
            }
        }
    }
    serde_path_to_error::deserialize(json).map_err(|error| issue::from_serde("Observation", error))
}

fn unsupported_values(object: &serde_json::Map<String, Value>, at: &str) -> Result<(), Issue> {
    for key in object.keys() {
        let is_value =
            key.starts_with("value") && key.len() > 5 && key.as_bytes()[5].is_ascii_uppercase();
        if is_value && !SUPPORTED_VALUES.contains(&key.as_str()) {
            return Err(Issue::unprocessable(
                IssueCode::NotSupported,
                "value_type",
                &format!("{at}.{key}"),
                format!(
                    "{key} is not supported for device observations; use valueQuantity or valueSampledData"
                ),
            ));
        }
    }
    Ok(())
}

/// The device that measured. Required: a device observation without its device cannot be
/// placed in the registry, attributed by association, or traced back by a clinical engineer.
pub fn device_reference(observation: &Observation) -> Result<DeviceReference, Issue> {
    let at = "Observation.device";
    let Some(device) = &observation.device else {
        return Err(Issue::unprocessable(
            IssueCode::Required,
            "device_required",
            at,
            "Observation.device is required for device observations: a reference Device/{id} or an identifier (EUI-64)",
        ));
    };
    if let Some(reference) = &device.reference {
        let id = reference.strip_prefix("Device/").filter(|id| valid_id(id));
        return match id {
            Some(id) => Ok(DeviceReference::Id(DeviceId::new(id))),
            None => Err(Issue::unprocessable(
                IssueCode::Value,
                "reference",
                "Observation.device.reference",
                format!("expected a relative reference Device/{{id}}, got `{reference}`"),
            )),
        };
    }
    match &device.identifier {
        Some(identifier) => match (&identifier.system, &identifier.value) {
            (Some(system), Some(value)) if !value.trim().is_empty() => {
                Ok(DeviceReference::Identifier {
                    system: system.clone(),
                    value: value.clone(),
                })
            }
            _ => Err(Issue::unprocessable(
                IssueCode::Required,
                "reference",
                "Observation.device.identifier",
                "a device identifier needs both system and value",
            )),
        },
        None => Err(Issue::unprocessable(
            IssueCode::Required,
            "reference",
            at,
            "Observation.device needs a reference or an identifier",
        )),
    }
}

/// A FHIR id: 1 to 64 of letters, digits, `-` and `.`.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'))
}

/// Whom the Observation is about: `Patient/{id}` names the patient; `Location/{id}` a room
/// (environmental sensors); a `Device` subject or none leaves it to the device's association.
pub fn subject(observation: &Observation) -> Result<Option<AssociationTarget>, Issue> {
    let Some(Reference {
        reference: Some(reference),
        ..
    }) = &observation.subject
    else {
        if observation.subject.is_some() {
            return Err(Issue::unprocessable(
                IssueCode::NotSupported,
                "reference",
                "Observation.subject",
                "Observation.subject must be a literal reference such as Patient/{id}",
            ));
        }
        return Ok(None);
    };
    let at = "Observation.subject.reference";
    let Some((kind, id)) = reference.split_once('/') else {
        return Err(Issue::unprocessable(
            IssueCode::Value,
            "reference",
            at,
            format!("expected a relative reference Patient/{{id}}, got `{reference}`"),
        ));
    };
    if !valid_id(id) {
        return Err(Issue::unprocessable(
            IssueCode::Value,
            "reference",
            at,
            format!("`{reference}` is not a relative reference with a valid id"),
        ));
    }
    match kind {
        "Patient" => Ok(Some(AssociationTarget::Patient(id.into()))),
        "Location" => Ok(Some(AssociationTarget::Room(id.into()))),
        "Device" => Ok(None),
        _ => Err(Issue::unprocessable(
            IssueCode::NotSupported,
            "reference",
            at,
            format!("subject {kind} is not supported; use Patient/{{id}} or Location/{{id}}"),
        )),
    }
}

/// The catalog metric a code names, by a LOINC or MDC coding (numeric code or reference id).
pub fn metric_of<'c>(catalog: &'c Catalog, code: &CodeableConcept) -> Option<&'c Metric> {
    code.coding.iter().find_map(|coding| {
        let value = coding.code.as_deref()?;
        if coding.is(system::LOINC) {
            catalog.by_loinc(value)
        } else if coding.is(system::MDC) {
            match value.parse::<u32>() {
                Ok(number) => catalog.by_mdc(number),
                Err(_) => catalog
                    .metrics()
                    .iter()
                    .find(|metric| metric.mdc_refid.as_deref() == Some(value)),
            }
        } else {
            None
        }
    })
}

fn codes_named(code: &CodeableConcept) -> String {
    let named: Vec<String> = code
        .coding
        .iter()
        .map(|coding| {
            format!(
                "{}|{}",
                coding.system.as_deref().unwrap_or(""),
                coding.code.as_deref().unwrap_or("")
            )
        })
        .collect();
    if named.is_empty() {
        "no coding".into()
    } else {
        named.join(", ")
    }
}

/// Maps a parsed Observation to core observations measured by `device_id`.
pub fn to_core(
    catalog: &Catalog,
    observation: &Observation,
    device_id: &DeviceId,
    received: Timestamp,
) -> Result<Vec<model::Observation>, Issue> {
    if !RECORDABLE_STATUSES.contains(&observation.status.as_str()) {
        return Err(Issue::unprocessable(
            IssueCode::NotSupported,
            "status",
            "Observation.status",
            format!(
                "status `{}` cannot be recorded; one of {}",
                observation.status,
                RECORDABLE_STATUSES.join(", ")
            ),
        ));
    }
    let device_time = effective_time(observation)?;
    let region = match &observation.body_site {
        Some(site) => Some(body_region(site)?),
        None => None,
    };
    let context = Context {
        catalog,
        device_id,
        device_time,
        received,
        body_site: region.map(|region| region.to_string()),
    };
    let mut core = Vec::new();
    let has_value =
        observation.value_quantity.is_some() || observation.value_sampled_data.is_some();
    if has_value || observation.component.is_empty() {
        let metric = metric_of(catalog, &observation.code).ok_or_else(|| {
            Issue::unprocessable(
                IssueCode::CodeInvalid,
                "unknown_code",
                "Observation.code",
                format!(
                    "no metric in the catalog for {}; see GET /api/v1/catalog for the LOINC and MDC codes accepted",
                    codes_named(&observation.code)
                ),
            )
        })?;
        if let Some(mut value) = value(
            &context,
            metric,
            observation.value_quantity.as_ref(),
            observation.value_sampled_data.as_ref(),
            "Observation",
        )? {
            value.reference_range =
                reference_range(metric, &observation.reference_range, "Observation")?;
            core.push(value);
        } else if observation.component.is_empty() {
            return Err(no_value(
                "Observation",
                observation.data_absent_reason.is_some(),
            ));
        }
    }
    for (index, component) in observation.component.iter().enumerate() {
        let at = format!("Observation.component[{index}]");
        let metric = metric_of(catalog, &component.code).ok_or_else(|| {
            Issue::unprocessable(
                IssueCode::CodeInvalid,
                "unknown_code",
                &format!("{at}.code"),
                format!(
                    "no metric in the catalog for {}; see GET /api/v1/catalog",
                    codes_named(&component.code)
                ),
            )
        })?;
        match value(
            &context,
            metric,
            component.value_quantity.as_ref(),
            component.value_sampled_data.as_ref(),
            &at,
        )? {
            Some(mut value) => {
                value.reference_range = reference_range(metric, &component.reference_range, &at)?;
                core.push(value);
            }
            // A component the device could not measure (dataAbsentReason) has nothing to keep.
            None if component.data_absent_reason.is_some() => {}
            None => return Err(no_value(&at, false)),
        }
    }
    if core.is_empty() {
        return Err(no_value("Observation", true));
    }
    Ok(core)
}

/// The first `referenceRange` with a bound, in the catalog's unit: kept with the value (as HL7
/// OBX-7 is) and served back. A bound in a unit that cannot be converted is refused, as a
/// value would be; a range given only as text or by type has no number to keep.
fn reference_range(
    metric: &Metric,
    ranges: &[ObservationReferenceRange],
    at: &str,
) -> Result<Option<model::ReferenceRange>, Issue> {
    let Some((index, range)) = ranges
        .iter()
        .enumerate()
        .find(|(_, range)| range.low.is_some() || range.high.is_some())
    else {
        return Ok(None);
    };
    let bound = |quantity: &Option<Quantity>, name: &str| -> Result<Option<f64>, Issue> {
        let Some(quantity) = quantity else {
            return Ok(None);
        };
        let at = format!("{at}.referenceRange[{index}].{name}");
        let Some(number) = quantity.value else {
            return Ok(None);
        };
        let unit = unit_of(quantity).unwrap_or(&metric.ucum);
        normalize::convert(metric, unit, number)
            .map(Some)
            .map_err(|error| normalize_issue(error, &at))
    };
    let low = bound(&range.low, "low")?;
    let high = bound(&range.high, "high")?;
    Ok((low.is_some() || high.is_some()).then_some(model::ReferenceRange { low, high }))
}

fn no_value(at: &str, absent: bool) -> Issue {
    let diagnostics = if absent {
        "the Observation carries no value to record (only dataAbsentReason)".to_owned()
    } else {
        format!("{at} has no valueQuantity or valueSampledData")
    };
    Issue::unprocessable(
        IssueCode::Required,
        "no_value",
        &format!("{at}.value"),
        diagnostics,
    )
}

struct Context<'a> {
    catalog: &'a Catalog,
    device_id: &'a DeviceId,
    device_time: Timestamp,
    received: Timestamp,
    body_site: Option<String>,
}

fn effective_time(observation: &Observation) -> Result<Timestamp, Issue> {
    let (text, at) = if let Some(text) = &observation.effective_date_time {
        (text, "Observation.effectiveDateTime")
    } else if let Some(text) = &observation.effective_instant {
        (text, "Observation.effectiveInstant")
    } else if let Some(start) = observation
        .effective_period
        .as_ref()
        .and_then(|period| period.start.as_ref())
    {
        (start, "Observation.effectivePeriod.start")
    } else {
        return Err(Issue::unprocessable(
            IssueCode::Required,
            "effective_required",
            "Observation.effective",
            "effective[x] is required: the time of the measurement (dateTime with time and zone, instant, or Period.start)",
        ));
    };
    crate::datetime::parse(text).ok_or_else(|| {
        Issue::unprocessable(
            IssueCode::Value,
            "time",
            at,
            format!("`{text}` is not a date and time with seconds and a time zone"),
        )
    })
}

fn body_region(site: &CodeableConcept) -> Result<model::BodyRegion, Issue> {
    let at = "Observation.bodySite";
    let codes = site
        .coding
        .iter()
        .filter(|coding| coding.is(system::SNOMED_CT))
        .filter_map(|coding| coding.code.as_deref());
    body_site::region_of(codes).map_err(|error| match error {
        BodySiteError::Unknown(code) => Issue::unprocessable(
            IssueCode::CodeInvalid,
            "body_site",
            at,
            if code.is_empty() {
                "bodySite needs a SNOMED CT body structure coding (system http://snomed.info/sct)".to_owned()
            } else {
                format!("SNOMED CT body structure `{code}` is not mapped to an avatar region; see docs/fhir.md")
            },
        ),
        BodySiteError::ConflictingSides => Issue::unprocessable(
            IssueCode::Value,
            "body_site",
            at,
            "bodySite names both left and right",
        ),
    })
}

fn unit_of(quantity: &Quantity) -> Option<&str> {
    match quantity.system.as_deref() {
        Some(system::UCUM) | Some(system::MDC) => {
            quantity.code.as_deref().or(quantity.unit.as_deref())
        }
        _ => quantity.code.as_deref().or(quantity.unit.as_deref()),
    }
}

fn normalize_issue(error: NormalizeError, at: &str) -> Issue {
    let diagnostics = error.to_string();
    match error {
        NormalizeError::UnitMismatch { .. } => Issue::unprocessable(
            IssueCode::CodeInvalid,
            "unit",
            &format!("{at}.code"),
            diagnostics,
        ),
        NormalizeError::UnknownMetric(_) => {
            Issue::unprocessable(IssueCode::CodeInvalid, "unknown_code", at, diagnostics)
        }
        NormalizeError::UnknownBodySite(_) => {
            Issue::unprocessable(IssueCode::CodeInvalid, "body_site", at, diagnostics)
        }
        NormalizeError::WrongKind { .. } => {
            Issue::unprocessable(IssueCode::Value, "value_type", at, diagnostics)
        }
        NormalizeError::NotFinite(_) | NormalizeError::EmptyWaveform(_) => {
            Issue::unprocessable(IssueCode::Value, "value", at, diagnostics)
        }
    }
}

fn value(
    context: &Context<'_>,
    metric: &Metric,
    quantity: Option<&Quantity>,
    sampled: Option<&SampledData>,
    at: &str,
) -> Result<Option<model::Observation>, Issue> {
    if let Some(quantity) = quantity {
        let at = format!("{at}.valueQuantity");
        let Some(number) = quantity.value else {
            return Err(Issue::unprocessable(
                IssueCode::Required,
                "no_value",
                &format!("{at}.value"),
                format!("{at}.value is required"),
            ));
        };
        if quantity.comparator.is_some() {
            return Err(Issue::unprocessable(
                IssueCode::NotSupported,
                "value",
                &format!("{at}.comparator"),
                "a device value with a comparator (< <= >= >) is not an exact measurement",
            ));
        }
        let Some(unit) = unit_of(quantity) else {
            return Err(Issue::unprocessable(
                IssueCode::Required,
                "unit",
                &format!("{at}.code"),
                format!("{at} needs a UCUM code (system http://unitsofmeasure.org)"),
            ));
        };
        let raw = RawNumeric {
            metric: MetricRef::Key(metric.key.clone()),
            value: number,
            unit: Some(unit.to_owned()),
            device_time: context.device_time,
            body_site: context.body_site.clone(),
            device_flagged: false,
        };
        return normalize::normalize_numeric(
            context.catalog,
            context.device_id,
            raw,
            context.received,
        )
        .map(Some)
        .map_err(|error| normalize_issue(error, &at));
    }
    if let Some(sampled) = sampled {
        let at = format!("{at}.valueSampledData");
        let (samples, device_flagged) = samples_of(metric, sampled, &at)?;
        let raw = RawWaveform {
            metric: MetricRef::Key(metric.key.clone()),
            start: context.device_time,
            sample_rate_hz: 1000.0 / sampled.period,
            samples,
            body_site: context.body_site.clone(),
            device_flagged,
        };
        return normalize::normalize_waveform(
            context.catalog,
            context.device_id,
            raw,
            context.received,
        )
        .map(Some)
        .map_err(|error| normalize_issue(error, &at));
    }
    Ok(None)
}

/// Decodes `SampledData.data` into values in the catalog's unit. `L` and `U` (beyond the
/// device's range) become the limit, flagged; `E` (error) is refused: there is no value to keep.
fn samples_of(metric: &Metric, sampled: &SampledData, at: &str) -> Result<(Vec<f32>, bool), Issue> {
    if sampled.dimensions != 1 {
        return Err(Issue::unprocessable(
            IssueCode::NotSupported,
            "waveform",
            &format!("{at}.dimensions"),
            format!(
                "only single-channel waveforms (dimensions 1) are accepted, got {}",
                sampled.dimensions
            ),
        ));
    }
    if !(sampled.period.is_finite() && sampled.period > 0.0) {
        return Err(Issue::unprocessable(
            IssueCode::Value,
            "waveform",
            &format!("{at}.period"),
            "period (milliseconds between samples) must be a positive number",
        ));
    }
    let Some(origin) = sampled.origin.value else {
        return Err(Issue::unprocessable(
            IssueCode::Required,
            "waveform",
            &format!("{at}.origin.value"),
            "origin.value is required",
        ));
    };
    let Some(unit) = unit_of(&sampled.origin) else {
        return Err(Issue::unprocessable(
            IssueCode::Required,
            "unit",
            &format!("{at}.origin.code"),
            "origin needs a UCUM code: the unit of the samples",
        ));
    };
    let Some(data) = sampled.data.as_deref() else {
        return Err(Issue::unprocessable(
            IssueCode::Required,
            "waveform",
            &format!("{at}.data"),
            "data is required",
        ));
    };
    let factor = sampled.factor.unwrap_or(1.0);
    let mut flagged = false;
    let mut samples = Vec::new();
    for (index, token) in data.split_ascii_whitespace().enumerate() {
        let limit = |limit: Option<f64>, name: &str| {
            limit.ok_or_else(|| {
                Issue::unprocessable(
                    IssueCode::Value,
                    "waveform",
                    &format!("{at}.data"),
                    format!("sample {index} is `{token}` but {name} is not given"),
                )
            })
        };
        let value = match token {
            "L" => {
                flagged = true;
                limit(sampled.lower_limit, "lowerLimit")?
            }
            "U" => {
                flagged = true;
                limit(sampled.upper_limit, "upperLimit")?
            }
            "E" => {
                return Err(Issue::unprocessable(
                    IssueCode::Value,
                    "waveform",
                    &format!("{at}.data"),
                    format!("sample {index} is E (error): the device sent no value to keep"),
                ));
            }
            number => {
                let x: f64 = number.parse().map_err(|_| {
                    Issue::unprocessable(
                        IssueCode::Value,
                        "waveform",
                        &format!("{at}.data"),
                        format!("sample {index} `{number}` is not a decimal, E, L or U"),
                    )
                })?;
                origin + factor * x
            }
        };
        let converted = normalize::convert(metric, unit, value)
            .map_err(|error| normalize_issue(error, &format!("{at}.origin")))?;
        samples.push(converted as f32);
    }
    Ok((samples, flagged))
}
