//! Who may see and touch patient data: users with a role and a scope of wards, password login
//! with lockout and per-address throttling (`throttle`), short-lived bearer sessions with
//! refresh and logout that survive a restart (`sessions`), long-lived API tokens for devices and
//! services (`tokens`), the access policy every HTTP route is checked against (`policy`), the
//! middleware that applies it to the whole router (`middleware`), and the tamper-evident audit
//! trail (`audit`).
//!
//! Must never: keep or log a password or a token (only their hashes are kept: Argon2id for
//! passwords, SHA-256 for session and API tokens, which are 256 random bits), or let a route
//! through that the policy does not list (unlisted routes need an admin).

pub mod audit;
pub mod middleware;
pub mod oidc;
pub mod policy;
pub mod routes;
pub mod sessions;
pub mod throttle;
pub mod token_routes;
pub mod tokens;

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine as _;
use model::WardId;
use store::{NewUser, Store, StoreError, UserRecord};

pub use audit::Audit;
pub use sessions::{Session, Sessions, TokenPair};

/// The roles, each allowed what the one before it is and more.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Reads patient data in their wards.
    Observer,
    /// Also acknowledges and silences alarms.
    Nurse,
    /// Also changes a patient's alarm limits and runs SQL.
    Physician,
    /// Also manages users, devices, associations and configuration.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Observer, Role::Nurse, Role::Physician, Role::Admin];

    pub fn key(self) -> &'static str {
        match self {
            Role::Observer => "observer",
            Role::Nurse => "nurse",
            Role::Physician => "physician",
            Role::Admin => "admin",
        }
    }

    pub fn from_key(key: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.key() == key)
    }
}

/// The signed-in user a request runs for, put in the request's extensions by the middleware.
#[derive(Clone, Debug)]
pub struct Caller {
    pub user: String,
    pub role: Role,
    /// `None`: every ward.
    pub wards: Option<Vec<WardId>>,
    /// The peer's address, for the audit trail.
    pub source: String,
}

impl Caller {
    pub fn sees_all_wards(&self) -> bool {
        self.wards.is_none()
    }

    pub fn sees_ward(&self, ward: &WardId) -> bool {
        self.wards.as_ref().is_none_or(|wards| wards.contains(ward))
    }

    /// Whether something in `ward` (`None`: in no ward, e.g. a patient without a bed) is
    /// visible: to a user of every ward, always; to a ward-scoped user, only in their wards.
    pub fn sees(&self, ward: Option<&WardId>) -> bool {
        match ward {
            Some(ward) => self.sees_ward(ward),
            None => self.sees_all_wards(),
        }
    }
}

/// The patients lying in the caller's wards' beds; `None` for a user of every ward, who sees
/// every patient.
pub fn visible_patients(
    directory: &crate::directory::Directory,
    caller: &Caller,
) -> Option<std::collections::HashSet<String>> {
    if caller.sees_all_wards() {
        return None;
    }
    Some(
        directory
            .ward_of_patient()
            .into_iter()
            .filter(|(_, ward)| caller.sees_ward(ward))
            .map(|(patient, _)| patient.to_string())
            .collect(),
    )
}

/// The part of the ward directory a caller may see: their wards, and the patients in them (a
/// patient in no bed only for users of every ward).
pub fn visible_directory(
    directory: &crate::directory::Directory,
    caller: &Caller,
) -> crate::directory::Directory {
    if caller.sees_all_wards() {
        return directory.clone();
    }
    let ward_of_patient = directory.ward_of_patient();
    crate::directory::Directory {
        wards: directory
            .wards
            .iter()
            .filter(|ward| caller.sees_ward(&WardId::new(&ward.id)))
            .cloned()
            .collect(),
        patients: directory
            .patients
            .iter()
            .filter(|patient| caller.sees(ward_of_patient.get(&model::PatientId::new(&patient.id))))
            .cloned()
            .collect(),
    }
}

/// Which listeners may face the network. HTTP always authenticates users (there is no way to
/// turn that off), so it may bind anywhere. The embedded MQTT broker beyond loopback needs
/// `device_auth = "required"` (otherwise any host could publish as a device without a
/// credential). MLLP has no credentials of its own: beyond loopback it needs an address
/// allow-list narrower than everything, or client certificates over TLS (TLS alone only hides
/// the traffic).
pub fn check_exposure(config: &crate::ServerConfig) -> Result<(), String> {
    if !config.mqtt.ip().is_loopback()
        && config.mqtt_device_auth != crate::sources::mqtt::DeviceAuth::Required
    {
        return Err(format!(
            "refusing to listen on {} (mqtt): binding beyond loopback requires authentication: set `device_auth = \"required\"` in [mqtt] so every device connects with its own credential",
            config.mqtt
        ));
    }
    let access = &config.mllp_access;
    let client_certificates = access.client_ca.is_some() && config.mllp_tls.is_some();
    if !config.mllp.ip().is_loopback() && !access.restricts_addresses() && !client_certificates {
        return Err(format!(
            "refusing to listen on {} (mllp): binding beyond loopback requires authentication, and MLLP peers are known only by address or certificate: set `allow = [\"10.1.0.0/16\", ...]` in [mllp_access] (the gateways' addresses; not 0.0.0.0/0), or `client_ca` there with MLLP over TLS; or keep it on loopback behind a gateway or tunnel",
            config.mllp
        ));
    }
    Ok(())
}

