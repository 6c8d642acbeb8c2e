//! The simulator's integration tests: one binary, a module per concern.

mod determinism;
mod payloads;
mod physiology;
mod publisher;
mod support;
mod waveforms;
