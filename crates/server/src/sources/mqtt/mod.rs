//! Devices over MQTT, two transports and one handling function: the embedded broker's handler
//! (`source`) and a client of an external broker with shared subscriptions (`external`). A
//! publish on a device topic is authorized, parsed (our JSON payload or SenML), made durable
//! through the pipeline, and only then acknowledged. A payload we cannot read is kept as a dead
//! letter and answered with MQTT 5 reason 0x99; a device publishing as another, with 0x87.

pub mod credentials;
pub mod external;
#[cfg(test)]
mod fuzz;
pub mod payload;
pub mod senml;
mod source;

pub use credentials::{DeviceAuth, DeviceCredentials};
pub use external::ExternalBrokerConfig;
pub use source::{DEVICE_TOPIC_PREFIX, MqttSource, device_of_topic};
