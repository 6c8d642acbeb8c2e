//! Wards, rooms and beds.

use model::{BedId, RoomId, WardId};
use rusqlite::params;

use crate::{BedRecord, RoomLayout, RoomRecord, Store, StoreError, WardLayout, WardRecord};

impl Store {
    pub fn upsert_ward(&self, ward: &WardRecord) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO wards (id, name) VALUES (?1, ?2)
             ON CONFLICT (id) DO UPDATE SET name = excluded.name",
            params![ward.id.as_str(), ward.name],
        )?;
        Ok(())
    }

    /// The ward must exist.
    pub fn upsert_room(&self, room: &RoomRecord) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO rooms (id, ward_id, name, x, z, width, depth)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (id) DO UPDATE SET ward_id = excluded.ward_id, name = excluded.name,
                 x = excluded.x, z = excluded.z, width = excluded.width, depth = excluded.depth",
            params![
                room.id.as_str(),
                room.ward_id.as_str(),
                room.name,
                room.x,
                room.z,
                room.width,
                room.depth
            ],
        )?;
        Ok(())
    }

    /// The room must exist.
    pub fn upsert_bed(&self, bed: &BedRecord) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO beds (id, room_id, label, x, z, rotation) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (id) DO UPDATE SET room_id = excluded.room_id, label = excluded.label,
                 x = excluded.x, z = excluded.z, rotation = excluded.rotation",
            params![
                bed.id.as_str(),
                bed.room_id.as_str(),
                bed.label,
                bed.x,
                bed.z,
                bed.rotation
            ],
        )?;
        Ok(())
    }

    /// Every ward with its rooms and beds, each level ordered by id.
    pub fn layout(&self) -> Result<Vec<WardLayout>, StoreError> {
        let mut wards: Vec<WardLayout> = self
            .conn
            .prepare_cached("SELECT id, name FROM wards ORDER BY id")?
            .query_map([], |row| {
                Ok(WardLayout {
                    ward: WardRecord {
                        id: WardId::new(row.get::<_, String>(0)?),
                        name: row.get(1)?,
                    },
                    rooms: Vec::new(),
                })
            })?
            .collect::<Result<_, _>>()?;
        let rooms: Vec<RoomRecord> = self
            .conn
            .prepare_cached(
                "SELECT id, ward_id, name, x, z, width, depth FROM rooms ORDER BY ward_id, id",
            )?
            .query_map([], |row| {
                Ok(RoomRecord {
                    id: RoomId::new(row.get::<_, String>(0)?),
                    ward_id: WardId::new(row.get::<_, String>(1)?),
                    name: row.get(2)?,
                    x: row.get(3)?,
                    z: row.get(4)?,
                    width: row.get(5)?,
                    depth: row.get(6)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        let beds: Vec<BedRecord> = self
            .conn
            .prepare_cached(
                "SELECT id, room_id, label, x, z, rotation FROM beds ORDER BY room_id, id",
            )?
            .query_map([], |row| {
                Ok(BedRecord {
                    id: BedId::new(row.get::<_, String>(0)?),
                    room_id: RoomId::new(row.get::<_, String>(1)?),
                    label: row.get(2)?,
                    x: row.get(3)?,
                    z: row.get(4)?,
                    rotation: row.get(5)?,
                })
            })?
            .collect::<Result<_, _>>()?;

        // Foreign keys guarantee every room has its ward and every bed its room.
        for room in rooms {
            if let Some(ward) = wards.iter_mut().find(|w| w.ward.id == room.ward_id) {
                ward.rooms.push(RoomLayout {
                    room,
                    beds: Vec::new(),
                });
            }
        }
        for bed in beds {
            let room = wards
                .iter_mut()
                .flat_map(|w| w.rooms.iter_mut())
                .find(|r| r.room.id == bed.room_id);
            if let Some(room) = room {
                room.beds.push(bed);
            }
        }
        Ok(wards)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_needs_its_ward() {
        let store = Store::open_in_memory().unwrap();
        let room = RoomRecord {
            id: "r1".into(),
            ward_id: "nowhere".into(),
            name: "Room 1".into(),
            x: 0.0,
            z: 0.0,
            width: 8.0,
            depth: 6.0,
        };
        assert!(store.upsert_room(&room).is_err());
    }
}
