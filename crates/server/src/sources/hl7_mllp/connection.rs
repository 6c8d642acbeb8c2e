//! The listener and one task per connection: bytes → MLLP frames → one answer per message, in
//! order. A connection's problems (garbage, a cut-off frame, a peer that goes silent) end at
//! most that connection; the listener and every other connection go on.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use hl7::mllp::{self, Framer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::config::MllpConfig;
use super::handle::Handler;
use crate::Stores;
use crate::pipeline::Ingest;

/// The source label in metrics and dead letters.
pub const SOURCE: &str = "hl7";

pub struct MllpListener {
    pub local_addr: SocketAddr,
    pub task: tokio::task::JoinHandle<()>,
}

impl MllpListener {
    /// Binds and starts accepting; returns once the socket is bound. On `shutdown` it stops
    /// accepting and waits for each connection to finish the message it is handling.
    pub async fn start(
        addr: SocketAddr,
        config: MllpConfig,
        ingest: Ingest,
        stores: Stores,
        shutdown: CancellationToken,
    ) -> anyhow::Result<MllpListener> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding MLLP on {addr}"))?;
        let local_addr = listener.local_addr()?;
        let handler = Arc::new(Handler::new(ingest, stores));
        let task = tokio::spawn(accept_loop(listener, config, handler, shutdown));
        Ok(MllpListener { local_addr, task })
    }
}

async fn accept_loop(
    listener: TcpListener,
    config: MllpConfig,
    handler: Arc<Handler>,
    shutdown: CancellationToken,
) {
    let mut connections = JoinSet::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(config.max_connections));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if !config.access.allows(peer.ip()) {
                        // Closed before a byte is read: nothing of the peer's reaches us.
                        drop(stream);
                        refused(&config, &handler, peer, "peer_not_allowed");
                        continue;
                    }
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        tracing::warn!(%peer, "too many mllp connections; closing a new one");
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let (config, handler, shutdown) =
                        (config.clone(), handler.clone(), shutdown.clone());
                    connections.spawn(async move {
                        match config.tls.clone() {
                            None => {
                                let (reader, writer) = stream.into_split();
                                serve_connection(reader, writer, peer, None, config, handler, shutdown).await;
                            }
                            // The handshake runs in the connection's own task, bounded by the
                            // idle timeout, so a silent peer holds up nobody else.
                            Some(acceptor) => {
                                match tokio::time::timeout(config.idle_timeout, acceptor.accept(stream)).await {
                                    Ok(Ok(tls)) => {
                                        let certificate = tls.get_ref().1.peer_certificates().and_then(<[_]>::first);
                                        match config.access.certified(certificate) {
                                            Ok(certified) => {
                                                if let Some(certified) = &certified {
                                                    connected(&config, peer, certified);
                                                }
                                                let facilities = certified.map(|certified| certified.facilities);
                                                let (reader, writer) = tokio::io::split(tls);
                                                serve_connection(reader, writer, peer, facilities, config, handler, shutdown).await;
                                            }
                                            Err(reason) => refused(&config, &handler, peer, reason),
                                        }
                                    }
                                    // Without a valid client certificate (when one is required)
                                    // the handshake fails here: refused, counted, audited.
                                    Ok(Err(error)) => {
                                        tracing::info!(%peer, %error, "mllp tls handshake failed");
                                        refused(&config, &handler, peer, "tls_handshake");
                                    }
                                    Err(_) => tracing::debug!(%peer, "mllp tls handshake timed out"),
                                }
                            }
                        }
                        drop(slot);
                    });
                }
                // Out of file descriptors and the like: wait a little instead of spinning.
                Err(error) => {
                    tracing::warn!(%error, "mllp accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            // Reap finished connections so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    while connections.join_next().await.is_some() {}
}

/// A connection closed before any message: counted under `reason`, logged with the peer's
/// address only, and written to the audit trail.
fn refused(config: &MllpConfig, handler: &Handler, peer: SocketAddr, reason: &str) {
    handler.metrics().connection_refused(SOURCE, reason);
    tracing::warn!(%peer, reason, "refused an mllp connection");
    if let Some(audit) = &config.audit {
        audit.record(store::AuditEntry {
            time_ms: crate::pipeline::now().millis(),
            actor: "anonymous".into(),
            role: None,
            source: peer.ip().to_string(),
            action: "connect".into(),
            what: "MLLP connection".into(),
            patient_id: None,
            outcome: reason.to_owned(),
        });
    }
}

/// A peer known by its certificate, in the audit trail under the names it matched.
fn connected(config: &MllpConfig, peer: SocketAddr, certified: &super::access::CertifiedPeer) {
    if let Some(audit) = &config.audit {
        audit.record(store::AuditEntry {
            time_ms: crate::pipeline::now().millis(),
            actor: format!("mllp:{}", certified.names.join(",")),
            role: None,
            source: peer.ip().to_string(),
            action: "connect".into(),
            what: "MLLP connection".into(),
            patient_id: None,
            outcome: "success".into(),
        });
    }
}

/// `facilities`: the sending facilities (MSH-4) this peer's certificate may send for, if its
/// certificate is mapped (`access`); `None`: any.
async fn serve_connection(
    mut reader: impl tokio::io::AsyncRead + Unpin,
    mut writer: impl tokio::io::AsyncWrite + Unpin,
    peer: SocketAddr,
    facilities: Option<Vec<String>>,
    config: MllpConfig,
    handler: Arc<Handler>,
    shutdown: CancellationToken,
) {
    tracing::debug!(%peer, "mllp connection");
    let mut framer = Framer::new(config.max_frame_bytes);
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        // Answer everything complete before reading more: original mode is one message, one
        // answer, and a sender that pipelines still gets its answers in order.
        while let Some(frame) = framer.next_frame() {
            if let Some(reply) = handler
                .handle_frame(frame, peer, facilities.as_deref())
                .await
                && let Err(error) = writer.write_all(&mllp::frame(&reply)).await
            {
                tracing::debug!(%peer, %error, "mllp peer went away before its acknowledgment");
                return;
            }
        }
        let read = tokio::select! {
            _ = shutdown.cancelled() => break,
            read = tokio::time::timeout(config.idle_timeout, reader.read(&mut buffer)) => read,
        };
        match read {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => framer.push(&buffer[..n]),
            Ok(Err(error)) => {
                tracing::debug!(%peer, %error, "mllp read failed");
                break;
            }
            Err(_) => {
                tracing::info!(%peer, "closing an idle mllp connection");
                break;
            }
        }
    }
    // Bytes of a frame the peer never finished are kept as a dead letter; nobody is left to answer.
    while let Some(frame) = framer.finish() {
        let _ = handler
            .handle_frame(frame, peer, facilities.as_deref())
            .await;
    }
    let _ = writer.shutdown().await;
}
