use model::{Timestamp, WardId};
use sim::{DeviceMessage, ObservationPayload, SimConfig, SimWard};

/// 2025-11-25T04:40:00Z, an arbitrary start that is not on a whole minute of the day.
pub const START_MS: i64 = 1_764_045_600_123;

pub fn config(seed: u64, beds: usize) -> SimConfig {
    SimConfig::new(
        seed,
        beds,
        WardId::new("w1"),
        Timestamp::from_millis(START_MS),
    )
}

/// Ticks once per simulated second for `seconds`, collecting every message.
pub fn run(ward: &mut SimWard, seconds: i64) -> Vec<DeviceMessage> {
    let mut out = Vec::new();
    for s in 1..=seconds {
        out.extend(ward.tick(Timestamp::from_millis(START_MS + s * 1000)));
    }
    out
}

pub fn parse(message: &DeviceMessage) -> ObservationPayload {
    serde_json::from_slice(&message.payload).expect("payload parses as an observation")
}

pub fn device_of_kind(ward: &SimWard, bed_index: usize, kind: sim::DeviceKind) -> String {
    let bed_id = &ward.patients()[bed_index].bed_id;
    ward.devices()
        .iter()
        .find(|d| d.kind == kind && d.target == sim::AssociationTarget::Bed(bed_id.clone()))
        .expect("device of that kind on the bed")
        .device_id
        .to_string()
}

pub fn bed_with(ward: &SimWard, scenario: sim::Scenario) -> usize {
    ward.patients()
        .iter()
        .position(|p| p.scenario == scenario)
        .expect("a bed with the scenario")
}

/// Numeric values of `metric` from `device_id`'s messages, with their times.
pub fn numerics(messages: &[DeviceMessage], device_id: &str, metric: &str) -> Vec<(i64, f64)> {
    messages
        .iter()
        .filter(|m| m.device_id == device_id)
        .flat_map(|m| {
            let payload = parse(m);
            payload
                .numerics
                .into_iter()
                .filter(|n| n.metric == metric && n.flags.is_empty())
                .map(move |n| {
                    (
                        n.time.unwrap_or(payload.time),
                        n.value.as_f64().expect("numeric value"),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

pub fn mean(values: impl IntoIterator<Item = f64>) -> f64 {
    let (sum, n) = values
        .into_iter()
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    assert!(n > 0, "mean of nothing");
    sum / n as f64
}
