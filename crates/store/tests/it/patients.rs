use model::{BedId, PatientId};
use store::{ConditionRecord, PatientRecord, Store, StoreError};

use crate::{store_with_layout, t};

fn patient(id: &str) -> PatientRecord {
    PatientRecord {
        id: id.into(),
        name: format!("Patient {id}"),
        birth_date: Some("1958-03-14".into()),
        sex: "female".into(),
        conditions: vec![
            ConditionRecord {
                system: "http://snomed.info/sct".into(),
                code: "13645005".into(),
                display: "Chronic obstructive lung disease".into(),
                body_site: None,
            },
            ConditionRecord {
                system: "http://snomed.info/sct".into(),
                code: "71620000".into(),
                display: "Fracture of femur".into(),
                body_site: Some("thigh_left".into()),
            },
        ],
    }
}

fn with_patients() -> Store {
    let mut store = store_with_layout();
    for id in ["p1", "p2", "p3"] {
        store.upsert_patient(&patient(id)).unwrap();
    }
    store
}

#[test]
fn patients_round_trip_with_conditions_in_order() {
    let mut store = Store::open_in_memory().unwrap();
    let p1 = patient("p1");
    store.upsert_patient(&p1).unwrap();
    assert_eq!(store.patient(&"p1".into()).unwrap(), Some(p1.clone()));
    assert_eq!(store.patient(&"nobody".into()).unwrap(), None);

    // The record replaces the conditions as a whole.
    let mut updated = p1;
    updated.conditions.truncate(1);
    updated.birth_date = None;
    store.upsert_patient(&updated).unwrap();
    store.upsert_patient(&patient("p0")).unwrap();
    let all = store.patients().unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].id.as_str(), "p0");
    assert_eq!(all[1], updated);
}

#[test]
fn a_malformed_birth_date_is_refused() {
    let mut store = Store::open_in_memory().unwrap();
    let mut p = patient("p1");
    p.birth_date = Some("14/03/1958".into());
    assert!(store.upsert_patient(&p).is_err());
}

#[test]
fn occupancy_follows_admission_transfer_and_discharge() {
    let mut store = with_patients();
    let (p1, p2): (PatientId, PatientId) = ("p1".into(), "p2".into());
    let (b1, b2): (BedId, BedId) = ("b1".into(), "b2".into());

    store.admit(&p1, &b1, t(1_000)).unwrap();
    // The bed is taken.
    assert!(matches!(
        store.admit(&p2, &b1, t(1_500)),
        Err(StoreError::BedOccupied { .. })
    ));
    store.admit(&p2, &b2, t(1_500)).unwrap();
    // p2 leaves b2, then p1 is transferred into it and p2 comes back to b1.
    store.discharge(&p2, t(2_000)).unwrap();
    store.admit(&p1, &b2, t(3_000)).unwrap();
    store.admit(&p2, &b1, t(4_000)).unwrap();
    store.discharge(&p1, t(5_000)).unwrap();

    let who = |store: &Store, bed: &BedId, ms: i64| {
        store
            .occupancy_at(bed, t(ms))
            .unwrap()
            .map(|stay| stay.patient_id.to_string())
    };
    assert_eq!(who(&store, &b1, 999), None);
    assert_eq!(who(&store, &b1, 1_000).as_deref(), Some("p1"));
    assert_eq!(who(&store, &b1, 2_999).as_deref(), Some("p1"));
    // The transfer's instant belongs to the new bed.
    assert_eq!(who(&store, &b1, 3_000), None);
    assert_eq!(who(&store, &b2, 3_000).as_deref(), Some("p1"));
    assert_eq!(who(&store, &b2, 1_999).as_deref(), Some("p2"));
    assert_eq!(who(&store, &b2, 2_000), None);
    assert_eq!(who(&store, &b1, 4_000).as_deref(), Some("p2"));
    assert_eq!(who(&store, &b2, 5_000), None);
    assert_eq!(who(&store, &b1, 1_000_000).as_deref(), Some("p2"));

    assert_eq!(
        store.current_occupancy().unwrap(),
        vec![(b1.clone(), p2.clone(), t(4_000))]
    );
    let stays = store.stays_of(&p1).unwrap();
    assert_eq!(stays.len(), 2);
    assert_eq!((stays[0].from, stays[0].to), (t(1_000), Some(t(3_000))));
    assert_eq!((stays[1].from, stays[1].to), (t(3_000), Some(t(5_000))));
}

#[test]
fn occupancy_mistakes_are_errors() {
    let mut store = with_patients();
    let p1: PatientId = "p1".into();
    assert!(matches!(
        store.discharge(&p1, t(1)),
        Err(StoreError::NotAdmitted)
    ));
    assert!(matches!(
        store.admit(&"ghost".into(), &"b1".into(), t(1)),
        Err(StoreError::PatientNotFound)
    ));
    assert!(matches!(
        store.admit(&p1, &"nowhere".into(), t(1)),
        Err(StoreError::NotFound { what: "bed", .. })
    ));
    store.admit(&p1, &"b1".into(), t(1_000)).unwrap();
    // Admitting to the same bed again is a no-op.
    store.admit(&p1, &"b1".into(), t(2_000)).unwrap();
    assert_eq!(store.stays_of(&p1).unwrap().len(), 1);
    assert!(matches!(
        store.discharge(&p1, t(999)),
        Err(StoreError::BeforeOpenRange { .. })
    ));
    // A failed transfer leaves the open stay as it was.
    assert!(store.admit(&p1, &"b2".into(), t(500)).is_err());
    assert_eq!(
        store.current_occupancy().unwrap(),
        vec![("b1".into(), p1, t(1_000))]
    );
}

#[test]
fn error_messages_carry_no_patient_data() {
    let mut store = with_patients();
    let error = store
        .admit(&"MRN-123456".into(), &"b1".into(), t(1))
        .unwrap_err();
    assert!(!error.to_string().contains("123456"), "{error}");
    assert_eq!(error.to_string(), "patient not found");
}
