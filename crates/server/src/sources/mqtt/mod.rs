//! Devices over MQTT: the embedded broker's handler. A publish on a device topic is parsed,
//! made durable through the pipeline, and only then acknowledged (PUBACK). A payload we cannot
//! read is kept as a dead letter and answered with MQTT 5 reason 0x99.

pub mod payload;
mod source;

pub use source::{DEVICE_TOPIC_PREFIX, MqttSource, device_of_topic};
