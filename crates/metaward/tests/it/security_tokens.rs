//! Credentials beside sign-in sessions: device tokens that post only their own device's
//! Observations (impersonation attempts refused, counted, kept and audited), service tokens
//! acting as their user, rotation and revocation over REST and `metaward token` taking effect
//! on a running server; sessions that survive a restart; login throttling per address.

use std::net::{IpAddr, SocketAddr};
use std::process::Command;

use serde_json::{Value, json};

use crate::*;

fn observation(device: &str, value: f64) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "59408-5"}]},
        "effectiveDateTime": ::fhir::datetime::format(model::Timestamp(now_ms())),
        "valueQuantity": {"value": value, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"},
        "device": {"reference": format!("Device/{device}")}
    })
}

fn transaction(resources: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": "transaction", "entry": resources.into_iter().map(|resource|
        json!({"resource": resource, "request": {"method": "POST", "url": "Observation"}})).collect::<Vec<_>>()})
}

/// `/metrics` counters of the fhir source: (received, accepted, rejected), and the rejections
/// by reason.
async fn fhir_counts(addr: SocketAddr) -> (u64, u64, u64, Vec<(String, u64)>) {
    let text = http(addr, "GET", "/metrics", None).await.body;
    let (mut received, mut accepted, mut rejected, mut reasons) = (0, 0, 0, Vec::new());
    for line in text.lines().filter(|l| l.contains("source=\"fhir\"")) {
        let value: u64 = line.rsplit(' ').next().unwrap().parse().unwrap_or(0);
        if line.starts_with("metaward_messages_received_total") {
            received = value;
        } else if line.starts_with("metaward_messages_accepted_total") {
            accepted = value;
        } else if line.starts_with("metaward_messages_rejected_total") {
            rejected += value;
            let reason = line.split("reason=\"").nth(1).unwrap().split('"').next();
            reasons.push((reason.unwrap().to_owned(), value));
        }
    }
    (received, accepted, rejected, reasons)
}

