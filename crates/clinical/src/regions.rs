//! The status of each avatar body region, for the 3D view: what the values measured there and
//! the conditions sited there say, worst first, with the reasons.
//!
//! - `critical`: a fresh value there scores 3 in NEWS2, or has an active high-priority alarm;
//! - `abnormal`: a fresh value there is outside the catalog's normal range, scores 1–2 in
//!   NEWS2, or has an active low- or medium-priority alarm;
//! - `condition`: a diagnosis on the record is sited there (and no value says worse);
//! - `normal`: fresh trusted values there, all within range.
//!
//! Regions with nothing measured or sited are left out: unknown is not normal. Artefacts and
//! stale values never make a region normal or abnormal; they are listed as reasons, so the
//! view can say why a region shows nothing.

use std::collections::BTreeMap;

use model::{BodyRegion, Catalog, Timestamp};

use crate::alarms::Priority;

/// How old a value may be and still speak for its region: the twin's status freshness.
pub const REGION_FRESHNESS_MS: i64 = 10 * 60 * 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RegionState {
    Normal,
    Condition,
    Abnormal,
    Critical,
}

impl RegionState {
    pub fn key(self) -> &'static str {
        match self {
            RegionState::Normal => "normal",
            RegionState::Condition => "condition",
            RegionState::Abnormal => "abnormal",
            RegionState::Critical => "critical",
        }
    }
}

/// A latest value at a region.
#[derive(Clone, Debug, PartialEq)]
pub struct RegionValue {
    pub metric: String,
    pub value: f64,
    pub region: BodyRegion,
    pub time: Timestamp,
    pub artefact: bool,
    /// Its NEWS2 sub-score, when it is the value the current score used.
    pub news2_sub_score: Option<u8>,
    /// The priority of an active physiological alarm on this metric, if any.
    pub alarm: Option<Priority>,
}

