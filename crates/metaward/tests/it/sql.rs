//! Analysts' SQL: the examples in docs/sql.md, read from the document itself, answer the
//! questions they claim to over a ward built here (REST and the `metaward sql` command), and
//! anything but a single read-only statement is refused.

use serde_json::{Value, json};
use store::ConditionRecord;

use crate::*;

/// The SQL under `<!-- example: NAME -->` in docs/sql.md.
fn example(name: &str) -> String {
    let doc = include_str!("../../../../docs/sql.md");
    let marker = format!("<!-- example: {name} -->");
    let after = &doc[doc
        .find(&marker)
        .unwrap_or_else(|| panic!("{marker} in docs/sql.md"))..];
    let start = after.find("```sql\n").unwrap() + "```sql\n".len();
    let end = after[start..].find("```").unwrap();
    after[start..start + end].to_owned()
}

async fn sql(http_addr: std::net::SocketAddr, query: &str) -> Response {
    let body = json!({ "query": query }).to_string();
    http(http_addr, "POST", "/api/v1/sql", Some(&body)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_examples_answer_their_questions() {
    let (server, dir) = start_server_with(|config| config.alarms.physiological.delay_ms = 0).await;
    let mut setup = small_setup();
    setup.patients[0].conditions.push(ConditionRecord {
        system: "http://snomed.info/sct".into(),
        code: "13645005".into(),
        display: "Chronic obstructive lung disease".into(),
        body_site: None,
    });
    server.apply_setup(setup).await.unwrap();
    let (http_addr, mqtt) = (server.http_addr(), server.mqtt_addr());

    // NEWS2 7 (RR 26: 3, SpO2 85 on Scale 1: 3, pulse 100: 1): a high score alarm, and an SpO2
    // alarm; one artefact SpO2 of 70 that the COPD query must not count.
    let payload = json!({ "time": now_ms(), "numerics": [
        { "metric": "respiration_rate", "value": 26 },
        { "metric": "spo2", "value": 85 },
        { "metric": "inhaled_oxygen_flow", "value": 0 },
        { "metric": "nibp_systolic", "value": 120 },
        { "metric": "pulse_rate", "value": 100 },
        { "metric": "consciousness_acvpu", "value": 0 },
        { "metric": "body_temperature", "value": 37.0 },
    ] });
    publish_v311(mqtt, "it-sql-1", "dev-1", payload.to_string()).await;
    let artefact = json!({ "time": now_ms() + 1, "numerics": [
        { "metric": "spo2", "value": 70, "flags": ["artefact"] } ] });
    publish_v311(mqtt, "it-sql-2", "dev-1", artefact.to_string()).await;
    let alarms = get_json(http_addr, "/api/v1/alarms?patient=p1").await;
    let spo2_alarm = alarms
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["condition"] == "spo2")
        .unwrap_or_else(|| panic!("an SpO2 alarm: {alarms}"))["id"]
        .as_u64()
        .unwrap();
    let acked = http(
        http_addr,
        "POST",
        &format!("/api/v1/alarms/{spo2_alarm}/acknowledge"),
        Some(r#"{}"#),
    )
    .await;
    assert_eq!(acked.status, 200, "{}", acked.body);
    // The projector stores vitals a moment after they are acknowledged.
    eventually("the vitals in the store", || async {
        let count = sql(
            http_addr,
            "SELECT count(*) FROM vitals WHERE metric = 'spo2'",
        )
        .await;
        (count.json()["rows"][0][0] == 2).then_some(())
    })
    .await;

    let copd = sql(http_addr, &example("copd_low_spo2")).await;
    assert_eq!(copd.status, 200, "{}", copd.body);
    assert_eq!(
        copd.json()["rows"],
        json!([["p1", "Ada Example", 85.0, 1]]),
        "{}",
        copd.body
    );

    let per_ward = sql(http_addr, &example("news2_alarms_per_ward_per_day"))
        .await
        .json();
    assert_eq!(
        per_ward["columns"],
        json!(["ward", "day", "priority", "alarms"])
    );
    let rows = per_ward["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{per_ward}");
    assert_eq!(rows[0][0], "w1");
    assert_eq!(rows[0][2], "high");
    assert_eq!(rows[0][3], 1);

    let median = sql(http_addr, &example("median_time_to_acknowledge"))
        .await
        .json();
    assert_eq!(median["rows"][0][1], 1, "{median}");
    assert!(median["rows"][0][0].as_f64().unwrap() >= 0.0, "{median}");

    // The command line answers the same, as JSON lines, on the server's data directory.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_metaward"))
        .args(["sql", "--json", "--data"])
        .arg(dir.path().join("data"))
        .arg(example("median_time_to_acknowledge"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(line["acknowledged_alarms"], 1, "{line}");

    // Anything that would write, or read secrets, is refused with a reason.
    for refused in [
        "DELETE FROM vitals",
        "SELECT 1; DROP TABLE vitals",
        "SELECT * FROM device_credentials",
    ] {
        let response = sql(http_addr, refused).await;
        assert_eq!(response.status, 400, "{refused}: {}", response.body);
        assert_eq!(
            response.json()["error"]["code"],
            "not_read_only",
            "{refused}"
        );
    }
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_metaward"))
        .args(["sql", "--data"])
        .arg(dir.path().join("data"))
        .arg("DELETE FROM vitals")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("read-only"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    server.shutdown().await;
}
