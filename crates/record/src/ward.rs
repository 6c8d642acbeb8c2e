//! The record as the live ward reads it, without I/O: which bed an Encounter puts its patient
//! in (or takes them out of), and the short clinical summary of a patient the twin carries
//! (active conditions, active medications, allergies, recent labs), each read from one FHIR R4
//! resource as JSON.
//!
//! The link between the record and the ward: a FHIR Patient is the ward patient with the same
//! id. A Location is one of the ward's beds when its id is the bed's id or when it carries the
//! bed's id as an identifier of the [`BED_IDENTIFIER_SYSTEM`].

use serde_json::Value;

use crate::date;

/// The identifier system under which a Location names one of metaward's beds.
pub const BED_IDENTIFIER_SYSTEM: &str = "https://metaward.dev/fhir/NamingSystem/bed";

/// Encounter.class codes (v3 ActCode) of a stay in a bed: inpatient encounter, inpatient acute,
/// inpatient non-acute (terminology.hl7.org/CodeSystem/v3-ActCode, ActEncounterCode).
pub const INPATIENT_CLASSES: &[&str] = &["IMP", "ACUTE", "NONAC"];

/// What an Encounter says about a bed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BedEvent {
    /// The patient lies in `bed` from `at_ms` (the location's period start, else the
    /// encounter's, else unknown: the caller uses the time it learnt it).
    Admit {
        patient_id: String,
        bed_id: String,
        at_ms: Option<i64>,
    },
    /// The patient's stay in `bed` ended at `at_ms`.
    Discharge {
        patient_id: String,
        bed_id: String,
        at_ms: Option<i64>,
    },
}

/// The id of a `Type/id` reference (relative or absolute URL), if it is of `resource_type`.
pub fn reference_id<'a>(reference: &'a Value, resource_type: &str) -> Option<&'a str> {
    let text = reference["reference"].as_str()?;
    let (kind, id) = text.trim_end_matches('/').rsplit_once('/')?;
    let kind = kind.rsplit('/').next()?;
    (kind == resource_type && !id.is_empty()).then_some(id)
}

/// The bed a Location resource names: its id when that is a bed, else a bed identifier.
pub fn bed_of_location(location: &Value, is_bed: impl Fn(&str) -> bool) -> Option<String> {
    if let Some(id) = location["id"].as_str()
        && is_bed(id)
    {
        return Some(id.to_owned());
    }
    location["identifier"]
        .as_array()?
        .iter()
        .filter(|identifier| identifier["system"] == BED_IDENTIFIER_SYSTEM)
        .filter_map(|identifier| identifier["value"].as_str())
        .find(|value| is_bed(value))
        .map(str::to_owned)
}

fn is_inpatient(encounter: &Value) -> bool {
    encounter["class"]["code"]
        .as_str()
        .is_some_and(|code| INPATIENT_CLASSES.contains(&code))
}

fn start_of(period: &Value) -> Option<i64> {
    period["start"]
        .as_str()
        .and_then(date::parse)
        .map(|r| r.low)
}

fn end_of(period: &Value) -> Option<i64> {
    period["end"].as_str().and_then(date::parse).map(|r| r.low)
}

/// What an Encounter says about a bed: an inpatient encounter `in-progress` at a bed location
/// admits its subject there; one `finished` at a bed location ends that stay. Anything else
/// (ambulatory, planned, no bed among its locations, no Patient subject) says nothing.
///
/// `bed_of` maps a Location id to a bed id (see [`bed_of_location`]). Of the encounter's
/// locations, the last `active` one (or without a status) that is a bed is the bed; for a
/// finished encounter, the last bed location whatever its status.
pub fn encounter_bed_event(
    encounter: &Value,
    bed_of: impl Fn(&str) -> Option<String>,
) -> Option<BedEvent> {
    if encounter["resourceType"] != "Encounter" || !is_inpatient(encounter) {
        return None;
    }
    let patient_id = reference_id(&encounter["subject"], "Patient")?.to_owned();
    let status = encounter["status"].as_str()?;
    let locations = encounter["location"].as_array()?;
    let finished = status == "finished";
    let (location, bed_id) = locations.iter().rev().find_map(|entry| {
        let current = matches!(entry["status"].as_str(), None | Some("active"));
        if !finished && !current {
            return None;
        }
        let bed = bed_of(reference_id(&entry["location"], "Location")?)?;
        Some((entry, bed))
    })?;
    match status {
        "in-progress" => Some(BedEvent::Admit {
            patient_id,
            bed_id,
            at_ms: start_of(&location["period"]).or_else(|| start_of(&encounter["period"])),
        }),
        "finished" => Some(BedEvent::Discharge {
            patient_id,
            bed_id,
            at_ms: end_of(&location["period"]).or_else(|| end_of(&encounter["period"])),
        }),
        _ => None,
    }
}

