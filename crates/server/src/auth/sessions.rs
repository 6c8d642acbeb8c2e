//! Sessions: a short-lived access token (15 minutes) and a refresh token (8 hours) per login,
//! both 256 random bits, kept only as SHA-256 hashes: in memory for the check of each request,
//! and (when started with [`Sessions::persistent`]) written through to the store's `sessions`
//! table, so a restart signs nobody out: the tokens work until they expire. A refresh rotates
//! both tokens (a refresh token works once) and re-reads the user, so a disabled user or a
//! changed role or scope takes effect at the next refresh; disabling through the API ends the
//! user's sessions at once. Logout revokes the session. Every end of a session (refresh,
//! logout, revocation, disable) is written to the store before it is answered, so a restart
//! never brings an ended session back.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::Role;
use model::WardId;
use store::{SessionRecord, Store, StoreError};

pub const ACCESS_TTL_MS: i64 = 15 * 60 * 1000;
pub const REFRESH_TTL_MS: i64 = 8 * 60 * 60 * 1000;

/// Prefixes make a leaked token recognizable (secret scanners) and say which kind it is.
const ACCESS_PREFIX: &str = "mwa_";
const REFRESH_PREFIX: &str = "mwr_";

#[derive(Clone, Debug)]
pub struct Session {
    pub user: String,
    pub role: Role,
    pub wards: Option<Vec<WardId>>,
    pub access_expires_ms: i64,
    pub refresh_expires_ms: i64,
    refresh_hash: [u8; 32],
}

/// What a login or refresh hands out (the only time the tokens exist outside the client).
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in_s: i64,
}

#[derive(Default)]
pub struct Sessions {
    inner: Mutex<Inner>,
    /// Where sessions are kept across restarts (a connection of their own: the writes are
    /// single small rows, done under the sessions lock so memory and store agree).
    store: Option<Mutex<Store>>,
}

#[derive(Default)]
struct Inner {
    /// By the hash of the access token.
    by_access: HashMap<[u8; 32], Session>,
    /// The hash of the refresh token → the hash of its access token.
    by_refresh: HashMap<[u8; 32], [u8; 32]>,
}

