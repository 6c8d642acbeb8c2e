//! FHIR R4 at the edge: hand-written serde types for the resources metaward accepts and serves
//! (Observation, Device, Bundle, OperationOutcome and their datatypes), and the mapping of a
//! device Observation (vital-signs profile, Point-of-Care Device IG) to core observations.
//!
//! The types tolerate unknown elements on input (serde ignores them) and never invent elements
//! on output: every optional element is skipped when absent. They are meant to grow into the
//! full R4 API (Patient, Condition, Encounter, search) rather than be replaced.
//!
//! This crate does no I/O: the server reads the bytes, resolves references against its stores
//! and writes the answers.

pub mod body_site;
pub mod datetime;
pub mod device;
pub mod issue;
pub mod observation;
pub mod outbound;
pub mod types;

pub use issue::{Issue, IssueCode};
pub use types::*;

/// Code systems as FHIR names them.
pub mod system {
    pub const LOINC: &str = "http://loinc.org";
    pub const SNOMED_CT: &str = "http://snomed.info/sct";
    pub const UCUM: &str = "http://unitsofmeasure.org";
    /// ISO/IEEE 11073-10101 nomenclature (MDC), as the vital-signs profile and PoCD IG use it.
    pub const MDC: &str = "urn:iso:std:iso:11073:10101";
    /// The IEEE EUI-64 of a device, as the Point-of-Care Device IG's examples identify
    /// devices (`Device-PhysioMonitorMdsDevice`: value `01-23-45-67-89-AB-CD-EF`).
    pub const EUI64: &str = "urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680";
    /// metaward's own code system for the kind of device (bedside_monitor, wearable, ...).
    pub const METAWARD_DEVICE_KIND: &str = "https://metaward.dev/fhir/CodeSystem/device-kind";
}
