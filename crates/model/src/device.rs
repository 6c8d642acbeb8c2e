//! Devices: what kind of thing measures, and what it is associated with.

use crate::{BedId, PatientId, RoomId};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AssociationTarget {
    Bed(BedId),
    Patient(PatientId),
    Room(RoomId),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceKind {
    BedsideMonitor,
    Wearable,
    EnvironmentalSensor,
    Gateway,
}

impl DeviceKind {
    pub fn key(self) -> &'static str {
        match self {
            DeviceKind::BedsideMonitor => "bedside_monitor",
            DeviceKind::Wearable => "wearable",
            DeviceKind::EnvironmentalSensor => "environmental_sensor",
            DeviceKind::Gateway => "gateway",
        }
    }

    pub fn from_key(key: &str) -> Option<DeviceKind> {
        [
            DeviceKind::BedsideMonitor,
            DeviceKind::Wearable,
            DeviceKind::EnvironmentalSensor,
            DeviceKind::Gateway,
        ]
        .into_iter()
        .find(|kind| kind.key() == key)
    }
}
