//! Long-lived API tokens, kept in the store (`api_tokens`) as SHA-256 hashes of 256 random bits:
//!
//! - **device tokens** (`mwd_…`): a device posts its own Observations to `/fhir` (and Bundles of
//!   them) and nothing else; another device's data, the record, any read is refused (403).
//! - **service tokens** (`mws_…`): an integration (the EMR link, a script) acts as a user, with
//!   that user's role and wards as they are at each request; they expire (90 days unless told).
//!
//! The prefixes let secret scanners find a leaked token and say which kind it is. A token is
//! shown once, when it is created or rotated. Every request looks its token up in the store, so
//! a rotation or revocation (over REST, or `metaward token` on the data directory beside a
//! running server) takes effect at the next request, without a restart.

use base64::Engine as _;
use model::{DeviceId, WardId};
use serde_json::{Value, json};
use store::{ApiTokenKind, ApiTokenRecord, Store, StoreError};

use super::Role;
use super::sessions::digest;

pub const DEVICE_PREFIX: &str = "mwd_";
pub const SERVICE_PREFIX: &str = "mws_";
/// A service token's lifetime unless its creator says otherwise.
pub const DEFAULT_SERVICE_DAYS: u32 = 90;
/// The longest lifetime a token may be given (about ten years).
pub const MAX_DAYS: u32 = 3660;
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// Whether a bearer token is an API token (rather than a session's).
pub fn is_api_token(token: &str) -> bool {
    token.starts_with(DEVICE_PREFIX) || token.starts_with(SERVICE_PREFIX)
}

