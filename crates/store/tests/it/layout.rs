use store::{BedRecord, Store, WardRecord};

use crate::store_with_layout;

#[test]
fn the_layout_round_trips_nested_and_ordered() {
    let store = store_with_layout();
    let layout = store.layout().unwrap();
    assert_eq!(layout.len(), 1);
    let ward = &layout[0];
    assert_eq!(ward.ward.name, "Ward 1");
    let rooms: Vec<&str> = ward.rooms.iter().map(|r| r.room.id.as_str()).collect();
    assert_eq!(rooms, ["r1", "r2"]);
    let beds: Vec<&str> = ward.rooms[0].beds.iter().map(|b| b.id.as_str()).collect();
    assert_eq!(beds, ["b1", "b2"]);
    assert_eq!(ward.rooms[1].beds[0].x, 10.0);
    assert_eq!(ward.rooms[1].room.x, 8.0);
}

#[test]
fn upserting_updates_in_place() {
    let store = store_with_layout();
    store
        .upsert_ward(&WardRecord {
            id: "w1".into(),
            name: "Respiratory".into(),
        })
        .unwrap();
    store
        .upsert_bed(&BedRecord {
            id: "b1".into(),
            room_id: "r2".into(),
            label: "Window bed".into(),
            x: 12.0,
            z: 3.0,
            rotation: 90.0,
        })
        .unwrap();
    let layout = store.layout().unwrap();
    assert_eq!(layout[0].ward.name, "Respiratory");
    let r2_beds: Vec<&str> = layout[0].rooms[1]
        .beds
        .iter()
        .map(|b| b.label.as_str())
        .collect();
    assert_eq!(r2_beds, ["Window bed", "Bed b3"]);
    assert_eq!(layout[0].rooms[0].beds.len(), 1);
}

#[test]
fn an_empty_store_has_an_empty_layout() {
    assert!(
        Store::open_in_memory()
            .unwrap()
            .layout()
            .unwrap()
            .is_empty()
    );
}
