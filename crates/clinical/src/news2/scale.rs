//! Which SpO2 scale a patient is scored on, from the record, and why.
//!
//! NEWS2: "SpO2 Scale 2 is for patients with hypercapnic respiratory failure (usually from COPD)
//! for whom a target saturation of 88–92% has been prescribed by a clinician. Everyone else is
//! scored on Scale 1." The record says so in one of two ways:
//!
//! 1. A clinician's oxygen-target prescription. It is the explicit clinical decision, so it is
//!    read first: a target of 88–92% gives Scale 2; any other prescribed target (94–98% say)
//!    gives Scale 1, even with a hypercapnic diagnosis on the record, because the clinician has
//!    decided this patient is not to be kept at 88–92% now.
//! 2. Otherwise, an active diagnosis coded as hypercapnic respiratory failure
//!    (`data/hypercapnic_respiratory_failure.toml`, matched on code system and code) gives Scale 2.
//!
//! Nothing else switches to Scale 2: not COPD alone, not a free-text note. Scale 1 is the default,
//! and it is the safer error (it scores a low saturation higher, never lower).

use std::sync::OnceLock;

use serde::Deserialize;

use super::{CodedCondition, OxygenTarget, RecordContext, ScaleReason, Spo2Scale};

const EMBEDDED_CODES: &str = include_str!("../../data/hypercapnic_respiratory_failure.toml");

/// The prescribed target range that means Scale 2, in percent.
pub const SCALE_2_TARGET_LOW: f64 = 88.0;
pub const SCALE_2_TARGET_HIGH: f64 = 92.0;

#[derive(Debug, thiserror::Error)]
pub enum CodeListError {
    #[error("code list is not valid TOML: {0}")]
    Syntax(#[from] toml::de::Error),
    #[error("code `{code}`: {problem}")]
    Row { code: String, problem: String },
}

/// One diagnosis code that means hypercapnic respiratory failure.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HypercapnicCode {
    /// FHIR `Coding.system` URI.
    pub system: String,
    pub code: String,
    pub display: String,
    /// Where the code was checked.
    pub source: String,
}

#[derive(Debug)]
pub struct HypercapnicCodes {
    codes: Vec<HypercapnicCode>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeFile {
    code: Vec<HypercapnicCode>,
}

const KNOWN_SYSTEMS: [&str; 3] = [
    "http://snomed.info/sct",
    "http://hl7.org/fhir/sid/icd-10-cm",
    "http://hl7.org/fhir/sid/icd-10",
];

impl HypercapnicCodes {
    /// The list shipped with the project.
    pub fn embedded() -> &'static HypercapnicCodes {
        static CODES: OnceLock<HypercapnicCodes> = OnceLock::new();
        CODES.get_or_init(|| {
            HypercapnicCodes::parse(EMBEDDED_CODES).expect("the embedded code list is valid")
        })
    }

    pub fn parse(text: &str) -> Result<HypercapnicCodes, CodeListError> {
        let file: CodeFile = toml::from_str(text)?;
        for code in &file.code {
            let problem = |problem: &str| CodeListError::Row {
                code: code.code.clone(),
                problem: problem.to_owned(),
            };
            if !KNOWN_SYSTEMS.contains(&code.system.as_str()) {
                return Err(problem("unknown code system"));
            }
            if code.display.trim().is_empty() || code.source.trim().is_empty() {
                return Err(problem("display and source are required"));
            }
            let well_formed = if code.system == "http://snomed.info/sct" {
                is_snomed_concept_id(&code.code)
            } else {
                is_icd10_code(&code.code)
            };
            if !well_formed {
                return Err(problem("not a well-formed code of its system"));
            }
        }
        Ok(HypercapnicCodes { codes: file.code })
    }

    pub fn codes(&self) -> &[HypercapnicCode] {
        &self.codes
    }

