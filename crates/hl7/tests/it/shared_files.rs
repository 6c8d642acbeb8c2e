//! The shared third-party PCD-01 files (`shared/data/hl7-pcd01`, beside the checkout) mapped to
//! observations, each checked against a snapshot of what it must give, field by field.
//! Refresh the snapshots with `UPDATE_EXPECT=1 cargo test -p hl7`.

use std::fmt::Write;
use std::path::PathBuf;

use expect_test::expect_file;
use hl7::Message;
use hl7::pcd01::map_oru;
use model::{Catalog, ObservedValue, Timestamp};

fn shared_file(name: &str) -> Vec<u8> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let path = manifest
        .ancestors()
        .skip(2)
        .map(|dir| dir.join("shared/data/hl7-pcd01").join(name))
        .find(|path| path.exists())
        .unwrap_or_else(|| panic!("no shared/data/hl7-pcd01/{name} beside the checkout"));
    std::fs::read(path).unwrap()
}

fn render(name: &str) -> String {
    let message = Message::parse(&shared_file(name)).expect("parses");
    let result = map_oru(&message, Catalog::embedded(), Timestamp(0));
    let mut out = String::new();
    let (code, trigger, structure) = message.message_type();
    writeln!(
        out,
        "type {code}^{trigger}^{structure} charset {:?}",
        message.charset
    )
    .unwrap();
    writeln!(out, "patient {:?}", result.patient).unwrap();
    writeln!(out, "location {:?}", result.location).unwrap();
    for mapped in &result.mapped {
        let o = &mapped.observation;
        let value = match &o.value {
            ObservedValue::Numeric(v) => format!("{v}"),
            ObservedValue::Waveform(w) => {
                format!("{} samples at {} Hz", w.samples.len(), w.sample_rate_hz)
            }
        };
        writeln!(
            out,
            "OBX@{} {} = {value} device {} at {} ({}) sub-id {} limits {:?} flags {:?} status {:?} body {:?} implausible {} device_flagged {}",
            mapped.position,
            o.metric,
            o.device_id,
            o.device_time.millis(),
            hl7::time::format_dtm(o.device_time),
            mapped.sub_id,
            mapped.limits,
            mapped.abnormal_flags,
            mapped.result_status,
            o.body_site.map(|r| r.to_string()),
            o.quality.implausible,
            o.quality.device_flagged,
        )
        .unwrap();
    }
    for issue in &result.issues {
        writeln!(
            out,
            "{:?} {:?} at {:?}: {}",
            issue.severity, issue.code, issue.location, issue.text
        )
        .unwrap();
    }
    out
}

#[test]
fn ipf_request() {
    expect_file!["../data/ipf-valid-pcd01-request.expected"]
        .assert_eq(&render("ipf-valid-pcd01-request.hl7"));
}

#[test]
fn ipf_request2() {
    expect_file!["../data/ipf-valid-pcd01-request2.expected"]
        .assert_eq(&render("ipf-valid-pcd01-request2.hl7"));
}

#[test]
fn ipf_maximum_request2() {
    expect_file!["../data/ipf-valid-pcd01-MaximumRequest2.expected"]
        .assert_eq(&render("ipf-valid-pcd01-MaximumRequest2.hl7"));
}

#[test]
fn hapi_withdrawn_datatype() {
    expect_file!["../data/hapi-MessageValidatorTest-withdrawn-datatype.expected"]
        .assert_eq(&render("hapi-MessageValidatorTest-withdrawn-datatype.hl7"));
}
