//! The ward as the browser and the API present it: layout (wards, rooms, beds), the patients
//! in it with their conditions and the avatar regions those conditions sit in. Loaded from the
//! store; changed only through the store, then reloaded.

use std::collections::HashMap;

use model::{PatientId, RoomId, WardId};
use serde::Serialize;

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Directory {
    pub wards: Vec<WardView>,
    pub patients: Vec<PatientView>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WardView {
    pub id: String,
    pub name: String,
    pub rooms: Vec<RoomView>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RoomView {
    pub id: String,
    pub name: String,
    pub x: f64,
    pub z: f64,
    pub width: f64,
    pub depth: f64,
    pub beds: Vec<BedView>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BedView {
    pub id: String,
    pub label: String,
    pub x: f64,
    pub z: f64,
    pub rotation: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PatientView {
    pub id: String,
    pub name: String,
    pub birth_date: Option<String>,
    pub age: Option<u32>,
    pub sex: Option<String>,
    pub bed_id: Option<String>,
    /// The ward's own conditions, then the record's active ones (`source` tells which).
    pub conditions: Vec<ConditionView>,
    /// A clinician's prescribed target SpO2 range, `[low, high]` percent (NEWS2 scale).
    pub oxygen_target: Option<[f64; 2]>,
    /// From the record (a FHIR Patient with this id): active medications, allergies and
    /// intolerances, and the newest laboratory results first (see `record_ward`).
    pub medications: Vec<MedicationView>,
    pub allergies: Vec<AllergyView>,
    pub labs: Vec<LabView>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConditionView {
    pub system: String,
    pub code: String,
    pub display: String,
    pub regions: Vec<String>,
    /// `ward` (the ward setup, REST) or `record` (an active FHIR Condition).
    pub source: &'static str,
    /// The FHIR Condition's id when it comes from the record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_id: Option<String>,
    /// Every coding of the condition, the first first (the SpO2 scale rule matches any).
    pub codings: Vec<CodingView>,
}

/// A coding as the twin shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CodingView {
    pub system: String,
    pub code: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MedicationView {
    /// The FHIR resource it comes from: `MedicationRequest/…` or `MedicationStatement/…`.
    pub reference: String,
    pub display: String,
    pub coding: Option<CodingView>,
    pub dosage: Option<String>,
    pub since: Option<String>,
    /// `active` (MedicationRequest, MedicationStatement) or `intended` (MedicationStatement).
    pub status: String,
    /// The conditions it is given for (`reasonReference` to the patient's active Conditions,
    /// then `reasonCode`), as displays.
    pub reasons: Vec<String>,
    /// The avatar regions it relates to: its reasons' regions, else the drug table's
    /// (`twin::record_regions`); empty when neither places it.
    pub regions: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AllergyView {
    pub reference: String,
    pub display: String,
    pub coding: Option<CodingView>,
    pub criticality: Option<String>,
    pub category: Vec<String>,
    pub reactions: Vec<String>,
    pub recorded: Option<String>,
    /// `confirmed` or `unconfirmed`, when the record says.
    pub verification: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LabView {
    pub reference: String,
    pub display: String,
    pub coding: Option<CodingView>,
    pub value: Option<f64>,
    pub unit: Option<String>,
    pub text: Option<String>,
    pub effective: Option<String>,
    pub interpretation: Option<String>,
    /// The record's first reference range (`[low, high]`, either may be null) and its text.
    pub reference_range: Option<[Option<f64>; 2]>,
    pub reference_text: Option<String>,
    /// The interpretation code (v3 ObservationInterpretation), else `H`, `L` or `N` from the
    /// value against the reference range; null when neither says.
    pub flag: Option<String>,
    pub status: Option<String>,
    /// The avatar regions it relates to, by LOINC code (`twin::record_regions`); empty when
    /// the table does not place it (a result of the blood as a whole).
    pub regions: Vec<String>,
}

impl Directory {
    pub fn ward_of_room(&self) -> HashMap<RoomId, WardId> {
        self.wards
            .iter()
            .flat_map(|ward| {
                ward.rooms
                    .iter()
                    .map(|room| (RoomId::new(&room.id), WardId::new(&ward.id)))
            })
            .collect()
    }

    pub fn ward_of_patient(&self) -> HashMap<PatientId, WardId> {
        let mut bed_ward = HashMap::new();
        for ward in &self.wards {
            for room in &ward.rooms {
                for bed in &room.beds {
                    bed_ward.insert(bed.id.as_str(), WardId::new(&ward.id));
                }
            }
        }
        self.patients
            .iter()
            .filter_map(|patient| {
                let ward = bed_ward.get(patient.bed_id.as_deref()?)?;
                Some((PatientId::new(&patient.id), ward.clone()))
            })
            .collect()
    }
}

/// Whole years between a `YYYY-MM-DD` birth date and a `(year, month, day)` today.
pub fn age_on(birth_date: &str, today: (i32, u32, u32)) -> Option<u32> {
    let mut parts = birth_date.get(..10)?.split('-');
    let year: i32 = parts.next()?.parse().ok()?;
    let month: u32 = parts.next()?.parse().ok()?;
    let day: u32 = parts.next()?.parse().ok()?;
    let mut age = today.0 - year;
    if (today.1, today.2) < (month, day) {
        age -= 1;
    }
    u32::try_from(age).ok()
}

/// The civil date (UTC) of a millisecond timestamp.
pub fn civil_date(millis: i64) -> (i32, u32, u32) {
    let (year, month, day) = model::civil::civil_from_days(millis.div_euclid(86_400_000));
    (year as i32, month as u32, day as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_count_whole_years() {
        assert_eq!(age_on("1950-06-15", (2026, 6, 14)), Some(75));
        assert_eq!(age_on("1950-06-15", (2026, 6, 15)), Some(76));
        assert_eq!(age_on("bad", (2026, 1, 1)), None);
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(1_764_045_600_000), (2025, 11, 25));
        assert_eq!(civil_date(951_782_400_000), (2000, 2, 29));
    }
}
