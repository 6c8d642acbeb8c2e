//! The listener: binds, accepts, spawns one task per connection, and the handle the
//! application keeps (server-side publish, stats, shutdown).

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, warn};

use crate::router::Shared;
use crate::topic::valid_topic_name;
use crate::{BrokerConfig, Handler, QoS, connection};

/// Errors of the broker's own API (peers' errors never surface here: they close their
/// connection and are counted in [`BrokerStats::protocol_errors`]).
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("invalid topic name for publish")]
    InvalidTopic,
}

/// Counters since the broker started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BrokerStats {
    pub connections_accepted: u64,
    pub connections_current: u64,
    /// CONNECTs refused (by the handler or because of an invalid client id or will).
    pub connections_refused: u64,
    pub packets_received: u64,
    pub packets_sent: u64,
    /// PUBLISH packets received from clients.
    pub publishes_received: u64,
    /// Publishes the handler did not accept (any reason other than success).
    pub publishes_refused: u64,
    /// Messages queued to subscribers (one per subscriber).
    pub publishes_routed: u64,
    /// Messages dropped because a subscriber's queue was full or the message exceeded the
    /// subscriber's maximum packet size.
    pub deliveries_dropped: u64,
    /// Connections closed for a protocol violation, by reason (`malformed_packet`,
    /// `packet_too_large`, `keep_alive_timeout`, ...).
    pub protocol_errors: BTreeMap<&'static str, u64>,
}

/// The embedded broker.
pub struct Broker;

impl Broker {
    /// Binds `addr` (use port 0 for an ephemeral port) and runs the accept loop on a tokio
    /// task. Must be called within a tokio runtime.
    pub async fn bind(
        addr: SocketAddr,
        config: BrokerConfig,
        handler: Arc<dyn Handler>,
    ) -> io::Result<BrokerHandle> {
        Broker::bind_tls(addr, config, handler, None).await
    }

    /// [`Broker::bind`], speaking MQTT over TLS (port 8883 by convention) when `tls` is given.
    /// Each handshake runs in the connection's own task, within the CONNECT timeout.
    pub async fn bind_tls(
        addr: SocketAddr,
        config: BrokerConfig,
        handler: Arc<dyn Handler>,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> io::Result<BrokerHandle> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(config, handler));
        let accept_task = tokio::spawn(accept_loop(listener, shared.clone(), tls));
        debug!(addr = %local_addr, "mqtt broker listening");
        Ok(BrokerHandle {
            local_addr,
            shared,
            accept_task: Some(accept_task),
        })
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer_addr)) => {
                    let _ = stream.set_nodelay(true);
                    match &tls {
                        None => {
                            let (reader, writer) = stream.into_split();
                            let halves: (connection::Reader, connection::Writer) =
                                (Box::new(reader), Box::new(writer));
                            connections.spawn(connection::serve(shared.clone(), halves, peer_addr));
                        }
                        Some(acceptor) => {
                            let (acceptor, shared) = (acceptor.clone(), shared.clone());
                            connections.spawn(async move {
                                let timeout = shared.config.connect_timeout;
                                match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                                    Ok(Ok(tls_stream)) => {
                                        let (reader, writer) = tokio::io::split(tls_stream);
                                        let halves: (connection::Reader, connection::Writer) =
                                            (Box::new(reader), Box::new(writer));
                                        connection::serve(shared, halves, peer_addr).await;
                                    }
                                    Ok(Err(error)) => debug!(error = %error, "mqtt tls handshake failed"),
                                    Err(_) => debug!("mqtt tls handshake timed out"),
                                }
                            });
                        }
                    }
                }
                Err(error) => {
                    // e.g. out of file descriptors: back off instead of spinning
                    warn!(error = %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(joined) = connections.join_next(), if !connections.is_empty() => {
                match joined {
                    Err(error) if error.is_panic() => warn!(error = %error, "connection task panicked"),
                    _ => {}
                }
            }
        }
    }
    drop(listener);
    // connections hold child tokens of `shutdown` and close themselves; give them a moment
    let grace = shared.config.shutdown_grace;
    let _ = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    connections.shutdown().await;
}

/// The running broker. Dropping it stops the broker without waiting; prefer
/// [`BrokerHandle::shutdown`].
pub struct BrokerHandle {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    accept_task: Option<JoinHandle<()>>,
}

impl BrokerHandle {
    /// The address the broker listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Publishes from the server side (not through the handler) to matching subscribers;
    /// `retain` stores it as the topic's retained message (an empty payload clears it).
    /// Returns how many subscribers it was queued to. QoS 2 is delivered as QoS 1.
    pub fn publish(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
    ) -> Result<usize, BrokerError> {
        if !valid_topic_name(topic) {
            return Err(BrokerError::InvalidTopic);
        }
        Ok(self.shared.route(None, topic, payload.into(), qos, retain))
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> BrokerStats {
        let stats = &self.shared.stats;
        let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
        BrokerStats {
            connections_accepted: load(&stats.connections_accepted),
            connections_current: load(&stats.connections_current),
            connections_refused: load(&stats.connections_refused),
            packets_received: load(&stats.packets_received),
            packets_sent: load(&stats.packets_sent),
            publishes_received: load(&stats.publishes_received),
            publishes_refused: load(&stats.publishes_refused),
            publishes_routed: load(&stats.publishes_routed),
            deliveries_dropped: load(&stats.deliveries_dropped),
            protocol_errors: stats
                .protocol_errors
                .lock()
                .map(|errors| errors.clone())
                .unwrap_or_else(|poisoned| poisoned.into_inner().clone()),
        }
    }

    /// Stops accepting, disconnects every client (MQTT 5: 0x8B server shutting down) and
    /// waits for the connection tasks, at most [`BrokerConfig::shutdown_grace`] before
    /// aborting them.
    pub async fn shutdown(mut self) {
        self.shared.shutdown.cancel();
        if let Some(task) = self.accept_task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for BrokerHandle {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
    }
}
