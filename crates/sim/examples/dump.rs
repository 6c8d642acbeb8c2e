//! Prints a simulated ward's patients and its first messages as JSON lines:
//! `cargo run -p sim --example dump -- [seed] [beds] [seconds]`.

use model::{Timestamp, WardId};
use sim::{SimConfig, SimWard};

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numeric arguments"))
        .collect();
    let seed = args.first().copied().unwrap_or(1);
    let beds = args.get(1).copied().unwrap_or(6) as usize;
    let seconds = args.get(2).copied().unwrap_or(5) as i64;
    let start = Timestamp::from_millis(1_764_045_600_000);
    let mut ward = SimWard::new(SimConfig::new(seed, beds, WardId::new("w1"), start));
    for patient in ward.patients() {
        eprintln!(
            "{} {} {:?} {} {} {:?} {:?}",
            patient.patient_id,
            patient.bed_id,
            patient.sex,
            patient.age_years,
            patient.full_name,
            patient.scenario,
            patient
                .conditions
                .iter()
                .map(|c| (c.snomed_code, c.display, c.body_site.map(|s| s.to_string())))
                .collect::<Vec<_>>()
        );
    }
    for device in ward.devices() {
        eprintln!(
            "{} {:?} {:?} {:?}",
            device.device_id,
            device.kind,
            device.placement.map(|p| p.to_string()),
            device.target
        );
    }
    for second in 1..=seconds {
        for message in ward.tick(start.plus_millis(second * 1000)) {
            println!(
                "{} {}",
                message.topic,
                String::from_utf8_lossy(&message.payload)
            );
        }
    }
}
