//! NEWS2 results in the record as FHIR R4 Observations: one Observation per patient,
//! `Observation/news2-{patient}`, updated (a new version) each time the score changes, so
//! `GET /fhir/Observation/news2-p1` is the current score and its `_history` the score over time.
//!
//! The total is coded with SNOMED CT 1104051000000101 "Royal College of Physicians NEWS2
//! (National Early Warning Score 2) total score", as the UK's published FHIR profiles do
//! (Interweave NEWS2 Score profile; the NHS Wales emergency-department IG's NEWS2 examples).
//! Public profiles disagree on the SNOMED codes of the sub-scores, so each parameter is a
//! component coded with metaward's own code system rather than a guessed SNOMED code; a
//! parameter that could not be scored has a `dataAbsentReason` and the result is `preliminary`.

use clinical::{News2Result, ParameterOutcome};
use model::PatientId;
use serde_json::{Value, json};

pub const NEWS2_TOTAL_SCT: &str = "1104051000000101";
const PARAMETER_SYSTEM: &str = "https://metaward.dev/fhir/CodeSystem/news2-parameter";
const DATA_ABSENT: &str = "http://terminology.hl7.org/CodeSystem/data-absent-reason";

/// The record id of a patient's NEWS2 Observation, if the patient id can be part of a FHIR id.
pub fn observation_id(patient: &PatientId) -> Option<String> {
    let id = format!("news2-{patient}");
    record::types::is_valid_id(&id).then_some(id)
}

pub fn observation(patient: &PatientId, result: &News2Result, id: &str) -> Value {
    let components: Vec<Value> = result
        .parameters
        .iter()
        .map(|p| {
            let code = json!({ "coding": [{
                "system": PARAMETER_SYSTEM,
                "code": p.parameter.key(),
                "display": p.parameter.display(),
            }] });
            match &p.outcome {
                ParameterOutcome::Scored { sub_score, .. } => {
                    json!({ "code": code, "valueInteger": sub_score })
                }
                other => {
                    let absent = match other {
                        ParameterOutcome::Missing => "not-performed",
                        ParameterOutcome::Invalid { .. } => "error",
                        // Stale, artefact only, or needing air/oxygen: a value exists but
                        // cannot be used.
                        _ => "unknown",
                    };
                    json!({
                        "code": code,
                        "dataAbsentReason": { "coding": [{ "system": DATA_ABSENT, "code": absent }],
                                              "text": other.reason_key().unwrap_or("unknown") },
                    })
                }
            }
        })
        .collect();
    json!({
        "resourceType": "Observation",
        "id": id,
        "status": if result.complete { "final" } else { "preliminary" },
        "category": [{ "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "survey", "display": "Survey" }] }],
        "code": { "coding": [{
            "system": "http://snomed.info/sct",
            "code": NEWS2_TOTAL_SCT,
            "display": "Royal College of Physicians NEWS2 (National Early Warning Score 2) total score",
        }], "text": "NEWS2" },
        "subject": { "reference": format!("Patient/{patient}") },
        "effectiveDateTime": record::date::format_instant(result.at.millis()),
        "valueInteger": result.total,
        "interpretation": [{ "text": format!("{} clinical risk", result.band.clinical_risk()) }],
        "note": [{ "text": format!(
            "Band {}{}. SpO2 scale {}: {}. {}",
            result.band.key(),
            if result.complete { "" } else { " (at least: some parameters could not be scored)" },
            result.scale.number(),
            result.scale_reason.describe(),
            result.band.response(),
        ) }],
        "component": components,
    })
}
