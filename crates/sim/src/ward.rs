//! The simulated ward: layout, patients and devices built from a seed, and `tick`, which turns
//! simulated time into the MQTT messages the devices would have sent. No I/O, no clock.

use model::{
    BedId, BodyPart, BodyRegion, Catalog, DeviceId, PatientId, RoomId, Side, Timestamp, WardId,
};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::environment::RoomClimate;
use crate::names;
use crate::payload::{
    NumericPayload, ObservationPayload, WaveformPayload, observation_topic, sample,
};
use crate::physiology::{Physiology, Vitals};
use crate::scenario::{self, Condition, Offsets, Scenario, ScenarioParams};
use crate::waveform::{ECG_RATE_HZ, HeartRhythm, PLETH_RATE_HZ};

/// How to build and run a simulated ward. `SimConfig::new` gives the defaults.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    pub beds: usize,
    pub ward_id: WardId,
    /// Simulated time zero: scenarios run from here.
    pub start: Timestamp,
    /// Bedside monitors send one message per interval with that interval's waveform samples
    /// (and the 1 Hz numerics when a whole second falls in it). Rounded up to a multiple of
    /// 8 ms so that both waveform rates give whole samples. Default 1000.
    pub monitor_interval_ms: u32,
    /// Non-invasive blood pressure cycle. Default 5 minutes.
    pub nibp_interval_ms: u32,
    /// Room sensor reporting interval. Default 5 s.
    pub room_interval_ms: u32,
    /// Occasional probe-off, lead-off and motion artefacts. Default on.
    pub artefacts: bool,
    /// ECG and pleth waveforms in monitor messages. Default on.
    pub waveforms: bool,
    /// The ward's local time offset from UTC, for circadian rhythms and day/night. Default 0.
    pub utc_offset_minutes: i32,
}

impl SimConfig {
    pub fn new(seed: u64, beds: usize, ward_id: WardId, start: Timestamp) -> Self {
        Self {
            seed,
            beds,
            ward_id,
            start,
            monitor_interval_ms: 1000,
            nibp_interval_ms: 300_000,
            room_interval_ms: 5_000,
            artefacts: true,
            waveforms: true,
            utc_offset_minutes: 0,
        }
    }
}

/// One MQTT message as a device would publish it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceMessage {
    pub device_id: String,
    pub topic: String,
    /// JSON as specified in `docs/mqtt.md`.
    pub payload: Vec<u8>,
    pub device_time: Timestamp,
}

