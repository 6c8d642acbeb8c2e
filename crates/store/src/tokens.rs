//! Bearer credentials kept across restarts (`v14_api_tokens.sql`): long-lived API tokens (a
//! device's token for FHIR posting, a service token acting as a user) and sign-in sessions.
//!
//! The store keeps only SHA-256 hashes of tokens, as given by the server (`server::auth`), which
//! makes and checks the tokens and decides what each may do.

use rusqlite::{OptionalExtension, Row, params};

use crate::{Store, StoreError};

/// Who an API token speaks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiTokenKind {
    /// A device, posting only its own Observations.
    Device(String),
    /// A user, with that user's role and wards.
    Service(String),
}

/// An API token as stored (its hash, never the token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiTokenRecord {
    pub name: String,
    pub kind: ApiTokenKind,
    pub token_hash: [u8; 32],
    pub created_at_ms: i64,
    pub secret_set_at_ms: i64,
    /// `None`: does not expire.
    pub expires_at_ms: Option<i64>,
}

/// A sign-in session as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    pub access_hash: [u8; 32],
    pub refresh_hash: [u8; 32],
    pub user: String,
    pub role: String,
    /// `None`: every ward.
    pub wards: Option<Vec<String>>,
    pub access_expires_ms: i64,
    pub refresh_expires_ms: i64,
}

const TOKEN_COLUMNS: &str =
    "name, kind, device_id, user_name, token_hash, created_at_ms, secret_set_at_ms, expires_at_ms";

fn hash_of(row: &Row, index: usize) -> rusqlite::Result<[u8; 32]> {
    let bytes: Vec<u8> = row.get(index)?;
    bytes.try_into().map_err(|bytes: Vec<u8>| {
        rusqlite::Error::FromSqlConversionFailure(
            index,
            rusqlite::types::Type::Blob,
            format!("a token hash of {} bytes", bytes.len()).into(),
        )
    })
}

fn token_of(row: &Row) -> rusqlite::Result<ApiTokenRecord> {
    let kind: String = row.get(1)?;
    let kind = if kind == "device" {
        ApiTokenKind::Device(row.get(2)?)
    } else {
        ApiTokenKind::Service(row.get(3)?)
    };
    Ok(ApiTokenRecord {
        name: row.get(0)?,
        kind,
        token_hash: hash_of(row, 4)?,
        created_at_ms: row.get(5)?,
        secret_set_at_ms: row.get(6)?,
        expires_at_ms: row.get(7)?,
    })
}

fn session_of(row: &Row) -> rusqlite::Result<SessionRecord> {
    let wards: Option<String> = row.get(4)?;
    Ok(SessionRecord {
        access_hash: hash_of(row, 0)?,
        refresh_hash: hash_of(row, 1)?,
        user: row.get(2)?,
        role: row.get(3)?,
        wards: wards.map(|wards| serde_json::from_str(&wards).unwrap_or_default()),
        access_expires_ms: row.get(5)?,
        refresh_expires_ms: row.get(6)?,
    })
}

const SESSION_COLUMNS: &str =
    "access_hash, refresh_hash, user_name, role, wards, access_expires_ms, refresh_expires_ms";

impl Store {
    /// Keeps a new API token. `StoreError::Conflict` if the name is taken; a service token's
    /// user must exist (`NotFound`).
    pub fn create_api_token(&self, token: &ApiTokenRecord) -> Result<(), StoreError> {
        let (kind, device, user) = match &token.kind {
            ApiTokenKind::Device(device) => ("device", Some(device.as_str()), None),
            ApiTokenKind::Service(user) => ("service", None, Some(user.as_str())),
        };
        if let Some(user) = user
            && self.user(user)?.is_none()
        {
            return Err(StoreError::NotFound {
                what: "user",
                id: user.to_owned(),
            });
        }
        let inserted = self.conn.execute(
            "INSERT INTO api_tokens (name, kind, device_id, user_name, token_hash, created_at_ms,
                 secret_set_at_ms, expires_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (name) DO NOTHING",
            params![
                token.name,
                kind,
                device,
                user,
                token.token_hash.as_slice(),
                token.created_at_ms,
                token.secret_set_at_ms,
                token.expires_at_ms
            ],
        )?;
        if inserted == 0 {
            return Err(StoreError::Conflict(format!(
                "a token named `{}` already exists",
                token.name
            )));
        }
        Ok(())
    }

