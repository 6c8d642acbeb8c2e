//! Search parameters as data: for each type, each parameter's name, kind and the element paths
//! its values come from, and the extraction of index values from a resource.
//!
//! The names, kinds and paths follow the FHIR R4 search parameter registry
//! (hl7.org/fhir/R4/searchparameter-registry.html and each resource's "Search Parameters"
//! table); paths are simple dotted element paths with choice types spelled out
//! (`effectiveDateTime`, `effectivePeriod`) instead of FHIRPath. Every type also has `_id` and
//! `_lastUpdated`, answered from the resource table itself.

use serde_json::Value;

use crate::date::{self, DateRange};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// A code, Coding, CodeableConcept, Identifier or boolean: matched as `system|code`.
    Token,
    /// Names and texts: matched case-insensitively from the start (or `:exact`, `:contains`).
    String,
    /// date, dateTime, instant, Period: matched as ranges with the `eq`…`eb` prefixes.
    Date,
    /// A Reference: matched on `Type/id`.
    Reference,
}

impl ParamKind {
    pub fn name(self) -> &'static str {
        match self {
            ParamKind::Token => "token",
            ParamKind::String => "string",
            ParamKind::Date => "date",
            ParamKind::Reference => "reference",
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct SearchParamDef {
    pub resource_type: &'static str,
    pub name: &'static str,
    pub kind: ParamKind,
    /// Element paths from the resource root; an array anywhere on the way is walked through.
    pub paths: &'static [&'static str],
    /// For reference parameters that may only point to one type (`patient` → Patient).
    pub target: Option<&'static str>,
}

const fn p(
    resource_type: &'static str,
    name: &'static str,
    kind: ParamKind,
    paths: &'static [&'static str],
) -> SearchParamDef {
    SearchParamDef {
        resource_type,
        name,
        kind,
        paths,
        target: None,
    }
}

