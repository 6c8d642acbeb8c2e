//! NEWS2 live over the real sockets: vitals over MQTT give a score with its breakdown, the
//! stream and REST carry it, its band raises a score alarm, the record's diagnosis picks SpO2
//! Scale 2, and an input that grows stale makes the score incomplete, never silently normal.

use clinical::Parameter;
use serde_json::{Value, json};
use store::ConditionRecord;

use crate::*;

/// Reads the stream until a `scores` message for `patient` satisfies `check`.
async fn score_where<S>(ws: &mut S, patient: &str, check: impl Fn(&Value) -> bool) -> Value
where
    S: futures::Stream<
            Item = Result<
                tokio_tungstenite::tungstenite::Message,
                tokio_tungstenite::tungstenite::Error,
            >,
        > + Unpin,
{
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no matching score for {patient}"
        );
        let message = next_json(ws).await;
        if message["type"] == "scores"
            && let Some(score) = message["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["patient_id"] == patient && check(s))
        {
            return score.clone();
        }
    }
}

fn vitals(time: i64, respiration_rate: f64, spo2: f64, oxygen_flow: f64) -> String {
    json!({ "time": time, "numerics": [
        { "metric": "respiration_rate", "value": respiration_rate },
        { "metric": "spo2", "value": spo2 },
        { "metric": "inhaled_oxygen_flow", "value": oxygen_flow },
        { "metric": "nibp_systolic", "value": 120 },
        { "metric": "pulse_rate", "value": 100 },
        { "metric": "consciousness_acvpu", "value": 0 },
        { "metric": "body_temperature", "value": 37.0 },
    ] })
    .to_string()
}

