//! Who may connect to MLLP: a peer outside the address allow-list is closed at accept (counted,
//! audited, never answered); over TLS with client certificates required, `openssl s_client` and
//! Python's `ssl` with a certificate from the configured CA get through (an ORU answered AA),
//! without one, or with one from another CA, the handshake fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::*;

fn framed_oru(control_id: &str) -> Vec<u8> {
    let mut frame = vec![0x0b];
    frame.extend(crate::hl7::oru(
        control_id,
        "p1",
        "",
        "0a01",
        now_ms(),
        &crate::hl7::hr("72"),
    ));
    frame.extend([0x1c, 0x0d]);
    frame
}

/// The value of one `/metrics` line that starts with `prefix` (0 if absent).
fn metric(server: &Server, prefix: &str) -> f64 {
    server
        .metrics_text()
        .lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// Sends an ORU on a plain connection: the acknowledgment, or `None` if the server closed the
/// connection without one.
async fn send_plain(addr: std::net::SocketAddr, control_id: &str) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The server may close before or after the write lands; either way nothing comes back.
    let _ = stream.write_all(&framed_oru(control_id)).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(DEADLINE, async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    answer.extend_from_slice(&buffer[..n]);
                    if answer.ends_with(&[0x1c, 0x0d]) {
                        return;
                    }
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "neither an answer nor a close");
    (!answer.is_empty()).then(|| String::from_utf8_lossy(&answer).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_outside_the_allow_list_is_closed_at_accept() {
    // The test connects from 127.0.0.1; this list names other networks only.
    let (server, _dir) = start_server_with(|config| {
        config.mllp_access.allow = vec![
            "10.0.0.0/8".parse().unwrap(),
            "::1".parse().unwrap(),
            "127.0.0.2".parse().unwrap(),
        ];
    })
    .await;
    server.apply_setup(small_setup()).await.unwrap();
    let answer = send_plain(server.mllp_addr(), "out-1").await;
    assert_eq!(answer, None, "refused peers get no answer");
    assert_eq!(
        metric(
            &server,
            "metaward_connections_refused_total{source=\"hl7\",reason=\"peer_not_allowed\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(&server, "metaward_messages_received_total{source=\"hl7\"}"),
        0.0,
        "nothing was read from it"
    );
    let addr = server.http_addr();
    let audit = eventually("the refusal in the audit trail", || async {
        let audit = http(addr, "GET", "/api/v1/audit", None).await.body;
        audit.contains("peer_not_allowed").then_some(audit)
    })
    .await;
    assert!(
        audit.contains("MLLP connection") && audit.contains("127.0.0.1"),
        "{audit}"
    );
    server.shutdown().await;

    // A list that includes the peer's network lets it in.
    let (server, _dir) = start_server_with(|config| {
        config.mllp_access.allow = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    server.apply_setup(small_setup()).await.unwrap();
    let answer = send_plain(server.mllp_addr(), "in-1")
        .await
        .expect("an answer");
    assert!(answer.contains("MSA|AA|in-1"), "{answer}");
    server.shutdown().await;

    // IPv6: on ::1, a list of IPv4 networks refuses the IPv6 peer, and one with ::1 takes it.
    for (allow, taken) in [
        (vec!["127.0.0.0/8"], false),
        (vec!["fd00::/8", "::1/128"], true),
    ] {
        let (server, _dir) = start_server_with(|config| {
            config.mllp = "[::1]:0".parse().unwrap();
            config.mllp_access.allow = allow.iter().map(|a| a.parse().unwrap()).collect();
        })
        .await;
        server.apply_setup(small_setup()).await.unwrap();
        let answer = send_plain(server.mllp_addr(), "v6-1").await;
        assert_eq!(
            answer.is_some_and(|answer| answer.contains("MSA|AA|v6-1")),
            taken,
            "{allow:?}"
        );
        server.shutdown().await;
    }
}

/// A CA, a server certificate for localhost and 127.0.0.1 signed by it, a client certificate
/// signed by it, and a client certificate from another CA, as PEM files in `dir`.
struct TestPki {
    ca: PathBuf,
    server: server::tls::TlsFiles,
    client_cert: PathBuf,
    client_key: PathBuf,
    rogue_cert: PathBuf,
    rogue_key: PathBuf,
    /// From the hospital's CA, but named nowhere in the facility map.
    unmapped_cert: PathBuf,
    unmapped_key: PathBuf,
}

fn ca(name: &str) -> (rcgen::Certificate, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    (params.self_signed(&key).unwrap(), key)
}

fn leaf(
    names: &[&str],
    purpose: rcgen::ExtendedKeyUsagePurpose,
    issuer: &(rcgen::Certificate, rcgen::KeyPair),
    dir: &Path,
    file: &str,
) -> (PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(
        names
            .iter()
            .map(|name| (*name).to_owned())
            .collect::<Vec<_>>(),
    )
    .unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, names[0]);
    params.extended_key_usages = vec![purpose];
    let cert = params.signed_by(&key, &issuer.0, &issuer.1).unwrap();
    let (cert_path, key_path) = (
        dir.join(format!("{file}.pem")),
        dir.join(format!("{file}.key")),
    );
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    (cert_path, key_path)
}

fn test_pki(dir: &Path) -> TestPki {
    let hospital = ca("metaward test hospital CA");
    let other = ca("someone else's CA");
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, hospital.0.pem()).unwrap();
    let (cert, key) = leaf(
        &["localhost", "127.0.0.1"],
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        &hospital,
        dir,
        "server",
    );
    let (client_cert, client_key) = leaf(
        &["gateway-1.icu.example"],
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        &hospital,
        dir,
        "gateway",
    );
    let (rogue_cert, rogue_key) = leaf(
        &["gateway-1.icu.example"],
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        &other,
        dir,
        "rogue",
    );
    let (unmapped_cert, unmapped_key) = leaf(
        &["gateway-9.er.example"],
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        &hospital,
        dir,
        "unmapped",
    );
    TestPki {
        unmapped_cert,
        unmapped_key,
        ca: ca_path,
        server: server::tls::TlsFiles { cert, key },
        client_cert,
        client_key,
        rogue_cert,
        rogue_key,
    }
}

/// Python's `ssl` (OpenSSL) sends `frame` over TLS, verifying the server against `ca` and
/// presenting `client` (cert, key) if given: (stdout, stderr).
async fn python_mllp(
    port: u16,
    ca: &Path,
    client: Option<(&Path, &Path)>,
    frame: Vec<u8>,
) -> (String, String) {
    let script = r#"
import socket, ssl, sys
context = ssl.create_default_context(cafile=sys.argv[1])
if len(sys.argv) > 3:
    context.load_cert_chain(sys.argv[3], sys.argv[4])
try:
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
except (ssl.SSLError, OSError) as error:
    print("refused:", error, file=sys.stderr)
"#;
    let mut args = vec![
        "-c".to_owned(),
        script.to_owned(),
        ca.display().to_string(),
        port.to_string(),
    ];
    if let Some((cert, key)) = client {
        args.push(cert.display().to_string());
        args.push(key.display().to_string());
    }
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = Command::new("python3")
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        child.stdin.take().unwrap().write_all(&frame).unwrap();
        let output = child.wait_with_output().unwrap();
        (
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

/// `openssl s_client` over TLS 1.2 (where a missing client certificate fails the handshake
/// itself): whether it succeeded, and what it said.
fn s_client(port: u16, ca: &Path, client: Option<(&Path, &Path)>) -> (bool, String) {
    let mut command = Command::new("openssl");
    command
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", "localhost", "-tls1_2", "-brief"])
        .arg("-CAfile")
        .arg(ca)
        .arg("-verify_return_error");
    if let Some((cert, key)) = client {
        command.arg("-cert").arg(cert).arg("-key").arg(key);
    }
    let output = command.stdin(Stdio::null()).output().expect("openssl runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mllp_over_tls_requires_a_client_certificate_from_the_ca() {
    let certs = tempfile::tempdir().unwrap();
    let pki = test_pki(certs.path());
    let (server_files, ca) = (pki.server.clone(), pki.ca.clone());
    let (server, _dir) = start_server_with(move |config| {
        config.mllp_tls = Some(server_files);
        config.mllp_access.client_ca = Some(ca);
        // The ICU's gateway sends for the ICU only.
        config
            .mllp_access
            .facilities
            .insert("gateway-1.icu.example".into(), vec!["ICU".into()]);
    })
    .await;
    server.apply_setup(small_setup()).await.unwrap();
    let port = server.mllp_addr().port();
    let client = Some((pki.client_cert.as_path(), pki.client_key.as_path()));

    // With the gateway's certificate: an ORU answered AA.
    let (answer, errors) = python_mllp(port, &pki.ca, client, framed_oru("cert-1")).await;
    assert!(answer.contains("MSA|AA|cert-1"), "{answer}{errors}");
    let (ok, text) = tokio::task::spawn_blocking({
        let ca = pki.ca.clone();
        let (cert, key) = (pki.client_cert.clone(), pki.client_key.clone());
        move || s_client(port, &ca, Some((&cert, &key)))
    })
    .await
    .unwrap();
    assert!(ok && text.contains("Verification: OK"), "{text}");

    // The gateway's certificate does not cover another facility: AR with the ERR at MSH-4.
    let other_facility = String::from_utf8(framed_oru("cert-2"))
        .unwrap()
        .replacen("|ICU|", "|ER|", 1)
        .into_bytes();
    let (answer, errors) = python_mllp(port, &pki.ca, client, other_facility).await;
    assert!(answer.contains("MSA|AR|cert-2"), "{answer}{errors}");
    assert!(answer.contains("ERR||MSH^1^4"), "{answer}");
    assert_eq!(
        metric(
            &server,
            "metaward_messages_rejected_total{source=\"hl7\",reason=\"facility_not_allowed\"}"
        ),
        1.0
    );
    // A certificate from the CA that the map does not name: closed after the handshake.
    let unmapped = Some((pki.unmapped_cert.as_path(), pki.unmapped_key.as_path()));
    let (answer, _) = python_mllp(port, &pki.ca, unmapped, framed_oru("unmapped-1")).await;
    assert!(!answer.contains("MSA"), "{answer}");
    eventually("the unmapped certificate counted", || async {
        let refused = metric(
            &server,
            "metaward_connections_refused_total{source=\"hl7\",reason=\"certificate_not_mapped\"}",
        );
        (refused == 1.0).then_some(())
    })
    .await;

    // Without a certificate, or with one from another CA: no handshake, nothing answered.
    let refused_before = metric(
        &server,
        "metaward_connections_refused_total{source=\"hl7\",reason=\"tls_handshake\"}",
    );
    let (ok, text) = tokio::task::spawn_blocking({
        let ca = pki.ca.clone();
        move || s_client(port, &ca, None)
    })
    .await
    .unwrap();
    assert!(!ok, "openssl without a client certificate: {text}");
    let (answer, errors) = python_mllp(port, &pki.ca, None, framed_oru("nocert-1")).await;
    assert!(!answer.contains("MSA"), "{answer}");
    assert!(errors.contains("refused"), "{errors}");
    let rogue = Some((pki.rogue_cert.as_path(), pki.rogue_key.as_path()));
    let (answer, errors) = python_mllp(port, &pki.ca, rogue, framed_oru("rogue-1")).await;
    assert!(!answer.contains("MSA"), "{answer}");
    assert!(errors.contains("refused"), "{errors}");
    let server_ref = &server;
    eventually("three refused handshakes counted", || async move {
        let refused = metric(
            server_ref,
            "metaward_connections_refused_total{source=\"hl7\",reason=\"tls_handshake\"}",
        );
        (refused >= refused_before + 3.0).then_some(())
    })
    .await;
    // Only the certified gateway's messages were read (one taken, one refused).
    assert_eq!(
        metric(&server, "metaward_messages_received_total{source=\"hl7\"}"),
        2.0
    );
    let addr = server.http_addr();
    eventually("the refusals in the audit trail", || async {
        let audit = http(addr, "GET", "/api/v1/audit", None).await.body;
        (audit.contains("tls_handshake")
            && audit.contains("certificate_not_mapped")
            && audit.contains("mllp:gateway-1.icu.example"))
        .then_some(())
    })
    .await;
    server.shutdown().await;
}