/// The ward floor plan. Positions are in metres on the floor plane (x east, z south), the
/// corridor runs along x at z = 0 with rooms on both sides.
#[derive(Clone, Debug, PartialEq)]
pub struct WardLayout {
    pub ward_id: WardId,
    pub rooms: Vec<RoomLayout>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RoomLayout {
    pub room_id: RoomId,
    pub name: String,
    /// Centre of the room.
    pub x_m: f64,
    pub z_m: f64,
    /// Extent along x and z.
    pub width_m: f64,
    pub depth_m: f64,
    pub beds: Vec<BedLayout>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct BedLayout {
    pub bed_id: BedId,
    pub name: String,
    /// Centre of the bed relative to the centre of its room.
    pub x_m: f64,
    pub z_m: f64,
    /// Rotation about the vertical axis; at 0 the head of the bed points towards -z.
    pub rotation_deg: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sex {
    Female,
    Male,
}

impl Sex {
    /// FHIR administrative gender code.
    pub fn code(self) -> &'static str {
        match self {
            Sex::Female => "female",
            Sex::Male => "male",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct SimPatient {
    pub patient_id: PatientId,
    pub bed_id: BedId,
    pub room_id: RoomId,
    pub given_name: String,
    pub family_name: String,
    /// As the name is written: "Margaret Evans", or family name first in Chinese: "Wang Fang".
    pub full_name: String,
    pub sex: Sex,
    /// ISO 8601 date, `YYYY-MM-DD`.
    pub birth_date: String,
    /// Age in whole years at the simulation start.
    pub age_years: u32,
    pub scenario: Scenario,
    /// Coded with SNOMED CT (system `http://snomed.info/sct`).
    pub conditions: Vec<Condition>,
    /// Receiving supplemental oxygen (NEWS2 "air or oxygen"); the bedside monitor reports the
    /// flow (`inhaled_oxygen_flow`).
    pub on_oxygen: bool,
}

impl SimPatient {
    pub const CONDITION_CODE_SYSTEM: &'static str = scenario::SNOMED_SYSTEM;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceKind {
    BedsideMonitor,
    PulseOximeter,
    TemperaturePatch,
    EnvironmentSensor,
}

impl DeviceKind {
    pub fn key(self) -> &'static str {
        match self {
            DeviceKind::BedsideMonitor => "bedside_monitor",
            DeviceKind::PulseOximeter => "pulse_oximeter",
            DeviceKind::TemperaturePatch => "temperature_patch",
            DeviceKind::EnvironmentSensor => "environment_sensor",
        }
    }
}

/// What a device is associated with when the simulation starts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AssociationTarget {
    Bed(BedId),
    Room(RoomId),
}

#[derive(Clone, Debug, PartialEq)]
pub struct SimDevice {
    pub device_id: DeviceId,
    pub kind: DeviceKind,
    pub model: &'static str,
    /// Where a worn device sits on the body; `None` for bedside and room devices.
    pub placement: Option<BodyRegion>,
    pub target: AssociationTarget,
}

/// A deterministic simulated ward. The same `SimConfig` always gives the same layout,
/// patients, devices and, for the same sequence of `tick` times, the same messages.
pub struct SimWard {
    config: SimConfig,
    layout: WardLayout,
    patients: Vec<SimPatient>,
    devices: Vec<SimDevice>,
    beds: Vec<BedSim>,
    rooms: Vec<RoomSim>,
}

// RNG streams: every bed and room has its own, so adding a bed never changes another bed.
const PURPOSE_PATIENT: u64 = 0;
const PURPOSE_PHYSIOLOGY: u64 = 1;
const PURPOSE_RHYTHM: u64 = 2;
const PURPOSE_MONITOR: u64 = 3;
const PURPOSE_OXIMETER: u64 = 4;
const PURPOSE_PATCH: u64 = 5;

fn rng_for(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

fn bed_rng(seed: u64, bed_index: usize, purpose: u64) -> ChaCha8Rng {
    rng_for(seed, (bed_index as u64) << 8 | purpose)
}

fn room_rng(seed: u64, room_index: usize) -> ChaCha8Rng {
    rng_for(seed, 1 << 40 | (room_index as u64) << 8)
}

fn layout_rng(seed: u64) -> ChaCha8Rng {
    rng_for(seed, 1 << 48)
}

/// 16 bits of FNV-1a over the ward id and seed, so two simulated wards get distinct devices.
fn device_prefix(ward_id: &WardId, seed: u64) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in ward_id.as_str().bytes().chain(seed.to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("02a0b1c2{:04x}", (hash ^ (hash >> 32)) as u16)
}

fn pick<'a>(rng: &mut ChaCha8Rng, items: &[&'a str]) -> &'a str {
    items[rng.random_range(0..items.len())]
}

fn random_side(rng: &mut ChaCha8Rng) -> Side {
    if rng.random_bool(0.5) {
        Side::Left
    } else {
        Side::Right
    }
}

fn other_side(side: Side) -> Side {
    match side {
        Side::Left => Side::Right,
        Side::Right => Side::Left,
    }
}

/// (year, month, day) of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let (year, month, day) = model::civil::civil_from_days(days);
    (year, month as u32, day as u32)
}

/// The flow a COPD patient on titrated nasal-cannula oxygen gets.
const OXYGEN_FLOW_L_MIN: f64 = 2.0;

fn catalog_decimals(metric: &str) -> u8 {
    Catalog::embedded()
        .by_key(metric)
        .map(|m| m.decimals)
        .unwrap_or(2)
}

/// A numeric in the catalog's unit, rounded to the catalog's decimals.
fn numeric(metric: &str, value: f64) -> NumericPayload {
    NumericPayload::new(metric, value, catalog_decimals(metric))
}

fn encode(payload: &ObservationPayload) -> Vec<u8> {
    serde_json::to_vec(payload).expect("observation payloads always serialize")
}

struct DeviceOutput {
    device_id: String,
    topic: String,
}

impl DeviceOutput {
    fn new(device_id: &DeviceId) -> Self {
        Self {
            device_id: device_id.to_string(),
            topic: observation_topic(device_id.as_str()),
        }
    }

    fn message(&self, payload: &ObservationPayload) -> DeviceMessage {
        DeviceMessage {
            device_id: self.device_id.clone(),
            topic: self.topic.clone(),
            payload: encode(payload),
            device_time: Timestamp::from_millis(payload.time),
        }
    }
}

struct MonitorSim {
    output: DeviceOutput,
    rng: ChaCha8Rng,
    /// Start of the next waveform window, ms since the simulation start.
    next_window_ms: i64,
    next_nibp_ms: i64,
    cuff_site: BodyRegion,
    leads_off_until_ms: i64,
}

