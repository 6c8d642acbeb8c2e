//! The live state of the ward: the latest value of every metric per patient, per room and per
//! unassociated device, and per patient how far their vitals are from normal. Applying an
//! attributed observation returns the events the browser needs to follow along.

use std::collections::{BTreeMap, HashMap};

use model::{
    BodyRegion, Catalog, DeviceId, MetricCategory, ObservedValue, PatientId, RoomId, Timestamp,
};

use crate::attribution::{Attributed, Attribution};
use crate::device_health::DeviceHealth;

/// A value older than this no longer counts toward a patient's status.
pub const STATUS_FRESHNESS_MILLIS: i64 = 10 * 60 * 1000;

#[derive(Clone, Debug, PartialEq)]
pub struct ValueState {
    pub metric: String,
    pub value: f64,
    pub device_time: Timestamp,
    pub received_time: Timestamp,
    pub device_id: DeviceId,
    pub region: Option<BodyRegion>,
    pub artefact: bool,
}

/// How far a patient's fresh, trusted vitals are from the catalog's normal ranges:
/// 0 when all are normal, 1 when one is a whole normal-range width (or more) outside it.
/// A first cue for the eye, not a clinical score: NEWS2 is the score.
#[derive(Clone, Debug, PartialEq)]
pub struct PatientStatus {
    pub patient: PatientId,
    pub deviation: f64,
    pub worst_metric: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum TwinEvent {
    Value {
        attribution: Attribution,
        value: ValueState,
    },
    Waveform {
        attribution: Attribution,
        metric: String,
        start: Timestamp,
        sample_rate_hz: f64,
        samples: Vec<f32>,
        region: Option<BodyRegion>,
    },
    Status(PatientStatus),
    /// A device came online or went offline; `attribution` is that of its latest data, so the
    /// change reaches whoever watches where the device is.
    Device {
        attribution: Attribution,
        health: DeviceHealth,
    },
}

#[derive(Debug, Default)]
struct PatientLive {
    values: BTreeMap<String, ValueState>,
    status: Option<PatientStatus>,
}

#[derive(Debug, Default)]
pub struct LiveTwin {
    patients: HashMap<PatientId, PatientLive>,
    rooms: HashMap<RoomId, BTreeMap<String, ValueState>>,
    unassociated: HashMap<DeviceId, BTreeMap<String, ValueState>>,
}

impl LiveTwin {
    /// Applies one observation. A numeric older than the value already held is kept in history
    /// by the store but does not replace the live value.
    pub fn apply(&mut self, catalog: &Catalog, attributed: &Attributed) -> Vec<TwinEvent> {
        let observation = &attributed.observation;
        let attribution = &attributed.attribution;
        match &observation.value {
            ObservedValue::Waveform(chunk) => vec![TwinEvent::Waveform {
                attribution: attribution.clone(),
                metric: observation.metric.clone(),
                start: observation.device_time,
                sample_rate_hz: chunk.sample_rate_hz,
                samples: chunk.samples.clone(),
                region: attributed.region,
            }],
            ObservedValue::Numeric(value) => {
                let state = ValueState {
                    metric: observation.metric.clone(),
                    value: *value,
                    device_time: observation.device_time,
                    received_time: observation.received_time,
                    device_id: observation.device_id.clone(),
                    region: attributed.region,
                    artefact: observation.quality.is_artefact(),
                };
                let values = if let Some(patient) = &attribution.patient {
                    &mut self.patients.entry(patient.clone()).or_default().values
                } else if let Some(room) = &attribution.room {
                    self.rooms.entry(room.clone()).or_default()
                } else {
                    self.unassociated
                        .entry(observation.device_id.clone())
                        .or_default()
                };
                if values
                    .get(&state.metric)
                    .is_some_and(|held| held.device_time > state.device_time)
                {
                    return Vec::new();
                }
                values.insert(state.metric.clone(), state.clone());
                let mut events = vec![TwinEvent::Value {
                    attribution: attribution.clone(),
                    value: state,
                }];
                if let Some(patient) = &attribution.patient
                    && let Some(status) =
                        self.refresh_status(catalog, patient, observation.device_time)
                {
                    events.push(TwinEvent::Status(status));
                }
                events
            }
        }
    }

    /// Recomputes a patient's status at `now`; returns it when it changed noticeably.
    pub fn refresh_status(
        &mut self,
        catalog: &Catalog,
        patient: &PatientId,
        now: Timestamp,
    ) -> Option<PatientStatus> {
        let live = self.patients.get_mut(patient)?;
        let status = status_of(catalog, patient, &live.values, now);
        let changed = live.status.as_ref().is_none_or(|held| {
            (held.deviation - status.deviation).abs() >= 0.01
                || held.worst_metric != status.worst_metric
        });
        if changed {
            live.status = Some(status.clone());
            Some(status)
        } else {
            None
        }
    }

    pub fn patient_values(&self, patient: &PatientId) -> impl Iterator<Item = &ValueState> {
        self.patients
            .get(patient)
            .into_iter()
            .flat_map(|live| live.values.values())
    }

    pub fn patient_status(&self, patient: &PatientId) -> Option<&PatientStatus> {
        self.patients
            .get(patient)
            .and_then(|live| live.status.as_ref())
    }