/// A coded concept: the first coding with a system and a code, and the best display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coded {
    pub system: String,
    pub code: String,
    pub display: String,
}

/// Every coding of a CodeableConcept with a system and code, and its text or first display.
fn codings(concept: &Value) -> Vec<(String, String, String)> {
    concept["coding"]
        .as_array()
        .map(|codings| {
            codings
                .iter()
                .filter_map(|coding| {
                    Some((
                        coding["system"].as_str()?.to_owned(),
                        coding["code"].as_str()?.to_owned(),
                        coding["display"].as_str().unwrap_or_default().to_owned(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn display_of(concept: &Value) -> String {
    concept["text"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| {
            concept["coding"]
                .as_array()?
                .iter()
                .find_map(|c| c["display"].as_str().map(str::to_owned))
        })
        .unwrap_or_default()
}

fn first_coded(concept: &Value) -> Option<Coded> {
    let display = display_of(concept);
    codings(concept)
        .into_iter()
        .next()
        .map(|(system, code, own)| Coded {
            system,
            code,
            display: if display.is_empty() { own } else { display },
        })
}

fn status_code(concept: &Value) -> Option<&str> {
    concept["coding"]
        .as_array()?
        .iter()
        .find_map(|coding| coding["code"].as_str())
}

/// An active condition of the record, with every coding (the SpO2 scale rule matches on any)
/// and the SNOMED CT codes of its body sites.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveCondition {
    pub id: String,
    /// Every coding of `Condition.code`, first first.
    pub codes: Vec<Coded>,
    /// SNOMED CT codes of each `Condition.bodySite` (one list per site).
    pub body_sites: Vec<Vec<String>>,
    pub onset: Option<String>,
}

/// A Condition that is active (clinicalStatus active, recurrence or relapse) and not refuted
/// or entered in error; `None` otherwise.
pub fn active_condition(condition: &Value) -> Option<ActiveCondition> {
    if condition["resourceType"] != "Condition" {
        return None;
    }
    let clinical = status_code(&condition["clinicalStatus"])?;
    if !matches!(clinical, "active" | "recurrence" | "relapse") {
        return None;
    }
    if matches!(
        status_code(&condition["verificationStatus"]),
        Some("refuted" | "entered-in-error")
    ) {
        return None;
    }
    let display = display_of(&condition["code"]);
    let codes: Vec<Coded> = codings(&condition["code"])
        .into_iter()
        .map(|(system, code, own)| Coded {
            system,
            code,
            display: if display.is_empty() {
                own
            } else {
                display.clone()
            },
        })
        .collect();
    if codes.is_empty() {
        return None;
    }
    let body_sites = condition["bodySite"]
        .as_array()
        .map(|sites| {
            sites
                .iter()
                .map(|site| {
                    codings(site)
                        .into_iter()
                        .filter(|(system, _, _)| system == "http://snomed.info/sct")
                        .map(|(_, code, _)| code)
                        .collect::<Vec<_>>()
                })
                .filter(|codes| !codes.is_empty())
                .collect()
        })
        .unwrap_or_default();
    Some(ActiveCondition {
        id: condition["id"].as_str().unwrap_or_default().to_owned(),
        codes,
        body_sites,
        onset: condition["onsetDateTime"]
            .as_str()
            .or_else(|| condition["onsetPeriod"]["start"].as_str())
            .map(str::to_owned),
    })
}

/// A medication the patient is on: an active MedicationRequest or MedicationStatement.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveMedication {
    pub id: String,
    pub resource_type: String,
    pub medication: Option<Coded>,
    /// The medication's text when it has no coding (or names a Medication resource).
    pub display: String,
    pub dosage: Option<String>,
    pub since: Option<String>,
    /// The resource's status (`active`, or `intended` for a MedicationStatement).
    pub status: String,
    /// Why it is given: the ids of the Conditions its `reasonReference` names.
    pub reason_conditions: Vec<String>,
    /// Why it is given, as codes (`reasonCode`), every coding of each.
    pub reason_codes: Vec<Coded>,
}

/// An active MedicationRequest (status active) or MedicationStatement (active or intended);
/// `None` for any other resource or status.
pub fn active_medication(resource: &Value) -> Option<ActiveMedication> {
    let resource_type = resource["resourceType"].as_str()?;
    let status = resource["status"].as_str()?;
    let since = match (resource_type, status) {
        ("MedicationRequest", "active") => resource["authoredOn"].as_str(),
        ("MedicationStatement", "active" | "intended") => resource["effectiveDateTime"]
            .as_str()
            .or_else(|| resource["effectivePeriod"]["start"].as_str()),
        _ => return None,
    };
    let concept = &resource["medicationCodeableConcept"];
    let medication = first_coded(concept);
    let display = if concept.is_object() {
        display_of(concept)
    } else {
        resource["medicationReference"]["display"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let dosage = resource["dosageInstruction"][0]["text"]
        .as_str()
        .or_else(|| resource["dosage"][0]["text"].as_str())
        .map(str::to_owned);
    let reason_conditions = resource["reasonReference"]
        .as_array()
        .map(|references| {
            references
                .iter()
                .filter_map(|reference| reference_id(reference, "Condition"))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let reason_codes = resource["reasonCode"]
        .as_array()
        .map(|concepts| {
            concepts
                .iter()
                .flat_map(|concept| {
                    let display = display_of(concept);
                    codings(concept)
                        .into_iter()
                        .map(move |(system, code, own)| Coded {
                            system,
                            code,
                            display: if display.is_empty() {
                                own
                            } else {
                                display.clone()
                            },
                        })
                })
                .collect()
        })
        .unwrap_or_default();
    Some(ActiveMedication {
        id: resource["id"].as_str().unwrap_or_default().to_owned(),
        resource_type: resource_type.to_owned(),
        medication,
        display,
        dosage,
        since: since.map(str::to_owned),
        status: status.to_owned(),
        reason_conditions,
        reason_codes,
    })
}

/// An allergy or intolerance that holds: not resolved or inactive, not refuted or entered in
/// error. A missing clinical status counts as holding (it is absent only when refuted or
/// entered in error, which are left out).
#[derive(Debug, Clone, PartialEq)]
pub struct Allergy {
    pub id: String,
    pub substance: Option<Coded>,
    pub display: String,
    pub criticality: Option<String>,
    pub category: Vec<String>,
    /// Each reaction's manifestations, as displays.
    pub reactions: Vec<String>,
    /// When it was recorded (`recordedDate`), else its onset.
    pub recorded: Option<String>,
    /// `confirmed` or `unconfirmed` (refuted and entered in error are left out), when given.
    pub verification: Option<String>,
}

pub fn holding_allergy(allergy: &Value) -> Option<Allergy> {
    if allergy["resourceType"] != "AllergyIntolerance" {
        return None;
    }
    if matches!(
        status_code(&allergy["clinicalStatus"]),
        Some("inactive" | "resolved")
    ) || matches!(
        status_code(&allergy["verificationStatus"]),
        Some("refuted" | "entered-in-error")
    ) {
        return None;
    }
    Some(Allergy {
        id: allergy["id"].as_str().unwrap_or_default().to_owned(),
        substance: first_coded(&allergy["code"]),
        display: display_of(&allergy["code"]),
        criticality: allergy["criticality"].as_str().map(str::to_owned),
        category: allergy["category"]
            .as_array()
            .map(|c| {
                c.iter()
                    .filter_map(|c| c.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        reactions: allergy["reaction"]
            .as_array()
            .map(|reactions| {
                reactions
                    .iter()
                    .flat_map(|r| r["manifestation"].as_array().cloned().unwrap_or_default())
                    .map(|m| display_of(&m))
                    .filter(|d| !d.is_empty())
                    .collect()
            })
            .unwrap_or_default(),
        recorded: allergy["recordedDate"]
            .as_str()
            .or_else(|| allergy["onsetDateTime"].as_str())
            .map(str::to_owned),
        verification: status_code(&allergy["verificationStatus"]).map(str::to_owned),
    })
}

/// One laboratory result: its code, value (quantity, text or code) and time.
#[derive(Debug, Clone, PartialEq)]
pub struct LabResult {
    pub id: String,
    pub code: Option<Coded>,
    pub display: String,
    pub value: Option<f64>,
    pub unit: Option<String>,
    /// A value that is not a quantity (a string, or a coded result's display).
    pub text: Option<String>,
    pub effective: Option<String>,
    pub effective_ms: Option<i64>,
    /// The first interpretation's code (v3 ObservationInterpretation: `H`, `L`, `HH`, `LL`,
    /// `A`, `N`, …) as the record gives it.
    pub interpretation: Option<String>,
    /// The first reference range's bounds, as the record gives them (same unit as the value).
    pub reference_low: Option<f64>,
    pub reference_high: Option<f64>,
    /// The first reference range's text, when it has one.
    pub reference_text: Option<String>,
    /// `status` of the Observation (`final`, `preliminary`, `amended`, …).
    pub status: Option<String>,
}

impl LabResult {
    /// How the result stands: the record's own interpretation when it gives one, else the
    /// value against the reference range (`H` above, `L` below, `N` within); `None` when
    /// neither says (no interpretation, or no number and range to compare).
    pub fn flag(&self) -> Option<String> {
        if let Some(code) = &self.interpretation {
            return Some(code.clone());
        }
        let value = self.value?;
        match (self.reference_low, self.reference_high) {
            (None, None) => None,
            (Some(low), _) if value < low => Some("L".to_owned()),
            (_, Some(high)) if value > high => Some("H".to_owned()),
            _ => Some("N".to_owned()),
        }
    }
}

/// An Observation of category `laboratory` that is not cancelled or entered in error.
pub fn lab_result(observation: &Value) -> Option<LabResult> {
    if observation["resourceType"] != "Observation" {
        return None;
    }
    let laboratory = observation["category"]
        .as_array()
        .is_some_and(|categories| {
            categories
                .iter()
                .flat_map(|c| c["coding"].as_array().cloned().unwrap_or_default())
                .any(|c| c["code"] == "laboratory")
        });
    if !laboratory
        || matches!(
            observation["status"].as_str(),
            Some("cancelled" | "entered-in-error")
        )
    {
        return None;
    }
    let effective = observation["effectiveDateTime"]
        .as_str()
        .or_else(|| observation["effectivePeriod"]["start"].as_str())
        .or_else(|| observation["issued"].as_str());
    let quantity = &observation["valueQuantity"];
    let range = &observation["referenceRange"][0];
    Some(LabResult {
        id: observation["id"].as_str().unwrap_or_default().to_owned(),
        code: first_coded(&observation["code"]),
        display: display_of(&observation["code"]),
        value: quantity["value"].as_f64(),
        unit: quantity["unit"]
            .as_str()
            .or_else(|| quantity["code"].as_str())
            .map(str::to_owned),
        text: observation["valueString"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| {
                let coded = &observation["valueCodeableConcept"];
                coded.is_object().then(|| display_of(coded))
            }),
        effective: effective.map(str::to_owned),
        effective_ms: effective.and_then(date::parse).map(|r| r.low),
        interpretation: observation["interpretation"]
            .as_array()
            .and_then(|i| i.first())
            .and_then(|i| status_code(i))
            .map(str::to_owned),
        reference_low: range["low"]["value"].as_f64(),
        reference_high: range["high"]["value"].as_f64(),
        reference_text: range["text"].as_str().map(str::to_owned),
        status: observation["status"].as_str().map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bed_of(id: &str) -> Option<String> {
        (id == "b1" || id == "b2").then(|| id.to_owned())
    }

    fn encounter(status: &str, class: &str, locations: Value) -> Value {
        json!({
            "resourceType": "Encounter", "id": "e1", "status": status,
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": class},
            "subject": {"reference": "Patient/p9"},
            "period": {"start": "2026-11-25T06:00:00Z", "end": "2026-11-25T09:00:00Z"},
            "location": locations,
        })
    }

    #[test]
    fn an_inpatient_encounter_in_progress_at_a_bed_admits() {
        let e = encounter(
            "in-progress",
            "IMP",
            json!([{"location": {"reference": "Location/b1"}, "status": "active",
                    "period": {"start": "2026-11-25T07:00:00Z"}}]),
        );
        assert_eq!(
            encounter_bed_event(&e, bed_of),
            Some(BedEvent::Admit {
                patient_id: "p9".into(),
                bed_id: "b1".into(),
                at_ms: date::parse("2026-11-25T07:00:00Z").map(|r| r.low),
            })
        );
    }

    #[test]
    fn the_current_bed_is_the_last_active_one() {
        let e = encounter(
            "in-progress",
            "ACUTE",
            json!([
                {"location": {"reference": "Location/b1"}, "status": "completed"},
                {"location": {"reference": "http://emr.example/fhir/Location/b2"}},
                {"location": {"reference": "Location/ward-3"}, "status": "active"},
            ]),
        );
        let Some(BedEvent::Admit { bed_id, at_ms, .. }) = encounter_bed_event(&e, bed_of) else {
            panic!("an admission");
        };
        assert_eq!(bed_id, "b2");
        // No location period: the encounter's start.
        assert_eq!(at_ms, date::parse("2026-11-25T06:00:00Z").map(|r| r.low));
    }

    #[test]
    fn finished_discharges_and_others_say_nothing() {
        let at_bed = json!([{"location": {"reference": "Location/b1"}, "status": "completed"}]);
        assert!(matches!(
            encounter_bed_event(&encounter("finished", "IMP", at_bed.clone()), bed_of),
            Some(BedEvent::Discharge { ref bed_id, at_ms: Some(_), .. }) if bed_id == "b1"
        ));
        // Ambulatory, planned, or at no bed of ours: nothing.
        assert_eq!(
            encounter_bed_event(&encounter("in-progress", "AMB", at_bed.clone()), bed_of),
            None
        );
        assert_eq!(
            encounter_bed_event(&encounter("planned", "IMP", at_bed), bed_of),
            None
        );
        let elsewhere = json!([{"location": {"reference": "Location/clinic"}}]);
        assert_eq!(
            encounter_bed_event(&encounter("in-progress", "IMP", elsewhere), bed_of),
            None
        );
    }

    #[test]
    fn a_location_is_a_bed_by_id_or_by_bed_identifier() {
        let is_bed = |id: &str| id == "b1";
        assert_eq!(
            bed_of_location(&json!({"id": "b1"}), is_bed),
            Some("b1".into())
        );
        let by_identifier = json!({"id": "loc-77", "identifier": [
            {"system": "urn:other", "value": "b1"},
            {"system": BED_IDENTIFIER_SYSTEM, "value": "b1"},
        ]});
        assert_eq!(bed_of_location(&by_identifier, is_bed), Some("b1".into()));
        let other_system =
            json!({"id": "loc-78", "identifier": [{"system": "urn:other", "value": "b1"}]});
        assert_eq!(bed_of_location(&other_system, is_bed), None);
    }

    #[test]
    fn conditions_count_only_when_active_and_not_refuted() {
        let condition = |clinical: &str, verification: &str| {
            json!({"resourceType": "Condition", "id": "c1",
                "clinicalStatus": {"coding": [{"code": clinical}]},
                "verificationStatus": {"coding": [{"code": verification}]},
                "code": {"coding": [
                    {"system": "http://snomed.info/sct", "code": "13645005", "display": "COPD"},
                    {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "J44.9"}]},
                "bodySite": [{"coding": [{"system": "http://snomed.info/sct", "code": "3341006"}]}],
                "subject": {"reference": "Patient/p9"}})
        };
        let active = active_condition(&condition("active", "confirmed")).unwrap();
        assert_eq!(active.codes.len(), 2);
        assert_eq!(active.codes[1].display, "COPD");
        assert_eq!(active.body_sites, vec![vec!["3341006".to_owned()]]);
        assert!(active_condition(&condition("resolved", "confirmed")).is_none());
        assert!(active_condition(&condition("active", "refuted")).is_none());
    }

    #[test]
    fn medications_allergies_and_labs() {
        let request = json!({"resourceType": "MedicationRequest", "id": "m1", "status": "active",
            "intent": "order", "subject": {"reference": "Patient/p9"},
            "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "895994", "display": "Fluticasone"}]},
            "dosageInstruction": [{"text": "2 puffs twice daily"}],
            "reasonReference": [{"reference": "Condition/c7"}, {"reference": "Observation/o1"}],
            "reasonCode": [{"coding": [{"system": "http://snomed.info/sct", "code": "195967001", "display": "Asthma"}]}]});
        let medication = active_medication(&request).unwrap();
        assert_eq!(medication.display, "Fluticasone");
        assert_eq!(medication.status, "active");
        assert_eq!(medication.reason_conditions, ["c7"]);
        assert_eq!(medication.reason_codes[0].code, "195967001");
        assert_eq!(medication.reason_codes[0].display, "Asthma");
        assert_eq!(medication.dosage.as_deref(), Some("2 puffs twice daily"));
        let mut stopped = request.clone();
        stopped["status"] = json!("stopped");
        assert!(active_medication(&stopped).is_none());

        let allergy = json!({"resourceType": "AllergyIntolerance", "id": "a1",
            "clinicalStatus": {"coding": [{"code": "active"}]}, "criticality": "high",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "91936005", "display": "Allergy to penicillin"}]},
            "reaction": [{"manifestation": [{"text": "Hives"}]}],
            "patient": {"reference": "Patient/p9"}});
        let holding = holding_allergy(&allergy).unwrap();
        assert_eq!(holding.criticality.as_deref(), Some("high"));
        assert_eq!(holding.reactions, ["Hives"]);
        assert_eq!(holding.recorded, None);
        let mut recorded = allergy.clone();
        recorded["recordedDate"] = json!("2020-01-02");
        assert_eq!(
            holding_allergy(&recorded).unwrap().recorded.as_deref(),
            Some("2020-01-02")
        );
        let mut resolved = allergy.clone();
        resolved["clinicalStatus"]["coding"][0]["code"] = json!("resolved");
        assert!(holding_allergy(&resolved).is_none());

        let lab = json!({"resourceType": "Observation", "id": "o1", "status": "final",
            "category": [{"coding": [{"code": "laboratory"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "2160-0", "display": "Creatinine"}]},
            "valueQuantity": {"value": 1.2, "unit": "mg/dL"},
            "effectiveDateTime": "2026-11-20T08:00:00Z"});
        let result = lab_result(&lab).unwrap();
        assert_eq!(
            (result.value, result.unit.as_deref()),
            (Some(1.2), Some("mg/dL"))
        );
        assert_eq!(
            result.flag(),
            None,
            "no interpretation and no range: no flag"
        );
        let mut ranged = lab.clone();
        ranged["referenceRange"] = json!([{"low": {"value": 0.6}, "high": {"value": 1.1}}]);
        assert_eq!(lab_result(&ranged).unwrap().flag().as_deref(), Some("H"));
        ranged["valueQuantity"]["value"] = json!(0.5);
        assert_eq!(lab_result(&ranged).unwrap().flag().as_deref(), Some("L"));
        ranged["valueQuantity"]["value"] = json!(0.9);
        assert_eq!(lab_result(&ranged).unwrap().flag().as_deref(), Some("N"));
        ranged["valueQuantity"]["value"] = json!(1.1);
        assert_eq!(
            lab_result(&ranged).unwrap().flag().as_deref(),
            Some("N"),
            "the bounds are inside"
        );
        // The record's own interpretation wins over the range.
        ranged["interpretation"] = json!([{"coding": [{"code": "HH"}]}]);
        assert_eq!(lab_result(&ranged).unwrap().flag().as_deref(), Some("HH"));
        let mut vital = lab.clone();
        vital["category"][0]["coding"][0]["code"] = json!("vital-signs");
        assert!(lab_result(&vital).is_none());
    }
}
