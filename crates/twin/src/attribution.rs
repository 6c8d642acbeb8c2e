//! To whom an observation belongs, decided at the time of its sample: the subject the message
//! itself names (an HL7 PID or PV1-3, a FHIR `subject`), else the device's association
//! (bed → the bed's occupant then, patient → the patient's bed then, room), and where on the
//! body it sits: the observation's own body site, else the device's placement, else the
//! catalog's default region. An observation from an unassociated device stays unassociated.

use model::{BedId, BodyRegion, Catalog, Observation, PatientId, RoomId};

use crate::registry::Registry;
use model::AssociationTarget;

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Attribution {
    pub patient: Option<PatientId>,
    pub bed: Option<BedId>,
    pub room: Option<RoomId>,
}

impl Attribution {
    pub fn is_unassociated(&self) -> bool {
        self.patient.is_none() && self.bed.is_none() && self.room.is_none()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Attributed {
    pub observation: Observation,
    pub attribution: Attribution,
    /// The avatar region the value is shown at; `None` for room and device metrics.
    pub region: Option<BodyRegion>,
}

/// `subject` is what the message says it is about; it wins over the device's association,
/// because the sender knew, while an association is only what the ward last recorded.
pub fn attribute(
    registry: &Registry,
    catalog: &Catalog,
    observation: Observation,
    subject: Option<&AssociationTarget>,
) -> Attributed {
    let t = observation.device_time;
    let mut attribution = Attribution::default();
    let target = subject.or_else(|| registry.association_at(&observation.device_id, t));
    match target {
        Some(AssociationTarget::Bed(bed)) => {
            attribution.patient = registry.occupant_at(bed, t).cloned();
            attribution.room = registry.room_of_bed(bed).cloned();
            attribution.bed = Some(bed.clone());
        }
        Some(AssociationTarget::Patient(patient)) => {
            attribution.bed = registry.bed_of_patient_at(patient, t).cloned();
            attribution.room = attribution
                .bed
                .as_ref()
                .and_then(|bed| registry.room_of_bed(bed))
                .cloned();
            attribution.patient = Some(patient.clone());
        }
        Some(AssociationTarget::Room(room)) => attribution.room = Some(room.clone()),
        None => {}
    }
    let catalog_region = catalog
        .by_key(&observation.metric)
        .and_then(|metric| metric.default_region());
    // Only body measurements get a region; a room sensor's value has none whatever it says.
    let region = catalog_region.map(|default| {
        observation
            .body_site
            .or_else(|| {
                registry
                    .device(&observation.device_id)
                    .and_then(|device| device.placement)
            })
            .unwrap_or(default)
    });
    Attributed {
        observation,
        attribution,
        region,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::DeviceInfo;
    use model::DeviceKind;
    use model::{BodyPart, DeviceId, ObservedValue, Quality, Side, Timestamp};

    fn spo2(device: &str, t: i64, body_site: Option<BodyRegion>) -> Observation {
        Observation {
            device_id: DeviceId::from(device),
            metric: "spo2".into(),
            value: ObservedValue::Numeric(97.0),
            device_time: Timestamp(t),
            received_time: Timestamp(t),
            body_site,
            quality: Quality::GOOD,
            reference_range: None,
        }
    }

    fn ward() -> Registry {
        let mut registry = Registry::default();
        registry.add_bed("b1".into(), "r1".into());
        registry.add_bed("b2".into(), "r1".into());
        registry.admit("p1".into(), "b1".into(), Timestamp(0));
        registry.admit("p2".into(), "b1".into(), Timestamp(1000));
        registry
    }

    #[test]
    fn a_bed_device_goes_to_the_occupant_at_the_time_of_the_sample() {
        let mut registry = ward();
        registry.associate(
            "ox".into(),
            AssociationTarget::Bed("b1".into()),
            Timestamp(0),
        );
        let catalog = Catalog::embedded();
        let before = attribute(&registry, catalog, spo2("ox", 999, None), None);
        let after = attribute(&registry, catalog, spo2("ox", 1000, None), None);
        assert_eq!(before.attribution.patient, Some("p1".into()));
        assert_eq!(after.attribution.patient, Some("p2".into()));
        assert_eq!(after.attribution.room, Some("r1".into()));
    }

    #[test]
    fn a_patient_device_follows_the_patient_to_their_bed() {
        let mut registry = ward();
        registry.associate(
            "patch".into(),
            AssociationTarget::Patient("p1".into()),
            Timestamp(0),
        );
        let catalog = Catalog::embedded();
        let in_bed = attribute(&registry, catalog, spo2("patch", 500, None), None);
        assert_eq!(in_bed.attribution.bed, Some("b1".into()));
        // p1 left b1 when p2 was admitted into it and has no bed now, but the data is still theirs.
        let no_bed = attribute(&registry, catalog, spo2("patch", 1500, None), None);
        assert_eq!(no_bed.attribution.patient, Some("p1".into()));
        assert_eq!(no_bed.attribution.bed, None);
    }

    #[test]
    fn the_subject_a_message_names_wins_over_the_device_association() {
        let mut registry = ward();
        registry.associate(
            "ox".into(),
            AssociationTarget::Bed("b1".into()),
            Timestamp(0),
        );
        let catalog = Catalog::embedded();
        let named = AssociationTarget::Patient("p9".into());
        let attributed = attribute(&registry, catalog, spo2("ox", 500, None), Some(&named));
        assert_eq!(attributed.attribution.patient, Some("p9".into()));
        assert_eq!(attributed.attribution.bed, None);
        // A named bed resolves to whoever lies in it at the time of the sample.
        let bed = AssociationTarget::Bed("b1".into());
        let by_bed = attribute(&registry, catalog, spo2("stranger", 1500, None), Some(&bed));
        assert_eq!(by_bed.attribution.patient, Some("p2".into()));
    }

    #[test]
    fn unknown_devices_are_never_attributed() {
        let registry = ward();
        let attributed = attribute(
            &registry,
            Catalog::embedded(),
            spo2("stranger", 500, None),
            None,
        );
        assert!(attributed.attribution.is_unassociated());
    }

    #[test]
    fn region_comes_from_body_site_then_placement_then_catalog() {
        let mut registry = ward();
        let catalog = Catalog::embedded();
        let right_finger = BodyRegion::new(BodyPart::Finger, Some(Side::Right));
        let left_finger = BodyRegion::new(BodyPart::Finger, Some(Side::Left));
        let ear = BodyRegion::new(BodyPart::Head, None);
        assert_eq!(
            attribute(&registry, catalog, spo2("ox", 0, None), None).region,
            Some(left_finger)
        );
        registry.upsert_device(DeviceInfo {
            id: "ox".into(),
            kind: DeviceKind::Wearable,
            model: "oximeter".into(),
            placement: Some(right_finger),
        });
        assert_eq!(
            attribute(&registry, catalog, spo2("ox", 0, None), None).region,
            Some(right_finger)
        );
        assert_eq!(
            attribute(&registry, catalog, spo2("ox", 0, Some(ear)), None).region,
            Some(ear)
        );
    }
}
