use std::collections::HashSet;

use model::{BodyRegion, Catalog, MetricCategory, MetricKind};
use sim::{DeviceKind, Scenario, SimWard};

use crate::support::{config, parse, run};

#[test]
fn every_payload_is_contract_json_with_catalog_metrics() {
    let catalog = Catalog::embedded();
    let mut ward = SimWard::new(config(11, 12));
    let messages = run(&mut ward, 600);
    let known_devices: HashSet<String> = ward
        .devices()
        .iter()
        .map(|d| d.device_id.to_string())
        .collect();
    let mut metrics_seen = HashSet::new();
    for message in &messages {
        assert_eq!(
            message.topic,
            format!("metaward/v1/devices/{}/obs", message.device_id)
        );
        assert!(known_devices.contains(&message.device_id));
        let json: serde_json::Value = serde_json::from_slice(&message.payload).expect("json");
        assert!(json["time"].is_i64(), "{json}");
        let payload = parse(message);
        assert_eq!(payload.time, message.device_time.millis());
        for numeric in &payload.numerics {
            let metric = catalog.by_key(&numeric.metric).expect("metric in catalog");
            assert_eq!(metric.kind, MetricKind::Numeric);
            if let Some(site) = &numeric.body_site {
                site.parse::<BodyRegion>()
                    .expect("body site is a region key");
            }
            for flag in &numeric.flags {
                assert!(["artefact", "probe_off", "leads_off"].contains(&flag.as_str()));
            }
            metrics_seen.insert(numeric.metric.clone());
        }
        for waveform in &payload.waveforms {
            let metric = catalog.by_key(&waveform.metric).expect("metric in catalog");
            assert_eq!(metric.kind, MetricKind::Waveform);
            assert_eq!(Some(f64::from(waveform.rate_hz)), metric.sample_rate_hz);
            metrics_seen.insert(waveform.metric.clone());
        }
    }
    for key in [
        "heart_rate",
        "respiration_rate",
        "spo2",
        "pulse_rate",
        "nibp_systolic",
        "nibp_diastolic",
        "nibp_mean",
        "body_temperature",
        "ecg_ii",
        "pleth",
        "room_temperature",
        "room_humidity",
        "room_co2",
        "room_noise",
        "room_illuminance",
        "room_pm25",
        "inhaled_oxygen_flow",
    ] {
        assert!(metrics_seen.contains(key), "no {key} in ten minutes");
    }
}

#[test]
fn values_stay_plausible_unless_flagged() {
    let catalog = Catalog::embedded();
    let mut ward = SimWard::new(config(5, 12));
    let messages = run(&mut ward, 1800);
    let mut flagged = 0;
    for message in &messages {
        for numeric in parse(message).numerics {
            let value = numeric.value.as_f64().expect("number");
            let metric = catalog.by_key(&numeric.metric).expect("catalog metric");
            if numeric.flags.is_empty() {
                assert!(
                    metric.plausible.contains(value),
                    "{} = {value} is implausible but not flagged",
                    numeric.metric
                );
            } else {
                flagged += 1;
            }
        }
        for waveform in parse(message).waveforms {
            let metric = catalog.by_key(&waveform.metric).expect("catalog metric");
            assert!(
                waveform
                    .samples
                    .iter()
                    .all(|&s| metric.plausible.contains(f64::from(s)))
            );
        }
    }
    // Twelve beds for half an hour: some device has slipped.
    assert!(flagged > 0, "no artefacts in 30 minutes of 12 beds");
}

#[test]
fn stable_patients_stay_near_normal() {
    let catalog = Catalog::embedded();
    let mut ward = SimWard::new(config(9, 12));
    let mut config = ward.config().clone();
    config.artefacts = false;
    config.waveforms = false;
    ward = SimWard::new(config);
    let messages = run(&mut ward, 1800);
    let stable_beds: HashSet<String> = ward
        .patients()
        .iter()
        .filter(|p| p.scenario == Scenario::Stable)
        .map(|p| p.bed_id.to_string())
        .collect();
    let stable_devices: HashSet<String> = ward
        .devices()
        .iter()
        .filter(|d| matches!(&d.target, sim::AssociationTarget::Bed(b) if stable_beds.contains(b.as_str())))
        .map(|d| d.device_id.to_string())
        .collect();
    for message in messages
        .iter()
        .filter(|m| stable_devices.contains(&m.device_id))
    {
        for numeric in parse(message).numerics {
            let value = numeric.value.as_f64().expect("number");
            let metric = catalog.by_key(&numeric.metric).expect("catalog metric");
            // Charted assessments (the oxygen flow) have no normal range: air and oxygen are
            // both normal for the right patient.
            let Some(normal) = metric.normal else {
                assert_eq!(
                    metric.category,
                    MetricCategory::Assessment,
                    "{}",
                    metric.key
                );
                continue;
            };
            // Within the normal range give or take a margin for noise and circadian drift.
            let margin = (normal.high - normal.low) * 0.5;
            assert!(
                value >= normal.low - margin && value <= normal.high + margin,
                "stable {} = {value}",
                numeric.metric
            );
        }
    }
}

