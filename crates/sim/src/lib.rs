//! A deterministic physiological simulator of a ward: a floor plan, patients with coded
//! conditions, scenarios (stable, sepsis, COPD exacerbation, atrial fibrillation, hypotension,
//! fever), vital-sign dynamics, ECG and pleth waveforms, room climate, and the devices that
//! report all of it over MQTT exactly as `docs/mqtt.md` specifies.
//!
//! The simulation (`SimWard`) does no I/O and reads no clock: time is passed to `tick`, and the
//! same seed and tick times give the same bytes. Only `publisher` talks to a broker.

mod environment;
mod names;
pub mod payload;
mod physiology;
pub mod publisher;
mod scenario;
mod ward;
mod waveform;

pub use payload::{NumericPayload, ObservationPayload, WaveformPayload, observation_topic};
pub use physiology::Vitals;
pub use publisher::{PublisherError, PublisherOptions, PublisherStats, run_publisher};
pub use scenario::{Condition, Scenario};
pub use ward::{
    AssociationTarget, BedLayout, DeviceKind, DeviceMessage, RoomLayout, Sex, SimConfig, SimDevice,
    SimPatient, SimWard, WardLayout,
};
pub use waveform::{ECG_RATE_HZ, PLETH_RATE_HZ, PULSE_TRANSIT_S};
