//! The clinical watch over a ward: what every accepted device message, every device coming and
//! going, and every second of passing time mean clinically. It keeps each patient's NEWS2
//! inputs and score and feeds the alarm engine; the server wraps it for the live ward, and
//! `metaward test-rules` drives the very same code from a timeline, so the shipped rules suite
//! tests what runs.
//!
//! - Physiological and environmental alarms come from trusted numerics of a patient or room.
//! - Artefacts never count as values; a message carrying one raises its device's artefact alarm.
//! - A device's battery level can raise its low-battery alarm; data from a device attributed to
//!   no one raises its unassociated-device alarm.
//! - NEWS2 is recomputed for a patient when one of its inputs arrives, and for every patient
//!   when time passes (an input growing stale must show); a change of band raises, re-prioritises
//!   or clears the patient's score alarm.

use std::collections::HashMap;

use model::{Catalog, DeviceId, Observation, ObservedValue, PatientId, RoomId, Timestamp};

use crate::alarms::{AlarmEngine, AlarmEvent, AlarmSubject, Priority};
use crate::news2::{
    Band, News2Calculator, News2Config, News2Input, News2Result, Parameter, RecordContext,
};

/// The catalog key of a device's own battery level.
pub const BATTERY_METRIC: &str = "battery";

/// Inputs kept per parameter and patient, at most; at one value a second for an hour's window
/// this keeps the last minute, and the latest usable value is what counts.
const MAX_INPUTS_PER_PARAMETER: usize = 64;

/// One observation of a message with whom it was attributed to.
#[derive(Clone, Copy, Debug)]
pub struct Measured<'a> {
    pub observation: &'a Observation,
    pub patient: Option<&'a PatientId>,
    pub room: Option<&'a RoomId>,
    /// Attributed to no patient, bed or room.
    pub unassociated: bool,
}

/// What a change meant: alarm events in order, and the scores that changed.
#[derive(Debug, Default)]
pub struct Judged {
    pub alarm_events: Vec<AlarmEvent>,
    pub scores: Vec<(PatientId, News2Result)>,
}

impl Judged {
    pub fn is_empty(&self) -> bool {
        self.alarm_events.is_empty() && self.scores.is_empty()
    }
}

/// The score alarm a NEWS2 band raises (Chart 4: low-medium, medium, high need a response).
pub fn band_alarm_priority(band: Band) -> Option<Priority> {
    match band {
        Band::Zero | Band::Low => None,
        Band::LowMedium => Some(Priority::Low),
        Band::Medium => Some(Priority::Medium),
        Band::High => Some(Priority::High),
    }
}

#[derive(Debug)]
pub struct ClinicalWatch {
    catalog: &'static Catalog,
    pub alarms: AlarmEngine,
    news2: News2Calculator,
    inputs: HashMap<PatientId, Vec<News2Input>>,
    contexts: HashMap<PatientId, RecordContext>,
    scores: HashMap<PatientId, News2Result>,
}

impl Default for ClinicalWatch {
    fn default() -> Self {
        ClinicalWatch::new(AlarmEngine::default(), News2Config::default())
    }
}

impl ClinicalWatch {
    pub fn new(alarms: AlarmEngine, news2: News2Config) -> ClinicalWatch {
        ClinicalWatch {
            catalog: Catalog::embedded(),
            alarms,
            news2: News2Calculator::new(news2),
            inputs: HashMap::new(),
            contexts: HashMap::new(),
            scores: HashMap::new(),
        }
    }

    /// What the record says about each patient (replaces what was known).
    pub fn set_contexts(&mut self, contexts: HashMap<PatientId, RecordContext>) {
        self.contexts = contexts;
    }

    pub fn set_context(&mut self, patient: &PatientId, context: RecordContext) {
        self.contexts.insert(patient.clone(), context);
    }

    /// A patient's latest NEWS2, if any of its inputs has arrived.
    pub fn score(&self, patient: &PatientId) -> Option<&News2Result> {
        self.scores.get(patient)
    }

    pub fn scores(&self) -> impl Iterator<Item = (&PatientId, &News2Result)> {
        self.scores.iter()
    }

    /// A patient's NEWS2 computed at `now` from the inputs held, whether or not anything
    /// changed (for checking by hand and rules files).
    pub fn news2_at(&self, patient: &PatientId, now: Timestamp) -> News2Result {
        let inputs = self.inputs.get(patient).map_or(&[][..], Vec::as_slice);
        let context = self.contexts.get(patient).cloned().unwrap_or_default();
        self.news2.score(inputs, &context, now)
    }

