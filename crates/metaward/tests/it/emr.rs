//! Vitals write-back to an external EMR, against a second metaward instance on loopback as the
//! EMR: vitals over MQTT reach it as Observations with stable identifiers; the EMR goes down
//! in the middle (ingest goes on, the outbox holds), comes back on the same port and data
//! directory, and the still-running ward drains by itself: the ward's credential there is a
//! service token (docs/security.md), which a restart does not end. Every value arrives exactly
//! once (counted by identifier on the EMR). Then the ward restarts during a second outage and
//! its cursor carries on: nothing old sent again, nothing new lost. The ward acts on the EMR as
//! a real user of it, through a token made by the EMR's admin API: no route is opened for it.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use server::sinks::fhir_push::{FhirPushConfig, IDENTIFIER_SYSTEM};
use server::{Server, ServerConfig};

use crate::*;

/// The EMR (a second metaward), with the tests' admin signed in for [`http`].
async fn start_emr(data: &Path, http: SocketAddr) -> Server {
    let mut config = ServerConfig::ephemeral(data);
    config.http = http;
    let emr = Server::start(config).await.expect("the emr starts");
    sign_in_admin(&emr).await;
    emr
}

/// The ward, writing back to the EMR with `token` (writes to the record need an admin there).
async fn start_ward(data: &Path, emr: SocketAddr, token: String) -> Server {
    let mut config = ServerConfig::ephemeral(data);
    let mut push = FhirPushConfig::new(format!("http://{emr}/fhir"));
    push.token = Some(token);
    push.source = "ward-a".into();
    push.poll = Duration::from_millis(100);
    push.backoff_max = Duration::from_millis(500);
    config.emr_push = Some(push);
    let ward = Server::start(config).await.expect("the ward starts");
    sign_in_admin(&ward).await;
    ward
}

