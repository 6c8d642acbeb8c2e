//! Ingest through the real MQTT socket, visible in the twin, the history, the live stream,
//! the dead letters and the metrics.

use std::time::Duration;

use futures::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_data_reaches_twin_history_and_stream() {
    let (server, _dir) = start_server().await;
    server.apply_setup(small_setup()).await.unwrap();
    let (http_addr, mqtt) = (server.http_addr(), server.mqtt_addr());

    // The live stream: a snapshot first.
    let (mut ws, _) = tokio_tungstenite::connect_async(stream_url(http_addr, ""))
        .await
        .expect("ws connects");
    let snapshot = next_json(&mut ws).await;
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    assert_eq!(snapshot["wards"][0]["id"], "w1", "{snapshot}");
    assert_eq!(
        snapshot["wards"][0]["rooms"][0]["beds"][0]["id"], "b1",
        "{snapshot}"
    );
    let patient = snapshot["patients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "p1")
        .expect("p1 in snapshot")
        .clone();
    assert_eq!(patient["bed_id"], "b1");

    // A documented payload, QoS 1, acknowledged.
    let t1 = now_ms();
    publish_v311(
        mqtt,
        "it-ingest-1",
        "dev-1",
        numeric(t1, "heart_rate", 72.0),
    )
    .await;

    let twin = eventually("heart_rate 72 in the twin", || async {
        let twin = get_json(http_addr, "/api/v1/patients/p1/twin").await;
        has_value(&twin["values"], "heart_rate", 72.0).then_some(twin)
    })
    .await;
    assert_eq!(twin["patient"]["id"], "p1");
    eventually("heart_rate 72 in the history", || async {
        let history = get_json(http_addr, "/api/v1/patients/p1/history?metric=heart_rate").await;
        history["points"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["time"] == t1 && p["value"] == 72.0 && p["device_id"] == "dev-1")
            .then_some(())
    })
    .await;

    // The stream carries it as a `values` message, and a later one too.
    let t2 = now_ms() + 1;
    publish_v311(
        mqtt,
        "it-ingest-2",
        "dev-1",
        numeric(t2, "heart_rate", 91.0),
    )
    .await;
    let start = std::time::Instant::now();
    let (mut saw_72, mut saw_91) = (false, false);
    while !(saw_72 && saw_91) {
        assert!(
            start.elapsed() < DEADLINE,
            "stream did not deliver both values (72: {saw_72}, 91: {saw_91})"
        );
        let message = next_json(&mut ws).await;
        if message["type"] == "values" {
            for item in message["items"].as_array().unwrap() {
                if item["metric"] == "heart_rate" && item["patient_id"] == "p1" {
                    saw_72 |= item["value"] == 72.0;
                    saw_91 |= item["value"] == 91.0;
                }
            }
        }
    }
    let _ = ws.send(Message::Close(None)).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_payload_is_dead_lettered_with_mqtt5_reason_and_counted() {
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason};
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};

    let (server, _dir) = start_server().await;
    server.apply_setup(small_setup()).await.unwrap();
    let (http_addr, mqtt) = (server.http_addr(), server.mqtt_addr());

    // One good message first, so the counters have both kinds.
    publish_v311(
        mqtt,
        "it-dl-good",
        "dev-1",
        numeric(now_ms(), "heart_rate", 70.0),
    )
    .await;

    let options = MqttOptions::new("it-dl-v5", mqtt.ip().to_string(), mqtt.port());
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    let bad =
        json!({ "time": now_ms(), "numerics": [ { "metric": "no_such_metric_xyz", "value": 1 } ] })
            .to_string();
    client
        .publish(
            "metaward/v1/devices/dev-1/obs",
            QoS::AtLeastOnce,
            false,
            bad,
        )
        .await
        .unwrap();
    let reason = tokio::time::timeout(DEADLINE, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(ack))) => return ack.reason,
                Ok(_) => {}
                Err(error) => panic!("mqtt5 error: {error}"),
            }
        }
    })
    .await
    .expect("a PUBACK for the bad payload");
    assert_eq!(
        reason,
        PubAckReason::PayloadFormatInvalid,
        "MQTT 5 PUBACK reason should be 0x99"
    );
    let _ = client.disconnect().await;

    // The store follows the log: poll until the projector has written the dead letter.
    let letter = eventually("the dead letter listed", || async {
        let letters = get_json(http_addr, "/api/v1/dead-letters").await;
        letters
            .as_array()
            .unwrap()
            .iter()
            .find(|d| {
                d["raw"]
                    .as_str()
                    .is_some_and(|raw| raw.contains("no_such_metric_xyz"))
            })
            .cloned()
    })
    .await;
    assert_eq!(letter["reason"], "payload", "{letter}");
    assert_eq!(letter["source"], "mqtt", "{letter}");
    // The bytes exactly as received, and filters by source and reason.
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(letter["raw_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        String::from_utf8(raw).unwrap(),
        letter["raw"].as_str().unwrap()
    );
    let filtered = get_json(http_addr, "/api/v1/dead-letters?source=mqtt&reason=payload").await;
    assert!(
        filtered
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["source"] == "mqtt" && d["reason"] == "payload")
            && !filtered.as_array().unwrap().is_empty(),
        "{filtered}"
    );
    let other = get_json(http_addr, "/api/v1/dead-letters?source=hl7").await;
    assert_eq!(other, serde_json::json!([]), "{other}");

    let metrics = http(http_addr, "GET", "/metrics", None).await;
    assert_eq!(metrics.status, 200);
    let sample = |name: &str, labels: &[&str]| -> f64 {
        metrics
            .body
            .lines()
            .filter(|l| {
                l.starts_with(name)
                    && l[name.len()..].starts_with('{')
                    && labels.iter().all(|lab| l.contains(lab))
            })
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum()
    };
    let rejected = sample(
        "metaward_messages_rejected_total",
        &["source=\"mqtt\"", "reason=\"payload\""],
    );
    assert_eq!(rejected, 1.0, "metrics:\n{}", metrics.body);
    let received = sample("metaward_messages_received_total", &["source=\"mqtt\""]);
    let accepted = sample("metaward_messages_accepted_total", &["source=\"mqtt\""]);
    let rejected_all = sample("metaward_messages_rejected_total", &["source=\"mqtt\""]);
    assert_eq!(received, 2.0, "metrics:\n{}", metrics.body);
    assert_eq!(
        received,
        accepted + rejected_all,
        "received = accepted + rejected; metrics:\n{}",
        metrics.body
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unregistered_device_data_is_unassociated() {
    let (server, _dir) = start_server().await;
    server.apply_setup(small_setup()).await.unwrap();
    let (http_addr, mqtt) = (server.http_addr(), server.mqtt_addr());

    publish_v311(
        mqtt,
        "it-stranger",
        "stranger-1",
        numeric(now_ms(), "spo2", 93.0),
    )
    .await;
    eventually("stranger-1 among unassociated devices", || async {
        let list = get_json(http_addr, "/api/v1/devices/unassociated").await;
        list.as_array()
            .unwrap()
            .iter()
            .any(|d| d["device_id"] == "stranger-1" && has_value(&d["values"], "spo2", 93.0))
            .then_some(())
    })
    .await;
    let twin = get_json(http_addr, "/api/v1/patients/p1/twin").await;
    assert!(
        !twin["values"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["device_id"] == "stranger-1"),
        "stranger data on a patient: {twin}"
    );
    let history = get_json(http_addr, "/api/v1/patients/p1/history?metric=spo2").await;
    assert!(
        history["points"].as_array().unwrap().is_empty(),
        "stranger data in p1 history: {history}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn association_over_time_decides_attribution() {
    let (server, _dir) = start_server().await;
    server.apply_setup(small_setup()).await.unwrap();
    let (http_addr, mqtt) = (server.http_addr(), server.mqtt_addr());

    let registered = http(
        http_addr,
        "POST",
        "/api/v1/devices",
        Some(r#"{"id":"patch-2","kind":"wearable","model":"Temp Patch"}"#),
    )
    .await;
    assert_eq!(registered.status, 201, "{}", registered.body);

    let t0 = now_ms() - 10_000;
    let body =
        json!({ "device_id": "patch-2", "target_kind": "patient", "target_id": "p1", "from": t0 })
            .to_string();
    let associated = http(http_addr, "POST", "/api/v1/associations", Some(&body)).await;
    assert_eq!(associated.status, 201, "{}", associated.body);
    let open = get_json(http_addr, "/api/v1/associations").await;
    assert!(
        open.as_array()
            .unwrap()
            .iter()
            .any(|a| a["device_id"] == "patch-2" && a["target_id"] == "p1"),
        "{open}"
    );

    // While associated: the patient's.
    publish_v311(
        mqtt,
        "it-assoc-1",
        "patch-2",
        numeric(t0 + 1_000, "body_temperature", 37.5),
    )
    .await;
    eventually("37.5 from patch-2 in p1's history", || async {
        let history = get_json(
            http_addr,
            "/api/v1/patients/p1/history?metric=body_temperature",
        )
        .await;
        history["points"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["value"] == 37.5 && p["device_id"] == "patch-2")
            .then_some(())
    })
    .await;
    let twin = get_json(http_addr, "/api/v1/patients/p1/twin").await;
    assert!(
        has_value(&twin["values"], "body_temperature", 37.5),
        "{twin}"
    );

    // Ended: no one's.
    let end = json!({ "at": t0 + 2_000 }).to_string();
    let ended = http(
        http_addr,
        "POST",
        "/api/v1/devices/patch-2/associations/end",
        Some(&end),
    )
    .await;
    assert_eq!(ended.status, 200, "{}", ended.body);
    publish_v311(
        mqtt,
        "it-assoc-2",
        "patch-2",
        numeric(t0 + 3_000, "body_temperature", 38.4),
    )
    .await;
    eventually("patch-2 unassociated with 38.4", || async {
        let list = get_json(http_addr, "/api/v1/devices/unassociated").await;
        list.as_array()
            .unwrap()
            .iter()
            .any(|d| {
                d["device_id"] == "patch-2" && has_value(&d["values"], "body_temperature", 38.4)
            })
            .then_some(())
    })
    .await;
    // A later, attributed marker: once it is in the history, the projector is past 38.4.
    publish_v311(
        mqtt,
        "it-assoc-3",
        "dev-1",
        numeric(now_ms(), "heart_rate", 66.0),
    )
    .await;
    eventually("marker in history", || async {
        let history = get_json(http_addr, "/api/v1/patients/p1/history?metric=heart_rate").await;
        history["points"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["value"] == 66.0)
            .then_some(())
    })
    .await;
    let history = get_json(
        http_addr,
        "/api/v1/patients/p1/history?metric=body_temperature",
    )
    .await;
    assert!(
        !history["points"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["value"] == 38.4),
        "unassociated data on p1: {history}"
    );
    let twin = get_json(http_addr, "/api/v1/patients/p1/twin").await;
    assert!(
        !has_value(&twin["values"], "body_temperature", 38.4),
        "unassociated data in p1's twin: {twin}"
    );
    let associations = get_json(http_addr, "/api/v1/devices/patch-2/associations").await;
    assert_eq!(associations[0]["to"], t0 + 2_000, "{associations}");
    tokio::time::sleep(Duration::from_millis(1)).await;
    server.shutdown().await;
}
