//! The core model of the ward twin: who and where (ward, room, bed, patient), what measures
//! (device), what was measured (observation), where on the body it belongs (body region), and
//! the metric catalog that gives every measurement its codes, unit and meaning.
//!
//! This crate does no I/O and knows no wire format: FHIR resources, HL7 segments, MQTT payloads
//! and WebSocket messages are edge types converted to and from these.

mod body;
mod catalog;
pub mod civil;
mod device;
mod ids;
mod observation;
mod time;

pub use body::{BodyPart, BodyRegion, Side};
pub use catalog::{Catalog, CatalogError, Metric, MetricCategory, MetricKind, Range};
pub use device::{AssociationTarget, DeviceKind};
pub use ids::{BedId, DeviceId, PatientId, RoomId, WardId};
pub use observation::{Observation, ObservedValue, Quality, ReferenceRange, WaveformChunk};
pub use time::Timestamp;
