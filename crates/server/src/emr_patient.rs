//! Which Patient at the external EMR is a ward patient (docs/emr.md). By default the ids are
//! the same (`Patient/X` there is ward patient X). A hospital whose ward patients come from
//! the HL7 ADT feed (PID-3, the medical record number) and whose EMR has ids of its own links
//! them by identifier instead: the ward patient X is the EMR's Patient with the identifier
//! `{system}|X`.
//!
//! The pull asks the EMR for that Patient and rewrites the references to it in what it keeps,
//! so our record speaks of the ward patient; the push names the subject by a conditional
//! reference (`Patient?identifier={system}|X`) that the EMR resolves inside its transaction.

use std::time::Duration;

use serde_json::Value;

use crate::sinks::http_client;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum PatientLink {
    /// The EMR's Patient has the ward patient's id.
    #[default]
    ById,
    /// The EMR's Patient carries the ward patient's id as an identifier in this system.
    ByIdentifier { system: String },
}

/// What the EMR says about a ward patient.
#[derive(Debug, PartialEq, Eq)]
pub enum EmrPatient {
    Found(String),
    /// No Patient there has the identifier.
    Unknown,
    /// Several do: the link is unsafe to follow until someone merges them.
    Ambiguous(usize),
}

impl PatientLink {
    /// The EMR's id of `ward_id`'s Patient, asking the EMR when linked by identifier.
    pub async fn resolve(
        &self,
        base_url: &str,
        trust: Option<&http_client::Trust>,
        token: Option<&str>,
        ward_id: &str,
    ) -> anyhow::Result<EmrPatient> {
        let PatientLink::ByIdentifier { system } = self else {
            return Ok(EmrPatient::Found(ward_id.to_owned()));
        };
        let (authority, base_path) = http_client::split_url_with(base_url, trust)?;
        let path = format!(
            "{base_path}/Patient?identifier={}&_count=2",
            encode(&format!("{system}|{ward_id}"))
        );
        let response = http_client::request(
            &authority,
            "GET",
            &path,
            token,
            None,
            Duration::from_secs(30),
        )
        .await?;
        if response.status != 200 {
            anyhow::bail!("the emr answered {} to a Patient search", response.status);
        }
        let bundle: Value = serde_json::from_slice(&response.body)?;
        let ids: Vec<&str> = bundle["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|entry| entry["search"]["mode"] != "include")
            .filter_map(|entry| entry["resource"]["id"].as_str())
            .collect();
        let total = bundle["total"].as_u64().map_or(ids.len(), |n| n as usize);
        Ok(match (ids.as_slice(), total) {
            ([], 0) => EmrPatient::Unknown,
            ([id], 1) => EmrPatient::Found((*id).to_owned()),
            (_, total) => EmrPatient::Ambiguous(total.max(ids.len())),
        })
    }

    /// The reference the push gives a value of `ward_id`.
    pub fn subject_reference(&self, ward_id: &str) -> String {
        match self {
            PatientLink::ById => format!("Patient/{ward_id}"),
            PatientLink::ByIdentifier { system } => {
                format!(
                    "Patient?identifier={}",
                    encode(&format!("{system}|{ward_id}"))
                )
            }
        }
    }
}

/// Rewrites every reference to the EMR's Patient `emr_id` in `resource` to the ward's `ward_id`
/// (relative, versioned or absolute), so the record we keep speaks of the ward patient.
pub fn rewrite_patient_references(resource: &mut Value, emr_id: &str, ward_id: &str) {
    match resource {
        Value::Object(object) => {
            if let Some(Value::String(reference)) = object.get_mut("reference")
                && names_patient(reference, emr_id)
            {
                *reference = format!("Patient/{ward_id}");
            }
            for child in object.values_mut() {
                rewrite_patient_references(child, emr_id, ward_id);
            }
        }
        Value::Array(items) => {
            for item in items {
                rewrite_patient_references(item, emr_id, ward_id);
            }
        }
        _ => {}
    }
}

fn names_patient(reference: &str, id: &str) -> bool {
    let target = format!("Patient/{id}");
    let without_version = reference.split("/_history/").next().unwrap_or(reference);
    without_version == target || without_version.ends_with(&format!("/{target}"))
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay).
pub fn encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn references_to_the_emr_patient_become_the_ward_patient() {
        let mut condition = json!({"resourceType": "Condition",
            "subject": {"reference": "Patient/emr-9"},
            "asserter": {"reference": "http://emr.example/fhir/Patient/emr-9/_history/2"},
            "evidence": [{"detail": [{"reference": "Patient/emr-90"}]}]});
        rewrite_patient_references(&mut condition, "emr-9", "MRN7");
        assert_eq!(condition["subject"]["reference"], "Patient/MRN7");
        assert_eq!(condition["asserter"]["reference"], "Patient/MRN7");
        assert_eq!(
            condition["evidence"][0]["detail"][0]["reference"], "Patient/emr-90",
            "another patient's id that merely starts the same stays"
        );
    }

    #[test]
    fn the_push_names_the_subject_by_identifier() {
        let link = PatientLink::ByIdentifier {
            system: "urn:oid:1.2.3".into(),
        };
        assert_eq!(
            link.subject_reference("MRN 7"),
            "Patient?identifier=urn%3Aoid%3A1.2.3%7CMRN%207"
        );
        assert_eq!(PatientLink::ById.subject_reference("p1"), "Patient/p1");
    }
}
