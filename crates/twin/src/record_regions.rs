//! Where a laboratory result or a medication of the record belongs on the avatar, for a body
//! region's detail ("the conditions, medications and labs that relate to it"). A table shipped as
//! data (`data/record_regions.toml`): labs by LOINC code, medications by ATC class (longest
//! prefix) or RxNorm code. A medication's own reasons (the conditions it is given for) come
//! first; that choice is the caller's, who knows the patient's conditions (see
//! `server::record_ward`). No match means no region: the item is shown in the panel only.

use std::collections::HashMap;
use std::sync::OnceLock;

use model::BodyRegion;
use serde::Deserialize;

use crate::conditions::PrefixTable;

pub const LOINC: &str = "http://loinc.org";
pub const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";
pub const ATC: &str = "http://www.whocc.no/atc";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    lab: Vec<LabRow>,
    atc: Vec<AtcRow>,
    rxnorm: Vec<RxNormRow>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LabRow {
    loinc: String,
    #[allow(dead_code, reason = "kept in the data for the reader")]
    display: String,
    regions: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AtcRow {
    prefix: String,
    #[allow(dead_code, reason = "kept in the data for the reader")]
    display: String,
    regions: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RxNormRow {
    code: String,
    #[allow(dead_code, reason = "kept in the data for the reader")]
    display: String,
    regions: Vec<String>,
}

struct Index {
    labs: HashMap<String, Vec<BodyRegion>>,
    atc: PrefixTable,
    rxnorm: HashMap<String, Vec<BodyRegion>>,
}

fn parse(keys: Vec<String>) -> Vec<BodyRegion> {
    keys.iter()
        .map(|key| {
            key.parse()
                .expect("the record region table names known regions")
        })
        .collect()
}

fn index() -> &'static Index {
    static INDEX: OnceLock<Index> = OnceLock::new();
    INDEX.get_or_init(|| {
        let table: Table = toml::from_str(include_str!("../data/record_regions.toml"))
            .expect("the record region table is valid");
        // A chemical subgroup wins over its therapeutic group.
        let atc = PrefixTable::new(
            table
                .atc
                .into_iter()
                .map(|row| (row.prefix, parse(row.regions))),
        );
        Index {
            labs: table
                .lab
                .into_iter()
                .map(|row| (row.loinc, parse(row.regions)))
                .collect(),
            atc,
            rxnorm: table
                .rxnorm
                .into_iter()
                .map(|row| (row.code, parse(row.regions)))
                .collect(),
        }
    })
}

/// The regions of a laboratory result coded `system`/`code`; empty when the table does not
/// place it (a result of the blood as a whole, or a code it does not know).
pub fn lab_regions(system: &str, code: &str) -> Vec<BodyRegion> {
    if system != LOINC {
        return Vec::new();
    }
    index().labs.get(code).cloned().unwrap_or_default()
}

/// The regions of a medication coded `system`/`code` by the drug table alone (ATC class or
/// RxNorm clinical drug); empty when it does not know the drug.
pub fn medication_regions(system: &str, code: &str) -> Vec<BodyRegion> {
    let index = index();
    if system == RXNORM {
        return index.rxnorm.get(code).cloned().unwrap_or_default();
    }
    if system == ATC {
        return index.atc.get(code);
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(regions: Vec<BodyRegion>) -> Vec<String> {
        regions.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn labs_by_loinc() {
        assert_eq!(keys(lab_regions(LOINC, "10839-9")), ["heart"]);
        assert_eq!(keys(lab_regions(LOINC, "33762-6")), ["heart"]);
        assert_eq!(keys(lab_regions(LOINC, "2160-0")), ["back"]);
        assert_eq!(keys(lab_regions(LOINC, "1742-6")), ["abdomen"]);
        assert_eq!(
            keys(lab_regions(LOINC, "2019-8")),
            ["lung_left", "lung_right"]
        );
        assert_eq!(keys(lab_regions(LOINC, "3016-3")), ["neck"]);
        // The blood as a whole is not placed on an organ.
        assert!(lab_regions(LOINC, "718-7").is_empty());
        assert!(lab_regions("urn:other", "10839-9").is_empty());
    }

    #[test]
    fn medications_by_atc_prefix_and_rxnorm() {
        assert_eq!(keys(medication_regions(ATC, "C07AB02")), ["heart"]);
        assert_eq!(keys(medication_regions(ATC, "B01AC06")), ["heart"]);
        // Other antithrombotics (warfarin, B01AA) are not the platelet inhibitors' subgroup.
        assert!(medication_regions(ATC, "B01AA03").is_empty());
        assert_eq!(
            keys(medication_regions(ATC, "R03AK06")),
            ["lung_left", "lung_right"]
        );
        assert_eq!(keys(medication_regions(RXNORM, "966222")), ["neck"]);
        assert!(
            medication_regions(RXNORM, "313782").is_empty(),
            "paracetamol"
        );
        assert!(medication_regions("urn:other", "C07").is_empty());
    }

    #[test]
    fn every_row_of_the_table_loads() {
        let index = index();
        assert!(index.labs.len() >= 30);
        assert!(index.labs.values().all(|regions| !regions.is_empty()));
        assert!(
            index
                .atc
                .rows()
                .iter()
                .all(|(_, regions)| !regions.is_empty())
        );
        assert!(index.rxnorm.values().all(|regions| !regions.is_empty()));
    }
}
