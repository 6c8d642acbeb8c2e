//! Clinical scenarios: what is wrong with a simulated patient, which coded conditions go with it,
//! and how it moves the vital signs away from the patient's own baseline over time.

use model::{BodyPart, BodyRegion, Side};

/// What the simulated patient is going through. Most beds are `Stable`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// Vital signs around the patient's baseline, with noise and a circadian rhythm.
    Stable,
    /// Deteriorating sepsis: over about 45 minutes after onset, heart rate, respiration rate and
    /// temperature rise, blood pressure falls and SpO2 falls a little.
    Sepsis,
    /// COPD exacerbation on supplemental oxygen: SpO2 held at 88–92 %, respiration rate raised.
    CopdExacerbation,
    /// Atrial fibrillation with a fast ventricular rate: irregular RR intervals, no P waves,
    /// heart rate 110–150.
    AtrialFibrillation,
    /// Persistent low blood pressure with a compensatory tachycardia.
    Hypotension,
    /// Fever of about 38.5–39.3 °C with a raised heart rate.
    Fever,
}

impl Scenario {
    pub const ALL: [Scenario; 6] = [
        Scenario::Stable,
        Scenario::Sepsis,
        Scenario::CopdExacerbation,
        Scenario::AtrialFibrillation,
        Scenario::Hypotension,
        Scenario::Fever,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Scenario::Stable => "stable",
            Scenario::Sepsis => "sepsis",
            Scenario::CopdExacerbation => "copd_exacerbation",
            Scenario::AtrialFibrillation => "atrial_fibrillation",
            Scenario::Hypotension => "hypotension",
            Scenario::Fever => "fever",
        }
    }

    /// The scenario of bed `bed_index`: a fixed pattern in which most beds are stable and the
    /// first six beds already show every abnormal scenario but one.
    pub fn for_bed(bed_index: usize) -> Scenario {
        const PATTERN: [Scenario; 12] = [
            Scenario::Stable,
            Scenario::Sepsis,
            Scenario::Stable,
            Scenario::CopdExacerbation,
            Scenario::Stable,
            Scenario::AtrialFibrillation,
            Scenario::Stable,
            Scenario::Hypotension,
            Scenario::Stable,
            Scenario::Fever,
            Scenario::Stable,
            Scenario::Stable,
        ];
        PATTERN[bed_index % PATTERN.len()]
    }

    /// Whether the patient receives supplemental oxygen (NEWS2 scores air or oxygen). The
    /// bedside monitor reports the flow once a minute (`inhaled_oxygen_flow`, 0 on air).
    pub fn on_oxygen(self) -> bool {
        matches!(self, Scenario::CopdExacerbation)
    }
}

/// A coded condition (SNOMED CT), optionally with the body region where it sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Condition {
    /// SNOMED CT concept id.
    pub snomed_code: &'static str,
    /// SNOMED CT preferred term.
    pub display: &'static str,
    pub body_site: Option<BodyRegion>,
}

pub(crate) const SNOMED_SYSTEM: &str = "http://snomed.info/sct";

const fn condition(
    snomed_code: &'static str,
    display: &'static str,
    body_site: Option<BodyRegion>,
) -> Condition {
    Condition {
        snomed_code,
        display,
        body_site,
    }
}

const fn region(part: BodyPart, side: Option<Side>) -> Option<BodyRegion> {
    Some(BodyRegion::new(part, side))
}

pub(crate) const SEPSIS: Condition = condition("91302008", "Sepsis", None);
pub(crate) const PNEUMONIA_RIGHT: Condition = condition(
    "233604007",
    "Pneumonia",
    region(BodyPart::Lung, Some(Side::Right)),
);
pub(crate) const URINARY_TRACT_INFECTION: Condition = condition(
    "68566005",
    "Urinary tract infectious disease",
    region(BodyPart::Pelvis, None),
);
pub(crate) const COPD: Condition = condition(
    "13645005",
    "Chronic obstructive lung disease",
    region(BodyPart::Lung, None),
);
pub(crate) const COPD_EXACERBATION: Condition = condition(
    "195951007",
    "Acute exacerbation of chronic obstructive airways disease",
    region(BodyPart::Lung, None),
);
/// The record's reason for NEWS2 SpO2 Scale 2 (see crates/clinical/data, the same code).
pub(crate) const CHRONIC_HYPERCAPNIC_RESPIRATORY_FAILURE: Condition = condition(
    "426896000",
    "Chronic hypercapnic respiratory failure",
    region(BodyPart::Lung, None),
);
pub(crate) const ATRIAL_FIBRILLATION: Condition = condition(
    "49436004",
    "Atrial fibrillation",
    region(BodyPart::Heart, None),
);
pub(crate) const HYPOTENSION: Condition = condition("45007003", "Low blood pressure", None);
pub(crate) const FEVER: Condition = condition("386661006", "Fever", None);

