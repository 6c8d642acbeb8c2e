//! Who may connect to the MLLP listener (docs/hl7.md, "Access"). MLLP has no credentials of its
//! own, so peers are known by where they connect from and, over TLS, by their certificate:
//!
//! - an **allow-list** of addresses and CIDR ranges (IPv4 and IPv6; an IPv4 peer reaching an
//!   IPv6 socket as `::ffff:a.b.c.d` is matched as IPv4): a peer outside it is closed at accept,
//!   before a byte is read, counted (`metaward_connections_refused_total{source="hl7",
//!   reason="peer_not_allowed"}`), logged (its address only) and audited;
//! - **client certificates** (with MLLP over TLS): a peer must present a certificate signed by
//!   the configured CA, or its handshake fails (`reason="tls_handshake"`).
//!
//! - optionally, **which facilities a certificate may send for**: certificate names (DNS names
//!   the certificate is valid for, as a server name would be checked) mapped to the sending
//!   facilities (MSH-4) their messages may carry. A certified peer named nowhere in the map is
//!   closed after the handshake (`reason="certificate_not_mapped"`); a message with another
//!   MSH-4 is refused (AR, ERR at MSH-4, dead letter `facility_not_allowed`).
//!
//! Either of the first two is what lets MLLP bind beyond loopback (`auth::check_exposure`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

use rustls::pki_types::{CertificateDer, ServerName};

/// An address or a CIDR range: `10.20.0.0/16`, `192.0.2.7`, `fd00::/8`, `::1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpRange {
    network: IpAddr,
    prefix: u8,
}

impl IpRange {
    /// Whether `ip` is in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.network, ip) {
            (IpAddr::V4(network), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(network) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(network) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }

    /// Whether the range is every address of its family (`0.0.0.0/0`, `::/0`): an allow-list
    /// with it authenticates nobody.
    pub fn is_everything(&self) -> bool {
        self.prefix == 0
    }
}

/// An IPv4 address mapped into IPv6 is the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

impl FromStr for IpRange {
    type Err = String;

    fn from_str(text: &str) -> Result<IpRange, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network = canonical(
            address
                .trim()
                .parse::<IpAddr>()
                .map_err(|_| format!("`{text}` is not an IP address or CIDR range"))?,
        );
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) => prefix
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|prefix| *prefix <= bits)
                .ok_or_else(|| format!("`{text}`: the prefix length must be 0 to {bits}"))?,
            None => bits,
        };
        let range = IpRange { network, prefix };
        // `10.1.2.3/8` is almost certainly a typo for something; say so instead of guessing.
        if range.masked() != network {
            return Err(format!(
                "`{text}` has bits set beyond its /{prefix} prefix; write the network address"
            ));
        }
        Ok(range)
    }
}

impl IpRange {
    fn masked(&self) -> IpAddr {
        match self.network {
            IpAddr::V4(network) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((u32::from(network) & mask).into())
            }
            IpAddr::V6(network) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(network) & mask).into())
            }
        }
    }
}

impl std::fmt::Display for IpRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// Who may connect (`[mllp_access]` in the configuration file).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MllpAccess {
    /// Peers allowed to connect; empty: any address (then only loopback binding is allowed,
    /// unless client certificates are required).
    pub allow: Vec<IpRange>,
    /// With MLLP over TLS: require a client certificate signed by this CA (PEM).
    pub client_ca: Option<PathBuf>,
    /// With client certificates: a certificate name → the sending facilities (MSH-4) it may
    /// send for. Empty: a certified peer may send for any facility.
    pub facilities: BTreeMap<String, Vec<String>>,
}

/// What a certified peer may send for: the certificate names it matched, and their facilities.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertifiedPeer {
    pub names: Vec<String>,
    pub facilities: Vec<String>,
}

impl MllpAccess {
    /// Whether a peer at `ip` may connect.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.allow.is_empty() || self.allow.iter().any(|range| range.contains(ip))
    }

    /// The facilities the peer presenting `certificate` (already verified against the CA by
    /// the handshake) may send for: `Ok(None)` when no map is configured, `Err` when the map
    /// names none of the certificate's names.
    pub fn certified(
        &self,
        certificate: Option<&CertificateDer<'_>>,
    ) -> Result<Option<CertifiedPeer>, &'static str> {
        if self.facilities.is_empty() {
            return Ok(None);
        }
        let parsed = certificate
            .and_then(|certificate| rustls::server::ParsedCertificate::try_from(certificate).ok())
            .ok_or("certificate_not_mapped")?;
        let mut peer = CertifiedPeer {
            names: Vec::new(),
            facilities: Vec::new(),
        };
        for (name, facilities) in &self.facilities {
            let Ok(server_name) = ServerName::try_from(name.as_str()) else {
                continue;
            };
            if rustls::client::verify_server_name(&parsed, &server_name).is_ok() {
                peer.names.push(name.clone());
                peer.facilities.extend(facilities.iter().cloned());
            }
        }
        if peer.names.is_empty() {
            return Err("certificate_not_mapped");
        }
        Ok(Some(peer))
    }

    /// Whether the allow-list names anything narrower than the whole Internet.
    pub fn restricts_addresses(&self) -> bool {
        !self.allow.is_empty() && !self.allow.iter().any(IpRange::is_everything)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ranges_of_both_families() {
        let ward: IpRange = "10.20.0.0/16".parse().unwrap();
        assert!(ward.contains(ip("10.20.255.1")));
        assert!(!ward.contains(ip("10.21.0.1")));
        assert!(
            ward.contains(ip("::ffff:10.20.0.9")),
            "an IPv4 peer on an IPv6 socket"
        );
        let host: IpRange = "192.0.2.7".parse().unwrap();
        assert!(host.contains(ip("192.0.2.7")) && !host.contains(ip("192.0.2.8")));
        let v6: IpRange = "fd00:abcd::/32".parse().unwrap();
        assert!(v6.contains(ip("fd00:abcd:1::5")));
        assert!(!v6.contains(ip("fd00:abce::5")));
        assert!(!v6.contains(ip("10.20.0.1")));
        let loopback: IpRange = "::1".parse().unwrap();
        assert!(loopback.contains(ip("::1")) && !loopback.contains(ip("127.0.0.1")));
        let all: IpRange = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.5")) && all.is_everything());
        for bad in [
            "10.1.2.3/8",
            "10.0.0.0/33",
            "::/129",
            "host.example",
            "10.0.0.0/x",
        ] {
            assert!(bad.parse::<IpRange>().is_err(), "{bad}");
        }
        assert_eq!(ward.to_string(), "10.20.0.0/16");
    }

    #[test]
    fn an_empty_list_allows_everyone_and_a_list_only_its_members() {
        let open = MllpAccess::default();
        assert!(open.allows(ip("203.0.113.5")) && !open.restricts_addresses());
        let ward = MllpAccess {
            allow: vec!["127.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()],
            ..MllpAccess::default()
        };
        assert!(ward.allows(ip("127.0.0.1")) && ward.allows(ip("fd12::1")));
        assert!(!ward.allows(ip("192.0.2.1")) && ward.restricts_addresses());
        let everything = MllpAccess {
            allow: vec!["::/0".parse().unwrap()],
            ..MllpAccess::default()
        };
        assert!(!everything.restricts_addresses());
    }
}
