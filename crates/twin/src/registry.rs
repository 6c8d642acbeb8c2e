//! Who is where, over time: device associations (device → bed, patient or room, each over a
//! time range) and bed occupancy (bed → patient over a time range). Data from a device goes to
//! whoever it was associated with at the time of the sample, never to a guess.

use std::collections::HashMap;

use model::{
    AssociationTarget, BedId, BodyRegion, DeviceId, DeviceKind, PatientId, RoomId, Timestamp,
};

#[derive(Clone, Debug, PartialEq)]
pub struct DeviceInfo {
    pub id: DeviceId,
    pub kind: DeviceKind,
    pub model: String,
    /// Where on the body the device sits (a finger oximeter, an axillary patch), if it is worn.
    pub placement: Option<BodyRegion>,
}

/// A half-open time range `[from, to)`; `to = None` means still open.
#[derive(Clone, Debug, PartialEq)]
struct Span<T> {
    value: T,
    from: Timestamp,
    to: Option<Timestamp>,
}

impl<T> Span<T> {
    fn covers(&self, t: Timestamp) -> bool {
        self.from <= t && self.to.is_none_or(|to| t < to)
    }
}

/// Opens a new span, closing the one still open at `from`. Spans are kept in time order.
fn open_span<T>(spans: &mut Vec<Span<T>>, value: T, from: Timestamp) {
    if let Some(last) = spans.last_mut()
        && last.to.is_none_or(|to| to > from)
    {
        last.to = Some(from);
    }
    spans.push(Span {
        value,
        from,
        to: None,
    });
}

fn close_span<T>(spans: &mut [Span<T>], at: Timestamp) -> bool {
    match spans.last_mut() {
        Some(last) if last.to.is_none() && last.from <= at => {
            last.to = Some(at);
            true
        }
        _ => false,
    }
}

fn at<T>(spans: &[Span<T>], t: Timestamp) -> Option<&T> {
    spans
        .iter()
        .rev()
        .find(|span| span.covers(t))
        .map(|span| &span.value)
}

#[derive(Clone, Debug, Default)]
pub struct Registry {
    devices: HashMap<DeviceId, DeviceInfo>,
    associations: HashMap<DeviceId, Vec<Span<AssociationTarget>>>,
    occupancy: HashMap<BedId, Vec<Span<PatientId>>>,
    bed_rooms: HashMap<BedId, RoomId>,
}

impl Registry {
    pub fn add_bed(&mut self, bed: BedId, room: RoomId) {
        self.bed_rooms.insert(bed, room);
    }

    pub fn room_of_bed(&self, bed: &BedId) -> Option<&RoomId> {
        self.bed_rooms.get(bed)
    }

    pub fn upsert_device(&mut self, device: DeviceInfo) {
        self.devices.insert(device.id.clone(), device);
    }

    pub fn device(&self, id: &DeviceId) -> Option<&DeviceInfo> {
        self.devices.get(id)
    }

    /// Associates a device from `from` on, ending its previous association there.
    pub fn associate(&mut self, device: DeviceId, target: AssociationTarget, from: Timestamp) {
        open_span(self.associations.entry(device).or_default(), target, from);
    }

    /// Ends the device's open association; returns false when it had none.
    pub fn end_association(&mut self, device: &DeviceId, at: Timestamp) -> bool {
        self.associations
            .get_mut(device)
            .is_some_and(|spans| close_span(spans, at))
    }

    pub fn association_at(&self, device: &DeviceId, t: Timestamp) -> Option<&AssociationTarget> {
        self.associations.get(device).and_then(|spans| at(spans, t))
    }

    /// Puts a patient in a bed from `from` on, taking them out of any other bed at that time.
    pub fn admit(&mut self, patient: PatientId, bed: BedId, from: Timestamp) {
        self.discharge(&patient, from);
        open_span(self.occupancy.entry(bed).or_default(), patient, from);
    }

    pub fn discharge(&mut self, patient: &PatientId, at: Timestamp) {
        for spans in self.occupancy.values_mut() {
            if spans
                .last()
                .is_some_and(|span| span.to.is_none() && &span.value == patient)
            {
                close_span(spans, at);
            }
        }
    }

    pub fn occupant_at(&self, bed: &BedId, t: Timestamp) -> Option<&PatientId> {
        self.occupancy.get(bed).and_then(|spans| at(spans, t))
    }

    pub fn bed_of_patient_at(&self, patient: &PatientId, t: Timestamp) -> Option<&BedId> {
        self.occupancy
            .iter()
            .find(|(_, spans)| at(spans, t) == Some(patient))
            .map(|(bed, _)| bed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: i64) -> Timestamp {
        Timestamp(ms)
    }

    #[test]
    fn association_follows_time_ranges() {
        let mut registry = Registry::default();
        let device = DeviceId::from("dev-1");
        registry.associate(device.clone(), AssociationTarget::Bed("b1".into()), t(100));
        registry.associate(device.clone(), AssociationTarget::Bed("b2".into()), t(200));
        assert_eq!(registry.association_at(&device, t(99)), None);
        assert_eq!(
            registry.association_at(&device, t(100)),
            Some(&AssociationTarget::Bed("b1".into()))
        );
        assert_eq!(
            registry.association_at(&device, t(199)),
            Some(&AssociationTarget::Bed("b1".into()))
        );
        assert_eq!(
            registry.association_at(&device, t(200)),
            Some(&AssociationTarget::Bed("b2".into()))
        );
        assert!(registry.end_association(&device, t(300)));
        assert_eq!(registry.association_at(&device, t(300)), None);
        assert_eq!(
            registry.association_at(&device, t(250)),
            Some(&AssociationTarget::Bed("b2".into()))
        );
        assert!(!registry.end_association(&device, t(400)));
    }

    #[test]
    fn admitting_moves_a_patient_between_beds() {
        let mut registry = Registry::default();
        let patient = PatientId::from("p1");
        registry.admit(patient.clone(), "b1".into(), t(10));
        registry.admit(patient.clone(), "b2".into(), t(20));
        assert_eq!(registry.occupant_at(&"b1".into(), t(15)), Some(&patient));
        assert_eq!(registry.occupant_at(&"b1".into(), t(20)), None);
        assert_eq!(registry.occupant_at(&"b2".into(), t(20)), Some(&patient));
        assert_eq!(
            registry.bed_of_patient_at(&patient, t(25)),
            Some(&"b2".into())
        );
        registry.discharge(&patient, t(30));
        assert_eq!(registry.bed_of_patient_at(&patient, t(30)), None);
    }
}
