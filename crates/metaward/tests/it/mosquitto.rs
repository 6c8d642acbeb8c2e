//! A real third-party MQTT 3.1.1 client: Debian's `mosquitto_pub`.

use crate::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_pub_reaches_the_twin() {
    let mosquitto_pub = "/usr/bin/mosquitto_pub";
    assert!(
        std::path::Path::new(mosquitto_pub).exists(),
        "{mosquitto_pub} is missing: run scripts/test, which installs mosquitto-clients"
    );
    let (server, _dir) = start_server().await;
    server.apply_setup(small_setup()).await.unwrap();
    let (http_addr, mqtt) = (server.http_addr(), server.mqtt_addr());

    let payload = numeric(now_ms(), "heart_rate", 64.0);
    let port = mqtt.port().to_string();
    let topic = "metaward/v1/devices/dev-1/obs";
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(mosquitto_pub)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-V",
                "mqttv311",
                "-q",
                "1",
                "-i",
                "it-mosquitto",
                "-t",
                topic,
                "-m",
                &payload,
            ])
            .output()
    })
    .await
    .unwrap()
    .expect("mosquitto_pub runs");
    assert!(
        output.status.success(),
        "mosquitto_pub failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    eventually("heart_rate 64 from mosquitto_pub in the twin", || async {
        let twin = get_json(http_addr, "/api/v1/patients/p1/twin").await;
        has_value(&twin["values"], "heart_rate", 64.0).then_some(())
    })
    .await;
    server.shutdown().await;
}
