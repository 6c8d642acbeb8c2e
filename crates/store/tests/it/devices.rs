use model::{AssociationTarget, BodyPart, BodyRegion, DeviceId, DeviceKind, Side};
use store::{DeviceRecord, Store, StoreError};

use crate::t;

fn device(id: &str, kind: DeviceKind) -> DeviceRecord {
    DeviceRecord {
        id: id.into(),
        kind,
        model: "Model X".into(),
        placement: None,
        first_seen: None,
        last_seen: None,
    }
}

#[test]
fn devices_round_trip_and_seen_times_only_widen() {
    let store = Store::open_in_memory().unwrap();
    let mut patch = device("0012ab34cd56ef78", DeviceKind::Wearable);
    patch.placement = Some(BodyRegion::new(BodyPart::Chest, None));
    store.upsert_device(&patch).unwrap();
    let mut oximeter = device("ox-1", DeviceKind::Wearable);
    oximeter.placement = Some(BodyRegion::new(BodyPart::Finger, Some(Side::Left)));
    store.upsert_device(&oximeter).unwrap();
    store
        .upsert_device(&device("env-1", DeviceKind::EnvironmentalSensor))
        .unwrap();

    let id: DeviceId = "ox-1".into();
    store.touch_device(&id, t(5_000)).unwrap();
    store.touch_device(&id, t(3_000)).unwrap();
    store.touch_device(&id, t(9_000)).unwrap();
    let stored = store.device(&id).unwrap().unwrap();
    assert_eq!(
        (stored.first_seen, stored.last_seen),
        (Some(t(3_000)), Some(t(9_000)))
    );
    assert_eq!(stored.placement, oximeter.placement);

    // Re-registering with a narrower window keeps what was seen.
    let mut again = oximeter.clone();
    again.model = "Model Y".into();
    again.first_seen = Some(t(4_000));
    again.last_seen = Some(t(4_000));
    store.upsert_device(&again).unwrap();
    let stored = store.device(&id).unwrap().unwrap();
    assert_eq!(stored.model, "Model Y");
    assert_eq!(
        (stored.first_seen, stored.last_seen),
        (Some(t(3_000)), Some(t(9_000)))
    );

    let ids: Vec<String> = store
        .devices()
        .unwrap()
        .into_iter()
        .map(|d| d.id.to_string())
        .collect();
    assert_eq!(ids, ["0012ab34cd56ef78", "env-1", "ox-1"]);
    assert!(matches!(
        store.touch_device(&"unknown".into(), t(1)),
        Err(StoreError::NotFound { what: "device", .. })
    ));
}

#[test]
fn reassociating_ends_the_previous_association() {
    let mut store = Store::open_in_memory().unwrap();
    let id: DeviceId = "mon-1".into();
    store
        .upsert_device(&device("mon-1", DeviceKind::BedsideMonitor))
        .unwrap();
    store
        .upsert_device(&device("env-1", DeviceKind::EnvironmentalSensor))
        .unwrap();

    let first = store
        .associate(&id, &AssociationTarget::Bed("b1".into()), t(1_000))
        .unwrap();
    let second = store
        .associate(&id, &AssociationTarget::Patient("p1".into()), t(2_000))
        .unwrap();
    assert_ne!(first, second);
    store
        .associate(
            &"env-1".into(),
            &AssociationTarget::Room("r1".into()),
            t(500),
        )
        .unwrap();

    let history = store.associations_of(&id).unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].id, first);
    assert_eq!(history[0].target, AssociationTarget::Bed("b1".into()));
    assert_eq!((history[0].from, history[0].to), (t(1_000), Some(t(2_000))));
    assert_eq!(history[1].target, AssociationTarget::Patient("p1".into()));
    assert_eq!(history[1].to, None);

    let open = store.open_associations().unwrap();
    let open: Vec<(&str, &str)> = open
        .iter()
        .map(|a| (a.device_id.as_str(), a.target.id()))
        .collect();
    assert_eq!(open, [("env-1", "r1"), ("mon-1", "p1")]);

    assert!(store.end_association(&id, t(3_000)).unwrap());
    assert!(!store.end_association(&id, t(4_000)).unwrap());
    assert_eq!(store.associations_of(&id).unwrap()[1].to, Some(t(3_000)));
    assert_eq!(store.open_associations().unwrap().len(), 1);
}

#[test]
fn association_mistakes_are_errors() {
    let mut store = Store::open_in_memory().unwrap();
    assert!(matches!(
        store.associate(&"ghost".into(), &AssociationTarget::Room("r1".into()), t(1)),
        Err(StoreError::NotFound { what: "device", .. })
    ));
    store
        .upsert_device(&device("mon-1", DeviceKind::BedsideMonitor))
        .unwrap();
    store
        .associate(
            &"mon-1".into(),
            &AssociationTarget::Bed("b1".into()),
            t(1_000),
        )
        .unwrap();
    assert!(matches!(
        store.associate(
            &"mon-1".into(),
            &AssociationTarget::Bed("b2".into()),
            t(999)
        ),
        Err(StoreError::BeforeOpenRange { .. })
    ));
    // The failed re-association left the open one intact.
    let open = store.open_associations().unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].target, AssociationTarget::Bed("b1".into()));
}
