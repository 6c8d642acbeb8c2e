//! The clinical commands through the real binary: the shipped NEWS2 rules suite passes under
//! `metaward test-rules`, a deliberately wrong expectation fails with a clear difference, and
//! `metaward score` reads JSON and prints the result.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn metaward(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_metaward"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run metaward");
    let mut pipe = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        pipe.write_all(text.as_bytes()).unwrap();
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn shipped_suite() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../rules/news2")
}

fn shipped_alarm_suite() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../rules/alarms")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_shipped_news2_suite_passes() {
    let suite = shipped_suite();
    let files = std::fs::read_dir(&suite).unwrap().count();
    assert!(files >= 15, "the suite has {files} files");
    let output = metaward(&["test-rules", suite.to_str().unwrap()], None);
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "suite failed:\n{stdout}\n{}",
        text(&output.stderr)
    );
    assert!(stdout.contains(", 0 not met"), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
}

#[test]
fn the_shipped_alarm_suite_passes() {
    let suite = shipped_alarm_suite();
    let output = metaward(&["test-rules", suite.to_str().unwrap()], None);
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "suite failed:\n{stdout}\n{}",
        text(&output.stderr)
    );
    for kind in [
        "physiological",
        "score",
        "technical",
        "environmental",
        "lifecycle",
    ] {
        assert!(
            stdout.contains(&format!(
                "ok    {}",
                suite.join(format!("{kind}.toml")).display()
            )),
            "{kind}: {stdout}"
        );
    }
}

#[test]
fn a_wrong_alarm_expectation_fails_with_what_was_active() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wrong_alarm.toml");
    std::fs::write(
        &file,
        "description = \"the monitor goes offline; this file wrongly expects no alarm\"\n\
         [[step]]\nminute = 0\ndevices_offline = [\"monitor\"]\nexpect = { alarms = [] }\n",
    )
    .unwrap();
    let output = metaward(&["test-rules", file.to_str().unwrap()], None);
    let stdout = text(&output.stdout);
    assert!(!output.status.success(), "{stdout}");
    assert!(stdout.contains("technical:device_offline"), "{stdout}");
}

const WRONG: &str = r#"
description = "pulse 131 scores 3; this file wrongly expects 2"

[[step]]
minute = 0
vitals = { respiration_rate = 16, spo2 = 97, inhaled_oxygen_flow = 0, nibp_systolic = 125, heart_rate = 72, consciousness_acvpu = "A", body_temperature = 36.8 }
expect = { total = 0, band = "zero", complete = true }

[[step]]
minute = 1
vitals = { heart_rate = 131 }
expect = { total = 2, band = "low", sub_scores = { pulse = 2 } }
"#;

#[test]
fn a_wrong_expectation_fails_with_the_difference() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wrong.toml");
    std::fs::write(&path, WRONG).unwrap();
    let output = metaward(&["test-rules", path.to_str().unwrap()], None);
    let stdout = text(&output.stdout);
    assert!(
        !output.status.success(),
        "a wrong expectation passed:\n{stdout}"
    );
    assert!(stdout.contains("FAIL"), "{stdout}");
    assert!(stdout.contains("3 of 6 expectations not met"), "{stdout}");
    assert!(
        stdout.contains("step 2 (minute 1): total: expected 2, got 3"),
        "{stdout}"
    );
    assert!(
        stdout.contains("band: expected low, got low-medium"),
        "{stdout}"
    );
    assert!(
        stdout.contains("pulse sub-score: expected 2, got 3 (value 131, charted 131)"),
        "{stdout}"
    );
    assert!(text(&output.stderr).contains("3 rules expectations not met"));
}