struct OximeterSim {
    output: DeviceOutput,
    rng: ChaCha8Rng,
    next_ms: i64,
    finger: BodyRegion,
    probe_off_until_ms: i64,
    motion_until_ms: i64,
    motion_drop: f64,
    battery_start: f64,
}

struct PatchSim {
    output: DeviceOutput,
    rng: ChaCha8Rng,
    next_ms: i64,
    site: BodyRegion,
    detached_until_ms: i64,
    battery_start: f64,
}

struct BedSim {
    /// Supplemental oxygen flow in L/min, 0 on room air.
    oxygen_flow_l_min: f64,
    physiology: Physiology,
    rhythm: HeartRhythm,
    pulse_deficit: f64,
    monitor: MonitorSim,
    oximeter: OximeterSim,
    patch: PatchSim,
}

struct RoomSim {
    output: DeviceOutput,
    climate: RoomClimate,
    next_ms: i64,
}

/// Room sizes in metres (width along the corridor, depth) by number of beds.
fn room_size(n_beds: usize) -> (f64, f64) {
    match n_beds {
        0..=1 => (4.0, 5.5),
        2 => (5.2, 5.5),
        3 => (6.8, 5.5),
        _ => (8.4, 5.5),
    }
}

const CORRIDOR_WIDTH_M: f64 = 2.4;

fn build_layout(config: &SimConfig) -> WardLayout {
    let mut rng = layout_rng(config.seed);
    let mut sizes = Vec::new();
    let mut remaining = config.beds;
    while remaining > 0 {
        let mut n = rng.random_range(2..=4usize);
        if remaining <= 4 {
            n = remaining;
        } else if remaining - n == 1 {
            n = if n == 4 { 3 } else { n + 1 };
        }
        sizes.push(n);
        remaining -= n;
    }
    let ward = config.ward_id.as_str();
    let mut next_x = [0.0f64; 2];
    let mut bed_number = 0;
    let rooms = sizes
        .iter()
        .enumerate()
        .map(|(room_index, &n_beds)| {
            let (width_m, depth_m) = room_size(n_beds);
            // Rooms alternate: north side (z < 0) and south side (z > 0) of the corridor.
            let side = room_index % 2;
            let x_m = next_x[side] + width_m / 2.0;
            next_x[side] += width_m;
            let outward = if side == 0 { -1.0 } else { 1.0 };
            let z_m = outward * (CORRIDOR_WIDTH_M + depth_m) / 2.0;
            let spacing = width_m / n_beds as f64;
            let beds = (0..n_beds)
                .map(|i| {
                    bed_number += 1;
                    BedLayout {
                        bed_id: BedId::new(format!("{ward}-bed-{bed_number:02}")),
                        name: format!("Bed {bed_number}"),
                        x_m: -width_m / 2.0 + spacing * (i as f64 + 0.5),
                        // Head against the outer wall, foot towards the corridor.
                        z_m: outward * (depth_m / 2.0 - 1.3),
                        rotation_deg: if side == 0 { 0.0 } else { 180.0 },
                    }
                })
                .collect();
            WardLayout::room(ward, room_index, x_m, z_m, width_m, depth_m, beds)
        })
        .collect();
    WardLayout {
        ward_id: config.ward_id.clone(),
        rooms,
    }
}

impl WardLayout {
    fn room(
        ward: &str,
        room_index: usize,
        x_m: f64,
        z_m: f64,
        width_m: f64,
        depth_m: f64,
        beds: Vec<BedLayout>,
    ) -> RoomLayout {
        RoomLayout {
            room_id: RoomId::new(format!("{ward}-room-{:02}", room_index + 1)),
            name: format!("Room {}", room_index + 1),
            x_m,
            z_m,
            width_m,
            depth_m,
            beds,
        }
    }

    /// Every bed with its room, in bed order.
    pub fn beds(&self) -> impl Iterator<Item = (&RoomLayout, &BedLayout)> {
        self.rooms
            .iter()
            .flat_map(|room| room.beds.iter().map(move |bed| (room, bed)))
    }
}

struct GeneratedPatient {
    patient: SimPatient,
    baseline: Offsets,
    params: ScenarioParams,
    cuff_side: Side,
}