/// What kind of token to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NewToken {
    Device(String),
    Service(String),
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token names are 1 to 64 letters, digits, `.`, `_`, `-` or `@`")]
    InvalidName,
    #[error("device ids are 1 to 64 letters, digits, `-` or `.`")]
    InvalidDevice,
    #[error("expires_in_days must be 1 to {MAX_DAYS}")]
    InvalidExpiry,
    #[error("user `{0}` is disabled: a service token would act for nobody")]
    UserDisabled(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn secret(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// When a token made at `now_ms` expires: `days` if given, else 90 days for a service token
/// and never for a device token (a monitor on a wall is rotated by its engineers, not a clock).
fn expiry(kind: &ApiTokenKind, days: Option<u32>, now_ms: i64) -> Result<Option<i64>, TokenError> {
    if days.is_some_and(|days| !(1..=MAX_DAYS).contains(&days)) {
        return Err(TokenError::InvalidExpiry);
    }
    let days = match kind {
        ApiTokenKind::Service(_) => Some(days.unwrap_or(DEFAULT_SERVICE_DAYS)),
        ApiTokenKind::Device(_) => days,
    };
    Ok(days.map(|days| now_ms + i64::from(days) * DAY_MS))
}

fn prefix_of(kind: &ApiTokenKind) -> &'static str {
    match kind {
        ApiTokenKind::Device(_) => DEVICE_PREFIX,
        ApiTokenKind::Service(_) => SERVICE_PREFIX,
    }
}

/// Creates a token; returns it as stored and its secret (to be shown once, never kept).
pub fn create(
    store: &Store,
    name: &str,
    kind: NewToken,
    expires_in_days: Option<u32>,
    now_ms: i64,
) -> Result<(ApiTokenRecord, String), TokenError> {
    if !super::valid_user_name(name) {
        return Err(TokenError::InvalidName);
    }
    let kind = match kind {
        NewToken::Device(device) => {
            if !fhir::observation::valid_id(&device) {
                return Err(TokenError::InvalidDevice);
            }
            ApiTokenKind::Device(device)
        }
        NewToken::Service(user) => {
            if store.user(&user)?.is_some_and(|user| user.disabled) {
                return Err(TokenError::UserDisabled(user));
            }
            ApiTokenKind::Service(user)
        }
    };
    let secret = secret(prefix_of(&kind));
    let record = ApiTokenRecord {
        name: name.to_owned(),
        expires_at_ms: expiry(&kind, expires_in_days, now_ms)?,
        kind,
        token_hash: digest(&secret),
        created_at_ms: now_ms,
        secret_set_at_ms: now_ms,
    };
    store.create_api_token(&record)?;
    Ok((record, secret))
}

/// A new secret for a token (the old one stops working at once) and a new expiry, counted from
/// now as at creation. Returns the token and its new secret.
pub fn rotate(
    store: &Store,
    name: &str,
    expires_in_days: Option<u32>,
    now_ms: i64,
) -> Result<(ApiTokenRecord, String), TokenError> {
    let Some(mut record) = store.api_token(name)? else {
        return Err(StoreError::NotFound {
            what: "token",
            id: name.to_owned(),
        }
        .into());
    };
    let secret = secret(prefix_of(&record.kind));
    record.token_hash = digest(&secret);
    record.secret_set_at_ms = now_ms;
    record.expires_at_ms = expiry(&record.kind, expires_in_days, now_ms)?;
    store.rotate_api_token(name, &record.token_hash, now_ms, record.expires_at_ms)?;
    Ok((record, secret))
}

/// A token as the API and `metaward token list` show it (never the secret or its hash).
pub fn token_json(record: &ApiTokenRecord) -> Value {
    let mut value = json!({
        "name": record.name,
        "created_at": record.created_at_ms,
        "secret_set_at": record.secret_set_at_ms,
        "expires_at": record.expires_at_ms,
    });
    match &record.kind {
        ApiTokenKind::Device(device) => {
            value["kind"] = json!("device");
            value["device"] = json!(device);
        }
        ApiTokenKind::Service(user) => {
            value["kind"] = json!("service");
            value["user"] = json!(user);
        }
    }
    value
}

/// The device a request runs for, put in the request by the middleware when a device token
/// authenticated it: `sources::fhir_rest` refuses an Observation naming any other device.
#[derive(Clone, Debug)]
pub struct DeviceCaller(pub DeviceId);

/// Whom a valid API token speaks for.
#[derive(Clone, Debug)]
pub enum TokenCaller {
    Device {
        name: String,
        device: DeviceId,
    },
    Service {
        name: String,
        user: String,
        role: Role,
        wards: Option<Vec<WardId>>,
    },
}

impl TokenCaller {
    /// How the caller is named in the audit trail: `device:<id>`, `token:<name> for <user>`.
    pub fn actor(&self) -> String {
        match self {
            TokenCaller::Device { device, .. } => format!("device:{device}"),
            TokenCaller::Service { name, user, .. } => format!("token:{name} for {user}"),
        }
    }
}

/// The caller a token stands for, if it is known, unexpired and (for a service token) its user
/// exists and is enabled. The user's role and wards are read now, so a change to the user takes
/// effect at the token's next request.
pub fn authenticate(
    store: &Store,
    token: &str,
    now_ms: i64,
) -> Result<Option<TokenCaller>, StoreError> {
    if !is_api_token(token) {
        return Ok(None);
    }
    let Some(record) = store.api_token_by_hash(&digest(token))? else {
        return Ok(None);
    };
    if record
        .expires_at_ms
        .is_some_and(|expires| expires <= now_ms)
        || !token.starts_with(prefix_of(&record.kind))
    {
        return Ok(None);
    }
    Ok(match record.kind {
        ApiTokenKind::Device(device) => Some(TokenCaller::Device {
            name: record.name,
            device: DeviceId::new(device),
        }),
        ApiTokenKind::Service(user) => {
            let Some(user) = store.user(&user)?.filter(|user| !user.disabled) else {
                return Ok(None);
            };
            let Some(role) = Role::from_key(&user.role) else {
                return Ok(None);
            };
            Some(TokenCaller::Service {
                name: record.name,
                user: user.name,
                role,
                wards: user
                    .wards
                    .map(|wards| wards.iter().map(WardId::new).collect()),
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with_user(disabled: bool) -> Store {
        let mut store = Store::open_in_memory().unwrap();
        let wards = vec!["w1".to_owned()];
        store
            .create_user(&store::NewUser {
                name: "svc",
                role: "nurse",
                wards: Some(&wards),
                password_hash: "h",
                at_ms: 0,
            })
            .unwrap();
        if disabled {
            store.set_user_disabled("svc", true).unwrap();
        }
        store
    }

    #[test]
    fn a_service_token_acts_as_its_user_until_it_expires_or_is_rotated() {
        let store = store_with_user(false);
        let (record, secret) =
            create(&store, "emr", NewToken::Service("svc".into()), None, 0).unwrap();
        assert!(secret.starts_with(SERVICE_PREFIX) && secret.len() == 4 + 43);
        assert_eq!(
            record.expires_at_ms,
            Some(i64::from(DEFAULT_SERVICE_DAYS) * DAY_MS)
        );
        let Some(TokenCaller::Service {
            user, role, wards, ..
        }) = authenticate(&store, &secret, 1).unwrap()
        else {
            panic!("a service caller");
        };
        assert_eq!(
            (user.as_str(), role, wards),
            ("svc", Role::Nurse, Some(vec![WardId::new("w1")]))
        );
        assert!(
            authenticate(&store, &secret, record.expires_at_ms.unwrap())
                .unwrap()
                .is_none(),
            "expired"
        );
        // The same secret with the other prefix is not a token.
        let other = secret.replacen(SERVICE_PREFIX, DEVICE_PREFIX, 1);
        assert!(authenticate(&store, &other, 1).unwrap().is_none());
        let (_, new_secret) = rotate(&store, "emr", Some(1), 10).unwrap();
        assert!(authenticate(&store, &secret, 11).unwrap().is_none());
        assert!(authenticate(&store, &new_secret, 11).unwrap().is_some());
        assert!(
            authenticate(&store, &new_secret, 10 + DAY_MS)
                .unwrap()
                .is_none()
        );
        store.set_user_disabled("svc", true).unwrap();
        assert!(
            authenticate(&store, &new_secret, 11).unwrap().is_none(),
            "a disabled user's token acts for nobody"
        );
    }

    #[test]
    fn device_tokens_do_not_expire_unless_told_and_revocation_ends_them() {
        let store = store_with_user(true);
        let (record, secret) =
            create(&store, "mon-1", NewToken::Device("dev-1".into()), None, 0).unwrap();
        assert_eq!(record.expires_at_ms, None);
        assert!(secret.starts_with(DEVICE_PREFIX));
        assert!(matches!(
            authenticate(&store, &secret, i64::MAX / 2).unwrap(),
            Some(TokenCaller::Device { device, .. }) if device == DeviceId::new("dev-1")
        ));
        store.revoke_api_token("mon-1").unwrap();
        assert!(authenticate(&store, &secret, 1).unwrap().is_none());
        assert!(matches!(
            create(&store, "x", NewToken::Service("svc".into()), None, 0),
            Err(TokenError::UserDisabled(_))
        ));
        assert!(matches!(
            create(&store, "bad name", NewToken::Device("d".into()), None, 0),
            Err(TokenError::InvalidName)
        ));
        assert!(matches!(
            create(&store, "d", NewToken::Device("d/1".into()), None, 0),
            Err(TokenError::InvalidDevice)
        ));
        assert!(matches!(
            create(&store, "d", NewToken::Device("d".into()), Some(0), 0),
            Err(TokenError::InvalidExpiry)
        ));
    }
}
