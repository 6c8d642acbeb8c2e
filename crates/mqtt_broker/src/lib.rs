//! An embedded MQTT 3.1.1 and 5 broker whose PUBACK follows the application's durable write.
//!
//! Devices publish to the broker; every PUBLISH goes to the application's [`Handler`] first,
//! and a QoS 1 PUBACK (QoS 2 PUBREC) is written only once the handler's future resolves,
//! i.e. once the application says the data is durable. Only then is the message routed to
//! subscribers and, if flagged, retained.
//!
//! Invariants:
//! - each connection is its own task; a malformed or hostile peer loses only its own
//!   connection, never the listener or another client;
//! - the publishes of one connection are handled in order and their acknowledgements are
//!   written in order, while up to [`BrokerConfig::max_inflight_per_client`] handler futures
//!   run at once (so a group-committing log sees batches);
//! - a slow subscriber never blocks a publisher: its outbound queue is bounded and messages
//!   that do not fit are dropped and counted;
//! - logs never contain payloads.
//!
//! Packet bodies are read and written with rumqttc's `mqttbytes` codecs (v4 and v5); framing,
//! size limits, session rules and routing are ours.
//!
//! Not supported (yet): session persistence across reconnects (a clean-session=0 client gets
//! `session present = 0` every time), outbound QoS 2 (subscriptions are granted at most QoS 1),
//! retransmission of unacknowledged outbound QoS 1, shared subscriptions, AUTH (enhanced
//! authentication), TLS and will delay.

mod broker;
mod connection;
mod router;
pub mod topic;
mod wire;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;

pub use broker::{Broker, BrokerError, BrokerHandle, BrokerStats};
pub use wire::ProtocolVersion;

/// Quality of service of a publish or a subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QoS {
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

/// Limits and timings of the broker.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// Largest packet accepted from a client, fixed header included. Larger packets close the
    /// connection (MQTT 5: DISCONNECT 0x95 packet too large). Also announced to MQTT 5
    /// clients as the server's maximum packet size.
    pub max_packet_bytes: usize,
    /// How many publishes of one connection may be in the handler at once; the broker stops
    /// reading from that connection while this many are pending. Announced to MQTT 5 clients
    /// as the receive maximum.
    pub max_inflight_per_client: usize,
    /// A connection with keep alive `k` seconds is closed after `k × keep_alive_factor`
    /// seconds without a packet from the client (MQTT requires 1.5).
    pub keep_alive_factor: f64,
    /// How long a new TCP connection may take to send its CONNECT.
    pub connect_timeout: Duration,
    /// Messages waiting to be written to one subscriber; beyond this they are dropped.
    pub outbound_queue_len: usize,
    /// Outbound QoS 1 messages sent to one subscriber and not yet acknowledged; beyond this
    /// new messages wait in the outbound queue. Lowered to an MQTT 5 client's receive maximum.
    pub max_outbound_inflight: usize,
    /// The most topic aliases an MQTT 5 client may use towards the broker.
    pub topic_alias_maximum: u16,
    /// How long [`BrokerHandle::shutdown`] waits for connections to close before aborting them.
    pub shutdown_grace: Duration,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            max_packet_bytes: 1024 * 1024,
            max_inflight_per_client: 64,
            keep_alive_factor: 1.5,
            connect_timeout: Duration::from_secs(10),
            outbound_queue_len: 1024,
            max_outbound_inflight: 64,
            topic_alias_maximum: 64,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// Who is connected: what the CONNECT packet said, and from where.
#[derive(Clone, Debug)]
pub struct ClientInfo {
    /// The client identifier, or one the broker assigned when the client sent none.
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub protocol: ProtocolVersion,
    pub peer_addr: SocketAddr,
    /// Clean session (3.1.1) or clean start (5).
    pub clean_start: bool,
    /// Keep alive in seconds, 0 when disabled.
    pub keep_alive: u16,
}

