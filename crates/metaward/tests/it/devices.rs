//! Devices' technical state over the real sockets: heard from over MQTT, served by REST with
//! last seen, rate, battery and flagged values, marked offline after the configured silence,
//! and that change streamed.

use futures::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::*;

fn technical_of<'a>(list: &'a Value, device: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|d| d["device_id"] == device)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn technical_state_tracks_battery_flags_and_silence() {
    let (server, _dir) = start_server_with(|config| config.devices.offline_after_ms = 2_000).await;
    server.apply_setup(small_setup()).await.unwrap();
    let (http_addr, mqtt) = (server.http_addr(), server.mqtt_addr());
    let (mut ws, _) = tokio_tungstenite::connect_async(stream_url(http_addr, ""))
        .await
        .expect("ws connects");
    assert_eq!(next_json(&mut ws).await["type"], "snapshot");

    // A registered monitor reporting its battery and one value it flags itself, and an
    // unregistered stranger.
    let t = now_ms();
    let payload = json!({ "time": t, "battery": 64.0, "numerics": [
        { "metric": "heart_rate", "value": 70.0 },
        { "metric": "spo2", "value": 40.0, "flags": ["artefact"] },
    ] });
    publish_v311(mqtt, "it-tech-1", "dev-1", payload.to_string()).await;
    publish_v311(mqtt, "it-tech-2", "stranger-9", numeric(t, "spo2", 95.0)).await;

    let listed = get_json(http_addr, "/api/v1/devices/technical").await;
    let monitor = technical_of(&listed, "dev-1")
        .expect("dev-1 listed")
        .clone();
    assert_eq!(monitor["online"], true, "{monitor}");
    assert_eq!(monitor["registered"], true, "{monitor}");
    assert_eq!(monitor["source"], "mqtt");
    assert_eq!(monitor["messages_total"], 1);
    assert_eq!(monitor["battery"], 64.0, "{monitor}");
    assert_eq!(monitor["signal"]["values_last_minute"], 3, "{monitor}");
    assert_eq!(
        monitor["signal"]["device_flagged_last_minute"], 1,
        "{monitor}"
    );
    assert!(monitor["messages_per_minute"].as_f64().unwrap() > 0.0);
    let stranger = technical_of(&listed, "stranger-9").expect("stranger listed");
    assert_eq!(stranger["registered"], false, "{stranger}");
    let unassociated = get_json(http_addr, "/api/v1/devices/unassociated").await;
    assert_eq!(
        technical_of(&unassociated, "stranger-9").expect("stranger unassociated")["technical"]["online"],
        true
    );
    let device = get_json(http_addr, "/api/v1/devices/dev-1").await;
    assert_eq!(device["technical"]["battery"], 64.0, "{device}");

    // Silence: both go offline after two seconds, and subscribers are told.
    let deadline = std::time::Instant::now() + DEADLINE;
    let mut offline_streamed = false;
    while !offline_streamed {
        assert!(std::time::Instant::now() < deadline, "no offline message");
        let message = next_json(&mut ws).await;
        if message["type"] == "devices" {
            offline_streamed = message["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d["device_id"] == "dev-1" && d["online"] == false);
        }
    }
    // The stranger spoke a moment after dev-1, so it may go offline a tick later.
    eventually("both devices offline", || async {
        let listed = get_json(http_addr, "/api/v1/devices/technical").await;
        ["dev-1", "stranger-9"]
            .iter()
            .all(|id| technical_of(&listed, id).unwrap()["online"] == false)
            .then_some(())
    })
    .await;

    // Heard from again: back online, and streamed as such.
    publish_v311(
        mqtt,
        "it-tech-3",
        "dev-1",
        numeric(now_ms(), "heart_rate", 71.0),
    )
    .await;
    let device = get_json(http_addr, "/api/v1/devices/dev-1").await;
    assert_eq!(device["technical"]["online"], true, "{device}");
    assert_eq!(device["technical"]["messages_total"], 2, "{device}");
    let _ = ws.send(Message::Close(None)).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_device_is_remembered_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(ServerConfig::ephemeral(&data)).await.unwrap();
    sign_in_admin(&server).await;
    server.apply_setup(small_setup()).await.unwrap();
    let t = now_ms();
    publish_v311(
        server.mqtt_addr(),
        "it-restart",
        "dev-1",
        numeric(t, "heart_rate", 70.0),
    )
    .await;
    let http_addr = server.http_addr();
    eventually(
        "the store records when dev-1 was last heard from",
        || async {
            let device = get_json(http_addr, "/api/v1/devices/dev-1").await;
            device["last_seen"].as_i64().filter(|seen| *seen >= t)
        },
    )
    .await;
    server.shutdown().await;

    let server = Server::start(ServerConfig::ephemeral(&data)).await.unwrap();
    sign_in_admin(&server).await;
    let device = get_json(server.http_addr(), "/api/v1/devices/dev-1").await;
    let technical = &device["technical"];
    assert!(technical["last_seen"].as_i64().unwrap() >= t, "{device}");
    assert_eq!(
        technical["messages_total"], 0,
        "no message since the restart: {device}"
    );
    server.shutdown().await;
}
