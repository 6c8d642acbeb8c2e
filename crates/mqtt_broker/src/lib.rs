//! An embedded MQTT 3.1.1 and 5 broker whose PUBACK follows the application's durable write.