/// Why the application refuses a CONNECT. Maps to a CONNACK reason code (MQTT 5) or the
/// nearest return code (3.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectRefusal {
    /// 0x85 (3.1.1: 0x02 identifier rejected)
    ClientIdentifierNotValid,
    /// 0x86 (3.1.1: 0x04 bad user name or password)
    BadUserNameOrPassword,
    /// 0x87 (3.1.1: 0x05 not authorized)
    NotAuthorized,
    /// 0x88 (3.1.1: 0x03 server unavailable)
    ServerUnavailable,
    /// 0x89 (3.1.1: 0x03 server unavailable)
    ServerBusy,
    /// 0x8A (3.1.1: 0x05 not authorized)
    Banned,
}

impl ConnectRefusal {
    /// The MQTT 5 CONNACK reason code.
    pub fn reason_code(self) -> u8 {
        match self {
            Self::ClientIdentifierNotValid => 0x85,
            Self::BadUserNameOrPassword => 0x86,
            Self::NotAuthorized => 0x87,
            Self::ServerUnavailable => 0x88,
            Self::ServerBusy => 0x89,
            Self::Banned => 0x8A,
        }
    }
}

/// A PUBLISH received from a client, topic alias already resolved.
#[derive(Clone, Debug)]
pub struct IncomingPublish {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// The client says this may be a redelivery of a message it sent before.
    pub dup: bool,
    /// MQTT 5 payload format indicator = 1 (UTF-8 text).
    pub payload_format_utf8: bool,
    /// MQTT 5 content type.
    pub content_type: Option<String>,
}

/// The reason the application gives for a publish, as an MQTT 5 PUBACK reason code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishReason {
    /// 0x00: accepted; the broker routes it to subscribers.
    Success,
    /// 0x80
    UnspecifiedError,
    /// 0x87
    NotAuthorized,
    /// 0x90
    TopicNameInvalid,
    /// 0x97
    QuotaExceeded,
    /// 0x99
    PayloadFormatInvalid,
}

impl PublishReason {
    /// The MQTT 5 PUBACK / PUBREC reason code.
    pub fn reason_code(self) -> u8 {
        match self {
            Self::Success => 0x00,
            Self::UnspecifiedError => 0x80,
            Self::NotAuthorized => 0x87,
            Self::TopicNameInvalid => 0x90,
            Self::QuotaExceeded => 0x97,
            Self::PayloadFormatInvalid => 0x99,
        }
    }
}

/// What the application did with a publish.
///
/// - MQTT 5: QoS 1/2 are acknowledged with `reason`'s code.
/// - MQTT 3.1.1 has no negative acknowledgement: the broker acknowledges when `kept` is
///   true (for example a payload kept in a dead-letter store) and otherwise closes the
///   connection, so the device retries later.
/// - Only [`PublishReason::Success`] is routed to subscribers and retained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublishOutcome {
    pub reason: PublishReason,
    /// The message is durable (in the log or a dead-letter store): the client need not resend.
    pub kept: bool,
}

impl PublishOutcome {
    /// Durable and accepted.
    pub fn accepted() -> Self {
        Self {
            reason: PublishReason::Success,
            kept: true,
        }
    }

    /// Durable, but refused for `reason` (e.g. kept in the dead-letter store).
    pub fn kept_with(reason: PublishReason) -> Self {
        Self { reason, kept: true }
    }

    /// Not kept; the client should not consider it delivered.
    pub fn rejected(reason: PublishReason) -> Self {
        Self {
            reason,
            kept: false,
        }
    }
}

/// The application side of the broker.
pub trait Handler: Send + Sync + 'static {
    /// A client sent CONNECT. Resolve to `Err` to refuse it with a CONNACK reason. A future,
    /// so that checking a password hash (deliberately slow) can run off the async threads.
    fn on_connect(&self, client: &ClientInfo) -> BoxFuture<'static, Result<(), ConnectRefusal>>;

    /// Every PUBLISH from a client, in the order the client sent them. For QoS 1 the PUBACK
    /// (QoS 2: PUBREC) is written only after the returned future resolves. If the connection
    /// closes first, the future is dropped: the client got no acknowledgement and will resend.
    fn on_publish(
        &self,
        client: &ClientInfo,
        publish: IncomingPublish,
    ) -> BoxFuture<'static, PublishOutcome>;

    /// The connection of `client` is closed (for any reason).
    fn on_disconnect(&self, client: &ClientInfo) {
        let _ = client;
    }
}
