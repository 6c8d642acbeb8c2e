use clinical::alarms::{AlarmConfig, AlarmEngine, AlarmSubject, LimitTier, MetricLimits, Priority};
use store::{AlarmQuery, Store};

use crate::t;

#[test]
fn an_alarm_and_its_history_survive_the_round_trip() {
    let mut store = Store::open_in_memory().unwrap();
    let mut engine = AlarmEngine::new(AlarmConfig::default());
    let patient = AlarmSubject::Patient("p1".into());
    let mut events = engine.observe(&patient, "respiration_rate", 6.0, t(0));
    events.extend(engine.observe(&patient, "respiration_rate", 6.0, t(10_000)));
    let id = events[0].alarm.id;
    events.extend(engine.delivered(id, t(10_050)).unwrap());
    events.extend(
        engine
            .silence(id, "n.chen", "repositioning", 60_000, t(11_000))
            .unwrap(),
    );
    events.extend(engine.observe(&patient, "respiration_rate", 14.0, t(20_000)));
    store.record_alarm_events(&events).unwrap();

    let stored = store.alarm(id).unwrap().unwrap();
    assert_eq!(
        stored,
        *engine.get(id).unwrap(),
        "the stored alarm is the engine's"
    );
    assert_eq!(stored.state(), "delivered");
    let active = store
        .alarms(&AlarmQuery {
            active_only: true,
            subject: None,
            limit: 10,
        })
        .unwrap();
    assert_eq!(
        active.len(),
        1,
        "latched: still active after the condition cleared"
    );

    let acked = engine.acknowledge(id, "n.chen", t(30_000)).unwrap();
    store.record_alarm_events(&acked).unwrap();
    let history: Vec<String> = store
        .alarm_history(id)
        .unwrap()
        .into_iter()
        .map(|entry| entry.transition)
        .collect();
    assert_eq!(
        history,
        [
            "raised",
            "delivered",
            "silenced",
            "condition_cleared",
            "acknowledged",
            "resolved"
        ]
    );
    let stored = store.alarm(id).unwrap().unwrap();
    assert_eq!(stored.acknowledged, Some(("n.chen".into(), t(30_000))));
    assert!(
        store
            .alarms(&AlarmQuery {
                active_only: true,
                subject: Some(patient),
                limit: 10
            })
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.max_alarm_id().unwrap(), id);
    // Analysts' question: time to acknowledge.
    let seconds: f64 = store
        .connection()
        .query_row(
            "SELECT (acknowledged_ms - raised_ms) / 1000.0 FROM alarms WHERE id = ?1",
            [id as i64],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(seconds, 20.0);
}

#[test]
fn patient_limits_are_kept_and_removed() {
    let mut store = Store::open_in_memory().unwrap();
    let limits = MetricLimits {
        metric: "spo2".into(),
        low: vec![
            LimitTier {
                at: 85.0,
                priority: Priority::Medium,
            },
            LimitTier {
                at: 80.0,
                priority: Priority::High,
            },
        ],
        high: vec![],
    };
    store
        .set_alarm_limits(&"p1".into(), "spo2", Some(&limits), Some("dr.wang"), t(0))
        .unwrap();
    let overrides = store.alarm_limit_overrides().unwrap();
    assert_eq!(overrides.len(), 1);
    assert_eq!(overrides[0].0, "p1".into());
    let mut read = overrides[0].1.clone();
    read.low.sort_by(|a, b| b.at.total_cmp(&a.at));
    assert_eq!(read, limits);
    store
        .set_alarm_limits(&"p1".into(), "spo2", None, None, t(1))
        .unwrap();
    assert!(store.alarm_limit_overrides().unwrap().is_empty());
}
