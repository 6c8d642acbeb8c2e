//! Devices and their associations with beds, patients and rooms over time.

use model::{DeviceId, Timestamp};
use rusqlite::{OptionalExtension, params};

use model::{AssociationTarget, DeviceKind};

use crate::{AssociationRecord, DeviceRecord, Store, StoreError};

impl Store {
    /// Inserts or updates a device's kind, model and placement. Seen times only ever widen:
    /// the earliest first-seen and the latest last-seen of the stored and given records are kept.
    pub fn upsert_device(&self, device: &DeviceRecord) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO devices (id, kind, model, placement, first_seen_ms, last_seen_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, model = excluded.model,
                 placement = excluded.placement,
                 first_seen_ms = coalesce(min(first_seen_ms, excluded.first_seen_ms),
                                          first_seen_ms, excluded.first_seen_ms),
                 last_seen_ms = coalesce(max(last_seen_ms, excluded.last_seen_ms),
                                         last_seen_ms, excluded.last_seen_ms)",
            params![
                device.id.as_str(),
                device.kind.key(),
                device.model,
                device.placement.map(|region| region.to_string()),
                device.first_seen.map(Timestamp::millis),
                device.last_seen.map(Timestamp::millis),
            ],
        )?;
        Ok(())
    }

    pub fn device(&self, id: &DeviceId) -> Result<Option<DeviceRecord>, StoreError> {
        let row = self
            .conn
            .prepare_cached(
                "SELECT id, kind, model, placement, first_seen_ms, last_seen_ms
                 FROM devices WHERE id = ?1",
            )?
            .query_row([id.as_str()], device_row)
            .optional()?;
        row.map(device_from_row).transpose()
    }

    /// Every device, ordered by id.
    pub fn devices(&self) -> Result<Vec<DeviceRecord>, StoreError> {
        let rows: Vec<DeviceRow> = self
            .conn
            .prepare_cached(
                "SELECT id, kind, model, placement, first_seen_ms, last_seen_ms
                 FROM devices ORDER BY id",
            )?
            .query_map([], device_row)?
            .collect::<Result<_, _>>()?;
        rows.into_iter().map(device_from_row).collect()
    }

    /// Records that data from the device was received at `seen_at`.
    pub fn touch_device(&self, id: &DeviceId, seen_at: Timestamp) -> Result<(), StoreError> {
        let changed = self.conn.execute(
            "UPDATE devices SET
                 first_seen_ms = min(coalesce(first_seen_ms, ?2), ?2),
                 last_seen_ms = max(coalesce(last_seen_ms, ?2), ?2)
             WHERE id = ?1",
            params![id.as_str(), seen_at.millis()],
        )?;
        if changed == 0 {
            return Err(not_found(id));
        }
        Ok(())
    }

    /// Associates the device with `target` from `from`, ending its open association (if any) at
    /// `from`. Returns the new association's id. The device must be known.
    pub fn associate(
        &mut self,
        device: &DeviceId,
        target: &AssociationTarget,
        from: Timestamp,
    ) -> Result<i64, StoreError> {
        let tx = self.conn.transaction()?;
        let known: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM devices WHERE id = ?1)",
            [device.as_str()],
            |row| row.get(0),
        )?;
        if !known {
            return Err(not_found(device));
        }
        end_open_association(&tx, device, from)?;
        tx.execute(
            "INSERT INTO associations (device_id, target_kind, target_id, from_ms)
             VALUES (?1, ?2, ?3, ?4)",
            params![device.as_str(), target.kind(), target.id(), from.millis()],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(id)
    }

    /// Ends the device's open association at `at`; returns whether it had one.
    pub fn end_association(
        &mut self,
        device: &DeviceId,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let tx = self.conn.transaction()?;
        let ended = end_open_association(&tx, device, at)?;
        tx.commit()?;
        Ok(ended)
    }

    /// Every association the device has had, oldest first.
    pub fn associations_of(&self, device: &DeviceId) -> Result<Vec<AssociationRecord>, StoreError> {
        let rows: Vec<AssociationRow> = self
            .conn
            .prepare_cached(
                "SELECT id, device_id, target_kind, target_id, from_ms, to_ms FROM associations
                 WHERE device_id = ?1 ORDER BY from_ms, id",
            )?
            .query_map([device.as_str()], association_row)?
            .collect::<Result<_, _>>()?;
        rows.into_iter().map(association_from_row).collect()
    }

    /// Every association still open, ordered by device.
    pub fn open_associations(&self) -> Result<Vec<AssociationRecord>, StoreError> {
        let rows: Vec<AssociationRow> = self
            .conn
            .prepare_cached(
                "SELECT id, device_id, target_kind, target_id, from_ms, to_ms FROM associations
                 WHERE to_ms IS NULL ORDER BY device_id",
            )?
            .query_map([], association_row)?
            .collect::<Result<_, _>>()?;
        rows.into_iter().map(association_from_row).collect()
    }
}

fn not_found(device: &DeviceId) -> StoreError {
    StoreError::NotFound {
        what: "device",
        id: device.to_string(),
    }
}

fn end_open_association(
    tx: &rusqlite::Transaction<'_>,
    device: &DeviceId,
    at: Timestamp,
) -> Result<bool, StoreError> {
    let open: Option<(i64, i64)> = tx
        .query_row(
            "SELECT id, from_ms FROM associations WHERE device_id = ?1 AND to_ms IS NULL",
            [device.as_str()],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    let Some((id, from_ms)) = open else {
        return Ok(false);
    };
    if at.millis() < from_ms {
        return Err(StoreError::BeforeOpenRange {
            what: "association end",
            at: at.millis(),
            from: from_ms,
        });
    }
    tx.execute(
        "UPDATE associations SET to_ms = ?2 WHERE id = ?1",
        params![id, at.millis()],
    )?;
    Ok(true)
}

/// Raw columns; converted outside rusqlite's closure so bad values become `StoreError::Corrupt`.
type DeviceRow = (
    String,
    String,
    String,
    Option<String>,
    Option<i64>,
    Option<i64>,
);

fn device_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<DeviceRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
    ))
}

fn device_from_row(
    (id, kind, model, placement, first_seen, last_seen): DeviceRow,
) -> Result<DeviceRecord, StoreError> {
    let kind = DeviceKind::from_key(&kind)
        .ok_or_else(|| StoreError::Corrupt(format!("device kind `{kind}`")))?;
    let placement = placement
        .map(|key| {
            key.parse()
                .map_err(|_| StoreError::Corrupt(format!("device placement `{key}`")))
        })
        .transpose()?;
    Ok(DeviceRecord {
        id: DeviceId::new(id),
        kind,
        model,
        placement,
        first_seen: first_seen.map(Timestamp::from_millis),
        last_seen: last_seen.map(Timestamp::from_millis),
    })
}

type AssociationRow = (i64, String, String, String, i64, Option<i64>);

fn association_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<AssociationRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
    ))
}

fn association_from_row(
    (id, device_id, target_kind, target_id, from_ms, to_ms): AssociationRow,
) -> Result<AssociationRecord, StoreError> {
    let target = AssociationTarget::from_parts(&target_kind, target_id)
        .ok_or_else(|| StoreError::Corrupt(format!("association target kind `{target_kind}`")))?;
    Ok(AssociationRecord {
        id,
        device_id: DeviceId::new(device_id),
        target,
        from: Timestamp::from_millis(from_ms),
        to: to_ms.map(Timestamp::from_millis),
    })
}
