//! Clinical logic over the twin's inputs and the patient's record: alarms with their
//! lifecycle.
//!
//! This crate is part of the core: it does no I/O, never reads a clock (time is passed in as
//! [`model::Timestamp`]) and knows no wire format.

pub mod alarms;