const fn patient_ref(resource_type: &'static str, path: &'static [&'static str]) -> SearchParamDef {
    SearchParamDef {
        resource_type,
        name: "patient",
        kind: ParamKind::Reference,
        paths: path,
        target: Some("Patient"),
    }
}

use ParamKind::{Date, Reference, String as Str, Token};

/// The search parameters of the record, by type.
pub static SEARCH_PARAMS: &[SearchParamDef] = &[
    // Patient
    p("Patient", "identifier", Token, &["identifier"]),
    p("Patient", "name", Str, &["name"]),
    p("Patient", "family", Str, &["name.family"]),
    p("Patient", "given", Str, &["name.given"]),
    p("Patient", "birthdate", Date, &["birthDate"]),
    p("Patient", "gender", Token, &["gender"]),
    p("Patient", "active", Token, &["active"]),
    // Observation
    patient_ref("Observation", &["subject"]),
    p("Observation", "subject", Reference, &["subject"]),
    p("Observation", "encounter", Reference, &["encounter"]),
    p("Observation", "device", Reference, &["device"]),
    p("Observation", "identifier", Token, &["identifier"]),
    p("Observation", "code", Token, &["code"]),
    p("Observation", "category", Token, &["category"]),
    p("Observation", "status", Token, &["status"]),
    p("Observation", "component-code", Token, &["component.code"]),
    p(
        "Observation",
        "date",
        Date,
        &["effectiveDateTime", "effectivePeriod", "effectiveInstant"],
    ),
    // Condition
    patient_ref("Condition", &["subject"]),
    p("Condition", "subject", Reference, &["subject"]),
    p("Condition", "encounter", Reference, &["encounter"]),
    p("Condition", "identifier", Token, &["identifier"]),
    p("Condition", "code", Token, &["code"]),
    p("Condition", "category", Token, &["category"]),
    p("Condition", "clinical-status", Token, &["clinicalStatus"]),
    p(
        "Condition",
        "verification-status",
        Token,
        &["verificationStatus"],
    ),
    p("Condition", "body-site", Token, &["bodySite"]),
    p(
        "Condition",
        "onset-date",
        Date,
        &["onsetDateTime", "onsetPeriod"],
    ),
    p("Condition", "recorded-date", Date, &["recordedDate"]),
    // AllergyIntolerance
    patient_ref("AllergyIntolerance", &["patient"]),
    p("AllergyIntolerance", "identifier", Token, &["identifier"]),
    p(
        "AllergyIntolerance",
        "code",
        Token,
        &["code", "reaction.substance"],
    ),
    p(
        "AllergyIntolerance",
        "clinical-status",
        Token,
        &["clinicalStatus"],
    ),
    p(
        "AllergyIntolerance",
        "verification-status",
        Token,
        &["verificationStatus"],
    ),
    p("AllergyIntolerance", "category", Token, &["category"]),
    p("AllergyIntolerance", "criticality", Token, &["criticality"]),
    p("AllergyIntolerance", "type", Token, &["type"]),
    p("AllergyIntolerance", "date", Date, &["recordedDate"]),
    // MedicationRequest
    patient_ref("MedicationRequest", &["subject"]),
    p("MedicationRequest", "subject", Reference, &["subject"]),
    p("MedicationRequest", "encounter", Reference, &["encounter"]),
    p("MedicationRequest", "identifier", Token, &["identifier"]),
    p(
        "MedicationRequest",
        "code",
        Token,
        &["medicationCodeableConcept"],
    ),
    p(
        "MedicationRequest",
        "medication",
        Reference,
        &["medicationReference"],
    ),
    p("MedicationRequest", "status", Token, &["status"]),
    p("MedicationRequest", "intent", Token, &["intent"]),
    p("MedicationRequest", "category", Token, &["category"]),
    p("MedicationRequest", "authoredon", Date, &["authoredOn"]),
    // MedicationStatement
    patient_ref("MedicationStatement", &["subject"]),
    p("MedicationStatement", "subject", Reference, &["subject"]),
    p("MedicationStatement", "context", Reference, &["context"]),
    p("MedicationStatement", "identifier", Token, &["identifier"]),
    p(
        "MedicationStatement",
        "code",
        Token,
        &["medicationCodeableConcept"],
    ),
    p(
        "MedicationStatement",
        "medication",
        Reference,
        &["medicationReference"],
    ),
    p("MedicationStatement", "status", Token, &["status"]),
    p("MedicationStatement", "category", Token, &["category"]),
    p(
        "MedicationStatement",
        "effective",
        Date,
        &["effectiveDateTime", "effectivePeriod"],
    ),
    // MedicationAdministration
    patient_ref("MedicationAdministration", &["subject"]),
    p(
        "MedicationAdministration",
        "subject",
        Reference,
        &["subject"],
    ),
    p(
        "MedicationAdministration",
        "context",
        Reference,
        &["context"],
    ),
    p(
        "MedicationAdministration",
        "identifier",
        Token,
        &["identifier"],
    ),
    p(
        "MedicationAdministration",
        "code",
        Token,
        &["medicationCodeableConcept"],
    ),
    p(
        "MedicationAdministration",
        "medication",
        Reference,
        &["medicationReference"],
    ),
    p("MedicationAdministration", "status", Token, &["status"]),
    p(
        "MedicationAdministration",
        "effective-time",
        Date,
        &["effectiveDateTime", "effectivePeriod"],
    ),
    // Encounter
    patient_ref("Encounter", &["subject"]),
    p("Encounter", "subject", Reference, &["subject"]),
    p("Encounter", "identifier", Token, &["identifier"]),
    p("Encounter", "status", Token, &["status"]),
    p("Encounter", "class", Token, &["class"]),
    p("Encounter", "type", Token, &["type"]),
    p("Encounter", "reason-code", Token, &["reasonCode"]),
    p("Encounter", "location", Reference, &["location.location"]),
    p("Encounter", "date", Date, &["period"]),
    // Procedure
    patient_ref("Procedure", &["subject"]),
    p("Procedure", "subject", Reference, &["subject"]),
    p("Procedure", "encounter", Reference, &["encounter"]),
    p("Procedure", "identifier", Token, &["identifier"]),
    p("Procedure", "code", Token, &["code"]),
    p("Procedure", "status", Token, &["status"]),
    p(
        "Procedure",
        "date",
        Date,
        &["performedDateTime", "performedPeriod"],
    ),
    // Device
    patient_ref("Device", &["patient"]),
    p("Device", "identifier", Token, &["identifier"]),
    p("Device", "type", Token, &["type"]),
    p("Device", "status", Token, &["status"]),
    p("Device", "manufacturer", Str, &["manufacturer"]),
    p("Device", "model", Str, &["modelNumber"]),
    p("Device", "device-name", Str, &["deviceName.name"]),
    p("Device", "location", Reference, &["location"]),
    // Location
    p("Location", "identifier", Token, &["identifier"]),
    p("Location", "name", Str, &["name", "alias"]),
    p("Location", "status", Token, &["status"]),
    p("Location", "type", Token, &["type"]),
    p("Location", "partof", Reference, &["partOf"]),
];

/// The search parameters of `resource_type`.
pub fn search_params_of(resource_type: &str) -> impl Iterator<Item = &'static SearchParamDef> {
    SEARCH_PARAMS
        .iter()
        .filter(move |def| def.resource_type == resource_type)
}

