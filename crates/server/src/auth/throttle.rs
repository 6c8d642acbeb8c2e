//! Failed-login throttling, so that guessing passwords is slow and a guesser cannot lock a real
//! user out:
//!
//! - **per address**: [`ADDRESS_FAILURES`] failed logins from one address (whatever accounts
//!   they named) within [`WINDOW_MS`] refuse that address's logins for [`WINDOW_MS`] from the
//!   last failure (429 with `Retry-After`), right password or not.
//! - **per account and address**: [`super::FAILURES_TO_LOCK`] failures in a row on one account
//!   from one address lock that account for [`super::LOCKOUT_MS`] *from that address* (and any
//!   other address that has failed on it as often); the user signs in from their own machine,
//!   which has not failed, as usual.
//! - **per account**, whatever the address ([`super::ACCOUNT_FAILURES_TO_LOCK`] in a row, in the
//!   store, so it survives a restart): a guess spread over many addresses locks the account for
//!   everyone until it expires or an admin resets the password. That is the one way left to lock
//!   a user out, and it takes many addresses, each throttled as above.
//!
//! The first two live in memory (a restart forgets them); entries older than the window are
//! dropped as the table grows.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{FAILURES_TO_LOCK, LOCKOUT_MS};

/// Failed logins from one address within [`WINDOW_MS`] that make it wait.
pub const ADDRESS_FAILURES: u32 = 10;
pub const WINDOW_MS: i64 = 15 * 60 * 1000;
/// Beyond this many tracked entries, old ones are swept.
const SWEEP_AT: usize = 10_000;

#[derive(Clone, Copy, Default)]
struct Failures {
    count: u32,
    last_ms: i64,
}

#[derive(Default)]
pub struct LoginThrottle {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_address: HashMap<String, Failures>,
    by_account: HashMap<(String, String), Failures>,
}

impl LoginThrottle {
    /// How long (ms) `address` must wait before trying again, if it must.
    pub fn address_wait_ms(&self, address: &str, now_ms: i64) -> Option<i64> {
        let inner = self.inner.lock().expect("throttle lock");
        let failures = inner.by_address.get(address)?;
        let until = failures.last_ms + WINDOW_MS;
        (failures.count >= ADDRESS_FAILURES && until > now_ms).then_some(until - now_ms)
    }

    /// Whether `user` is locked for logins from `address`. A password set after the last
    /// failure (an admin's reset, over REST or the command line) lifts the lock.
    pub fn account_locked(
        &self,
        user: &str,
        address: &str,
        password_set_at_ms: i64,
        now_ms: i64,
    ) -> bool {
        let inner = self.inner.lock().expect("throttle lock");
        inner
            .by_account
            .get(&(user.to_owned(), address.to_owned()))
            .is_some_and(|failures| {
                failures.count >= FAILURES_TO_LOCK
                    && failures.last_ms + LOCKOUT_MS > now_ms
                    // Failures in the millisecond of a reset were against the old password.
                    && failures.last_ms > password_set_at_ms
            })
    }

    /// Counts a failed login from `address`, naming `user` if such a user exists (with when
    /// its password was set: failures before that do not count).
    pub fn failed(&self, user: Option<(&str, i64)>, address: &str, now_ms: i64) {
        let mut inner = self.inner.lock().expect("throttle lock");
        if inner.by_address.len() + inner.by_account.len() > SWEEP_AT {
            inner.sweep(now_ms);
        }
        let count = |failures: &mut Failures, window_ms: i64| {
            // A run of failures older than the window starts over.
            if failures.last_ms + window_ms <= now_ms {
                failures.count = 0;
            }
            failures.count += 1;
            failures.last_ms = now_ms;
        };
        count(
            inner.by_address.entry(address.to_owned()).or_default(),
            WINDOW_MS,
        );
        if let Some((user, password_set_at_ms)) = user {
            let failures = inner
                .by_account
                .entry((user.to_owned(), address.to_owned()))
                .or_default();
            // A new password (an admin's reset) starts a new run.
            if failures.last_ms <= password_set_at_ms {
                failures.count = 0;
            }
            count(failures, LOCKOUT_MS);
        }
    }

    /// A successful login ends the account's run of failures from that address (the address's
    /// own count stays: it may have been guessing other accounts).
    pub fn succeeded(&self, user: &str, address: &str) {
        let mut inner = self.inner.lock().expect("throttle lock");
        inner
            .by_account
            .remove(&(user.to_owned(), address.to_owned()));
    }
}

impl Inner {
    fn sweep(&mut self, now_ms: i64) {
        let horizon = WINDOW_MS.max(LOCKOUT_MS);
        self.by_address
            .retain(|_, failures| failures.last_ms + horizon > now_ms);
        self.by_account
            .retain(|_, failures| failures.last_ms + horizon > now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guesser_locks_an_account_only_for_itself() {
        let throttle = LoginThrottle::default();
        // The password was set at 0; the failures come after it, at 1..=5.
        for i in 1..=FAILURES_TO_LOCK {
            assert!(!throttle.account_locked("ann", "10.0.0.66", 0, i64::from(i)));
            throttle.failed(Some(("ann", 0)), "10.0.0.66", i64::from(i));
        }
        assert!(throttle.account_locked("ann", "10.0.0.66", 0, 10));
        assert!(
            !throttle.account_locked("ann", "10.0.0.66", 5, 10),
            "a reset password lifts the lock"
        );
        assert!(
            !throttle.account_locked("ann", "10.0.0.5", 0, 10),
            "ann's own address has not failed"
        );
        assert!(!throttle.account_locked("bob", "10.0.0.66", 0, 10));
        assert!(
            !throttle.account_locked("ann", "10.0.0.66", 0, 5 + LOCKOUT_MS),
            "the lock expires"
        );
        throttle.failed(Some(("ann", 0)), "10.0.0.66", 6 + LOCKOUT_MS);
        assert!(
            !throttle.account_locked("ann", "10.0.0.66", 0, 7 + LOCKOUT_MS),
            "a new run starts from one"
        );
    }

    #[test]
    fn an_address_that_fails_too_often_waits_whatever_account_it_names() {
        let throttle = LoginThrottle::default();
        for i in 0..ADDRESS_FAILURES - 1 {
            throttle.failed(Some((&format!("user{i}"), 0)), "10.0.0.66", 100);
        }
        assert_eq!(throttle.address_wait_ms("10.0.0.66", 100), None);
        throttle.failed(None, "10.0.0.66", 100);
        assert_eq!(throttle.address_wait_ms("10.0.0.66", 100), Some(WINDOW_MS));
        assert_eq!(
            throttle.address_wait_ms("10.0.0.66", 100 + WINDOW_MS - 1),
            Some(1)
        );
        assert_eq!(throttle.address_wait_ms("10.0.0.66", 100 + WINDOW_MS), None);
        assert_eq!(throttle.address_wait_ms("10.0.0.5", 100), None);
        throttle.succeeded("user0", "10.0.0.66");
        assert!(throttle.address_wait_ms("10.0.0.66", 101).is_some());
    }
}
