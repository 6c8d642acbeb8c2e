//! The medical record in the twin, over real HTTP and MQTT: a Synthea patient's transaction
//! Bundle posted to `/fhir`, an inpatient Encounter at one of the ward's beds admits them (the
//! bed's previous occupant leaves it), their twin carries the record's active conditions with
//! body regions (bodySite first, then the diagnosis table), medications, allergies and labs
//! newest first; a hypercapnic respiratory failure Condition on the record switches the NEWS2
//! of live vitals to SpO2 Scale 2; a finished Encounter discharges.

use std::path::PathBuf;

use futures::SinkExt;
use serde_json::{Value, json};

use crate::*;

fn synthea_bundle(name_prefix: &str) -> Value {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|dir| dir.join("shared/data/synthea"))
        .find(|dir| dir.is_dir())
        .expect("shared/data/synthea beside the project");
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| {
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(name_prefix)
        })
        .expect("the synthea bundle");
    serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap()
}

async fn post(addr: std::net::SocketAddr, path: &str, body: &Value) -> Value {
    let response = http(addr, "POST", path, Some(&body.to_string())).await;
    assert!(
        matches!(response.status, 200 | 201),
        "POST {path}: {} {}",
        response.status,
        response.body
    );
    response.json()
}

async fn put(addr: std::net::SocketAddr, path: &str, body: &Value) {
    let response = http(addr, "PUT", path, Some(&body.to_string())).await;
    assert!(
        matches!(response.status, 200 | 201),
        "PUT {path}: {} {}",
        response.status,
        response.body
    );
}

fn encounter(patient: &str, status: &str, location: &str) -> Value {
    json!({
        "resourceType": "Encounter", "id": "stay-1", "status": status,
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "subject": {"reference": format!("Patient/{patient}")},
        "location": [{"location": {"reference": location}, "status": "active"}],
    })
}

