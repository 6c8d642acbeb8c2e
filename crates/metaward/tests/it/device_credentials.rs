//! Per-device MQTT credentials on the embedded broker: set, rotate and revoke over REST, checked
//! at CONNECT (0x86 / 3.1.1 return code 4) and at PUBLISH (a device only on its own topic,
//! 0x87), with rumqttc (v5 and 3.1.1) and Debian's mosquitto_pub as clients. Also SenML over
//! the real socket.

use std::process::Output;

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Packet, PubAckReason, PublishProperties};
use rumqttc::v5::{AsyncClient, ConnectionError, Event, MqttOptions};
use serde_json::{Value, json};
use server::sources::mqtt::DeviceAuth;

use crate::*;

const MOSQUITTO_PUB: &str = "/usr/bin/mosquitto_pub";

/// A server like [`start_server`], with a device policy.
async fn start_server_with_auth(policy: DeviceAuth) -> (Server, tempfile::TempDir) {
    start_server_with(|config| config.mqtt_device_auth = policy).await
}

/// How a v5 publish ended: the CONNACK refusal or the PUBACK reason.
#[derive(Debug, PartialEq)]
enum Answer {
    Refused(ConnectReturnCode),
    PubAck(PubAckReason),
}

async fn publish_v5(
    mqtt: SocketAddr,
    client_id: &str,
    credentials: Option<(&str, &str)>,
    topic: &str,
    payload: String,
    content_type: Option<&str>,
) -> Answer {
    let mut options = MqttOptions::new(client_id, mqtt.ip().to_string(), mqtt.port());
    if let Some((username, password)) = credentials {
        options.set_credentials(username, password);
    }
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    let properties = PublishProperties {
        content_type: content_type.map(str::to_owned),
        ..PublishProperties::default()
    };
    client
        .publish_with_properties(topic, QoS::AtLeastOnce, false, payload, properties)
        .await
        .unwrap();
    let answer = tokio::time::timeout(DEADLINE, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(ack))) => return Answer::PubAck(ack.reason),
                Ok(_) => {}
                Err(ConnectionError::ConnectionRefused(code)) => return Answer::Refused(code),
                Err(error) => panic!("mqtt5 error: {error}"),
            }
        }
    })
    .await
    .expect("an answer from the broker");
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), eventloop.poll()).await;
    answer
}

async fn mosquitto_pub(args: Vec<String>) -> Output {
    assert!(
        std::path::Path::new(MOSQUITTO_PUB).exists(),
        "{MOSQUITTO_PUB} is missing: run scripts/test, which installs mosquitto-clients"
    );
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(MOSQUITTO_PUB)
            .args(&args)
            .output()
    })
    .await
    .unwrap()
    .expect("mosquitto_pub runs")
}

