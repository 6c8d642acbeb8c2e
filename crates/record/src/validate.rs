//! The checks a resource passes before the record keeps it: the required elements (cardinality
//! 1..1 or 1..*) of the record's clinical types, and the required choice elements
//! (`medication[x]`, `effective[x]`).
//!
//! The table is taken from the `fhir.resources` 6.4.0 Python models (generated from the R4
//! 4.0.1 StructureDefinitions: fields marked `element_required` and `one_of_many_required`),
//! not written from memory. Types without an entry have no required elements beyond
//! `resourceType`. Terminology bindings are not checked (as `fhir.resources` does not either).

use serde_json::Value;

use crate::outcome::RecordError;

/// Elements of which at least one must be present (a required choice type).
type ChoiceGroup = &'static [&'static str];

/// (type, required elements, required choice groups).
const REQUIRED: &[(&str, &[&str], &[ChoiceGroup])] = &[
    ("Encounter", &["class", "status"], &[]),
    ("Condition", &["subject"], &[]),
    ("AllergyIntolerance", &["patient"], &[]),
    (
        "MedicationRequest",
        &["intent", "status", "subject"],
        &[&["medicationCodeableConcept", "medicationReference"]],
    ),
    (
        "MedicationStatement",
        &["status", "subject"],
        &[&["medicationCodeableConcept", "medicationReference"]],
    ),
    (
        "MedicationAdministration",
        &["status", "subject"],
        &[
            &["effectiveDateTime", "effectivePeriod"],
            &["medicationCodeableConcept", "medicationReference"],
        ],
    ),
    ("Observation", &["code", "status"], &[]),
    ("Procedure", &["status", "subject"], &[]),
];

/// Refuses (422, with the element as `expression`) a resource missing a required element.
pub fn check_required(resource: &Value) -> Result<(), RecordError> {
    let Some(resource_type) = resource["resourceType"].as_str() else {
        return Err(RecordError::invalid("resource has no resourceType").at("resourceType"));
    };
    let Some((_, elements, choices)) = REQUIRED.iter().find(|(name, _, _)| *name == resource_type)
    else {
        return Ok(());
    };
    let present = |element: &str| match resource.get(element) {
        None | Some(Value::Null) => false,
        Some(Value::Array(items)) => !items.is_empty(),
        Some(Value::String(text)) => !text.is_empty(),
        Some(_) => true,
    };
    for element in *elements {
        if !present(element) {
            return Err(RecordError::unprocessable(format!(
                "{resource_type}.{element} is required (FHIR R4)"
            ))
            .at(format!("{resource_type}.{element}")));
        }
    }
    for choice in *choices {
        if !choice.iter().any(|element| present(element)) {
            return Err(RecordError::unprocessable(format!(
                "{resource_type} needs one of {} (FHIR R4)",
                choice.join(", ")
            ))
            .at(format!("{resource_type}.{}", choice[0])));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn required_elements_are_checked() {
        let ok = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}});
        assert!(check_required(&ok).is_ok());
        let error =
            check_required(&json!({"resourceType": "Observation", "status": "final"})).unwrap_err();
        assert_eq!(
            (error.status, error.expression.as_deref()),
            (422, Some("Observation.code"))
        );
        let no_medication = json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order", "subject": {"reference": "Patient/1"}});
        assert_eq!(check_required(&no_medication).unwrap_err().status, 422);
        assert!(check_required(&json!({"resourceType": "Patient"})).is_ok());
        assert!(check_required(&json!({"resourceType": "Claim"})).is_ok());
    }
}
