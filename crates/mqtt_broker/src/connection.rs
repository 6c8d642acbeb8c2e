//! One client connection: CONNECT, then a loop that reads packets, runs publishes through the
//! handler (pipelined, acknowledged in order), writes deliveries to this subscriber and
//! enforces keep alive.
//!
//! This task owns its socket; whatever goes wrong here closes this connection only.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::router::{Delivery, Shared, Stats, SubscriptionOptions};
use crate::topic::{valid_topic_filter, valid_topic_name};
use crate::wire::{
    self, ConnectPacket, Incoming, Outgoing, ProtocolErrorKind, ProtocolVersion, PublishPacket,
    WireError,
};
use crate::{ClientInfo, IncomingPublish, PublishOutcome, PublishReason, QoS};

#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    #[error("io: {0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Protocol(#[from] WireError),
    #[error("peer closed the connection before CONNECT")]
    ClosedBeforeConnect,
    /// A CONNECT of a known protocol that could not be decoded: refused with a CONNACK.
    #[error("bad connect: {0}")]
    BadConnect(WireError, ProtocolVersion),
    /// MQTT 3.1.1 has no negative acknowledgement: closing is how the broker says "not kept".
    #[error("handler did not keep a qos {qos} publish, closing (3.1.1 has no negative ack)")]
    NotKept { qos: u8 },
}

/// How the connection loop ended without an error.
enum Exit {
    /// DISCONNECT with this reason code (0x00 normal: no will; anything else: will).
    ClientDisconnect(u8),
    PeerClosed,
    Cancelled,
}

/// A publish whose handler future resolved, ready to be acknowledged and routed.
struct Handled {
    topic: String,
    payload: Bytes,
    qos: QoS,
    retain: bool,
    packet_id: u16,
    /// A QoS 2 redelivery of a packet id still awaiting PUBREL: acknowledge, don't handle.
    duplicate: bool,
    outcome: PublishOutcome,
}

/// The two halves of a client's byte stream, over plain TCP or TLS alike.
pub(crate) type Reader = Box<dyn tokio::io::AsyncRead + Send + Unpin>;
pub(crate) type Writer = Box<dyn tokio::io::AsyncWrite + Send + Unpin>;

pub(crate) async fn serve(
    shared: Arc<Shared>,
    (mut reader, mut writer): (Reader, Writer),
    peer_addr: SocketAddr,
) {
    let connection_id = shared.next_connection_id();
    Stats::add(&shared.stats.connections_accepted, 1);
    shared
        .stats
        .connections_current
        .fetch_add(1, Ordering::Relaxed);
    let mut read_buffer = BytesMut::with_capacity(4096);

    let connect = tokio::time::timeout(
        shared.config.connect_timeout,
        read_connect(&shared, &mut reader, &mut read_buffer),
    )
    .await
    .unwrap_or_else(|_| {
        Err(ConnectionError::Protocol(WireError::new(
            ProtocolErrorKind::ConnectTimeout,
            "no CONNECT in time",
        )))
    });
    let (protocol, connect) = match connect {
        Ok(connect) => connect,
        Err(error) => {
            refuse_before_connack(&shared, &mut writer, peer_addr, error).await;
            shared
                .stats
                .connections_current
                .fetch_sub(1, Ordering::Relaxed);
            return;
        }
    };

    let mut connection = match Connection::accept(
        shared.clone(),
        connection_id,
        protocol,
        connect,
        writer,
        peer_addr,
    )
    .await
    {
        Some(connection) => connection,
        None => {
            shared
                .stats
                .connections_current
                .fetch_sub(1, Ordering::Relaxed);
            return;
        }
    };
    let result = connection.run(reader, read_buffer).await;
    connection.finish(result).await;
    shared
        .stats
        .connections_current
        .fetch_sub(1, Ordering::Relaxed);
}