    /// The listed code a condition carries, if any. ICD-10 codes also match without their dot
    /// (`J9602`), as claims data often writes them; SNOMED CT ids match exactly.
    pub fn matching(&self, condition: &CodedCondition) -> Option<&HypercapnicCode> {
        let icd = |code: &str| code.trim().replace('.', "").to_ascii_uppercase();
        self.codes.iter().find(|listed| {
            listed.system == condition.system.trim()
                && if listed.system == "http://snomed.info/sct" {
                    listed.code == condition.code.trim()
                } else {
                    icd(&listed.code) == icd(&condition.code)
                }
        })
    }
}

/// SNOMED CT identifiers carry a Verhoeff check digit as their last digit.
fn is_snomed_concept_id(id: &str) -> bool {
    const D: [[u8; 10]; 10] = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
        [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
        [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
        [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
        [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
        [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
        [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
        [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
        [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
    ];
    const P: [[u8; 10]; 8] = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
        [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
        [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
        [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
        [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
        [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
        [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
    ];
    if !(6..=18).contains(&id.len()) || !id.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let mut check = 0u8;
    for (i, digit) in id.bytes().rev().map(|b| b - b'0').enumerate() {
        check = D[check as usize][P[i % 8][digit as usize] as usize];
    }
    check == 0
}

/// A letter, two digits, then optionally a dot and one to four characters (J96.02, J9602).
fn is_icd10_code(code: &str) -> bool {
    let bytes = code.as_bytes();
    if bytes.len() < 3 || !bytes[0].is_ascii_uppercase() {
        return false;
    }
    if !bytes[1].is_ascii_digit() || !bytes[2].is_ascii_alphanumeric() {
        return false;
    }
    let rest = &code[3..];
    let rest = rest.strip_prefix('.').unwrap_or(rest);
    rest.len() <= 4 && rest.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn is_scale_2_target(target: &OxygenTarget) -> bool {
    target.low_percent == SCALE_2_TARGET_LOW && target.high_percent == SCALE_2_TARGET_HIGH
}

/// The scale for a patient's record, and the reason, as the result reports it.
pub fn select_scale(context: &RecordContext, codes: &HypercapnicCodes) -> (Spo2Scale, ScaleReason) {
    if let Some(target) = &context.oxygen_target {
        return if is_scale_2_target(target) {
            (
                Spo2Scale::Scale2,
                ScaleReason::TargetPrescribed(target.clone()),
            )
        } else {
            (
                Spo2Scale::Scale1,
                ScaleReason::OtherTargetPrescribed(target.clone()),
            )
        };
    }
    for condition in &context.conditions {
        if let Some(listed) = codes.matching(condition) {
            return (
                Spo2Scale::Scale2,
                ScaleReason::HypercapnicDiagnosis {
                    system: listed.system.clone(),
                    code: listed.code.clone(),
                    display: listed.display.clone(),
                },
            );
        }
    }
    (Spo2Scale::Scale1, ScaleReason::NoScale2Indication)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition(system: &str, code: &str) -> CodedCondition {
        CodedCondition {
            system: system.into(),
            code: code.into(),
        }
    }

    fn context(conditions: Vec<CodedCondition>, target: Option<(f64, f64)>) -> RecordContext {
        RecordContext {
            conditions,
            oxygen_target: target.map(|(low, high)| OxygenTarget {
                low_percent: low,
                high_percent: high,
            }),
        }
    }

    const ICD10CM: &str = "http://hl7.org/fhir/sid/icd-10-cm";
    const SNOMED: &str = "http://snomed.info/sct";

    #[test]
    fn the_embedded_list_loads_with_every_published_code() {
        let codes = HypercapnicCodes::embedded();
        let listed: Vec<(&str, &str)> = codes
            .codes()
            .iter()
            .map(|c| (c.system.as_str(), c.code.as_str()))
            .collect();
        for expected in [
            (ICD10CM, "J96.02"),
            (ICD10CM, "J96.12"),
            (ICD10CM, "J96.22"),
            (ICD10CM, "J96.92"),
            (SNOMED, "426896000"),
        ] {
            assert!(listed.contains(&expected), "{expected:?} missing");
        }
    }

    #[test]
    fn every_listed_code_selects_scale_2_with_its_code_as_reason() {
        for listed in HypercapnicCodes::embedded().codes() {
            let (scale, reason) = select_scale(
                &context(vec![condition(&listed.system, &listed.code)], None),
                HypercapnicCodes::embedded(),
            );
            assert_eq!(scale, Spo2Scale::Scale2, "{}", listed.code);
            assert_eq!(
                reason,
                ScaleReason::HypercapnicDiagnosis {
                    system: listed.system.clone(),
                    code: listed.code.clone(),
                    display: listed.display.clone(),
                }
            );
        }
    }

    #[test]
    fn icd10_codes_match_without_their_dot_but_only_in_their_own_system() {
        let codes = HypercapnicCodes::embedded();
        assert!(codes.matching(&condition(ICD10CM, "J9602")).is_some());
        assert!(codes.matching(&condition(ICD10CM, "j96.22")).is_some());
        // J96.01 is acute respiratory failure *with hypoxia* in ICD-10-CM: Scale 1.
        assert!(codes.matching(&condition(ICD10CM, "J96.01")).is_none());
        assert!(codes.matching(&condition(ICD10CM, "J96.00")).is_none());
        // The same characters in another system are another code.
        assert!(codes.matching(&condition(SNOMED, "J96.02")).is_none());
        assert!(
            codes
                .matching(&condition("http://hl7.org/fhir/sid/icd-10", "J96.02"))
                .is_none()
        );
        assert!(codes.matching(&condition(ICD10CM, "426896000")).is_none());
    }

    #[test]
    fn copd_alone_stays_on_scale_1() {
        // 13645005 Chronic obstructive lung disease: the record must say hypercapnic failure
        // or a clinician must prescribe 88–92%.
        let (scale, reason) = select_scale(
            &context(vec![condition(SNOMED, "13645005")], None),
            HypercapnicCodes::embedded(),
        );
        assert_eq!(scale, Spo2Scale::Scale1);
        assert_eq!(reason, ScaleReason::NoScale2Indication);
    }

    #[test]
    fn a_prescribed_target_of_88_to_92_selects_scale_2() {
        let (scale, reason) = select_scale(
            &context(vec![], Some((88.0, 92.0))),
            HypercapnicCodes::embedded(),
        );
        assert_eq!(scale, Spo2Scale::Scale2);
        assert!(matches!(reason, ScaleReason::TargetPrescribed(_)));
    }

    #[test]
    fn another_prescribed_target_overrides_a_hypercapnic_diagnosis() {
        let (scale, reason) = select_scale(
            &context(vec![condition(ICD10CM, "J96.12")], Some((94.0, 98.0))),
            HypercapnicCodes::embedded(),
        );
        assert_eq!(scale, Spo2Scale::Scale1);
        assert!(matches!(reason, ScaleReason::OtherTargetPrescribed(_)));
        for near in [(88.0, 93.0), (87.0, 92.0), (88.5, 92.0)] {
            let (scale, _) =
                select_scale(&context(vec![], Some(near)), HypercapnicCodes::embedded());
            assert_eq!(scale, Spo2Scale::Scale1, "{near:?}");
        }
    }

    #[test]
    fn code_list_rows_are_validated() {
        let row = |system: &str, code: &str| {
            format!(
                "[[code]]\nsystem = \"{system}\"\ncode = \"{code}\"\ndisplay = \"x\"\nsource = \"y\"\n"
            )
        };
        assert!(HypercapnicCodes::parse(&row(SNOMED, "426896000")).is_ok());
        // A wrong check digit.
        assert!(HypercapnicCodes::parse(&row(SNOMED, "426896001")).is_err());
        assert!(HypercapnicCodes::parse(&row(ICD10CM, "96.02")).is_err());
        assert!(HypercapnicCodes::parse(&row("http://example.org", "J96.02")).is_err());
    }

    #[test]
    fn snomed_check_digits() {
        for good in [
            "426896000",
            "13645005",
            "248234008",
            "1104441000000107",
            "87433001",
        ] {
            assert!(is_snomed_concept_id(good), "{good}");
        }
        for bad in ["426896001", "13645006", "12", "abc"] {
            assert!(!is_snomed_concept_id(bad), "{bad}");
        }
    }
}