fn spo2_vitals(time: i64, spo2: f64) -> String {
    json!({ "time": time, "numerics": [
        { "metric": "respiration_rate", "value": 16 },
        { "metric": "spo2", "value": spo2 },
        { "metric": "inhaled_oxygen_flow", "value": 0 },
        { "metric": "nibp_systolic", "value": 120 },
        { "metric": "pulse_rate", "value": 70 },
        { "metric": "consciousness_acvpu", "value": 0 },
        { "metric": "body_temperature", "value": 37.0 },
    ] })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encounter_at_a_bed_brings_the_record_into_the_twin_and_news2() {
    let (server, _dir) = start_server().await;
    server.apply_setup(small_setup()).await.unwrap();
    let (addr, mqtt) = (server.http_addr(), server.mqtt_addr());

    // A Synthea patient with COPD and chronic heart failure, as the EMR exports them.
    let bundle = synthea_bundle("Martina_Murazik");
    let answer = post(addr, "/fhir", &bundle).await;
    let patient_location = answer["entry"][0]["response"]["location"].as_str().unwrap();
    let patient = patient_location.split('/').nth(1).unwrap().to_owned();
    // Not admitted yet: the record alone does not make a ward patient.
    let response = http(
        addr,
        "GET",
        &format!("/api/v1/patients/{patient}/twin"),
        None,
    )
    .await;
    assert_eq!(response.status, 404, "{}", response.body);

    // The bed is a Location by bed identifier; the encounter admits there.
    put(
        addr,
        "/fhir/Location/bed-one",
        &json!({"resourceType": "Location", "id": "bed-one", "name": "Bed 1",
            "identifier": [{"system": "https://metaward.dev/fhir/NamingSystem/bed", "value": "b1"}]}),
    )
    .await;
    put(
        addr,
        "/fhir/Encounter/stay-1",
        &encounter(&patient, "in-progress", "Location/bed-one"),
    )
    .await;
    let beds = get_json(addr, "/api/v1/beds").await;
    let twin = get_json(addr, &format!("/api/v1/patients/{patient}/twin")).await;
    let ward_patient = &twin["patient"];
    assert_eq!(ward_patient["bed_id"], "b1", "{twin} {beds}");
    assert!(
        ward_patient["name"].as_str().unwrap().contains("Murazik"),
        "the ward patient has the record's name: {ward_patient}"
    );
    // The bed's previous occupant left it.
    let previous = get_json(addr, "/api/v1/patients/p1").await;
    assert_eq!(previous["bed_id"], Value::Null, "{previous}");

    // Active conditions with their regions from the diagnosis table.
    let conditions = ward_patient["conditions"].as_array().unwrap();
    let copd = conditions
        .iter()
        .find(|c| c["code"] == "185086009")
        .unwrap_or_else(|| panic!("chronic obstructive bronchitis: {ward_patient}"));
    assert_eq!(copd["source"], "record");
    assert_eq!(copd["regions"], json!(["lung_left", "lung_right"]));
    let heart_failure = conditions
        .iter()
        .find(|c| c["code"] == "88805009")
        .expect("chronic congestive heart failure");
    // The table puts heart failure at the heart and the congested lungs.
    assert_eq!(
        heart_failure["regions"],
        json!(["heart", "lung_left", "lung_right"])
    );
    // Only active ones: every condition shown is active in the bundle.
    let active_in_bundle: Vec<&str> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .filter(|r| {
            r["resourceType"] == "Condition" && r["clinicalStatus"]["coding"][0]["code"] == "active"
        })
        .map(|r| r["code"]["coding"][0]["code"].as_str().unwrap())
        .collect();
    let mut shown: Vec<&str> = conditions
        .iter()
        .map(|c| c["code"].as_str().unwrap())
        .collect();
    let mut expected = active_in_bundle.clone();
    expected.sort_unstable();
    expected.dedup();
    shown.sort_unstable();
    assert_eq!(shown, expected);

    // Medications: the bundle's active MedicationRequests.
    let active_requests = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["resource"]["resourceType"] == "MedicationRequest"
                && e["resource"]["status"] == "active"
        })
        .count();
    assert!(active_requests > 0);
    assert_eq!(
        ward_patient["medications"].as_array().unwrap().len(),
        active_requests,
        "{}",
        ward_patient["medications"]
    );
    // Labs: newest first, at most 20.
    let labs = ward_patient["labs"].as_array().unwrap();
    assert_eq!(labs.len(), 20, "{}", ward_patient["labs"]);
    let times: Vec<&str> = labs
        .iter()
        .map(|l| l["effective"].as_str().unwrap())
        .collect();
    let mut sorted = times.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted, "newest first");
    assert!(
        labs[0]["coding"]["system"] == "http://loinc.org",
        "{}",
        labs[0]
    );

    // An allergy, and a condition sited by bodySite (left thigh) rather than by the table.
    post(
        addr,
        "/fhir/AllergyIntolerance",
        &json!({"resourceType": "AllergyIntolerance",
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]},
            "criticality": "high",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "91936005", "display": "Allergy to penicillin"}]},
            "reaction": [{"manifestation": [{"text": "Hives"}]}],
            "patient": {"reference": format!("Patient/{patient}")}}),
    )
    .await;
    post(
        addr,
        "/fhir/Condition",
        &json!({"resourceType": "Condition",
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "13645005", "display": "Chronic obstructive lung disease"}]},
            "bodySite": [{"coding": [{"system": "http://snomed.info/sct", "code": "68367000"},
                                     {"system": "http://snomed.info/sct", "code": "7771000"}]}],
            "subject": {"reference": format!("Patient/{patient}")}}),
    )
    .await;
    let twin = get_json(addr, &format!("/api/v1/patients/{patient}/twin")).await;
    let allergies = twin["patient"]["allergies"].as_array().unwrap();
    assert_eq!(allergies.len(), 1, "{twin}");
    assert_eq!(allergies[0]["display"], "Allergy to penicillin");
    assert_eq!(allergies[0]["criticality"], "high");
    let sited = twin["patient"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["code"] == "13645005")
        .expect("the sited condition")
        .clone();
    assert_eq!(sited["regions"], json!(["thigh_left"]), "bodySite first");

    // Live vitals on the bed's monitor now belong to this patient: SpO2 89% scores 3 on
    // Scale 1 ...
    publish_v311(mqtt, "it-record-1", "dev-1", spo2_vitals(now_ms(), 89.0)).await;
    let news2_path = format!("/api/v1/patients/{patient}/twin");
    let score = eventually("a scale 1 score", || async {
        let twin = get_json(addr, &news2_path).await;
        (twin["news2"]["scale"] == 1).then(|| twin["news2"].clone())
    })
    .await;
    let spo2 = |score: &Value| {
        score["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["parameter"] == "spo2")
            .unwrap()["sub_score"]
            .clone()
    };
    assert_eq!(spo2(&score), 3, "{score}");
    // ... and once the record says chronic hypercapnic respiratory failure (ICD-10-CM J96.12,
    // second coding), Scale 2, where 89% scores 0.
    post(
        addr,
        "/fhir/Condition",
        &json!({"resourceType": "Condition",
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "code": {"coding": [
                {"system": "http://snomed.info/sct", "code": "65710008", "display": "Acute respiratory failure"},
                {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "J96.12", "display": "Chronic respiratory failure with hypercapnia"}]},
            "subject": {"reference": format!("Patient/{patient}")}}),
    )
    .await;
    publish_v311(mqtt, "it-record-2", "dev-1", spo2_vitals(now_ms(), 89.0)).await;
    let score = eventually("a scale 2 score", || async {
        let twin = get_json(addr, &news2_path).await;
        (twin["news2"]["scale"] == 2).then(|| twin["news2"].clone())
    })
    .await;
    assert_eq!(spo2(&score), 0, "{score}");
    assert!(
        score["scale_reason"].as_str().unwrap().contains("J96.12"),
        "{score}"
    );

    // The encounter finishes: the patient leaves the bed.
    let mut finished = encounter(&patient, "finished", "Location/bed-one");
    finished["location"][0]["status"] = json!("completed");
    put(addr, "/fhir/Encounter/stay-1", &finished).await;
    let twin = get_json(addr, &format!("/api/v1/patients/{patient}/twin")).await;
    assert_eq!(twin["patient"]["bed_id"], Value::Null, "{twin}");
    server.shutdown().await;
}

