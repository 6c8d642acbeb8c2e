//! Fan-out of twin events to live subscribers (WebSocket clients). Each subscriber has its own
//! small queue that never grows without bound: numeric values and statuses are coalesced to
//! the latest per subject and metric, and waveform chunks beyond a few seconds are skipped and
//! counted so the client can show a gap. Alarm events are the exception: each one is kept
//! for the subscriber, never coalesced or skipped (they are few, and none may be lost).
//! Publishing never waits for a slow subscriber.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use clinical::News2Result;
use clinical::alarms::AlarmEvent;
use model::{PatientId, WardId};

use crate::directory::PatientView;
use tokio::sync::Notify;
use twin::Attribution;
use twin::{DeviceHealth, PatientStatus, TwinEvent, ValueState};

/// What the hub routes: the twin's events and the alarms' events, each with the attribution
/// that decides who sees it.
#[derive(Clone, Debug)]
pub enum WardEvent {
    Twin(TwinEvent),
    Alarm {
        attribution: Attribution,
        event: Box<AlarmEvent>,
    },
    /// A patient's NEWS2 changed.
    Score {
        patient: PatientId,
        result: Box<News2Result>,
    },
    /// What the ward shows of a patient changed (their record: conditions, medications,
    /// allergies, labs; their bed): the new view, routed to `ward`, the patient's ward now. `None`
    /// as the view says the patient left `ward` (moved to another ward, or is no longer
    /// listed), so its subscribers drop them.
    Patient {
        patient: PatientId,
        ward: Option<WardId>,
        view: Option<Box<PatientView>>,
    },
    /// A round note was written about the patient (as `GET /api/v1/rounds/notes` lists it), so
    /// the clinicians at other screens see it appear.
    Note {
        patient: PatientId,
        note: Box<serde_json::Value>,
    },
}

/// Waveform chunks a subscriber may have waiting; at one chunk per second per signal this is a
/// few seconds of a whole ward, enough to ride out a hiccup, small enough to stay live.
const MAX_QUEUED_WAVEFORMS: usize = 256;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub ward: Option<WardId>,
    pub patient: Option<PatientId>,
    /// The wards the subscriber may see (`None`: all): the signed-in user's scope, which the
    /// client cannot widen. An event in no ward goes only to subscribers of every ward.
    pub scope: Option<Vec<WardId>>,
}

impl Filter {
    pub fn in_scope(&self, ward: Option<&WardId>) -> bool {
        match &self.scope {
            None => true,
            Some(wards) => ward.is_some_and(|ward| wards.contains(ward)),
        }
    }
}

#[derive(Debug, Default)]
pub struct Pending {
    /// Latest value per (patient or room or device, metric), in arrival order of the key.
    pub values: Vec<(Attribution, ValueState)>,
    value_index: HashMap<(Attribution, String), usize>,
    pub statuses: Vec<PatientStatus>,
    /// Devices that came online or went offline, the latest change per device.
    pub devices: Vec<DeviceHealth>,
    pub waveforms: VecDeque<TwinEvent>,
    /// Every alarm event, in order.
    pub alarms: Vec<AlarmEvent>,
    /// The latest NEWS2 per patient.
    pub scores: Vec<(PatientId, News2Result)>,
    /// The latest view per patient whose view changed (`None`: gone from this subscriber's wards).
    pub patients: Vec<(PatientId, Option<PatientView>)>,
    /// Round notes written since, oldest first.
    pub notes: Vec<serde_json::Value>,
    pub skipped_waveforms: u64,
    pub coalesced_values: u64,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
            && self.statuses.is_empty()
            && self.devices.is_empty()
            && self.waveforms.is_empty()
            && self.alarms.is_empty()
            && self.scores.is_empty()
            && self.patients.is_empty()
            && self.notes.is_empty()
            && self.skipped_waveforms == 0
    }

    fn push(&mut self, event: &WardEvent) {
        let event = match event {
            WardEvent::Alarm { event, .. } => {
                self.alarms.push((**event).clone());
                return;
            }
            WardEvent::Score { patient, result } => {
                match self.scores.iter_mut().find(|(held, _)| held == patient) {
                    Some(held) => held.1 = (**result).clone(),
                    None => self.scores.push((patient.clone(), (**result).clone())),
                }
                return;
            }
            WardEvent::Patient { patient, view, .. } => {
                let view = view.as_deref().cloned();
                match self.patients.iter_mut().find(|(held, _)| held == patient) {
                    Some(held) => held.1 = view,
                    None => self.patients.push((patient.clone(), view)),
                }
                return;
            }
            WardEvent::Note { note, .. } => {
                self.notes.push((**note).clone());
                return;
            }
            WardEvent::Twin(event) => event,
        };
        match event {
            TwinEvent::Value { attribution, value } => {
                let key = (attribution.clone(), value.metric.clone());
                match self.value_index.get(&key) {
                    Some(&i) => {
                        self.values[i].1 = value.clone();
                        self.coalesced_values += 1;
                    }
                    None => {
                        self.value_index.insert(key, self.values.len());
                        self.values.push((attribution.clone(), value.clone()));
                    }
                }
            }
            TwinEvent::Status(status) => {
                match self
                    .statuses
                    .iter_mut()
                    .find(|held| held.patient == status.patient)
                {
                    Some(held) => *held = status.clone(),
                    None => self.statuses.push(status.clone()),
                }
            }
            TwinEvent::Device { health, .. } => {
                match self
                    .devices
                    .iter_mut()
                    .find(|held| held.device_id == health.device_id)
                {
                    Some(held) => *held = health.clone(),
                    None => self.devices.push(health.clone()),
                }
            }
            TwinEvent::Waveform { .. } => {
                if self.waveforms.len() == MAX_QUEUED_WAVEFORMS {
                    self.waveforms.pop_front();
                    self.skipped_waveforms += 1;
                }
                self.waveforms.push_back(event.clone());
            }
        }
    }
}

