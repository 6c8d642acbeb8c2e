//! Stable identifiers. They are opaque strings chosen by whoever created the thing (the ward
//! configuration, the EMR, the device's own EUI-64 or serial), never positions or guesses.

use std::fmt;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.to_owned())
            }
        }
    };
}

string_id!(
    /// A ward: the unit of scope for users and of partitioning for the bus.
    WardId
);
string_id!(
    /// A room within a ward; environmental sensors are associated with rooms.
    RoomId
);
string_id!(
    /// A bed within a room; bedside devices are usually associated with beds.
    BedId
);
string_id!(
    /// A patient, as the record knows them (MRN or FHIR logical id).
    PatientId
);
string_id!(
    /// A device: its EUI-64, serial number or other stable identifier.
    DeviceId
);
