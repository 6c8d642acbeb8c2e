use std::collections::HashMap;

use model::Timestamp;
use sim::{DeviceKind, Scenario, SimWard};

use crate::support::{START_MS, bed_with, config, device_of_kind, mean, numerics, parse, run};

/// ECG samples of one device, concatenated, with the time of the first.
fn ecg_of(messages: &[sim::DeviceMessage], device_id: &str) -> (i64, Vec<f32>) {
    let mut first = None;
    let mut samples = Vec::new();
    for message in messages.iter().filter(|m| m.device_id == device_id) {
        for waveform in parse(message).waveforms {
            if waveform.metric == "ecg_ii" {
                first.get_or_insert(waveform.start);
                samples.extend(waveform.samples);
            }
        }
    }
    (first.expect("ecg"), samples)
}

/// R peaks by threshold crossing with a refractory period; times in seconds.
fn r_peaks(samples: &[f32], rate_hz: f64) -> Vec<f64> {
    let mut peaks = Vec::new();
    let mut last = f64::NEG_INFINITY;
    for (i, pair) in samples.windows(2).enumerate() {
        let t = (i + 1) as f64 / rate_hz;
        if pair[0] < 0.6 && pair[1] >= 0.6 && t - last > 0.25 {
            peaks.push(t);
            last = t;
        }
    }
    peaks
}

fn rr_stats(peaks: &[f64]) -> (f64, f64) {
    let rr: Vec<f64> = peaks.windows(2).map(|w| w[1] - w[0]).collect();
    let mean_rr = mean(rr.iter().copied());
    let variance = mean(rr.iter().map(|r| (r - mean_rr).powi(2)));
    (60.0 / mean_rr, variance.sqrt() / mean_rr)
}

fn ward_without_artefacts(seed: u64) -> SimWard {
    let mut config = config(seed, 6);
    config.artefacts = false;
    SimWard::new(config)
}

#[test]
fn detected_beats_match_the_reported_heart_rate() {
    for scenario in [
        Scenario::Stable,
        Scenario::Sepsis,
        Scenario::AtrialFibrillation,
    ] {
        let mut ward = ward_without_artefacts(31);
        let bed = bed_with(&ward, scenario);
        let monitor = device_of_kind(&ward, bed, DeviceKind::BedsideMonitor);
        let messages = run(&mut ward, 60);
        let (_, ecg) = ecg_of(&messages, &monitor);
        assert_eq!(ecg.len(), 60 * 250);
        let peaks = r_peaks(&ecg, 250.0);
        let detected = peaks.len() as f64;
        let reported = mean(
            numerics(&messages, &monitor, "heart_rate")
                .into_iter()
                .map(|(_, v)| v),
        );
        let tolerance = if scenario == Scenario::AtrialFibrillation {
            6.0
        } else {
            3.0
        };
        assert!(
            (detected - reported).abs() <= tolerance,
            "{scenario:?}: {detected} beats in 60 s, reported {reported}"
        );
    }
}

#[test]
fn atrial_fibrillation_is_irregular_and_sinus_rhythm_is_not() {
    let mut ward = ward_without_artefacts(37);
    let af = bed_with(&ward, Scenario::AtrialFibrillation);
    let stable = bed_with(&ward, Scenario::Stable);
    let af_monitor = device_of_kind(&ward, af, DeviceKind::BedsideMonitor);
    let stable_monitor = device_of_kind(&ward, stable, DeviceKind::BedsideMonitor);
    let messages = run(&mut ward, 120);
    let (_, af_cv) = rr_stats(&r_peaks(&ecg_of(&messages, &af_monitor).1, 250.0));
    let (_, sinus_cv) = rr_stats(&r_peaks(&ecg_of(&messages, &stable_monitor).1, 250.0));
    assert!(af_cv > 0.15, "AF RR coefficient of variation {af_cv}");
    assert!(
        sinus_cv < 0.08,
        "sinus RR coefficient of variation {sinus_cv}"
    );
}

#[test]
fn pleth_pulses_follow_the_r_waves() {
    let mut ward = ward_without_artefacts(41);
    let bed = bed_with(&ward, Scenario::Stable);
    let monitor = device_of_kind(&ward, bed, DeviceKind::BedsideMonitor);
    let messages = run(&mut ward, 30);
    let ecg_peaks = r_peaks(&ecg_of(&messages, &monitor).1, 250.0);
    let pleth: Vec<f32> = messages
        .iter()
        .filter(|m| m.device_id == monitor)
        .flat_map(|m| parse(m).waveforms)
        .filter(|w| w.metric == "pleth")
        .flat_map(|w| w.samples)
        .collect();
    assert_eq!(pleth.len(), 30 * 125);
    // For each beat, the pleth maximum in the following 600 ms comes 250–450 ms after the R peak.
    for &r in ecg_peaks.iter().skip(1).take(20) {
        let from = (r * 125.0) as usize;
        let to = (from + 75).min(pleth.len());
        let (offset, _) =
            pleth[from..to]
                .iter()
                .enumerate()
                .fold(
                    (0, f32::MIN),
                    |best, (i, &v)| if v > best.1 { (i, v) } else { best },
                );
        let delay = offset as f64 / 125.0;
        assert!((0.2..=0.5).contains(&delay), "pulse {delay} s after R");
    }
}

#[test]
fn waveform_chunks_are_contiguous_across_ticks() {
    for monitor_interval_ms in [1000, 200, 2000] {
        let mut config = config(43, 4);
        config.monitor_interval_ms = monitor_interval_ms;
        let mut ward = SimWard::new(config);
        let mut next_start: HashMap<(String, String), i64> = HashMap::new();
        let mut t = 0;
        let mut chunks = 0;
        for step in [1000, 300, 1700, 5000, 1, 999, 20_000, 1000, 1000, 12_345] {
            t += step;
            for message in ward.tick(Timestamp::from_millis(START_MS + t)) {
                for waveform in parse(&message).waveforms {
                    let n = waveform.samples.len() as i64;
                    assert_eq!(n * 1000 % i64::from(waveform.rate_hz), 0);
                    assert_eq!(
                        n * 1000 / i64::from(waveform.rate_hz),
                        i64::from(monitor_interval_ms)
                    );
                    let key = (message.device_id.clone(), waveform.metric.clone());
                    let expected = next_start.get(&key).copied().unwrap_or(START_MS);
                    assert_eq!(waveform.start, expected, "{key:?}");
                    next_start.insert(key, waveform.start + n * 1000 / i64::from(waveform.rate_hz));
                    chunks += 1;
                }
            }
        }
        assert!(chunks > 0);
        // Every monitor's waveforms are complete up to the last whole interval before now.
        for ((_, _), end) in next_start {
            assert!(START_MS + t - end < i64::from(monitor_interval_ms));
        }
    }
}
