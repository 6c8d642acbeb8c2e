//! `Observation.bodySite` (SNOMED CT body structures) to the avatar's body regions.
//!
//! Laterality is taken from a pre-coordinated lateral concept (368208006 left upper arm), from a
//! laterality qualifier coded beside the structure in `bodySite.coding` (7771000 left,
//! 24028007 right), or from a post-coordinated expression `7569003:272741003=7771000`
//! (272741003 is the Laterality attribute). Codes the table does not know are refused by the
//! caller rather than guessed.
//!
//! Sources of the codes (fully specified names as published):
//! the SNOMED CT concepts as listed with their fully specified names in published FHIR value
//! sets: the HL7 FHIR vital-signs examples (368209003 Right upper arm structure), the HAR Body
//! Locations value set of the IMU sensor IG (chest, back, head, wrists, forearms, thighs, feet,
//! hands), body temperature measurement-site value sets (52795006 Forehead structure, 7569003
//! Finger structure), and SNOMED CT concept model examples (272741003 Laterality (attribute),
//! 39607008 Lung structure, 80891009 Heart structure).

use model::{BodyPart, BodyRegion, Side};

/// SNOMED CT laterality qualifiers (DESIGN.md: 7771000 left, 24028007 right).
pub const LEFT: &str = "7771000";
pub const RIGHT: &str = "24028007";
/// SNOMED CT `Laterality (attribute)`.
pub const LATERALITY_ATTRIBUTE: &str = "272741003";

/// (SNOMED CT code, fully specified name, part, side).
pub const BODY_STRUCTURES: &[(&str, &str, BodyPart, Option<Side>)] = &[
    ("69536005", "Head structure", BodyPart::Head, None),
    ("52795006", "Forehead structure", BodyPart::Head, None),
    ("51185008", "Thoracic structure", BodyPart::Chest, None),
    ("80891009", "Heart structure", BodyPart::Heart, None),
    ("39607008", "Lung structure", BodyPart::Lung, None),
    (
        "77568009",
        "Structure of posterior region of trunk",
        BodyPart::Back,
        None,
    ),
    ("40983000", "Upper arm structure", BodyPart::UpperArm, None),
    (
        "368208006",
        "Left upper arm structure",
        BodyPart::UpperArm,
        Some(Side::Left),
    ),
    (
        "368209003",
        "Right upper arm structure",
        BodyPart::UpperArm,
        Some(Side::Right),
    ),
    ("14975008", "Forearm structure", BodyPart::Forearm, None),
    (
        "66480008",
        "Structure of left forearm",
        BodyPart::Forearm,
        Some(Side::Left),
    ),
    (
        "64262003",
        "Structure of right forearm",
        BodyPart::Forearm,
        Some(Side::Right),
    ),
    // The avatar has no wrist: a wrist-worn device is drawn at the distal forearm.
    ("8205005", "Wrist region structure", BodyPart::Forearm, None),
    (
        "5951000",
        "Structure of left wrist region",
        BodyPart::Forearm,
        Some(Side::Left),
    ),
    (
        "9736006",
        "Structure of right wrist region",
        BodyPart::Forearm,
        Some(Side::Right),
    ),
    ("85562004", "Hand structure", BodyPart::Hand, None),
    (
        "85151006",
        "Structure of left hand",
        BodyPart::Hand,
        Some(Side::Left),
    ),
    (
        "78791008",
        "Structure of right hand",
        BodyPart::Hand,
        Some(Side::Right),
    ),
    ("7569003", "Finger structure", BodyPart::Finger, None),
    ("68367000", "Thigh structure", BodyPart::Thigh, None),
    (
        "61396006",
        "Structure of left thigh",
        BodyPart::Thigh,
        Some(Side::Left),
    ),
    (
        "11207009",
        "Structure of right thigh",
        BodyPart::Thigh,
        Some(Side::Right),
    ),
    ("56459004", "Foot structure", BodyPart::Foot, None),
    (
        "22335008",
        "Structure of left foot",
        BodyPart::Foot,
        Some(Side::Left),
    ),
    (
        "7769000",
        "Structure of right foot",
        BodyPart::Foot,
        Some(Side::Right),
    ),
];

#[derive(Debug, PartialEq, Eq)]
pub enum BodySiteError {
    /// No SNOMED CT structure code the table knows.
    Unknown(String),
    /// Two sides named for one site.
    ConflictingSides,
}

fn side_of(code: &str) -> Option<Side> {
    match code {
        LEFT => Some(Side::Left),
        RIGHT => Some(Side::Right),
        _ => None,
    }
}

