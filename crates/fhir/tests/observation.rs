//! The Observation mapper against the vital-signs profile's shapes: codes, units, components,
//! waveforms, body sites, references, and the FHIRPath of every refusal.

use fhir::observation::{self, DeviceReference};
use model::{AssociationTarget, Catalog, DeviceId, ObservedValue, Timestamp};
use serde_json::{Value, json};

fn spo2() -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "59408-5"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2025-11-25T04:40:00Z",
        "valueQuantity": {"value": 97, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"},
        "device": {"reference": "Device/ox-1"},
        "someFutureElement": {"ignored": true}
    })
}

fn map(json: Value) -> Result<Vec<model::Observation>, fhir::Issue> {
    let parsed = observation::parse(json)?;
    observation::to_core(
        Catalog::embedded(),
        &parsed,
        &DeviceId::new("d"),
        Timestamp(5),
    )
}

fn refusal(json: Value) -> (u16, &'static str, String) {
    let issue = map(json).expect_err("refused");
    (
        issue.status,
        issue.reason,
        issue.expression.unwrap_or_default(),
    )
}

#[test]
fn a_vital_signs_observation_maps_through_the_catalog() {
    let parsed = observation::parse(spo2()).unwrap();
    assert_eq!(
        observation::device_reference(&parsed).unwrap(),
        DeviceReference::Id(DeviceId::new("ox-1"))
    );
    assert_eq!(
        observation::subject(&parsed).unwrap(),
        Some(AssociationTarget::Patient("p1".into()))
    );
    let core = map(spo2()).unwrap();
    assert_eq!(core.len(), 1);
    assert_eq!(core[0].metric, "spo2");
    assert_eq!(core[0].value, ObservedValue::Numeric(97.0));
    assert_eq!(core[0].device_time, Timestamp(1_764_045_600_000));
    assert_eq!(core[0].received_time, Timestamp(5));
}

#[test]
fn mdc_codes_and_units_are_accepted_and_converted() {
    let mut temp = spo2();
    temp["code"] = json!({"coding": [{"system": "urn:iso:std:iso:11073:10101", "code": "150364"}]});
    temp["valueQuantity"] =
        json!({"value": 98.6, "system": "http://unitsofmeasure.org", "code": "[degF]"});
    let core = map(temp).unwrap();
    assert_eq!(core[0].metric, "body_temperature");
    let ObservedValue::Numeric(celsius) = core[0].value else {
        panic!()
    };
    assert!((celsius - 37.0).abs() < 1e-9);

    let mut by_refid = spo2();
    by_refid["code"] = json!({"coding": [{"system": "urn:iso:std:iso:11073:10101", "code": "MDC_PULS_OXIM_SAT_O2"}]});
    assert_eq!(
        map(by_refid).map(|c| c[0].metric.clone()),
        Ok("spo2".to_owned())
    );
}

#[test]
fn blood_pressure_components_become_systolic_and_diastolic() {
    let bp = json!({
        "resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
        "effectiveDateTime": "2025-11-25T04:40:00Z",
        "bodySite": {"coding": [{"system": "http://snomed.info/sct", "code": "368209003"}]},
        "device": {"reference": "Device/cuff"},
        "component": [
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
             "valueQuantity": {"value": 16, "system": "http://unitsofmeasure.org", "code": "kPa"}},
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
             "valueQuantity": {"value": 80, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8478-0"}]},
             "dataAbsentReason": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason", "code": "error"}]}}
        ]
    });
    let core = map(bp).unwrap();
    let metrics: Vec<&str> = core.iter().map(|o| o.metric.as_str()).collect();
    assert_eq!(metrics, ["nibp_systolic", "nibp_diastolic"]);
    let ObservedValue::Numeric(systolic) = core[0].value else {
        panic!()
    };
    assert!((systolic - 120.009_869).abs() < 1e-3, "{systolic}");
    assert_eq!(core[0].body_site.unwrap().to_string(), "upper_arm_right");
}

#[test]
fn sampled_data_becomes_a_waveform() {
    let ecg = json!({
        "resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "urn:iso:std:iso:11073:10101", "code": "131330"}]},
        "effectiveDateTime": "2025-11-25T04:40:00.000Z",
        "device": {"identifier": {"system": "urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680", "value": "01-23-45-67-89-AB-CD-EF"}},
        "valueSampledData": {
            "origin": {"value": -1, "system": "http://unitsofmeasure.org", "code": "mV"},
            "period": 4, "factor": 0.5, "dimensions": 1, "data": "0 2 4 U",
            "upperLimit": 3
        }
    });
    let parsed = observation::parse(ecg.clone()).unwrap();
    assert!(matches!(
        observation::device_reference(&parsed).unwrap(),
        DeviceReference::Identifier { .. }
    ));
    let core = map(ecg).unwrap();
    let ObservedValue::Waveform(chunk) = &core[0].value else {
        panic!()
    };
    assert_eq!(chunk.sample_rate_hz, 250.0);
    assert_eq!(chunk.samples, vec![-1.0, 0.0, 1.0, 3.0]);
    assert!(core[0].quality.device_flagged, "U is flagged");
}

