//! Clinical logic over the twin's inputs and the patient's record: NEWS2 (Royal College of
//! Physicians, National Early Warning Score 2, 2017), alarms with their lifecycle, the status
//! of each avatar body region, and trends.
//!
//! This crate is part of the core: it does no I/O, never reads a clock (time is passed in as
//! [`model::Timestamp`]) and knows no wire format. The published tables live here as data and
//! are tested row by row; the edges (server, the `metaward score` and `test-rules` commands)
//! convert their own types into these.

pub mod alarms;
pub mod news2;
pub mod regions;
pub mod trends;
pub mod watch;

pub use news2::{
    Band, CodedCondition, News2Calculator, News2Config, News2Input, News2Result, OxygenTarget,
    Parameter, ParameterOutcome, ParameterResult, RecordContext, ScaleReason, Spo2Scale,
};
