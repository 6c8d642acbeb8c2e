//! Publishes a simulated ward to an MQTT broker as its devices would: one MQTT 3.1.1
//! connection per bed (its monitor, oximeter and temperature patch, as a bedside gateway) and
//! one per room sensor. Simulated time follows the tokio clock (scaled by `time_scale`), so
//! `tokio::time::pause` drives it in tests. Each connection's event loop runs in its own task,
//! counts what was sent and acknowledged, and reconnects with backoff when the broker goes away.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::ward::{AssociationTarget, SimWard};

#[derive(Clone, Debug)]
pub struct PublisherOptions {
    /// Publish with QoS 1 (acknowledged once durable) instead of QoS 0.
    pub qos1: bool,
    /// Client ids are `{prefix}-{bed or room id}`.
    pub client_id_prefix: String,
    /// How often simulated time advances and due messages are published.
    pub tick: Duration,
    /// Simulated milliseconds per real millisecond (1.0 is real time).
    pub time_scale: f64,
    /// Requests buffered per connection before `publish` waits (backpressure).
    pub channel_capacity: usize,
    /// How long to wait at shutdown for outstanding acknowledgements.
    pub drain_timeout: Duration,
}

impl Default for PublisherOptions {
    fn default() -> Self {
        Self {
            qos1: true,
            client_id_prefix: "metaward-sim".into(),
            tick: Duration::from_secs(1),
            time_scale: 1.0,
            channel_capacity: 1024,
            drain_timeout: Duration::from_secs(3),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PublisherStats {
    /// Messages the simulation produced and handed to a client.
    pub published: u64,
    /// PUBLISH packets written to the socket (retransmissions after a reconnect count again).
    pub sent: u64,
    /// PUBACKs received (QoS 1 only).
    pub acked: u64,
    /// Successful CONNACKs, first connections and reconnections.
    pub connections: u64,
    /// Connection failures and drops.
    pub connection_errors: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum PublisherError {
    #[error("mqtt client request failed: {0}")]
    Client(#[from] rumqttc::ClientError),
    #[error("the ward has no devices")]
    NoDevices,
}

#[derive(Default)]
struct Counters {
    published: AtomicU64,
    sent: AtomicU64,
    acked: AtomicU64,
    connections: AtomicU64,
    connection_errors: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> PublisherStats {
        PublisherStats {
            published: self.published.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            acked: self.acked.load(Ordering::Relaxed),
            connections: self.connections.load(Ordering::Relaxed),
            connection_errors: self.connection_errors.load(Ordering::Relaxed),
        }
    }
}

struct Gateway {
    client: AsyncClient,
    driver: JoinHandle<()>,
}

/// Runs until `shutdown` is cancelled, then waits up to `drain_timeout` for acknowledgements,
/// disconnects and returns the counts.
pub async fn run_publisher(
    mqtt_addr: SocketAddr,
    mut ward: SimWard,
    options: PublisherOptions,
    shutdown: CancellationToken,
) -> Result<PublisherStats, PublisherError> {
    let counters = Arc::new(Counters::default());
    let stop_drivers = CancellationToken::new();
    let mut gateway_of_target: HashMap<AssociationTarget, usize> = HashMap::new();
    let mut gateway_of_device: HashMap<String, usize> = HashMap::new();
    let mut gateways: Vec<Gateway> = Vec::new();
    for device in ward.devices() {
        let index = *gateway_of_target
            .entry(device.target.clone())
            .or_insert_with(|| {
                let name = match &device.target {
                    AssociationTarget::Bed(bed) => bed.to_string(),
                    AssociationTarget::Room(room) => room.to_string(),
                };
                let client_id = format!("{}-{name}", options.client_id_prefix);
                let mut mqtt_options =
                    MqttOptions::new(client_id, mqtt_addr.ip().to_string(), mqtt_addr.port());
                mqtt_options
                    .set_keep_alive(Duration::from_secs(30))
                    .set_clean_session(true)
                    .set_max_packet_size(1 << 20, 1 << 20);
                let (client, eventloop) =
                    AsyncClient::new(mqtt_options, options.channel_capacity.max(1));
                let driver = tokio::spawn(drive(
                    eventloop,
                    counters.clone(),
                    stop_drivers.clone(),
                    name,
                ));
                gateways.push(Gateway { client, driver });
                gateways.len() - 1
            });
        gateway_of_device.insert(device.device_id.to_string(), index);
    }
    if gateways.is_empty() {
        return Err(PublisherError::NoDevices);
    }
    info!(connections = gateways.len(), %mqtt_addr, "simulator publishing");

    let qos = if options.qos1 {
        QoS::AtLeastOnce
    } else {
        QoS::AtMostOnce
    };
    let start = ward.config().start;
    let clock_zero = Instant::now();
    let mut ticker = tokio::time::interval(options.tick.max(Duration::from_millis(1)));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut result = Ok(());
    'run: loop {
        tokio::select! {
            _ = shutdown.cancelled() => break 'run,
            _ = ticker.tick() => {}
        }
        let elapsed_ms = clock_zero.elapsed().as_secs_f64() * 1000.0 * options.time_scale;
        let now = start.plus_millis(elapsed_ms as i64);
        for message in ward.tick(now) {
            let Some(&index) = gateway_of_device.get(&message.device_id) else {
                continue;
            };
            let client = &gateways[index].client;
            tokio::select! {
                _ = shutdown.cancelled() => break 'run,
                published = client.publish(message.topic, qos, false, message.payload) => {
                    if let Err(error) = published {
                        result = Err(PublisherError::Client(error));
                        break 'run;
                    }
                    counters.published.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    // Give outstanding messages a chance to be written and acknowledged.
    let drain_deadline = Instant::now() + options.drain_timeout;
    while Instant::now() < drain_deadline {
        let stats = counters.snapshot();
        let done = if options.qos1 {
            stats.acked >= stats.published
        } else {
            stats.sent >= stats.published
        };
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for gateway in &gateways {
        let _ = gateway.client.try_disconnect();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop_drivers.cancel();
    for gateway in gateways {
        let _ = gateway.driver.await;
    }
    let stats = counters.snapshot();
    info!(
        published = stats.published,
        acked = stats.acked,
        "simulator stopped"
    );
    result.map(|()| stats)
}

/// Keeps one connection's event loop polled: counts, and reconnects with backoff on errors
/// (polling again after an error makes rumqttc reconnect).
async fn drive(
    mut eventloop: EventLoop,
    counters: Arc<Counters>,
    stop: CancellationToken,
    name: String,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => return,
            event = eventloop.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                counters.connections.fetch_add(1, Ordering::Relaxed);
                backoff = Duration::from_millis(100);
                debug!(gateway = %name, "connected");
            }
            Ok(Event::Incoming(Packet::PubAck(_))) => {
                counters.acked.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Event::Outgoing(Outgoing::Publish(_))) => {
                counters.sent.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
            Ok(_) => {}
            Err(error) => {
                counters.connection_errors.fetch_add(1, Ordering::Relaxed);
                warn!(gateway = %name, %error, "mqtt connection failed, retrying");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}
