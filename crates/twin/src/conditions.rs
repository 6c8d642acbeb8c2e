//! Where a condition sits on the avatar: the record's own body site first, then a table from
//! diagnosis codes to regions shipped as data (`data/condition_regions.toml`).

use std::collections::HashMap;
use std::sync::OnceLock;

use model::BodyRegion;
use serde::Deserialize;

pub const SNOMED_CT: &str = "http://snomed.info/sct";
pub const ICD_10: &str = "http://hl7.org/fhir/sid/icd-10";

#[derive(Deserialize)]
struct Table {
    snomed: Vec<SnomedRow>,
    icd10: Vec<IcdRow>,
}

#[derive(Deserialize)]
struct SnomedRow {
    code: String,
    #[allow(dead_code, reason = "kept in the data for the reader")]
    display: String,
    regions: Vec<String>,
}

#[derive(Deserialize)]
struct IcdRow {
    prefix: String,
    #[allow(dead_code, reason = "kept in the data for the reader")]
    display: String,
    regions: Vec<String>,
}

struct Index {
    snomed: HashMap<String, Vec<BodyRegion>>,
    icd10: PrefixTable,
}

/// Regions by code prefix (ICD-10 blocks, ATC groups): the longest prefix a code starts with
/// wins, so a block wins over its chapter.
pub(crate) struct PrefixTable(Vec<(String, Vec<BodyRegion>)>);

impl PrefixTable {
    pub(crate) fn new(rows: impl IntoIterator<Item = (String, Vec<BodyRegion>)>) -> PrefixTable {
        let mut rows: Vec<_> = rows.into_iter().collect();
        rows.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        PrefixTable(rows)
    }

    /// Every prefix with its regions, longest first (for the tables' own tests).
    #[cfg(test)]
    pub(crate) fn rows(&self) -> &[(String, Vec<BodyRegion>)] {
        &self.0
    }

    /// The regions of the longest prefix of `code`; empty when none is.
    pub(crate) fn get(&self, code: &str) -> Vec<BodyRegion> {
        self.0
            .iter()
            .find(|(prefix, _)| code.starts_with(prefix.as_str()))
            .map(|(_, regions)| regions.clone())
            .unwrap_or_default()
    }
}

fn index() -> &'static Index {
    static INDEX: OnceLock<Index> = OnceLock::new();
    INDEX.get_or_init(|| {
        let table: Table = toml::from_str(include_str!("../data/condition_regions.toml"))
            .expect("the condition region table is valid");
        let parse = |keys: Vec<String>| -> Vec<BodyRegion> {
            keys.iter()
                .map(|key| {
                    key.parse()
                        .expect("the condition region table names known regions")
                })
                .collect()
        };
        let icd10 = PrefixTable::new(
            table
                .icd10
                .into_iter()
                .map(|row| (row.prefix, parse(row.regions))),
        );
        Index {
            snomed: table
                .snomed
                .into_iter()
                .map(|row| (row.code, parse(row.regions)))
                .collect(),
            icd10,
        }
    })
}

/// The regions a condition lights up: its body site when the record gives one, else the table's.
/// Empty when neither knows; the condition is then shown in the patient panel only.
pub fn regions_for(system: &str, code: &str, body_site: Option<BodyRegion>) -> Vec<BodyRegion> {
    if let Some(site) = body_site {
        return vec![site];
    }
    let index = index();
    if system == SNOMED_CT {
        return index.snomed.get(code).cloned().unwrap_or_default();
    }
    if system.starts_with(ICD_10) {
        return index.icd10.get(code);
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
    fn body_site_wins_then_snomed_then_icd10_longest_prefix() {
        let site: BodyRegion = "foot_right".parse().unwrap();
        assert_eq!(
            keys(regions_for(SNOMED_CT, "13645005", Some(site))),
            ["foot_right"]
        );
        assert_eq!(
            keys(regions_for(SNOMED_CT, "13645005", None)),
            ["lung_left", "lung_right"]
        );
        assert_eq!(keys(regions_for(ICD_10, "I48.0", None)), ["heart"]);
        assert_eq!(keys(regions_for(ICD_10, "I63.9", None)), ["head"]);
        assert!(regions_for(SNOMED_CT, "0", None).is_empty());
        assert!(regions_for("urn:other", "J44", None).is_empty());
    }

    #[test]
    fn every_row_of_the_table_loads() {
        let index = index();
        assert!(index.snomed.len() >= 20);
        assert!(
            index
                .icd10
                .rows()
                .iter()
                .all(|(_, regions)| !regions.is_empty())
        );
    }
}
