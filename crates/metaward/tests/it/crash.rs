//! Crash safety of the real binary: every QoS 1 message acknowledged before a SIGKILL is in the
//! history after a restart on the same data directory.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use crate::*;

pub(crate) struct Running {
    pub(crate) child: Child,
    pub(crate) http: SocketAddr,
    mqtt: SocketAddr,
    pub(crate) mllp: SocketAddr,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates an admin with `metaward user create NAME --admin` (the first-run path) and returns
/// the name and the password it printed once.
pub(crate) fn create_admin_with_cli(data: &Path) -> (String, String) {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let name = format!(
        "cli-admin-{}",
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let output = Command::new(env!("CARGO_BIN_EXE_metaward"))
        .args(["user", "create", &name, "--admin", "--data"])
        .arg(data)
        .env("METAWARD_LOG", "warn")
        .output()
        .expect("metaward user create runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "user create: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let password = stdout
        .split("(shown once): ")
        .nth(1)
        .expect("the password is printed once")
        .trim()
        .to_owned();
    (name, password)
}

/// Signs in over a blocking socket (the spawn helper is synchronous): the access token.
fn login_blocking(http: SocketAddr, name: &str, password: &str) -> String {
    use std::io::{Read, Write};
    let body = serde_json::json!({ "username": name, "password": password }).to_string();
    let mut stream = std::net::TcpStream::connect(http).expect("connect http");
    write!(
        stream,
        "POST /api/v1/auth/login HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (_, json) = raw.split_once("\r\n\r\n").expect("an HTTP answer");
    let answer: serde_json::Value =
        serde_json::from_str(json).unwrap_or_else(|_| panic!("login: {raw}"));
    answer["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("login: {raw}"))
        .to_owned()
}

/// Starts the binary and waits for its `metaward listening http=.. mqtt=..` line; an admin made
/// with `metaward user create` signs in, and [`http`] uses that token for this server.
pub(crate) fn spawn(args: &[&str], data: &Path) -> Running {
    let (admin, password) = create_admin_with_cli(data);
    let mut child = Command::new(env!("CARGO_BIN_EXE_metaward"))
        .args(args)
        .args([
            "--http",
            "127.0.0.1:0",
            "--mqtt",
            "127.0.0.1:0",
            "--mllp",
            "127.0.0.1:0",
        ])
        .arg("--data")
        .arg(data)
        .env("METAWARD_LOG", "warn")
        .env_remove("METAWARD_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn metaward");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix("metaward listening ") {
                let mut http = None;
                let mut mqtt = None;
                let mut mllp = None;
                for part in rest.split_whitespace() {
                    if let Some(a) = part.strip_prefix("mllp=") {
                        mllp = a.parse::<SocketAddr>().ok();
                    }
                    if let Some(a) = part.strip_prefix("http=") {
                        http = a.parse::<SocketAddr>().ok();
                    }
                    if let Some(a) = part.strip_prefix("mqtt=") {
                        mqtt = a.parse::<SocketAddr>().ok();
                    }
                }
                let _ = tx.send((
                    http.expect("http addr"),
                    mqtt.expect("mqtt addr"),
                    mllp.expect("mllp addr"),
                ));
            }
        }
    });
    let (http, mqtt, mllp) = match rx.recv_timeout(DEADLINE) {
        Ok(addrs) => addrs,
        Err(_) => {
            let _ = child.kill();
            panic!("metaward did not print its listening line");
        }
    };
    register_token(http, login_blocking(http, &admin, &password));
    Running {
        child,
        http,
        mqtt,
        mllp,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_messages_survive_sigkill() {
    use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut demo = spawn(&["demo", "--beds", "2", "--seed", "7"], &data);

    // A device of the simulated ward on a bed, and the patient in that bed.
    let associations = get_json(demo.http, "/api/v1/associations").await;
    let beds = get_json(demo.http, "/api/v1/beds").await;
    let (device, patient) = associations
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["target_kind"] == "bed")
        .find_map(|a| {
            let bed = beds
                .as_array()
                .unwrap()
                .iter()
                .find(|b| b["id"] == a["target_id"])?;
            Some((
                a["device_id"].as_str()?.to_owned(),
                bed["patient_id"].as_str()?.to_owned(),
            ))
        })
        .unwrap_or_else(|| panic!("no device on an occupied bed: {associations} {beds}"));

    let mut options = MqttOptions::new("it-crash", demo.mqtt.ip().to_string(), demo.mqtt.port());
    options.set_keep_alive(std::time::Duration::from_secs(30));
    options.set_inflight(50);
    let (client, mut eventloop) = AsyncClient::new(options, 100);
    let base = now_ms();
    let topic = format!("metaward/v1/devices/{device}/obs");
    // Requested publishes in order; the event loop assigns packet ids in the same order.
    let requested: Arc<Mutex<VecDeque<(i64, f64)>>> = Arc::default();
    let producer = {
        let requested = requested.clone();
        let client = client.clone();
        tokio::spawn(async move {
            for i in 0..100_000i64 {
                let sample = (base + i, 20.0 + (i % 40) as f64);
                requested.lock().unwrap().push_back(sample);
                let payload = numeric(sample.0, "etco2", sample.1);
                if client
                    .publish(topic.clone(), QoS::AtLeastOnce, false, payload)
                    .await
                    .is_err()
                {
                    break;
                }
            }
        })
    };
    let mut in_flight: HashMap<u16, (i64, f64)> = HashMap::new();
    let mut acked: Vec<(i64, f64)> = Vec::new();
    let mut sent = 0usize;
    let mut killed = false;
    let kill_after = 300;
    let loop_result = tokio::time::timeout(std::time::Duration::from_secs(120), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                    let sample = requested
                        .lock()
                        .unwrap()
                        .pop_front()
                        .expect("a requested publish");
                    in_flight.insert(pkid, sample);
                    sent += 1;
                }
                Ok(Event::Incoming(Packet::PubAck(ack))) => {
                    if let Some(sample) = in_flight.remove(&ack.pkid) {
                        acked.push(sample);
                    }
                    if acked.len() >= kill_after && !killed {
                        demo.child.kill().expect("SIGKILL the server");
                        killed = true;
                    }
                }
                Ok(_) => {}
                Err(_) if killed => break,
                Err(error) => panic!("mqtt error before the kill: {error}"),
            }
        }
    })
    .await;
    assert!(
        loop_result.is_ok(),
        "publishing did not reach {kill_after} acks ({} acked)",
        acked.len()
    );
    producer.abort();
    let _ = demo.child.wait();
    drop(demo);
    let unacked = in_flight.len();

    // Restart on the same data directory; the setup is in the store.
    let served = spawn(&["serve"], &data);
    let to = base + 10_000_000;
    let path =
        format!("/api/v1/patients/{patient}/history?metric=etco2&from={base}&to={to}&limit=100000");
    let mut missing = Vec::new();
    let stored = eventually("history readable after restart", || async {
        let response = http(served.http, "GET", &path, None).await;
        (response.status == 200).then(|| response.json())
    })
    .await;
    let points: std::collections::HashSet<(i64, u64)> = stored["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["time"].as_i64().unwrap(),
                p["value"].as_f64().unwrap().to_bits(),
            )
        })
        .collect();
    for (time, value) in &acked {
        if !points.contains(&(*time, value.to_bits())) {
            missing.push((*time, *value));
        }
    }
    println!(
        "crash test: sent {sent}, acked {}, unacknowledged at kill {unacked}, stored after restart {}, acked but missing {}",
        acked.len(),
        points.len(),
        missing.len()
    );
    assert!(
        missing.is_empty(),
        "{} acknowledged messages lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(points.len() >= acked.len());
}