/// Reads until the first complete packet, checks it is a CONNECT and decodes it with the
/// codec its protocol level asks for.
async fn read_connect(
    shared: &Shared,
    reader: &mut Reader,
    read_buffer: &mut BytesMut,
) -> Result<(ProtocolVersion, ConnectPacket), ConnectionError> {
    let max = shared.config.max_packet_bytes;
    let frame = loop {
        if let Some(frame) = wire::next_frame(read_buffer, max)? {
            break frame;
        }
        if reader.read_buf(read_buffer).await? == 0 {
            return Err(ConnectionError::ClosedBeforeConnect);
        }
    };
    Stats::add(&shared.stats.packets_received, 1);
    let protocol = match wire::connect_protocol_level(&frame)? {
        5 => ProtocolVersion::V5,
        _ => ProtocolVersion::V311,
    };
    match wire::decode(protocol, frame, max) {
        Ok(Incoming::Connect(connect)) => Ok((protocol, connect)),
        Ok(_) => unreachable!("connect_protocol_level checked the packet type"),
        Err(error) => Err(ConnectionError::BadConnect(error, protocol)),
    }
}

/// Answers a connection that failed before CONNACK: a CONNACK refusal where the protocol
/// allows one, otherwise just a close.
async fn refuse_before_connack(
    shared: &Shared,
    writer: &mut Writer,
    peer_addr: SocketAddr,
    error: ConnectionError,
) {
    match &error {
        ConnectionError::ClosedBeforeConnect => {
            debug!(peer = %peer_addr, "closed before connect");
            return;
        }
        ConnectionError::Protocol(wire_error) | ConnectionError::BadConnect(wire_error, _) => {
            shared.stats.protocol_error(wire_error.kind);
            let reply = match (&error, wire_error.kind) {
                // a 3.1 or future client: 3.1.1 CONNACK 0x01 is understood by all
                (_, ProtocolErrorKind::UnsupportedProtocolVersion) => {
                    Some((ProtocolVersion::V311, 0x84))
                }
                // 3.1.1 has no return code for a malformed CONNECT: just close
                (ConnectionError::BadConnect(_, ProtocolVersion::V5), kind) => {
                    Some((ProtocolVersion::V5, kind.v5_reason_code()))
                }
                _ => None,
            };
            if let Some((protocol, reason_code)) = reply {
                let mut buffer = BytesMut::new();
                if wire::encode(protocol, connack(reason_code, None, shared), &mut buffer).is_ok() {
                    let _ = writer.write_all(&buffer).await;
                }
            }
        }
        _ => {}
    }
    warn!(peer = %peer_addr, error = %error, "connection refused before connack");
    let _ = writer.shutdown().await;
}

fn connack(reason_code: u8, assigned_client_id: Option<String>, shared: &Shared) -> Outgoing {
    Outgoing::ConnAck {
        session_present: false,
        reason_code,
        assigned_client_id,
        topic_alias_maximum: shared.config.topic_alias_maximum,
        receive_maximum: u16::try_from(shared.config.max_inflight_per_client.max(1))
            .unwrap_or(u16::MAX),
        maximum_packet_size: u32::try_from(shared.config.max_packet_bytes).unwrap_or(u32::MAX),
    }
}

struct Connection {
    shared: Arc<Shared>,
    id: u64,
    client: Arc<ClientInfo>,
    protocol: ProtocolVersion,
    writer: Writer,
    write_buffer: BytesMut,
    will: Option<wire::WillPacket>,
    token: CancellationToken,
    overflowed: Arc<AtomicBool>,
    deliveries: mpsc::Receiver<Delivery>,
    topic_aliases: HashMap<u16, String>,
    /// QoS 2 packet ids received and not yet released by PUBREL.
    qos2_received: HashSet<u16>,
    /// Outbound QoS 1 packet ids not yet acknowledged.
    outbound_inflight: HashSet<u16>,
    outbound_inflight_max: usize,
    next_packet_id: u16,
    /// MQTT 5: the largest packet the client accepts.
    client_max_packet: usize,
}