fn generate_patient(
    config: &SimConfig,
    bed_index: usize,
    bed_id: &BedId,
    room_id: &RoomId,
) -> GeneratedPatient {
    let mut rng = bed_rng(config.seed, bed_index, PURPOSE_PATIENT);
    let scenario = Scenario::for_bed(bed_index);
    let sex = if rng.random_bool(0.5) {
        Sex::Female
    } else {
        Sex::Male
    };
    let chinese = rng.random_bool(0.3);
    let (given, family) = match (chinese, sex) {
        (true, Sex::Female) => (names::CHINESE_GIVEN_FEMALE, names::CHINESE_FAMILY),
        (true, Sex::Male) => (names::CHINESE_GIVEN_MALE, names::CHINESE_FAMILY),
        (false, Sex::Female) => (names::WESTERN_GIVEN_FEMALE, names::WESTERN_FAMILY),
        (false, Sex::Male) => (names::WESTERN_GIVEN_MALE, names::WESTERN_FAMILY),
    };
    let given_name = pick(&mut rng, given).to_owned();
    let family_name = pick(&mut rng, family).to_owned();
    let full_name = if chinese {
        format!("{family_name} {given_name}")
    } else {
        format!("{given_name} {family_name}")
    };

    let mut age_years: u32 = rng.random_range(25..=95);
    if matches!(
        scenario,
        Scenario::CopdExacerbation | Scenario::AtrialFibrillation
    ) {
        age_years = age_years.max(rng.random_range(55..=70));
    }
    let today = civil_from_days(config.start.millis().div_euclid(86_400_000));
    let birth_month = rng.random_range(1..=12u32);
    let birth_day = rng.random_range(1..=28u32);
    let birthday_to_come = (birth_month, birth_day) > (today.1, today.2);
    let birth_year = today.0 - i64::from(age_years) - i64::from(birthday_to_come);
    let birth_date = format!("{birth_year:04}-{birth_month:02}-{birth_day:02}");

    let mut conditions: Vec<Condition> = match scenario {
        Scenario::Stable => vec![],
        Scenario::Sepsis => {
            let source = if rng.random_bool(0.5) {
                scenario::PNEUMONIA_RIGHT
            } else {
                scenario::URINARY_TRACT_INFECTION
            };
            vec![scenario::SEPSIS, source]
        }
        Scenario::CopdExacerbation => vec![
            scenario::COPD,
            scenario::COPD_EXACERBATION,
            scenario::CHRONIC_HYPERCAPNIC_RESPIRATORY_FAILURE,
        ],
        Scenario::AtrialFibrillation => vec![scenario::ATRIAL_FIBRILLATION],
        Scenario::Hypotension => vec![scenario::HYPOTENSION],
        Scenario::Fever => vec![scenario::FEVER],
    };
    let comorbidities = [
        scenario::ESSENTIAL_HYPERTENSION,
        scenario::TYPE_2_DIABETES,
        scenario::HYPERCHOLESTEROLEMIA,
        scenario::FRACTURE_OF_FEMUR,
        scenario::PRESSURE_ULCER,
        scenario::HEART_FAILURE,
        scenario::HYPOTHYROIDISM,
        scenario::DEMENTIA,
        scenario::STROKE,
    ];
    let max_comorbidities = if age_years < 50 { 1 } else { 3 };
    // A stable patient is in hospital for something: at least one condition.
    let min_comorbidities = usize::from(conditions.is_empty());
    let n_comorbidities = rng.random_range(min_comorbidities..=max_comorbidities);
    let n_conditions = conditions.len() + n_comorbidities;
    while conditions.len() < n_conditions {
        let mut condition = comorbidities[rng.random_range(0..comorbidities.len())];
        if conditions
            .iter()
            .any(|c| c.snomed_code == condition.snomed_code)
        {
            continue;
        }
        if condition.snomed_code == scenario::FRACTURE_OF_FEMUR.snomed_code {
            condition.body_site = Some(BodyRegion::new(
                BodyPart::Thigh,
                Some(random_side(&mut rng)),
            ));
        } else if condition.snomed_code == scenario::PRESSURE_ULCER.snomed_code
            && rng.random_bool(0.4)
        {
            // A heel rather than the sacrum.
            condition.body_site =
                Some(BodyRegion::new(BodyPart::Foot, Some(random_side(&mut rng))));
        }
        conditions.push(condition);
    }
    let hypertensive = conditions
        .iter()
        .any(|c| c.snomed_code == scenario::ESSENTIAL_HYPERTENSION.snomed_code);

    let baseline = Offsets {
        heart_rate: rng.random_range(60.0..84.0),
        respiration_rate: rng.random_range(13.0..17.5),
        spo2: rng.random_range(95.5..98.5),
        systolic: rng.random_range(110.0..134.0) + if hypertensive { 10.0 } else { 0.0 },
        diastolic: rng.random_range(64.0..82.0),
        temperature: rng.random_range(36.5..37.0),
    };
    let params = ScenarioParams {
        onset_minutes: rng.random_range(2.0..10.0),
        ramp_minutes: rng.random_range(38.0..48.0),
        target: match scenario {
            Scenario::Stable => 0.0,
            Scenario::Sepsis => 0.0,
            Scenario::CopdExacerbation => rng.random_range(89.5..91.0),
            Scenario::AtrialFibrillation => rng.random_range(118.0..140.0),
            Scenario::Hypotension => rng.random_range(82.0..90.0),
            Scenario::Fever => rng.random_range(38.6..39.1),
        },
    };
    // The NIBP cuff mostly goes on the left arm; the oximeter goes on the other hand.
    let cuff_side = if rng.random_bool(0.75) {
        Side::Left
    } else {
        Side::Right
    };
    GeneratedPatient {
        patient: SimPatient {
            patient_id: PatientId::new(format!("sim-p-{:04}", bed_index + 1)),
            bed_id: bed_id.clone(),
            room_id: room_id.clone(),
            given_name,
            family_name,
            full_name,
            sex,
            birth_date,
            age_years,
            scenario,
            conditions,
            on_oxygen: scenario.on_oxygen(),
        },
        baseline,
        params,
        cuff_side,
    }
}

