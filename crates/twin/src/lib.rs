//! The live ward twin, as plain state machines: which device is associated with which bed,
//! patient or room over time (`registry`), how a raw measurement becomes a catalog observation
//! (`normalize`), to whom an observation belongs (`attribution`), and the live state per
//! patient and room that the browser sees (`live`).
//!
//! Invariant: this crate does no I/O and never reads a clock; time is an input. Replaying the
//! same inputs gives the same twin, which is what recovery from the log relies on.

pub mod attribution;
pub mod conditions;
pub mod device_health;
pub mod live;
pub mod normalize;
pub mod record_regions;
pub mod registry;

pub use attribution::{Attributed, Attribution};
pub use device_health::{DeviceHealth, DeviceHealthBook, DeviceHealthConfig, HealthChange};
pub use live::{LiveTwin, PatientStatus, TwinEvent, ValueState};
pub use normalize::{
    MetricRef, NormalizeError, RawNumeric, RawWaveform, normalize_numeric, normalize_waveform,
};
pub use registry::{DeviceInfo, Registry};
