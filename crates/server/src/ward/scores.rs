//! NEWS2 in the live ward: each patient's score is recomputed whenever one of its inputs
//! arrives, and every second so that a value growing stale shows as such. A changed result is
//! streamed, stored as history and, by its band, raises or clears the patient's score alarm.
//!
//! Also here: each body region's status, which reads the score, the alarms and the values.
//!
//! The record's context (diagnoses for the SpO2 scale) comes from the directory; inputs are
//! kept per patient for as long as the longest freshness window, so an artefact arriving after
//! a good value never hides the good one.

use std::collections::HashMap;

use clinical::alarms::{AlarmCondition, AlarmSubject, Priority};
use clinical::regions::{RegionStatus, RegionValue, SitedCondition, region_statuses};
use clinical::{
    Band, CodedCondition, News2Input, News2Result, Parameter, ParameterOutcome, RecordContext,
};
use model::{PatientId, Timestamp};
use twin::Attributed;

use super::Live;
use crate::directory::Directory;
use crate::hub::WardEvent;

/// Inputs kept per parameter and patient, at most; at one value a second for an hour's window
/// this keeps the last minute, and the latest usable value is what counts.
const MAX_INPUTS_PER_PARAMETER: usize = 64;

/// The score alarm a NEWS2 band raises (Chart 4: low-medium, medium, high need a response).
pub fn band_alarm_priority(band: Band) -> Option<Priority> {
    match band {
        Band::Zero | Band::Low => None,
        Band::LowMedium => Some(Priority::Low),
        Band::Medium => Some(Priority::Medium),
        Band::High => Some(Priority::High),
    }
}

/// The record context of every patient in the directory: their active conditions.
pub fn contexts_of(directory: &Directory) -> HashMap<PatientId, RecordContext> {
    directory
        .patients
        .iter()
        .map(|patient| {
            let conditions = patient
                .conditions
                .iter()
                .map(|condition| CodedCondition {
                    system: condition.system.clone(),
                    code: condition.code.clone(),
                })
                .collect();
            (
                PatientId::new(&patient.id),
                RecordContext {
                    conditions,
                    oxygen_target: None,
                },
            )
        })
        .collect()
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

impl super::Ward {
    /// The status of each body region of a patient at `now` (see `clinical::regions`): the
    /// latest values with their NEWS2 sub-scores and active alarms, and the conditions sited.
    pub fn patient_regions(&self, patient: &PatientId, now: Timestamp) -> Vec<RegionStatus> {
        let directory = self.directory();
        let conditions: Vec<SitedCondition> = directory
            .patients
            .iter()
            .find(|p| p.id == patient.as_str())
            .map(|p| {
                p.conditions
                    .iter()
                    .map(|c| SitedCondition {
                        code: c.code.clone(),
                        display: c.display.clone(),
                        regions: c.regions.iter().filter_map(|r| r.parse().ok()).collect(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let live = self.live.lock().expect("live lock");
        let score = live.news2_scores.get(patient);
        let values: Vec<RegionValue> = live
            .twin
            .patient_values(patient)
            .filter_map(|value| {
                let region = value.region?;
                let news2_sub_score = score.and_then(|score| {
                    score.parameters.iter().find_map(|p| match &p.outcome {
                        ParameterOutcome::Scored {
                            sub_score,
                            metric,
                            time,
                            ..
                        } if *metric == value.metric && *time == value.device_time => {
                            Some(*sub_score)
                        }
                        _ => None,
                    })
                });
                let alarm = live
                    .alarms
                    .active()
                    .into_iter()
                    .filter(|alarm| match (&alarm.subject, &alarm.condition) {
                        (
                            AlarmSubject::Patient(p),
                            AlarmCondition::Physiological { metric, .. },
                        ) => p == patient && *metric == value.metric,
                        _ => false,
                    })
                    .map(|alarm| alarm.priority)
                    .max();
                Some(RegionValue {
                    metric: value.metric.clone(),
                    value: value.value,
                    region,
                    time: value.device_time,
                    artefact: value.artefact,
                    news2_sub_score,
                    alarm,
                })
            })
            .collect();
        region_statuses(self.catalog, &values, &conditions, now)
    }
}

impl Live {
    /// Keeps the NEWS2 inputs among a message's observations; returns the patients concerned.
    pub(super) fn keep_news2_inputs(
        &mut self,
        catalog: &model::Catalog,
        observations: &[Attributed],
    ) -> Vec<PatientId> {
        let mut touched = Vec::new();
        for attributed in observations {
            let Some(patient) = &attributed.attribution.patient else {
                continue;
            };
            let Some(input) = News2Input::from_observation(&attributed.observation, catalog) else {
                continue;
            };
            let inputs = self.news2_inputs.entry(patient.clone()).or_default();
            inputs.push(input);
            if !touched.contains(patient) {
                touched.push(patient.clone());
            }
        }
        touched
    }

    /// Recomputes the patients' scores at `now`; streams, stores and alarms on what changed.
    pub(super) fn rescore(&mut self, patients: &[PatientId], now: Timestamp) {
        let mut changed = Vec::new();
        for patient in patients {
            self.forget_old_inputs(patient, now);
            let Some(inputs) = self.news2_inputs.get(patient) else {
                continue;
            };
            let context = self
                .news2_contexts
                .get(patient)
                .cloned()
                .unwrap_or_default();
            // A device clock a little ahead of ours must not make its value "in the future".
            let latest = inputs.iter().map(|i| i.time).max().unwrap_or(now);
            let result = self.news2.score(inputs, &context, now.max(latest));
            let unchanged = self
                .news2_scores
                .get(patient)
                .is_some_and(|held| same_on_chart(held, &result));
            if unchanged {
                continue;
            }
            let band_changed = self
                .news2_scores
                .get(patient)
                .is_none_or(|held| held.band != result.band);
            self.news2_scores.insert(patient.clone(), result.clone());
            if band_changed {
                let message = format!(
                    "NEWS2 {}{} ({} clinical risk)",
                    result.total,
                    if result.complete { "" } else { " or more" },
                    result.band.clinical_risk()
                );
                let events = self.alarms.score(
                    patient,
                    "news2",
                    band_alarm_priority(result.band),
                    &message,
                    now,
                );
                self.record_and_publish(events, None);
            }
            changed.push((patient.clone(), result));
        }
        if changed.is_empty() {
            return;
        }
        let events: Vec<WardEvent> = changed
            .iter()
            .map(|(patient, result)| WardEvent::Score {
                patient: patient.clone(),
                result: Box::new(result.clone()),
            })
            .collect();
        self.record_scores(changed);
        self.publish(&events);
    }

    /// Drops inputs too old to count for any window, and the oldest beyond the per-parameter cap.
    fn forget_old_inputs(&mut self, patient: &PatientId, now: Timestamp) {
        let config = self.news2.config();
        let longest_window = Parameter::ALL
            .into_iter()
            .map(|parameter| config.freshness_millis(parameter))
            .max()
            .unwrap_or(0);
        let Some(inputs) = self.news2_inputs.get_mut(patient) else {
            return;
        };
        inputs.retain(|input| now.since(input.time) <= longest_window);
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
