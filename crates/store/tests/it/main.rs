//! Integration tests of the store through its public API, on a fresh in-memory database each.
//! (One binary with modules: see STYLE.md.)

mod alarms;
mod devices;
mod fhir_record;
mod layout;
mod observations;
mod patients;

use model::Timestamp;
use store::{BedRecord, RoomRecord, Store, WardRecord};

fn t(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

/// A store with ward w1, rooms r1 (beds b1, b2) and r2 (bed b3).
fn store_with_layout() -> Store {
    let store = Store::open_in_memory().unwrap();
    store
        .upsert_ward(&WardRecord {
            id: "w1".into(),
            name: "Ward 1".into(),
        })
        .unwrap();
    for (id, x) in [("r1", 0.0), ("r2", 8.0)] {
        store
            .upsert_room(&RoomRecord {
                id: id.into(),
                ward_id: "w1".into(),
                name: format!("Room {id}"),
                x,
                z: 0.0,
                width: 8.0,
                depth: 6.0,
            })
            .unwrap();
    }
    for (id, room, x) in [("b1", "r1", 2.0), ("b2", "r1", 5.0), ("b3", "r2", 10.0)] {
        store
            .upsert_bed(&BedRecord {
                id: id.into(),
                room_id: room.into(),
                label: format!("Bed {id}"),
                x,
                z: 1.5,
                rotation: 0.0,
            })
            .unwrap();
    }
    store
}