/// Reads one SNOMED CT code or post-coordinated expression into (structure, laterality).
fn structure_of(expression: &str) -> Option<(BodyPart, Option<Side>, Option<Side>)> {
    let (focus, refinement) = match expression.split_once(':') {
        Some((focus, refinement)) => (focus.trim(), Some(refinement)),
        None => (expression.trim(), None),
    };
    let &(_, _, part, side) = BODY_STRUCTURES.iter().find(|row| row.0 == focus)?;
    let refined_side = match refinement {
        Some(refinement) => {
            let (attribute, value) = refinement.split_once('=')?;
            if attribute.trim() != LATERALITY_ATTRIBUTE {
                return None;
            }
            Some(side_of(value.trim())?)
        }
        None => None,
    };
    Some((part, side, refined_side))
}

/// The avatar region for SNOMED CT codes (or expressions) given in one `bodySite`.
pub fn region_of<'a>(
    codes: impl IntoIterator<Item = &'a str>,
) -> Result<BodyRegion, BodySiteError> {
    let mut part = None;
    let mut sides = Vec::new();
    let mut unknown = None;
    for code in codes {
        if let Some(side) = side_of(code.trim()) {
            sides.push(side);
        } else if let Some((found, side, refined)) = structure_of(code) {
            part.get_or_insert(found);
            sides.extend(side);
            sides.extend(refined);
        } else {
            unknown.get_or_insert_with(|| code.to_owned());
        }
    }
    let Some(part) = part else {
        return Err(BodySiteError::Unknown(unknown.unwrap_or_default()));
    };
    sides.dedup();
    if sides.len() > 1 {
        return Err(BodySiteError::ConflictingSides);
    }
    // A side on a midline part (left of the heart?) says nothing the avatar can draw.
    let side = sides.first().copied().filter(|_| part.is_paired());
    Ok(BodyRegion::new(part, side))
}

/// The SNOMED CT codings for an avatar region, for `bodySite` on what we serve: the lateral
/// structure when the table has one, else the structure with a laterality qualifier beside it
/// (as [`region_of`] reads it back). `None` for a region the table does not name.
pub fn codings_of(region: BodyRegion) -> Option<Vec<(&'static str, &'static str)>> {
    if let Some(&(code, name, _, _)) = BODY_STRUCTURES
        .iter()
        .find(|row| row.2 == region.part && row.3 == region.side)
    {
        return Some(vec![(code, name)]);
    }
    let &(code, name, _, _) = BODY_STRUCTURES
        .iter()
        .find(|row| row.2 == region.part && row.3.is_none())?;
    let side = match region.side? {
        Side::Left => (LEFT, "Left"),
        Side::Right => (RIGHT, "Right"),
    };
    Some(vec![(code, name), side])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(codes: &[&str]) -> Result<String, BodySiteError> {
        region_of(codes.iter().copied()).map(|r| r.to_string())
    }

    #[test]
    fn every_region_we_code_reads_back_as_itself() {
        for region in BodyRegion::all() {
            if let Some(codings) = codings_of(region) {
                let back = region_of(codings.iter().map(|(code, _)| *code)).unwrap();
                assert_eq!(back, region, "{region}");
            }
        }
    }

    #[test]
    fn every_row_maps_to_a_drawn_region() {
        let all = BodyRegion::all();
        for &(code, _, part, side) in BODY_STRUCTURES {
            let region = region_of([code]).unwrap();
            assert_eq!(region, BodyRegion::new(part, side), "{code}");
            assert!(all.contains(&region.drawn()), "{code}");
        }
    }

    #[test]
    fn laterality_three_ways() {
        assert_eq!(region(&["368208006"]), Ok("upper_arm_left".into()));
        assert_eq!(region(&["7569003", RIGHT]), Ok("finger_right".into()));
        assert_eq!(
            region(&["7569003:272741003=7771000"]),
            Ok("finger_left".into())
        );
        assert_eq!(region(&["7569003"]), Ok("finger".into()));
        assert_eq!(
            region(&["368208006", RIGHT]),
            Err(BodySiteError::ConflictingSides)
        );
        assert_eq!(region(&["80891009", LEFT]), Ok("heart".into()));
    }

    #[test]
    fn unknown_codes_are_refused() {
        assert_eq!(
            region(&["12345"]),
            Err(BodySiteError::Unknown("12345".into()))
        );
        assert_eq!(region(&[LEFT]), Err(BodySiteError::Unknown(String::new())));
        assert!(region(&["7569003:999=7771000"]).is_err());
    }
}