    pub fn room_values(&self, room: &RoomId) -> impl Iterator<Item = &ValueState> {
        self.rooms
            .get(room)
            .into_iter()
            .flat_map(|values| values.values())
    }

    pub fn patients(&self) -> impl Iterator<Item = &PatientId> {
        self.patients.keys()
    }

    pub fn rooms(&self) -> impl Iterator<Item = &RoomId> {
        self.rooms.keys()
    }

    /// Devices that send data but belong to no one, with their last values: for clinical
    /// engineers to associate.
    pub fn unassociated(&self) -> impl Iterator<Item = (&DeviceId, &BTreeMap<String, ValueState>)> {
        self.unassociated.iter()
    }
}

fn status_of(
    catalog: &Catalog,
    patient: &PatientId,
    values: &BTreeMap<String, ValueState>,
    now: Timestamp,
) -> PatientStatus {
    let mut status = PatientStatus {
        patient: patient.clone(),
        deviation: 0.0,
        worst_metric: None,
    };
    for value in values.values() {
        if value.artefact || now.since(value.device_time) > STATUS_FRESHNESS_MILLIS {
            continue;
        }
        let Some(metric) = catalog.by_key(&value.metric) else {
            continue;
        };
        let Some(normal) = metric.normal else {
            continue;
        };
        if !matches!(
            metric.category,
            MetricCategory::VitalSigns | MetricCategory::Patient
        ) {
            continue;
        }
        let outside = (normal.low - value.value)
            .max(value.value - normal.high)
            .max(0.0);
        let deviation = (outside / (normal.high - normal.low)).min(1.0);
        if deviation > status.deviation {
            status.deviation = deviation;
            status.worst_metric = Some(metric.key.clone());
        }
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{Observation, Quality};

    fn numeric(metric: &str, value: f64, t: i64, patient: Option<&str>) -> Attributed {
        Attributed {
            observation: Observation {
                device_id: "dev".into(),
                metric: metric.into(),
                value: ObservedValue::Numeric(value),
                device_time: Timestamp(t),
                received_time: Timestamp(t),
                body_site: None,
                quality: Quality::GOOD,
                reference_range: None,
            },
            attribution: Attribution {
                patient: patient.map(PatientId::from),
                ..Attribution::default()
            },
            region: None,
        }
    }

    #[test]
    fn the_newest_value_wins_and_older_ones_do_not_replace_it() {
        let mut twin = LiveTwin::default();
        let catalog = Catalog::embedded();
        twin.apply(catalog, &numeric("heart_rate", 80.0, 2000, Some("p1")));
        let events = twin.apply(catalog, &numeric("heart_rate", 70.0, 1000, Some("p1")));
        assert!(events.is_empty());
        let held: Vec<_> = twin.patient_values(&"p1".into()).collect();
        assert_eq!(held[0].value, 80.0);
    }

    #[test]
    fn deviation_measures_distance_outside_the_normal_range() {
        let mut twin = LiveTwin::default();
        let catalog = Catalog::embedded();
        // heart rate normal 51–90: 100 is 10 outside a range 39 wide.
        let events = twin.apply(catalog, &numeric("heart_rate", 100.0, 0, Some("p1")));
        let TwinEvent::Status(status) = &events[1] else {
            panic!("expected a status event, got {events:?}")
        };
        assert!((status.deviation - 10.0 / 39.0).abs() < 1e-9);
        assert_eq!(status.worst_metric.as_deref(), Some("heart_rate"));
        // SpO2 normal 96–100: 90 is beyond a whole width out, capped at 1.
        twin.apply(catalog, &numeric("spo2", 90.0, 0, Some("p1")));
        let status = twin.patient_status(&"p1".into()).unwrap();
        assert_eq!(
            (status.deviation, status.worst_metric.as_deref()),
            (1.0, Some("spo2"))
        );
    }

    #[test]
    fn stale_and_artefact_values_do_not_count() {
        let mut twin = LiveTwin::default();
        let catalog = Catalog::embedded();
        let mut artefact = numeric("spo2", 0.0, 0, Some("p1"));
        artefact.observation.quality.implausible = true;
        twin.apply(catalog, &artefact);
        assert_eq!(twin.patient_status(&"p1".into()).unwrap().deviation, 0.0);
        twin.apply(catalog, &numeric("heart_rate", 150.0, 0, Some("p1")));
        assert_eq!(twin.patient_status(&"p1".into()).unwrap().deviation, 1.0);
        let later = Timestamp(STATUS_FRESHNESS_MILLIS + 1);
        let status = twin.refresh_status(catalog, &"p1".into(), later).unwrap();
        assert_eq!(status.deviation, 0.0);
    }

    #[test]
    fn room_and_unassociated_values_are_kept_apart() {
        let mut twin = LiveTwin::default();
        let catalog = Catalog::embedded();
        let mut room = numeric("room_co2", 800.0, 0, None);
        room.attribution.room = Some("r1".into());
        twin.apply(catalog, &room);
        twin.apply(catalog, &numeric("spo2", 95.0, 0, None));
        assert_eq!(twin.room_values(&"r1".into()).count(), 1);
        assert_eq!(twin.unassociated().count(), 1);
        assert_eq!(twin.patients().count(), 0);
    }
}
