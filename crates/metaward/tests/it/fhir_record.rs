//! The medical record as FHIR R4 over real HTTP: `metaward import` of all the shared Synthea
//! bundles and FHIR examples (counts by type checked against the files, counted here
//! independently), idempotent re-import through `POST /fhir`, search, read, vread, history,
//! `_include`, `$lastn`, errors as OperationOutcome, and what we serve validated by the Python
//! `fhir.resources` 6.4.0 (strict R4).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use server::{Server, ServerConfig};

use crate::*;

fn shared_data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|dir| dir.join("shared/data"))
        .find(|dir| dir.is_dir())
        .expect("shared/data beside the project")
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

/// What the files hold, by type: Synthea's resources by their distinct ids (the same
/// Organization or Practitioner appears in several patients' bundles, with the same id and
/// identifier), the examples one resource per file, the transaction example left out (it is
/// refused: see below).
fn expected_counts() -> BTreeMap<String, u64> {
    let mut seen = HashSet::new();
    let mut counts = BTreeMap::new();
    for file in json_files(&shared_data().join("synthea")) {
        for entry in read_json(&file)["entry"].as_array().unwrap() {
            let resource = &entry["resource"];
            let key = (
                resource["resourceType"].as_str().unwrap().to_owned(),
                resource["id"].as_str().unwrap().to_owned(),
            );
            if seen.insert(key.clone()) {
                *counts.entry(key.0).or_default() += 1;
            }
        }
    }
    for file in json_files(&shared_data().join("fhir-r4-examples")) {
        let resource = read_json(&file);
        if resource["resourceType"] != "Bundle" {
            *counts
                .entry(resource["resourceType"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
    }
    counts
}

async fn start_on(data: &Path) -> Server {
    let server = Server::start(ServerConfig::ephemeral(data))
        .await
        .expect("server starts");
    sign_in_admin(&server).await;
    server
}

/// A form-encoded POST (the helper in main.rs sends JSON).
async fn http_form(addr: std::net::SocketAddr, path: &str, form: &str) -> Response {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        auth_header(addr),
        form.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    assert!(!head.to_ascii_lowercase().contains("chunked"), "{head}");
    Response {
        status,
        body: body.to_owned(),
    }
}

async fn post_json(addr: std::net::SocketAddr, path: &str, body: &Value) -> Response {
    http(addr, "POST", path, Some(&body.to_string())).await
}

fn assert_outcome(response: &Response, status: u16, what: &str) -> Value {
    assert_eq!(response.status, status, "{what}: {}", response.body);
    let outcome = response.json();
    assert_eq!(outcome["resourceType"], "OperationOutcome", "{what}");
    assert_eq!(outcome["issue"][0]["severity"], "error", "{what}");
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_shared_data_imports_and_the_counts_match_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let output = Command::new(env!("CARGO_BIN_EXE_metaward"))
        .arg("import")
        .arg("--data")
        .arg(&data)
        .arg(shared_data().join("synthea"))
        .arg(shared_data().join("fhir-r4-examples"))
        .env("METAWARD_LOG", "warn")
        .env_remove("METAWARD_CONFIG")
        .output()
        .expect("metaward import runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    // The spec's transaction example asks for a terminology operation (ValueSet/$lookup) and an
    // If-Match on a Patient that does not exist; a transaction is all or nothing, so it is
    // refused whole, said so, and the exit status is not success. Nothing else is refused.
    assert!(!output.status.success(), "{stdout}");
    let rejections: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("rejected ("))
        .collect();
    assert_eq!(rejections.len(), 1, "{stdout}");
    assert!(
        rejections[0].contains("bundle-transaction.json") && rejections[0].contains("$lookup"),
        "{stdout}"
    );

    let expected = expected_counts();
    assert_eq!(expected["Observation"], 2481 + 8, "the test's own count");
    let server = start_on(&data).await;
    let addr = server.http_addr();
    for (resource_type, count) in &expected {
        let bundle = get_json(addr, &format!("/fhir/{resource_type}?_summary=count")).await;
        assert_eq!(bundle["type"], "searchset");
        assert_eq!(&bundle["total"], count, "{resource_type}");
        assert!(
            bundle.get("entry").is_none(),
            "_summary=count has no entries"
        );
    }
    let devices = get_json(addr, "/fhir/Device?_summary=count").await;
    assert_eq!(devices["total"], 0);

    // The same bundle again over HTTP: every entry found unchanged, nothing new.
    let bundle = read_json(
        &shared_data().join("synthea/Zachary_Kutch_01396393-ed81-4f7f-a073-553cb407837f.json"),
    );
    let response = post_json(addr, "/fhir", &bundle).await;
    assert_eq!(response.status, 200, "{}", response.body);
    let answer = response.json();
    assert_eq!(answer["type"], "transaction-response");
    let entries = answer["entry"].as_array().unwrap();
    assert_eq!(entries.len(), bundle["entry"].as_array().unwrap().len());
    assert!(
        entries.iter().all(|e| e["response"]["status"] == "200 OK"),
        "{answer}"
    );
    let observations = get_json(addr, "/fhir/Observation?_summary=count").await;
    assert_eq!(&observations["total"], &expected["Observation"]);

    // The spec's examples read back, and a Synthea patient's searchset, are strict R4.
    let mut sample = Vec::new();
    for path in [
        "Patient/example",
        "Observation/blood-pressure",
        "Observation/satO2",
        "Observation/vitals-panel",
        "Condition/example",
        "MedicationStatement/example001",
        "AllergyIntolerance/example",
        "Encounter/example",
    ] {
        sample.push(get_json(addr, &format!("/fhir/{path}")).await);
    }
    sample.push(get_json(addr, "/fhir/Patient?_count=5&_sort=birthdate").await);
    sample.push(get_json(addr, "/fhir/Observation?code=http://loinc.org%7C55284-4&_count=5&_include=Observation:patient").await);
    validate_r4(&sample);

    // A bundle larger than axum's default body limit (2 MB): three patients' records in one.
    let mut large = json!({"resourceType": "Bundle", "type": "transaction", "entry": []});
    for name in [
        "Adolfo_Marquardt_50635536-8051-4085-bfd4-511a05062ac2.json",
        "Loma_Johns_0f30cacb-3348-4baf-8946-cd2175a750b3.json",
        "Dennis_Durgan_78f005f3-7b33-4a5b-84d9-28417b36dbab.json",
    ] {
        let entries = read_json(&shared_data().join("synthea").join(name))["entry"].clone();
        large["entry"]
            .as_array_mut()
            .unwrap()
            .extend(entries.as_array().unwrap().iter().cloned());
    }
    let text = serde_json::to_string_pretty(&large).unwrap();
    assert!(text.len() > 2 * 1024 * 1024, "{} bytes", text.len());
    let response = http(addr, "POST", "/fhir", Some(&text)).await;
    assert_eq!(
        response.status,
        200,
        "{}",
        &response.body[..response.body.len().min(300)]
    );
    assert!(
        response.json()["entry"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["response"]["status"] == "200 OK")
    );

    // The transaction example's entries as a batch: each stands or falls on its own.
    let mut example = read_json(&shared_data().join("fhir-r4-examples/bundle-transaction.json"));
    example["type"] = json!("batch");
    let response = post_json(addr, "/fhir", &example).await;
    assert_eq!(response.status, 200, "{}", response.body);
    let statuses: Vec<String> = response.json()["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        statuses,
        [
            "201 Created",             // POST Patient
            "201 Created",             // POST Patient, ifNoneExist finds none
            "201 Created",             // PUT Patient/123
            "201 Created",             // PUT Patient?identifier=…|456456, none yet
            "412 Precondition Failed", // PUT Patient/123a, If-Match W/"2" on nothing
            "204 No Content",          // DELETE Patient/234 (there is none)
            "204 No Content",          // DELETE Patient?identifier=123456 (none)
            "501 Not Implemented",     // POST ValueSet/$lookup
            "200 OK",                  // GET Patient?name=peter
            "404 Not Found",           // GET Patient/12334
        ]
    );
    server.shutdown().await;
}

const COPD: &str = "synthea/Adolfo_Marquardt_50635536-8051-4085-bfd4-511a05062ac2.json";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_read_history_lastn_and_errors_over_http() {
    let (server, _dir) = start_server().await;
    let addr = server.http_addr();

    // A transaction bundle in: every entry created, with a location and an ETag.
    let bundle = read_json(&shared_data().join(COPD));
    let response = post_json(addr, "/fhir", &bundle).await;
    assert_eq!(response.status, 200, "{}", response.body);
    let transaction_response = response.json();
    let answer = transaction_response.clone();
    let first = &answer["entry"][0]["response"];
    assert_eq!(first["status"], "201 Created");
    assert_eq!(first["etag"], "W/\"1\"");
    let n_observations = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["resource"]["resourceType"] == "Observation")
        .count();

    // Patient search by name, identifier and birth date.
    let source_patient = &bundle["entry"][0]["resource"];
    assert_eq!(source_patient["resourceType"], "Patient");
    let family = source_patient["name"][0]["family"].as_str().unwrap();
    let patients = get_json(addr, &format!("/fhir/Patient?name={}", &family[..4])).await;
    assert_eq!(patients["total"], 1, "{patients}");
    let patient = patients["entry"][0]["resource"].clone();
    let patient_id = patient["id"].as_str().unwrap().to_owned();
    let identifier = &source_patient["identifier"][1];
    let by_identifier = get_json(
        addr,
        &format!(
            "/fhir/Patient?identifier={}%7C{}",
            identifier["system"].as_str().unwrap(),
            identifier["value"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(by_identifier["total"], 1);
    let birth = source_patient["birthDate"].as_str().unwrap();
    assert_eq!(
        get_json(addr, &format!("/fhir/Patient?birthdate={birth}")).await["total"],
        1
    );
    assert_eq!(
        get_json(addr, &format!("/fhir/Patient?birthdate=gt{birth}")).await["total"],
        0
    );

    // Observations of the patient, by code, newest first, paged, with the patient included.
    let all = get_json(
        addr,
        &format!("/fhir/Observation?patient={patient_id}&_summary=count"),
    )
    .await;
    assert_eq!(all["total"], n_observations);
    let weight_query = format!(
        "/fhir/Observation?subject=Patient/{patient_id}&code=http://loinc.org%7C29463-7&_sort=-date&_count=2&_include=Observation:patient"
    );
    let page = get_json(addr, &weight_query).await;
    let total = page["total"].as_u64().unwrap();
    assert!(total > 2, "{page}");
    let entries = page["entry"].as_array().unwrap();
    let matches: Vec<&Value> = entries
        .iter()
        .filter(|e| e["search"]["mode"] == "match")
        .collect();
    assert_eq!(matches.len(), 2);
    let dates: Vec<&str> = matches
        .iter()
        .map(|e| e["resource"]["effectiveDateTime"].as_str().unwrap())
        .collect();
    assert!(dates[0] >= dates[1], "newest first: {dates:?}");
    let included: Vec<&Value> = entries
        .iter()
        .filter(|e| e["search"]["mode"] == "include")
        .collect();
    assert_eq!(included.len(), 1);
    assert_eq!(included[0]["resource"]["id"], patient_id.as_str());
    let link = |bundle: &Value, relation: &str| {
        bundle["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == relation)
            .map(|l| l["url"].as_str().unwrap().to_owned())
    };
    assert!(link(&page, "self").is_some());
    let next = link(&page, "next").expect("a next link");
    let next_path = &next[next.find("/fhir/").unwrap()..];
    let second = get_json(addr, next_path).await;
    let second_dates: Vec<&str> = second["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["search"]["mode"] == "match")
        .map(|e| e["resource"]["effectiveDateTime"].as_str().unwrap())
        .collect();
    assert!(
        !second_dates.is_empty() && dates[1] >= second_dates[0],
        "{second_dates:?}"
    );

    // Dates with prefixes: ge + lt splits the set exactly.
    let split = "2015-01-01";
    let count =
        |query: String| async move { get_json(addr, &query).await["total"].as_u64().unwrap() };
    let before = count(format!(
        "/fhir/Observation?patient={patient_id}&date=lt{split}&_summary=count"
    ))
    .await;
    let after = count(format!(
        "/fhir/Observation?patient={patient_id}&date=ge{split}&_summary=count"
    ))
    .await;
    assert_eq!(before + after, n_observations as u64);
    assert!(before > 0 && after > 0);
    let vital = count(format!(
        "/fhir/Observation?patient={patient_id}&category=http://terminology.hl7.org/CodeSystem/observation-category%7Cvital-signs&_summary=count"
    ))
    .await;
    assert!(vital > 0 && vital < n_observations as u64);
    assert!(count("/fhir/Condition?clinical-status=active&_summary=count".into()).await > 0);
    assert!(
        count(format!(
            "/fhir/Encounter?patient={patient_id}&_summary=count"
        ))
        .await
            > 0
    );
    assert!(
        count(format!(
            "/fhir/MedicationRequest?patient={patient_id}&_summary=count"
        ))
        .await
            > 0
    );

    // The same search by POST with a form body.
    let form = format!("patient={patient_id}&code=http://loinc.org%7C29463-7");
    let by_post = http_form(addr, "/fhir/Observation/_search?_summary=count", &form).await;
    assert_eq!(by_post.status, 200, "{}", by_post.body);
    assert_eq!(by_post.json()["total"].as_u64(), Some(total));

    // $lastn: one per code, the newest.
    let lastn = get_json(
        addr,
        &format!("/fhir/Observation/$lastn?patient={patient_id}&category=vital-signs"),
    )
    .await;
    let lastn_entries = lastn["entry"].as_array().unwrap();
    let codes: HashSet<&str> = lastn_entries
        .iter()
        .map(|e| e["resource"]["code"]["coding"][0]["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes.len(), lastn_entries.len(), "one per code");
    let latest_weight = lastn_entries
        .iter()
        .find(|e| e["resource"]["code"]["coding"][0]["code"] == "29463-7")
        .unwrap();
    assert_eq!(
        latest_weight["resource"]["effectiveDateTime"]
            .as_str()
            .unwrap(),
        dates[0]
    );

    // Read, update, vread, history, delete, 410.
    let read = http(addr, "GET", &format!("/fhir/Patient/{patient_id}"), None).await;
    assert_eq!(read.status, 200);
    let mut updated = read.json();
    assert_eq!(updated["meta"]["versionId"], "1");
    updated["active"] = json!(false);
    let put = http(
        addr,
        "PUT",
        &format!("/fhir/Patient/{patient_id}"),
        Some(&updated.to_string()),
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.body);
    assert_eq!(put.json()["meta"]["versionId"], "2");
    let v1 = get_json(addr, &format!("/fhir/Patient/{patient_id}/_history/1")).await;
    assert!(v1.get("active").is_none());
    let history = get_json(addr, &format!("/fhir/Patient/{patient_id}/_history")).await;
    assert_eq!(
        (history["type"].as_str(), history["total"].as_u64()),
        (Some("history"), Some(2))
    );

    // Create with a client id and delete: 201, then 204, then 410 on read.
    let device = json!({"resourceType": "Device", "id": "monitor-7", "status": "active",
        "patient": {"reference": format!("Patient/{patient_id}")}});
    let created = http(
        addr,
        "PUT",
        "/fhir/Device/monitor-7",
        Some(&device.to_string()),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(
        count(format!("/fhir/Device?patient={patient_id}&status=active")).await,
        1
    );
    assert_eq!(
        http(addr, "DELETE", "/fhir/Device/monitor-7", None)
            .await
            .status,
        204
    );
    assert_outcome(
        &http(addr, "GET", "/fhir/Device/monitor-7", None).await,
        410,
        "deleted",
    );
    // Conditional update and delete at the REST level.
    let tagged = json!({"resourceType": "Device", "identifier": [{"system": "urn:serial", "value": "SN-1"}], "status": "active"});
    let by_serial = "/fhir/Device?identifier=urn:serial%7CSN-1";
    let created = http(addr, "PUT", by_serial, Some(&tagged.to_string())).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let device_id = created.json()["id"].as_str().unwrap().to_owned();
    let mut inactive = tagged.clone();
    inactive["status"] = json!("inactive");
    let updated_device = http(addr, "PUT", by_serial, Some(&inactive.to_string())).await;
    assert_eq!(updated_device.status, 200, "{}", updated_device.body);
    let updated_device = updated_device.json();
    assert_eq!(updated_device["id"].as_str(), Some(device_id.as_str()));
    assert_eq!(updated_device["meta"]["versionId"], "2");
    assert_eq!(http(addr, "DELETE", by_serial, None).await.status, 204);
    assert_outcome(
        &http(addr, "GET", &format!("/fhir/Device/{device_id}"), None).await,
        410,
        "deleted conditionally",
    );
    assert_outcome(
        &http(addr, "PUT", "/fhir/Device", Some(&tagged.to_string())).await,
        400,
        "conditional update without a query",
    );

    // Errors as OperationOutcome.
    assert_outcome(
        &http(addr, "GET", "/fhir/Patient/nope", None).await,
        404,
        "unknown id",
    );
    assert_outcome(
        &http(addr, "GET", "/fhir/Nonsense/1", None).await,
        404,
        "unknown type",
    );
    assert_outcome(
        &http(addr, "GET", "/fhir/Observation?date=yesterday", None).await,
        400,
        "bad date",
    );
    assert_outcome(
        &http(addr, "GET", "/fhir/Observation?colour=red", None).await,
        400,
        "unknown param",
    );
    assert_outcome(
        &http(
            addr,
            "GET",
            &format!("/fhir/Patient/{patient_id}/_history/9"),
            None,
        )
        .await,
        404,
        "no version",
    );
    assert_outcome(
        &post_json(
            addr,
            "/fhir",
            &json!({"resourceType": "Bundle", "type": "document"}),
        )
        .await,
        422,
        "document bundle",
    );
    assert_outcome(
        &http(addr, "GET", "/fhir", None).await,
        501,
        "system search",
    );
    assert_outcome(
        &http(addr, "GET", "/fhir/Patient/_history", None).await,
        501,
        "type history",
    );
    assert_outcome(
        &http(addr, "PATCH", "/fhir/Patient/x", Some("[]")).await,
        501,
        "patch",
    );
    let no_code = json!({"resourceType": "Observation", "status": "final"});
    let refused = assert_outcome(
        &post_json(addr, "/fhir/Observation", &no_code).await,
        422,
        "required element missing",
    );
    assert_eq!(refused["issue"][0]["expression"][0], "Observation.code");
    assert_outcome(
        &http(addr, "POST", "/fhir/Patient", Some("{not json")).await,
        400,
        "not JSON",
    );
    let stale = http(
        addr,
        "PUT",
        &format!("/fhir/Patient/{patient_id}"),
        Some(&updated.to_string()),
    )
    .await;
    assert_eq!(stale.status, 200, "same content: unchanged");
    let conditional = json!({"resourceType": "Bundle", "type": "transaction", "entry": [{
        "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "note"},
                     "subject": {"reference": "Patient?identifier=urn:none%7C0"}},
        "request": {"method": "POST", "url": "Observation"}}]});
    let outcome = assert_outcome(
        &post_json(addr, "/fhir", &conditional).await,
        412,
        "conditional reference",
    );
    assert_eq!(outcome["issue"][0]["expression"][0], "Bundle.entry[0]");
    // A batch: each entry on its own.
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {"resourceType": "Location", "id": "ward-a", "name": "Ward A", "status": "active"},
         "request": {"method": "PUT", "url": "Location/ward-a"}},
        {"resource": {"resourceType": "Location", "name": "Bed 1", "partOf": {"reference": "urn:uuid:nowhere"}},
         "request": {"method": "POST", "url": "Location"}}]});
    let answer = post_json(addr, "/fhir", &batch).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let batch_response = answer.json();
    let answer = batch_response.clone();
    assert_eq!(answer["type"], "batch-response");
    assert_eq!(answer["entry"][0]["response"]["status"], "201 Created");
    assert_eq!(answer["entry"][1]["response"]["status"], "400 Bad Request");
    assert_eq!(
        answer["entry"][1]["response"]["outcome"]["resourceType"],
        "OperationOutcome"
    );
    assert_eq!(
        count("/fhir/Location?name=ward&_summary=count".into()).await,
        1
    );

    // Refusals are counted with their reason, received = accepted + rejected, and each is kept
    // as a dead letter.
    let metrics = http(addr, "GET", "/metrics", None).await.body;
    let sample = |name: &str, label: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with(&format!("{name}{{"))
                    && l.contains("source=\"fhir_record\"")
                    && l.contains(label)
            })
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum()
    };
    assert_eq!(
        sample("metaward_messages_rejected_total", "reason=\"processing\""),
        2.0,
        "{metrics}"
    );
    let (received, accepted, rejected) = (
        sample("metaward_messages_received_total", ""),
        sample("metaward_messages_accepted_total", ""),
        sample("metaward_messages_rejected_total", ""),
    );
    // The document bundle, the Observation without a code, the body that is not JSON, the
    // conditional update without a query, the conditional reference that finds nothing.
    assert_eq!(rejected, 5.0, "{metrics}");
    assert_eq!(received, accepted + rejected, "{metrics}");
    eventually("the refused bundles kept as dead letters", || async {
        let letters = get_json(addr, "/api/v1/dead-letters").await;
        let ours: Vec<&Value> = letters
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["source"] == "fhir_record")
            .collect();
        (ours.len() as f64 == rejected && ours.iter().any(|d| d["reason"] == "conflict"))
            .then_some(())
    })
    .await;

    // What we serve is strict FHIR R4 for fhir.resources 6.4.0.
    let capability = get_json(addr, "/fhir/metadata").await;
    let observation_caps = capability["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Observation")
        .unwrap();
    assert!(
        observation_caps["searchParam"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "code")
    );
    let deleted_history = get_json(addr, "/fhir/Device/monitor-7/_history").await;
    assert_eq!(deleted_history["entry"][0]["request"]["method"], "DELETE");
    let sample = vec![
        deleted_history,
        patient,
        v1,
        read.json(),
        matches[0]["resource"].clone(),
        page.clone(),
        second,
        lastn,
        history,
        capability,
        transaction_response,
        batch_response,
        assert_outcome(
            &http(addr, "GET", "/fhir/Patient/nope", None).await,
            404,
            "again",
        ),
    ];
    validate_r4(&sample);
    server.shutdown().await;
}

/// Validates each resource with `fhir.resources` 6.4.0 (pydantic 1, strict R4): the test tools'
/// Python, installed by `scripts/install-test-tools`.
fn validate_r4(resources: &[Value]) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join(".tools/venv/bin/python");
    assert!(
        python.exists(),
        "{} missing: run scripts/install-test-tools",
        python.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("served.json");
    std::fs::write(&path, Value::Array(resources.to_vec()).to_string()).unwrap();
    let script = r##"
import json, sys
from fhir.resources import construct_fhir_element
failed = 0
for index, resource in enumerate(json.load(open(sys.argv[1]))):
    try:
        construct_fhir_element(resource["resourceType"], resource)
    except Exception as error:
        failed += 1
        print(f"#{index} {resource['resourceType']}: {error}")
print(f"validated {index + 1 - failed} of {index + 1}")
sys.exit(1 if failed else 0)
"##;
    let output = Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(&path)
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "fhir.resources refused what we serve:\n{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(&format!("validated {n} of {n}", n = resources.len())),
        "{stdout}"
    );
}