#[test]
fn refusals_name_the_element() {
    let mut unknown = spo2();
    unknown["code"] = json!({"coding": [{"system": "http://loinc.org", "code": "0000-0"}]});
    assert_eq!(
        refusal(unknown),
        (422, "unknown_code", "Observation.code".into())
    );

    let mut unit = spo2();
    unit["valueQuantity"]["code"] = json!("mg");
    assert_eq!(
        refusal(unit),
        (422, "unit", "Observation.valueQuantity.code".into())
    );

    let mut not_a_number = spo2();
    not_a_number["valueQuantity"]["value"] = json!("high");
    assert_eq!(
        refusal(not_a_number),
        (400, "structure", "Observation.valueQuantity.value".into())
    );

    let mut no_status = spo2();
    no_status.as_object_mut().unwrap().remove("status");
    assert_eq!(
        refusal(no_status),
        (422, "required", "Observation.status".into())
    );

    let mut string_value = spo2();
    string_value
        .as_object_mut()
        .unwrap()
        .remove("valueQuantity");
    string_value["valueString"] = json!("97");
    assert_eq!(
        refusal(string_value),
        (422, "value_type", "Observation.valueString".into())
    );

    let mut site = spo2();
    site["bodySite"] = json!({"coding": [{"system": "http://snomed.info/sct", "code": "1"}]});
    assert_eq!(
        refusal(site),
        (422, "body_site", "Observation.bodySite".into())
    );

    let mut no_time = spo2();
    no_time.as_object_mut().unwrap().remove("effectiveDateTime");
    assert_eq!(
        refusal(no_time),
        (422, "effective_required", "Observation.effective".into())
    );

    let mut wrong_type = spo2();
    wrong_type["resourceType"] = json!("Patient");
    assert_eq!(refusal(wrong_type).0, 400);

    let mut retracted = spo2();
    retracted["status"] = json!("entered-in-error");
    assert_eq!(
        refusal(retracted),
        (422, "status", "Observation.status".into())
    );
}

#[test]
fn the_device_is_required_and_references_are_checked() {
    let mut no_device = spo2();
    no_device.as_object_mut().unwrap().remove("device");
    let parsed = observation::parse(no_device).unwrap();
    let issue = observation::device_reference(&parsed).unwrap_err();
    assert_eq!((issue.status, issue.reason), (422, "device_required"));

    let mut group = spo2();
    group["subject"] = json!({"reference": "Group/g1"});
    let parsed = observation::parse(group).unwrap();
    assert_eq!(observation::subject(&parsed).unwrap_err().status, 422);
}

#[test]
fn bundle_entry_expressions_are_rerooted() {
    let mut unknown = spo2();
    unknown["code"] = json!({"coding": []});
    let issue = map(unknown).unwrap_err().in_entry(3);
    assert_eq!(
        issue.expression.as_deref(),
        Some("Bundle.entry[3].resource.code")
    );
}

#[test]
fn reference_ranges_are_kept_in_the_catalog_unit_and_served_back() {
    let mut with_range = spo2();
    with_range["referenceRange"] = json!([
        {"text": "ward default"},
        {"low": {"value": 92, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}}
    ]);
    let core = map(with_range).unwrap();
    assert_eq!(
        core[0].reference_range,
        Some(model::ReferenceRange {
            low: Some(92.0),
            high: None
        })
    );
    let served = fhir::outbound::device_observation(
        Catalog::embedded(),
        "1-0",
        &core[0],
        &fhir::outbound::Subject {
            patient: Some("p1".into()),
            room: None,
        },
    )
    .unwrap();
    assert_eq!(
        served["referenceRange"],
        json!([{"low": {"value": 92.0, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}}])
    );

    // A component's range in kPa is converted with it; a unit that cannot be is refused there.
    let bp = |unit: &str| {
        json!({
            "resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
            "effectiveDateTime": "2025-11-25T04:40:00Z",
            "device": {"reference": "Device/bp-1"},
            "component": [{
                "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                "valueQuantity": {"value": 16, "system": "http://unitsofmeasure.org", "code": "kPa"},
                "referenceRange": [{"high": {"value": 18.67, "system": "http://unitsofmeasure.org", "code": unit}}]
            }]
        })
    };
    let core = map(bp("kPa")).unwrap();
    let high = core[0].reference_range.unwrap().high.unwrap();
    assert!((high - 140.0).abs() < 0.1, "{high}");
    let (status, _, expression) = refusal(bp("furlong"));
    assert_eq!(status, 422);
    assert_eq!(
        expression,
        "Observation.component[0].referenceRange[0].high.code"
    );
}