impl SimWard {
    pub fn new(config: SimConfig) -> SimWard {
        let mut config = config;
        config.monitor_interval_ms = config.monitor_interval_ms.max(8).div_ceil(8) * 8;
        config.nibp_interval_ms = config.nibp_interval_ms.max(1000);
        config.room_interval_ms = config.room_interval_ms.max(1000);
        let layout = build_layout(&config);
        let prefix = device_prefix(&config.ward_id, config.seed);
        let device_id = |n: usize| DeviceId::new(format!("{prefix}{:04x}", n & 0xffff));
        let start_ms = config.start.millis();

        let mut patients = Vec::new();
        let mut devices = Vec::new();
        let mut beds = Vec::new();
        for (bed_index, (room, bed)) in layout.beds().enumerate() {
            let generated = generate_patient(&config, bed_index, &bed.bed_id, &room.room_id);
            let scenario = generated.patient.scenario;
            let target = AssociationTarget::Bed(bed.bed_id.clone());
            let monitor = SimDevice {
                device_id: device_id(bed_index * 4 + 1),
                kind: DeviceKind::BedsideMonitor,
                model: "MetaSim BM-500 bedside monitor",
                placement: None,
                target: target.clone(),
            };
            let finger = BodyRegion::new(BodyPart::Finger, Some(other_side(generated.cuff_side)));
            let oximeter = SimDevice {
                device_id: device_id(bed_index * 4 + 2),
                kind: DeviceKind::PulseOximeter,
                model: "MetaSim WO-2 wearable pulse oximeter",
                placement: Some(finger),
                target: target.clone(),
            };
            let axilla = BodyRegion::new(BodyPart::Axilla, Some(Side::Left));
            let patch = SimDevice {
                device_id: device_id(bed_index * 4 + 3),
                kind: DeviceKind::TemperaturePatch,
                model: "MetaSim TP-1 temperature patch",
                placement: Some(axilla),
                target,
            };
            let seed = config.seed;
            let mut monitor_rng = bed_rng(seed, bed_index, PURPOSE_MONITOR);
            let mut oximeter_rng = bed_rng(seed, bed_index, PURPOSE_OXIMETER);
            let mut patch_rng = bed_rng(seed, bed_index, PURPOSE_PATCH);
            // Spread the NIBP cycles and temperature readings of the beds over time.
            let first_nibp_ms = 10_000 + monitor_rng.random_range(0..60i64) * 1000;
            let first_patch_ms = 2_000 + patch_rng.random_range(0..60i64) * 1000;
            let oximeter_battery = oximeter_rng.random_range(55.0..100.0);
            let patch_battery = patch_rng.random_range(55.0..100.0);
            beds.push(BedSim {
                oxygen_flow_l_min: if scenario.on_oxygen() {
                    OXYGEN_FLOW_L_MIN
                } else {
                    0.0
                },
                physiology: Physiology::new(
                    scenario,
                    generated.params,
                    generated.baseline,
                    start_ms,
                    config.utc_offset_minutes,
                    bed_rng(seed, bed_index, PURPOSE_PHYSIOLOGY),
                ),
                rhythm: HeartRhythm::new(
                    scenario == Scenario::AtrialFibrillation,
                    bed_rng(seed, bed_index, PURPOSE_RHYTHM),
                ),
                pulse_deficit: if scenario == Scenario::AtrialFibrillation {
                    0.92
                } else {
                    1.0
                },
                monitor: MonitorSim {
                    output: DeviceOutput::new(&monitor.device_id),
                    rng: monitor_rng,
                    next_window_ms: 0,
                    next_nibp_ms: first_nibp_ms,
                    cuff_site: BodyRegion::new(BodyPart::UpperArm, Some(generated.cuff_side)),
                    leads_off_until_ms: i64::MIN,
                },
                oximeter: OximeterSim {
                    output: DeviceOutput::new(&oximeter.device_id),
                    rng: oximeter_rng,
                    next_ms: 1000,
                    finger,
                    probe_off_until_ms: i64::MIN,
                    motion_until_ms: i64::MIN,
                    motion_drop: 0.0,
                    battery_start: oximeter_battery,
                },
                patch: PatchSim {
                    output: DeviceOutput::new(&patch.device_id),
                    rng: patch_rng,
                    next_ms: first_patch_ms,
                    site: axilla,
                    detached_until_ms: i64::MIN,
                    battery_start: patch_battery,
                },
            });
            devices.extend([monitor, oximeter, patch]);
            patients.push(generated.patient);
        }

        let n_rooms = layout.rooms.len();
        let stuffy_room = if n_rooms == 0 {
            0
        } else {
            (config.seed % n_rooms as u64) as usize
        };
        let rooms = layout
            .rooms
            .iter()
            .enumerate()
            .map(|(room_index, room)| {
                let sensor = SimDevice {
                    device_id: device_id(0x8000 + room_index),
                    kind: DeviceKind::EnvironmentSensor,
                    model: "MetaSim ES-6 room sensor",
                    placement: None,
                    target: AssociationTarget::Room(room.room_id.clone()),
                };
                let output = DeviceOutput::new(&sensor.device_id);
                devices.push(sensor);
                RoomSim {
                    output,
                    climate: RoomClimate::new(
                        room.beds.len(),
                        room_index == stuffy_room,
                        room_rng(config.seed, room_index),
                    ),
                    next_ms: i64::from(config.room_interval_ms),
                }
            })
            .collect();

        SimWard {
            config,
            layout,
            patients,
            devices,
            beds,
            rooms,
        }
    }

