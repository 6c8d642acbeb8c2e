//! One measurement from one device at one time, after normalization: its metric is a catalog
//! key, its unit the catalog's unit, its quality flags say whether it can be trusted.

use crate::{BodyRegion, DeviceId, Timestamp};

#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    pub device_id: DeviceId,
    /// A key of the metric catalog (`heart_rate`, `spo2`, `ecg_ii`, `room_temperature`, ...).
    pub metric: String,
    pub value: ObservedValue,
    /// When the device says it measured (for a waveform, the time of the first sample).
    pub device_time: Timestamp,
    /// When the server received it; used when the device clock cannot be trusted.
    pub received_time: Timestamp,
    /// Where on the body it was measured, when the source said so (OBX-20, FHIR bodySite,
    /// the payload's `body_site`). Otherwise the device placement or the catalog default applies.
    pub body_site: Option<BodyRegion>,
    pub quality: Quality,
    /// The reference or alarm limits the device sent with the value (HL7 OBX-7, FHIR
    /// `referenceRange`), kept to show beside it; metaward's own alarm limits are separate.
    pub reference_range: Option<ReferenceRange>,
}

/// A range a value is judged against, either end open.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReferenceRange {
    pub low: Option<f64>,
    pub high: Option<f64>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ObservedValue {
    Numeric(f64),
    Waveform(WaveformChunk),
}

/// A run of evenly spaced samples starting at the observation's `device_time`.
#[derive(Clone, Debug, PartialEq)]
pub struct WaveformChunk {
    pub sample_rate_hz: f64,
    pub samples: Vec<f32>,
}

impl WaveformChunk {
    pub fn duration_millis(&self) -> i64 {
        if self.sample_rate_hz <= 0.0 {
            return 0;
        }
        (self.samples.len() as f64 * 1000.0 / self.sample_rate_hz).round() as i64
    }
}

/// Why a value should not be taken at face value. A flagged value is kept and shown as flagged,
/// never silently dropped; clinical logic decides what it may use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Quality {
    /// Outside the catalog's plausible range for the metric (e.g. SpO2 of 0 with the probe off).
    pub implausible: bool,
    /// The device itself flagged it (artefact, probe off, leads off, technical alarm).
    pub device_flagged: bool,
}

impl Quality {
    pub const GOOD: Quality = Quality {
        implausible: false,
        device_flagged: false,
    };

    pub fn is_artefact(self) -> bool {
        self.implausible || self.device_flagged
    }
}