/// `metaward import` of an Encounter at a bed, into a data directory with a ward, admits as
/// `/fhir` does; the server started on that directory shows the patient in the bed with the
/// imported record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_encounter_admits_before_the_server_starts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    {
        let server = server::Server::start(server::ServerConfig::ephemeral(&data))
            .await
            .unwrap();
        server.apply_setup(small_setup()).await.unwrap();
        server.shutdown().await;
    }
    let bundle = json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "emr-7",
            "name": [{"given": ["Grace"], "family": "Hopper"}], "gender": "female", "birthDate": "1936-12-09"}},
        {"resource": {"resourceType": "Condition", "id": "emr-7-copd",
            "clinicalStatus": {"coding": [{"code": "active"}]},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "13645005"}]},
            "subject": {"reference": "Patient/emr-7"}}},
        {"resource": encounter("emr-7", "in-progress", "Location/b1")},
    ]});
    let file = dir.path().join("bundle.json");
    std::fs::write(&file, bundle.to_string()).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_metaward"))
        .arg("import")
        .arg("--data")
        .arg(&data)
        .arg(&file)
        .env("METAWARD_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let server = server::Server::start(server::ServerConfig::ephemeral(&data))
        .await
        .unwrap();
    sign_in_admin(&server).await;
    let twin = get_json(server.http_addr(), "/api/v1/patients/emr-7/twin").await;
    assert_eq!(twin["patient"]["bed_id"], "b1", "{twin}");
    assert_eq!(twin["patient"]["name"], "Grace Hopper");
    assert_eq!(twin["patient"]["conditions"][0]["code"], "13645005");
    // The previous occupant left the bed.
    let p1 = get_json(server.http_addr(), "/api/v1/patients/p1").await;
    assert_eq!(p1["bed_id"], Value::Null);
    server.shutdown().await;
}

/// The next message of `kind` on a stream, skipping the others.
async fn message_of_type<S>(ws: &mut S, kind: &str) -> Value
where
    S: futures::Stream<
            Item = Result<
                tokio_tungstenite::tungstenite::Message,
                tokio_tungstenite::tungstenite::Error,
            >,
        > + Unpin,
{
    loop {
        let message = next_json(ws).await;
        if message["type"] == kind {
            return message;
        }
    }
}