    /// The configuration in force (intervals normalised as documented on `SimConfig`).
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    pub fn layout(&self) -> &WardLayout {
        &self.layout
    }

    /// One patient per bed, in bed order.
    pub fn patients(&self) -> &[SimPatient] {
        &self.patients
    }

    /// Per bed a monitor, a pulse oximeter and a temperature patch (in bed order), then one
    /// environment sensor per room.
    pub fn devices(&self) -> &[SimDevice] {
        &self.devices
    }

    /// The true vital signs of the patient in bed `bed_index` as of the last tick.
    pub fn vitals(&self, bed_index: usize) -> Option<Vitals> {
        self.beds.get(bed_index).map(|bed| bed.physiology.current)
    }

    /// The room index whose ventilation is poor (CO2 drifts above 1000 ppm at times).
    pub fn poorly_ventilated_room(&self) -> Option<usize> {
        self.rooms.iter().position(|r| r.climate.poorly_ventilated)
    }

    /// Every message due at or before `now` that was not emitted by an earlier tick: per bed in
    /// device-time order, then the rooms. The messages do not depend on how often `tick` is
    /// called, only on `now` moving forward; a `now` before the previous one emits nothing.
    pub fn tick(&mut self, now: Timestamp) -> Vec<DeviceMessage> {
        let elapsed_ms = now.since(self.config.start);
        let mut out = Vec::new();
        for bed in &mut self.beds {
            bed.run_until(elapsed_ms, &self.config, &mut out);
        }
        for room in &mut self.rooms {
            let interval = i64::from(self.config.room_interval_ms);
            while room.next_ms <= elapsed_ms {
                let time = self.config.start.millis() + room.next_ms;
                let reading = room.climate.read(
                    time,
                    interval as f64 / 1000.0,
                    self.config.utc_offset_minutes,
                );
                let payload = ObservationPayload {
                    time,
                    numerics: vec![
                        numeric("room_temperature", reading.temperature),
                        numeric("room_humidity", reading.humidity),
                        numeric("room_co2", reading.co2),
                        numeric("room_noise", reading.noise),
                        numeric("room_illuminance", reading.illuminance),
                        numeric("room_pm25", reading.pm25),
                    ],
                    waveforms: vec![],
                    battery: None,
                };
                out.push(room.output.message(&payload));
                room.next_ms += interval;
            }
        }
        out
    }
}

