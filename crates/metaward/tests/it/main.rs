//! End-to-end tests over real sockets: the in-process server (`server::Server`), the real
//! binary, real MQTT clients (rumqttc, mosquitto_pub) and a real WebSocket client.

mod alarms;
pub(crate) mod crash;
mod device_credentials;
mod devices;
mod emr;
mod fhir;
mod fhir_record;
pub(crate) mod hl7;
mod hl7_access;
mod ingest;
mod mosquitto;
mod mqtt_external;
mod openapi;
mod presence;
mod record_twin;
mod rounds;
mod rules;
mod scores;
mod security;
mod security_tokens;
mod sql;
mod sso;
mod tls;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use model::{AssociationTarget, BedId, DeviceId, DeviceKind, PatientId, RoomId, WardId};
use serde_json::Value;
use server::setup::WardSetup;
use server::{Server, ServerConfig};
use store::{
    BedRecord, DeviceRecord, PatientRecord, RoomLayout, RoomRecord, WardLayout, WardRecord,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long to wait for a condition before failing: generous, never a speed assertion.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Each server's admin token, by its HTTP address: [`http`] sends it, so tests that are not
/// about security run as a signed-in admin through the real login.
static TOKENS: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<SocketAddr, String>>,
> = std::sync::LazyLock::new(Default::default);

pub fn register_token(addr: SocketAddr, token: String) {
    TOKENS.lock().unwrap().insert(addr, token);
}

/// The admin token [`http`] uses for this server.
pub fn token_of(addr: SocketAddr) -> Option<String> {
    TOKENS.lock().unwrap().get(&addr).cloned()
}

/// `Authorization: Bearer …\r\n` for hand-written requests (empty if none is registered).
pub fn auth_header(addr: SocketAddr) -> String {
    token_of(addr).map_or_else(String::new, |token| {
        format!("Authorization: Bearer {token}\r\n")
    })
}

/// The stream's URL with the registered token (browsers cannot set headers on a WebSocket, so
/// the token goes in the query) and `query` (e.g. `ward=w1`, or empty).
pub fn stream_url(addr: SocketAddr, query: &str) -> String {
    let token = token_of(addr).expect("a signed-in test server");
    let extra = if query.is_empty() {
        String::new()
    } else {
        format!("&{query}")
    };
    format!("ws://{addr}/api/v1/stream?access_token={token}{extra}")
}

/// Signs in over the real login route and returns the access token.
pub async fn login(addr: SocketAddr, name: &str, password: &str) -> String {
    let body = serde_json::json!({ "username": name, "password": password }).to_string();
    let response = http_as(addr, None, "POST", "/api/v1/auth/login", Some(&body)).await;
    assert_eq!(response.status, 200, "login {name}: {}", response.body);
    response.json()["access_token"].as_str().unwrap().to_owned()
}

/// Creates a user on `server` and signs them in: their token.
pub async fn user_token(
    server: &Server,
    name: &str,
    role: &str,
    wards: Option<Vec<String>>,
) -> String {
    let password = server
        .create_user(name, role, wards)
        .await
        .expect("user created");
    login(server.http_addr(), name, &password).await
}

/// Creates an admin of every ward on a started server and registers its token for [`http`].
pub async fn sign_in_admin(server: &Server) {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let name = format!(
        "it-admin-{}",
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let token = user_token(server, &name, "admin", None).await;
    register_token(server.http_addr(), token);
}

/// A server on ephemeral ports with a fresh data directory (kept alive by the returned guard).
pub async fn start_server() -> (Server, tempfile::TempDir) {
    start_server_with(|_| {}).await
}

/// [`start_server`] with settings changed by `configure`.
pub async fn start_server_with(
    configure: impl FnOnce(&mut ServerConfig),
) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::ephemeral(dir.path().join("data"));
    configure(&mut config);
    let server = Server::start(config).await.expect("server starts");
    sign_in_admin(&server).await;
    (server, dir)
}

/// The next JSON text frame of a WebSocket stream, within the deadline.
pub async fn next_json<S>(ws: &mut S) -> Value
where
    S: futures::Stream<
            Item = Result<
                tokio_tungstenite::tungstenite::Message,
                tokio_tungstenite::tungstenite::Error,
            >,
        > + Unpin,
{
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let message = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("a stream message in time")
            .expect("stream open")
            .expect("ws ok");
        match message {
            Message::Text(text) => return serde_json::from_str(text.as_str()).expect("JSON frame"),
            Message::Close(frame) => panic!("stream closed: {frame:?}"),
            _ => {}
        }
    }
}