fn pub_args(
    mqtt: SocketAddr,
    version: &str,
    user: Option<(&str, &str)>,
    device: &str,
    payload: &str,
) -> Vec<String> {
    let mut args: Vec<String> = [
        "-h",
        "127.0.0.1",
        "-p",
        &mqtt.port().to_string(),
        "-V",
        version,
        "-q",
        "1",
        "-t",
        &format!("metaward/v1/devices/{device}/obs"),
        "-m",
        payload,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some((username, password)) = user {
        args.extend(["-u".into(), username.into(), "-P".into(), password.into()]);
    }
    args
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
    .to_lowercase()
}

async fn set_credential(http_addr: SocketAddr, device: &str) -> String {
    let response = http(
        http_addr,
        "PUT",
        &format!("/api/v1/devices/{device}/credential"),
        None,
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.body);
    let body = response.json();
    assert_eq!(body["username"], device);
    body["secret"].as_str().unwrap().to_owned()
}

fn sample(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with(name)
                && l[name.len()..].starts_with('{')
                && labels.iter().all(|lab| l.contains(lab))
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

async fn register(http_addr: SocketAddr, device: &str) {
    let response = http(
        http_addr,
        "POST",
        "/api/v1/devices",
        Some(&json!({ "id": device, "kind": "wearable", "model": "Patch" }).to_string()),
    )
    .await;
    assert_eq!(response.status, 201, "{}", response.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_credentials_bind_a_device_to_its_own_topic() {
    let (server, _dir) = start_server_with_auth(DeviceAuth::Optional).await;
    server.apply_setup(small_setup()).await.unwrap();
    let (http_addr, mqtt) = (server.http_addr(), server.mqtt_addr());
    register(http_addr, "dev-2").await;

    // Only registered devices get a credential.
    let response = http(http_addr, "PUT", "/api/v1/devices/nope/credential", None).await;
    assert_eq!(response.status, 404, "{}", response.body);
    let secret = set_credential(http_addr, "dev-1").await;
    assert_eq!(secret.len(), 64);
    // The hash is stored, never the secret.
    let stored: String = server
        .stores()
        .read(|store| {
            store
                .connection()
                .query_row(
                    "SELECT secret_hash FROM device_credentials WHERE device_id = 'dev-1'",
                    [],
                    |row| row.get(0),
                )
                .unwrap()
        })
        .await
        .unwrap();
    assert!(stored.starts_with("$argon2id$"), "{stored}");
    assert!(!stored.contains(&secret));

    // mosquitto_pub with the right username and secret: accepted, in the twin.
    let good = numeric(now_ms(), "heart_rate", 66.0);
    let output = mosquitto_pub(pub_args(
        mqtt,
        "mqttv5",
        Some(("dev-1", &secret)),
        "dev-1",
        &good,
    ))
    .await;
    assert!(output.status.success(), "{}", text(&output));
    eventually("heart_rate 66 from the authenticated device", || async {
        let twin = get_json(http_addr, "/api/v1/patients/p1/twin").await;
        has_value(&twin["values"], "heart_rate", 66.0).then_some(())
    })
    .await;

    // A wrong secret: CONNACK 0x86 (v5), return code 4 (3.1.1).
    for version in ["mqttv5", "mqttv311"] {
        let output = mosquitto_pub(pub_args(
            mqtt,
            version,
            Some(("dev-1", "wrong")),
            "dev-1",
            &good,
        ))
        .await;
        assert!(!output.status.success(), "{version}: {}", text(&output));
        assert!(
            text(&output).contains("bad user name or password"),
            "{version}: {}",
            text(&output)
        );
    }
    // A device that has no credential cannot be claimed with a username either.
    let output = mosquitto_pub(pub_args(
        mqtt,
        "mqttv5",
        Some(("dev-2", &secret)),
        "dev-2",
        &good,
    ))
    .await;
    assert!(
        text(&output).contains("bad user name or password"),
        "{}",
        text(&output)
    );

    // dev-1 publishing on dev-2's topic: PUBACK 0x87 not authorized.
    let output = mosquitto_pub(pub_args(
        mqtt,
        "mqttv5",
        Some(("dev-1", &secret)),
        "dev-2",
        &good,
    ))
    .await;
    assert!(
        text(&output).contains("not authorized"),
        "{}",
        text(&output)
    );
    assert_eq!(
        publish_v5(
            mqtt,
            "it-cred-other",
            Some(("dev-1", &secret)),
            "metaward/v1/devices/dev-2/obs",
            good.clone(),
            None
        )
        .await,
        Answer::PubAck(PubAckReason::NotAuthorized)
    );
    // MQTT 3.1.1 has no negative PUBACK, and QoS 0 no PUBACK at all: the publish is answered
    // (kept as a dead letter) but not ingested, and counted.
    for qos in ["1", "0"] {
        let mut args = pub_args(
            mqtt,
            "mqttv311",
            Some(("dev-1", &secret)),
            "dev-2",
            &numeric(now_ms(), "heart_rate", 131.0),
        );
        let at = args.iter().position(|a| a == "-q").unwrap();
        args[at + 1] = qos.into();
        let output = mosquitto_pub(args).await;
        assert!(output.status.success(), "{}", text(&output));
    }
    // Anonymous on a device that has a credential: 0x87. On one that has none (optional): fine.
    assert_eq!(
        publish_v5(
            mqtt,
            "it-cred-anon-1",
            None,
            "metaward/v1/devices/dev-1/obs",
            good.clone(),
            None
        )
        .await,
        Answer::PubAck(PubAckReason::NotAuthorized)
    );
    assert_eq!(
        publish_v5(
            mqtt,
            "it-cred-anon-2",
            None,
            "metaward/v1/devices/dev-2/obs",
            good.clone(),
            None
        )
        .await,
        Answer::PubAck(PubAckReason::Success)
    );

    // SenML on its own topic, naming itself: accepted. Naming another device: 0x87.
    let senml = |device: &str, value: f64| {
        json!([{ "bn": format!("urn:dev:mac:{device}:"), "bt": now_ms() as f64 / 1000.0, "n": "heart_rate", "u": "beat/min", "v": value }]).to_string()
    };
    assert_eq!(
        publish_v5(
            mqtt,
            "it-cred-senml",
            Some(("dev-1", &secret)),
            "metaward/v1/devices/dev-1/obs",
            senml("dev-1", 71.0),
            Some("application/senml+json")
        )
        .await,
        Answer::PubAck(PubAckReason::Success)
    );
    eventually("heart_rate 71 from SenML", || async {
        let twin = get_json(http_addr, "/api/v1/patients/p1/twin").await;
        has_value(&twin["values"], "heart_rate", 71.0).then_some(())
    })
    .await;
    assert_eq!(
        publish_v5(
            mqtt,
            "it-cred-senml-2",
            Some(("dev-1", &secret)),
            "metaward/v1/devices/dev-1/obs",
            senml("dev-2", 72.0),
            None
        )
        .await,
        Answer::PubAck(PubAckReason::NotAuthorized)
    );
    // Invalid SenML: 0x99, like our own payload.
    assert_eq!(
        publish_v5(
            mqtt,
            "it-cred-senml-3",
            Some(("dev-1", &secret)),
            "metaward/v1/devices/dev-1/obs",
            r#"[{"n": "heart_rate", "vs": "high"}]"#.into(),
            None
        )
        .await,
        Answer::PubAck(PubAckReason::PayloadFormatInvalid)
    );

    // Rotation: the old secret stops working at once, the new one works.
    let rotated = set_credential(http_addr, "dev-1").await;
    assert_ne!(rotated, secret);
    assert_eq!(
        publish_v5(
            mqtt,
            "it-cred-old",
            Some(("dev-1", &secret)),
            "metaward/v1/devices/dev-1/obs",
            good.clone(),
            None
        )
        .await,
        Answer::Refused(ConnectReturnCode::BadUserNamePassword)
    );
    assert_eq!(
        publish_v5(
            mqtt,
            "it-cred-new",
            Some(("dev-1", &rotated)),
            "metaward/v1/devices/dev-1/obs",
            good.clone(),
            None
        )
        .await,
        Answer::PubAck(PubAckReason::Success)
    );
    // Revocation: the device is anonymous again (optional policy); a second revoke is 404.
    let response = http(
        http_addr,
        "DELETE",
        "/api/v1/devices/dev-1/credential",
        None,
    )
    .await;
    assert_eq!(response.status, 204, "{}", response.body);
    let response = http(
        http_addr,
        "DELETE",
        "/api/v1/devices/dev-1/credential",
        None,
    )
    .await;
    assert_eq!(response.status, 404, "{}", response.body);
    assert_eq!(
        publish_v5(
            mqtt,
            "it-cred-revoked",
            Some(("dev-1", &rotated)),
            "metaward/v1/devices/dev-1/obs",
            good.clone(),
            None
        )
        .await,
        Answer::Refused(ConnectReturnCode::BadUserNamePassword)
    );
    assert_eq!(
        publish_v5(
            mqtt,
            "it-cred-anon-3",
            None,
            "metaward/v1/devices/dev-1/obs",
            good.clone(),
            None
        )
        .await,
        Answer::PubAck(PubAckReason::Success)
    );

    // Every refusal is a counted, kept dead letter; received = accepted + rejected.
    let letters = eventually("the not_authorized dead letters", || async {
        let letters = get_json(http_addr, "/api/v1/dead-letters").await;
        let refused: Vec<Value> = letters
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["reason"] == "not_authorized")
            .cloned()
            .collect();
        (refused.len() == 6).then_some(refused)
    })
    .await;
    assert!(
        letters.iter().any(|d| d["detail"]
            .as_str()
            .unwrap()
            .contains("names device `dev-2`")),
        "{letters:?}"
    );
    let metrics = http(http_addr, "GET", "/metrics", None).await.body;
    let mqtt_label = "source=\"mqtt\"";
    assert_eq!(
        sample(
            &metrics,
            "metaward_messages_rejected_total",
            &[mqtt_label, "reason=\"not_authorized\""]
        ),
        6.0,
        "{metrics}"
    );
    let received = sample(&metrics, "metaward_messages_received_total", &[mqtt_label]);
    let accepted = sample(&metrics, "metaward_messages_accepted_total", &[mqtt_label]);
    let rejected = sample(&metrics, "metaward_messages_rejected_total", &[mqtt_label]);
    assert_eq!(received, accepted + rejected, "{metrics}");
    assert_eq!(received, 12.0, "{metrics}");
    // Nothing from the refused publishes reached dev-2's data.
    let devices = get_json(http_addr, "/api/v1/devices/unassociated").await;
    let dev_2 = devices
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device_id"] == "dev-2")
        .expect("dev-2 sent data anonymously");
    assert!(has_value(&dev_2["values"], "heart_rate", 66.0), "{dev_2}");
    assert!(
        !has_value(&dev_2["values"], "heart_rate", 131.0),
        "a refused value was ingested: {dev_2}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_device_auth_refuses_anonymous_clients() {
    let (server, _dir) = start_server_with_auth(DeviceAuth::Required).await;
    server.apply_setup(small_setup()).await.unwrap();
    let (http_addr, mqtt) = (server.http_addr(), server.mqtt_addr());
    let good = numeric(now_ms(), "heart_rate", 58.0);

    assert_eq!(
        publish_v5(
            mqtt,
            "it-req-anon",
            None,
            "metaward/v1/devices/dev-1/obs",
            good.clone(),
            None
        )
        .await,
        Answer::Refused(ConnectReturnCode::NotAuthorized)
    );
    // mosquitto_pub, MQTT 3.1.1: return code 5, not authorised.
    let output = mosquitto_pub(pub_args(mqtt, "mqttv311", None, "dev-1", &good)).await;
    assert!(!output.status.success());
    assert!(text(&output).contains("not authori"), "{}", text(&output));

    let secret = set_credential(http_addr, "dev-1").await;
    let output = mosquitto_pub(pub_args(
        mqtt,
        "mqttv311",
        Some(("dev-1", &secret)),
        "dev-1",
        &good,
    ))
    .await;
    assert!(output.status.success(), "{}", text(&output));
    eventually("heart_rate 58 under the required policy", || async {
        let twin = get_json(http_addr, "/api/v1/patients/p1/twin").await;
        has_value(&twin["values"], "heart_rate", 58.0).then_some(())
    })
    .await;
    server.shutdown().await;
}
