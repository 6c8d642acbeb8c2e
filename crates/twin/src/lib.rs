//! The live ward twin: device association over time, attribution of observations, live state per patient, bed and room.
