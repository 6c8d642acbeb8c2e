//! Property tests of the Observation mapper (stable proptest, no nightly): arbitrary JSON and
//! mutations of a valid Observation are answered with a mapping or an Issue, never a panic, and
//! every refusal carries an HTTP status FHIR allows for it and a FHIRPath rooted at Observation.

use model::{Catalog, DeviceId, Timestamp};
use proptest::prelude::*;
use serde_json::{Value, json};

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[ -~]{0,12}".prop_map(Value::from),
        prop::sample::select(vec![
            "Observation",
            "final",
            "http://loinc.org",
            "59408-5",
            "85354-9",
            "8480-6",
            "urn:iso:std:iso:11073:10101",
            "131330",
            "http://unitsofmeasure.org",
            "%",
            "mV",
            "Patient/p1",
            "Device/d1",
            "2025-11-25T04:40:00Z",
            "0 1 2 E L U",
            "7569003",
            "7771000",
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "resourceType",
                    "status",
                    "code",
                    "coding",
                    "system",
                    "valueQuantity",
                    "valueSampledData",
                    "value",
                    "unit",
                    "origin",
                    "period",
                    "factor",
                    "data",
                    "dimensions",
                    "component",
                    "bodySite",
                    "device",
                    "subject",
                    "reference",
                    "identifier",
                    "effectiveDateTime",
                    "effectivePeriod",
                    "start",
                    "valueString",
                    "lowerLimit",
                    "upperLimit",
                    "dataAbsentReason",
                ])
                .prop_map(str::to_owned),
                inner,
                0..6
            )
            .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn valid() -> Value {
    json!({
        "resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
        "effectiveDateTime": "2025-11-25T04:40:00Z",
        "subject": {"reference": "Patient/p1"},
        "device": {"reference": "Device/d1"},
        "bodySite": {"coding": [{"system": "http://snomed.info/sct", "code": "40983000"},
                                {"system": "http://snomed.info/sct", "code": "7771000"}]},
        "component": [
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
             "valueQuantity": {"value": 120, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
            {"code": {"coding": [{"system": "urn:iso:std:iso:11073:10101", "code": "131330"}]},
             "valueSampledData": {"origin": {"value": 0, "code": "mV"}, "period": 4, "dimensions": 1, "data": "1 2 3"}}
        ]
    })
}

/// Every path to a value inside `value`, so a mutation can replace any one of them.
fn paths(value: &Value, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(prefix.clone());
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let mut path = prefix.clone();
                path.push(key.clone());
                paths(child, path, out);
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                let mut path = prefix.clone();
                path.push(index.to_string());
                paths(child, path, out);
            }
        }
        _ => {}
    }
}

fn replace(value: &mut Value, path: &[String], with: Value) {
    match path.split_first() {
        None => *value = with,
        Some((head, rest)) => {
            let child = match value {
                Value::Object(map) => map.get_mut(head),
                Value::Array(items) => head.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
                _ => None,
            };
            if let Some(child) = child {
                replace(child, rest, with);
            }
        }
    }
}

fn check(json: Value) -> Result<(), TestCaseError> {
    let result = fhir::observation::parse(json).and_then(|parsed| {
        let _ = fhir::observation::device_reference(&parsed);
        let _ = fhir::observation::subject(&parsed);
        fhir::observation::to_core(
            Catalog::embedded(),
            &parsed,
            &DeviceId::new("d1"),
            Timestamp(0),
        )
    });
    match result {
        Ok(observations) => prop_assert!(!observations.is_empty()),
        Err(issue) => {
            prop_assert!(matches!(issue.status, 400 | 422), "status {}", issue.status);
            if let Some(expression) = &issue.expression {
                prop_assert!(expression.starts_with("Observation"), "{expression}");
            }
            prop_assert!(!issue.diagnostics.is_empty());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_json_never_panics(json in arbitrary_json()) {
        check(json)?;
    }

    #[test]
    fn mutated_observations_never_panic(
        pick in any::<prop::sample::Index>(),
        with in arbitrary_json(),
        resource_type in any::<bool>(),
    ) {
        let mut json = valid();
        let mut all = Vec::new();
        paths(&json, Vec::new(), &mut all);
        let path = pick.get(&all).clone();
        replace(&mut json, &path, with);
        if resource_type && let Some(object) = json.as_object_mut() {
            object.insert("resourceType".into(), json!("Observation"));
        }
        check(json)?;
    }
}

#[test]
fn the_unmutated_observation_maps() {
    let parsed = fhir::observation::parse(valid()).unwrap();
    let core = fhir::observation::to_core(
        Catalog::embedded(),
        &parsed,
        &DeviceId::new("d1"),
        Timestamp(0),
    )
    .unwrap();
    assert_eq!(core.len(), 2);
    assert_eq!(core[0].body_site.unwrap().to_string(), "upper_arm_left");
}
