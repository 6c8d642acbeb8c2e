//! Devices: what kind of thing measures, and what it is associated with.

use crate::{BedId, PatientId, RoomId};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AssociationTarget {
    Bed(BedId),
    Patient(PatientId),
    Room(RoomId),
}

impl AssociationTarget {
    /// `bed`, `patient` or `room`: the kind as stored and served.
    pub fn kind(&self) -> &'static str {
        match self {
            AssociationTarget::Bed(_) => "bed",
            AssociationTarget::Patient(_) => "patient",
            AssociationTarget::Room(_) => "room",
        }
    }

    pub fn id(&self) -> &str {
        match self {
            AssociationTarget::Bed(id) => id.as_str(),
            AssociationTarget::Patient(id) => id.as_str(),
            AssociationTarget::Room(id) => id.as_str(),
        }
    }

    /// The inverse of (`kind()`, `id()`).
    pub fn from_parts(kind: &str, id: impl Into<String>) -> Option<AssociationTarget> {
        match kind {
            "bed" => Some(AssociationTarget::Bed(BedId::new(id))),
            "patient" => Some(AssociationTarget::Patient(PatientId::new(id))),
            "room" => Some(AssociationTarget::Room(RoomId::new(id))),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceKind {
    BedsideMonitor,
    Wearable,
    EnvironmentalSensor,
    Gateway,
}

impl DeviceKind {
    pub const ALL: [DeviceKind; 4] = [
        DeviceKind::BedsideMonitor,
        DeviceKind::Wearable,
        DeviceKind::EnvironmentalSensor,
        DeviceKind::Gateway,
    ];

    pub fn key(self) -> &'static str {
        match self {
            DeviceKind::BedsideMonitor => "bedside_monitor",
            DeviceKind::Wearable => "wearable",
            DeviceKind::EnvironmentalSensor => "environmental_sensor",
            DeviceKind::Gateway => "gateway",
        }
    }

    pub fn from_key(key: &str) -> Option<DeviceKind> {
        DeviceKind::ALL.into_iter().find(|kind| kind.key() == key)
    }
}