/// Lockout (`throttle`): this many failed logins in a row on an account from one address lock
/// the account for `LOCKOUT_MS` from that address.
pub const FAILURES_TO_LOCK: u32 = 5;
pub const LOCKOUT_MS: i64 = 15 * 60 * 1000;
/// This many failed logins in a row on an account, from whatever addresses, lock it for
/// `LOCKOUT_MS` from everywhere (kept in the store).
pub const ACCOUNT_FAILURES_TO_LOCK: u32 = 50;

/// Argon2id with the OWASP parameters for passwords (19 MiB, two passes, one lane): people
/// choose passwords that can be guessed, so hashing must be slow (unlike device secrets).
fn password_hasher() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The salted Argon2id PHC string of `password`. CPU-bound: call on a blocking thread.
pub fn hash_password(password: &str) -> String {
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes).expect("16 bytes make a valid salt");
    password_hasher()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashes any input")
        .to_string()
}

/// Whether `password` matches the PHC string `hash`. CPU-bound: call on a blocking thread.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A generated password: 144 random bits as 24 URL-safe characters, shown once.
pub fn generate_password() -> String {
    let bytes: [u8; 18] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A user name: letters, digits and `.`, `_`, `-`, `@`, 1 to 64 of them.
pub fn valid_user_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("user names are 1 to 64 letters, digits, `.`, `_`, `-` or `@`")]
    InvalidName,
    #[error("unknown role `{0}` (admin, physician, nurse, observer)")]
    InvalidRole(String),
    #[error("a user is scoped to at least one ward, or to all wards")]
    NoWards,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Creates a user with a generated password, which is returned (to be shown once) and never
/// kept. `wards`: `None` for every ward. CPU-bound (hashing): call on a blocking thread.
pub fn create_user(
    store: &mut Store,
    name: &str,
    role: &str,
    wards: Option<&[String]>,
    now_ms: i64,
) -> Result<String, UserError> {
    if !valid_user_name(name) {
        return Err(UserError::InvalidName);
    }
    if Role::from_key(role).is_none() {
        return Err(UserError::InvalidRole(role.to_owned()));
    }
    if wards.is_some_and(<[String]>::is_empty) {
        return Err(UserError::NoWards);
    }
    let password = generate_password();
    let hash = hash_password(&password);
    store.create_user(&NewUser {
        name,
        role,
        wards,
        password_hash: &hash,
        at_ms: now_ms,
    })?;
    Ok(password)
}

/// Gives a user a new generated password (returned once) and clears a lockout.
pub fn reset_password(store: &Store, name: &str, now_ms: i64) -> Result<String, UserError> {
    let password = generate_password();
    store.set_user_password(name, &hash_password(&password), now_ms)?;
    Ok(password)
}

/// A user as the API and `metaward user list` show it (never the hash).
pub fn user_json(user: &UserRecord) -> serde_json::Value {
    serde_json::json!({
        "name": user.name,
        "role": user.role,
        "wards": user.wards.as_ref().map_or(serde_json::json!("*"), |w| serde_json::json!(w)),
        "disabled": user.disabled,
        "locked_until": user.locked_until_ms,
        "failed_logins": user.failed_logins,
        "created_at": user.created_at_ms,
        "password_set_at": user.password_set_at_ms,
        "oidc_subject": user.oidc_subject,
        "oidc_managed": user.oidc_managed,
    })
}

/// Everything the HTTP edge needs for authentication and audit.
pub struct Auth {
    pub sessions: Sessions,
    pub audit: Audit,
    /// Failed logins per address and per account and address.
    pub throttle: throttle::LoginThrottle,
    /// Single sign-on, when `[auth.oidc]` is configured.
    pub oidc: Option<oidc::Oidc>,
}

impl Auth {
    /// Sessions in memory only (a restart ends them).
    pub fn new(audit: Audit) -> Arc<Auth> {
        Auth::with_sessions(audit, Sessions::default())
    }

    /// With `sessions` (e.g. [`Sessions::persistent`], kept across restarts).
    pub fn with_sessions(audit: Audit, sessions: Sessions) -> Arc<Auth> {
        Auth::with_sessions_and_oidc(audit, sessions, None)
    }

    /// With `sessions` and single sign-on.
    pub fn with_sessions_and_oidc(
        audit: Audit,
        sessions: Sessions,
        oidc: Option<oidc::Oidc>,
    ) -> Arc<Auth> {
        Arc::new(Auth {
            sessions,
            audit,
            throttle: Default::default(),
            oidc,
        })
    }
}

/// How the peer is named in the audit trail: its IP address (`unknown` when the server was
/// not started with connection info, as in `Router::oneshot` tests).
pub fn source_of(extensions: &axum::http::Extensions) -> String {
    extensions
        .get::<axum::extract::ConnectInfo<crate::tls::PeerAddr>>()
        .map_or_else(|| "unknown".to_owned(), |info| info.0.0.ip().to_string())
}

/// The peer's address as an extractor, for handlers that audit.
pub struct Peer(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Peer(source_of(&parts.extensions)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let password = generate_password();
        assert_eq!(password.len(), 24);
        let hash = hash_password(&password);
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(verify_password(&password, &hash));
        assert!(!verify_password("guess", &hash));
    }

    #[test]
    fn roles_are_ordered_by_what_they_may_do() {
        assert!(Role::Observer < Role::Nurse && Role::Nurse < Role::Physician);
        assert!(Role::Physician < Role::Admin);
        for role in Role::ALL {
            assert_eq!(Role::from_key(role.key()), Some(role));
        }
        assert_eq!(Role::from_key("root"), None);
    }
}
