//! metaward as a client of an external broker: Debian's mosquitto 2.0, started here on a free
//! loopback port with a generated configuration. Shared subscriptions split the devices'
//! messages between metaward nodes, each message ingested exactly once; QoS 1 is acknowledged
//! to the broker only once durable, so a node killed mid-stream gets what it had not
//! acknowledged again after a restart; the broker's ACL binds devices to their topics.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use serde_json::json;
use server::sources::mqtt::{DeviceAuth, ExternalBrokerConfig};

use crate::crash::spawn;
use crate::*;

const MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// A mosquitto broker of our own, killed when dropped.
struct Mosquitto {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Mosquitto {
    /// Starts mosquitto with `extra` configuration lines (given the temp dir to put files in).
    async fn start(extra: impl FnOnce(&Path) -> String) -> Mosquitto {
        assert!(
            Path::new(MOSQUITTO).exists(),
            "{MOSQUITTO} is missing: run scripts/test, which installs mosquitto"
        );
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = dir.path().join("mosquitto.log");
        // Run as whoever runs the test: mosquitto started as root otherwise drops to the user
        // `mosquitto`, which cannot write its log into our temp dir.
        let user = Command::new("id").arg("-un").output().expect("id runs");
        let user = String::from_utf8_lossy(&user.stdout).trim().to_owned();
        let config = format!(
            "listener {port} 127.0.0.1\nuser {user}\npersistence false\nlog_dest file {}\nlog_type all\nmax_queued_messages 100000\n{}\n",
            log.display(),
            extra(dir.path())
        );
        let config_path = dir.path().join("mosquitto.conf");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto starts");
        let broker = Mosquitto {
            child,
            port,
            log,
            _dir: dir,
        };
        eventually("mosquitto accepting connections", || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        })
        .await;
        broker
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the broker has answered a SUBSCRIBE from `client_id`.
    async fn wait_for_subscription(&self, client_id: &str) {
        let needle = format!("Sending SUBACK to {client_id}");
        eventually(&format!("{client_id} subscribed at mosquitto"), || async {
            self.log_text().contains(&needle).then_some(())
        })
        .await;
    }
}

/// The lines of the code block in docs/mqtt.md that follow `first_line`, up to its fence, so the
/// test runs what the documentation shows.
fn documented_block(first_line: &str) -> String {
    let docs = include_str!("../../../../docs/mqtt.md");
    let start = docs.find(first_line).expect("the block in docs/mqtt.md") + first_line.len();
    let end = start
        + docs[start..]
            .find("```")
            .expect("the block's closing fence");
    docs[start..end].to_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn external(broker: &Mosquitto, client_id: &str) -> ExternalBrokerConfig {
    ExternalBrokerConfig {
        broker: broker.address(),
        client_id: client_id.into(),
        share_group: Some("metaward".into()),
        username: None,
        password: None,
        topic_filter: ExternalBrokerConfig::DEFAULT_TOPIC_FILTER.into(),
        session_expiry: Duration::from_secs(600),
    }
}

async fn start_node(config: ExternalBrokerConfig) -> (Server, tempfile::TempDir) {
    start_server_with(|server| {
        server.mqtt_device_auth = DeviceAuth::Optional;
        server.mqtt_external = Some(config);
    })
    .await
}

/// A device publishing through the external broker (MQTT 5, QoS 1, waits for every PUBACK).
struct Device {
    client: AsyncClient,
    acks: tokio::sync::mpsc::UnboundedReceiver<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Device {
    fn connect(broker: &Mosquitto, client_id: &str, credentials: Option<(&str, &str)>) -> Device {
        let mut options = MqttOptions::new(client_id, "127.0.0.1", broker.port);
        options.set_keep_alive(Duration::from_secs(30));
        if let Some((username, password)) = credentials {
            options.set_credentials(username, password);
        }
        let (client, mut eventloop) = AsyncClient::new(options, 1000);
        let (ack_tx, acks) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        let _ = ack_tx.send(());
                    }
                    Ok(_) => {}
                    Err(error) => panic!("device mqtt error: {error}"),
                }
            }
        });
        Device { client, acks, task }
    }

    async fn publish(&self, topic: &str, payload: String, content_type: Option<&str>) {
        let properties = PublishProperties {
            content_type: content_type.map(str::to_owned),
            ..PublishProperties::default()
        };
        self.client
            .publish_with_properties(topic, QoS::AtLeastOnce, false, payload, properties)
            .await
            .unwrap();
    }

    async fn wait_acks(&mut self, n: usize) {
        for _ in 0..n {
            tokio::time::timeout(DEADLINE, self.acks.recv())
                .await
                .expect("PUBACK from mosquitto in time")
                .expect("device loop alive");
        }
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Device times of the heart_rate rows `device` has in a store.
fn stored_times(store: &store::Store, device: &str) -> Vec<i64> {
    let mut statement = store
        .connection()
        .prepare("SELECT device_time_ms FROM vitals WHERE device_id = ?1 AND metric = 'heart_rate'")
        .unwrap();
    statement
        .query_map([device], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

async fn node_times(server: &Server, device: &'static str) -> Vec<i64> {
    server
        .stores()
        .read(move |store| stored_times(store, device))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_subscription_splits_devices_between_nodes_exactly_once() {
    let broker = Mosquitto::start(|_| "allow_anonymous true".into()).await;
    let (node_a, _dir_a) = start_node(external(&broker, "it-node-a")).await;
    let (node_b, _dir_b) = start_node(external(&broker, "it-node-b")).await;
    broker.wait_for_subscription("it-node-a").await;
    broker.wait_for_subscription("it-node-b").await;

    const N: usize = 400;
    let mut device = Device::connect(&broker, "it-ext-device", None);
    let t0 = now_ms() - 10 * N as i64;
    let started = Instant::now();
    for i in 0..N {
        let payload = numeric(t0 + i as i64, "heart_rate", 40.0 + (i % 100) as f64);
        device
            .publish("metaward/v1/devices/ext-dev/obs", payload, None)
            .await;
    }
    device.wait_acks(N).await;
    let (a, b) = eventually("every message ingested by one of the nodes", || async {
        let (a, b) = (
            node_times(&node_a, "ext-dev").await,
            node_times(&node_b, "ext-dev").await,
        );
        (a.len() + b.len() >= N).then_some((a, b))
    })
    .await;
    let elapsed = started.elapsed();
    println!(
        "external broker: {N} messages through mosquitto into two nodes in {:.2?} ({:.0} msg/s); node a {}, node b {}",
        elapsed,
        N as f64 / elapsed.as_secs_f64(),
        a.len(),
        b.len()
    );
    // Give a late duplicate time to show up before judging "exactly once".
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (a, b) = (
        node_times(&node_a, "ext-dev").await,
        node_times(&node_b, "ext-dev").await,
    );
    assert!(
        !a.is_empty() && !b.is_empty(),
        "both nodes take a share: a {}, b {}",
        a.len(),
        b.len()
    );
    let all: BTreeSet<i64> = a.iter().chain(&b).copied().collect();
    assert_eq!(a.len() + b.len(), N, "no message ingested twice");
    assert_eq!(
        all,
        (0..N as i64).map(|i| t0 + i).collect(),
        "every message ingested"
    );

    // Both count them under their own source label.
    for node in [&node_a, &node_b] {
        let metrics = node.metrics_text();
        assert!(metrics.contains("source=\"mqtt_external\""), "{metrics}");
    }
    drop(device);
    node_a.shutdown().await;
    node_b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_stream_gets_its_unacknowledged_messages_again() {
    let broker = Mosquitto::start(|_| "allow_anonymous true".into()).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = [
        "serve",
        "--mqtt-external-broker",
        &broker.address(),
        "--mqtt-external-client-id",
        "it-node-crash",
        "--mqtt-external-share-group",
        "crash",
    ];
    let node = spawn(&args, &data);
    broker.wait_for_subscription("it-node-crash").await;

    const N: usize = 300;
    let mut device = Device::connect(&broker, "it-crash-device", None);
    let t0 = now_ms() - 10 * N as i64;
    let publish_range = |range: std::ops::Range<usize>| {
        let device = &device;
        async move {
            for i in range {
                let payload = numeric(t0 + i as i64, "heart_rate", 50.0 + (i % 50) as f64);
                device
                    .publish("metaward/v1/devices/crash-dev/obs", payload, None)
                    .await;
            }
        }
    };
    // The first third flows normally; then the node freezes (SIGSTOP) with messages on their
    // way to it, unacknowledged, the rest queues at the broker, and the node is killed.
    publish_range(0..N / 3).await;
    let pid = node.child.id().to_string();
    let signal = |name: &str| {
        let status = Command::new("kill").args([name, &pid]).status().unwrap();
        assert!(status.success(), "kill {name} {pid}");
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    signal("-STOP");
    publish_range(N / 3..N).await;
    device.wait_acks(N).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal("-KILL");
    drop(node);
    let log_before_restart = broker.log_text().len();

    // The same node (data directory, client id) comes back: the broker resends what was never
    // acknowledged (DUP set) and then everything it queued meanwhile.
    let node = spawn(&args, &data);
    let store_path = data.join("metaward.sqlite");
    let times = eventually("every message in the restarted node's store", || {
        let store_path = store_path.clone();
        async move {
            let times = tokio::task::spawn_blocking(move || {
                let store = store::Store::open(&store_path).ok()?;
                Some(stored_times(&store, "crash-dev"))
            })
            .await
            .unwrap()?;
            let distinct: BTreeSet<i64> = times.iter().copied().collect();
            (distinct.len() >= N).then_some(times)
        }
    })
    .await;
    let distinct: BTreeSet<i64> = times.iter().copied().collect();
    assert_eq!(
        distinct,
        (0..N as i64).map(|i| t0 + i).collect(),
        "nothing lost"
    );
    let log = broker.log_text();
    let redelivered = log[log_before_restart..]
        .lines()
        .filter(|line| line.contains("Sending PUBLISH to it-node-crash (d1"))
        .count();
    println!(
        "crash: {} rows for {N} messages ({} durable before the crash but not acknowledged, so stored twice); mosquitto resent {redelivered} with DUP",
        times.len(),
        times.len() - N
    );
    assert!(
        redelivered > 0,
        "mosquitto resent the unacknowledged messages (DUP) after the restart"
    );
    drop(device);
    drop(node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_brokers_acl_binds_devices_to_their_topics_with_the_documented_config() {
    let passwd = "/usr/bin/mosquitto_passwd";
    let broker = Mosquitto::start(|dir| {
        let passwords = dir.join("passwords");
        for (user, password) in [("metaward", "node-secret"), ("acl-dev-1", "dev-1-secret")] {
            let mut command = Command::new(passwd);
            if !passwords.exists() {
                command.arg("-c");
            }
            let status = command
                .arg("-b")
                .arg(&passwords)
                .args([user, password])
                .status()
                .expect("mosquitto_passwd runs");
            assert!(status.success());
        }
        // The ACL exactly as docs/mqtt.md shows it.
        let acl = dir.join("acl");
        std::fs::write(&acl, documented_block("# acl_file\n")).unwrap();
        format!(
            "allow_anonymous false\npassword_file {}\nacl_file {}",
            passwords.display(),
            acl.display()
        )
    })
    .await;

    // metaward's side: the documented `[mqtt.external]` example, with this test's broker
    // address and password.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("metaward.toml");
    let documented = documented_block("[mqtt.external]\n");
    assert!(
        documented.contains("client_id = \"metaward-node-a\""),
        "{documented}"
    );
    let toml: String = std::iter::once("[mqtt.external]".to_owned())
        .chain(documented.lines().map(|line| {
            if line.starts_with("broker = ") {
                format!("broker = \"{}\"", broker.address())
            } else if line.starts_with("password = ") {
                "password = \"node-secret\"".to_owned()
            } else {
                line.to_owned()
            }
        }))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&config, toml).unwrap();
    let config = config.to_str().unwrap().to_owned();
    let node = spawn(&["serve", "--config", &config], &dir.path().join("data"));
    broker.wait_for_subscription("metaward-node-a").await;
    let http_addr = node.http;

    let mosquitto_pub = |topic: &str, payload: String| {
        let args: Vec<String> = [
            "-h",
            "127.0.0.1",
            "-p",
            &broker.port.to_string(),
            "-V",
            "mqttv5",
            "-q",
            "1",
            "-u",
            "acl-dev-1",
            "-P",
            "dev-1-secret",
            "-t",
            topic,
            "-m",
            &payload,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        async move {
            tokio::task::spawn_blocking(move || {
                Command::new("/usr/bin/mosquitto_pub").args(&args).output()
            })
            .await
            .unwrap()
            .expect("mosquitto_pub runs")
        }
    };
    let last_value = |device: &'static str| async move {
        let devices = get_json(http_addr, "/api/v1/devices/unassociated").await;
        devices
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["device_id"] == device)
            .map(|d| d["values"].clone())
    };

    // The device on its own topic: through the broker into metaward.
    let output = mosquitto_pub(
        "metaward/v1/devices/acl-dev-1/obs",
        numeric(now_ms(), "heart_rate", 61.0),
    )
    .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    eventually("heart_rate 61 via the external broker", || async {
        let values = last_value("acl-dev-1").await?;
        has_value(&values, "heart_rate", 61.0).then_some(())
    })
    .await;

    // On another device's topic: the broker's ACL refuses it (MQTT 5 PUBACK not authorized).
    let output = mosquitto_pub(
        "metaward/v1/devices/acl-dev-2/obs",
        numeric(now_ms(), "heart_rate", 99.0),
    )
    .await;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
    .to_lowercase();
    assert!(
        said.contains("not authorized"),
        "mosquitto_pub said: {said}"
    );

    // A SenML pack on its own topic that names another device: refused by metaward itself.
    let forged =
        json!([{ "bn": "urn:dev:mac:acl-dev-2:", "n": "heart_rate", "u": "beat/min", "v": 98 }])
            .to_string();
    let output = mosquitto_pub("metaward/v1/devices/acl-dev-1/obs", forged).await;
    assert!(output.status.success());
    // SenML with its own name goes through.
    let own =
        json!([{ "bn": "urn:dev:mac:acl-dev-1:", "n": "heart_rate", "u": "beat/min", "v": 62 }])
            .to_string();
    let output = mosquitto_pub("metaward/v1/devices/acl-dev-1/obs", own).await;
    assert!(output.status.success());
    eventually("heart_rate 62 (SenML) via the external broker", || async {
        let values = last_value("acl-dev-1").await?;
        has_value(&values, "heart_rate", 62.0).then_some(())
    })
    .await;
    assert!(
        last_value("acl-dev-2").await.is_none(),
        "nothing arrived as acl-dev-2"
    );
    let letter = eventually("the forged SenML pack as a dead letter", || async {
        let letters = get_json(http_addr, "/api/v1/dead-letters").await;
        letters
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["reason"] == "not_authorized")
            .cloned()
    })
    .await;
    assert_eq!(letter["source"], "mqtt_external", "{letter}");
    let metrics = http(http_addr, "GET", "/metrics", None).await.body;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("metaward_messages_rejected_total")
                && l.contains("source=\"mqtt_external\"")
                && l.contains("reason=\"not_authorized\"")
                && l.ends_with(" 1")),
        "{metrics}"
    );
    drop(node);
}