/// One subscriber's queue; the WebSocket task drains it with [`Subscriber::next`].
#[derive(Debug, Default)]
pub struct Subscriber {
    pending: Mutex<Pending>,
    notify: Notify,
}

impl Subscriber {
    /// Waits until something is pending, then takes all of it.
    pub async fn next(&self) -> Pending {
        loop {
            let notified = self.notify.notified();
            {
                let mut pending = self.pending.lock().expect("subscriber lock");
                if !pending.is_empty() {
                    return std::mem::take(&mut *pending);
                }
            }
            notified.await;
        }
    }

    fn push(&self, event: &WardEvent) {
        self.pending.lock().expect("subscriber lock").push(event);
        self.notify.notify_one();
    }
}

/// Who is subscribed, with what filter. Events are routed here under the ward lock, so a
/// subscriber's snapshot and its first events never overlap or leave a gap.
#[derive(Default)]
pub struct Hub {
    subscribers: Vec<(Filter, std::sync::Weak<Subscriber>)>,
}

impl Hub {
    pub fn subscribe(&mut self, filter: Filter) -> Arc<Subscriber> {
        let subscriber = Arc::new(Subscriber::default());
        self.subscribers.push((filter, Arc::downgrade(&subscriber)));
        subscriber
    }

    /// Routes events; `ward_of` says which ward an attribution belongs to.
    pub fn publish(
        &mut self,
        events: &[WardEvent],
        ward_of: impl Fn(&Attribution) -> Option<WardId>,
    ) {
        self.subscribers.retain(|(_, weak)| weak.strong_count() > 0);
        for event in events {
            let attribution = match event {
                WardEvent::Twin(
                    TwinEvent::Value { attribution, .. }
                    | TwinEvent::Waveform { attribution, .. }
                    | TwinEvent::Device { attribution, .. },
                )
                | WardEvent::Alarm { attribution, .. } => attribution.clone(),
                WardEvent::Score { patient, .. } => Attribution {
                    patient: Some(patient.clone()),
                    ..Attribution::default()
                },
                WardEvent::Twin(TwinEvent::Status(status)) => Attribution {
                    patient: Some(status.patient.clone()),
                    ..Attribution::default()
                },
                WardEvent::Patient { patient, .. } | WardEvent::Note { patient, .. } => {
                    Attribution {
                        patient: Some(patient.clone()),
                        ..Attribution::default()
                    }
                }
            };
            // A patient's view names its ward itself: when they move, the old ward hears they left.
            let ward = match event {
                WardEvent::Patient { ward, .. } => ward.clone(),
                _ => ward_of(&attribution),
            };
            for (filter, weak) in &self.subscribers {
                let wants = filter
                    .patient
                    .as_ref()
                    .is_none_or(|p| attribution.patient.as_ref() == Some(p))
                    && filter
                        .ward
                        .as_ref()
                        .is_none_or(|w| ward.as_ref() == Some(w))
                    && filter.in_scope(ward.as_ref());
                if wants && let Some(subscriber) = weak.upgrade() {
                    subscriber.push(event);
                }
            }
        }
    }

