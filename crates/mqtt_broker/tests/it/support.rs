//! A recording handler whose publishes can be held back, and client helpers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use mqtt_broker::{
    Broker, BrokerConfig, BrokerHandle, ClientInfo, ConnectRefusal, Handler, IncomingPublish,
    PublishOutcome, PublishReason,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

pub const WAIT: Duration = Duration::from_secs(5);

/// Records every publish (when the broker hands it over) and resolves it:
/// - after the next queued gate is released, if a gate was queued;
/// - payload `not json` → kept in dead letters, reason 0x99;
/// - payload `reject` → not kept, reason 0x80;
/// - otherwise accepted.
#[derive(Default)]
pub struct RecordingHandler {
    pub received: Mutex<Vec<(String, IncomingPublish)>>,
    pub resolved: Arc<AtomicUsize>,
    pub gates: Mutex<Vec<oneshot::Receiver<()>>>,
    pub refuse_user: Option<&'static str>,
}

impl RecordingHandler {
    /// The next publish waits until the returned sender fires (or is dropped).
    pub fn gate(&self) -> oneshot::Sender<()> {
        let (sender, receiver) = oneshot::channel();
        self.gates.lock().unwrap().push(receiver);
        sender
    }

    pub fn topics(&self) -> Vec<String> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|(_, p)| p.topic.clone())
            .collect()
    }

    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    pub async fn wait_for_count(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.count() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "handler got {} publishes, wanted {n}",
                self.count()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Handler for RecordingHandler {
    fn on_connect(&self, client: &ClientInfo) -> BoxFuture<'static, Result<(), ConnectRefusal>> {
        let refused = self.refuse_user.is_some() && client.username.as_deref() == self.refuse_user;
        Box::pin(async move {
            if refused {
                return Err(ConnectRefusal::NotAuthorized);
            }
            Ok(())
        })
    }

    fn on_publish(
        &self,
        client: &ClientInfo,
        publish: IncomingPublish,
    ) -> BoxFuture<'static, PublishOutcome> {
        let gate = {
            let mut gates = self.gates.lock().unwrap();
            if gates.is_empty() {
                None
            } else {
                Some(gates.remove(0))
            }
        };
        let outcome = match &publish.payload[..] {
            b"not json" => PublishOutcome::kept_with(PublishReason::PayloadFormatInvalid),
            b"reject" => PublishOutcome::rejected(PublishReason::UnspecifiedError),
            _ => PublishOutcome::accepted(),
        };
        self.received
            .lock()
            .unwrap()
            .push((client.client_id.clone(), publish));
        let resolved = self.resolved.clone();
        Box::pin(async move {
            if let Some(gate) = gate {
                let _ = gate.await;
            }
            resolved.fetch_add(1, Ordering::SeqCst);
            outcome
        })
    }
}

pub async fn start(handler: Arc<RecordingHandler>) -> BrokerHandle {
    start_with(handler, BrokerConfig::default()).await
}

pub async fn start_with(handler: Arc<RecordingHandler>, config: BrokerConfig) -> BrokerHandle {
    Broker::bind("127.0.0.1:0".parse().unwrap(), config, handler)
        .await
        .unwrap()
}

/// A rumqttc 3.1.1 client whose event loop runs on its own task, events forwarded.
pub fn client_v4(
    broker: &BrokerHandle,
    id: &str,
) -> (
    rumqttc::AsyncClient,
    mpsc::UnboundedReceiver<Result<rumqttc::Event, String>>,
) {
    let mut options = rumqttc::MqttOptions::new(id, "127.0.0.1", broker.local_addr().port());
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 16);
    let (sender, receiver) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let event = eventloop.poll().await.map_err(|e| e.to_string());
            let failed = event.is_err();
            if sender.send(event).is_err() || failed {
                break;
            }
        }
    });
    (client, receiver)
}

/// A rumqttc MQTT 5 client whose event loop runs on its own task, events forwarded.
pub fn client_v5(
    broker: &BrokerHandle,
    id: &str,
) -> (
    rumqttc::v5::AsyncClient,
    mpsc::UnboundedReceiver<Result<rumqttc::v5::Event, String>>,
) {
    let mut options = rumqttc::v5::MqttOptions::new(id, "127.0.0.1", broker.local_addr().port());
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut eventloop) = rumqttc::v5::AsyncClient::new(options, 16);
    let (sender, receiver) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let event = eventloop.poll().await.map_err(|e| e.to_string());
            let failed = event.is_err();
            if sender.send(event).is_err() || failed {
                break;
            }
        }
    });
    (client, receiver)
}

/// Waits for the first event `pick` accepts, failing after [`WAIT`].
pub async fn next_matching<E: std::fmt::Debug, T>(
    events: &mut mpsc::UnboundedReceiver<Result<E, String>>,
    mut pick: impl FnMut(&E) -> Option<T>,
) -> T {
    tokio::time::timeout(WAIT, async {
        loop {
            match events.recv().await {
                Some(Ok(event)) => {
                    if let Some(value) = pick(&event) {
                        return value;
                    }
                }
                Some(Err(error)) => panic!("client failed: {error}"),
                None => panic!("client event loop ended"),
            }
        }
    })
    .await
    .expect("timed out waiting for an event")
}

/// Whether an event `pick` accepts arrives within `window` (errors count as no).
pub async fn arrives_within<E, T>(
    events: &mut mpsc::UnboundedReceiver<Result<E, String>>,
    window: Duration,
    mut pick: impl FnMut(&E) -> Option<T>,
) -> bool {
    tokio::time::timeout(window, async {
        loop {
            match events.recv().await {
                Some(Ok(event)) => {
                    if pick(&event).is_some() {
                        return;
                    }
                }
                _ => std::future::pending::<()>().await,
            }
        }
    })
    .await
    .is_ok()
}

/// A raw CONNECT: protocol level 4 or 5, clean session, the given keep alive.
pub fn raw_connect(level: u8, client_id: &str, keep_alive: u16) -> Vec<u8> {
    let mut body = vec![0x00, 0x04, b'M', b'Q', b'T', b'T', level, 0x02];
    body.extend_from_slice(&keep_alive.to_be_bytes());
    if level == 5 {
        body.push(0x00); // no properties
    }
    body.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
    body.extend_from_slice(client_id.as_bytes());
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend_from_slice(&body);
    packet
}

/// Connects a raw socket and reads the CONNACK; returns the socket and the CONNACK bytes.
pub async fn raw_connected(
    broker: &BrokerHandle,
    level: u8,
    client_id: &str,
    keep_alive: u16,
) -> (TcpStream, Vec<u8>) {
    let mut stream = TcpStream::connect(broker.local_addr()).await.unwrap();
    stream
        .write_all(&raw_connect(level, client_id, keep_alive))
        .await
        .unwrap();
    let mut connack = vec![0u8; 64];
    let n = tokio::time::timeout(WAIT, stream.read(&mut connack))
        .await
        .unwrap()
        .unwrap();
    connack.truncate(n);
    assert_eq!(
        connack.first(),
        Some(&0x20),
        "expected CONNACK, got {connack:02x?}"
    );
    (stream, connack)
}

/// Reads until the peer closes; returns everything it sent. Fails after [`WAIT`].
pub async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut all))
        .await
        .expect("connection was not closed")
        .ok();
    all
}