fn sub_score(score: &Value, parameter: &str) -> Value {
    score["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["parameter"] == parameter)
        .unwrap_or_else(|| panic!("{parameter} in {score}"))
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vitals_give_a_streamed_stored_and_alarmed_news2() {
    let (server, _dir) = start_server_with(|config| {
        config
            .news2
            .set_freshness_millis(Parameter::RespirationRate, 3_000);
    })
    .await;
    server.apply_setup(small_setup()).await.unwrap();
    let (http_addr, mqtt) = (server.http_addr(), server.mqtt_addr());
    let (mut ws, _) = tokio_tungstenite::connect_async(stream_url(http_addr, ""))
        .await
        .expect("ws connects");
    assert_eq!(next_json(&mut ws).await["scores"], json!([]));

    // RR 26 scores 3, SpO2 95 scores 1 (Scale 1), pulse 100 scores 1: total 5, medium.
    publish_v311(
        mqtt,
        "it-news2-1",
        "dev-1",
        vitals(now_ms(), 26.0, 95.0, 0.0),
    )
    .await;
    let score = score_where(&mut ws, "p1", |s| s["complete"] == true).await;
    assert_eq!(score["total"], 5, "{score}");
    assert_eq!(score["band"], "medium");
    assert_eq!(score["scale"], 1);
    assert_eq!(sub_score(&score, "respiration_rate")["sub_score"], 3);
    assert_eq!(sub_score(&score, "spo2")["sub_score"], 1);
    assert_eq!(sub_score(&score, "pulse")["sub_score"], 1);
    assert_eq!(sub_score(&score, "air_or_oxygen")["sub_score"], 0);

    // The band raised a medium score alarm; the twin and the history carry the score.
    let alarms = get_json(http_addr, "/api/v1/alarms?patient=p1").await;
    let news2_alarm = alarms
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "score")
        .unwrap_or_else(|| panic!("a score alarm: {alarms}"));
    assert_eq!(news2_alarm["priority"], "medium", "{news2_alarm}");
    assert_eq!(news2_alarm["latched"], true);
    let twin = get_json(http_addr, "/api/v1/patients/p1/twin").await;
    assert_eq!(twin["news2"]["total"], 5, "{twin}");
    let history = get_json(http_addr, "/api/v1/patients/p1/news2/history").await;
    assert_eq!(
        history["points"][0]["sub_scores"]["respiration_rate"], 3,
        "{history}"
    );

    // No new respiration rate for 3 s: the score says it is stale and is incomplete.
    let stale = score_where(&mut ws, "p1", |s| s["complete"] == false).await;
    assert_eq!(
        sub_score(&stale, "respiration_rate")["status"],
        "stale",
        "{stale}"
    );
    assert_eq!(stale["total"], 2, "the rest still counts: {stale}");

    // In the FHIR record: one Observation per patient, a version per change, valid R4.
    let observation = eventually("the NEWS2 Observation in the record", || async {
        let response = http(http_addr, "GET", "/fhir/Observation/news2-p1", None).await;
        (response.status == 200 && response.json()["status"] == "preliminary")
            .then(|| response.json())
    })
    .await;
    assert_eq!(observation["code"]["coding"][0]["code"], "1104051000000101");
    assert_eq!(observation["valueInteger"], 2, "{observation}");
    assert_eq!(observation["subject"]["reference"], "Patient/p1");
    crate::fhir::check_with_fhir_resources("Observation", &observation);
    let history = get_json(http_addr, "/fhir/Observation/news2-p1/_history").await;
    assert!(
        history["total"].as_u64().unwrap_or(0) >= 2,
        "a version per change: {history}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hypercapnic_diagnosis_on_the_record_selects_scale_2() {
    let (server, _dir) = start_server().await;
    let mut setup = small_setup();
    setup.patients[0].conditions.push(ConditionRecord {
        system: "http://snomed.info/sct".into(),
        code: "426896000".into(),
        display: "Chronic hypercapnic respiratory failure".into(),
        body_site: None,
    });
    server.apply_setup(setup).await.unwrap();
    let (http_addr, mqtt) = (server.http_addr(), server.mqtt_addr());
    // SpO2 89% on air: 0 on Scale 2 (88–92), where Scale 1 would score 3.
    publish_v311(
        mqtt,
        "it-news2-2",
        "dev-1",
        vitals(now_ms(), 16.0, 89.0, 0.0),
    )
    .await;
    let twin = get_json(http_addr, "/api/v1/patients/p1/twin").await;
    let score = &twin["news2"];
    assert_eq!(score["scale"], 2, "{twin}");
    assert_eq!(sub_score(score, "spo2")["sub_score"], 0, "{score}");
    assert!(
        score["scale_reason"]
            .as_str()
            .unwrap()
            .contains("426896000"),
        "the reason names the diagnosis: {score}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_regions_and_trends_for_the_avatar() {
    let (server, _dir) = start_server().await;
    let mut setup = small_setup();
    setup.patients[0].conditions.push(ConditionRecord {
        system: "http://snomed.info/sct".into(),
        code: "13645005".into(),
        display: "Chronic obstructive lung disease".into(),
        body_site: None,
    });
    server.apply_setup(setup).await.unwrap();
    let (http_addr, mqtt) = (server.http_addr(), server.mqtt_addr());
    // A wrist oximeter on p1 since an hour ago, its SpO2 falling over half an hour, 98 → 91.
    let now = now_ms();
    let registered = http(
        http_addr,
        "POST",
        "/api/v1/devices",
        Some(r#"{"id": "wrist-7", "kind": "wearable", "model": "oximeter"}"#),
    )
    .await;
    assert_eq!(registered.status, 201, "{}", registered.body);
    let association = json!({ "device_id": "wrist-7", "target_kind": "patient",
                              "target_id": "p1", "from": now - 3_600_000 });
    let associated = http(
        http_addr,
        "POST",
        "/api/v1/associations",
        Some(&association.to_string()),
    )
    .await;
    assert_eq!(associated.status, 201, "{}", associated.body);
    for (i, spo2) in [98.0, 96.0, 94.0, 91.0].into_iter().enumerate() {
        let time = now - (30 - 10 * i as i64) * 60_000;
        let client = format!("it-trend-{i}");
        publish_v311(mqtt, &client, "wrist-7", numeric(time, "spo2", spo2)).await;
    }
    let regions = get_json(http_addr, "/api/v1/patients/p1/regions").await;
    let region = |key: &str| {
        regions
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["region"] == key)
            .unwrap_or_else(|| panic!("{key} in {regions}"))
            .clone()
    };
    // SpO2 91 scores 3: its finger is critical; the COPD lungs show the condition.
    assert_eq!(region("finger_left")["state"], "critical", "{regions}");
    assert_eq!(region("lung_left")["state"], "condition", "{regions}");
    assert_eq!(region("lung_left")["reasons"][0]["code"], "13645005");
    let twin = get_json(http_addr, "/api/v1/patients/p1/twin").await;
    assert_eq!(twin["regions"], regions);

    let trends = eventually("four SpO2 values in the store", || async {
        let trends = get_json(
            http_addr,
            "/api/v1/patients/p1/trends?metric=spo2&windows=15m,1h",
        )
        .await;
        (trends["trends"][1]["n"] == 4).then_some(trends)
    })
    .await;
    let hour = &trends["trends"][1];
    assert_eq!(hour["baseline"], 98.0, "{trends}");
    assert_eq!(hour["latest"], 91.0);
    assert_eq!(hour["change"], -7.0);
    assert!(
        (hour["slope_per_hour"].as_f64().unwrap() - -13.8).abs() < 0.01,
        "{trends}"
    );
    assert_eq!(trends["trends"][0]["n"], 2, "the last 15 minutes: {trends}");
    let bad = http(
        http_addr,
        "GET",
        "/api/v1/patients/p1/trends?metric=spo2&windows=2d",
        None,
    )
    .await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prescribed_target_of_88_to_92_selects_scale_2() {
    let (server, _dir) = start_server().await;
    server.apply_setup(small_setup()).await.unwrap();
    let (http_addr, mqtt) = (server.http_addr(), server.mqtt_addr());
    publish_v311(
        mqtt,
        "it-target-1",
        "dev-1",
        vitals(now_ms(), 16.0, 89.0, 0.0),
    )
    .await;
    let twin = get_json(http_addr, "/api/v1/patients/p1/twin").await;
    assert_eq!(
        twin["news2"]["scale"], 1,
        "no prescription, no diagnosis: {twin}"
    );
    assert_eq!(sub_score(&twin["news2"], "spo2")["sub_score"], 3);

    let bad = http(
        http_addr,
        "PUT",
        "/api/v1/patients/p1/oxygen-target",
        Some(r#"{"low_percent": 92, "high_percent": 88, "by": "dr.wang"}"#),
    )
    .await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    let set = http(
        http_addr,
        "PUT",
        "/api/v1/patients/p1/oxygen-target",
        Some(r#"{"low_percent": 88, "high_percent": 92, "by": "dr.wang"}"#),
    )
    .await;
    assert_eq!(set.status, 200, "{}", set.body);
    assert_eq!(
        get_json(http_addr, "/api/v1/patients/p1/oxygen-target").await["oxygen_target"]["set_by"],
        "dr.wang"
    );
    // Within a second the score is on Scale 2, saying why: 89% scores 0 there.
    let twin = eventually("NEWS2 on scale 2", || async {
        let twin = get_json(http_addr, "/api/v1/patients/p1/twin").await;
        (twin["news2"]["scale"] == 2).then_some(twin)
    })
    .await;
    assert_eq!(sub_score(&twin["news2"], "spo2")["sub_score"], 0, "{twin}");
    assert!(
        twin["news2"]["scale_reason"]
            .as_str()
            .unwrap()
            .contains("88"),
        "{twin}"
    );
    assert_eq!(twin["patient"]["oxygen_target"], json!([88.0, 92.0]));

    let withdrawn = http(
        http_addr,
        "DELETE",
        "/api/v1/patients/p1/oxygen-target",
        None,
    )
    .await;
    assert_eq!(withdrawn.status, 200);
    eventually("NEWS2 back on scale 1", || async {
        let twin = get_json(http_addr, "/api/v1/patients/p1/twin").await;
        (twin["news2"]["scale"] == 1).then_some(())
    })
    .await;
    server.shutdown().await;
}
