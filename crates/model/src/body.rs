//! The avatar's named body regions, with laterality where the body has two of a part.
//! Each region has a stable key (`finger_left`, `heart`, `lung_right`) used by the catalog,
//! by device placement and by the browser.

use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    Left,
    Right,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BodyPart {
    Head,
    Face,
    Neck,
    Chest,
    Heart,
    Lung,
    Abdomen,
    Pelvis,
    Back,
    Axilla,
    UpperArm,
    Forearm,
    Hand,
    Finger,
    Thigh,
    Leg,
    Foot,
}

impl BodyPart {
    pub const ALL: [BodyPart; 17] = [
        BodyPart::Head,
        BodyPart::Face,
        BodyPart::Neck,
        BodyPart::Chest,
        BodyPart::Heart,
        BodyPart::Lung,
        BodyPart::Abdomen,
        BodyPart::Pelvis,
        BodyPart::Back,
        BodyPart::Axilla,
        BodyPart::UpperArm,
        BodyPart::Forearm,
        BodyPart::Hand,
        BodyPart::Finger,
        BodyPart::Thigh,
        BodyPart::Leg,
        BodyPart::Foot,
    ];

    pub fn key(self) -> &'static str {
        match self {
            BodyPart::Head => "head",
            BodyPart::Face => "face",
            BodyPart::Neck => "neck",
            BodyPart::Chest => "chest",
            BodyPart::Heart => "heart",
            BodyPart::Lung => "lung",
            BodyPart::Abdomen => "abdomen",
            BodyPart::Pelvis => "pelvis",
            BodyPart::Back => "back",
            BodyPart::Axilla => "axilla",
            BodyPart::UpperArm => "upper_arm",
            BodyPart::Forearm => "forearm",
            BodyPart::Hand => "hand",
            BodyPart::Finger => "finger",
            BodyPart::Thigh => "thigh",
            BodyPart::Leg => "leg",
            BodyPart::Foot => "foot",
        }
    }

    /// Parts the body has two of; a region of such a part without a side means "either".
    pub fn is_paired(self) -> bool {
        matches!(
            self,
            BodyPart::Lung
                | BodyPart::Axilla
                | BodyPart::UpperArm
                | BodyPart::Forearm
                | BodyPart::Hand
                | BodyPart::Finger
                | BodyPart::Thigh
                | BodyPart::Leg
                | BodyPart::Foot
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BodyRegion {
    pub part: BodyPart,
    pub side: Option<Side>,
}

impl BodyRegion {
    pub const fn new(part: BodyPart, side: Option<Side>) -> Self {
        Self { part, side }
    }

    /// Every region the avatar draws: midline parts once, paired parts once per side.
    pub fn all() -> Vec<BodyRegion> {
        let mut regions = Vec::new();
        for part in BodyPart::ALL {
            if part.is_paired() {
                regions.push(BodyRegion::new(part, Some(Side::Left)));
                regions.push(BodyRegion::new(part, Some(Side::Right)));
            } else {
                regions.push(BodyRegion::new(part, None));
            }
        }
        regions
    }

    /// The region drawn for this one: a paired part without a side is drawn on the left.
    pub fn drawn(self) -> BodyRegion {
        match (self.part.is_paired(), self.side) {
            (true, None) => BodyRegion::new(self.part, Some(Side::Left)),
            (false, Some(_)) => BodyRegion::new(self.part, None),
            _ => self,
        }
    }
}

impl fmt::Display for BodyRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.part.key())?;
        match self.side {
            Some(Side::Left) => f.write_str("_left"),
            Some(Side::Right) => f.write_str("_right"),
            None => Ok(()),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown body region `{0}`")]
pub struct UnknownBodyRegion(pub String);

impl FromStr for BodyRegion {
    type Err = UnknownBodyRegion;

    fn from_str(key: &str) -> Result<Self, Self::Err> {
        let (part_key, side) = if let Some(part) = key.strip_suffix("_left") {
            (part, Some(Side::Left))
        } else if let Some(part) = key.strip_suffix("_right") {
            (part, Some(Side::Right))
        } else {
            (key, None)
        };
        let part = BodyPart::ALL
            .into_iter()
            .find(|part| part.key() == part_key)
            .ok_or_else(|| UnknownBodyRegion(key.to_owned()))?;
        Ok(BodyRegion::new(part, side))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_region_key_round_trips() {
        for region in BodyRegion::all() {
            assert_eq!(region.to_string().parse::<BodyRegion>(), Ok(region));
        }
        assert_eq!(BodyRegion::all().len(), 8 + 9 * 2);
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!("elbow".parse::<BodyRegion>().is_err());
        assert!("_left".parse::<BodyRegion>().is_err());
    }

    #[test]
    fn drawn_regions_are_always_in_the_drawn_set() {
        let all = BodyRegion::all();
        for part in BodyPart::ALL {
            for side in [None, Some(Side::Left), Some(Side::Right)] {
                assert!(all.contains(&BodyRegion::new(part, side).drawn()));
            }
        }
    }
}