fn battery_level(start: f64, elapsed_ms: i64, hours_per_percent: f64) -> u8 {
    let drained = elapsed_ms as f64 / 3_600_000.0 / hours_per_percent;
    (start - drained).clamp(1.0, 100.0).round() as u8
}

impl BedSim {
    fn run_until(&mut self, elapsed_ms: i64, config: &SimConfig, out: &mut Vec<DeviceMessage>) {
        let interval = i64::from(config.monitor_interval_ms);
        loop {
            // Ties go in device order, so the sequence never depends on the tick cadence.
            let due = [
                self.monitor.next_window_ms + interval,
                self.oximeter.next_ms,
                self.patch.next_ms,
            ];
            let (which, &at) = due
                .iter()
                .enumerate()
                .min_by_key(|&(i, &t)| (t, i))
                .expect("three devices");
            if at > elapsed_ms {
                break;
            }
            self.physiology.advance_to(at);
            let message = match which {
                0 => self.monitor_message(config),
                1 => self.oximeter_message(config),
                _ => self.patch_message(config),
            };
            out.push(message);
        }
    }

    fn monitor_message(&mut self, config: &SimConfig) -> DeviceMessage {
        let start_ms = config.start.millis();
        let interval = i64::from(config.monitor_interval_ms);
        let window_start = self.monitor.next_window_ms;
        let window_end = window_start + interval;
        self.monitor.next_window_ms = window_end;
        let vitals = self.physiology.current;
        let monitor = &mut self.monitor;

        if config.artefacts
            && window_start >= monitor.leads_off_until_ms
            && monitor
                .rng
                .random_bool((interval as f64 / 3_600_000.0).min(1.0))
        {
            // About once an hour a lead comes off for 5–20 s.
            monitor.leads_off_until_ms = window_start + monitor.rng.random_range(5_000..20_000);
        }
        let leads_off = window_start < monitor.leads_off_until_ms;

        let mut numerics = Vec::new();
        // The 1 Hz numerics go in the window holding a whole second since the start.
        let second = (window_start + 999).div_euclid(1000) * 1000;
        if second < window_end {
            // A monitor reports a numeric once it has computed it over the window: at its end.
            let time = Some(start_ms + window_end);
            let mut heart_rate = if leads_off {
                numeric("heart_rate", 0.0).flagged("leads_off")
            } else {
                numeric("heart_rate", vitals.heart_rate)
            };
            let mut respiration = numeric("respiration_rate", vitals.respiration_rate);
            if let Some(time) = time {
                heart_rate = heart_rate.at(time);
                respiration = respiration.at(time);
            }
            numerics.push(heart_rate);
            numerics.push(respiration);
        }
        // The oxygen flow (as charted from the flowmeter) once a minute, at the whole minute, so
        // NEWS2 always has a fresh "air or oxygen". It draws nothing from the RNG, so the rest
        // of the simulation is unchanged by it.
        let minute = window_start.div_euclid(60_000) * 60_000;
        let minute = if minute < window_start {
            minute + 60_000
        } else {
            minute
        };
        if minute < window_end {
            numerics
                .push(numeric("inhaled_oxygen_flow", self.oxygen_flow_l_min).at(start_ms + minute));
        }
        while monitor.next_nibp_ms < window_end {
            let time = start_ms + monitor.next_nibp_ms;
            let error = |rng: &mut ChaCha8Rng| rng.random_range(-3.0..3.0);
            let systolic = vitals.systolic + error(&mut monitor.rng);
            let diastolic = vitals.diastolic + error(&mut monitor.rng);
            let mean = diastolic + (systolic - diastolic) / 3.0;
            for (metric, value) in [
                ("nibp_systolic", systolic),
                ("nibp_diastolic", diastolic),
                ("nibp_mean", mean),
            ] {
                numerics.push(numeric(metric, value).at(time).on(monitor.cuff_site));
            }
            monitor.next_nibp_ms += i64::from(config.nibp_interval_ms);
        }

        let mut waveforms = Vec::new();
        if config.waveforms {
            let from_s = window_start as f64 / 1000.0;
            let until_s = window_end as f64 / 1000.0;
            self.rhythm.schedule(from_s, until_s, vitals.heart_rate);
            let respiration_rate = vitals.respiration_rate;
            let ecg_first = window_start * i64::from(ECG_RATE_HZ) / 1000;
            let ecg_count = interval * i64::from(ECG_RATE_HZ) / 1000;
            let ecg: Vec<f32> = (ecg_first..ecg_first + ecg_count)
                .map(|n| {
                    let t_s = n as f64 / f64::from(ECG_RATE_HZ);
                    let mv = if leads_off {
                        self.rhythm.noise(0.004)
                    } else {
                        self.rhythm.ecg(t_s, respiration_rate) + self.rhythm.noise(0.012)
                    };
                    sample(mv, 3)
                })
                .collect();
            let pleth_first = window_start * i64::from(PLETH_RATE_HZ) / 1000;
            let pleth_count = interval * i64::from(PLETH_RATE_HZ) / 1000;
            let pleth: Vec<f32> = (pleth_first..pleth_first + pleth_count)
                .map(|n| {
                    let t_s = n as f64 / f64::from(PLETH_RATE_HZ);
                    let value = self.rhythm.pleth(t_s, respiration_rate) + self.rhythm.noise(0.3);
                    sample(value, 2)
                })
                .collect();
            waveforms.push(WaveformPayload {
                metric: "ecg_ii".into(),
                start: start_ms + window_start,
                rate_hz: ECG_RATE_HZ,
                samples: ecg,
            });
            waveforms.push(WaveformPayload {
                metric: "pleth".into(),
                start: start_ms + window_start,
                rate_hz: PLETH_RATE_HZ,
                samples: pleth,
            });
        }
        let payload = ObservationPayload {
            time: start_ms + window_start,
            numerics,
            waveforms,
            battery: None,
        };
        self.monitor.output.message(&payload)
    }

