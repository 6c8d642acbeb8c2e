//! What the live ward tells the clinical watch about the record, and what it reads back for
//! the avatar: each patient's record context (diagnoses, for the NEWS2 SpO2 scale) from the
//! directory, and each body region's status from the values, the score and the alarms.
//! NEWS2 itself and the alarms are judged in `clinical::watch`.

use std::collections::HashMap;

use clinical::alarms::{AlarmCondition, AlarmSubject};
use clinical::regions::{RegionStatus, RegionValue, SitedCondition, region_statuses};
use clinical::{CodedCondition, OxygenTarget, ParameterOutcome, RecordContext};
use model::{PatientId, Timestamp};

use crate::directory::Directory;

/// The record context of every patient in the directory: their active conditions.
pub fn contexts_of(directory: &Directory) -> HashMap<PatientId, RecordContext> {
    directory
        .patients
        .iter()
        .map(|patient| {
            // Every coding of every condition, the ward's and the record's active ones: a
            // record condition coded in SNOMED CT and ICD-10-CM matches on either.
            let conditions = patient
                .conditions
                .iter()
                .flat_map(|condition| &condition.codings)
                .map(|coding| CodedCondition {
                    system: coding.system.clone(),
                    code: coding.code.clone(),
                })
                .collect();
            (
                PatientId::new(&patient.id),
                RecordContext {
                    conditions,
                    oxygen_target: patient.oxygen_target.map(|[low, high]| OxygenTarget {
                        low_percent: low,
                        high_percent: high,
                    }),
                },
            )
        })
        .collect()
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
        let score = live.clinical.score(patient);
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
                    .clinical
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