impl Connection {
    /// Validates the CONNECT, asks the handler, answers with CONNACK and registers the
    /// connection. Returns `None` when the connection was refused (and closed).
    async fn accept(
        shared: Arc<Shared>,
        id: u64,
        protocol: ProtocolVersion,
        connect: ConnectPacket,
        mut writer: Writer,
        peer_addr: SocketAddr,
    ) -> Option<Self> {
        let mut assigned_client_id = None;
        let mut refusal: Option<u8> = None;
        let client_id = if connect.client_id.is_empty() {
            if protocol == ProtocolVersion::V311 && !connect.clean_start {
                // 3.1.1 §3.1.3-8: an empty client id requires clean session
                refusal = Some(0x85);
            }
            let assigned = format!("metaward-auto-{id}");
            assigned_client_id = Some(assigned.clone());
            assigned
        } else {
            connect.client_id.clone()
        };
        if connect
            .will
            .as_ref()
            .is_some_and(|will| !valid_topic_name(&will.topic))
        {
            shared
                .stats
                .protocol_error(ProtocolErrorKind::TopicNameInvalid);
            refusal = Some(0x90);
        }
        let client = Arc::new(ClientInfo {
            client_id,
            username: connect.username,
            password: connect.password,
            protocol,
            peer_addr,
            clean_start: connect.clean_start,
            keep_alive: connect.keep_alive,
        });
        if refusal.is_none() {
            refusal = shared
                .handler
                .on_connect(&client)
                .await
                .err()
                .map(|refused| refused.reason_code());
        }

        let mut buffer = BytesMut::new();
        if let Some(reason_code) = refusal {
            Stats::add(&shared.stats.connections_refused, 1);
            warn!(client = %client.client_id, peer = %peer_addr, reason_code, "connect refused");
            if wire::encode(protocol, connack(reason_code, None, &shared), &mut buffer).is_ok() {
                let _ = writer.write_all(&buffer).await;
            }
            let _ = writer.shutdown().await;
            return None;
        }

        let token = shared.shutdown.child_token();
        if let Some(previous) = shared.take_over_client_id(&client.client_id, id, token.clone()) {
            debug!(client = %client.client_id, "client id taken over by a new connection");
            previous.cancel();
        }
        let (sender, deliveries) = mpsc::channel(shared.config.outbound_queue_len.max(1));
        let overflowed = Arc::new(AtomicBool::new(false));
        shared.add_subscriber(id, sender, token.clone(), overflowed.clone());

        let outbound_inflight_max = match connect.receive_maximum {
            Some(receive_maximum) => shared
                .config
                .max_outbound_inflight
                .min(usize::from(receive_maximum)),
            None => shared.config.max_outbound_inflight,
        }
        .max(1);
        let mut connection = Self {
            shared: shared.clone(),
            id,
            client,
            protocol,
            writer,
            write_buffer: buffer,
            will: connect.will,
            token,
            overflowed,
            deliveries,
            topic_aliases: HashMap::new(),
            qos2_received: HashSet::new(),
            outbound_inflight: HashSet::new(),
            outbound_inflight_max,
            next_packet_id: 0,
            client_max_packet: connect
                .max_packet_size
                .map_or(usize::MAX, |max| usize::try_from(max).unwrap_or(usize::MAX)),
        };
        let ack = connack(0x00, assigned_client_id, &shared);
        if let Err(error) = connection.write(ack).await {
            warn!(client = %connection.client.client_id, error = %error, "writing connack failed");
            connection.finish(Err(error)).await;
            return None;
        }
        debug!(client = %connection.client.client_id, peer = %peer_addr, ?protocol, "connected");
        Some(connection)
    }

    async fn write(&mut self, packet: Outgoing) -> Result<(), ConnectionError> {
        self.write_buffer.clear();
        wire::encode(self.protocol, packet, &mut self.write_buffer)?;
        if self.write_buffer.is_empty() {
            return Ok(());
        }
        self.writer.write_all(&self.write_buffer).await?;
        Stats::add(&self.shared.stats.packets_sent, 1);
        Ok(())
    }

    fn keep_alive_limit(&self) -> Option<Duration> {
        (self.client.keep_alive > 0).then(|| {
            Duration::from_secs_f64(
                f64::from(self.client.keep_alive) * self.shared.config.keep_alive_factor,
            )
        })
    }

