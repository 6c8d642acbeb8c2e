//! The MQTT observation payload (`docs/mqtt.md`) as an edge type: built here, serialized with
//! serde_json, never used inside the simulation itself.

use serde::{Deserialize, Serialize};

/// The topic a device publishes its observations on.
pub fn observation_topic(device_id: &str) -> String {
    format!("metaward/v1/devices/{device_id}/obs")
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ObservationPayload {
    /// Milliseconds since the Unix epoch (UTC).
    pub time: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub numerics: Vec<NumericPayload>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waveforms: Vec<WaveformPayload>,
    /// Battery level in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub battery: Option<u8>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NumericPayload {
    pub metric: String,
    pub value: serde_json::Number,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_site: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WaveformPayload {
    pub metric: String,
    pub start: i64,
    pub rate_hz: u32,
    pub samples: Vec<f32>,
}

impl NumericPayload {
    /// A numeric rounded to `decimals` (the catalog's decimals worth showing), written as a
    /// JSON integer when `decimals` is 0.
    pub fn new(metric: &str, value: f64, decimals: u8) -> Self {
        Self {
            metric: metric.to_owned(),
            value: rounded_number(value, decimals),
            time: None,
            body_site: None,
            flags: Vec::new(),
        }
    }

    pub fn at(mut self, time: i64) -> Self {
        self.time = Some(time);
        self
    }

    pub fn on(mut self, body_site: impl ToString) -> Self {
        self.body_site = Some(body_site.to_string());
        self
    }

    pub fn flagged(mut self, flag: &str) -> Self {
        self.flags.push(flag.to_owned());
        self
    }
}

pub(crate) fn rounded_number(value: f64, decimals: u8) -> serde_json::Number {
    if decimals == 0 {
        return serde_json::Number::from(value.round() as i64);
    }
    let scale = 10f64.powi(i32::from(decimals));
    serde_json::Number::from_f64((value * scale).round() / scale + 0.0)
        .unwrap_or_else(|| serde_json::Number::from(0))
}

/// Rounds a sample to `decimals` so the JSON stays short (ECG to the microvolt).
pub(crate) fn sample(value: f64, decimals: i32) -> f32 {
    let scale = 10f64.powi(decimals);
    // Adding 0.0 turns a rounded -0.0 into 0.0, which reads better in the JSON.
    ((value * scale).round() / scale + 0.0) as f32
}
