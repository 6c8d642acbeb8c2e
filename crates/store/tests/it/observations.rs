use model::{
    BodyPart, BodyRegion, Observation, ObservedValue, PatientId, Quality, Timestamp, WaveformChunk,
};
use store::{Store, StoreError, StoredObservation, Subject};

use crate::t;

fn numeric(offset: u64, metric: &str, value: f64, ms: i64, patient: &str) -> StoredObservation {
    StoredObservation {
        log_offset: offset,
        log_position: 0,
        observation: Observation {
            device_id: "mon-1".into(),
            metric: metric.into(),
            value: ObservedValue::Numeric(value),
            device_time: t(ms),
            received_time: t(ms + 7),
            body_site: None,
            quality: Quality::GOOD,
            reference_range: None,
        },
        patient_id: Some(patient.into()),
        bed_id: Some("b1".into()),
        room_id: None,
    }
}

fn room_value(offset: u64, metric: &str, value: f64, ms: i64) -> StoredObservation {
    StoredObservation {
        log_offset: offset,
        log_position: 0,
        observation: Observation {
            device_id: "env-1".into(),
            metric: metric.into(),
            value: ObservedValue::Numeric(value),
            device_time: t(ms),
            received_time: t(ms),
            body_site: None,
            quality: Quality::GOOD,
            reference_range: None,
        },
        patient_id: None,
        bed_id: None,
        room_id: Some("r1".into()),
    }
}

fn waveform(offset: u64, start_ms: i64, samples: Vec<f32>) -> StoredObservation {
    StoredObservation {
        log_offset: offset,
        log_position: 0,
        observation: Observation {
            device_id: "mon-1".into(),
            metric: "ecg_ii".into(),
            value: ObservedValue::Waveform(WaveformChunk {
                sample_rate_hz: 250.0,
                samples,
            }),
            device_time: t(start_ms),
            received_time: t(start_ms + 1_000),
            body_site: Some(BodyRegion::new(BodyPart::Heart, None)),
            quality: Quality::GOOD,
            reference_range: None,
        },
        patient_id: Some("p1".into()),
        bed_id: Some("b1".into()),
        room_id: None,
    }
}

/// One heart rate a second for a minute, for p1 and p2, and a room temperature.
fn minute_of_data() -> Vec<StoredObservation> {
    let mut batch = Vec::new();
    for second in 0..60 {
        let ms = 1_000_000 + second * 1_000;
        let offset = second as u64 * 3;
        batch.push(numeric(
            offset,
            "heart_rate",
            60.0 + second as f64,
            ms,
            "p1",
        ));
        batch.push(numeric(offset + 1, "heart_rate", 100.0, ms, "p2"));
        batch.push(room_value(offset + 2, "room_temperature", 21.5, ms));
    }
    batch
}

#[test]
fn history_returns_a_range_in_order_up_to_a_limit() {
    let mut store = Store::open_in_memory().unwrap();
    let mut batch = minute_of_data();
    // Out of order in the batch: the query orders by device time anyway.
    batch.reverse();
    store.insert_observations(&batch, 180).unwrap();

    let p1 = Subject::Patient("p1".into());
    let all = store
        .history(&p1, "heart_rate", t(0), t(i64::MAX), 1_000)
        .unwrap();
    assert_eq!(all.len(), 60);
    assert!(all.windows(2).all(|w| w[0].time < w[1].time));
    assert_eq!(all[0].value, 60.0);
    assert_eq!(all[0].device_id.as_str(), "mon-1");

    // [from, to): the start is in, the end is out.
    let range = store
        .history(&p1, "heart_rate", t(1_010_000), t(1_020_000), 1_000)
        .unwrap();
    assert_eq!(range.len(), 10);
    assert_eq!(range[0].time, t(1_010_000));
    assert_eq!(range[9].value, 79.0);

    let limited = store
        .history(&p1, "heart_rate", t(1_010_000), t(1_020_000), 3)
        .unwrap();
    let values: Vec<f64> = limited.iter().map(|p| p.value).collect();
    assert_eq!(values, [70.0, 71.0, 72.0]);

    assert!(
        store
            .history(&p1, "spo2", t(0), t(i64::MAX), 10)
            .unwrap()
            .is_empty()
    );
    let room = store
        .history(
            &Subject::Room("r1".into()),
            "room_temperature",
            t(0),
            t(i64::MAX),
            100,
        )
        .unwrap();
    assert_eq!(room.len(), 60);
    assert!(room.iter().all(|p| p.value == 21.5));
}