fn token(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

pub(crate) fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Sessions {
    /// Sessions kept in `store` too: the live ones there (refresh not expired) are loaded.
    pub fn persistent(store: Store, now_ms: i64) -> Result<Sessions, StoreError> {
        let mut inner = Inner::default();
        for record in store.live_sessions(now_ms)? {
            let Some(role) = Role::from_key(&record.role) else {
                continue;
            };
            inner
                .by_refresh
                .insert(record.refresh_hash, record.access_hash);
            inner.by_access.insert(
                record.access_hash,
                Session {
                    user: record.user,
                    role,
                    wards: record
                        .wards
                        .map(|wards| wards.iter().map(WardId::new).collect()),
                    access_expires_ms: record.access_expires_ms,
                    refresh_expires_ms: record.refresh_expires_ms,
                    refresh_hash: record.refresh_hash,
                },
            );
        }
        Ok(Sessions {
            inner: Mutex::new(inner),
            store: Some(Mutex::new(store)),
        })
    }

    /// Writes a change through to the store, if sessions are kept there. A failure is logged:
    /// the session goes on in memory, and the next restart would not know it.
    fn persist(&self, what: &str, change: impl FnOnce(&Store) -> Result<(), StoreError>) {
        if let Some(store) = &self.store
            && let Err(error) = change(&store.lock().expect("sessions store lock"))
        {
            tracing::error!(%error, what, "could not keep a session change in the store");
        }
    }

    /// Starts a session for a user who just proved their password.
    pub fn start(
        &self,
        user: &str,
        role: Role,
        wards: Option<Vec<WardId>>,
        now_ms: i64,
    ) -> TokenPair {
        let mut inner = self.inner.lock().expect("sessions lock");
        inner.expire(now_ms);
        let (access, refresh) = (token(ACCESS_PREFIX), token(REFRESH_PREFIX));
        let (access_hash, refresh_hash) = (digest(&access), digest(&refresh));
        inner.by_access.insert(
            access_hash,
            Session {
                user: user.to_owned(),
                role,
                wards,
                access_expires_ms: now_ms + ACCESS_TTL_MS,
                refresh_expires_ms: now_ms + REFRESH_TTL_MS,
                refresh_hash,
            },
        );
        inner.by_refresh.insert(refresh_hash, access_hash);
        self.persist("start", |store| {
            // Sessions nobody refreshed or ended leave with the next login after they expire.
            store.delete_expired_sessions(now_ms)?;
            store.insert_session(&SessionRecord {
                access_hash,
                refresh_hash,
                user: user.to_owned(),
                role: role.key().to_owned(),
                wards: inner.by_access[&access_hash]
                    .wards
                    .as_ref()
                    .map(|wards| wards.iter().map(ToString::to_string).collect()),
                access_expires_ms: now_ms + ACCESS_TTL_MS,
                refresh_expires_ms: now_ms + REFRESH_TTL_MS,
            })
        });
        TokenPair {
            access_token: access,
            refresh_token: refresh,
            expires_in_s: ACCESS_TTL_MS / 1000,
        }
    }

    /// The session an access token belongs to, if it is live.
    pub fn check(&self, access_token: &str, now_ms: i64) -> Option<Session> {
        if !access_token.starts_with(ACCESS_PREFIX) {
            return None;
        }
        let inner = self.inner.lock().expect("sessions lock");
        inner
            .by_access
            .get(&digest(access_token))
            .filter(|session| session.access_expires_ms > now_ms)
            .cloned()
    }

    /// Takes a refresh token (it works once): the session it belongs to, which the caller
    /// re-checks against the user before calling [`Sessions::start`] again.
    pub fn redeem_refresh(&self, refresh_token: &str, now_ms: i64) -> Option<Session> {
        if !refresh_token.starts_with(REFRESH_PREFIX) {
            return None;
        }
        let mut inner = self.inner.lock().expect("sessions lock");
        let access_hash = inner.by_refresh.remove(&digest(refresh_token))?;
        let session = inner.by_access.remove(&access_hash);
        self.persist("refresh", |store| store.delete_session(&access_hash));
        session.filter(|session| session.refresh_expires_ms > now_ms)
    }

    /// Ends the session of an access token. Returns whether there was one.
    pub fn revoke(&self, access_token: &str) -> bool {
        let mut inner = self.inner.lock().expect("sessions lock");
        let access_hash = digest(access_token);
        match inner.by_access.remove(&access_hash) {
            Some(session) => {
                inner.by_refresh.remove(&session.refresh_hash);
                self.persist("logout", |store| store.delete_session(&access_hash));
                true
            }
            None => false,
        }
    }

    /// Ends every session of a user (disabled, password reset).
    pub fn revoke_user(&self, user: &str) {
        let mut inner = self.inner.lock().expect("sessions lock");
        let refresh: Vec<[u8; 32]> = inner
            .by_access
            .values()
            .filter(|session| session.user == user)
            .map(|session| session.refresh_hash)
            .collect();
        inner.by_access.retain(|_, session| session.user != user);
        for hash in refresh {
            inner.by_refresh.remove(&hash);
        }
        self.persist("revoke", |store| store.delete_user_sessions(user));
    }
}

impl Inner {
    fn expire(&mut self, now_ms: i64) {
        let expired: Vec<[u8; 32]> = self
            .by_access
            .values()
            .filter(|session| session.refresh_expires_ms <= now_ms)
            .map(|session| session.refresh_hash)
            .collect();
        self.by_access
            .retain(|_, session| session.refresh_expires_ms > now_ms);
        for hash in expired {
            self.by_refresh.remove(&hash);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_expires_refresh_rotates_logout_revokes() {
        let sessions = Sessions::default();
        let pair = sessions.start("ann", Role::Nurse, None, 0);
        assert!(sessions.check(&pair.access_token, 1).is_some());
        assert!(
            sessions.check(&pair.access_token, ACCESS_TTL_MS).is_none(),
            "expired"
        );
        assert!(
            sessions.check(&pair.refresh_token, 1).is_none(),
            "a refresh token is not an access token"
        );
        let session = sessions
            .redeem_refresh(&pair.refresh_token, ACCESS_TTL_MS)
            .unwrap();
        assert_eq!(session.user, "ann");
        assert!(
            sessions
                .redeem_refresh(&pair.refresh_token, ACCESS_TTL_MS)
                .is_none(),
            "works once"
        );
        let pair = sessions.start("ann", Role::Nurse, None, ACCESS_TTL_MS);
        assert!(sessions.revoke(&pair.access_token));
        assert!(
            sessions
                .check(&pair.access_token, ACCESS_TTL_MS + 1)
                .is_none()
        );
        assert!(
            sessions
                .redeem_refresh(&pair.refresh_token, ACCESS_TTL_MS + 1)
                .is_none()
        );
        let pair = sessions.start("bob", Role::Admin, None, 0);
        sessions.revoke_user("bob");
        assert!(sessions.check(&pair.access_token, 1).is_none());
        let pair = sessions.start("cy", Role::Admin, None, 0);
        assert!(
            sessions
                .redeem_refresh(&pair.refresh_token, REFRESH_TTL_MS)
                .is_none(),
            "refresh expired"
        );
    }

    #[test]
    fn persistent_sessions_outlive_the_process_and_their_end_does_too() {
        let dir = std::env::temp_dir().join(format!("sessions-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("store.sqlite");
        let _ = std::fs::remove_file(&path);
        let open = || Sessions::persistent(Store::open(&path).unwrap(), 0).unwrap();
        let sessions = open();
        let kept = sessions.start("ann", Role::Nurse, Some(vec![WardId::new("w1")]), 0);
        let ended = sessions.start("ann", Role::Nurse, None, 0);
        let refreshed = sessions.start("bob", Role::Admin, None, 0);
        let disabled = sessions.start("cy", Role::Observer, None, 0);
        assert!(sessions.revoke(&ended.access_token));
        assert!(
            sessions
                .redeem_refresh(&refreshed.refresh_token, 1)
                .is_some()
        );
        sessions.revoke_user("cy");
        drop(sessions);
        // As after a restart: a new process on the same store.
        let sessions = open();
        let session = sessions
            .check(&kept.access_token, 1)
            .expect("still signed in");
        assert_eq!(
            (session.user.as_str(), session.role, session.wards),
            ("ann", Role::Nurse, Some(vec![WardId::new("w1")]))
        );
        assert!(sessions.redeem_refresh(&kept.refresh_token, 2).is_some());
        for gone in [&ended, &refreshed, &disabled] {
            assert!(sessions.check(&gone.access_token, 1).is_none());
            assert!(sessions.redeem_refresh(&gone.refresh_token, 1).is_none());
        }
        let sessions = open();
        assert!(
            sessions.check(&kept.access_token, 3).is_none(),
            "its refresh ended it"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