#[test]
fn malformed_rules_files_are_refused_not_passed() {
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in [
        // An expectation this version does not know.
        (
            "unknown.toml",
            "description = \"x\"\n[[step]]\nminute = 0\nvitals = { heart_rate = 72 }\nexpect = { trend = \"up\" }\n",
        ),
        // An alarm written in a shape that is not an alarm expectation.
        (
            "alarm.toml",
            "description = \"x\"\n[[step]]\nminute = 0\nvitals = { heart_rate = 72 }\nexpect = { alarms = [\"pulse-high\"] }\n",
        ),
        // An alarm priority that does not exist.
        (
            "priority.toml",
            "description = \"x\"\n[[step]]\nminute = 0\nvitals = { heart_rate = 72 }\nexpect = { alarms = [{ alarm = \"physiological:heart_rate\", priority = \"urgent\" }] }\n",
        ),
        // Nothing expected at all.
        (
            "empty.toml",
            "description = \"x\"\n[[step]]\nminute = 0\nvitals = { heart_rate = 72 }\n",
        ),
        // Time going backwards.
        (
            "backwards.toml",
            "description = \"x\"\n[[step]]\nminute = 5\nexpect = { total = 0 }\n[[step]]\nminute = 1\nexpect = { total = 0 }\n",
        ),
        // A metric that does not feed NEWS2.
        (
            "metric.toml",
            "description = \"x\"\n[[step]]\nminute = 0\nvitals = { room_co2 = 400 }\nexpect = { total = 0 }\n",
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        let output = metaward(&["test-rules", path.to_str().unwrap()], None);
        assert!(!output.status.success(), "{name} was accepted");
        assert!(
            text(&output.stderr).contains(name),
            "{name}: {}",
            text(&output.stderr)
        );
    }
}

#[test]
fn score_reads_json_and_prints_the_breakdown() {
    let request = r#"{
        "now": "2026-01-01T08:00:00Z",
        "vitals": [
            {"metric": "respiration_rate", "value": 22, "time": "2026-01-01T07:58:00Z"},
            {"metric": "spo2", "value": 95, "time": "2026-01-01T07:59:00Z"},
            {"metric": "spo2", "value": 60, "time": "2026-01-01T07:59:30Z", "artefact": true},
            {"metric": "inhaled_oxygen_flow", "value": 2, "time": "2026-01-01T07:00:00Z"},
            {"metric": "nibp_systolic", "value": 105, "time": "2026-01-01T07:45:00Z"},
            {"metric": "heart_rate", "value": 90.4},
            {"metric": "consciousness_acvpu", "value": "A", "time": "2026-01-01T07:00:00Z"},
            {"metric": "body_temperature", "value": 38.05, "time": "2026-01-01T02:00:00Z"}
        ],
        "context": {"conditions": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "J96.12"}]}
    }"#;
    let output = metaward(&["score", "--json"], Some(request));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(result["total"], 7);
    assert_eq!(result["complete"], false);
    assert_eq!(result["band"], "high");
    assert_eq!(result["scale"], 2);
    assert_eq!(result["scale_reason"], "hypercapnic-diagnosis");
    let parameters = result["parameters"].as_array().unwrap();
    let by_key = |key: &str| {
        parameters
            .iter()
            .find(|p| p["parameter"] == key)
            .unwrap_or_else(|| panic!("no {key}"))
            .clone()
    };
    // Scale 2, 95% on oxygen: 2; the artefact of 60% is not used.
    assert_eq!(by_key("spo2")["sub_score"], 2);
    assert_eq!(by_key("spo2")["value"], 95.0);
    assert_eq!(by_key("pulse")["charted"], 90.0);
    assert_eq!(by_key("pulse")["time"], "2026-01-01T08:00:00Z");
    assert_eq!(by_key("temperature")["status"], "stale");
    assert_eq!(by_key("temperature")["window_minutes"], 240.0);

    let output = metaward(&["score"], Some(request));
    let stdout = text(&output.stdout);
    assert!(
        stdout.starts_with("NEWS2 at least 7 at 2026-01-01T08:00:00Z: High risk"),
        "{stdout}"
    );
    assert!(
        stdout.contains("INCOMPLETE (not scored: temperature)"),
        "{stdout}"
    );

    let output = metaward(
        &["score"],
        Some(r#"{"vitals": [{"metric": "pulse", "value": "fast"}]}"#),
    );
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("needs a number"),
        "{}",
        text(&output.stderr)
    );
}