#[test]
fn flagged_and_missing_values_are_kept_and_shown_as_such() {
    let mut store = Store::open_in_memory().unwrap();
    let mut probe_off = numeric(1, "spo2", 0.0, 1_000, "p1");
    probe_off.observation.quality = Quality {
        implausible: true,
        device_flagged: true,
    };
    let no_number = numeric(2, "spo2", f64::NAN, 2_000, "p1");
    store
        .insert_observations(&[probe_off, no_number], 3)
        .unwrap();
    let points = store
        .history(&Subject::Patient("p1".into()), "spo2", t(0), t(10_000), 10)
        .unwrap();
    assert_eq!(points.len(), 2);
    assert!(points[0].quality.implausible && points[0].quality.device_flagged);
    assert!(points[1].value.is_nan());
}

#[test]
fn replaying_a_batch_inserts_nothing_twice() {
    let mut store = Store::open_in_memory().unwrap();
    let mut batch = minute_of_data();
    batch.push(waveform(500, 1_000_000, vec![0.1; 250]));
    store.insert_observations(&batch, 501).unwrap();
    let counts = store.counts().unwrap();
    assert_eq!(counts, (180, 1));

    // A crash after the commit but before the caller learnt of it: the same batch again.
    store.insert_observations(&batch, 501).unwrap();
    assert_eq!(store.counts().unwrap(), counts);
    // Replaying from an older checkpoint never moves the checkpoint back.
    store.insert_observations(&batch[..10], 10).unwrap();
    assert_eq!(store.counts().unwrap(), counts);
    assert_eq!(store.checkpoint().unwrap(), 501);
}

#[test]
fn the_checkpoint_advances_with_its_batch_or_not_at_all() {
    let mut store = Store::open_in_memory().unwrap();
    assert_eq!(store.checkpoint().unwrap(), 0);
    store
        .insert_observations(&[numeric(0, "heart_rate", 70.0, 1_000, "p1")], 1)
        .unwrap();
    assert_eq!(store.checkpoint().unwrap(), 1);

    // The last observation of this batch cannot be stored: the whole batch is rolled back.
    let batch = [
        numeric(1, "heart_rate", 71.0, 2_000, "p1"),
        numeric(u64::MAX, "heart_rate", 72.0, 3_000, "p1"),
    ];
    assert!(matches!(
        store.insert_observations(&batch, 2),
        Err(StoreError::OffsetTooLarge(_))
    ));
    assert_eq!(store.checkpoint().unwrap(), 1);
    assert_eq!(store.counts().unwrap(), (1, 0));

    // An empty batch may still advance the checkpoint (records with nothing to project).
    store.insert_observations(&[], 5).unwrap();
    assert_eq!(store.checkpoint().unwrap(), 5);
}