async fn create_token(addr: SocketAddr, body: Value) -> Value {
    let created = http(addr, "POST", "/api/v1/tokens", Some(&body.to_string())).await;
    assert_eq!(created.status, 201, "{}", created.body);
    created.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_token_posts_only_its_own_observations() {
    let (server, _dir) = start_server().await;
    server.apply_setup(small_setup()).await.unwrap();
    let addr = server.http_addr();
    let created = create_token(
        addr,
        json!({"name": "monitor-1", "kind": "device", "device": "dev-1"}),
    )
    .await;
    let token = created["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("mwd_"), "{created}");
    assert_eq!(
        created["expires_at"],
        Value::Null,
        "device tokens do not expire"
    );
    let listed = http(addr, "GET", "/api/v1/tokens", None).await;
    assert!(
        listed.body.contains("monitor-1") && !listed.body.contains(&token),
        "{}",
        listed.body
    );
    let post = |path: &'static str, body: Value| {
        let token = token.clone();
        async move { http_as(addr, Some(&token), "POST", path, Some(&body.to_string())).await }
    };

    // Its own data goes in, single and in a Bundle, and reaches the patient.
    let own = post("/fhir/Observation", observation("dev-1", 93.0)).await;
    assert_eq!(own.status, 201, "{}", own.body);
    let own_bundle = post(
        "/fhir",
        transaction(vec![observation("dev-1", 94.0), observation("dev-1", 95.0)]),
    )
    .await;
    assert_eq!(own_bundle.status, 200, "{}", own_bundle.body);
    eventually("the device's value on p1", || async {
        let twin = get_json(addr, "/api/v1/patients/p1/twin").await;
        has_value(&twin["values"], "spo2", 95.0).then_some(())
    })
    .await;

    // Speaking for another device, alone or inside a Bundle: refused, nothing of it accepted.
    let (_, accepted_before, _, _) = fhir_counts(addr).await;
    let other = post("/fhir/Observation", observation("dev-2", 50.0)).await;
    assert_eq!(other.status, 403, "{}", other.body);
    let outcome = other.json();
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert_eq!(outcome["issue"][0]["code"], "forbidden");
    assert_eq!(outcome["issue"][0]["expression"][0], "Observation.device");
    assert!(
        outcome["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("dev-1"),
        "{outcome}"
    );
    let mixed = post(
        "/fhir",
        transaction(vec![observation("dev-1", 51.0), observation("dev-2", 52.0)]),
    )
    .await;
    assert_eq!(mixed.status, 403, "{}", mixed.body);
    // The record, and anything but posting observations, is not a device's business.
    let record = post(
        "/fhir/Patient",
        json!({"resourceType": "Patient", "id": "px"}),
    )
    .await;
    assert_eq!(record.status, 403, "{}", record.body);
    assert_eq!(record.json()["resourceType"], "OperationOutcome");
    let record_bundle = post(
        "/fhir",
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Patient", "id": "px"}, "request": {"method": "PUT", "url": "Patient/px"}}]}),
    )
    .await;
    assert_eq!(record_bundle.status, 403, "{}", record_bundle.body);
    for path in [
        "/fhir/Patient/p1",
        "/fhir/Observation?patient=p1",
        "/api/v1/patients",
    ] {
        let read = http_as(addr, Some(&token), "GET", path, None).await;
        assert_eq!(read.status, 403, "GET {path}: {}", read.body);
        assert_eq!(read.json()["resourceType"], "OperationOutcome", "{path}");
        assert!(!read.body.contains("Ada"), "{}", read.body);
    }
    // By identifier, resolved as every device Observation is: a registered monitor's EUI-64
    // names mon-7, not dev-1.
    let eui = "urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680";
    let monitor = json!({
        "resourceType": "Device", "id": "mon-7",
        "identifier": [{"system": eui, "value": "00-09-FB-FF-FF-A0-F4-CA"}],
        "type": {"coding": [{"system": "urn:iso:std:iso:11073:10101", "code": "69965"}]}
    });
    let registered = http(
        addr,
        "PUT",
        "/fhir/Device/mon-7",
        Some(&monitor.to_string()),
    )
    .await;
    assert_eq!(registered.status, 201, "{}", registered.body);
    let mut by_identifier = observation("dev-1", 53.0);
    by_identifier["device"] =
        json!({"identifier": {"system": eui, "value": "00-09-FB-FF-FF-A0-F4-CA"}});
    let impersonation = post("/fhir/Observation", by_identifier.clone()).await;
    assert_eq!(impersonation.status, 403, "{}", impersonation.body);
    assert!(
        impersonation.body.contains("mon-7"),
        "{}",
        impersonation.body
    );
    let twin = get_json(addr, "/api/v1/patients/p1/twin").await;
    for refused in [50.0, 51.0, 52.0, 53.0] {
        assert!(!has_value(&twin["values"], "spo2", refused), "{twin}");
    }

    // Counted under their reasons, reconciled, kept as dead letters, audited.
    let (received, accepted, rejected, reasons) = fhir_counts(addr).await;
    assert_eq!(accepted, accepted_before, "nothing refused was accepted");
    assert_eq!(received, accepted + rejected, "{reasons:?}");
    let count = |reason: &str| {
        reasons
            .iter()
            .find(|(r, _)| r == reason)
            .map_or(0, |(_, n)| *n)
    };
    assert_eq!(count("device_mismatch"), 3, "{reasons:?}");
    assert_eq!(count("device_scope"), 5, "{reasons:?}");
    let letters = eventually("the refusals as dead letters", || async {
        let letters = get_json(addr, "/api/v1/dead-letters").await;
        let reasons: Vec<Value> = letters
            .as_array()?
            .iter()
            .map(|letter| letter["reason"].clone())
            .collect();
        (reasons.len() == 8).then_some(reasons)
    })
    .await;
    assert_eq!(
        letters.iter().filter(|r| **r == "device_mismatch").count(),
        3,
        "{letters:?}"
    );
    let audit = http(addr, "GET", "/api/v1/audit", None).await.body;
    assert!(audit.contains("device:dev-1"), "{audit}");
    assert!(audit.contains("403 device_mismatch"), "{audit}");
    assert!(audit.contains("403 device_scope"), "{audit}");

    // mon-7's own token may post by its identifier.
    let mon7 = create_token(
        addr,
        json!({"name": "monitor-7", "kind": "device", "device": "mon-7"}),
    )
    .await;
    let own_identifier = http_as(
        addr,
        mon7["token"].as_str(),
        "POST",
        "/fhir/Observation",
        Some(&by_identifier.to_string()),
    )
    .await;
    assert_eq!(own_identifier.status, 201, "{}", own_identifier.body);

    // Revoked: refused at the next request, without a restart.
    let revoked = http(addr, "DELETE", "/api/v1/tokens/monitor-1", None).await;
    assert_eq!(revoked.status, 204);
    let after = post("/fhir/Observation", observation("dev-1", 96.0)).await;
    assert_eq!(after.status, 401, "{}", after.body);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_tokens_act_as_their_user_and_change_without_a_restart() {
    let (server, dir) = start_server().await;
    server.apply_setup(small_setup()).await.unwrap();
    let addr = server.http_addr();
    let data = dir.path().join("data");
    server
        .create_user("svc-w1", "nurse", Some(vec!["w1".into()]))
        .await
        .unwrap();
    let created = create_token(
        addr,
        json!({"name": "script", "kind": "service", "user": "svc-w1"}),
    )
    .await;
    let token = created["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("mws_"));
    let ninety_days = 90 * 24 * 3600 * 1000;
    let expires = created["expires_at"].as_i64().unwrap();
    assert!(
        (expires - now_ms() - ninety_days).abs() < 60_000,
        "{created}"
    );
    // The user's role and wards: p1 is in w1; users are for admins.
    let patients = http_as(addr, Some(&token), "GET", "/api/v1/patients", None).await;
    assert_eq!(patients.status, 200);
    assert!(patients.body.contains("p1"), "{}", patients.body);
    let users = http_as(addr, Some(&token), "GET", "/api/v1/users", None).await;
    assert_eq!(users.status, 403);
    let audit = http(addr, "GET", "/api/v1/audit", None).await.body;
    assert!(audit.contains("token:script for svc-w1"), "{audit}");

    // Rotated over REST: the old secret is refused at once, the new one works.
    let rotated = http(addr, "POST", "/api/v1/tokens/script/rotate", None).await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let new_token = rotated.json()["token"].as_str().unwrap().to_owned();
    let old = http_as(addr, Some(&token), "GET", "/api/v1/patients", None).await;
    assert_eq!(old.status, 401);
    let new = http_as(addr, Some(&new_token), "GET", "/api/v1/patients", None).await;
    assert_eq!(new.status, 200);

    // `metaward token` on the running server's data directory.
    let metaward = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_metaward"))
            .args(args)
            .arg("--data")
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let rotated = metaward(&["token", "rotate", "script"]);
    let cli_token = rotated.lines().last().unwrap().to_owned();
    assert!(cli_token.starts_with("mws_"), "{rotated}");
    let old = http_as(addr, Some(&new_token), "GET", "/api/v1/patients", None).await;
    assert_eq!(old.status, 401, "rotated beside the running server");
    let new = http_as(addr, Some(&cli_token), "GET", "/api/v1/patients", None).await;
    assert_eq!(new.status, 200);
    let created = metaward(&["token", "create", "ox-1", "--device", "dev-1"]);
    let device_token = created.lines().last().unwrap().to_owned();
    let posted = http_as(
        addr,
        Some(&device_token),
        "POST",
        "/fhir/Observation",
        Some(&observation("dev-1", 92.0).to_string()),
    )
    .await;
    assert_eq!(posted.status, 201, "{}", posted.body);
    let listed = metaward(&["token", "list"]);
    assert!(listed.contains("\"script\"") && listed.contains("\"ox-1\""));
    assert!(
        !listed.contains(&cli_token) && !listed.contains(&device_token),
        "{listed}"
    );
    metaward(&["token", "revoke", "script"]);
    let revoked = http_as(addr, Some(&cli_token), "GET", "/api/v1/patients", None).await;
    assert_eq!(revoked.status, 401, "revoked beside the running server");
    // Disabling the user ends what the token may do.
    metaward(&["token", "create", "script2", "--user", "svc-w1"]);
    let again = metaward(&["token", "rotate", "script2"]);
    let token = again.lines().last().unwrap().to_owned();
    assert_eq!(
        http_as(addr, Some(&token), "GET", "/api/v1/patients", None)
            .await
            .status,
        200
    );
    let disabled = http(addr, "POST", "/api/v1/users/svc-w1/disable", None).await;
    assert_eq!(disabled.status, 204);
    assert_eq!(
        http_as(addr, Some(&token), "GET", "/api/v1/patients", None)
            .await
            .status,
        401
    );
    let trail = metaward(&["audit", "export"]);
    assert!(trail.contains("metaward token revoke script"), "{trail}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_a_restart_and_so_does_their_end() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(ServerConfig::ephemeral(dir.path()))
        .await
        .unwrap();
    let password = server.create_user("ann", "nurse", None).await.unwrap();
    let body = json!({"username": "ann", "password": password}).to_string();
    let signed_in = |addr| {
        let body = body.clone();
        async move {
            let response = http_as(addr, None, "POST", "/api/v1/auth/login", Some(&body)).await;
            assert_eq!(response.status, 200, "{}", response.body);
            response.json()
        }
    };
    let kept = signed_in(server.http_addr()).await;
    let ended = signed_in(server.http_addr()).await;
    let access = |session: &Value| session["access_token"].as_str().unwrap().to_owned();
    let out = http_as(
        server.http_addr(),
        Some(&access(&ended)),
        "POST",
        "/api/v1/auth/logout",
        None,
    )
    .await;
    assert_eq!(out.status, 204);
    server.shutdown().await;

    let server = Server::start(ServerConfig::ephemeral(dir.path()))
        .await
        .unwrap();
    let addr = server.http_addr();
    let me = http_as(addr, Some(&access(&kept)), "GET", "/api/v1/auth/me", None).await;
    assert_eq!(me.status, 200, "still signed in after the restart");
    assert_eq!(me.json()["name"], "ann");
    let gone = http_as(addr, Some(&access(&ended)), "GET", "/api/v1/auth/me", None).await;
    assert_eq!(gone.status, 401, "logged out stays logged out");
    let refresh = json!({"refresh_token": kept["refresh_token"]}).to_string();
    let renewed = http_as(addr, None, "POST", "/api/v1/auth/refresh", Some(&refresh)).await;
    assert_eq!(renewed.status, 200, "{}", renewed.body);
    let ended_refresh = json!({"refresh_token": ended["refresh_token"]}).to_string();
    let refused = http_as(
        addr,
        None,
        "POST",
        "/api/v1/auth/refresh",
        Some(&ended_refresh),
    )
    .await;
    assert_eq!(refused.status, 401);
    server.shutdown().await;
}

/// A login from a chosen loopback address (127.0.0.0/8 is all ours): (status, headers, body).
async fn login_from(
    source: &str,
    addr: SocketAddr,
    name: &str,
    password: &str,
) -> (u16, String, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(source.parse::<IpAddr>().unwrap(), 0))
        .unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let body = json!({"username": name, "password": password}).to_string();
    let request = format!(
        "POST /api/v1/auth/login HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (
        status,
        head.to_ascii_lowercase(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guesser_cannot_lock_a_user_out_of_their_own_machine() {
    let (server, _dir) = start_server().await;
    let addr = server.http_addr();
    let password = server.create_user("ann", "nurse", None).await.unwrap();
    // Someone at 127.0.0.2 guesses ann's password five times: ann is locked for them ...
    for _ in 0..5 {
        let (status, _, body) = login_from("127.0.0.2", addr, "ann", "guess").await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (401, &json!("bad_credentials"))
        );
    }
    let (status, _, body) = login_from("127.0.0.2", addr, "ann", &password).await;
    assert_eq!((status, &body["error"]["code"]), (401, &json!("locked")));
    // ... but not for ann at 127.0.0.1, which has not failed.
    let (status, _, body) = login_from("127.0.0.1", addr, "ann", &password).await;
    assert_eq!(status, 200, "{body}");

    // An address guessing across accounts waits (429, Retry-After), whatever it names; others
    // do not.
    for i in 0..10 {
        let (status, _, _) = login_from("127.0.0.3", addr, &format!("user{i}"), "guess").await;
        assert_eq!(status, 401);
    }
    let (status, head, body) = login_from("127.0.0.3", addr, "ann", &password).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "throttled");
    let retry_after: u64 = head
        .lines()
        .find_map(|line| line.strip_prefix("retry-after: "))
        .expect("a Retry-After header")
        .trim()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry_after), "{retry_after}");
    let (status, _, _) = login_from("127.0.0.1", addr, "ann", &password).await;
    assert_eq!(status, 200);
    let audit = http(addr, "GET", "/api/v1/audit", None).await.body;
    assert!(
        audit.contains("\"throttled\"") && audit.contains("127.0.0.3"),
        "{audit}"
    );
    assert!(
        audit.contains("\"locked\"") && audit.contains("127.0.0.2"),
        "{audit}"
    );
    server.shutdown().await;
}