    fn oximeter_message(&mut self, config: &SimConfig) -> DeviceMessage {
        let at = self.oximeter.next_ms;
        self.oximeter.next_ms += 1000;
        let vitals = self.physiology.current;
        let oximeter = &mut self.oximeter;
        let rng = &mut oximeter.rng;
        let quiet = at >= oximeter.probe_off_until_ms && at >= oximeter.motion_until_ms;
        if config.artefacts && quiet {
            if rng.random_bool(1.0 / 1800.0) {
                // The probe slips off the finger for 10–40 s.
                oximeter.probe_off_until_ms = at + rng.random_range(10_000..40_000);
            } else if rng.random_bool(1.0 / 900.0) {
                // Movement: the reading drops for 5–15 s.
                oximeter.motion_until_ms = at + rng.random_range(5_000..15_000);
                oximeter.motion_drop = rng.random_range(5.0..15.0);
            }
        }
        let spo2 = (vitals.spo2 + 0.4 * crate::physiology::standard_normal(rng)).min(100.0);
        let pulse =
            vitals.heart_rate * self.pulse_deficit + crate::physiology::standard_normal(rng);
        let (spo2, pulse_rate) = if at < oximeter.probe_off_until_ms {
            (
                numeric("spo2", 0.0).flagged("probe_off"),
                numeric("pulse_rate", 0.0).flagged("probe_off"),
            )
        } else if at < oximeter.motion_until_ms {
            (
                numeric("spo2", spo2 - oximeter.motion_drop).flagged("artefact"),
                numeric("pulse_rate", pulse + 15.0).flagged("artefact"),
            )
        } else {
            (numeric("spo2", spo2), numeric("pulse_rate", pulse))
        };
        let payload = ObservationPayload {
            time: config.start.millis() + at,
            numerics: vec![spo2.on(oximeter.finger), pulse_rate.on(oximeter.finger)],
            waveforms: vec![],
            battery: (at % 60_000 == 0).then(|| battery_level(oximeter.battery_start, at, 0.6)),
        };
        oximeter.output.message(&payload)
    }

    fn patch_message(&mut self, config: &SimConfig) -> DeviceMessage {
        let at = self.patch.next_ms;
        self.patch.next_ms += 60_000;
        let vitals = self.physiology.current;
        let patch = &mut self.patch;
        let rng = &mut patch.rng;
        if config.artefacts && at >= patch.detached_until_ms && rng.random_bool(1.0 / 300.0) {
            // The patch lifts off the skin for 3–10 minutes and reads near skin temperature.
            patch.detached_until_ms = at + rng.random_range(180_000..600_000);
        }
        // An axillary reading runs a little below core temperature.
        let axillary = vitals.temperature - 0.2 + 0.05 * crate::physiology::standard_normal(rng);
        let temperature = if at < patch.detached_until_ms {
            numeric(
                "body_temperature",
                33.4 + 0.2 * crate::physiology::standard_normal(rng),
            )
            .flagged("artefact")
        } else {
            numeric("body_temperature", axillary)
        };
        let payload = ObservationPayload {
            time: config.start.millis() + at,
            numerics: vec![temperature.on(patch.site)],
            waveforms: vec![],
            battery: Some(battery_level(patch.battery_start, at, 2.0)),
        };
        patch.output.message(&payload)
    }
}