#[test]
fn the_checkpoint_survives_reopening_the_file() {
    let dir = std::env::temp_dir().join(format!("store-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("store.sqlite");
    let _ = std::fs::remove_file(&path);
    {
        let mut store = Store::open(&path).unwrap();
        store.insert_observations(&minute_of_data(), 180).unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.checkpoint().unwrap(), 180);
    assert_eq!(store.counts().unwrap(), (180, 0));
    let mode: String = store
        .connection()
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    drop(store);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn latest_values_give_the_last_value_of_each_metric() {
    let mut store = Store::open_in_memory().unwrap();
    let mut batch = minute_of_data();
    batch.push(numeric(1_000, "spo2", 95.0, 500, "p1"));
    let mut site = numeric(1_001, "spo2", 97.0, 900, "p1");
    site.observation.body_site = Some("finger_left".parse().unwrap());
    batch.push(site);
    store.insert_observations(&batch, 1_002).unwrap();

    let latest = store.latest_values(&Subject::Patient("p1".into())).unwrap();
    let summary: Vec<(&str, f64, Timestamp)> = latest
        .iter()
        .map(|v| (v.metric.as_str(), v.value, v.time))
        .collect();
    assert_eq!(
        summary,
        [("heart_rate", 119.0, t(1_059_000)), ("spo2", 97.0, t(900))]
    );
    assert_eq!(latest[1].body_site, Some("finger_left".parse().unwrap()));
    assert_eq!(latest[0].received_time, t(1_059_007));
    let room = store.latest_values(&Subject::Room("r1".into())).unwrap();
    assert_eq!(room.len(), 1);
    assert!(
        store
            .latest_values(&Subject::Patient("nobody".into()))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn waveform_chunks_come_back_decoded_for_an_overlapping_range() {
    let mut store = Store::open_in_memory().unwrap();
    // Four one-second chunks at 250 Hz, a sine in mV.
    let chunk = |k: usize| -> Vec<f32> {
        (0..250)
            .map(|i| ((k * 250 + i) as f32 * 0.05).sin() * 1.2)
            .collect()
    };
    let batch: Vec<StoredObservation> = (0..4)
        .map(|k| waveform(10 + k as u64, 10_000 + k as i64 * 1_000, chunk(k)))
        .collect();
    store.insert_observations(&batch, 14).unwrap();

    let p1: PatientId = "p1".into();
    // [11 500, 12 000) overlaps only the chunk [11 000, 12 000).
    let found = store.waveform(&p1, "ecg_ii", t(11_500), t(12_000)).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].start, t(11_000));
    assert_eq!(found[0].chunk.sample_rate_hz, 250.0);
    let original = chunk(1);
    assert_eq!(found[0].chunk.samples.len(), original.len());
    for (a, b) in original.iter().zip(&found[0].chunk.samples) {
        assert!((a - b).abs() <= 0.000_5 + 1e-6, "{a} vs {b}");
    }

    let all = store.waveform(&p1, "ecg_ii", t(0), t(100_000)).unwrap();
    let starts: Vec<Timestamp> = all.iter().map(|w| w.start).collect();
    assert_eq!(starts, [t(10_000), t(11_000), t(12_000), t(13_000)]);
    // A range ending exactly where a chunk starts does not include it.
    assert_eq!(
        store
            .waveform(&p1, "ecg_ii", t(0), t(10_000))
            .unwrap()
            .len(),
        0
    );
    assert!(
        store
            .waveform(&p1, "pleth", t(0), t(100_000))
            .unwrap()
            .is_empty()
    );

    // Stored compressed: far fewer bytes than four bytes a sample.
    let bytes: i64 = store
        .connection()
        .query_row("SELECT sum(length(data)) FROM waveform_chunks", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert!(bytes < 4 * 1_000 / 2, "{bytes} bytes for 1000 samples");
}

#[test]
fn waveform_gaps_and_unknown_metrics_are_stored_losslessly() {
    let mut store = Store::open_in_memory().unwrap();
    let gap = waveform(1, 0, vec![0.1, f32::NAN, 0.3]);
    let mut unknown = waveform(2, 0, vec![1.234_567_8, -2.5]);
    unknown.observation.metric = "vendor_special".into();
    store.insert_observations(&[gap, unknown], 3).unwrap();
    let p1: PatientId = "p1".into();
    let gap = store.waveform(&p1, "ecg_ii", t(0), t(1_000)).unwrap();
    assert!(gap[0].chunk.samples[1].is_nan());
    assert_eq!(gap[0].chunk.samples[2], 0.3);
    let unknown = store
        .waveform(&p1, "vendor_special", t(0), t(1_000))
        .unwrap();
    assert_eq!(unknown[0].chunk.samples, [1.234_567_8, -2.5]);
}

#[test]
fn the_time_series_queries_use_their_indexes() {
    let store = Store::open_in_memory().unwrap();
    // Parameters, as the store binds them: `x = ?` lets SQLite use the `x IS NOT NULL` partial index.
    let plan = |sql: &str| -> String {
        let mut statement = store
            .connection()
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap();
        let rows = statement
            .query_map(["id", "metric"], |row| row.get::<_, String>(3))
            .unwrap();
        rows.map(Result::unwrap).collect::<Vec<_>>().join("; ")
    };
    let patient = plan(
        "SELECT value FROM vitals WHERE patient_id = ?1 AND metric = ?2
         AND device_time_ms >= 0 AND device_time_ms < 10 ORDER BY device_time_ms",
    );
    assert!(patient.contains("vitals_by_patient"), "{patient}");
    let room = plan(
        "SELECT value FROM vitals WHERE room_id = ?1 AND metric = ?2
         AND device_time_ms >= 0 AND device_time_ms < 10 ORDER BY device_time_ms",
    );
    assert!(room.contains("vitals_by_room"), "{room}");
    let chunks = plan(
        "SELECT data FROM waveform_chunks WHERE patient_id = ?1 AND metric = ?2
         AND start_ms < 10 AND end_ms > 0 ORDER BY start_ms",
    );
    assert!(chunks.contains("waveform_chunks_by_patient"), "{chunks}");
}

#[test]
fn a_batch_records_when_its_registered_devices_were_heard_from() {
    let mut store = Store::open_in_memory().unwrap();
    store
        .upsert_device(&store::DeviceRecord {
            id: "mon-1".into(),
            kind: model::DeviceKind::BedsideMonitor,
            model: "monitor".into(),
            placement: None,
            first_seen: None,
            last_seen: None,
        })
        .unwrap();
    let batch = [
        numeric(0, "heart_rate", 70.0, 5_000, "p1"),
        numeric(1, "heart_rate", 71.0, 1_000, "p1"),
        // env-1 is not registered: its data is stored, and no device row appears for it.
        room_value(2, "room_temperature", 21.0, 9_000),
    ];
    store.insert_observations(&batch, 3).unwrap();
    let device = store.device(&"mon-1".into()).unwrap().unwrap();
    assert_eq!(device.first_seen, Some(t(1_007)));
    assert_eq!(device.last_seen, Some(t(5_007)));
    assert!(store.device(&"env-1".into()).unwrap().is_none());
}

#[test]
fn device_observations_are_found_counted_sorted_and_read_by_id() {
    use store::{DeviceObservationFilter, DeviceSortKey, DeviceTest, PointTest};
    let mut store = Store::open_in_memory().unwrap();
    let mut batch = minute_of_data();
    // Two observations in one log record: the second has position 1.
    let mut second = numeric(1_000, "spo2", 97.0, 1_030_000, "p1");
    second.log_position = 1;
    batch.push(numeric(1_000, "respiratory_rate", 16.0, 1_030_000, "p1"));
    batch.push(second);
    batch.push(waveform(1_001, 1_000_000, vec![0.1, 0.2, 0.3]));
    store.insert_observations(&batch, 1_002).unwrap();

    let patient = |id: &str| vec![DeviceTest::Patient(id.into())];
    let search = |filter: &DeviceObservationFilter, sort: &[(DeviceSortKey, bool)], limit| {
        store
            .search_device_observations(filter, sort, limit)
            .unwrap()
    };

    // p1: 60 heart rates, a respiratory rate, an SpO2 and an ECG chunk.
    let all_p1 = DeviceObservationFilter {
        all_of: vec![patient("p1")],
    };
    let (total, newest) = search(&all_p1, &[(DeviceSortKey::Effective, true)], 3);
    assert_eq!(total, 63);
    assert_eq!(newest.len(), 3);
    assert_eq!(newest[0].observation.device_time, t(1_059_000));
    assert!(
        newest
            .windows(2)
            .all(|w| w[0].observation.device_time >= w[1].observation.device_time)
    );

    // Metric and time: heart rates in [1_010_000, 1_019_999], oldest first.
    let filter = DeviceObservationFilter {
        all_of: vec![
            patient("p1"),
            vec![DeviceTest::MetricIn(vec!["heart_rate".into()])],
            vec![DeviceTest::Effective(PointTest::AtLeast(1_010_000))],
            vec![DeviceTest::Effective(PointTest::Before(1_020_000))],
        ],
    };
    let (total, rows) = search(&filter, &[(DeviceSortKey::Effective, false)], 100);
    assert_eq!(total, 10);
    assert_eq!(rows[0].observation.value, ObservedValue::Numeric(70.0));
    assert_eq!(rows[0].fhir_id(), "30-0");

    // An OR within a group: p2 or the room.
    let filter = DeviceObservationFilter {
        all_of: vec![vec![
            DeviceTest::Patient("p2".into()),
            DeviceTest::Room("r1".into()),
        ]],
    };
    assert_eq!(search(&filter, &[], 0).0, 120);

    // The waveform chunk comes back decoded, at its first sample's time.
    let filter = DeviceObservationFilter {
        all_of: vec![vec![DeviceTest::MetricIn(vec!["ecg_ii".into()])]],
    };
    let (total, rows) = search(&filter, &[], 10);
    assert_eq!(total, 1);
    match &rows[0].observation.value {
        ObservedValue::Waveform(chunk) => assert_eq!(chunk.samples.len(), 3),
        other => panic!("expected a waveform, got {other:?}"),
    }

    // A group that can match nothing empties the search.
    let never = DeviceObservationFilter {
        all_of: vec![patient("p1"), vec![DeviceTest::Never]],
    };
    assert_eq!(search(&never, &[], 10).0, 0);

    // By id: the second observation of log record 1000.
    let found = store.device_observation(1_000, 1).unwrap().unwrap();
    assert_eq!(found.observation.metric, "spo2");
    assert_eq!(found.patient_id.as_ref().map(|p| p.as_str()), Some("p1"));
    assert!(store.device_observation(1_000, 2).unwrap().is_none());
}
