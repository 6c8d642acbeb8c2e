//! Per-device MQTT credentials for the embedded broker: the username is the device id, the
//! password a secret the server generated (shown once). Only a salted Argon2id hash is kept,
//! in the store and, for the broker, in memory here; the REST API changes both, so a set,
//! rotated or revoked credential applies to the next CONNECT and PUBLISH without a restart.
//!
//! Parameters: the secrets are 256 random bits the server generates, not passwords a person
//! chose, so a slow hash adds nothing against guessing them; it only protects the stored hash
//! somewhat if the database leaks. Argon2id with 8 MiB and one pass (m=8192, t=1, p=1) keeps a
//! CONNECT cheap (measured: about 14 ms per check in a release build, 95 ms in a debug build, on
//! a shared 2-core machine; the RFC 9106 / OWASP password defaults cost several times that, at
//! 19–64 MiB each) while still being a real salted Argon2id PHC string: verification reads the
//! parameters from the stored string, so stronger ones can come with the next rotation.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use model::DeviceId;

/// The policy for devices on the embedded broker (`mqtt.device_auth`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceAuth {
    /// Devices with a credential must use it; devices without one may connect anonymously
    /// (the loopback demo and the simulator).
    #[default]
    Optional,
    /// Every client must authenticate as a device with a credential.
    Required,
}

impl DeviceAuth {
    pub fn from_key(key: &str) -> Option<DeviceAuth> {
        match key {
            "optional" => Some(DeviceAuth::Optional),
            "required" => Some(DeviceAuth::Required),
            _ => None,
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            DeviceAuth::Optional => "optional",
            DeviceAuth::Required => "required",
        }
    }
}

/// The hashes of every device's credential, as the broker checks them.
#[derive(Default)]
pub struct DeviceCredentials {
    hashes: RwLock<HashMap<DeviceId, Arc<str>>>,
}

impl DeviceCredentials {
    pub fn new(hashes: impl IntoIterator<Item = (DeviceId, String)>) -> DeviceCredentials {
        DeviceCredentials {
            hashes: RwLock::new(
                hashes
                    .into_iter()
                    .map(|(device, hash)| (device, Arc::from(hash)))
                    .collect(),
            ),
        }
    }

    pub fn hash_of(&self, device_id: &DeviceId) -> Option<Arc<str>> {
        self.hashes
            .read()
            .expect("credentials lock")
            .get(device_id)
            .cloned()
    }

    pub fn set(&self, device_id: DeviceId, hash: String) {
        self.hashes
            .write()
            .expect("credentials lock")
            .insert(device_id, Arc::from(hash));
    }

    pub fn revoke(&self, device_id: &DeviceId) {
        self.hashes
            .write()
            .expect("credentials lock")
            .remove(device_id);
    }
}

fn hasher() -> Argon2<'static> {
    let params = Params::new(8 * 1024, 1, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// A new device secret: 32 random bytes as 64 lowercase hex digits (safe in any MQTT client's
/// command line or config file).
pub fn generate_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The salted Argon2id PHC string of `secret`. CPU-bound: call on a blocking thread.
pub fn hash_secret(secret: &str) -> String {
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes).expect("16 bytes make a valid salt");
    hasher()
        .hash_password(secret.as_bytes(), &salt)
        .expect("argon2 hashes any input")
        .to_string()
}

/// Whether `secret` matches the PHC string `hash` (parameters are read from the string, so
/// hashes made with other parameters still verify). CPU-bound: call on a blocking thread.
pub fn verify_secret(secret: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(secret.as_bytes(), &parsed)
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_verifies_against_its_own_hash_only() {
        let secret = generate_secret();
        assert_eq!(secret.len(), 64);
        let hash = hash_secret(&secret);
        assert!(hash.starts_with("$argon2id$v=19$m=8192,t=1,p=1$"), "{hash}");
        assert!(verify_secret(&secret, &hash));
        assert!(!verify_secret(&generate_secret(), &hash));
        assert!(!verify_secret(&secret, "not a phc string"));
        // Two hashes of one secret differ (salted).
        assert_ne!(hash, hash_secret(&secret));
    }
}
