//! Device data out as FHIR R4: one core observation (a numeric value or a waveform chunk) to
//! one Observation in the shape of the vital-signs profile and the Point-of-Care Device IG:
//! LOINC and MDC codings from the catalog, UCUM units, the device, the body site, the subject.
//! A waveform chunk is one Observation with `valueSampledData` (a chunk of a second or so, not
//! a resource per sample). No I/O; the server decides ids and where the values come from.

use model::{Catalog, MetricCategory, Observation, ObservedValue};
use serde_json::{Value, json};

use crate::{body_site, datetime, system};

/// The vital-signs profile (FHIR R4 `observation-vitalsigns`).
pub const VITAL_SIGNS_PROFILE: &str = "http://hl7.org/fhir/StructureDefinition/vitalsigns";
const CATEGORY_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

/// Who the value is about, as the log's attribution says.
#[derive(Debug, Clone, Default)]
pub struct Subject {
    pub patient: Option<String>,
    /// The room's Location, when the value is a room's (environment sensors).
    pub room: Option<String>,
}

/// The Observation for `observation`, with `id`; `None` if its metric is not in `catalog`.
pub fn device_observation(
    catalog: &Catalog,
    id: &str,
    observation: &Observation,
    subject: &Subject,
) -> Option<Value> {
    let metric = catalog.by_key(&observation.metric)?;
    let mut codings = Vec::new();
    if let Some(loinc) = &metric.loinc {
        let mut coding = json!({"system": system::LOINC, "code": loinc});
        if let Some(display) = &metric.loinc_display {
            coding["display"] = json!(display);
        }
        codings.push(coding);
    }
    if let Some(mdc) = metric.mdc_code {
        let mut coding = json!({"system": system::MDC, "code": mdc.to_string()});
        if let Some(refid) = &metric.mdc_refid {
            coding["display"] = json!(refid);
        }
        codings.push(coding);
    }
    let vital_sign = metric.category == MetricCategory::VitalSigns && metric.loinc.is_some();
    let category = match metric.category {
        MetricCategory::VitalSigns => "vital-signs",
        MetricCategory::Assessment => "exam",
        // Waveforms, device state and room sensors: measured by a device at the bedside.
        _ => "procedure",
    };
    let mut resource = json!({
        "resourceType": "Observation",
        "id": id,
        "meta": {"lastUpdated": datetime::format(observation.received_time)},
        "status": "final",
        "category": [{"coding": [{"system": CATEGORY_SYSTEM, "code": category}]}],
        "code": {"coding": codings, "text": metric.display},
        "effectiveDateTime": datetime::format(observation.device_time),
        "issued": datetime::format(observation.received_time),
        "device": {"reference": format!("Device/{}", observation.device_id)},
    });
    if vital_sign {
        resource["meta"]["profile"] = json!([VITAL_SIGNS_PROFILE]);
    }
    match (&subject.patient, &subject.room) {
        (Some(patient), _) => {
            resource["subject"] = json!({"reference": format!("Patient/{patient}")})
        }
        (None, Some(room)) => {
            resource["subject"] = json!({"reference": format!("Location/{room}")})
        }
        (None, None) => {}
    }
    let region = observation.body_site.or_else(|| metric.default_region());
    if let Some(codings) = region.and_then(body_site::codings_of) {
        resource["bodySite"] = json!({"coding": codings
            .iter()
            .map(|(code, display)| json!({"system": system::SNOMED_CT, "code": code, "display": display}))
            .collect::<Vec<_>>()});
    }
    let unit = json!({"unit": metric.ucum, "system": system::UCUM, "code": metric.ucum});
    match &observation.value {
        ObservedValue::Numeric(value) if value.is_finite() => {
            let mut quantity = unit;
            quantity["value"] = json!(value);
            resource["valueQuantity"] = quantity;
        }
        ObservedValue::Numeric(_) => {
            resource["dataAbsentReason"] = json!({"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                "code": "error"}]});
        }
        ObservedValue::Waveform(chunk) => {
            let period_ms = if chunk.sample_rate_hz > 0.0 {
                1000.0 / chunk.sample_rate_hz
            } else {
                0.0
            };
            let data: Vec<String> = chunk
                .samples
                .iter()
                .map(|sample| {
                    if sample.is_finite() {
                        format!("{sample}")
                    } else {
                        // SampledData's code for "no value" (R4 datatypes: E = error).
                        "E".to_owned()
                    }
                })
                .collect();
            let mut origin = unit;
            origin["value"] = json!(0);
            resource["valueSampledData"] = json!({
                "origin": origin,
                "period": period_ms,
                "dimensions": 1,
                "data": data.join(" "),
            });
        }
    }
    if let Some(range) = observation.reference_range {
        // The limits the device sent with the value (HL7 OBX-7, FHIR referenceRange), in the
        // value's unit.
        let bound = |value: f64| json!({"value": value, "unit": metric.ucum, "system": system::UCUM, "code": metric.ucum});
        let mut reference = json!({});
        if let Some(low) = range.low {
            reference["low"] = bound(low);
        }
        if let Some(high) = range.high {
            reference["high"] = bound(high);
        }
        resource["referenceRange"] = json!([reference]);
    }
    if observation.quality.is_artefact() {
        // Kept and served, never dropped; flagged as the device or the plausibility check said.
        resource["status"] = json!("preliminary");
        resource["note"] = json!([{"text": if observation.quality.device_flagged {
            "flagged by the device (artefact)"
        } else {
            "outside the plausible range for this metric (artefact)"
        }}]);
    }
    Some(resource)
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{DeviceId, Quality, Timestamp, WaveformChunk};

    fn observation(metric: &str, value: ObservedValue, quality: Quality) -> Observation {
        Observation {
            device_id: DeviceId::new("dev-1"),
            metric: metric.into(),
            value,
            device_time: Timestamp::from_millis(1_764_000_000_000),
            received_time: Timestamp::from_millis(1_764_000_000_250),
            body_site: None,
            quality,
            reference_range: None,
        }
    }

    fn patient() -> Subject {
        Subject {
            patient: Some("p1".into()),
            room: None,
        }
    }

    #[test]
    fn a_vital_sign_has_the_profile_both_codings_and_the_catalog_unit() {
        let catalog = Catalog::embedded();
        let spo2 = observation("spo2", ObservedValue::Numeric(96.0), Quality::GOOD);
        let resource = device_observation(catalog, "5-0", &spo2, &patient()).unwrap();
        assert_eq!(resource["meta"]["profile"][0], VITAL_SIGNS_PROFILE);
        assert_eq!(resource["code"]["coding"][0]["system"], system::LOINC);
        assert_eq!(resource["code"]["coding"][1]["system"], system::MDC);
        assert_eq!(resource["valueQuantity"]["code"], "%");
        assert_eq!(resource["subject"]["reference"], "Patient/p1");
        assert_eq!(resource["device"]["reference"], "Device/dev-1");
        assert_eq!(resource["effectiveDateTime"], "2025-11-24T16:00:00.000Z");
        assert_eq!(resource["status"], "final");
        assert!(resource["bodySite"]["coding"].is_array(), "{resource}");
    }

    #[test]
    fn artefacts_and_missing_values_say_so() {
        let catalog = Catalog::embedded();
        let flagged = Quality {
            implausible: false,
            device_flagged: true,
        };
        let artefact = observation("spo2", ObservedValue::Numeric(10.0), flagged);
        let resource = device_observation(catalog, "5-1", &artefact, &patient()).unwrap();
        assert_eq!(resource["status"], "preliminary");
        assert!(
            resource["note"][0]["text"]
                .as_str()
                .unwrap()
                .contains("device")
        );
        let missing = observation("spo2", ObservedValue::Numeric(f64::NAN), Quality::GOOD);
        let resource = device_observation(catalog, "5-2", &missing, &patient()).unwrap();
        assert!(resource.get("valueQuantity").is_none());
        assert_eq!(resource["dataAbsentReason"]["coding"][0]["code"], "error");
    }

    #[test]
    fn a_waveform_chunk_is_one_sampled_data() {
        let catalog = Catalog::embedded();
        let chunk = WaveformChunk {
            sample_rate_hz: 250.0,
            samples: vec![0.0, 0.5, -0.25],
        };
        let ecg = observation("ecg_ii", ObservedValue::Waveform(chunk), Quality::GOOD);
        let resource = device_observation(catalog, "5-3", &ecg, &patient()).unwrap();
        let sampled = &resource["valueSampledData"];
        assert_eq!(sampled["period"], 4.0);
        assert_eq!(sampled["data"], "0 0.5 -0.25");
        assert_eq!(sampled["origin"]["code"], "mV");
        assert!(
            resource["meta"].get("profile").is_none(),
            "not a vital sign"
        );
    }

    #[test]
    fn a_room_value_is_about_its_location_and_unknown_metrics_are_none() {
        let catalog = Catalog::embedded();
        let room = Subject {
            patient: None,
            room: Some("r1".into()),
        };
        let temperature = observation(
            "room_temperature",
            ObservedValue::Numeric(21.5),
            Quality::GOOD,
        );
        let resource = device_observation(catalog, "5-4", &temperature, &room).unwrap();
        assert_eq!(resource["subject"]["reference"], "Location/r1");
        let unknown = observation("no_such_metric", ObservedValue::Numeric(1.0), Quality::GOOD);
        assert!(device_observation(catalog, "5-5", &unknown, &room).is_none());
    }
}
