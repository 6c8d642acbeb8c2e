//! A third-party client: mosquitto_pub (Debian package mosquitto-clients).

use std::path::Path;
use std::sync::Arc;

use crate::support::*;

const MOSQUITTO_PUB: &str = "/usr/bin/mosquitto_pub";

async fn mosquitto_pub(version: &'static str) {
    if !Path::new(MOSQUITTO_PUB).exists() {
        println!("skipped: {MOSQUITTO_PUB} is not installed (Debian package mosquitto-clients)");
        return;
    }
    let handler = Arc::new(RecordingHandler::default());
    let broker = start(handler.clone()).await;
    let port = broker.local_addr().port().to_string();
    let topic = format!("metaward/v1/devices/mosq-{version}/obs");
    let args = [
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-V",
        version,
        "-q",
        "1",
        "-i",
        version,
        "-t",
        &topic,
        "-m",
        "{\"time\":1764045600123,\"numerics\":[{\"metric\":\"heart_rate\",\"value\":72}]}",
    ]
    .map(String::from);
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(MOSQUITTO_PUB)
            .args(args)
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(
        output.status.success(),
        "mosquitto_pub -V {version} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(handler.topics(), [topic]);
    broker.shutdown().await;
}

#[tokio::test]
async fn mosquitto_pub_v311_qos1() {
    mosquitto_pub("mqttv311").await;
}

#[tokio::test]
async fn mosquitto_pub_v5_qos1() {
    mosquitto_pub("mqttv5").await;
}