    /// Every API token, by name.
    pub fn api_tokens(&self) -> Result<Vec<ApiTokenRecord>, StoreError> {
        let mut statement = self.conn.prepare_cached(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY name"
        ))?;
        let rows = statement.query_map([], token_of)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn api_token(&self, name: &str) -> Result<Option<ApiTokenRecord>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE name = ?1"
            ))?
            .query_row(params![name], token_of)
            .optional()?)
    }

    /// The token whose secret hashes to `hash`, if any (expiry is the caller's to check).
    pub fn api_token_by_hash(&self, hash: &[u8; 32]) -> Result<Option<ApiTokenRecord>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = ?1"
            ))?
            .query_row(params![hash.as_slice()], token_of)
            .optional()?)
    }

    /// Gives a token a new secret (its hash) and expiry; the old secret stops working.
    pub fn rotate_api_token(
        &self,
        name: &str,
        hash: &[u8; 32],
        at_ms: i64,
        expires_at_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        let changed = self.conn.execute(
            "UPDATE api_tokens SET token_hash = ?2, secret_set_at_ms = ?3, expires_at_ms = ?4
             WHERE name = ?1",
            params![name, hash.as_slice(), at_ms, expires_at_ms],
        )?;
        require_token(changed, name)
    }

    /// Removes a token: its secret stops working.
    pub fn revoke_api_token(&self, name: &str) -> Result<(), StoreError> {
        let changed = self
            .conn
            .execute("DELETE FROM api_tokens WHERE name = ?1", params![name])?;
        require_token(changed, name)
    }

    pub fn insert_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        let wards = session
            .wards
            .as_ref()
            .map(|wards| serde_json::to_string(wards).expect("strings serialize"));
        self.conn.execute(
            &format!("INSERT OR REPLACE INTO sessions ({SESSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
            params![
                session.access_hash.as_slice(),
                session.refresh_hash.as_slice(),
                session.user,
                session.role,
                wards,
                session.access_expires_ms,
                session.refresh_expires_ms
            ],
        )?;
        Ok(())
    }

    /// Deletes the sessions whose refresh token has expired at `now_ms`.
    pub fn delete_expired_sessions(&self, now_ms: i64) -> Result<(), StoreError> {
        self.conn.execute(
            "DELETE FROM sessions WHERE refresh_expires_ms <= ?1",
            params![now_ms],
        )?;
        Ok(())
    }

    /// Sessions whose refresh token has not expired at `now_ms`; expired ones are deleted.
    pub fn live_sessions(&self, now_ms: i64) -> Result<Vec<SessionRecord>, StoreError> {
        self.delete_expired_sessions(now_ms)?;
        let mut statement = self
            .conn
            .prepare_cached(&format!("SELECT {SESSION_COLUMNS} FROM sessions"))?;
        let rows = statement.query_map([], session_of)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Ends the session of an access token's hash.
    pub fn delete_session(&self, access_hash: &[u8; 32]) -> Result<(), StoreError> {
        self.conn.execute(
            "DELETE FROM sessions WHERE access_hash = ?1",
            params![access_hash.as_slice()],
        )?;
        Ok(())
    }

    /// Ends every session of a user.
    pub fn delete_user_sessions(&self, user: &str) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM sessions WHERE user_name = ?1", params![user])?;
        Ok(())
    }
}

fn require_token(changed: usize, name: &str) -> Result<(), StoreError> {
    if changed == 0 {
        return Err(StoreError::NotFound {
            what: "token",
            id: name.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NewUser;

    fn token(name: &str, kind: ApiTokenKind, byte: u8) -> ApiTokenRecord {
        ApiTokenRecord {
            name: name.into(),
            kind,
            token_hash: [byte; 32],
            created_at_ms: 1,
            secret_set_at_ms: 1,
            expires_at_ms: Some(100),
        }
    }

    #[test]
    fn api_tokens_are_created_found_by_hash_rotated_and_revoked() {
        let mut store = Store::open_in_memory().unwrap();
        store
            .create_user(&NewUser {
                name: "svc",
                role: "admin",
                wards: None,
                password_hash: "h",
                at_ms: 1,
            })
            .unwrap();
        let device = token("monitor-7", ApiTokenKind::Device("dev-7".into()), 1);
        store.create_api_token(&device).unwrap();
        let service = token("emr-link", ApiTokenKind::Service("svc".into()), 2);
        store.create_api_token(&service).unwrap();
        assert!(matches!(
            store.create_api_token(&token("emr-link", ApiTokenKind::Device("d".into()), 3)),
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            store.create_api_token(&token("x", ApiTokenKind::Service("nobody".into()), 4)),
            Err(StoreError::NotFound { .. })
        ));
        assert_eq!(store.api_token_by_hash(&[1; 32]).unwrap(), Some(device));
        assert_eq!(store.api_tokens().unwrap().len(), 2);
        store
            .rotate_api_token("emr-link", &[9; 32], 50, Some(500))
            .unwrap();
        assert_eq!(store.api_token_by_hash(&[2; 32]).unwrap(), None);
        let rotated = store.api_token_by_hash(&[9; 32]).unwrap().unwrap();
        assert_eq!(
            (
                rotated.name.as_str(),
                rotated.secret_set_at_ms,
                rotated.expires_at_ms
            ),
            ("emr-link", 50, Some(500))
        );
        store.revoke_api_token("monitor-7").unwrap();
        assert_eq!(store.api_token_by_hash(&[1; 32]).unwrap(), None);
        assert!(store.revoke_api_token("monitor-7").is_err());
        assert!(store.rotate_api_token("nope", &[5; 32], 1, None).is_err());
    }

    #[test]
    fn sessions_are_kept_until_they_expire_or_end() {
        let store = Store::open_in_memory().unwrap();
        let session = |byte: u8, user: &str, refresh_expires_ms: i64| SessionRecord {
            access_hash: [byte; 32],
            refresh_hash: [byte + 100; 32],
            user: user.into(),
            role: "nurse".into(),
            wards: byte.is_multiple_of(2).then(|| vec!["w1".to_owned()]),
            access_expires_ms: 10,
            refresh_expires_ms,
        };
        for (byte, user, expires) in [(1, "ann", 50), (2, "ann", 500), (3, "bob", 500)] {
            store.insert_session(&session(byte, user, expires)).unwrap();
        }
        let live = store.live_sessions(100).unwrap();
        assert_eq!(live.len(), 2, "the expired one is gone");
        assert!(live.contains(&session(2, "ann", 500)));
        store.delete_session(&[3; 32]).unwrap();
        assert_eq!(store.live_sessions(100).unwrap().len(), 1);
        store.delete_user_sessions("ann").unwrap();
        assert!(store.live_sessions(100).unwrap().is_empty());
    }
}
