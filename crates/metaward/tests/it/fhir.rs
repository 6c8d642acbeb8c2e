//! FHIR R4 over real HTTP: device Observations (single, transaction, batch) reaching the twin
//! and the history with the right patient, region and unit; waveforms; Devices and their
//! identifiers; OperationOutcome errors, dead letters and reconciled metrics; and the resources
//! we answer with checked by a third party's strict R4 model (PyPI fhir.resources).

use std::net::SocketAddr;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::*;

struct FhirResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl FhirResponse {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// One HTTP/1.1 request with a chosen content type (`Connection: close`).
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
) -> FhirResponse {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{}Accept: application/fhir+json\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        auth_header(addr),
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        let mut out = String::new();
        let mut rest = rest;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if size == 0 {
                break;
            }
            out.push_str(&after[..size]);
            rest = after[size..].trim_start_matches("\r\n");
        }
        out
    } else {
        rest.to_owned()
    };
    FhirResponse {
        status,
        headers,
        body,
    }
}

async fn post(addr: SocketAddr, path: &str, body: &Value) -> FhirResponse {
    request(
        addr,
        "POST",
        path,
        "application/fhir+json",
        &body.to_string(),
    )
    .await
}

fn instant(ms: i64) -> String {
    ::fhir::datetime::format(model::Timestamp(ms))
}

fn spo2(time: i64, value: f64) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "59408-5", "display": "Oxygen saturation in Arterial blood by Pulse oximetry"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": instant(time),
        "valueQuantity": {"value": value, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"},
        "bodySite": {"coding": [
            {"system": "http://snomed.info/sct", "code": "7569003", "display": "Finger structure"},
            {"system": "http://snomed.info/sct", "code": "24028007", "display": "Right"}
        ]},
        "device": {"reference": "Device/ox-9"}
    })
}

fn blood_pressure(time: i64, device: Value, systolic_kpa: f64, diastolic: f64) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
        "effectiveDateTime": instant(time),
        "bodySite": {"coding": [{"system": "http://snomed.info/sct", "code": "368208006"}]},
        "device": device,
        "component": [
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
             "valueQuantity": {"value": systolic_kpa, "unit": "kPa", "system": "http://unitsofmeasure.org", "code": "kPa"}},
            {"code": {"coding": [{"system": "urn:iso:std:iso:11073:10101", "code": "150022"}]},
             "valueQuantity": {"value": diastolic, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}
        ]
    })
}

fn entry(resource: Value) -> Value {
    json!({"resource": resource, "request": {"method": "POST", "url": "Observation"}})
}

fn bundle(kind: &str, entries: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": kind, "entry": entries})
}

async fn history(addr: SocketAddr, metric: &str) -> Value {
    get_json(
        addr,
        &format!("/api/v1/patients/p1/history?metric={metric}"),
    )
    .await
}

fn has_points(history: &Value, value: f64) -> bool {
    history["points"]
        .as_array()
        .is_some_and(|points| points.iter().any(|p| p["value"].as_f64() == Some(value)))
}

async fn twin_value(addr: SocketAddr, metric: &str) -> Option<Value> {
    let twin = get_json(addr, "/api/v1/patients/p1/twin").await;
    twin["values"]
        .as_array()?
        .iter()
        .find(|v| v["metric"] == metric)
        .cloned()
}

