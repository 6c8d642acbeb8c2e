//! Property tests (proptest, stable Rust) for the device payload parsers: whatever bytes a
//! device or an attacker sends, parsing returns observations or an error, never a panic. Inputs
//! are arbitrary bytes, valid payloads with random byte edits, and JSON built from the
//! parsers' own vocabulary (so the search reaches deep into both formats).

use model::{Catalog, DeviceId, Timestamp};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::{payload, senml, source};

const VALID_JSON: &str = r#"{"time": 1764045600123, "numerics": [{"metric": "heart_rate", "value": 72}, {"metric": "spo2", "value": 97, "body_site": "finger_left", "time": "2025-11-25T04:40:00.5+01:00", "flags": ["artefact"]}], "waveforms": [{"metric": "ecg_ii", "start": 1764045599123, "rate_hz": 250, "samples": [0.01, 0.02]}], "battery": 80}"#;
const VALID_SENML: &str = r#"[{"bn": "urn:dev:mac:dev-1:", "bt": 1764045600, "bu": "beat/min", "bver": 10, "n": "heart_rate", "v": 72}, {"n": "body_temperature", "u": "K", "v": 310.2, "t": -2}, {"bn": "", "n": "room_co2", "u": "ppm", "bv": 400, "v": 12}]"#;

fn parse_both(bytes: &[u8]) {
    let catalog = Catalog::embedded();
    let device = DeviceId::new("dev-1");
    let _ = payload::parse(catalog, &device, bytes, Timestamp(1_764_045_600_000));
    let _ = senml::parse(catalog, &device, bytes, Timestamp(1_764_045_600_000));
    let _ = source::payload_format_for_fuzz(None, bytes);
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = payload::parse_rfc3339(text);
    }
}

/// A valid payload with `edits` applied: (position, kind, byte), kind 0 replace, 1 insert, 2 delete.
fn mutate(valid: &str, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    let mut bytes = valid.as_bytes().to_vec();
    for &(position, kind, byte) in edits {
        if bytes.is_empty() {
            bytes.push(byte);
            continue;
        }
        let at = position % bytes.len();
        match kind % 3 {
            0 => bytes[at] = byte,
            1 => bytes.insert(at, byte),
            _ => {
                bytes.remove(at);
            }
        }
    }
    bytes
}

/// JSON values whose keys and strings come from both formats' vocabularies.
fn vocabulary_json() -> impl Strategy<Value = Value> {
    let key = prop::sample::select(vec![
        "time",
        "numerics",
        "waveforms",
        "battery",
        "metric",
        "value",
        "unit",
        "body_site",
        "flags",
        "start",
        "rate_hz",
        "samples",
        "bn",
        "bt",
        "bu",
        "bv",
        "bs",
        "bver",
        "n",
        "u",
        "v",
        "vs",
        "vb",
        "vd",
        "s",
        "t",
        "ut",
        "x_",
    ]);
    let text = prop::sample::select(vec![
        "heart_rate",
        "spo2",
        "ecg_ii",
        "battery",
        "mdc:150456",
        "loinc:59408-5",
        "mdc:x",
        "urn:dev:mac:dev-1:heart_rate",
        "urn:dev:mac:dev-2:",
        "urn:dev:",
        "urn:dev:a:b",
        "beat/min",
        "%",
        "K",
        "Pa",
        "Cel",
        "mm[Hg]",
        "artefact",
        "finger_left",
        "",
        "2025-11-25T04:40:00Z",
        "2025-11-25T04:40:00.123+0é:0",
        "2025-13-45T99:99:99Z",
        "é",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|x| json!(x)),
        prop::sample::select(vec![0.0, -1.0, 1e300, -1e300, 268_435_456.0, 5e-324])
            .prop_map(|x| json!(x)),
        text.prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..8).prop_map(|map| Value::Object(
                map.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
            )),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        parse_both(&bytes);
    }

    #[test]
    fn mutated_valid_payloads_never_panic(
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..12),
    ) {
        parse_both(&mutate(VALID_JSON, &edits));
        parse_both(&mutate(VALID_SENML, &edits));
    }

    #[test]
    fn vocabulary_json_never_panics(value in vocabulary_json()) {
        parse_both(value.to_string().as_bytes());
        // The same records inside a SenML pack.
        parse_both(Value::Array(vec![value]).to_string().as_bytes());
    }

    #[test]
    fn arbitrary_strings_as_times_never_panic(text in "\\PC{0,40}", prefix in "[0-9T:.+-]{0,26}") {
        let _ = payload::parse_rfc3339(&text);
        let _ = payload::parse_rfc3339(&format!("{prefix}{text}"));
        let _ = payload::parse_rfc3339(&format!("2025-11-25T04:40:00{text}"));
    }
}

#[test]
fn the_seeds_are_valid() {
    let catalog = Catalog::embedded();
    let device = DeviceId::new("dev-1");
    assert!(payload::parse(catalog, &device, VALID_JSON.as_bytes(), Timestamp(1)).is_ok());
    assert_eq!(
        senml::parse(catalog, &device, VALID_SENML.as_bytes(), Timestamp(1))
            .unwrap()
            .len(),
        3
    );
}
