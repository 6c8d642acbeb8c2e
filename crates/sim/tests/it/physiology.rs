use sim::{DeviceKind, Scenario, SimWard};

use crate::support::{START_MS, bed_with, config, device_of_kind, mean, numerics, run};

#[test]
fn sepsis_deteriorates_over_an_hour() {
    let mut config = config(17, 6);
    config.waveforms = false;
    config.artefacts = false;
    config.nibp_interval_ms = 60_000;
    let mut ward = SimWard::new(config);
    let bed = bed_with(&ward, Scenario::Sepsis);
    let monitor = device_of_kind(&ward, bed, DeviceKind::BedsideMonitor);
    let messages = run(&mut ward, 3900);
    let window = |metric: &str, from_min: i64, to_min: i64| {
        mean(
            numerics(&messages, &monitor, metric)
                .into_iter()
                .filter(|(t, _)| {
                    let minute = (t - START_MS) / 60_000;
                    minute >= from_min && minute < to_min
                })
                .map(|(_, v)| v),
        )
    };
    let early_hr = window("heart_rate", 0, 2);
    let late_hr = window("heart_rate", 58, 65);
    let early_sys = window("nibp_systolic", 0, 5);
    let late_sys = window("nibp_systolic", 58, 65);
    assert!(late_hr > early_hr + 20.0, "hr {early_hr} -> {late_hr}");
    assert!(late_sys < early_sys - 15.0, "sys {early_sys} -> {late_sys}");
    let early_rr = window("respiration_rate", 0, 2);
    let late_rr = window("respiration_rate", 58, 65);
    assert!(late_rr > early_rr + 4.0, "rr {early_rr} -> {late_rr}");
}

#[test]
fn copd_on_oxygen_holds_spo2_between_88_and_92() {
    let mut config = config(23, 6);
    config.waveforms = false;
    config.artefacts = false;
    let mut ward = SimWard::new(config);
    let bed = bed_with(&ward, Scenario::CopdExacerbation);
    let oximeter = device_of_kind(&ward, bed, DeviceKind::PulseOximeter);
    let messages = run(&mut ward, 1800);
    let spo2 = numerics(&messages, &oximeter, "spo2");
    let average = mean(spo2.iter().map(|(_, v)| *v));
    assert!((88.0..=92.0).contains(&average), "mean SpO2 {average}");
    let inside = spo2
        .iter()
        .filter(|(_, v)| (87.0..=93.0).contains(v))
        .count();
    assert!(inside * 10 >= spo2.len() * 9, "{inside} of {}", spo2.len());
}

#[test]
fn atrial_fibrillation_runs_fast() {
    let mut config = config(29, 6);
    config.waveforms = false;
    config.artefacts = false;
    let mut ward = SimWard::new(config);
    let bed = bed_with(&ward, Scenario::AtrialFibrillation);
    let monitor = device_of_kind(&ward, bed, DeviceKind::BedsideMonitor);
    let messages = run(&mut ward, 900);
    let average = mean(
        numerics(&messages, &monitor, "heart_rate")
            .into_iter()
            .map(|(_, v)| v),
    );
    assert!((110.0..=150.0).contains(&average), "AF rate {average}");
}
