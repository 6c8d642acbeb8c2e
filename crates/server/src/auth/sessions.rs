//! Sessions: a short-lived access token (15 minutes) and a refresh token (8 hours) per login,
//! both 256 random bits, kept only as SHA-256 hashes in memory. A refresh rotates both tokens
//! (a refresh token works once) and re-reads the user, so a disabled user or a changed role or
//! scope takes effect at the next refresh; disabling through the API ends the user's sessions at
//! once. Logout revokes the session. A restart ends every session: log in again.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::Role;
use model::WardId;

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

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Sessions {
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
        let session = inner.by_access.remove(&access_hash)?;
        (session.refresh_expires_ms > now_ms).then_some(session)
    }

    /// Ends the session of an access token. Returns whether there was one.
    pub fn revoke(&self, access_token: &str) -> bool {
        let mut inner = self.inner.lock().expect("sessions lock");
        match inner.by_access.remove(&digest(access_token)) {
            Some(session) => {
                inner.by_refresh.remove(&session.refresh_hash);
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
}
