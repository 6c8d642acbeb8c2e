//! The medical record in the live ward: Encounters at a bed admit and discharge (as the HL7
//! ADT feed does), and each ward patient's twin carries their record (active conditions with
//! their body regions, medications, allergies, recent labs), read from the FHIR store.
//!
//! The link is by id: the FHIR Patient `X` is the ward patient `X` (docs/emr.md). A patient an
//! Encounter admits who is not yet a ward patient becomes one, with the FHIR Patient's name,
//! birth date and gender. The rules are the `record::ward` functions; this module only reads
//! and writes the store.

use std::collections::HashSet;

use model::{BedId, PatientId, Timestamp};
use record::ward::{self as rules, BedEvent};
use serde_json::Value;
use store::{PatientRecord, Store, StoreError};

use crate::directory::{AllergyView, CodingView, ConditionView, LabView, MedicationView};
use crate::ward::Ward;

/// How many laboratory results the twin carries, newest first.
pub const RECENT_LABS: usize = 20;

/// Resource types whose change can change what the twin shows.
const TWIN_TYPES: &[&str] = &[
    "Patient",
    "Encounter",
    "Location",
    "Condition",
    "MedicationRequest",
    "MedicationStatement",
    "AllergyIntolerance",
    "Observation",
];

fn record_error(error: record::RecordError) -> StoreError {
    StoreError::Corrupt(format!("fhir record: {error}"))
}

/// Current resources of a search given as query pairs.
fn search(
    store: &Store,
    resource_type: &str,
    pairs: &[(&str, &str)],
) -> Result<Vec<Value>, StoreError> {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    let request = record::SearchRequest::parse(resource_type, &pairs).map_err(record_error)?;
    let page = store.fhir_search(&request).map_err(record_error)?;
    Ok(page
        .resources
        .into_iter()
        .map(|found| found.resource)
        .collect())
}

/// What the record says about one ward patient.
#[derive(Default)]
pub struct PatientRecordView {
    pub conditions: Vec<ConditionView>,
    pub medications: Vec<MedicationView>,
    pub allergies: Vec<AllergyView>,
    pub labs: Vec<LabView>,
}

fn coding_view(coded: Option<&rules::Coded>) -> Option<CodingView> {
    coded.map(|coded| CodingView {
        system: coded.system.clone(),
        code: coded.code.clone(),
    })
}

