//! HL7 v2 over MLLP: the listener that bedside monitors' gateways (IHE PCD-01 ORU^R01) and the
//! hospital's ADT feed (A01, A02, A03, A08) connect to. Each connection runs in its own task and
//! sends one message at a time; each message is answered with an ACK in original mode: AA only
//! once its data is durable, AE or AR with ERR segments otherwise. A refused message is kept as
//! a dead letter first, so a malformed message costs nothing but its own exchange. Who may
//! connect at all is `access`: an address allow-list and, over TLS, client certificates.

mod access;
mod config;
mod connection;
mod handle;

pub use access::{IpRange, MllpAccess};
pub use config::MllpConfig;
pub use connection::{MllpListener, SOURCE};
