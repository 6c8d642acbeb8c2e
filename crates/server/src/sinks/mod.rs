//! Sinks: components that send what metaward holds to other systems, each with its config and
//! its task (`fhir_push`: device vitals to an external EMR as FHIR Observations).

pub mod fhir_push;
pub mod http_client;