    pub fn subscriber_count(&self) -> usize {
        self.subscribers
            .iter()
            .filter(|(_, weak)| weak.strong_count() > 0)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::Timestamp;

    fn value(patient: &str, metric: &str, v: f64) -> WardEvent {
        WardEvent::Twin(TwinEvent::Value {
            attribution: Attribution {
                patient: Some(patient.into()),
                ..Attribution::default()
            },
            value: ValueState {
                metric: metric.into(),
                value: v,
                device_time: Timestamp(0),
                received_time: Timestamp(0),
                device_id: "d".into(),
                region: None,
                artefact: false,
            },
        })
    }

    fn waveform(patient: &str) -> WardEvent {
        WardEvent::Twin(TwinEvent::Waveform {
            attribution: Attribution {
                patient: Some(patient.into()),
                ..Attribution::default()
            },
            metric: "ecg_ii".into(),
            start: Timestamp(0),
            sample_rate_hz: 250.0,
            samples: vec![0.0; 250],
            region: None,
        })
    }

    #[tokio::test]
    async fn a_slow_subscriber_gets_the_latest_values_not_a_backlog() {
        let mut hub = Hub::default();
        let subscriber = hub.subscribe(Filter::default());
        for i in 0..1000 {
            hub.publish(
                &[
                    value("p1", "heart_rate", f64::from(i)),
                    value("p2", "heart_rate", 1.0),
                ],
                |_| None,
            );
        }
        for _ in 0..(MAX_QUEUED_WAVEFORMS + 10) {
            hub.publish(&[waveform("p1")], |_| None);
        }
        let pending = subscriber.next().await;
        assert_eq!(pending.values.len(), 2);
        assert_eq!(pending.values[0].1.value, 999.0);
        assert_eq!(pending.coalesced_values, 2 * 999);
        assert_eq!(pending.waveforms.len(), MAX_QUEUED_WAVEFORMS);
        assert_eq!(pending.skipped_waveforms, 10);
    }

    #[tokio::test]
    async fn filters_route_by_patient_and_ward() {
        let mut hub = Hub::default();
        let only_p1 = hub.subscribe(Filter {
            patient: Some("p1".into()),
            ..Filter::default()
        });
        let only_w2 = hub.subscribe(Filter {
            ward: Some("w2".into()),
            ..Filter::default()
        });
        let scoped_w1 = hub.subscribe(Filter {
            scope: Some(vec!["w1".into()]),
            ..Filter::default()
        });
        let ward_of = |a: &Attribution| {
            a.patient.as_ref().map(|p| {
                if p.as_str() == "p1" {
                    "w1".into()
                } else {
                    "w2".into()
                }
            })
        };
        hub.publish(
            &[value("p1", "spo2", 95.0), value("p2", "spo2", 96.0)],
            ward_of,
        );
        let to_p1 = only_p1.next().await;
        let to_w2 = only_w2.next().await;
        assert_eq!(to_p1.values.len(), 1);
        assert_eq!(to_p1.values[0].0.patient, Some("p1".into()));
        assert_eq!(to_w2.values.len(), 1);
        assert_eq!(to_w2.values[0].0.patient, Some("p2".into()));
        let to_scoped = scoped_w1.next().await;
        assert_eq!(to_scoped.values.len(), 1, "only the wards in scope");
        assert_eq!(to_scoped.values[0].0.patient, Some("p1".into()));
    }

    #[test]
    fn dropped_subscribers_are_forgotten() {
        let mut hub = Hub::default();
        let subscriber = hub.subscribe(Filter::default());
        assert_eq!(hub.subscriber_count(), 1);
        drop(subscriber);
        hub.publish(&[value("p1", "spo2", 95.0)], |_| None);
        assert_eq!(hub.subscriber_count(), 0);
    }
}