    async fn run(
        &mut self,
        mut reader: Reader,
        mut read_buffer: BytesMut,
    ) -> Result<Exit, ConnectionError> {
        let max_packet = self.shared.config.max_packet_bytes;
        let max_inflight = self.shared.config.max_inflight_per_client.max(1);
        let keep_alive = self.keep_alive_limit();
        let mut pending: FuturesOrdered<BoxFuture<'static, Handled>> = FuturesOrdered::new();
        let mut last_activity = Instant::now();
        let token = self.token.clone();

        loop {
            // decode what is already buffered, as far as there is room for handler futures
            while pending.len() < max_inflight {
                let Some(frame) = wire::next_frame(&mut read_buffer, max_packet)? else {
                    break;
                };
                Stats::add(&self.shared.stats.packets_received, 1);
                let packet = wire::decode(self.protocol, frame, max_packet)?;
                if let Some(exit) = self.handle(packet, &mut pending).await? {
                    return Ok(exit);
                }
            }
            let reading = pending.len() < max_inflight;
            let can_deliver = self.outbound_inflight.len() < self.outbound_inflight_max;
            // while the handler holds us back we are not reading, so the client's silence is ours
            let deadline = keep_alive.map(|limit| last_activity + limit);

            tokio::select! {
                biased;
                () = token.cancelled() => return Ok(Exit::Cancelled),
                Some(handled) = pending.next(), if !pending.is_empty() => {
                    self.acknowledge(handled).await?;
                    last_activity = Instant::now();
                }
                read = reader.read_buf(&mut read_buffer), if reading => {
                    if read? == 0 {
                        return Ok(Exit::PeerClosed);
                    }
                    last_activity = Instant::now();
                }
                Some(delivery) = self.deliveries.recv(), if can_deliver => {
                    self.deliver(delivery).await?;
                }
                () = sleep_until_option(deadline), if reading && deadline.is_some() => {
                    return Err(WireError::new(
                        ProtocolErrorKind::KeepAliveTimeout,
                        "no packet within 1.5 times keep alive",
                    )
                    .into());
                }
            }
        }
    }

    /// Handles one packet. Returns `Some` when the client disconnected.
    async fn handle(
        &mut self,
        packet: Incoming,
        pending: &mut FuturesOrdered<BoxFuture<'static, Handled>>,
    ) -> Result<Option<Exit>, ConnectionError> {
        match packet {
            Incoming::Connect(_) => {
                return Err(
                    WireError::new(ProtocolErrorKind::ProtocolError, "second CONNECT").into(),
                );
            }
            Incoming::Publish(publish) => self.receive_publish(publish, pending)?,
            Incoming::PubAck(packet_id) => {
                self.outbound_inflight.remove(&packet_id);
            }
            Incoming::PubRec(packet_id) | Incoming::PubComp(packet_id) => {
                // the broker never sends QoS 2, so there is nothing to release
                debug!(client = %self.client.client_id, packet_id, "ignored pubrec/pubcomp");
            }
            Incoming::PubRel(packet_id) => {
                let found = self.qos2_received.remove(&packet_id);
                self.write(Outgoing::PubComp { packet_id, found }).await?;
            }
            Incoming::Subscribe { packet_id, filters } => {
                let mut results = Vec::with_capacity(filters.len());
                let mut retained = Vec::new();
                for filter in filters {
                    if filter.filter.starts_with("$share/") {
                        results.push(Err(0x9E));
                        continue;
                    }
                    if !valid_topic_filter(&filter.filter) {
                        results.push(Err(0x8F));
                        continue;
                    }
                    let granted = filter.qos.min(QoS::AtLeastOnce);
                    let options = SubscriptionOptions {
                        qos: granted,
                        no_local: filter.no_local,
                        retain_as_published: filter.retain_as_published,
                    };
                    let existed = self.shared.subscribe(self.id, &filter.filter, options);
                    let send_retained = match filter.retain_handling {
                        0 => true,
                        1 => !existed,
                        _ => false,
                    };
                    if send_retained {
                        retained.extend(
                            self.shared
                                .retained_matching(&filter.filter)
                                .into_iter()
                                .map(|mut message| {
                                    message.qos = message.qos.min(granted);
                                    message
                                }),
                        );
                    }
                    results.push(Ok(granted));
                }
                self.write(Outgoing::SubAck { packet_id, results }).await?;
                for message in retained {
                    self.deliver(message).await?;
                }
            }
            Incoming::Unsubscribe { packet_id, filters } => {
                let existed = filters
                    .iter()
                    .map(|filter| self.shared.unsubscribe(self.id, filter))
                    .collect();
                self.write(Outgoing::UnsubAck { packet_id, existed })
                    .await?;
            }
            Incoming::PingReq => self.write(Outgoing::PingResp).await?,
            Incoming::Disconnect(reason_code) => {
                return Ok(Some(Exit::ClientDisconnect(reason_code)));
            }
        }
        Ok(None)
    }

