//! HTTPS with real clients: `metaward demo --tls-self-signed` serves its page, REST and login
//! over TLS; curl and openssl s_client verify the certificate with `--cacert` / `-CAfile`; a
//! client that does not trust it, or speaks plain HTTP, gets nothing.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::*;

struct Demo(std::process::Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn curl(args: &[&str]) -> (bool, String) {
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[test]
fn https_with_a_self_signed_certificate_and_real_clients() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_metaward"))
        .args(["demo", "--tls-self-signed", "--beds", "2"])
        .args([
            "--http",
            "127.0.0.1:0",
            "--mqtt",
            "127.0.0.1:0",
            "--mllp",
            "127.0.0.1:0",
        ])
        .arg("--data")
        .arg(&data)
        .env("METAWARD_LOG", "warn")
        .env_remove("METAWARD_CONFIG")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn metaward");
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let demo = Demo(child);
    // Read the demo's lines on a thread that keeps draining them (a closed pipe would stop it).
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines() {
            let Ok(line) = line else { break };
            let _ = lines_tx.send(line);
        }
    });
    let (mut cert, mut password, mut http) = (None, None, None);
    while http.is_none() {
        let line = lines_rx.recv_timeout(DEADLINE).expect("the demo starts");
        if let Some(rest) = line.strip_prefix("metaward tls cert=") {
            cert = rest.split_whitespace().next().map(str::to_owned);
        }
        if line.trim_start().starts_with("demo-nurse ") {
            password = line.split_whitespace().nth(2).map(str::to_owned);
        }
        if let Some(rest) = line.strip_prefix("metaward listening http=") {
            http = rest.split_whitespace().next().map(str::to_owned);
        }
    }
    let (cert, password, http) = (cert.unwrap(), password.unwrap(), http.unwrap());
    let port = http.rsplit(':').next().unwrap();
    let base = format!("https://localhost:{port}");

    // curl trusts the demo's certificate only when told to.
    let (ok, body) = curl(&["--cacert", &cert, &format!("{base}/healthz")]);
    assert!(ok, "healthz over TLS: {body}");
    assert!(body.contains("\"status\":\"ok\""), "{body}");
    let (ok, _) = curl(&[&format!("{base}/healthz")]);
    assert!(
        !ok,
        "a client that does not trust the certificate must fail"
    );
    let (ok, _) = curl(&[&format!("http://127.0.0.1:{port}/healthz")]);
    assert!(!ok, "plain HTTP on the TLS port gets no answer");

    // Sign in and read patient data over TLS.
    let login = serde_json::json!({ "username": "demo-nurse", "password": password }).to_string();
    let (ok, body) = curl(&[
        "--cacert",
        &cert,
        "-H",
        "Content-Type: application/json",
        "--data",
        &login,
        &format!("{base}/api/v1/auth/login"),
    ]);
    assert!(ok, "{body}");
    let session: Value = serde_json::from_str(&body).unwrap();
    let token = session["access_token"].as_str().unwrap();
    let (ok, body) = curl(&[
        "--cacert",
        &cert,
        "-H",
        &format!("Authorization: Bearer {token}"),
        &format!("{base}/api/v1/patients"),
    ]);
    assert!(ok, "{body}");
    let patients: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(patients.as_array().unwrap().len(), 2, "{patients}");

    // openssl verifies the chain against the certificate (TLS 1.3).
    let output = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-servername",
            "localhost",
        ])
        .args(["-CAfile", &cert, "-verify_return_error", "-brief"])
        .stdin(Stdio::null())
        .output()
        .expect("openssl runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains("Verification: OK"), "{text}");
    assert!(text.contains("TLSv1.3"), "{text}");
    // The private key is readable only by its owner.
    use std::os::unix::fs::PermissionsExt;
    let key = std::path::Path::new(&cert).with_file_name("key.pem");
    assert_eq!(
        std::fs::metadata(key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    drop(demo);
}

/// MQTT over TLS on the embedded broker: mosquitto_pub with `--cafile` publishes, and the value
/// reaches the twin; a client speaking plain MQTT to the TLS port gets nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_over_tls_with_mosquitto_pub() {
    let certs = tempfile::tempdir().unwrap();
    let files = server::tls::self_signed(certs.path()).unwrap();
    let cert = files.cert.to_str().unwrap().to_owned();
    let (server, _dir) = start_server_with(|config| config.mqtt_tls = Some(files)).await;
    server.apply_setup(small_setup()).await.unwrap();
    let port = server.mqtt_addr().port().to_string();
    let payload = numeric(now_ms(), "heart_rate", 77.0);
    let publish = move |tls: bool| {
        let mut command = Command::new("/usr/bin/mosquitto_pub");
        command.args(["-h", "localhost", "-p", &port, "-V", "mqttv5", "-q", "1"]);
        command.args([
            "-i",
            "tls-dev-1",
            "-t",
            "metaward/v1/devices/dev-1/obs",
            "-m",
            &payload,
        ]);
        if tls {
            command.args(["--cafile", &cert]);
        }
        command.output().expect("mosquitto_pub runs")
    };
    let published = tokio::task::spawn_blocking({
        let publish = publish.clone();
        move || publish(true)
    })
    .await
    .unwrap();
    assert!(
        published.status.success(),
        "mosquitto_pub over TLS: {}",
        String::from_utf8_lossy(&published.stderr)
    );
    let http_addr = server.http_addr();
    eventually("the value published over TLS on the twin", || async {
        let twin = get_json(http_addr, "/api/v1/patients/p1/twin").await;
        has_value(&twin["values"], "heart_rate", 77.0).then_some(())
    })
    .await;
    let plain = tokio::task::spawn_blocking(move || publish(false))
        .await
        .unwrap();
    assert!(
        !plain.status.success(),
        "plain MQTT on the TLS port must fail"
    );
    server.shutdown().await;
}

/// HL7 v2 over MLLP inside TLS: Python's `ssl` (OpenSSL) verifies the certificate, sends a
/// PCD-01 ORU^R01 and gets its ACK AA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mllp_over_tls_with_python_ssl() {
    let certs = tempfile::tempdir().unwrap();
    let files = server::tls::self_signed(certs.path()).unwrap();
    let cert = files.cert.to_str().unwrap().to_owned();
    let (server, _dir) = start_server_with(|config| config.mllp_tls = Some(files)).await;
    server.apply_setup(small_setup()).await.unwrap();
    let port = server.mllp_addr().port().to_string();
    let mut frame = vec![0x0b];
    frame.extend(crate::hl7::oru(
        "tls-1",
        "p1",
        "",
        "0a01",
        now_ms(),
        &crate::hl7::hr("72"),
    ));
    frame.extend([0x1c, 0x0d]);
    let script = r#"
import socket, ssl, sys
context = ssl.create_default_context(cafile=sys.argv[1])
with socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=20) as raw:
    with context.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(sys.stdin.buffer.read())
        answer = b""
        while not answer.endswith(b"\x1c\r"):
            chunk = tls.recv(4096)
            if not chunk:
                break
            answer += chunk
print(answer.decode().replace("\r", "\n"))
"#;
    let output = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = Command::new("python3")
            .args(["-c", script, &cert, &port])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        child.stdin.take().unwrap().write_all(&frame).unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let answer = String::from_utf8_lossy(&output.stdout);
    assert!(
        answer.contains("MSA|AA|tls-1"),
        "{answer}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    server.shutdown().await;
}
