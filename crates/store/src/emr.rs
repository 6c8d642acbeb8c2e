//! Cursors of the external EMR sync over the durable log (`schema/v9_emr.sql`).

use rusqlite::{OptionalExtension, params};

use crate::{Store, StoreError};

impl Store {
    /// Where the cursor `name` stands: the first log offset not yet delivered; `None` before
    /// its first use.
    pub fn emr_cursor(&self, name: &str) -> Result<Option<u64>, StoreError> {
        let offset: Option<i64> = self
            .conn
            .query_row(
                "SELECT log_offset FROM emr_cursor WHERE name = ?1",
                [name],
                |row| row.get(0),
            )
            .optional()?;
        offset
            .map(|offset| {
                u64::try_from(offset).map_err(|_| StoreError::Corrupt(format!("cursor {offset}")))
            })
            .transpose()
    }

    /// Moves the cursor `name` to `log_offset`. A move lost to a power cut (the store runs
    /// `synchronous = NORMAL`) only resends what the EMR already has, which its conditional
    /// creates recognise.
    pub fn set_emr_cursor(
        &mut self,
        name: &str,
        log_offset: u64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let offset =
            i64::try_from(log_offset).map_err(|_| StoreError::OffsetTooLarge(log_offset))?;
        self.conn.execute(
            "INSERT INTO emr_cursor (name, log_offset, updated_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET log_offset = excluded.log_offset,
                 updated_ms = excluded.updated_ms",
            params![name, offset, now_ms],
        )?;
        Ok(())
    }
}

impl Store {
    /// The newest `meta.lastUpdated` pulled for a patient's resources of one type.
    pub fn emr_pull_watermark(
        &self,
        patient_id: &str,
        resource_type: &str,
    ) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT last_updated_ms FROM emr_pull_watermark
                 WHERE patient_id = ?1 AND resource_type = ?2",
                [patient_id, resource_type],
                |row| row.get(0),
            )
            .optional()?)
    }

    pub fn set_emr_pull_watermark(
        &mut self,
        patient_id: &str,
        resource_type: &str,
        last_updated_ms: i64,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO emr_pull_watermark (patient_id, resource_type, last_updated_ms)
             VALUES (?1, ?2, ?3)
             ON CONFLICT (patient_id, resource_type) DO UPDATE
                 SET last_updated_ms = max(last_updated_ms, excluded.last_updated_ms)",
            params![patient_id, resource_type, last_updated_ms],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::Store;

    #[test]
    fn a_cursor_starts_unset_and_moves() {
        let mut store = Store::open_in_memory().unwrap();
        assert_eq!(store.emr_cursor("push").unwrap(), None);
        store.set_emr_cursor("push", 7, 1).unwrap();
        store.set_emr_cursor("push", 9, 2).unwrap();
        assert_eq!(store.emr_cursor("push").unwrap(), Some(9));
        assert_eq!(store.emr_cursor("other").unwrap(), None);
    }

    #[test]
    fn a_watermark_only_moves_forward() {
        let mut store = Store::open_in_memory().unwrap();
        assert_eq!(store.emr_pull_watermark("p1", "Condition").unwrap(), None);
        store.set_emr_pull_watermark("p1", "Condition", 50).unwrap();
        store.set_emr_pull_watermark("p1", "Condition", 40).unwrap();
        assert_eq!(
            store.emr_pull_watermark("p1", "Condition").unwrap(),
            Some(50)
        );
    }
}
