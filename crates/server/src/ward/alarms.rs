//! Where what the clinical watch (`clinical::watch`) judged goes: alarm events and changed
//! scores to the store (through the [`ClinicalRecorder`], in order) and to subscribers; and the
//! API's changes to alarms (acknowledge, silence, delivered, patients' limits).
//!
//! Alarm events are few and none may be lost, so the recorder's channel is unbounded on
//! purpose: bounding it would mean either blocking the ingest path under the ward lock or
//! dropping alarms.

use clinical::News2Result;
use clinical::alarms::{Alarm, AlarmEngine, AlarmError, AlarmEvent, AlarmSubject, MetricLimits};
use clinical::watch::Judged;
use model::{PatientId, Timestamp};
use tokio::sync::{mpsc, oneshot};
use twin::Attribution;

use super::{Live, Ward};
use crate::hub::WardEvent;

/// Alarm events and changed scores on their way to the store; `durable` is told once they are
/// written (or not).
#[derive(Default)]
pub struct ClinicalWrite {
    pub alarm_events: Vec<AlarmEvent>,
    pub scores: Vec<(PatientId, News2Result)>,
    pub durable: Option<oneshot::Sender<bool>>,
}

pub type ClinicalRecorder = mpsc::UnboundedSender<ClinicalWrite>;

/// What a change made through the API did: the alarm as it is now, and whether its events
/// reached the store.
pub struct AlarmChange {
    pub alarm: Alarm,
    pub durable: oneshot::Receiver<bool>,
}

impl Live {
    /// Sends what the clinical watch judged to the store and to subscribers: alarm events in
    /// order, then the changed scores.
    pub(super) fn publish_judged(&mut self, judged: Judged) {
        self.record_and_publish(judged.alarm_events, None);
        if judged.scores.is_empty() {
            return;
        }
        let events: Vec<WardEvent> = judged
            .scores
            .iter()
            .map(|(patient, result)| WardEvent::Score {
                patient: patient.clone(),
                result: Box::new(result.clone()),
            })
            .collect();
        self.record_scores(judged.scores);
        self.publish(&events);
    }

    /// Where an alarm's events go: its patient or room, or for a device the place its latest
    /// data went.
    pub(super) fn alarm_attribution(&self, subject: &AlarmSubject) -> Attribution {
        match subject {
            AlarmSubject::Patient(patient) => Attribution {
                patient: Some(patient.clone()),
                ..Attribution::default()
            },
            AlarmSubject::Room(room) => Attribution {
                room: Some(room.clone()),
                ..Attribution::default()
            },
            AlarmSubject::Device(device) => self
                .device_attribution
                .get(device)
                .cloned()
                .unwrap_or_default(),
        }
    }

    /// Sends alarm events to the store first, then to subscribers, in the order they happened.
    pub(super) fn record_and_publish(
        &mut self,
        events: Vec<AlarmEvent>,
        durable: Option<oneshot::Sender<bool>>,
    ) {
        if events.is_empty() {
            if let Some(durable) = durable {
                let _ = durable.send(true);
            }
            return;
        }
        let routed: Vec<WardEvent> = events
            .iter()
            .map(|event| WardEvent::Alarm {
                attribution: self.alarm_attribution(&event.alarm.subject),
                event: Box::new(event.clone()),
            })
            .collect();
        self.record(ClinicalWrite {
            alarm_events: events,
            durable,
            ..ClinicalWrite::default()
        });
        self.publish(&routed);
    }

    /// Sends changed scores to be stored as history.
    pub(super) fn record_scores(&mut self, scores: Vec<(PatientId, News2Result)>) {
        self.record(ClinicalWrite {
            scores,
            ..ClinicalWrite::default()
        });
    }

    fn record(&mut self, write: ClinicalWrite) {
        match &self.recorder {
            Some(recorder) => {
                if let Err(unsent) = recorder.send(write) {
                    tracing::error!(
                        "the clinical recorder has stopped; alarms and scores are not stored"
                    );
                    if let Some(durable) = unsent.0.durable {
                        let _ = durable.send(false);
                    }
                }
            }
            None => {
                if let Some(durable) = write.durable {
                    let _ = durable.send(false);
                }
            }
        }
    }
}

impl Ward {
    /// Connects the task that stores alarm events and scores. Until then (and in tests
    /// without a store) they are computed and streamed but not kept.
    pub fn connect_recorder(&self, recorder: ClinicalRecorder) {
        self.live.lock().expect("live lock").recorder = Some(recorder);
    }

    /// Changes an alarm through the engine (acknowledge, silence, mark delivered). The change
    /// is streamed at once; `durable` says when it is stored.
    pub fn change_alarm(
        &self,
        id: u64,
        change: impl FnOnce(&mut AlarmEngine) -> Result<Vec<AlarmEvent>, AlarmError>,
    ) -> Result<AlarmChange, AlarmError> {
        let mut live = self.live.lock().expect("live lock");
        let events = change(&mut live.clinical.alarms)?;
        let alarm = live
            .clinical
            .alarms
            .get(id)
            .cloned()
            .ok_or(AlarmError::NotFound(id))?;
        let (sender, durable) = oneshot::channel();
        live.record_and_publish(events, Some(sender));
        Ok(AlarmChange { alarm, durable })
    }

    /// Marks alarms as delivered: a live client has been sent them.
    pub fn alarms_delivered(&self, ids: &[u64], now: Timestamp) {
        let mut live = self.live.lock().expect("live lock");
        let mut events = Vec::new();
        for &id in ids {
            if let Ok(delivered) = live.clinical.alarms.delivered(id, now) {
                events.extend(delivered);
            }
        }
        live.record_and_publish(events, None);
    }

    /// Active alarms as the engine holds them, highest priority first.
    pub fn active_alarms(&self) -> Vec<Alarm> {
        let live = self.live.lock().expect("live lock");
        live.clinical.alarms.active().into_iter().cloned().collect()
    }

    /// Sets (or with `None` removes) a patient's own limits for a metric in the engine. The
    /// caller stores them.
    pub fn set_patient_alarm_limits(
        &self,
        patient: &PatientId,
        metric: &str,
        limits: Option<MetricLimits>,
    ) {
        let mut live = self.live.lock().expect("live lock");
        live.clinical
            .alarms
            .set_patient_limits(patient, metric, limits);
    }

    /// The limits in force for a patient's metric.
    pub fn patient_alarm_limits(&self, patient: &PatientId, metric: &str) -> Option<MetricLimits> {
        let live = self.live.lock().expect("live lock");
        live.clinical.alarms.limits_for(patient, metric).cloned()
    }
}