pub fn search_param(resource_type: &str, name: &str) -> Option<&'static SearchParamDef> {
    search_params_of(resource_type).find(|def| def.name == name)
}

/// The types that have search parameters beyond `_id` and `_lastUpdated`.
pub fn searchable_types() -> Vec<&'static str> {
    let mut types: Vec<&str> = SEARCH_PARAMS.iter().map(|def| def.resource_type).collect();
    types.dedup();
    types
}

/// One value of a search parameter in a resource, as the index keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexValue {
    Token {
        system: Option<String>,
        code: String,
    },
    /// Normalized: lowercase.
    String(String),
    Date(DateRange),
    Reference {
        target_type: String,
        target_id: String,
    },
}

/// Every (parameter, value) pair of `resource` for the parameters of its type.
pub fn index_values(resource: &Value) -> Vec<(&'static str, IndexValue)> {
    let Some(resource_type) = resource["resourceType"].as_str() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for def in search_params_of(resource_type) {
        for path in def.paths {
            let mut found = Vec::new();
            walk(resource, path, &mut found);
            for value in found {
                extract(def, value, &mut |value| out.push((def.name, value)));
            }
        }
    }
    out
}

fn walk<'a>(value: &'a Value, path: &str, found: &mut Vec<&'a Value>) {
    if let Value::Array(items) = value {
        for item in items {
            walk(item, path, found);
        }
        return;
    }
    if path.is_empty() {
        found.push(value);
        return;
    }
    let (head, rest) = path.split_once('.').unwrap_or((path, ""));
    if let Some(child) = value.get(head) {
        walk(child, rest, found);
    }
}

fn extract(def: &SearchParamDef, value: &Value, push: &mut dyn FnMut(IndexValue)) {
    match def.kind {
        ParamKind::Token => tokens(value, push),
        ParamKind::String => strings(value, push),
        ParamKind::Date => {
            if let Some(range) = date_range(value) {
                push(IndexValue::Date(range));
            }
        }
        ParamKind::Reference => {
            if let Some((target_type, target_id)) =
                value["reference"].as_str().and_then(parse_reference)
            {
                push(IndexValue::Reference {
                    target_type,
                    target_id,
                });
            }
        }
    }
}

fn tokens(value: &Value, push: &mut dyn FnMut(IndexValue)) {
    match value {
        Value::String(code) => push(IndexValue::Token {
            system: None,
            code: code.clone(),
        }),
        Value::Bool(flag) => push(IndexValue::Token {
            system: None,
            code: flag.to_string(),
        }),
        Value::Object(object) => {
            if let Some(codings) = object.get("coding").and_then(Value::as_array) {
                // CodeableConcept
                for coding in codings {
                    tokens(coding, push);
                }
            } else if let Some(code) = object.get("code").and_then(Value::as_str) {
                // Coding
                push(IndexValue::Token {
                    system: object
                        .get("system")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    code: code.to_owned(),
                });
            } else if let Some(identifier) = object.get("value").and_then(Value::as_str) {
                // Identifier
                push(IndexValue::Token {
                    system: object
                        .get("system")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    code: identifier.to_owned(),
                });
            }
        }
        _ => {}
    }
}

