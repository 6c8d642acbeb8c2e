//! Synthetic ECG (lead II) and plethysmogram, driven by one beat schedule per patient.
//!
//! Each beat is a sum of Gaussians (P, Q, R, S, T after McSharry et al. 2003, without the
//! dynamical model); in atrial fibrillation the RR intervals are irregular, there is no P wave
//! and a small fibrillatory baseline takes its place. The pleth pulse follows each R wave after
//! the pulse transit time. Samples are functions of time since the start, so a chunk boundary
//! never shows in the signal.

use std::collections::VecDeque;
use std::f64::consts::TAU;

use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use crate::physiology::standard_normal;

pub const ECG_RATE_HZ: u32 = 250;
pub const PLETH_RATE_HZ: u32 = 125;
/// Delay from the R wave to the foot of the peripheral pulse at the finger.
pub const PULSE_TRANSIT_S: f64 = 0.2;

#[derive(Clone, Copy, Debug)]
struct Beat {
    /// Time of the R peak, seconds since the simulation start.
    r_time_s: f64,
    /// The RR interval that ended at this beat, seconds.
    rr_s: f64,
    /// Relative stroke volume: short AF cycles eject less.
    stroke: f64,
}

pub(crate) struct HeartRhythm {
    fibrillating: bool,
    beats: VecDeque<Beat>,
    rng: ChaCha8Rng,
    fibrillation_phase: f64,
}

fn gaussian(x: f64, centre: f64, width: f64, amplitude: f64) -> f64 {
    let d = (x - centre) / width;
    amplitude * (-0.5 * d * d).exp()
}

impl HeartRhythm {
    pub fn new(fibrillating: bool, mut rng: ChaCha8Rng) -> Self {
        let first = Beat {
            r_time_s: rng.random_range(0.1..0.6),
            rr_s: 0.8,
            stroke: 1.0,
        };
        let fibrillation_phase = rng.random_range(0.0..TAU);
        Self {
            fibrillating,
            beats: VecDeque::from([first]),
            rng,
            fibrillation_phase,
        }
    }

    /// Schedules beats until `until_s` (plus a margin for the waves that reach back) at
    /// `heart_rate`, and forgets beats that can no longer touch samples after `from_s`.
    pub fn schedule(&mut self, from_s: f64, until_s: f64, heart_rate: f64) {
        let mean_rr = 60.0 / heart_rate.max(20.0);
        while self
            .beats
            .back()
            .is_some_and(|b| b.r_time_s < until_s + 1.0)
        {
            let last = *self.beats.back().expect("never empty");
            let factor = if self.fibrillating {
                // Uniform 0.55..1.45: mean 1, coefficient of variation about 0.26.
                self.rng.random_range(0.55..1.45)
            } else {
                (1.0 + 0.025 * standard_normal(&mut self.rng)).clamp(0.9, 1.1)
            };
            let rr_s = mean_rr * factor;
            let stroke = if self.fibrillating {
                (0.4 + 0.6 * factor).min(1.2)
            } else {
                1.0
            };
            self.beats.push_back(Beat {
                r_time_s: last.r_time_s + rr_s,
                rr_s,
                stroke,
            });
        }
        while self.beats.len() > 1 && self.beats[1].r_time_s < from_s - 1.5 {
            self.beats.pop_front();
        }
    }

    /// ECG lead II in mV at `t_s` seconds since the start (without noise).
    pub fn ecg(&self, t_s: f64, respiration_rate: f64) -> f64 {
        let mut mv = 0.0;
        for beat in &self.beats {
            let x = t_s - beat.r_time_s;
            if !(-0.45..=0.7).contains(&x) {
                continue;
            }
            // QT shortens with the heart rate (Bazett-like scaling by the square root of RR).
            let qt_scale = beat.rr_s.clamp(0.3, 1.5).sqrt();
            if !self.fibrillating {
                mv += gaussian(x, -0.17 * qt_scale, 0.025, 0.15);
            }
            mv += gaussian(x, -0.03, 0.010, -0.12);
            mv += gaussian(x, 0.0, 0.011, 1.2);
            mv += gaussian(x, 0.03, 0.010, -0.25);
            mv += gaussian(x, 0.26 * qt_scale, 0.055 * qt_scale, 0.32);
        }
        if self.fibrillating {
            // Coarse fibrillatory waves at about 6 Hz.
            mv += 0.04 * (TAU * 6.2 * t_s + self.fibrillation_phase).sin()
                + 0.02 * (TAU * 4.1 * t_s).sin();
        }
        // Baseline wander with breathing.
        mv + 0.05 * (TAU * t_s * respiration_rate / 60.0).sin()
    }

    /// Plethysmogram in arbitrary units (about 10..95) at `t_s` seconds since the start.
    pub fn pleth(&self, t_s: f64, respiration_rate: f64) -> f64 {
        let mut pulse = 0.0;
        for beat in &self.beats {
            let x = t_s - beat.r_time_s - PULSE_TRANSIT_S;
            if !(-0.3..=1.2).contains(&x) {
                continue;
            }
            // Systolic peak, then the dicrotic wave.
            let shape = gaussian(x, 0.12, 0.055, 1.0) + gaussian(x, 0.36, 0.09, 0.38);
            pulse += beat.stroke * shape;
        }
        let breathing = 4.0 * (TAU * t_s * respiration_rate / 60.0).sin();
        20.0 + 65.0 * pulse + breathing
    }

    pub fn noise(&mut self, sigma: f64) -> f64 {
        sigma * standard_normal(&mut self.rng)
    }
}
