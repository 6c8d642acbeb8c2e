//! Room conditions as an environmental sensor reports them every few seconds: temperature,
//! humidity, CO2 (rising with occupancy and daytime activity), noise, illuminance (day and night)
//! and PM2.5. One room per ward is poorly ventilated and drifts above 1000 ppm CO2 for part of
//! each two-hour cycle, so the ward view has something amber to show.

use std::f64::consts::TAU;

use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use crate::physiology::{OrnsteinUhlenbeck, hour_of_day};

pub(crate) struct RoomClimate {
    occupancy: usize,
    pub poorly_ventilated: bool,
    rng: ChaCha8Rng,
    noise: [OrnsteinUhlenbeck; 6],
    noise_spike_until_ms: i64,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct RoomReading {
    pub temperature: f64,
    pub humidity: f64,
    pub co2: f64,
    pub noise: f64,
    pub illuminance: f64,
    pub pm25: f64,
}

/// 0 at night, 1 by day, with half-hour transitions at 07:00 and 22:00.
fn daytime(hour: f64) -> f64 {
    let rise = 1.0 / (1.0 + (-(hour - 7.0) * 6.0).exp());
    let fall = 1.0 / (1.0 + ((hour - 22.0) * 6.0).exp());
    rise * fall
}

impl RoomClimate {
    pub fn new(occupancy: usize, poorly_ventilated: bool, mut rng: ChaCha8Rng) -> Self {
        let noise = [
            OrnsteinUhlenbeck::new(0.25, 1800.0, &mut rng),
            OrnsteinUhlenbeck::new(2.0, 1800.0, &mut rng),
            OrnsteinUhlenbeck::new(40.0, 600.0, &mut rng),
            OrnsteinUhlenbeck::new(2.5, 30.0, &mut rng),
            OrnsteinUhlenbeck::new(20.0, 300.0, &mut rng),
            OrnsteinUhlenbeck::new(1.5, 900.0, &mut rng),
        ];
        Self {
            occupancy,
            poorly_ventilated,
            rng,
            noise,
            noise_spike_until_ms: i64::MIN,
        }
    }

    /// Advances the room by `dt_s` seconds and reads it at `time_ms` (epoch milliseconds).
    pub fn read(&mut self, time_ms: i64, dt_s: f64, utc_offset_minutes: i32) -> RoomReading {
        for noise in &mut self.noise {
            noise.step(dt_s, &mut self.rng);
        }
        if self.rng.random_bool((dt_s / 600.0).min(1.0)) {
            // A trolley, a conversation, an alarm: about one loud moment per ten minutes.
            self.noise_spike_until_ms = time_ms + self.rng.random_range(3_000..20_000);
        }
        let hour = hour_of_day(time_ms, utc_offset_minutes);
        let day = daytime(hour);
        let activity = 0.3 + 0.7 * day;
        let [temperature, humidity, co2, noise, illuminance, pm25] = &self.noise;
        let mut co2_ppm =
            430.0 + 45.0 * self.occupancy as f64 + 220.0 * activity + co2.value.max(-100.0);
        let mut pm25_ugm3 = 6.0 + 2.0 * activity + pm25.value;
        if self.poorly_ventilated {
            let cycle = (TAU * time_ms as f64 / 7_200_000.0).sin();
            co2_ppm += 330.0 + 260.0 * cycle;
            pm25_ugm3 += 5.0;
        }
        let spike = if time_ms < self.noise_spike_until_ms {
            18.0
        } else {
            0.0
        };
        RoomReading {
            temperature: 22.0 + 0.8 * (TAU * (hour - 9.0) / 24.0).sin() + temperature.value,
            humidity: (42.0 + 4.0 * (TAU * (hour - 3.0) / 24.0).sin() + humidity.value)
                .clamp(15.0, 90.0),
            co2: co2_ppm.max(380.0),
            noise: (31.0 + 9.0 * day + noise.value + spike).max(18.0),
            illuminance: (8.0 + 380.0 * day + illuminance.value * day.max(0.05)).max(0.0),
            pm25: pm25_ugm3.max(0.5),
        }
    }
}
