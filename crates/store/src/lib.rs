//! The embedded SQL store (SQLite): the ward layout, patients and their conditions, bed
//! occupancy, devices and their associations over time, numeric vitals and compressed waveform
//! chunks, for the REST API, the FHIR API and analysts' SQL.
//!
//! For device data the store is a projection, never the source of truth: the durable log is.
//! `insert_observations` applies a batch of log records and advances the checkpoint in one
//! transaction, so after a crash replay resumes exactly at `checkpoint()`, and replaying a batch
//! twice inserts nothing twice. That is also why the store runs with `synchronous = NORMAL`: a
//! lost last transaction is replayed from the log.
//!
//! The API is synchronous; callers on an async runtime use a dedicated thread or
//! `spawn_blocking`. The schema is `src/schema/v1.sql`, written to be read by analysts.

mod alarms;
pub mod analytics;
mod credentials;
mod device_identifiers;
mod device_observations;
mod devices;
mod emr;
mod error;
pub mod fhir_record;
mod layout;
mod news2;
mod observations;
mod oxygen_targets;
mod patients;
mod records;
mod rounds;
mod security;
mod tokens;
pub mod waveform_codec;

use std::path::Path;

use rusqlite::Connection;

pub use alarms::{AlarmHistoryEntry, AlarmQuery};
pub use device_identifiers::{
    DeviceDetails, DeviceIdentifier, DeviceType, EUI64_SYSTEM, identifier_key,
};
pub use device_observations::{
    DeviceObservationFilter, DeviceObservationRow, DeviceSortKey, DeviceTest, PointTest,
};
pub use error::StoreError;
pub use news2::StoredNews2;
pub use oxygen_targets::OxygenTargetRecord;
pub use records::{
    AssociationRecord, BedRecord, ConditionRecord, DeadLetterRecord, DeviceRecord, HistoryPoint,
    LatestValue, PatientRecord, RoomLayout, RoomRecord, Stay, StoredObservation, StoredWaveform,
    Subject, WardLayout, WardRecord,
};
pub use rounds::{LastReview, RoundNote};
pub use security::{AuditEntry, AuditRecord, NewUser, UserRecord};
pub use tokens::{ApiTokenKind, ApiTokenRecord, SessionRecord};

/// Schema migrations, in order: the database's `PRAGMA user_version` is how many are applied.
const MIGRATIONS: &[&str] = &[
    include_str!("schema/v1.sql"),
    include_str!("schema/v2_device_identifiers.sql"),
    include_str!("schema/v3_device_credentials.sql"),
    include_str!("schema/v4_fhir_record.sql"),
    include_str!("schema/v5_alarms.sql"),
    include_str!("schema/v6_news2_scores.sql"),
    include_str!("schema/v7_oxygen_targets.sql"),
    include_str!("schema/v8_rounds.sql"),
    include_str!("schema/v9_emr.sql"),
    include_str!("schema/v10_security.sql"),
    include_str!("schema/v11_record_views.sql"),
    include_str!("schema/v12_reference_ranges.sql"),
    include_str!("schema/v13_log_positions.sql"),
    include_str!("schema/v14_api_tokens.sql"),
    include_str!("schema/v15_oidc.sql"),
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// A connection to the store. Not `Sync`: one thread owns it.
pub struct Store {
    conn: Connection,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        Store::init(Connection::open(path)?)
    }

    /// A private in-memory store, for tests and tools.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        Store::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Store, StoreError> {
        // WAL lets readers (the API) run while the projection writes. In memory it stays "memory".
        let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // Write transactions take the write lock when they begin, so they wait (busy_timeout)
        // for another process's writer, such as `metaward user` or `metaward token` beside a
        // running server. A deferred one that read first would fail at once with "database is
        // locked" when its snapshot went stale, and two could read the same audit chain head.
        conn.set_transaction_behavior(rusqlite::TransactionBehavior::Immediate);
        // The FHIR record's writes cycle through more than rusqlite's default 16 cached
        // statements; re-preparing them cost a fifth of an import.
        conn.set_prepared_statement_cache_capacity(64);
        migrate(&mut conn)?;
        Ok(Store { conn })
    }

    /// The schema version of the open database (equal to `SCHEMA_VERSION` once open).
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))?)
    }

    /// The underlying connection, for read-only SQL (analytics) and for tests.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        // Each step and its version bump commit together: a crash leaves the previous version.
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

pub(crate) fn offset_to_sql(offset: u64) -> Result<i64, StoreError> {
    i64::try_from(offset).map_err(|_| StoreError::OffsetTooLarge(offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_store_is_at_the_current_schema_version() {
        let store = Store::open_in_memory().unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(store.checkpoint().unwrap(), 0);
    }

    #[test]
    fn a_database_from_a_newer_build_is_refused() {
        let dir = std::env::temp_dir().join(format!("store-schema-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("newer.sqlite");
        let _ = std::fs::remove_file(&path);
        {
            let store = Store::open(&path).unwrap();
            store
                .connection()
                .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
                .unwrap();
        }
        assert!(matches!(
            Store::open(&path),
            Err(StoreError::SchemaTooNew { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