/// A record written through `/fhir` reaches the open streams of the patient's ward at once, as a
/// `patient` message with the new view: the condition with its regions, a medication placed by
/// the condition it is given for, a lab with its flag from the reference range and its region by
/// LOINC. A user of another ward is not sent it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_changes_reach_open_streams_of_the_patients_ward() {
    let (server, _dir) = start_server().await;
    server.apply_setup(small_setup()).await.unwrap();
    let addr = server.http_addr();
    let url_of = |token: &str| format!("ws://{addr}/api/v1/stream?access_token={token}");
    let token_w1 = user_token(&server, "nurse.w1", "nurse", Some(vec!["w1".into()])).await;
    let token_w2 = user_token(&server, "nurse.w2", "nurse", Some(vec!["w2".into()])).await;
    let (mut w1, _) = tokio_tungstenite::connect_async(url_of(&token_w1))
        .await
        .unwrap();
    assert_eq!(next_json(&mut w1).await["type"], "snapshot");
    let (mut w2, _) = tokio_tungstenite::connect_async(url_of(&token_w2))
        .await
        .unwrap();
    assert_eq!(next_json(&mut w2).await["type"], "snapshot");

    let subject = json!({"reference": "Patient/p1"});
    put(
        addr,
        "/fhir/Condition/hf-1",
        &json!({"resourceType": "Condition", "id": "hf-1",
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "88805009", "display": "Chronic congestive heart failure"}]},
            "subject": subject}),
    )
    .await;
    let message = message_of_type(&mut w1, "patient").await;
    let view = &message["items"][0];
    assert_eq!(view["id"], "p1", "{message}");
    assert_eq!(view["bed_id"], "b1");
    let condition = view["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["record_id"] == "hf-1")
        .unwrap_or_else(|| panic!("the new condition: {message}"));
    assert_eq!(
        condition["regions"],
        json!(["heart", "lung_left", "lung_right"])
    );

    post(
        addr,
        "/fhir/MedicationRequest",
        &json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
            "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1719286", "display": "10 ML Furosemide 10 MG/ML Injection"}]},
            "dosageInstruction": [{"text": "40 mg IV once daily"}],
            "authoredOn": "2026-11-24T08:00:00Z",
            "reasonReference": [{"reference": "Condition/hf-1"}],
            "subject": subject}),
    )
    .await;
    let message = message_of_type(&mut w1, "patient").await;
    let medication = &message["items"][0]["medications"][0];
    assert_eq!(
        medication["reasons"],
        json!(["Chronic congestive heart failure"])
    );
    assert_eq!(
        medication["regions"],
        json!(["heart", "lung_left", "lung_right"]),
        "the condition it is given for places it, before the drug table: {medication}"
    );
    assert_eq!(medication["status"], "active");
    assert_eq!(medication["since"], "2026-11-24T08:00:00Z");

    post(
        addr,
        "/fhir/Observation",
        &json!({"resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "33762-6", "display": "NT-proBNP"}]},
            "valueQuantity": {"value": 2400, "unit": "pg/mL", "system": "http://unitsofmeasure.org", "code": "pg/mL"},
            "referenceRange": [{"high": {"value": 125, "unit": "pg/mL"}}],
            "effectiveDateTime": "2026-11-25T06:00:00Z",
            "subject": subject}),
    )
    .await;
    let message = message_of_type(&mut w1, "patient").await;
    let lab = &message["items"][0]["labs"][0];
    assert_eq!(lab["flag"], "H", "{lab}");
    assert_eq!(lab["reference_range"], json!([null, 125.0]));
    assert_eq!(lab["regions"], json!(["heart"]));
    assert_eq!(lab["value"], 2400.0);

    // The other ward's stream carried none of it: a marker through that ward (a presence of
    // its own, answered with nothing, then a bad one answered with an error) comes first.
    w2.send(tokio_tungstenite::tungstenite::Message::Text(
        r#"{"type":"presence","name":"someone else"}"#.into(),
    ))
    .await
    .unwrap();
    let first = next_json(&mut w2).await;
    assert_eq!(first["type"], "error", "nothing of w1 before it: {first}");
    server.shutdown().await;
}
