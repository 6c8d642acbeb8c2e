//! Device credentials: the salted hash of each device's MQTT secret (never the secret).

use model::{DeviceId, Timestamp};
use rusqlite::params;

use crate::{Store, StoreError};

impl Store {
    /// Sets or replaces (rotates) the credential of a registered device.
    pub fn set_device_credential(
        &self,
        device_id: &DeviceId,
        secret_hash: &str,
        set_at: Timestamp,
    ) -> Result<(), StoreError> {
        if self.device(device_id)?.is_none() {
            return Err(StoreError::NotFound {
                what: "device",
                id: device_id.to_string(),
            });
        }
        self.conn.execute(
            "INSERT INTO device_credentials (device_id, secret_hash, set_at_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (device_id) DO UPDATE SET secret_hash = excluded.secret_hash,
                 set_at_ms = excluded.set_at_ms",
            params![device_id.as_str(), secret_hash, set_at.millis()],
        )?;
        Ok(())
    }

    /// Revokes a device's credential. Returns whether it had one.
    pub fn remove_device_credential(&self, device_id: &DeviceId) -> Result<bool, StoreError> {
        let removed = self.conn.execute(
            "DELETE FROM device_credentials WHERE device_id = ?1",
            params![device_id.as_str()],
        )?;
        Ok(removed > 0)
    }

    /// Every device's credential hash, for the broker's in-memory view.
    pub fn device_credentials(&self) -> Result<Vec<(DeviceId, String)>, StoreError> {
        let mut statement = self
            .conn
            .prepare_cached("SELECT device_id, secret_hash FROM device_credentials")?;
        let rows = statement.query_map([], |row| {
            Ok((DeviceId::new(row.get::<_, String>(0)?), row.get(1)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DeviceRecord;
    use model::DeviceKind;

    #[test]
    fn set_rotate_revoke() {
        let store = Store::open_in_memory().unwrap();
        let id = DeviceId::new("dev-1");
        assert!(matches!(
            store.set_device_credential(&id, "h1", Timestamp(1)),
            Err(StoreError::NotFound { .. })
        ));
        store
            .upsert_device(&DeviceRecord {
                id: id.clone(),
                kind: DeviceKind::Wearable,
                model: "m".into(),
                placement: None,
                first_seen: None,
                last_seen: None,
            })
            .unwrap();
        store
            .set_device_credential(&id, "h1", Timestamp(1))
            .unwrap();
        store
            .set_device_credential(&id, "h2", Timestamp(2))
            .unwrap();
        assert_eq!(
            store.device_credentials().unwrap(),
            vec![(id.clone(), "h2".into())]
        );
        assert!(store.remove_device_credential(&id).unwrap());
        assert!(!store.remove_device_credential(&id).unwrap());
        assert!(store.device_credentials().unwrap().is_empty());
    }
}