/// A diagnosis sited at one or more regions.
#[derive(Clone, Debug, PartialEq)]
pub struct SitedCondition {
    pub code: String,
    pub display: String,
    pub regions: Vec<BodyRegion>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum RegionReason {
    Value {
        metric: String,
        value: f64,
        /// What this value alone says.
        state: RegionState,
        why: &'static str,
    },
    Unusable {
        metric: String,
        why: &'static str,
    },
    Condition {
        code: String,
        display: String,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct RegionStatus {
    pub region: BodyRegion,
    pub state: RegionState,
    pub reasons: Vec<RegionReason>,
}

/// The status of every region something is known about, ordered by region.
pub fn region_statuses(
    catalog: &Catalog,
    values: &[RegionValue],
    conditions: &[SitedCondition],
    now: Timestamp,
) -> Vec<RegionStatus> {
    let mut regions: Regions = BTreeMap::new();
    for value in values {
        let held = entry(&mut regions, value.region);
        let unusable = if value.artefact {
            Some("flagged as an artefact")
        } else if now.since(value.time) > REGION_FRESHNESS_MS {
            Some("older than 10 minutes")
        } else {
            None
        };
        if let Some(why) = unusable {
            held.2.push(RegionReason::Unusable {
                metric: value.metric.clone(),
                why,
            });
            continue;
        }
        let (state, why) = judge(catalog, value);
        held.1 = held.1.max(Some(state));
        held.2.push(RegionReason::Value {
            metric: value.metric.clone(),
            value: value.value,
            state,
            why,
        });
    }
    for condition in conditions {
        for region in &condition.regions {
            let held = entry(&mut regions, *region);
            held.1 = held.1.max(Some(RegionState::Condition));
            held.2.push(RegionReason::Condition {
                code: condition.code.clone(),
                display: condition.display.clone(),
            });
        }
    }
    regions
        .into_values()
        .filter_map(|(region, state, reasons)| {
            // A region known only through unusable values has no status, but keeps its reasons.
            Some(RegionStatus {
                region,
                state: state?,
                reasons,
            })
        })
        .collect()
}

type Regions = BTreeMap<String, (BodyRegion, Option<RegionState>, Vec<RegionReason>)>;

fn entry(
    regions: &mut Regions,
    region: BodyRegion,
) -> &mut (BodyRegion, Option<RegionState>, Vec<RegionReason>) {
    regions
        .entry(region.to_string())
        .or_insert_with(|| (region, None, Vec::new()))
}

/// What one trusted, fresh value says about its region.
fn judge(catalog: &Catalog, value: &RegionValue) -> (RegionState, &'static str) {
    match (value.alarm, value.news2_sub_score) {
        (Some(Priority::High), _) => return (RegionState::Critical, "high-priority alarm"),
        (_, Some(3)) => return (RegionState::Critical, "scores 3 in NEWS2"),
        (Some(_), _) => return (RegionState::Abnormal, "active alarm"),
        (_, Some(1 | 2)) => return (RegionState::Abnormal, "scores in NEWS2"),
        _ => {}
    }
    let normal = catalog
        .by_key(&value.metric)
        .and_then(|metric| metric.normal);
    match normal {
        Some(range) if value.value < range.low => (RegionState::Abnormal, "below normal"),
        Some(range) if value.value > range.high => (RegionState::Abnormal, "above normal"),
        _ => (RegionState::Normal, "within normal"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{BodyPart, Side};

    fn value(metric: &str, v: f64, region: BodyRegion) -> RegionValue {
        RegionValue {
            metric: metric.into(),
            value: v,
            region,
            time: Timestamp(1_000),
            artefact: false,
            news2_sub_score: None,
            alarm: None,
        }
    }

    fn heart() -> BodyRegion {
        BodyRegion::new(BodyPart::Heart, None)
    }

    fn left_finger() -> BodyRegion {
        BodyRegion::new(BodyPart::Finger, Some(Side::Left))
    }

    fn left_lung() -> BodyRegion {
        BodyRegion::new(BodyPart::Lung, Some(Side::Left))
    }

    #[test]
    fn the_worst_value_decides_and_every_reason_is_kept() {
        let catalog = Catalog::embedded();
        let mut hr = value("heart_rate", 72.0, heart());
        hr.news2_sub_score = Some(0);
        let mut spo2 = value("spo2", 90.0, left_finger());
        spo2.news2_sub_score = Some(3);
        let statuses = region_statuses(catalog, &[hr, spo2], &[], Timestamp(2_000));
        let finger = statuses.iter().find(|s| s.region == left_finger()).unwrap();
        assert_eq!(finger.state, RegionState::Critical);
        let heart = statuses.iter().find(|s| s.region == heart()).unwrap();
        assert_eq!(heart.state, RegionState::Normal);
        assert_eq!(statuses.len(), 2, "nothing known elsewhere");
    }

    #[test]
    fn outside_the_normal_range_is_abnormal_and_alarms_count() {
        let catalog = Catalog::embedded();
        let statuses = region_statuses(
            catalog,
            &[value("heart_rate", 118.0, heart())],
            &[],
            Timestamp(2_000),
        );
        assert_eq!(statuses[0].state, RegionState::Abnormal);
        let mut alarmed = value("heart_rate", 118.0, heart());
        alarmed.alarm = Some(Priority::High);
        let statuses = region_statuses(catalog, &[alarmed], &[], Timestamp(2_000));
        assert_eq!(statuses[0].state, RegionState::Critical);
    }

    #[test]
    fn a_condition_marks_its_region_unless_a_value_says_worse() {
        let catalog = Catalog::embedded();
        let copd = SitedCondition {
            code: "13645005".into(),
            display: "COPD".into(),
            regions: vec![left_lung()],
        };
        let statuses = region_statuses(catalog, &[], std::slice::from_ref(&copd), Timestamp(0));
        assert_eq!(statuses[0].state, RegionState::Condition);
        let mut rr = value("respiration_rate", 26.0, left_lung());
        rr.news2_sub_score = Some(3);
        let statuses = region_statuses(catalog, &[rr], &[copd], Timestamp(2_000));
        assert_eq!(statuses[0].state, RegionState::Critical);
        assert_eq!(statuses[0].reasons.len(), 2);
    }

    #[test]
    fn artefacts_and_stale_values_speak_for_nothing() {
        let catalog = Catalog::embedded();
        let mut artefact = value("spo2", 40.0, left_finger());
        artefact.artefact = true;
        let stale = value("heart_rate", 150.0, heart());
        let statuses = region_statuses(
            catalog,
            &[artefact, stale],
            &[],
            Timestamp(1_000 + REGION_FRESHNESS_MS + 1),
        );
        assert!(statuses.is_empty(), "{statuses:?}");
    }
}