    /// Resolves the topic (alias), validates it and starts the handler future.
    fn receive_publish(
        &mut self,
        publish: PublishPacket,
        pending: &mut FuturesOrdered<BoxFuture<'static, Handled>>,
    ) -> Result<(), ConnectionError> {
        let mut topic = publish.topic;
        if let Some(alias) = publish.topic_alias {
            if alias == 0 || alias > self.shared.config.topic_alias_maximum {
                return Err(WireError::new(
                    ProtocolErrorKind::TopicAliasInvalid,
                    format!("topic alias {alias}"),
                )
                .into());
            }
            if topic.is_empty() {
                topic = self.topic_aliases.get(&alias).cloned().ok_or_else(|| {
                    WireError::new(
                        ProtocolErrorKind::ProtocolError,
                        format!("unknown topic alias {alias}"),
                    )
                })?;
            } else {
                self.topic_aliases.insert(alias, topic.clone());
            }
        }
        if !valid_topic_name(&topic) {
            return Err(WireError::new(
                ProtocolErrorKind::TopicNameInvalid,
                "invalid topic name in publish",
            )
            .into());
        }
        Stats::add(&self.shared.stats.publishes_received, 1);

        let packet_id = publish.packet_id;
        if publish.qos == QoS::ExactlyOnce && !self.qos2_received.insert(packet_id) {
            // redelivery before PUBREL: the handler already has it; acknowledge in order
            let handled = Handled {
                topic,
                payload: Bytes::new(),
                qos: QoS::ExactlyOnce,
                retain: false,
                packet_id,
                duplicate: true,
                outcome: PublishOutcome::accepted(),
            };
            pending.push_back(Box::pin(futures::future::ready(handled)));
            return Ok(());
        }

        let incoming = IncomingPublish {
            topic: topic.clone(),
            payload: publish.payload.clone(),
            qos: publish.qos,
            retain: publish.retain,
            dup: publish.dup,
            payload_format_utf8: publish.payload_format_utf8,
            content_type: publish.content_type,
        };
        let handler_future = self.shared.handler.on_publish(&self.client, incoming);
        let (payload, qos, retain) = (publish.payload, publish.qos, publish.retain);
        pending.push_back(Box::pin(async move {
            let outcome = handler_future.await;
            Handled {
                topic,
                payload,
                qos,
                retain,
                packet_id,
                duplicate: false,
                outcome,
            }
        }));
        Ok(())
    }

    /// The handler resolved: acknowledge (in order, since `pending` is ordered) and route.
    async fn acknowledge(&mut self, handled: Handled) -> Result<(), ConnectionError> {
        let Handled {
            topic,
            payload,
            qos,
            retain,
            packet_id,
            duplicate,
            outcome,
        } = handled;
        if duplicate {
            return self
                .write(Outgoing::PubRec {
                    packet_id,
                    reason_code: 0,
                })
                .await;
        }
        let accepted = outcome.reason == PublishReason::Success;
        if accepted {
            self.shared
                .route(Some(self.id), &topic, payload, qos, retain);
        } else {
            Stats::add(&self.shared.stats.publishes_refused, 1);
            debug!(
                client = %self.client.client_id,
                reason_code = outcome.reason.reason_code(),
                kept = outcome.kept,
                "publish refused by handler"
            );
        }
        if qos == QoS::AtMostOnce {
            return Ok(());
        }
        if self.protocol == ProtocolVersion::V311 && !outcome.kept {
            return Err(ConnectionError::NotKept { qos: qos as u8 });
        }
        let reason_code = outcome.reason.reason_code();
        match qos {
            QoS::AtLeastOnce => {
                self.write(Outgoing::PubAck {
                    packet_id,
                    reason_code,
                })
                .await
            }
            _ => {
                if reason_code >= 0x80 {
                    // a failed PUBREC ends the exchange: no PUBREL follows
                    self.qos2_received.remove(&packet_id);
                }
                self.write(Outgoing::PubRec {
                    packet_id,
                    reason_code,
                })
                .await
            }
        }
    }