#[test]
fn layout_patients_and_devices_are_consistent() {
    let ward = SimWard::new(config(21, 13));
    let layout = ward.layout();
    let beds: Vec<_> = layout.beds().collect();
    assert_eq!(beds.len(), 13);
    for room in &layout.rooms {
        assert!((2..=4).contains(&room.beds.len()), "{}", room.beds.len());
        for bed in &room.beds {
            assert!(bed.x_m.abs() < room.width_m / 2.0 && bed.z_m.abs() < room.depth_m / 2.0);
        }
    }
    assert_eq!(ward.patients().len(), 13);
    assert_eq!(ward.devices().len(), 13 * 3 + layout.rooms.len());
    let ids: HashSet<_> = ward.devices().iter().map(|d| d.device_id.clone()).collect();
    assert_eq!(ids.len(), ward.devices().len());
    for device in ward.devices() {
        let id = device.device_id.as_str();
        assert_eq!(id.len(), 16);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        match device.kind {
            DeviceKind::PulseOximeter => assert!(
                device
                    .placement
                    .is_some_and(|p| p.to_string().starts_with("finger_"))
            ),
            DeviceKind::TemperaturePatch => assert_eq!(
                device.placement.map(|p| p.to_string()).as_deref(),
                Some("axilla_left")
            ),
            _ => assert!(device.placement.is_none()),
        }
    }
    assert_eq!(ward.patients()[0].patient_id.as_str(), "sim-p-0001");
    let stable = ward
        .patients()
        .iter()
        .filter(|p| p.scenario == Scenario::Stable)
        .count();
    assert!(stable * 2 > ward.patients().len(), "most beds are stable");
    for patient in ward.patients() {
        assert!((25..=95).contains(&patient.age_years));
        assert!(patient.full_name.contains(&patient.given_name));
        assert_eq!(patient.birth_date.len(), 10);
        assert!(!patient.conditions.is_empty());
        for condition in &patient.conditions {
            assert!(condition.snomed_code.bytes().all(|b| b.is_ascii_digit()));
        }
    }
    let sepsis = &ward.patients()[crate::support::bed_with(&ward, Scenario::Sepsis)];
    assert!(
        sepsis
            .conditions
            .iter()
            .any(|c| c.snomed_code == "91302008")
    );
    let copd = &ward.patients()[crate::support::bed_with(&ward, Scenario::CopdExacerbation)];
    assert!(copd.on_oxygen);
    // The record gives NEWS2 its reason for SpO2 Scale 2.
    assert!(copd.conditions.iter().any(|c| c.snomed_code == "426896000"));
    assert!(copd.conditions.iter().any(
        |c| c.snomed_code == "13645005" && c.body_site.is_some_and(|s| s.to_string() == "lung")
    ));
}

#[test]
fn one_room_is_poorly_ventilated_and_goes_amber() {
    let mut config = config(4, 6);
    config.waveforms = false;
    config.artefacts = false;
    let mut ward = SimWard::new(config);
    let room = ward.poorly_ventilated_room().expect("a stuffy room");
    let sensor = ward
        .devices()
        .iter()
        .filter(|d| d.kind == DeviceKind::EnvironmentSensor)
        .nth(room)
        .expect("its sensor")
        .device_id
        .to_string();
    let mut max_co2 = 0.0f64;
    let mut t = 0;
    while t < 3 * 3600 {
        t += 60;
        let messages = ward.tick(model::Timestamp::from_millis(
            crate::support::START_MS + t * 1000,
        ));
        for (_, value) in crate::support::numerics(&messages, &sensor, "room_co2") {
            max_co2 = max_co2.max(value);
        }
    }
    assert!(max_co2 > 1000.0, "max CO2 {max_co2}");
}

#[test]
fn monitors_report_the_oxygen_flow_once_a_minute() {
    let mut config = config(5, 12);
    config.waveforms = false;
    let mut ward = SimWard::new(config);
    let messages = run(&mut ward, 180);
    for (bed_index, patient) in ward.patients().iter().enumerate() {
        let monitor = ward
            .devices()
            .iter()
            .find(|d| {
                d.kind == DeviceKind::BedsideMonitor
                    && d.target == sim::AssociationTarget::Bed(patient.bed_id.clone())
            })
            .expect("a monitor per bed")
            .device_id
            .to_string();
        let flows = crate::support::numerics(&messages, &monitor, "inhaled_oxygen_flow");
        let times: Vec<i64> = flows
            .iter()
            .map(|(t, _)| t - crate::support::START_MS)
            .collect();
        assert_eq!(times, vec![0, 60_000, 120_000], "bed {bed_index}");
        let expected = if patient.on_oxygen { 2.0 } else { 0.0 };
        assert!(
            flows.iter().all(|(_, flow)| *flow == expected),
            "bed {bed_index}: {flows:?}"
        );
    }
}