fn push_failures(ward: &Server) -> f64 {
    ward.metrics_text()
        .lines()
        .find(|l| l.starts_with("metaward_emr_push_failures_total "))
        .and_then(|l| l.split(' ').nth(1)?.parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// Every identifier value of our Observations on the EMR (all of them, paging through).
async fn pushed_identifiers(emr: SocketAddr) -> Vec<String> {
    let mut values = Vec::new();
    let mut offset = 0;
    loop {
        let page = get_json(
            emr,
            &format!(
                "/fhir/Observation?identifier={IDENTIFIER_SYSTEM}%7C&_count=1000&_offset={offset}"
            ),
        )
        .await;
        let entries = page["entry"].as_array().cloned().unwrap_or_default();
        for entry in &entries {
            values.push(
                entry["resource"]["identifier"][0]["value"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        if entries.len() < 1000 {
            return values;
        }
        offset += entries.len();
    }
}

fn vitals(time: i64, heart_rate: f64) -> String {
    json!({"time": time, "numerics": [
        {"metric": "heart_rate", "value": heart_rate},
        {"metric": "spo2", "value": 97},
    ]})
    .to_string()
}

/// A service token on the EMR for a user `name` with `role` in every ward (docs/security.md):
/// it outlives the EMR's restarts, as an integration's credential must.
async fn emr_service_token(emr: &Server, name: &str, role: &str) -> String {
    emr.create_user(name, role, None)
        .await
        .expect("user created");
    let body = json!({"name": format!("{name}-token"), "kind": "service", "user": name});
    let created = http(
        emr.http_addr(),
        "POST",
        "/api/v1/tokens",
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let token = created.json()["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("mws_"));
    token
}

async fn publish_vitals(mqtt: SocketAddr, range: std::ops::Range<i32>) -> usize {
    for i in range.clone() {
        publish_v311(
            mqtt,
            &format!("it-push-{i}"),
            "dev-1",
            vitals(now_ms(), 70.0 + f64::from(i % 100)),
        )
        .await;
    }
    // Two values per message.
    2 * range.len()
}

/// Waits until the EMR holds `sent` of our values, then checks each is there exactly once.
async fn every_value_once(emr: SocketAddr, sent: usize, what: &str) {
    eventually(what, || async {
        (pushed_identifiers(emr).await.len() >= sent).then_some(())
    })
    .await;
    // A resend after a late answer would show up here as a second resource.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let identifiers = pushed_identifiers(emr).await;
    let unique: HashSet<&String> = identifiers.iter().collect();
    assert_eq!(identifiers.len(), sent, "{what}: every value once");
    assert_eq!(unique.len(), sent, "{what}: no duplicate identifier");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vitals_reach_the_emr_once_across_an_outage_and_a_restart() {
    let emr_dir = tempfile::tempdir().unwrap();
    let ward_dir = tempfile::tempdir().unwrap();
    let emr = start_emr(emr_dir.path(), "127.0.0.1:0".parse().unwrap()).await;
    let emr_addr = emr.http_addr();
    // Writes to the record need an admin there.
    let token = emr_service_token(&emr, "ward-a-push", "admin").await;
    let ward = start_ward(ward_dir.path(), emr_addr, token.clone()).await;
    ward.apply_setup(small_setup()).await.unwrap();

    // Values on patient p1 (dev-1 on bed b1).
    let mut sent = publish_vitals(ward.mqtt_addr(), 0..10).await;
    every_value_once(emr_addr, sent, "the first values at the emr").await;
    let first = get_json(
        emr_addr,
        &format!("/fhir/Observation?identifier={IDENTIFIER_SYSTEM}%7C&_count=1"),
    )
    .await;
    let pushed = &first["entry"][0]["resource"];
    assert_eq!(pushed["subject"]["reference"], "Patient/p1", "{pushed}");
    assert_eq!(pushed["category"][0]["coding"][0]["code"], "vital-signs");
    assert!(
        pushed["identifier"][0]["value"]
            .as_str()
            .unwrap()
            .starts_with("ward-a/")
    );
    // What we push, as the EMR keeps it, is strict R4.
    crate::fhir::check_with_fhir_resources("Observation", pushed);
    // The EMR names who wrote: the service token, for its user.
    let audit = http(emr_addr, "GET", "/api/v1/audit", None).await.body;
    assert!(
        audit.contains("token:ward-a-push-token for ward-a-push"),
        "{audit}"
    );

    // The EMR goes down in the middle; the ward keeps taking vitals, the outbox holds them.
    emr.shutdown().await;
    sent += publish_vitals(ward.mqtt_addr(), 10..25).await;
    // Long enough for several failed attempts and backoffs.
    eventually("failed attempts counted", || async {
        (push_failures(&ward) >= 2.0).then_some(())
    })
    .await;

    // Back on the same port and data: its service token is still good, so the ward, still
    // running and never restarted, drains its outbox by itself: every value once.
    let emr = start_emr(emr_dir.path(), emr_addr).await;
    every_value_once(emr_addr, sent, "the outbox drained by the running ward").await;

    // The ward itself restarts during a second outage: its cursor is where the EMR's answers
    // left it; what was sent before is not sent again, what came during the outage goes.
    emr.shutdown().await;
    sent += publish_vitals(ward.mqtt_addr(), 25..30).await;
    ward.shutdown().await;
    let ward = start_ward(ward_dir.path(), emr_addr, token).await;
    sent += publish_vitals(ward.mqtt_addr(), 30..33).await;
    eventually("the restarted ward's failed attempts", || async {
        (push_failures(&ward) >= 1.0).then_some(())
    })
    .await;
    let emr = start_emr(emr_dir.path(), emr_addr).await;
    every_value_once(emr_addr, sent, "every value after the ward's restart").await;

    // A new value afterwards goes too; nothing old goes again.
    sent += publish_vitals(ward.mqtt_addr(), 33..34).await;
    every_value_once(emr_addr, sent, "the value after the restart").await;
    ward.shutdown().await;
    emr.shutdown().await;
}

async fn put_at(addr: SocketAddr, path: &str, body: Value) {
    let response = http(addr, "PUT", path, Some(&body.to_string())).await;
    assert!(
        matches!(response.status, 200 | 201),
        "PUT {path}: {}",
        response.body
    );
}

fn ward_patient(twin: &Value) -> &Value {
    &twin["patient"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admitted_patients_record_is_pulled_from_the_emr() {
    let emr_dir = tempfile::tempdir().unwrap();
    let ward_dir = tempfile::tempdir().unwrap();
    let emr = start_emr(emr_dir.path(), "127.0.0.1:0".parse().unwrap()).await;
    let emr_addr = emr.http_addr();
    // The EMR knows p1 (the ward's patient in b1) and one who is not on the ward.
    put_at(
        emr_addr,
        "/fhir/Patient/p1",
        json!({"resourceType": "Patient", "id": "p1"}),
    )
    .await;
    let condition = |id: &str, patient: &str, system: &str, code: &str| {
        json!({"resourceType": "Condition", "id": id,
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "code": {"coding": [{"system": system, "code": code}]},
            "subject": {"reference": format!("Patient/{patient}")}})
    };
    put_at(
        emr_addr,
        "/fhir/Condition/emr-c1",
        condition("emr-c1", "p1", "http://snomed.info/sct", "13645005"),
    )
    .await;
    put_at(
        emr_addr,
        "/fhir/Condition/emr-other",
        condition(
            "emr-other",
            "elsewhere",
            "http://snomed.info/sct",
            "49436004",
        ),
    )
    .await;

    // Reading the record needs an observer of every ward on the EMR.
    let token = emr_service_token(&emr, "ward-a-pull", "observer").await;
    let mut config = ServerConfig::ephemeral(ward_dir.path());
    config.emr_pull = Some(server::sources::fhir_pull::FhirPullConfig {
        base_url: format!("http://{emr_addr}/fhir"),
        token: Some(token),
        interval: Duration::from_millis(200),
        link: Default::default(),
        trust: None,
    });
    let ward = Server::start(config).await.expect("the ward starts");
    sign_in_admin(&ward).await;
    ward.apply_setup(small_setup()).await.unwrap();
    let addr = ward.http_addr();

    let twin = eventually("the emr's condition in the twin", || async {
        let twin = get_json(addr, "/api/v1/patients/p1/twin").await;
        let found = ward_patient(&twin)["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["code"] == "13645005" && c["source"] == "record");
        found.then_some(twin)
    })
    .await;
    assert_eq!(
        ward_patient(&twin)["conditions"].as_array().unwrap().len(),
        1,
        "{twin}"
    );
    // Kept in our record under the EMR's id; the other patient's record was not pulled.
    assert_eq!(
        get_json(addr, "/fhir/Condition/emr-c1").await["id"],
        "emr-c1"
    );
    let other = http(addr, "GET", "/fhir/Condition/emr-other", None).await;
    assert_eq!(other.status, 404);

    // Changes after the first poll: a new medication, a new lab, the condition resolved.
    put_at(
        emr_addr,
        "/fhir/MedicationRequest/emr-m1",
        json!({"resourceType": "MedicationRequest", "id": "emr-m1", "status": "active",
            "intent": "order", "subject": {"reference": "Patient/p1"},
            "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "745752", "display": "Albuterol inhaler"}]}}),
    )
    .await;
    put_at(
        emr_addr,
        "/fhir/Observation/emr-lab1",
        json!({"resourceType": "Observation", "id": "emr-lab1", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "2019-8", "display": "Carbon dioxide [Partial pressure] in Arterial blood"}]},
            "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": "2026-11-25T06:00:00Z",
            "valueQuantity": {"value": 58, "unit": "mm[Hg]", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}),
    )
    .await;
    let mut resolved = condition("emr-c1", "p1", "http://snomed.info/sct", "13645005");
    resolved["clinicalStatus"]["coding"][0]["code"] = json!("resolved");
    put_at(emr_addr, "/fhir/Condition/emr-c1", resolved).await;

    let twin = eventually("the changes in the twin", || async {
        let twin = get_json(addr, "/api/v1/patients/p1/twin").await;
        let patient = ward_patient(&twin);
        let done = patient["medications"].as_array().unwrap().len() == 1
            && patient["labs"].as_array().unwrap().len() == 1
            && patient["conditions"].as_array().unwrap().is_empty();
        done.then_some(twin)
    })
    .await;
    let patient = ward_patient(&twin);
    assert_eq!(patient["medications"][0]["display"], "Albuterol inhaler");
    assert_eq!(patient["labs"][0]["value"], 58.0);
    // The resolved condition is a new version of the same resource here too.
    let history = get_json(addr, "/fhir/Condition/emr-c1/_history").await;
    assert_eq!(history["total"], 2, "{history}");
    ward.shutdown().await;
    emr.shutdown().await;
}

/// A hospital whose ward patients are their medical record numbers (HL7 ADT PID-3) and whose
/// EMR has ids of its own: linked by the MRN identifier, both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patients_are_linked_to_the_emr_by_their_record_number() {
    const MRN: &str = "urn:oid:2.16.840.1.113883.19.5";
    let emr_dir = tempfile::tempdir().unwrap();
    let ward_dir = tempfile::tempdir().unwrap();
    let emr = start_emr(emr_dir.path(), "127.0.0.1:0".parse().unwrap()).await;
    let emr_addr = emr.http_addr();
    // At the EMR, ward patient p1 is Patient/emr-4711, with p1 as its MRN.
    put_at(
        emr_addr,
        "/fhir/Patient/emr-4711",
        json!({"resourceType": "Patient", "id": "emr-4711",
            "identifier": [{"system": MRN, "value": "p1"}]}),
    )
    .await;
    put_at(
        emr_addr,
        "/fhir/Condition/emr-c9",
        json!({"resourceType": "Condition", "id": "emr-c9",
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "13645005"}]},
            "subject": {"reference": "Patient/emr-4711"}}),
    )
    .await;

    let token = emr_service_token(&emr, "ward-mrn", "admin").await;
    let link = server::emr_patient::PatientLink::ByIdentifier { system: MRN.into() };
    let mut config = ServerConfig::ephemeral(ward_dir.path());
    config.emr_pull = Some(server::sources::fhir_pull::FhirPullConfig {
        base_url: format!("http://{emr_addr}/fhir"),
        token: Some(token.clone()),
        interval: Duration::from_millis(200),
        link: link.clone(),
        trust: None,
    });
    let mut push = FhirPushConfig::new(format!("http://{emr_addr}/fhir"));
    push.token = Some(token);
    push.source = "ward-mrn".into();
    push.poll = Duration::from_millis(100);
    push.link = link;
    config.emr_push = Some(push);
    let ward = Server::start(config).await.expect("the ward starts");
    sign_in_admin(&ward).await;
    ward.apply_setup(small_setup()).await.unwrap();
    let addr = ward.http_addr();

    // Pulled: the EMR's condition about emr-4711 is p1's here.
    eventually("the emr's condition on p1", || async {
        let twin = get_json(addr, "/api/v1/patients/p1/twin").await;
        ward_patient(&twin)["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["code"] == "13645005")
            .then_some(())
    })
    .await;
    let kept = get_json(addr, "/fhir/Condition/emr-c9").await;
    assert_eq!(kept["subject"]["reference"], "Patient/p1", "{kept}");

    // Pushed: p1's vitals land on emr-4711 at the EMR.
    publish_v311(ward.mqtt_addr(), "it-mrn", "dev-1", vitals(now_ms(), 77.0)).await;
    let pushed = eventually("p1's vitals at the emr", || async {
        let page = get_json(
            emr_addr,
            &format!("/fhir/Observation?identifier={IDENTIFIER_SYSTEM}%7C"),
        )
        .await;
        (page["total"] == 2).then_some(page)
    })
    .await;
    for entry in pushed["entry"].as_array().unwrap() {
        assert_eq!(
            entry["resource"]["subject"]["reference"], "Patient/emr-4711",
            "{entry}"
        );
    }
    ward.shutdown().await;
    emr.shutdown().await;
}

/// A value the EMR will not take (here: its patient is unknown there) is kept as a dead letter
/// on the ward, and does not hold back the values after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_the_emr_refuses_is_kept_and_does_not_block_the_outbox() {
    const MRN: &str = "urn:oid:2.16.840.1.113883.19.5";
    let emr_dir = tempfile::tempdir().unwrap();
    let ward_dir = tempfile::tempdir().unwrap();
    let emr = start_emr(emr_dir.path(), "127.0.0.1:0".parse().unwrap()).await;
    let emr_addr = emr.http_addr();
    let token = emr_service_token(&emr, "ward-refused", "admin").await;
    let mut config = ServerConfig::ephemeral(ward_dir.path());
    let mut push = FhirPushConfig::new(format!("http://{emr_addr}/fhir"));
    push.token = Some(token);
    push.poll = Duration::from_millis(100);
    push.backoff_max = Duration::from_millis(300);
    push.link = server::emr_patient::PatientLink::ByIdentifier { system: MRN.into() };
    config.emr_push = Some(push);
    let ward = Server::start(config).await.expect("the ward starts");
    sign_in_admin(&ward).await;
    ward.apply_setup(small_setup()).await.unwrap();
    let addr = ward.http_addr();

    // p1 is not registered at the EMR yet: both values of this message are refused there.
    publish_v311(
        ward.mqtt_addr(),
        "it-refused-1",
        "dev-1",
        vitals(now_ms(), 71.0),
    )
    .await;
    let dead = eventually("the refused values kept on the ward", || async {
        let dead = get_json(addr, "/api/v1/dead-letters?source=emr_push").await;
        (dead.as_array()?.len() == 2).then_some(dead)
    })
    .await;
    let first = &dead[0];
    assert!(
        first["reason"]
            .as_str()
            .unwrap()
            .starts_with("emr_refused_4"),
        "{first}"
    );
    let raw = String::from_utf8(
        base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            first["raw_base64"].as_str().unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert!(raw.contains("\"resourceType\":\"Observation\""), "{raw}");
    assert!(raw.contains(IDENTIFIER_SYSTEM), "kept as sent: {raw}");
    let metrics = ward.metrics_text();
    assert!(
        metrics.contains("source=\"emr_push\""),
        "the refusals are counted"
    );

    // Once the EMR knows p1, the next values go through: the outbox did not stall.
    put_at(
        emr_addr,
        "/fhir/Patient/emr-1",
        json!({"resourceType": "Patient", "id": "emr-1",
            "identifier": [{"system": MRN, "value": "p1"}]}),
    )
    .await;
    publish_v311(
        ward.mqtt_addr(),
        "it-refused-2",
        "dev-1",
        vitals(now_ms(), 72.0),
    )
    .await;
    eventually("the later values at the emr", || async {
        (pushed_identifiers(emr_addr).await.len() == 2).then_some(())
    })
    .await;
    ward.shutdown().await;
    emr.shutdown().await;
}

/// An HTTPS request to the EMR with its CA trusted (our outbound client; curl and openssl check
/// the same listener in `tls.rs`).
async fn https_json(
    origin: &server::sinks::http_client::Origin,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    let authorization = token.map(|token| format!("Bearer {token}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(authorization) = &authorization {
        headers.push(("Authorization", authorization));
    }
    let answer = server::sinks::http_client::send(
        origin,
        method,
        path,
        &headers,
        body.map(str::as_bytes),
        Duration::from_secs(10),
    )
    .await
    .expect("https to the emr");
    (
        answer.status,
        serde_json::from_slice(&answer.body).unwrap_or(Value::Null),
    )
}

/// The EMR over HTTPS with a self-signed certificate: the ward pushes to it when it trusts that
/// certificate (`[emr] ca_file`), and with only the public roots every attempt fails on the
/// certificate and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vitals_reach_an_https_emr_trusted_through_its_ca_file() {
    use server::sinks::http_client::{Trust, split_url_with};
    let emr_dir = tempfile::tempdir().unwrap();
    let files = server::tls::self_signed(&emr_dir.path().join("tls")).unwrap();
    let mut config = ServerConfig::ephemeral(emr_dir.path().join("data"));
    config.tls = Some(files.clone());
    let emr = Server::start(config).await.expect("the https emr starts");
    let trust = Trust::ca_file(&files.cert).unwrap();
    let base = format!("https://127.0.0.1:{}/fhir", emr.http_addr().port());
    let (origin, _) = split_url_with(&base, Some(&trust)).unwrap();
    let password = emr.create_user("ward-push", "admin", None).await.unwrap();
    let (status, session) = https_json(
        &origin,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(&json!({ "username": "ward-push", "password": password }).to_string()),
    )
    .await;
    assert_eq!(status, 200, "{session}");
    let token = session["access_token"].as_str().unwrap().to_owned();

    let start_https_ward = |data: std::path::PathBuf, trust: Option<Trust>| {
        let (base, token) = (base.clone(), token.clone());
        async move {
            let mut config = ServerConfig::ephemeral(data);
            let mut push = FhirPushConfig::new(base);
            push.token = Some(token);
            push.trust = trust;
            push.source = "ward-tls".into();
            push.poll = Duration::from_millis(100);
            push.backoff_max = Duration::from_millis(500);
            config.emr_push = Some(push);
            let ward = Server::start(config).await.expect("the ward starts");
            ward.apply_setup(small_setup()).await.unwrap();
            ward
        }
    };
    // Public roots only: the self-signed certificate is refused, attempts fail, values wait.
    let untrusting_dir = tempfile::tempdir().unwrap();
    let untrusting = start_https_ward(untrusting_dir.path().to_owned(), None).await;
    publish_v311(
        untrusting.mqtt_addr(),
        "it-tls-0",
        "dev-1",
        vitals(now_ms(), 71.0),
    )
    .await;
    eventually(
        "refused certificates counted as failed attempts",
        || async { (push_failures(&untrusting) >= 2.0).then_some(()) },
    )
    .await;
    untrusting.shutdown().await;

    // With the certificate as the CA file: the values arrive.
    let ward_dir = tempfile::tempdir().unwrap();
    let ward = start_https_ward(ward_dir.path().to_owned(), Some(trust)).await;
    publish_v311(
        ward.mqtt_addr(),
        "it-tls-1",
        "dev-1",
        vitals(now_ms(), 72.0),
    )
    .await;
    let found = eventually("the values at the https emr", || async {
        let (_, bundle) = https_json(
            &origin,
            "GET",
            &format!("/fhir/Observation?identifier={IDENTIFIER_SYSTEM}%7C&_count=100"),
            Some(&token),
            None,
        )
        .await;
        let entries = bundle["entry"].as_array()?.clone();
        (entries.len() >= 2).then_some(entries)
    })
    .await;
    assert!(
        found
            .iter()
            .all(|entry| entry["resource"]["identifier"][0]["value"]
                .as_str()
                .unwrap()
                .starts_with("ward-tls/")),
        "{found:?}"
    );
    assert_eq!(push_failures(&ward), 0.0);
    ward.shutdown().await;
    emr.shutdown().await;
}