    /// Writes one message to this subscriber.
    async fn deliver(&mut self, delivery: Delivery) -> Result<(), ConnectionError> {
        let size = wire::publish_size(
            &delivery.topic,
            delivery.payload.len(),
            delivery.qos,
            self.protocol,
        );
        if size > self.client_max_packet {
            // MQTT 5 §3.1.2.11.4: discard what the client cannot take
            Stats::add(&self.shared.stats.deliveries_dropped, 1);
            return Ok(());
        }
        let packet_id = if delivery.qos == QoS::AtMostOnce {
            0
        } else {
            loop {
                self.next_packet_id = self.next_packet_id.wrapping_add(1).max(1);
                if self.outbound_inflight.insert(self.next_packet_id) {
                    break self.next_packet_id;
                }
            }
        };
        self.write(Outgoing::Publish {
            topic: delivery.topic.to_string(),
            payload: delivery.payload,
            qos: delivery.qos,
            retain: delivery.retain,
            packet_id,
        })
        .await
    }

    /// Logs and counts how the connection ended, tells the client where MQTT 5 allows,
    /// publishes the will if the end was not a normal DISCONNECT, and unregisters.
    async fn finish(&mut self, result: Result<Exit, ConnectionError>) {
        let client_id = self.client.client_id.clone();
        let mut send_will = true;
        match result {
            Ok(Exit::ClientDisconnect(reason_code)) => {
                debug!(client = %client_id, reason_code, "client disconnected");
                send_will = reason_code == 0x04;
            }
            Ok(Exit::PeerClosed) => debug!(client = %client_id, "peer closed the connection"),
            Ok(Exit::Cancelled) => {
                let reason_code = if self.shared.shutdown.is_cancelled() {
                    0x8B // server shutting down
                } else if self.overflowed.load(Ordering::Relaxed) {
                    warn!(client = %client_id, "subscriber too slow, qos 1 message dropped, disconnecting");
                    0x97 // quota exceeded
                } else {
                    debug!(client = %client_id, "session taken over by a new connection");
                    0x8E // session taken over
                };
                let _ = self.write(Outgoing::Disconnect { reason_code }).await;
            }
            Err(ConnectionError::Protocol(error)) => {
                self.shared.stats.protocol_error(error.kind);
                warn!(client = %client_id, error = %error, "closing connection");
                let reason_code = error.kind.v5_reason_code();
                let _ = self.write(Outgoing::Disconnect { reason_code }).await;
            }
            Err(error) => warn!(client = %client_id, error = %error, "closing connection"),
        }
        let _ = self.writer.shutdown().await;

        self.shared.remove_subscriber(self.id);
        self.shared.release_client_id(&client_id, self.id);
        if let Some(will) = self.will.take().filter(|_| send_will) {
            self.publish_will(will);
        }
        self.shared.handler.on_disconnect(&self.client);
    }

    /// The will goes through the handler like any publish, then to subscribers.
    fn publish_will(&self, will: wire::WillPacket) {
        let incoming = IncomingPublish {
            topic: will.topic.clone(),
            payload: will.payload.clone(),
            qos: will.qos,
            retain: will.retain,
            dup: false,
            payload_format_utf8: false,
            content_type: None,
        };
        let handler_future = self.shared.handler.on_publish(&self.client, incoming);
        let shared = self.shared.clone();
        tokio::spawn(async move {
            if handler_future.await.reason == PublishReason::Success {
                shared.route(None, &will.topic, will.payload, will.qos, will.retain);
            }
        });
    }
}

async fn sleep_until_option(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