/// Counters of `/metrics` for the fhir source: (received, accepted, rejected by reason).
async fn fhir_counts(addr: SocketAddr) -> (u64, u64, Vec<(String, u64)>) {
    let text = http(addr, "GET", "/metrics", None).await.body;
    let mut received = 0;
    let mut accepted = 0;
    let mut rejected = Vec::new();
    for line in text.lines().filter(|l| l.contains("source=\"fhir\"")) {
        let value: u64 = line.rsplit(' ').next().unwrap().parse().unwrap_or(0);
        if line.starts_with("metaward_messages_received_total") {
            received = value;
        } else if line.starts_with("metaward_messages_accepted_total") {
            accepted = value;
        } else if line.starts_with("metaward_messages_rejected_total") {
            let reason = line
                .split("reason=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            rejected.push((reason.to_owned(), value));
        }
    }
    (received, accepted, rejected)
}

pub(crate) fn check_with_fhir_resources(kind: &str, resource: &Value) {
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.tools/venv/bin/python");
    assert!(
        std::path::Path::new(python).exists(),
        "{python} is missing: run scripts/install-test-tools"
    );
    let module = kind.to_ascii_lowercase();
    let script = format!(
        "import sys\nfrom fhir.resources.{module} import {kind}\n{kind}.parse_raw(sys.stdin.read())\nprint('ok')"
    );
    let mut child = std::process::Command::new(python)
        .args(["-c", &script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(resource.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "fhir.resources refused our {kind}: {}\n{resource:#}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observation_reaches_the_twin_with_patient_region_and_unit() {
    let (server, _dir) = start_server().await;
    server.apply_setup(small_setup()).await.unwrap();
    let addr = server.http_addr();

    // After the setup: dev-1's association with b1 starts when the setup is applied.
    let t = now_ms();
    let response = post(addr, "/fhir/Observation", &spo2(t, 96.0)).await;
    assert_eq!(response.status, 201, "{}", response.body);
    assert_eq!(
        response.header("content-type"),
        Some("application/fhir+json")
    );
    let created = response.json();
    let id = created["id"].as_str().expect("an id");
    assert_eq!(
        response.header("location"),
        Some(format!("/fhir/Observation/{id}").as_str())
    );
    assert_eq!(created["valueQuantity"]["value"], 96.0);
    assert!(created.get("someFutureElement").is_none());
    check_with_fhir_resources("Observation", &created);

    // Durable before the answer, so the twin already has it: on p1 (the subject), at the right
    // finger (bodySite + laterality), in %.
    let value = twin_value(addr, "spo2").await.expect("spo2 in the twin");
    assert_eq!(value["value"], 96.0);
    assert_eq!(value["region"], "finger_right");
    assert_eq!(value["unit"], "%");
    assert_eq!(value["device_id"], "ox-9");
    let points = eventually("spo2 in the history", || async {
        let history = history(addr, "spo2").await;
        (!history["points"].as_array().unwrap().is_empty()).then_some(history)
    })
    .await;
    assert_eq!(points["points"][0]["value"], 96.0);
    assert_eq!(points["points"][0]["time"], t);

    // Blood pressure with components, by the device's bed association (dev-1 on b1 → p1);
    // systolic sent in kPa is stored in mm[Hg].
    let bp = blood_pressure(t, json!({"reference": "Device/dev-1"}), 16.0, 80.0);
    let response = post(addr, "/fhir/Observation", &bp).await;
    assert_eq!(response.status, 201, "{}", response.body);
    check_with_fhir_resources("Observation", &response.json());
    let systolic = twin_value(addr, "nibp_systolic").await.expect("systolic");
    assert!(
        (systolic["value"].as_f64().unwrap() - 120.01).abs() < 0.01,
        "{systolic}"
    );
    assert_eq!(systolic["region"], "upper_arm_left");
    assert_eq!(systolic["unit"], "mm[Hg]");
    assert_eq!(
        twin_value(addr, "nibp_diastolic").await.unwrap()["value"],
        80.0
    );

    // A waveform in SampledData.
    let ecg = json!({
        "resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "urn:iso:std:iso:11073:10101", "code": "131330", "display": "MDC_ECG_ELEC_POTL_II"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": instant(t),
        "device": {"reference": "Device/dev-1"},
        "valueSampledData": {"origin": {"value": 0, "unit": "mV", "system": "http://unitsofmeasure.org", "code": "mV"},
                             "period": 4, "factor": 0.001, "dimensions": 1, "data": "0 100 1000 -200"}
    });
    let response = post(addr, "/fhir/Observation", &ecg).await;
    assert_eq!(response.status, 201, "{}", response.body);
    check_with_fhir_resources("Observation", &response.json());
    let waveform = eventually("ecg chunk in the store", || async {
        let waveform = get_json(addr, "/api/v1/patients/p1/waveform?metric=ecg_ii").await;
        (!waveform["chunks"].as_array().unwrap().is_empty()).then_some(waveform)
    })
    .await;
    assert_eq!(waveform["chunks"][0]["rate_hz"], 250.0);
    let samples: Vec<f64> = waveform["chunks"][0]["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_f64().unwrap())
        .collect();
    let expected = [0.0, 0.1, 1.0, -0.2];
    assert_eq!(samples.len(), 4);
    for (got, want) in samples.iter().zip(expected) {
        assert!((got - want).abs() < 1e-3, "{samples:?}");
    }

    // Read back through FHIR at the ids the answers gave, from the log at once: the SpO2 as a
    // vital-signs Observation with LOINC and MDC codings, UCUM unit, device, body site and
    // subject; the BP entry's first value; the ECG as one SampledData chunk. All strict R4.
    let read = get_json(addr, &format!("/fhir/Observation/{id}")).await;
    assert_eq!(read["id"], id);
    assert_eq!(
        read["meta"]["profile"][0],
        "http://hl7.org/fhir/StructureDefinition/vitalsigns"
    );
    assert_eq!(read["category"][0]["coding"][0]["code"], "vital-signs");
    let codings = read["code"]["coding"].as_array().unwrap();
    assert!(
        codings
            .iter()
            .any(|c| c["system"] == "http://loinc.org" && c["code"] == "59408-5"),
        "{read}"
    );
    assert!(
        codings
            .iter()
            .any(|c| c["system"] == "urn:iso:std:iso:11073:10101"),
        "{read}"
    );
    assert_eq!(read["valueQuantity"]["value"], 96.0);
    assert_eq!(read["valueQuantity"]["system"], "http://unitsofmeasure.org");
    assert_eq!(read["valueQuantity"]["code"], "%");
    assert_eq!(read["subject"]["reference"], "Patient/p1");
    assert_eq!(read["device"]["reference"], "Device/ox-9");
    assert_eq!(read["effectiveDateTime"], instant(t));
    let sites: Vec<&str> = read["bodySite"]["coding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["code"].as_str().unwrap())
        .collect();
    assert_eq!(sites, ["7569003", "24028007"], "right finger: {read}");
    check_with_fhir_resources("Observation", &read);
    let ecg_id = response.json()["id"].as_str().unwrap().to_owned();
    let ecg_read = get_json(addr, &format!("/fhir/Observation/{ecg_id}")).await;
    let sampled = &ecg_read["valueSampledData"];
    assert_eq!(sampled["period"], 4.0, "{ecg_read}");
    assert_eq!(sampled["dimensions"], 1);
    let data: Vec<f64> = sampled["data"]
        .as_str()
        .unwrap()
        .split(' ')
        .map(|x| x.parse().unwrap())
        .collect();
    assert_eq!(data.len(), 4, "one resource for the chunk: {ecg_read}");
    for (got, want) in data.iter().zip(expected) {
        assert!((got - want).abs() < 1e-3, "{data:?}");
    }
    check_with_fhir_resources("Observation", &ecg_read);
    // Ids that name nothing: 404 as an OperationOutcome.
    let missing = http(addr, "GET", "/fhir/Observation/999999-0", None).await;
    assert_eq!(missing.status, 404, "{}", missing.body);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_are_all_or_nothing_and_batches_are_not() {
    let (server, _dir) = start_server().await;
    server.apply_setup(small_setup()).await.unwrap();
    let addr = server.http_addr();
    // After the setup: dev-1's association with b1 starts when the setup is applied.
    let t = now_ms();

    let mut bad = spo2(t, 90.0);
    bad["code"]["coding"][0]["code"] = json!("0000-0");
    let refused = post(
        addr,
        "/fhir",
        &bundle(
            "transaction",
            vec![entry(spo2(t, 91.0)), entry(bad.clone())],
        ),
    )
    .await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    let outcome = refused.json();
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert_eq!(outcome["issue"][0]["code"], "code-invalid");
    assert_eq!(
        outcome["issue"][0]["expression"][0],
        "Bundle.entry[1].resource.code"
    );
    check_with_fhir_resources("OperationOutcome", &outcome);
    assert!(
        twin_value(addr, "spo2").await.is_none(),
        "nothing of a refused transaction is kept"
    );

    let accepted = post(
        addr,
        "/fhir",
        &bundle(
            "transaction",
            vec![
                entry(spo2(t, 92.0)),
                entry(blood_pressure(
                    t,
                    json!({"reference": "Device/dev-1"}),
                    16.0,
                    79.0,
                )),
            ],
        ),
    )
    .await;
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    let response = accepted.json();
    assert_eq!(response["type"], "transaction-response");
    check_with_fhir_resources("Bundle", &response);
    for index in 0..2 {
        assert_eq!(
            response["entry"][index]["response"]["status"],
            "201 Created"
        );
        assert!(
            response["entry"][index]["response"]["location"]
                .as_str()
                .unwrap()
                .starts_with("Observation/")
        );
    }
    // Two devices and subjects, one log record: entry k is `{offset}-{k}`.
    let location = |k: usize| {
        response["entry"][k]["response"]["location"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let offset = location(0)
        .trim_start_matches("Observation/")
        .trim_end_matches("-0")
        .to_owned();
    assert_eq!(location(1), format!("Observation/{offset}-1"));
    // Each entry reads back at its location: the BP entry's first value is its systolic.
    let first = get_json(addr, &format!("/fhir/{}", location(0))).await;
    assert_eq!(first["valueQuantity"]["value"], 92.0, "{first}");
    let second = get_json(addr, &format!("/fhir/{}", location(1))).await;
    assert_eq!(second["device"]["reference"], "Device/dev-1", "{second}");
    assert_eq!(second["valueQuantity"]["code"], "mm[Hg]", "{second}");
    check_with_fhir_resources("Observation", &second);
    assert_eq!(twin_value(addr, "spo2").await.unwrap()["value"], 92.0);
    assert_eq!(
        twin_value(addr, "nibp_diastolic").await.unwrap()["value"],
        79.0
    );
    // The store projects the transaction record: both devices' values are in the history.
    eventually("the transaction in the history", || async {
        let spo2 = history(addr, "spo2").await;
        let diastolic = history(addr, "nibp_diastolic").await;
        (has_points(&spo2, 92.0) && has_points(&diastolic, 79.0)).then_some(())
    })
    .await;

    // A batch keeps the good entry and refuses the bad one, each with its own status.
    let batch = post(
        addr,
        "/fhir",
        &bundle("batch", vec![entry(bad), entry(spo2(t + 1, 93.0))]),
    )
    .await;
    assert_eq!(batch.status, 200, "{}", batch.body);
    let response = batch.json();
    assert_eq!(response["type"], "batch-response");
    check_with_fhir_resources("Bundle", &response);
    assert_eq!(
        response["entry"][0]["response"]["status"],
        "422 Unprocessable Entity"
    );
    assert_eq!(
        response["entry"][0]["response"]["outcome"]["issue"][0]["expression"][0],
        "Bundle.entry[0].resource.code"
    );
    assert_eq!(response["entry"][1]["response"]["status"], "201 Created");
    assert_eq!(twin_value(addr, "spo2").await.unwrap()["value"], 93.0);

    // Dead letters: the refused transaction and the refused batch entry.
    let letters = eventually("two fhir dead letters", || async {
        let letters = get_json(addr, "/api/v1/dead-letters").await;
        let fhir: Vec<Value> = letters
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["source"] == "fhir")
            .cloned()
            .collect();
        (fhir.len() == 2).then_some(fhir)
    })
    .await;
    assert!(
        letters
            .iter()
            .all(|l| l["reason"] == "unknown_code" && l["origin"] == "/fhir")
    );

    // received = accepted + rejected: transaction 1 + transaction 1 + 2 batch entries.
    let (received, accepted, rejected) = fhir_counts(addr).await;
    let rejected_total: u64 = rejected.iter().map(|(_, n)| n).sum();
    assert_eq!(
        (received, accepted, rejected_total),
        (4, 2, 2),
        "{rejected:?}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_precise_operation_outcome_and_is_kept() {
    let (server, _dir) = start_server().await;
    server.apply_setup(small_setup()).await.unwrap();
    let addr = server.http_addr();
    let t = now_ms();

    let wrong_type = request(addr, "POST", "/fhir/Observation", "text/plain", "hello").await;
    assert_eq!(wrong_type.status, 415, "{}", wrong_type.body);
    assert_eq!(wrong_type.json()["issue"][0]["code"], "not-supported");

    let broken = request(
        addr,
        "POST",
        "/fhir/Observation",
        "application/json",
        "{\"resourceType\":",
    )
    .await;
    assert_eq!(broken.status, 400, "{}", broken.body);
    assert_eq!(broken.json()["issue"][0]["code"], "invalid");

    let mut not_a_number = spo2(t, 97.0);
    not_a_number["valueQuantity"]["value"] = json!("97");
    let response = post(addr, "/fhir/Observation", &not_a_number).await;
    assert_eq!(response.status, 400, "{}", response.body);
    assert_eq!(
        response.json()["issue"][0]["expression"][0],
        "Observation.valueQuantity.value"
    );

    let mut unit = spo2(t, 97.0);
    unit["valueQuantity"]["code"] = json!("kg");
    let response = post(addr, "/fhir/Observation", &unit).await;
    assert_eq!(response.status, 422, "{}", response.body);
    let outcome = response.json();
    assert_eq!(
        outcome["issue"][0]["expression"][0],
        "Observation.valueQuantity.code"
    );
    assert!(
        outcome["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("kg")
    );
    check_with_fhir_resources("OperationOutcome", &outcome);

    // An Observation naming no device is not device data: it is charted into the record
    // (GET /fhir/Observation finds it), and never reaches the live twin.
    let mut no_device = spo2(t, 97.0);
    no_device.as_object_mut().unwrap().remove("device");
    let response = post(addr, "/fhir/Observation", &no_device).await;
    assert_eq!(response.status, 201, "{}", response.body);
    assert_eq!(response.json()["resourceType"], "Observation");

    let mut stranger = spo2(t, 97.0);
    stranger["subject"]["reference"] = json!("Patient/nobody");
    let response = post(addr, "/fhir/Observation", &stranger).await;
    assert_eq!(response.status, 422);
    assert_eq!(response.json()["issue"][0]["code"], "not-found");

    let mut site = spo2(t, 97.0);
    site["bodySite"] = json!({"coding": [{"system": "http://snomed.info/sct", "code": "12345"}]});
    let response = post(addr, "/fhir/Observation", &site).await;
    assert_eq!(response.status, 422);
    assert_eq!(
        response.json()["issue"][0]["expression"][0],
        "Observation.bodySite"
    );

    let not_a_bundle = post(addr, "/fhir", &spo2(t, 97.0)).await;
    assert_eq!(not_a_bundle.status, 400);

    // Over the body limit: 413, counted and kept (without the bytes). The body is sent while
    // the answer is read, as the server may stop reading once it has refused.
    let size = server::api::fhir_record::MAX_BODY_BYTES + 1024 * 1024;
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let head = format!(
        "POST /fhir/Observation HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{}Content-Type: application/fhir+json\r\nContent-Length: {size}\r\n\r\n",
        auth_header(addr)
    );
    let sender = tokio::spawn(async move {
        let _ = writer.write_all(head.as_bytes()).await;
        let _ = writer.write_all(&vec![b' '; size]).await;
        writer
    });
    let mut raw = Vec::new();
    let read = tokio::time::timeout(DEADLINE, async {
        let mut buffer = [0u8; 4096];
        loop {
            let n = reader.read(&mut buffer).await.unwrap_or(0);
            raw.extend_from_slice(&buffer[..n]);
            if n == 0 || String::from_utf8_lossy(&raw).contains("too-costly") {
                return;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer to an oversized body");
    drop(sender.await);
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("too-costly"), "{text}");

    assert!(twin_value(addr, "spo2").await.is_none());
    let (received, accepted, rejected) = fhir_counts(addr).await;
    let rejected_total: u64 = rejected.iter().map(|(_, n)| n).sum();
    assert_eq!(
        (received, accepted, rejected_total),
        (8, 0, 8),
        "{rejected:?}"
    );
    for reason in [
        "media_type",
        "json",
        "structure",
        "unit",
        "unknown_subject",
        "body_site",
        "resource_type",
        "too_large",
    ] {
        assert!(
            rejected.iter().any(|(r, _)| r == reason),
            "no {reason} in {rejected:?}"
        );
    }
    let letters = eventually("eight fhir dead letters", || async {
        let letters = get_json(addr, "/api/v1/dead-letters").await;
        let n = letters
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["source"] == "fhir")
            .count();
        (n == 8).then_some(letters)
    })
    .await;
    assert!(
        letters
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["raw"] == "hello")
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_and_their_identifiers_feed_the_registry() {
    let (server, _dir) = start_server().await;
    server.apply_setup(small_setup()).await.unwrap();
    let addr = server.http_addr();

    let eui = "urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680";
    let monitor = json!({
        "resourceType": "Device", "id": "mon-7",
        "identifier": [{"system": eui, "value": "00-09-FB-FF-FF-A0-F4-CA"}],
        "manufacturer": "MyCompany", "serialNumber": "DE35115712", "modelNumber": "PM1",
        "type": {"coding": [{"system": "urn:iso:std:iso:11073:10101", "code": "69965", "display": "MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS"}]}
    });
    let created = request(
        addr,
        "PUT",
        "/fhir/Device/mon-7",
        "application/fhir+json",
        &monitor.to_string(),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    check_with_fhir_resources("Device", &created.json());
    let again = request(
        addr,
        "PUT",
        "/fhir/Device/mon-7",
        "application/fhir+json",
        &monitor.to_string(),
    )
    .await;
    assert_eq!(again.status, 200, "{}", again.body);

    let read = request(
        addr,
        "GET",
        "/fhir/Device/mon-7",
        "application/fhir+json",
        "",
    )
    .await;
    assert_eq!(read.status, 200);
    let device = read.json();
    assert_eq!(device["identifier"][0]["value"], "00-09-FB-FF-FF-A0-F4-CA");
    assert_eq!(device["manufacturer"], "MyCompany");
    assert_eq!(device["modelNumber"], "PM1");
    check_with_fhir_resources("Device", &device);

    let found = request(
        addr,
        "GET",
        &format!("/fhir/Device?identifier={eui}|00-09-FB-FF-FF-A0-F4-CA"),
        "application/fhir+json",
        "",
    )
    .await;
    let found = found.json();
    assert_eq!(found["total"], 1, "{found}");
    assert_eq!(found["entry"][0]["resource"]["id"], "mon-7");
    check_with_fhir_resources("Bundle", &found);
    let missing = request(
        addr,
        "GET",
        "/fhir/Device/nope",
        "application/fhir+json",
        "",
    )
    .await;
    assert_eq!(missing.status, 404);

    // POST: the record names the resource; the registry knows the device by that name, and
    // the EUI-64 in any spelling finds it (HL7 OBX-18).
    let wearable = json!({
        "resourceType": "Device",
        "identifier": [{"system": eui, "value": "00-1B-C5-0C-00-00-00-01"}],
        "type": {"coding": [{"system": "https://metaward.dev/fhir/CodeSystem/device-kind", "code": "wearable"}]},
        "deviceName": [{"name": "SpO2 patch", "type": "model-name"}]
    });
    let posted = post(addr, "/fhir/Device", &wearable).await;
    assert_eq!(posted.status, 201, "{}", posted.body);
    let posted_id = posted.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(
        get_json(addr, &format!("/api/v1/devices/{posted_id}")).await["model"],
        "SpO2 patch"
    );
    let by_eui = server
        .stores()
        .read(|store| store.device_by_identifier(eui, "001bc50c00000001"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_eui.map(|id| id.to_string()), Some(posted_id));

    // The REST view shows the same identifiers; an identifier names one device only.
    let rest = get_json(addr, "/api/v1/devices/mon-7").await;
    assert_eq!(rest["identifiers"][0]["system"], eui);
    assert_eq!(rest["kind"], "bedside_monitor");
    let taken = http(
        addr,
        "POST",
        "/api/v1/devices",
        Some(&json!({"id": "other", "kind": "wearable", "model": "x", "identifiers": [{"system": eui, "value": "0009FBFFFFA0F4CA"}]}).to_string()),
    )
    .await;
    assert_eq!(taken.status, 409, "{}", taken.body);
    let patch = http(
        addr,
        "POST",
        "/api/v1/devices",
        Some(&json!({"id": "patch-2", "kind": "wearable", "model": "patch", "identifiers": [{"system": "urn:example:serial", "value": "S-2"}]}).to_string()),
    )
    .await;
    assert_eq!(patch.status, 201, "{}", patch.body);
    assert_eq!(patch.json()["identifiers"][0]["value"], "S-2");

    // Associated with bed b1, the monitor's data named by its EUI-64 goes to p1.
    let associated = http(
        addr,
        "POST",
        "/api/v1/associations",
        Some(&json!({"device_id": "mon-7", "target_kind": "bed", "target_id": "b1", "from": now_ms() - 60_000}).to_string()),
    )
    .await;
    assert_eq!(associated.status, 201, "{}", associated.body);
    let bp = blood_pressure(
        now_ms(), // not before the setup: p1 lies in b1 from then on
        json!({"identifier": {"system": eui, "value": "0009fbffffa0f4ca"}}),
        15.0,
        70.0,
    );
    let response = post(addr, "/fhir/Observation", &bp).await;
    assert_eq!(response.status, 201, "{}", response.body);
    let diastolic = twin_value(addr, "nibp_diastolic")
        .await
        .expect("diastolic on p1");
    assert_eq!(diastolic["device_id"], "mon-7");
    assert_eq!(diastolic["value"], 70.0);

    let unknown = blood_pressure(
        now_ms(),
        json!({"identifier": {"system": eui, "value": "1111111111111111"}}),
        15.0,
        70.0,
    );
    let response = post(addr, "/fhir/Observation", &unknown).await;
    assert_eq!(response.status, 422);
    assert_eq!(
        response.json()["issue"][0]["expression"][0],
        "Observation.device.identifier"
    );

    // The CapabilityStatement says what exists, in strict R4.
    let metadata = request(addr, "GET", "/fhir/metadata", "application/fhir+json", "").await;
    assert_eq!(metadata.status, 200);
    check_with_fhir_resources("CapabilityStatement", &metadata.json());
    server.shutdown().await;
}

/// The ids of a searchset's matches, in order.
fn match_ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|entry| entry["search"]["mode"] == "match")
        .map(|entry| entry["resource"]["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_observations_are_searchable_beside_the_record() {
    let (server, _dir) = start_server().await;
    server.apply_setup(small_setup()).await.unwrap();
    let addr = server.http_addr();
    let t0 = now_ms() - 10 * 60_000;
    let minute = 60_000;

    // Five SpO2 values from the oximeter a minute apart, an ECG chunk from the monitor, and
    // an SpO2 charted by hand into the record (no device) before them all.
    let mut device_ids = Vec::new();
    for k in 0..5 {
        let mut value = spo2(t0 + k * minute, 90.0 + k as f64);
        if k == 0 {
            // The oximeter's own alarm limit travels with the value and is served back.
            value["referenceRange"] =
                json!([{"low": {"value": 92, "system": "http://unitsofmeasure.org", "code": "%"}}]);
        }
        let response = post(addr, "/fhir/Observation", &value).await;
        assert_eq!(response.status, 201, "{}", response.body);
        device_ids.push(response.json()["id"].as_str().unwrap().to_owned());
    }
    let ecg = json!({
        "resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "urn:iso:std:iso:11073:10101", "code": "131330"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": instant(t0 + 30_000),
        "device": {"reference": "Device/dev-1"},
        "valueSampledData": {"origin": {"value": 0, "unit": "mV", "system": "http://unitsofmeasure.org", "code": "mV"},
                             "period": 4, "dimensions": 1, "data": "0.1 0.2 0.3"}
    });
    let response = post(addr, "/fhir/Observation", &ecg).await;
    assert_eq!(response.status, 201, "{}", response.body);
    let ecg_id = response.json()["id"].as_str().unwrap().to_owned();
    let mut charted = spo2(t0 - minute, 95.0);
    charted.as_object_mut().unwrap().remove("device");
    let response = post(addr, "/fhir/Observation", &charted).await;
    assert_eq!(response.status, 201, "{}", response.body);
    let charted_id = response.json()["id"].as_str().unwrap().to_owned();

    // Every SpO2 of p1, newest first: the five device values then the charted one, counted
    // together, once the projection has them (well within a second).
    let spo2_search = "/fhir/Observation?patient=p1&code=http://loinc.org%7C59408-5&_sort=-date";
    let all = eventually("device SpO2 in search", || async {
        let bundle = get_json(addr, spo2_search).await;
        (bundle["total"] == 6).then_some(bundle)
    })
    .await;
    let mut newest_first: Vec<String> = device_ids.iter().rev().cloned().collect();
    newest_first.push(charted_id.clone());
    assert_eq!(match_ids(&all), newest_first);

    // Each device entry reads back identically by its id, and is strict R4.
    for entry in all["entry"].as_array().unwrap() {
        let id = entry["resource"]["id"].as_str().unwrap();
        let read = get_json(addr, &format!("/fhir/Observation/{id}")).await;
        assert_eq!(read, entry["resource"], "search and read agree on {id}");
    }
    check_with_fhir_resources("Observation", &all["entry"][0]["resource"]);
    let oldest_device = &all["entry"][4]["resource"];
    assert_eq!(oldest_device["referenceRange"][0]["low"]["value"], 92.0);
    check_with_fhir_resources("Observation", oldest_device);
    check_with_fhir_resources("Bundle", &all);

    // Paging walks the merged order: pages of 4, `next` links, no gaps, no repeats.
    let first = get_json(addr, &format!("{spo2_search}&_count=4")).await;
    assert_eq!(first["total"], 6);
    let next = first["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|link| link["relation"] == "next")
        .expect("a next link")["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = &next[next.find("/fhir/").unwrap()..];
    let second = get_json(addr, path).await;
    let mut paged = match_ids(&first);
    paged.extend(match_ids(&second));
    assert_eq!(paged, newest_first);

    // Date prefixes on the instant a value was measured.
    let since = instant(t0 + 2 * minute);
    let recent = get_json(
        addr,
        &format!("{spo2_search}&date=ge{}", since.replace('+', "%2B")),
    )
    .await;
    assert_eq!(match_ids(&recent), newest_first[..3]);
    let before = get_json(addr, &format!("{spo2_search}&date=lt{}", instant(t0))).await;
    assert_eq!(match_ids(&before), [charted_id]);

    // Category and device narrow to what the device data is: the ECG chunk is not a vital
    // sign; the oximeter is one device.
    let vital = get_json(
        addr,
        "/fhir/Observation?patient=p1&category=vital-signs&_summary=count",
    )
    .await;
    let everything = get_json(addr, "/fhir/Observation?patient=p1&_summary=count").await;
    assert!(vital["total"].as_u64().unwrap() >= 6, "{vital}");
    assert!(
        everything["total"].as_u64().unwrap() > vital["total"].as_u64().unwrap(),
        "the ECG chunk is counted beside the vital signs: {everything} {vital}"
    );
    let oximeter = get_json(addr, "/fhir/Observation?device=Device/ox-9").await;
    let mut expected = device_ids.clone();
    expected.sort();
    let mut found = match_ids(&oximeter);
    found.sort();
    assert_eq!(found, expected);
    let ecg_search = get_json(
        addr,
        "/fhir/Observation?subject=Patient/p1&code=urn:iso:std:iso:11073:10101%7C131330",
    )
    .await;
    assert_eq!(match_ids(&ecg_search), [ecg_id]);
    assert_eq!(
        ecg_search["entry"][0]["resource"]["valueSampledData"]["data"],
        "0.1 0.2 0.3"
    );
    let by_id = get_json(addr, &format!("/fhir/Observation?_id={}", device_ids[2])).await;
    assert_eq!(match_ids(&by_id), [device_ids[2].clone()]);
    let nobody = get_json(addr, "/fhir/Observation?patient=someone-else").await;
    assert_eq!(nobody["total"], 0);

    // $lastn: the newest SpO2 is the device's, not the older charted one.
    let lastn = get_json(
        addr,
        "/fhir/Observation/$lastn?patient=p1&code=http://loinc.org%7C59408-5&max=2",
    )
    .await;
    assert_eq!(match_ids(&lastn), newest_first[..2]);

    // Paging beyond what a merge may cost is refused in FHIR terms.
    let deep = http(
        addr,
        "GET",
        "/fhir/Observation?patient=p1&_offset=20000",
        None,
    )
    .await;
    assert_eq!(deep.status, 400, "{}", deep.body);
    assert!(deep.body.contains("OperationOutcome"), "{}", deep.body);
    server.shutdown().await;
}