/// The avatar regions of an active condition: its body sites when they map to regions, else
/// the diagnosis table's regions for the first of its codings the table knows.
fn condition_regions(condition: &rules::ActiveCondition) -> Vec<String> {
    let sited: Vec<String> = condition
        .body_sites
        .iter()
        .filter_map(|codes| fhir::body_site::region_of(codes.iter().map(String::as_str)).ok())
        .map(|region| region.to_string())
        .collect();
    if !sited.is_empty() {
        return sited;
    }
    condition
        .codes
        .iter()
        .map(|coded| twin::conditions::regions_for(&coded.system, &coded.code, None))
        .find(|regions| !regions.is_empty())
        .unwrap_or_default()
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// Why a medication is given and where it relates on the avatar: the active conditions its
/// `reasonReference` names (their regions), then its `reasonCode` (the regions of the patient's
/// condition with that code, else the condition table's), and when no reason places it, the
/// drug table's regions for its coding. `conditions` are the patient's (record and ward).
fn medication_reasons(
    medication: &rules::ActiveMedication,
    conditions: &[ConditionView],
) -> (Vec<String>, Vec<String>) {
    let mut reasons = Vec::new();
    let mut regions: Vec<String> = Vec::new();
    let add_regions = |found: &[String], regions: &mut Vec<String>| {
        for region in found {
            if !regions.contains(region) {
                regions.push(region.clone());
            }
        }
    };
    for id in &medication.reason_conditions {
        if let Some(condition) = conditions
            .iter()
            .find(|c| c.record_id.as_deref() == Some(id.as_str()))
        {
            reasons.push(condition.display.clone());
            add_regions(&condition.regions, &mut regions);
        }
    }
    for coded in &medication.reason_codes {
        if !coded.display.is_empty() && !reasons.contains(&coded.display) {
            reasons.push(coded.display.clone());
        }
        let own = conditions.iter().find(|condition| {
            condition
                .codings
                .iter()
                .any(|c| c.system == coded.system && c.code == coded.code)
        });
        let found: Vec<String> = match own {
            Some(condition) if !condition.regions.is_empty() => condition.regions.clone(),
            _ => twin::conditions::regions_for(&coded.system, &coded.code, None)
                .iter()
                .map(ToString::to_string)
                .collect(),
        };
        add_regions(&found, &mut regions);
    }
    if regions.is_empty()
        && let Some(coded) = &medication.medication
    {
        regions = twin::record_regions::medication_regions(&coded.system, &coded.code)
            .iter()
            .map(ToString::to_string)
            .collect();
    }
    (reasons, regions)
}

/// The record of the FHIR Patient `patient_id`: empty when the record has none.
/// `ward_conditions` are the conditions the ward itself holds for the patient: a medication
/// given for one of them (by `reasonCode`) sits where it sits.
pub fn patient_record(
    store: &Store,
    patient_id: &str,
    ward_conditions: &[ConditionView],
) -> Result<PatientRecordView, StoreError> {
    let mut view = PatientRecordView::default();
    // A ward id no FHIR id can be (an HL7 identifier with a space or a comma) has no record;
    // searching with it could even mean something else (a comma ORs two ids).
    if !record::types::is_valid_id(patient_id) {
        return Ok(view);
    }
    let all = "1000";
    for condition in search(
        store,
        "Condition",
        &[
            ("patient", patient_id),
            ("clinical-status", "active,recurrence,relapse"),
            ("_count", all),
        ],
    )? {
        let Some(active) = rules::active_condition(&condition) else {
            continue;
        };
        let first = &active.codes[0];
        view.conditions.push(ConditionView {
            system: first.system.clone(),
            code: first.code.clone(),
            display: first.display.clone(),
            regions: condition_regions(&active),
            source: "record",
            record_id: Some(active.id.clone()),
            codings: active
                .codes
                .iter()
                .map(|coded| CodingView {
                    system: coded.system.clone(),
                    code: coded.code.clone(),
                })
                .collect(),
        });
    }
    for (resource_type, statuses) in [
        ("MedicationRequest", "active"),
        ("MedicationStatement", "active,intended"),
    ] {
        for resource in search(
            store,
            resource_type,
            &[
                ("patient", patient_id),
                ("status", statuses),
                ("_count", all),
            ],
        )? {
            let Some(medication) = rules::active_medication(&resource) else {
                continue;
            };
            let known: Vec<ConditionView> = view
                .conditions
                .iter()
                .chain(ward_conditions)
                .cloned()
                .collect();
            let (reasons, regions) = medication_reasons(&medication, &known);
            view.medications.push(MedicationView {
                reference: format!("{}/{}", medication.resource_type, medication.id),
                display: medication.display.clone(),
                coding: coding_view(medication.medication.as_ref()),
                dosage: medication.dosage,
                since: medication.since,
                status: medication.status,
                reasons,
                regions,
            });
        }
    }
    for resource in search(
        store,
        "AllergyIntolerance",
        &[("patient", patient_id), ("_count", all)],
    )? {
        let Some(allergy) = rules::holding_allergy(&resource) else {
            continue;
        };
        view.allergies.push(AllergyView {
            reference: format!("AllergyIntolerance/{}", allergy.id),
            display: allergy.display.clone(),
            coding: coding_view(allergy.substance.as_ref()),
            criticality: allergy.criticality,
            category: allergy.category,
            reactions: allergy.reactions,
            recorded: allergy.recorded,
            verification: allergy.verification,
        });
    }
    let recent = RECENT_LABS.to_string();
    for resource in search(
        store,
        "Observation",
        &[
            ("patient", patient_id),
            ("category", "laboratory"),
            ("_sort", "-date"),
            ("_count", &recent),
        ],
    )? {
        let Some(lab) = rules::lab_result(&resource) else {
            continue;
        };
        let flag = lab.flag();
        let regions = lab
            .code
            .as_ref()
            .map(|coded| twin::record_regions::lab_regions(&coded.system, &coded.code))
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect();
        let reference_range = (lab.reference_low.is_some() || lab.reference_high.is_some())
            .then_some([lab.reference_low, lab.reference_high]);
        view.labs.push(LabView {
            reference_range,
            reference_text: lab.reference_text,
            flag,
            status: lab.status,
            regions,
            reference: format!("Observation/{}", lab.id),
            display: lab.display.clone(),
            coding: coding_view(lab.code.as_ref()),
            value: lab.value,
            unit: lab.unit,
            text: lab.text,
            effective: lab.effective,
            interpretation: lab.interpretation,
        });
    }
    Ok(view)
}

/// The ward patient for a FHIR Patient: created from the record's demographics when the ward
/// does not know them yet (their name, birth date and gender), left alone when it does.
fn ensure_ward_patient(store: &mut Store, patient_id: &PatientId) -> Result<(), StoreError> {
    if store.patient(patient_id)?.is_some() {
        return Ok(());
    }
    let resource = store
        .fhir_read("Patient", patient_id.as_str())
        .map_err(record_error)?
        .filter(|stored| !stored.deleted)
        .map(|stored| stored.resource)
        .unwrap_or(Value::Null);
    let name = &resource["name"][0];
    let mut parts: Vec<&str> = name["given"]
        .as_array()
        .map(|given| given.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    parts.extend(name["family"].as_str());
    let name = match name["text"].as_str() {
        Some(text) => text.to_owned(),
        None if !parts.is_empty() => parts.join(" "),
        None => patient_id.to_string(),
    };
    store.upsert_patient(&PatientRecord {
        id: patient_id.clone(),
        name,
        birth_date: resource["birthDate"].as_str().map(str::to_owned),
        sex: resource["gender"].as_str().unwrap_or("unknown").to_owned(),
        conditions: Vec::new(),
    })
}

/// Applies what the Encounters `ids` (current versions) say about beds: admissions,
/// transfers and discharges, as the ADT feed would. Returns how many bed changes were made.
pub fn apply_encounters(
    store: &mut Store,
    ids: &[String],
    received: Timestamp,
) -> Result<usize, StoreError> {
    if ids.is_empty() {
        return Ok(0);
    }
    let beds: HashSet<String> = store
        .layout()?
        .into_iter()
        .flat_map(|layout| layout.rooms)
        .flat_map(|room| room.beds)
        .map(|bed| bed.id.to_string())
        .collect();
    let mut changes = 0;
    for id in ids {
        let Some(encounter) = store.fhir_read("Encounter", id).map_err(record_error)? else {
            continue;
        };
        if encounter.deleted {
            continue;
        }
        let event = rules::encounter_bed_event(&encounter.resource, |location_id| {
            if beds.contains(location_id) {
                return Some(location_id.to_owned());
            }
            let location = store.fhir_read("Location", location_id).ok()??;
            rules::bed_of_location(&location.resource, |bed| beds.contains(bed))
        });
        let occupancy = store.current_occupancy()?;
        match event {
            Some(BedEvent::Admit {
                patient_id,
                bed_id,
                at_ms,
            }) => {
                let (patient, bed) = (PatientId::new(&patient_id), BedId::new(&bed_id));
                if occupancy.iter().any(|(b, p, _)| *b == bed && *p == patient) {
                    continue;
                }
                ensure_ward_patient(store, &patient)?;
                // A start in the future is a plan, not a stay: the stay begins when we learn it.
                let at = at_ms
                    .filter(|&ms| ms <= received.millis())
                    .map(Timestamp::from_millis)
                    .unwrap_or(received);
                // The bed's previous occupant leaves it, as with an ADT transfer into it.
                if let Some((_, other, _)) = occupancy.iter().find(|(b, _, _)| *b == bed) {
                    discharge_at(store, other, at, received)?;
                }
                match store.admit(&patient, &bed, at) {
                    Err(StoreError::BeforeOpenRange { .. }) => {
                        // Their current stay began after this encounter's start: the move
                        // happens now.
                        store.admit(&patient, &bed, received)?
                    }
                    other => other?,
                }
                changes += 1;
            }
            Some(BedEvent::Discharge {
                patient_id,
                bed_id,
                at_ms,
            }) => {
                let (patient, bed) = (PatientId::new(&patient_id), BedId::new(&bed_id));
                // Only the stay this encounter is about: an old finished encounter at the same
                // bed, before the current stay began, says nothing about the current stay.
                let Some((_, _, from)) = occupancy
                    .iter()
                    .find(|(b, p, _)| *b == bed && *p == patient)
                else {
                    continue;
                };
                let at = at_ms.unwrap_or(received.millis());
                if at < from.millis() {
                    continue;
                }
                store.discharge(&patient, Timestamp::from_millis(at.min(received.millis())))?;
                changes += 1;
            }
            None => {}
        }
    }
    Ok(changes)
}

fn discharge_at(
    store: &mut Store,
    patient: &PatientId,
    at: Timestamp,
    received: Timestamp,
) -> Result<(), StoreError> {
    match store.discharge(patient, at) {
        Err(StoreError::BeforeOpenRange { .. }) => store.discharge(patient, received),
        other => other,
    }
}

/// After the record changed (`changed`: type and id of each resource written or deleted):
/// applies the Encounters' bed changes and, when anything the twin shows may have changed,
/// reloads the ward's registry and directory. Runs on the store's thread before the answer.
pub fn after_record_change(
    store: &mut Store,
    ward: &Ward,
    changed: &[(String, String)],
    received: Timestamp,
) -> Result<(), StoreError> {
    let encounters: Vec<String> = changed
        .iter()
        .filter(|(resource_type, _)| resource_type == "Encounter")
        .map(|(_, id)| id.clone())
        .collect();
    apply_encounters(store, &encounters, received)?;
    if changed
        .iter()
        .any(|(resource_type, _)| TWIN_TYPES.contains(&resource_type.as_str()))
    {
        crate::setup::reload(ward, store)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn condition(record_id: &str, display: &str, regions: &[&str]) -> ConditionView {
        ConditionView {
            system: twin::conditions::SNOMED_CT.into(),
            code: "0".into(),
            display: display.into(),
            regions: regions.iter().map(|r| (*r).to_owned()).collect(),
            source: "record",
            record_id: Some(record_id.into()),
            codings: Vec::new(),
        }
    }

    fn medication(extra: Value) -> rules::ActiveMedication {
        let mut request = json!({"resourceType": "MedicationRequest", "id": "m1",
            "status": "active", "intent": "order",
            "medicationCodeableConcept": {"coding": [{"system": twin::record_regions::RXNORM,
                "code": "966222", "display": "Levothyroxine"}]}});
        for (key, value) in extra.as_object().unwrap() {
            request[key] = value.clone();
        }
        rules::active_medication(&request).unwrap()
    }

    #[test]
    fn a_medication_sits_where_its_reasons_sit_else_where_the_drug_table_puts_it() {
        let conditions = [condition("c1", "Heart failure", &["heart", "lung_left"])];
        // The condition it is given for, by reference: that condition's regions.
        let (reasons, regions) = medication_reasons(
            &medication(json!({"reasonReference": [{"reference": "Condition/c1"}]})),
            &conditions,
        );
        assert_eq!(reasons, ["Heart failure"]);
        assert_eq!(regions, ["heart", "lung_left"]);
        // A reason code: the condition table's regions (COPD, the lungs).
        let (reasons, regions) = medication_reasons(
            &medication(
                json!({"reasonCode": [{"coding": [{"system": twin::conditions::SNOMED_CT,
                "code": "13645005", "display": "COPD"}]}]}),
            ),
            &conditions,
        );
        assert_eq!(reasons, ["COPD"]);
        assert_eq!(regions, ["lung_left", "lung_right"]);
        // A reason code the patient's own condition has: that condition's regions (its site).
        let mut sited = condition("w1", "COPD", &["lung_right"]);
        sited.codings = vec![CodingView {
            system: twin::conditions::SNOMED_CT.into(),
            code: "13645005".into(),
        }];
        let (_, regions) = medication_reasons(
            &medication(
                json!({"reasonCode": [{"coding": [{"system": twin::conditions::SNOMED_CT,
                "code": "13645005", "display": "COPD"}]}]}),
            ),
            &[sited],
        );
        assert_eq!(regions, ["lung_right"]);
        // No reason: the drug table (levothyroxine, the thyroid at the neck).
        let (reasons, regions) = medication_reasons(&medication(json!({})), &conditions);
        assert!(reasons.is_empty());
        assert_eq!(regions, ["neck"]);
        // A reference to a condition that is not active names nothing.
        let (reasons, regions) = medication_reasons(
            &medication(json!({"reasonReference": [{"reference": "Condition/gone"}]})),
            &conditions,
        );
        assert!(reasons.is_empty());
        assert_eq!(regions, ["neck"]);
    }
}
