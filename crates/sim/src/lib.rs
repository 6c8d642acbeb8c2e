//! A deterministic physiological simulator of a ward: patients, scenarios, vital-sign dynamics and waveforms.