/// Comorbidities drawn at random; the `Side` of a paired site is drawn too (see `comorbidity`).
pub(crate) const ESSENTIAL_HYPERTENSION: Condition =
    condition("59621000", "Essential hypertension", None);
pub(crate) const TYPE_2_DIABETES: Condition =
    condition("44054006", "Diabetes mellitus type 2", None);
pub(crate) const HYPERCHOLESTEROLEMIA: Condition =
    condition("13644009", "Hypercholesterolemia", None);
pub(crate) const HEART_FAILURE: Condition =
    condition("84114007", "Heart failure", region(BodyPart::Heart, None));
pub(crate) const HYPOTHYROIDISM: Condition =
    condition("40930008", "Hypothyroidism", region(BodyPart::Neck, None));
pub(crate) const DEMENTIA: Condition =
    condition("52448006", "Dementia", region(BodyPart::Head, None));
pub(crate) const STROKE: Condition = condition(
    "230690007",
    "Cerebrovascular accident",
    region(BodyPart::Head, None),
);
pub(crate) const FRACTURE_OF_FEMUR: Condition = condition(
    "71620000",
    "Fracture of femur",
    region(BodyPart::Thigh, None),
);
pub(crate) const PRESSURE_ULCER: Condition = condition(
    "399912005",
    "Pressure ulcer",
    region(BodyPart::Pelvis, None),
);

/// How far a scenario moves each vital sign from the patient's baseline, in catalog units.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Offsets {
    pub heart_rate: f64,
    pub respiration_rate: f64,
    pub spo2: f64,
    pub systolic: f64,
    pub diastolic: f64,
    pub temperature: f64,
}

/// Per-patient parameters of a scenario, drawn once when the ward is built.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ScenarioParams {
    /// Minutes after the simulation start at which a deteriorating scenario begins.
    pub onset_minutes: f64,
    /// Minutes from onset to the full effect.
    pub ramp_minutes: f64,
    /// The level the scenario drives its main vital sign to (AF rate, fever, COPD SpO2, ...).
    pub target: f64,
}

fn smoothstep(x: f64) -> f64 {
    let x = x.clamp(0.0, 1.0);
    x * x * (3.0 - 2.0 * x)
}

impl Scenario {
    /// The scenario's offsets `elapsed_minutes` after the start, for a patient whose resting
    /// baseline is `baseline`.
    pub(crate) fn offsets(
        self,
        params: &ScenarioParams,
        baseline: &Offsets,
        elapsed_minutes: f64,
    ) -> Offsets {
        let ramp = smoothstep((elapsed_minutes - params.onset_minutes) / params.ramp_minutes);
        match self {
            Scenario::Stable => Offsets::default(),
            Scenario::Sepsis => Offsets {
                heart_rate: 42.0 * ramp,
                respiration_rate: 10.0 * ramp,
                spo2: -4.0 * ramp,
                systolic: -38.0 * ramp,
                diastolic: -22.0 * ramp,
                temperature: 1.9 * ramp,
            },
            Scenario::CopdExacerbation => Offsets {
                heart_rate: 14.0,
                respiration_rate: 8.0,
                spo2: params.target - baseline.spo2,
                systolic: 4.0,
                diastolic: 2.0,
                temperature: 0.2,
            },
            Scenario::AtrialFibrillation => Offsets {
                heart_rate: params.target - baseline.heart_rate,
                respiration_rate: 3.0,
                spo2: -1.0,
                systolic: -12.0,
                diastolic: -6.0,
                temperature: 0.0,
            },
            Scenario::Hypotension => Offsets {
                heart_rate: 22.0,
                respiration_rate: 3.0,
                spo2: -1.0,
                systolic: params.target - baseline.systolic,
                diastolic: params.target * 0.58 - baseline.diastolic,
                temperature: 0.0,
            },
            Scenario::Fever => {
                // A fever swings slowly (over about 3 hours) around its target.
                let swing = 0.3 * (std::f64::consts::TAU * elapsed_minutes / 180.0).sin();
                let rise = params.target + swing - baseline.temperature;
                Offsets {
                    heart_rate: 10.0 * rise,
                    respiration_rate: 3.0,
                    spo2: -1.0,
                    systolic: -4.0,
                    diastolic: -3.0,
                    temperature: rise,
                }
            }
        }
    }
}