/// One ward `w1`, one room `r1`, one bed `b1`, patient `p1` in it, device `dev-1` on the bed.
pub fn small_setup() -> WardSetup {
    WardSetup {
        wards: vec![WardLayout {
            ward: WardRecord {
                id: WardId::new("w1"),
                name: "Ward 1".into(),
            },
            rooms: vec![RoomLayout {
                room: RoomRecord {
                    id: RoomId::new("r1"),
                    ward_id: WardId::new("w1"),
                    name: "Room 1".into(),
                    x: 0.0,
                    z: 0.0,
                    width: 8.0,
                    depth: 6.0,
                },
                beds: vec![BedRecord {
                    id: BedId::new("b1"),
                    room_id: RoomId::new("r1"),
                    label: "Bed 1".into(),
                    x: 2.0,
                    z: 1.5,
                    rotation: 0.0,
                }],
            }],
        }],
        patients: vec![PatientRecord {
            id: PatientId::new("p1"),
            name: "Ada Example".into(),
            birth_date: Some("1958-03-01".into()),
            sex: "female".into(),
            conditions: vec![],
        }],
        admissions: vec![(PatientId::new("p1"), BedId::new("b1"))],
        devices: vec![DeviceRecord {
            id: DeviceId::new("dev-1"),
            kind: DeviceKind::BedsideMonitor,
            model: "Test Monitor".into(),
            placement: None,
            first_seen: None,
            last_seen: None,
        }],
        associations: vec![(
            DeviceId::new("dev-1"),
            AssociationTarget::Bed(BedId::new("b1")),
        )],
    }
}

pub struct Response {
    pub status: u16,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// A minimal HTTP/1.1 client: one request per connection (`Connection: close`), as the
/// server's signed-in test admin (see [`start_server`]).
pub async fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> Response {
    let token = token_of(addr);
    http_as(addr, token.as_deref(), method, path, body).await
}

/// [`http`] with a chosen bearer token, or none (anonymous).
pub async fn http_as(
    addr: SocketAddr,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Response {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect http");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if let Some(body) = body {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    } else {
        request.push_str("Content-Length: 0\r\n\r\n");
    }
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad response: {text}"));
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:")
            && l.to_ascii_lowercase().contains("chunked")
    });
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    Response { status, body }
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

pub async fn get_json(addr: SocketAddr, path: &str) -> Value {
    let response = http(addr, "GET", path, None).await;
    assert_eq!(response.status, 200, "GET {path}: {}", response.body);
    response.json()
}

/// Polls `check` until it returns `Some`, failing after [`DEADLINE`] with `what`.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(start.elapsed() < DEADLINE, "gave up waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Publishes one QoS 1 message with an MQTT 3.1.1 client and waits for its PUBACK.
pub async fn publish_v311(mqtt: SocketAddr, client_id: &str, device: &str, payload: String) {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let mut options = MqttOptions::new(client_id, mqtt.ip().to_string(), mqtt.port());
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    client
        .publish(
            format!("metaward/v1/devices/{device}/obs"),
            QoS::AtLeastOnce,
            false,
            payload,
        )
        .await
        .unwrap();
    let waited = tokio::time::timeout(DEADLINE, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => return,
                Ok(_) => {}
                Err(error) => panic!("mqtt error: {error}"),
            }
        }
    })
    .await;
    assert!(waited.is_ok(), "no PUBACK from the broker");
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), eventloop.poll()).await;
}

pub fn numeric(time: i64, metric: &str, value: f64) -> String {
    serde_json::json!({ "time": time, "numerics": [ { "metric": metric, "value": value } ] })
        .to_string()
}

/// Whether a JSON array of `<value>`s holds `metric` = `value`.
pub fn has_value(values: &Value, metric: &str, value: f64) -> bool {
    values.as_array().is_some_and(|items| {
        items
            .iter()
            .any(|v| v["metric"] == metric && v["value"].as_f64() == Some(value))
    })
}
