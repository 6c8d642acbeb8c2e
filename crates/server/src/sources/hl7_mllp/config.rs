//! Settings of the MLLP listener.

use std::time::Duration;

#[derive(Clone)]
pub struct MllpConfig {
    /// A frame larger than this is refused (waveform messages are the largest we expect).
    pub max_frame_bytes: usize,
    /// A connection that sends nothing for this long is closed, so dead peers do not pile up.
    pub idle_timeout: Duration,
    /// Connections served at once; beyond this a new connection is closed at once, so a
    /// misbehaving peer opening sockets cannot exhaust the server's file descriptors.
    pub max_connections: usize,
    /// MLLP over TLS with this acceptor (the `[tls]` certificate; it verifies client
    /// certificates when `[mllp_access] client_ca` is set).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// The addresses allowed to connect (`access`).
    pub access: super::MllpAccess,
    /// Where refused connections are recorded (the server's audit trail).
    pub audit: Option<crate::auth::Audit>,
}

impl Default for MllpConfig {
    fn default() -> MllpConfig {
        MllpConfig {
            max_frame_bytes: 16 * 1024 * 1024,
            idle_timeout: Duration::from_secs(600),
            max_connections: 1024,
            tls: None,
            access: super::MllpAccess::default(),
            audit: None,
        }
    }
}
