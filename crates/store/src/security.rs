//! Users (role, ward scope, password hash, lockout state) and the audit trail, whose entries
//! are chained by SHA-256 so that any change to a stored row is found by `verify_audit`.
//!
//! The store keeps what it is given: password hashing and the decision who may do what are the
//! server's (`server::auth`). It never sees a password, only its PHC hash string.

use rusqlite::{OptionalExtension, params};
use sha2::{Digest, Sha256};

use crate::{Store, StoreError};

/// A user as stored (never the password).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRecord {
    pub name: String,
    /// `admin`, `physician`, `nurse` or `observer`.
    pub role: String,
    /// `None`: every ward; otherwise the wards this user may see.
    pub wards: Option<Vec<String>>,
    pub password_hash: String,
    pub disabled: bool,
    pub failed_logins: u32,
    pub locked_until_ms: Option<i64>,
    pub created_at_ms: i64,
    pub password_set_at_ms: i64,
    /// The OpenID Connect subject linked to this user (single sign-on), if any.
    pub oidc_subject: Option<String>,
    /// Whether the role and wards follow the identity provider's groups.
    pub oidc_managed: bool,
}

pub struct NewUser<'a> {
    pub name: &'a str,
    pub role: &'a str,
    pub wards: Option<&'a [String]>,
    pub password_hash: &'a str,
    pub at_ms: i64,
}

/// One audit entry to append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    pub time_ms: i64,
    pub actor: String,
    pub role: Option<String>,
    pub source: String,
    pub action: String,
    pub what: String,
    pub patient_id: Option<String>,
    pub outcome: String,
}

/// An audit entry as stored, with its place in the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    pub seq: i64,
    pub entry: AuditEntry,
    pub prev_hash: String,
    pub hash: String,
}

