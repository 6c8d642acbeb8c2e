//! Integration tests: the real broker on 127.0.0.1:0, spoken to by real clients (rumqttc v4 and
//! v5, mosquitto_pub) and by raw bytes.

mod mosquitto;
mod robustness;
mod support;
mod v311;
mod v5;
