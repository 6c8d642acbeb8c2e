//! The true (noise-free of measurement) vital signs of one simulated patient, advanced in
//! one-second steps: baseline + circadian drift + scenario trajectory + mean-reverting noise
//! (Ornstein–Uhlenbeck). Devices sample these values and add their own errors and artefacts.

use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use crate::scenario::{Offsets, Scenario, ScenarioParams};

/// A standard normal draw (Box–Muller); rand_distr is not worth a dependency for this.
pub(crate) fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(1e-12);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Mean-reverting noise with stationary standard deviation `sigma` and time constant `tau_s`.
#[derive(Clone, Debug)]
pub(crate) struct OrnsteinUhlenbeck {
    pub value: f64,
    sigma: f64,
    tau_s: f64,
}

impl OrnsteinUhlenbeck {
    pub fn new(sigma: f64, tau_s: f64, rng: &mut ChaCha8Rng) -> Self {
        Self {
            value: sigma * standard_normal(rng),
            sigma,
            tau_s,
        }
    }

    /// Exact discretisation over `dt_s` seconds.
    pub fn step(&mut self, dt_s: f64, rng: &mut ChaCha8Rng) {
        let decay = (-dt_s / self.tau_s).exp();
        self.value =
            self.value * decay + self.sigma * (1.0 - decay * decay).sqrt() * standard_normal(rng);
    }
}

/// The vital signs at one moment, in catalog units.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Vitals {
    pub heart_rate: f64,
    pub respiration_rate: f64,
    pub spo2: f64,
    pub systolic: f64,
    pub diastolic: f64,
    pub temperature: f64,
}

impl Vitals {
    pub fn mean_arterial_pressure(&self) -> f64 {
        self.diastolic + (self.systolic - self.diastolic) / 3.0
    }
}

/// Hours of the day (0..24) at `time_ms` since the epoch, shifted by the ward's UTC offset.
pub(crate) fn hour_of_day(time_ms: i64, utc_offset_minutes: i32) -> f64 {
    let local = time_ms + i64::from(utc_offset_minutes) * 60_000;
    local.rem_euclid(86_400_000) as f64 / 3_600_000.0
}

/// A cosine over 24 hours peaking at `peak_hour`.
fn circadian(hour: f64, peak_hour: f64) -> f64 {
    (std::f64::consts::TAU * (hour - peak_hour) / 24.0).cos()
}

pub(crate) struct Physiology {
    pub scenario: Scenario,
    pub params: ScenarioParams,
    pub baseline: Offsets,
    noise: [OrnsteinUhlenbeck; 6],
    rng: ChaCha8Rng,
    pub current: Vitals,
    /// Milliseconds since the simulation start of the next one-second step.
    pub next_step_ms: i64,
    start_ms: i64,
    utc_offset_minutes: i32,
}

impl Physiology {
    pub fn new(
        scenario: Scenario,
        params: ScenarioParams,
        baseline: Offsets,
        start_ms: i64,
        utc_offset_minutes: i32,
        mut rng: ChaCha8Rng,
    ) -> Self {
        // sigma, tau: a COPD patient on titrated oxygen has a tightly held SpO2.
        let spo2_sigma = if scenario == Scenario::CopdExacerbation {
            0.6
        } else {
            0.7
        };
        let noise = [
            OrnsteinUhlenbeck::new(3.0, 60.0, &mut rng),
            OrnsteinUhlenbeck::new(1.2, 90.0, &mut rng),
            OrnsteinUhlenbeck::new(spo2_sigma, 30.0, &mut rng),
            OrnsteinUhlenbeck::new(4.0, 300.0, &mut rng),
            OrnsteinUhlenbeck::new(3.0, 300.0, &mut rng),
            OrnsteinUhlenbeck::new(0.08, 900.0, &mut rng),
        ];
        let mut physiology = Self {
            scenario,
            params,
            baseline,
            noise,
            rng,
            current: Vitals::default(),
            next_step_ms: 1000,
            start_ms,
            utc_offset_minutes,
        };
        physiology.current = physiology.compose(0);
        physiology
    }

    /// Advances in one-second steps up to and including `elapsed_ms` since the start.
    pub fn advance_to(&mut self, elapsed_ms: i64) {
        while self.next_step_ms <= elapsed_ms {
            for noise in &mut self.noise {
                noise.step(1.0, &mut self.rng);
            }
            self.current = self.compose(self.next_step_ms);
            self.next_step_ms += 1000;
        }
    }

    fn compose(&self, elapsed_ms: i64) -> Vitals {
        let hour = hour_of_day(self.start_ms + elapsed_ms, self.utc_offset_minutes);
        let minutes = elapsed_ms as f64 / 60_000.0;
        let scenario = self.scenario.offsets(&self.params, &self.baseline, minutes);
        let base = &self.baseline;
        let [hr, rr, spo2, sys, dia, temp] = &self.noise;
        let heart_rate =
            base.heart_rate + 4.0 * circadian(hour, 16.0) + scenario.heart_rate + hr.value;
        let respiration_rate = base.respiration_rate
            + 0.8 * circadian(hour, 16.0)
            + scenario.respiration_rate
            + rr.value;
        let spo2 = base.spo2 + scenario.spo2 + spo2.value;
        let systolic = base.systolic + 6.0 * circadian(hour, 15.0) + scenario.systolic + sys.value;
        let diastolic =
            base.diastolic + 4.0 * circadian(hour, 15.0) + scenario.diastolic + dia.value;
        let temperature =
            base.temperature + 0.3 * circadian(hour, 18.0) + scenario.temperature + temp.value;
        let systolic = systolic.clamp(55.0, 230.0);
        Vitals {
            heart_rate: heart_rate.clamp(35.0, 190.0),
            respiration_rate: respiration_rate.clamp(6.0, 45.0),
            spo2: spo2.clamp(70.0, 100.0),
            systolic,
            diastolic: diastolic.clamp(30.0, systolic - 15.0),
            temperature: temperature.clamp(34.0, 41.5),
        }
    }
}
