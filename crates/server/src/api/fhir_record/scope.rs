//! Ward scope in the FHIR record. A user of every ward sees the whole record. A ward-scoped
//! user sees the compartments of the patients lying in their wards' beds, and what belongs to
//! no patient (Locations, Practitioners, Medications, ...):
//!
//! - a search gets one more clause, `patient` (or `_id` for Patients) limited to those
//!   patients, so totals and paging stay exact; a type the record cannot search by patient is
//!   refused (403) unless it is known to hold no patient data;
//! - a read (and vread, history) is refused (403) when the resource is, or refers to, a
//!   patient outside those wards, wherever in the resource the reference sits;
//! - whole-record interactions (system search and history, type history) need every ward
//!   (the access policy says so).

use std::collections::HashSet;

use record::search::{Clause, ClauseValue};
use record::{RecordError, SearchRequest};
use serde_json::Value;

use crate::api::AppState;
use crate::auth::Caller;

/// Types that hold no patient's data, searchable by every signed-in reader.
const NOT_PATIENT_DATA: &[&str] = &[
    "Location",
    "Organization",
    "Practitioner",
    "PractitionerRole",
    "Medication",
    "Substance",
    "HealthcareService",
    "Endpoint",
    "ValueSet",
    "CodeSystem",
    "ConceptMap",
    "StructureDefinition",
    "Questionnaire",
];

/// What part of the record a caller may see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordScope {
    Everything,
    /// The compartments of these patients, and what belongs to no patient.
    Patients(HashSet<String>),
}

impl RecordScope {
    pub fn of(state: &AppState, caller: &Caller) -> RecordScope {
        match crate::auth::visible_patients(&state.ward.directory(), caller) {
            None => RecordScope::Everything,
            Some(patients) => RecordScope::Patients(patients),
        }
    }

    /// Limits a search to the caller's patients; `Ok(false)` when nothing can match.
    pub fn restrict(&self, request: &mut SearchRequest) -> Result<bool, RecordError> {
        let RecordScope::Patients(patients) = self else {
            return Ok(true);
        };
        let kind = request.resource_type.as_str();
        let clause = if kind == "Patient" {
            Clause {
                param: "_id".into(),
                values: patients.iter().cloned().map(ClauseValue::Id).collect(),
            }
        } else if record::params::search_param(kind, "patient").is_some() {
            Clause {
                param: "patient".into(),
                values: patients
                    .iter()
                    .map(|id| ClauseValue::Reference {
                        target_type: Some("Patient".into()),
                        id: id.clone(),
                    })
                    .collect(),
            }
        } else if NOT_PATIENT_DATA.contains(&kind) {
            return Ok(true);
        } else {
            return Err(RecordError::forbidden(format!(
                "searching {kind} needs access to every ward: it cannot be searched by patient"
            )));
        };
        if clause.values.is_empty() {
            return Ok(false);
        }
        request.clauses.push(clause);
        Ok(true)
    }

    /// Whether the caller may see this resource (current or past version).
    pub fn allows(&self, resource: &Value) -> bool {
        let RecordScope::Patients(patients) = self else {
            return true;
        };
        if resource["resourceType"] == "Patient" {
            return resource["id"]
                .as_str()
                .is_some_and(|id| patients.contains(id));
        }
        let mut referenced = Vec::new();
        patient_references(resource, &mut referenced);
        referenced.iter().all(|id| patients.contains(*id))
    }

    /// `allows`, as the answer a refused read gets.
    pub fn check(&self, resource: &Value) -> Result<(), RecordError> {
        if self.allows(resource) {
            Ok(())
        } else {
            Err(RecordError::forbidden(
                "this resource belongs to a patient outside your wards",
            ))
        }
    }
}

/// The ids of every Patient a resource refers to, wherever the reference sits (`subject`,
/// `patient`, `beneficiary`, contained resources, extensions, ...).
fn patient_references<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(object) => {
            if let Some(Value::String(reference)) = object.get("reference")
                && let Some(id) = patient_id_of(reference)
            {
                out.push(id);
            }
            for child in object.values() {
                patient_references(child, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                patient_references(item, out);
            }
        }
        _ => {}
    }
}

/// `Patient/{id}`, `Patient/{id}/_history/{v}` or an absolute URL ending so: the id.
fn patient_id_of(reference: &str) -> Option<&str> {
    let at = if reference.starts_with("Patient/") {
        0
    } else {
        reference.find("/Patient/")? + 1
    };
    let rest = &reference[at + "Patient/".len()..];
    let id = rest.split('/').next().unwrap_or_default();
    (!id.is_empty()).then_some(id)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn scope(patients: &[&str]) -> RecordScope {
        RecordScope::Patients(patients.iter().map(|p| (*p).to_owned()).collect())
    }

    #[test]
    fn a_resource_is_visible_when_every_patient_it_names_is() {
        let mine = scope(&["p1"]);
        assert!(mine.allows(&json!({"resourceType": "Patient", "id": "p1"})));
        assert!(!mine.allows(&json!({"resourceType": "Patient", "id": "p2"})));
        assert!(
            mine.allows(
                &json!({"resourceType": "Condition", "subject": {"reference": "Patient/p1"}})
            )
        );
        assert!(
            !mine.allows(
                &json!({"resourceType": "Condition", "subject": {"reference": "Patient/p2"}})
            )
        );
        // Wherever the reference is, in any spelling.
        assert!(!mine.allows(&json!({"resourceType": "Claim", "patient": {"reference": "http://emr.example/fhir/Patient/p2/_history/3"}})));
        assert!(!mine.allows(
            &json!({"resourceType": "Observation", "subject": {"reference": "Patient/p1"},
            "contained": [{"resourceType": "Provenance", "target": [{"reference": "Patient/p2"}]}]})
        ));
        // What names no patient: a Location.
        assert!(mine.allows(&json!({"resourceType": "Location", "id": "r1"})));
        assert!(RecordScope::Everything.allows(&json!({"resourceType": "Patient", "id": "p2"})));
    }

    #[test]
    fn searches_are_limited_to_the_callers_patients() {
        let pairs: Vec<(String, String)> = vec![("code".into(), "1234".into())];
        let mut request = SearchRequest::parse("Condition", &pairs).unwrap();
        assert!(scope(&["p1"]).restrict(&mut request).unwrap());
        assert_eq!(request.clauses.last().unwrap().param, "patient");
        let mut request = SearchRequest::parse("Patient", &[]).unwrap();
        assert!(scope(&["p1"]).restrict(&mut request).unwrap());
        assert_eq!(request.clauses.last().unwrap().param, "_id");
        let mut request = SearchRequest::parse("Condition", &[]).unwrap();
        assert!(
            !scope(&[]).restrict(&mut request).unwrap(),
            "no patients: nothing"
        );
        let mut request = SearchRequest::parse("Location", &[]).unwrap();
        assert!(scope(&[]).restrict(&mut request).unwrap());
        assert!(request.clauses.is_empty());
        let mut request = SearchRequest::parse("DiagnosticReport", &[]).unwrap();
        assert_eq!(
            scope(&["p1"]).restrict(&mut request).unwrap_err().status,
            403
        );
    }
}
