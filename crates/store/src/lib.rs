//! The embedded SQL store (SQLite): the ward layout, patients, devices, associations, numeric vitals and compressed waveform chunks.