fn strings(value: &Value, push: &mut dyn FnMut(IndexValue)) {
    match value {
        Value::String(text) => push(IndexValue::String(normalize(text))),
        Value::Object(object) => {
            // HumanName and Address: every part that a person would search by.
            for part in [
                "text",
                "family",
                "given",
                "prefix",
                "suffix",
                "line",
                "city",
                "state",
                "postalCode",
                "country",
            ] {
                match object.get(part) {
                    Some(Value::String(text)) => push(IndexValue::String(normalize(text))),
                    Some(Value::Array(items)) => {
                        for text in items.iter().filter_map(Value::as_str) {
                            push(IndexValue::String(normalize(text)));
                        }
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

fn date_range(value: &Value) -> Option<DateRange> {
    match value {
        Value::String(text) => date::parse(text),
        Value::Object(period) => {
            let start = period
                .get("start")
                .and_then(Value::as_str)
                .and_then(date::parse);
            let end = period
                .get("end")
                .and_then(Value::as_str)
                .and_then(date::parse);
            if start.is_none() && end.is_none() {
                return None;
            }
            Some(DateRange {
                low: start.map_or(date::MIN_MS, |s| s.low),
                high: end.map_or(date::MAX_MS, |e| e.high),
            })
        }
        _ => None,
    }
}

/// String search is case-insensitive: values and queries are lowercased the same way.
pub fn normalize(text: &str) -> String {
    text.trim().to_lowercase()
}

/// `Type/id`, `Type/id/_history/v` or an absolute URL ending in one, as (type, id). A
/// `urn:uuid:`, a contained `#ref` or a conditional reference is not a stored target.
pub fn parse_reference(reference: &str) -> Option<(String, String)> {
    let reference = match reference.find("/_history/") {
        Some(position) => &reference[..position],
        None => reference,
    };
    let mut parts = reference.rsplit('/');
    let id = parts.next()?;
    let resource_type = parts.next()?;
    (crate::types::is_resource_type(resource_type) && crate::types::is_valid_id(id))
        .then(|| (resource_type.to_owned(), id.to_owned()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_param_is_unique_and_its_type_is_real() {
        for (index, def) in SEARCH_PARAMS.iter().enumerate() {
            assert!(
                crate::types::is_resource_type(def.resource_type),
                "{}",
                def.resource_type
            );
            assert!(
                SEARCH_PARAMS[..index]
                    .iter()
                    .all(|o| (o.resource_type, o.name) != (def.resource_type, def.name)),
                "{}.{} twice",
                def.resource_type,
                def.name
            );
        }
    }

    #[test]
    fn an_observation_is_indexed_by_patient_code_category_and_date() {
        let observation = json!({
            "resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}], "text": "Heart rate"},
            "subject": {"reference": "Patient/example"},
            "effectiveDateTime": "1999-07-02"
        });
        let values = index_values(&observation);
        let has = |name: &str, value: IndexValue| values.contains(&(name, value));
        assert!(has(
            "code",
            IndexValue::Token {
                system: Some("http://loinc.org".into()),
                code: "8867-4".into()
            }
        ));
        assert!(has(
            "status",
            IndexValue::Token {
                system: None,
                code: "final".into()
            }
        ));
        assert!(has(
            "patient",
            IndexValue::Reference {
                target_type: "Patient".into(),
                target_id: "example".into()
            }
        ));
        assert!(has(
            "subject",
            IndexValue::Reference {
                target_type: "Patient".into(),
                target_id: "example".into()
            }
        ));
        assert!(has(
            "date",
            IndexValue::Date(date::parse("1999-07-02").unwrap())
        ));
        assert!(values.iter().any(|(name, _)| *name == "category"));
    }

    #[test]
    fn names_identifiers_and_open_periods() {
        let patient = json!({"resourceType": "Patient",
            "identifier": [{"system": "urn:oid:1.2.36.146.595.217.0.1", "value": "12345"}],
            "name": [{"family": "Chalmers", "given": ["Peter", "James"]}], "active": true});
        let values = index_values(&patient);
        assert!(values.contains(&("name", IndexValue::String("chalmers".into()))));
        assert!(values.contains(&("given", IndexValue::String("james".into()))));
        assert!(values.contains(&(
            "active",
            IndexValue::Token {
                system: None,
                code: "true".into()
            }
        )));
        assert!(values.contains(&(
            "identifier",
            IndexValue::Token {
                system: Some("urn:oid:1.2.36.146.595.217.0.1".into()),
                code: "12345".into()
            }
        )));
        let encounter =
            json!({"resourceType": "Encounter", "period": {"start": "2015-01-17T16:00:00+10:00"}});
        let values = index_values(&encounter);
        let Some((_, IndexValue::Date(range))) = values.iter().find(|(n, _)| *n == "date") else {
            panic!()
        };
        assert_eq!(range.high, date::MAX_MS);
    }

    #[test]
    fn references_are_type_and_id() {
        assert_eq!(
            parse_reference("Patient/123"),
            Some(("Patient".into(), "123".into()))
        );
        assert_eq!(
            parse_reference("http://x.org/fhir/Patient/1/_history/2"),
            Some(("Patient".into(), "1".into()))
        );
        assert_eq!(
            parse_reference("urn:uuid:4e8ed886-fd5f-40bb-8feb-f339b04d853a"),
            None
        );
        assert_eq!(parse_reference("#referral"), None);
        assert_eq!(parse_reference("Patient?identifier=a|b"), None);
    }
}