    /// One accepted device message.
    pub fn message(
        &mut self,
        device: &DeviceId,
        received: Timestamp,
        measured: &[Measured<'_>],
    ) -> Judged {
        let mut judged = Judged::default();
        let mut artefact = false;
        let mut touched: Vec<PatientId> = Vec::new();
        for item in measured {
            let observation = item.observation;
            if let Some(patient) = item.patient
                && let Some(input) = News2Input::from_observation(observation, self.catalog)
            {
                self.inputs.entry(patient.clone()).or_default().push(input);
                if !touched.contains(patient) {
                    touched.push(patient.clone());
                }
            }
            if observation.quality.is_artefact() {
                artefact = true;
                continue;
            }
            let ObservedValue::Numeric(value) = observation.value else {
                continue;
            };
            let time = observation.device_time;
            let events = if observation.metric == BATTERY_METRIC {
                self.alarms.battery(device, value, time)
            } else if let Some(patient) = item.patient {
                let subject = AlarmSubject::Patient(patient.clone());
                self.alarms
                    .observe(&subject, &observation.metric, value, time)
            } else if let Some(room) = item.room {
                let subject = AlarmSubject::Room(room.clone());
                self.alarms
                    .observe(&subject, &observation.metric, value, time)
            } else {
                Vec::new()
            };
            judged.alarm_events.extend(events);
        }
        if !measured.is_empty() {
            let alarms = &mut self.alarms;
            judged
                .alarm_events
                .extend(alarms.artefact(device, artefact, received));
            let unassociated = measured.iter().all(|item| item.unassociated);
            judged
                .alarm_events
                .extend(alarms.unassociated(device, unassociated, received));
        }
        self.rescore(&touched, received, &mut judged);
        judged
    }

    /// A device came online or went offline.
    pub fn device_online(&mut self, device: &DeviceId, online: bool, at: Timestamp) -> Judged {
        Judged {
            alarm_events: self.alarms.device_online(device, online, at),
            scores: Vec::new(),
        }
    }

    /// Time passed: escalations and silences, and scores whose inputs grew stale.
    pub fn tick(&mut self, now: Timestamp) -> Judged {
        let mut judged = Judged {
            alarm_events: self.alarms.tick(now),
            scores: Vec::new(),
        };
        let patients: Vec<PatientId> = self.inputs.keys().cloned().collect();
        self.rescore(&patients, now, &mut judged);
        judged
    }

    /// Recomputes the patients' scores at `now`; keeps what changed and alarms on band changes.
    fn rescore(&mut self, patients: &[PatientId], now: Timestamp, judged: &mut Judged) {
        for patient in patients {
            self.forget_old_inputs(patient, now);
            let Some(inputs) = self.inputs.get(patient) else {
                continue;
            };
            // A device clock a little ahead of ours must not make its value "in the future".
            let latest = inputs.iter().map(|i| i.time).max().unwrap_or(now);
            let context = self.contexts.get(patient).cloned().unwrap_or_default();
            let result = self.news2.score(inputs, &context, now.max(latest));
            let held = self.scores.get(patient);
            if held.is_some_and(|held| same_on_chart(held, &result)) {
                continue;
            }
            let band_changed = held.is_none_or(|held| held.band != result.band);
            if band_changed {
                let message = format!(
                    "NEWS2 {}{} ({} clinical risk)",
                    result.total,
                    if result.complete { "" } else { " or more" },
                    result.band.clinical_risk()
                );
                let priority = band_alarm_priority(result.band);
                judged.alarm_events.extend(self.alarms.score(
                    patient,
                    "news2",
                    priority,
                    &message,
                    Some(f64::from(result.total)),
                    now,
                ));
            }
            self.scores.insert(patient.clone(), result.clone());
            judged.scores.push((patient.clone(), result));
        }
    }

    /// Drops inputs too old to count for any window, and the oldest beyond the per-parameter cap.
    fn forget_old_inputs(&mut self, patient: &PatientId, now: Timestamp) {
        let config = self.news2.config();
        let longest_window = Parameter::ALL
            .into_iter()
            .map(|parameter| config.freshness_millis(parameter))
            .max()
            .unwrap_or(0);
        let Some(inputs) = self.inputs.get_mut(patient) else {
            return;
        };
        // The newest input of each parameter always stays, so that an old one is reported as
        // stale (with its age), never as missing.
        let mut newest: HashMap<Parameter, Timestamp> = HashMap::new();
        for input in inputs.iter() {
            let held = newest.entry(input.parameter).or_insert(input.time);
            *held = (*held).max(input.time);
        }
        inputs.retain(|input| {
            now.since(input.time) <= longest_window || newest[&input.parameter] == input.time
        });
        for parameter in Parameter::ALL {
            let count = inputs.iter().filter(|i| i.parameter == parameter).count();
            if count > MAX_INPUTS_PER_PARAMETER {
                let mut times: Vec<Timestamp> = inputs
                    .iter()
                    .filter(|i| i.parameter == parameter)
                    .map(|i| i.time)
                    .collect();
                times.sort();
                let cutoff = times[count - MAX_INPUTS_PER_PARAMETER];
                inputs.retain(|i| i.parameter != parameter || i.time >= cutoff);
            }
        }
    }
}

/// Two results that would look the same on a chart: same total, band, scale, completeness
/// and per-parameter outcome.
fn same_on_chart(a: &News2Result, b: &News2Result) -> bool {
    a.total == b.total
        && a.band == b.band
        && a.complete == b.complete
        && a.scale == b.scale
        && a.parameters.iter().zip(&b.parameters).all(|(x, y)| {
            x.outcome.sub_score() == y.outcome.sub_score()
                && x.outcome.reason_key() == y.outcome.reason_key()
        })
}
