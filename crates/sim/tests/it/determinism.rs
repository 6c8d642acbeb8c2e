use std::collections::BTreeMap;

use model::Timestamp;
use sim::{DeviceMessage, SimWard};

use crate::support::{START_MS, config, run};

#[test]
fn the_same_seed_gives_the_same_messages_and_another_seed_does_not() {
    let first = run(&mut SimWard::new(config(7, 8)), 120);
    let again = run(&mut SimWard::new(config(7, 8)), 120);
    let other = run(&mut SimWard::new(config(8, 8)), 120);
    assert!(!first.is_empty());
    assert_eq!(first, again);
    assert_ne!(first, other);

    let a = SimWard::new(config(7, 8));
    let b = SimWard::new(config(7, 8));
    let c = SimWard::new(config(8, 8));
    assert_eq!(a.patients(), b.patients());
    assert_eq!(a.layout(), b.layout());
    assert_eq!(a.devices(), b.devices());
    assert_ne!(a.patients(), c.patients());
}

fn by_device(messages: Vec<DeviceMessage>) -> BTreeMap<String, Vec<DeviceMessage>> {
    let mut map: BTreeMap<String, Vec<DeviceMessage>> = BTreeMap::new();
    for message in messages {
        map.entry(message.device_id.clone())
            .or_default()
            .push(message);
    }
    map
}

#[test]
fn messages_do_not_depend_on_the_tick_cadence() {
    let every_second = run(&mut SimWard::new(config(3, 5)), 90);
    let mut ward = SimWard::new(config(3, 5));
    let mut irregular = Vec::new();
    let mut t = 0;
    for step in [7_000, 1, 999, 13_500, 500, 40_000, 28_000] {
        t += step;
        irregular.extend(ward.tick(Timestamp::from_millis(START_MS + t)));
    }
    assert_eq!(t, 90_000);
    assert_eq!(by_device(every_second), by_device(irregular));
}

#[test]
fn time_going_backwards_emits_nothing() {
    let mut ward = SimWard::new(config(3, 2));
    assert!(
        !ward
            .tick(Timestamp::from_millis(START_MS + 10_000))
            .is_empty()
    );
    assert!(
        ward.tick(Timestamp::from_millis(START_MS + 5_000))
            .is_empty()
    );
    assert!(
        ward.tick(Timestamp::from_millis(START_MS + 10_000))
            .is_empty()
    );
}
