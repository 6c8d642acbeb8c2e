//! Sources: one folder per device protocol, each turning its wire format into observations
//! for the ingest pipeline and answering the device in its own protocol's terms.

pub mod fhir_pull;
pub mod fhir_rest;
pub mod hl7_mllp;
pub mod mqtt;