/// The hash before the first entry.
pub const AUDIT_GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// SHA-256 over the previous hash and the entry's fields (as a JSON array: unambiguous, no
/// field can run into the next), in lowercase hex.
pub fn audit_hash(seq: i64, prev_hash: &str, entry: &AuditEntry) -> String {
    let fields = serde_json::json!([
        seq,
        entry.time_ms,
        entry.actor,
        entry.role,
        entry.source,
        entry.action,
        entry.what,
        entry.patient_id,
        entry.outcome
    ]);
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(b"\n");
    hasher.update(fields.to_string().as_bytes());
    hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

impl Store {
    /// Creates a user. Fails (`StoreError::Conflict`) if the name is taken.
    pub fn create_user(&mut self, user: &NewUser) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        let inserted = tx.execute(
            "INSERT INTO users (name, role, all_wards, password_hash, created_at_ms, password_set_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5) ON CONFLICT (name) DO NOTHING",
            params![
                user.name,
                user.role,
                user.wards.is_none(),
                user.password_hash,
                user.at_ms
            ],
        )?;
        if inserted == 0 {
            return Err(StoreError::Conflict(format!(
                "user `{}` already exists",
                user.name
            )));
        }
        for ward in user.wards.unwrap_or_default() {
            tx.execute(
                "INSERT OR IGNORE INTO user_wards (user_name, ward_id) VALUES (?1, ?2)",
                params![user.name, ward],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        let row = self
            .conn
            .query_row(
                "SELECT name, role, all_wards, password_hash, disabled, failed_logins,
                        locked_until_ms, created_at_ms, password_set_at_ms, oidc_subject,
                        oidc_managed
                 FROM users WHERE name = ?1",
                params![name],
                |row| {
                    Ok(UserRecord {
                        name: row.get(0)?,
                        role: row.get(1)?,
                        wards: (!row.get::<_, bool>(2)?).then(Vec::new),
                        password_hash: row.get(3)?,
                        disabled: row.get(4)?,
                        failed_logins: row.get(5)?,
                        locked_until_ms: row.get(6)?,
                        created_at_ms: row.get(7)?,
                        password_set_at_ms: row.get(8)?,
                        oidc_subject: row.get(9)?,
                        oidc_managed: row.get(10)?,
                    })
                },
            )
            .optional()?;
        let Some(mut user) = row else {
            return Ok(None);
        };
        if let Some(wards) = user.wards.as_mut() {
            let mut statement = self.conn.prepare_cached(
                "SELECT ward_id FROM user_wards WHERE user_name = ?1 ORDER BY ward_id",
            )?;
            *wards = statement
                .query_map(params![name], |row| row.get(0))?
                .collect::<Result<_, _>>()?;
        }
        Ok(Some(user))
    }

    pub fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let names: Vec<String> = self
            .conn
            .prepare_cached("SELECT name FROM users ORDER BY name")?
            .query_map([], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        let mut users = Vec::with_capacity(names.len());
        for name in names {
            users.extend(self.user(&name)?);
        }
        Ok(users)
    }

    pub fn user_count(&self) -> Result<u64, StoreError> {
        let count: i64 = self
            .conn
            .query_row("SELECT count(*) FROM users", [], |row| row.get(0))?;
        Ok(count as u64)
    }

    fn require_user(&self, changed: usize, name: &str) -> Result<(), StoreError> {
        if changed == 0 {
            return Err(StoreError::NotFound {
                what: "user",
                id: name.to_owned(),
            });
        }
        Ok(())
    }

    /// The user linked to an OpenID Connect subject.
    pub fn user_by_oidc_subject(&self, subject: &str) -> Result<Option<UserRecord>, StoreError> {
        let name: Option<String> = self
            .conn
            .query_row(
                "SELECT name FROM users WHERE oidc_subject = ?1",
                params![subject],
                |row| row.get(0),
            )
            .optional()?;
        match name {
            Some(name) => self.user(&name),
            None => Ok(None),
        }
    }

    /// Links a user to an OpenID Connect subject (`None`: unlinks). Fails
    /// (`StoreError::Conflict`) if another user has that subject.
    pub fn set_user_oidc_subject(
        &self,
        name: &str,
        subject: Option<&str>,
    ) -> Result<(), StoreError> {
        if let Some(subject) = subject
            && let Some(other) = self.user_by_oidc_subject(subject)?
            && other.name != name
        {
            return Err(StoreError::Conflict(format!(
                "the identity is already linked to user `{}`",
                other.name
            )));
        }
        let changed = self.conn.execute(
            "UPDATE users SET oidc_subject = ?2 WHERE name = ?1",
            params![name, subject],
        )?;
        self.require_user(changed, name)
    }

    /// Sets a user's role and wards (`None`: every ward), and whether the identity provider's
    /// groups manage them.
    pub fn set_user_access(
        &mut self,
        name: &str,
        role: &str,
        wards: Option<&[String]>,
        oidc_managed: bool,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        let changed = tx.execute(
            "UPDATE users SET role = ?2, all_wards = ?3, oidc_managed = ?4 WHERE name = ?1",
            params![name, role, wards.is_none(), oidc_managed],
        )?;
        if changed == 0 {
            return Err(StoreError::NotFound {
                what: "user",
                id: name.to_owned(),
            });
        }
        tx.execute("DELETE FROM user_wards WHERE user_name = ?1", params![name])?;
        for ward in wards.unwrap_or_default() {
            tx.execute(
                "INSERT OR IGNORE INTO user_wards (user_name, ward_id) VALUES (?1, ?2)",
                params![name, ward],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Enables or disables a user.
    pub fn set_user_disabled(&self, name: &str, disabled: bool) -> Result<(), StoreError> {
        let changed = self.conn.execute(
            "UPDATE users SET disabled = ?2 WHERE name = ?1",
            params![name, disabled],
        )?;
        self.require_user(changed, name)
    }

    /// Sets a new password hash and clears any lockout.
    pub fn set_user_password(&self, name: &str, hash: &str, at_ms: i64) -> Result<(), StoreError> {
        let changed = self.conn.execute(
            "UPDATE users SET password_hash = ?2, password_set_at_ms = ?3, failed_logins = 0,
                 locked_until_ms = NULL WHERE name = ?1",
            params![name, hash, at_ms],
        )?;
        self.require_user(changed, name)
    }

    /// Records a failed login; locks the user until `lock_until_ms` once `failures_to_lock`
    /// failures in a row are reached. Returns the number of failures in a row.
    pub fn record_failed_login(
        &self,
        name: &str,
        failures_to_lock: u32,
        lock_until_ms: i64,
    ) -> Result<u32, StoreError> {
        self.conn.execute(
            "UPDATE users SET failed_logins = failed_logins + 1,
                 locked_until_ms = CASE WHEN failed_logins + 1 >= ?2 THEN ?3 ELSE locked_until_ms END
             WHERE name = ?1",
            params![name, failures_to_lock, lock_until_ms],
        )?;
        Ok(self
            .conn
            .query_row(
                "SELECT failed_logins FROM users WHERE name = ?1",
                params![name],
                |row| row.get(0),
            )
            .optional()?
            .unwrap_or(0))
    }

    /// A successful login ends the run of failures (and an expired lock).
    pub fn record_successful_login(&self, name: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE users SET failed_logins = 0, locked_until_ms = NULL WHERE name = ?1",
            params![name],
        )?;
        Ok(())
    }

    /// Appends entries to the audit trail, each chained to the one before, in one transaction.
    pub fn append_audit(&mut self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        let (mut seq, mut prev_hash): (i64, String) = tx
            .query_row(
                "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?
            .unwrap_or((0, AUDIT_GENESIS.to_owned()));
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO audit_log (seq, time_ms, actor, role, source, action, what,
                     patient_id, outcome, prev_hash, hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            for entry in entries {
                seq += 1;
                let hash = audit_hash(seq, &prev_hash, entry);
                insert.execute(params![
                    seq,
                    entry.time_ms,
                    entry.actor,
                    entry.role,
                    entry.source,
                    entry.action,
                    entry.what,
                    entry.patient_id,
                    entry.outcome,
                    prev_hash,
                    hash
                ])?;
                prev_hash = hash;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Audit entries after `after_seq`, oldest first, at most `limit`.
    pub fn audit_entries(
        &self,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT seq, time_ms, actor, role, source, action, what, patient_id, outcome,
                    prev_hash, hash
             FROM audit_log WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let rows = statement.query_map(params![after_seq, limit as i64], |row| {
            Ok(AuditRecord {
                seq: row.get(0)?,
                entry: AuditEntry {
                    time_ms: row.get(1)?,
                    actor: row.get(2)?,
                    role: row.get(3)?,
                    source: row.get(4)?,
                    action: row.get(5)?,
                    what: row.get(6)?,
                    patient_id: row.get(7)?,
                    outcome: row.get(8)?,
                },
                prev_hash: row.get(9)?,
                hash: row.get(10)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Checks the whole chain. `Ok(n)`: `n` entries, all intact; `Err(seq)`: the first entry
    /// whose hash, link to the previous entry or place in the sequence does not hold.
    pub fn verify_audit(&self) -> Result<Result<u64, i64>, StoreError> {
        let mut prev_hash = AUDIT_GENESIS.to_owned();
        let mut expected_seq = 1;
        let mut after = 0;
        loop {
            let batch = self.audit_entries(after, 1000)?;
            if batch.is_empty() {
                return Ok(Ok((expected_seq - 1) as u64));
            }
            for record in batch {
                let intact = record.seq == expected_seq
                    && record.prev_hash == prev_hash
                    && audit_hash(record.seq, &prev_hash, &record.entry) == record.hash;
                if !intact {
                    return Ok(Err(record.seq));
                }
                prev_hash = record.hash;
                expected_seq += 1;
                after = record.seq;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(actor: &str, patient: Option<&str>) -> AuditEntry {
        AuditEntry {
            time_ms: 1,
            actor: actor.into(),
            role: Some("nurse".into()),
            source: "127.0.0.1:5000".into(),
            action: "read".into(),
            what: "GET /api/v1/patients/{patient_id}".into(),
            patient_id: patient.map(Into::into),
            outcome: "success".into(),
        }
    }

    #[test]
    fn users_roles_scope_and_lockout() {
        let mut store = Store::open_in_memory().unwrap();
        let wards = vec!["w1".to_owned(), "w2".to_owned()];
        store
            .create_user(&NewUser {
                name: "ann",
                role: "nurse",
                wards: Some(&wards),
                password_hash: "h",
                at_ms: 5,
            })
            .unwrap();
        assert!(matches!(
            store.create_user(&NewUser {
                name: "ann",
                role: "admin",
                wards: None,
                password_hash: "h",
                at_ms: 5,
            }),
            Err(StoreError::Conflict(_))
        ));
        let ann = store.user("ann").unwrap().unwrap();
        assert_eq!(ann.wards, Some(wards));
        assert_eq!(ann.role, "nurse");
        assert_eq!(store.record_failed_login("ann", 3, 100).unwrap(), 1);
        assert_eq!(store.record_failed_login("ann", 3, 100).unwrap(), 2);
        assert_eq!(store.user("ann").unwrap().unwrap().locked_until_ms, None);
        assert_eq!(store.record_failed_login("ann", 3, 100).unwrap(), 3);
        assert_eq!(
            store.user("ann").unwrap().unwrap().locked_until_ms,
            Some(100)
        );
        store.set_user_password("ann", "h2", 7).unwrap();
        let ann = store.user("ann").unwrap().unwrap();
        assert_eq!((ann.failed_logins, ann.locked_until_ms), (0, None));
        store.set_user_disabled("ann", true).unwrap();
        assert!(store.user("ann").unwrap().unwrap().disabled);
        assert!(store.set_user_disabled("bob", true).is_err());
        assert!(
            store
                .connection()
                .execute("INSERT INTO users (name, role, all_wards, password_hash, created_at_ms, password_set_at_ms) VALUES ('x', 'root', 1, 'h', 1, 1)", [])
                .is_err(),
            "only the four roles"
        );
    }

    #[test]
    fn an_oidc_subject_links_one_user() {
        let mut store = Store::open_in_memory().unwrap();
        for name in ["ann", "bob"] {
            store
                .create_user(&NewUser {
                    name,
                    role: "nurse",
                    wards: None,
                    password_hash: "h",
                    at_ms: 1,
                })
                .unwrap();
        }
        assert_eq!(store.user("ann").unwrap().unwrap().oidc_subject, None);
        store.set_user_oidc_subject("ann", Some("sub-1")).unwrap();
        assert_eq!(
            store.user_by_oidc_subject("sub-1").unwrap().unwrap().name,
            "ann"
        );
        assert!(matches!(
            store.set_user_oidc_subject("bob", Some("sub-1")),
            Err(StoreError::Conflict(_))
        ));
        assert!(
            store
                .set_user_oidc_subject("nobody", Some("sub-2"))
                .is_err()
        );
        store.set_user_oidc_subject("ann", None).unwrap();
        assert!(store.user_by_oidc_subject("sub-1").unwrap().is_none());
        store.set_user_oidc_subject("bob", Some("sub-1")).unwrap();
        assert_eq!(
            store.user("bob").unwrap().unwrap().oidc_subject.as_deref(),
            Some("sub-1")
        );
        // The provider's groups take over bob's role and wards.
        let wards = vec!["w2".to_owned()];
        store
            .set_user_access("bob", "physician", Some(&wards), true)
            .unwrap();
        let bob = store.user("bob").unwrap().unwrap();
        assert_eq!(
            (bob.role.as_str(), bob.wards, bob.oidc_managed),
            ("physician", Some(wards), true)
        );
        store
            .set_user_access("bob", "observer", None, false)
            .unwrap();
        let bob = store.user("bob").unwrap().unwrap();
        assert_eq!(
            (bob.role.as_str(), bob.wards, bob.oidc_managed),
            ("observer", None, false)
        );
        assert!(store.set_user_access("bob", "root", None, false).is_err());
        assert!(
            store
                .set_user_access("nobody", "nurse", None, false)
                .is_err()
        );
    }

    #[test]
    fn the_audit_chain_verifies_and_a_changed_row_is_found() {
        let mut store = Store::open_in_memory().unwrap();
        assert_eq!(store.verify_audit().unwrap(), Ok(0));
        store
            .append_audit(&[entry("ann", Some("p1")), entry("bob", None)])
            .unwrap();
        store.append_audit(&[entry("cy", Some("p2"))]).unwrap();
        assert_eq!(store.verify_audit().unwrap(), Ok(3));
        // The triggers refuse changes through SQL ...
        assert!(
            store
                .connection()
                .execute("UPDATE audit_log SET actor = 'eve' WHERE seq = 2", [])
                .is_err()
        );
        assert!(
            store
                .connection()
                .execute("DELETE FROM audit_log WHERE seq = 2", [])
                .is_err()
        );
        // ... and someone who drops them is caught by the chain.
        store
            .connection()
            .execute_batch(
                "DROP TRIGGER audit_log_no_update;
                 UPDATE audit_log SET patient_id = 'p9' WHERE seq = 2;",
            )
            .unwrap();
        assert_eq!(store.verify_audit().unwrap(), Err(2));
    }
}
