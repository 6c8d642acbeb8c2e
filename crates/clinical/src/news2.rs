//! NEWS2, the National Early Warning Score 2 (Royal College of Physicians, 2017), computed from
//! the latest inputs of a patient, the patient's record and the time now.
//!
//! - [`table`]: Chart 1 as data, and the rule for values between chart rows.
//! - [`scale`]: SpO2 Scale 1 or 2 from the record, with the reason.
//! - here: input selection (freshness per parameter, artefacts never used), the result with its
//!   breakdown, and the clinical response band (Chart 4).
//!
//! A score over missing, stale or artefact-only inputs is never presented as complete: each such
//! parameter says why it could not be scored, the result is marked incomplete, and its total and
//! band are what the scored parameters alone reach (a lower bound: a missing parameter can only
//! add to the total).

pub mod scale;
pub mod table;

use model::{Catalog, Observation, ObservedValue, Quality, Timestamp};

pub use scale::{HypercapnicCode, HypercapnicCodes};

/// The seven parameters of Chart 1, in chart order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Parameter {
    RespirationRate,
    Spo2,
    AirOrOxygen,
    SystolicBp,
    Pulse,
    Consciousness,
    Temperature,
}

impl Parameter {
    pub const ALL: [Parameter; 7] = [
        Parameter::RespirationRate,
        Parameter::Spo2,
        Parameter::AirOrOxygen,
        Parameter::SystolicBp,
        Parameter::Pulse,
        Parameter::Consciousness,
        Parameter::Temperature,
    ];

    /// The key used in the metric catalog's `news2` column, rules files and JSON.
    pub fn key(self) -> &'static str {
        match self {
            Parameter::RespirationRate => "respiration_rate",
            Parameter::Spo2 => "spo2",
            Parameter::AirOrOxygen => "air_or_oxygen",
            Parameter::SystolicBp => "systolic_bp",
            Parameter::Pulse => "pulse",
            Parameter::Consciousness => "consciousness",
            Parameter::Temperature => "temperature",
        }
    }

    pub fn from_key(key: &str) -> Option<Parameter> {
        Parameter::ALL.into_iter().find(|p| p.key() == key)
    }

    pub fn display(self) -> &'static str {
        match self {
            Parameter::RespirationRate => "Respiration rate",
            Parameter::Spo2 => "SpO2",
            Parameter::AirOrOxygen => "Air or oxygen",
            Parameter::SystolicBp => "Systolic blood pressure",
            Parameter::Pulse => "Pulse",
            Parameter::Consciousness => "Consciousness",
            Parameter::Temperature => "Temperature",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// ACVPU. Devices and charts send it as a number (the catalog's `consciousness_acvpu` metric):
/// 0 Alert, 1 new Confusion, 2 Voice, 3 Pain, 4 Unresponsive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consciousness {
    Alert,
    NewConfusion,
    Voice,
    Pain,
    Unresponsive,
}

impl Consciousness {
    pub fn from_code(value: f64) -> Option<Consciousness> {
        if value.fract() != 0.0 {
            return None;
        }
        match value as i64 {
            0 => Some(Consciousness::Alert),
            1 => Some(Consciousness::NewConfusion),
            2 => Some(Consciousness::Voice),
            3 => Some(Consciousness::Pain),
            4 => Some(Consciousness::Unresponsive),
            _ => None,
        }
    }

    pub fn code(self) -> f64 {
        match self {
            Consciousness::Alert => 0.0,
            Consciousness::NewConfusion => 1.0,
            Consciousness::Voice => 2.0,
            Consciousness::Pain => 3.0,
            Consciousness::Unresponsive => 4.0,
        }
    }

    /// The ACVPU letter.
    pub fn letter(self) -> &'static str {
        match self {
            Consciousness::Alert => "A",
            Consciousness::NewConfusion => "C",
            Consciousness::Voice => "V",
            Consciousness::Pain => "P",
            Consciousness::Unresponsive => "U",
        }
    }

    pub fn from_letter(letter: &str) -> Option<Consciousness> {
        match letter.trim().to_ascii_uppercase().as_str() {
            "A" => Some(Consciousness::Alert),
            "C" => Some(Consciousness::NewConfusion),
            "V" => Some(Consciousness::Voice),
            "P" => Some(Consciousness::Pain),
            "U" => Some(Consciousness::Unresponsive),
            _ => None,
        }
    }
}

/// One measured or charted value that feeds a NEWS2 parameter.
#[derive(Clone, Debug, PartialEq)]
pub struct News2Input {
    pub parameter: Parameter,
    /// The catalog metric it came as (`heart_rate` and `pulse_rate` both feed pulse).
    pub metric: String,
    /// In the catalog's unit. Air or oxygen: inhaled oxygen flow in L/min (0 is air).
    /// Consciousness: the ACVPU code of [`Consciousness`].
    pub value: f64,
    pub time: Timestamp,
    pub quality: Quality,
}

impl News2Input {
    /// The input an observation gives, if its metric feeds a NEWS2 parameter.
    pub fn from_observation(observation: &Observation, catalog: &Catalog) -> Option<News2Input> {
        let ObservedValue::Numeric(value) = observation.value else {
            return None;
        };
        let parameter = catalog
            .by_key(&observation.metric)?
            .news2
            .as_deref()
            .and_then(Parameter::from_key)?;
        Some(News2Input {
            parameter,
            metric: observation.metric.clone(),
            value,
            time: observation.device_time,
            quality: observation.quality,
        })
    }
}

/// A diagnosis on the record, as coded (FHIR `Condition.code.coding`). Only active conditions
/// belong in a [`RecordContext`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodedCondition {
    pub system: String,
    pub code: String,
}

/// A clinician's prescribed target saturation range, in percent.
#[derive(Clone, Debug, PartialEq)]
pub struct OxygenTarget {
    pub low_percent: f64,
    pub high_percent: f64,
}

/// What the record says that changes the score.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RecordContext {
    pub conditions: Vec<CodedCondition>,
    /// The current oxygen-target prescription, if any.
    pub oxygen_target: Option<OxygenTarget>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spo2Scale {
    Scale1,
    Scale2,
}

impl Spo2Scale {
    pub fn number(self) -> u8 {
        match self {
            Spo2Scale::Scale1 => 1,
            Spo2Scale::Scale2 => 2,
        }
    }
}

/// Why a scale was used.
#[derive(Clone, Debug, PartialEq)]
pub enum ScaleReason {
    /// A clinician prescribed a target of 88–92%: Scale 2.
    TargetPrescribed(OxygenTarget),
    /// A clinician prescribed another target: Scale 1, whatever the diagnoses.
    OtherTargetPrescribed(OxygenTarget),
    /// An active diagnosis coded as hypercapnic respiratory failure: Scale 2.
    HypercapnicDiagnosis {
        system: String,
        code: String,
        display: String,
    },
    /// Neither: Scale 1.
    NoScale2Indication,
}

impl ScaleReason {
    pub fn describe(&self) -> String {
        match self {
            ScaleReason::TargetPrescribed(t) => format!(
                "prescribed target saturation {}-{}% (hypercapnic respiratory failure)",
                t.low_percent, t.high_percent
            ),
            ScaleReason::OtherTargetPrescribed(t) => format!(
                "prescribed target saturation {}-{}% is not 88-92%",
                t.low_percent, t.high_percent
            ),
            ScaleReason::HypercapnicDiagnosis {
                system,
                code,
                display,
            } => format!("diagnosis {code} {display} ({system})"),
            ScaleReason::NoScale2Indication => {
                "no 88-92% target prescribed and no hypercapnic respiratory failure diagnosis"
                    .to_owned()
            }
        }
    }
}

/// Chart 4, the clinical response band.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Band {
    /// Total 0.
    Zero,
    /// Total 1–4.
    Low,
    /// 3 in any single parameter (total under 5).
    LowMedium,
    /// Total 5–6.
    Medium,
    /// Total 7 or more.
    High,
}

impl Band {
    /// The band of a total and the highest single sub-score. An aggregate of 5 or more outranks
    /// a single 3 (Chart 4 lists the single-parameter trigger between 1–4 and 5–6).
    pub fn of(total: u8, highest_sub_score: u8) -> Band {
        match total {
            7.. => Band::High,
            5..=6 => Band::Medium,
            _ if highest_sub_score >= 3 => Band::LowMedium,
            1..=4 => Band::Low,
            0 => Band::Zero,
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            Band::Zero => "zero",
            Band::Low => "low",
            Band::LowMedium => "low-medium",
            Band::Medium => "medium",
            Band::High => "high",
        }
    }

    pub fn from_key(key: &str) -> Option<Band> {
        [
            Band::Zero,
            Band::Low,
            Band::LowMedium,
            Band::Medium,
            Band::High,
        ]
        .into_iter()
        .find(|b| b.key() == key)
    }

    /// Clinical risk as Chart 4 names it.
    pub fn clinical_risk(self) -> &'static str {
        match self {
            Band::Zero | Band::Low => "Low",
            Band::LowMedium => "Low-medium",
            Band::Medium => "Medium",
            Band::High => "High",
        }
    }

    /// The response Chart 4 asks for.
    pub fn response(self) -> &'static str {
        match self {
            Band::Zero => "Monitoring at least every 12 hours",
            Band::Low => "At least every 4-6 hours; registered nurse decides whether to escalate",
            Band::LowMedium => "At least hourly; inform the medical team urgently",
            Band::Medium => {
                "At least hourly; urgent review by a clinician competent in acute illness"
            }
            Band::High => "Continuous monitoring; emergency assessment by a critical-care team",
        }
    }
}

/// How old an input may be and still count, per parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct News2Config {
    freshness_millis: [i64; 7],
}

const MINUTE: i64 = 60_000;

impl Default for News2Config {
    /// Continuously monitored parameters (respiration rate, SpO2, pulse) must be within the last
    /// hour; parameters charted at an observation round (air or oxygen, blood pressure,
    /// consciousness, temperature) within 4 hours, the most frequent round NEWS2 asks for below
    /// a score of 5 ("at least every 4-6 hours").
    fn default() -> Self {
        let mut config = News2Config {
            freshness_millis: [0; 7],
        };
        for parameter in Parameter::ALL {
            let minutes = match parameter {
                Parameter::RespirationRate | Parameter::Spo2 | Parameter::Pulse => 60,
                Parameter::AirOrOxygen
                | Parameter::SystolicBp
                | Parameter::Consciousness
                | Parameter::Temperature => 240,
            };
            config.freshness_millis[parameter.index()] = minutes * MINUTE;
        }
        config
    }
}

impl News2Config {
    pub fn freshness_millis(&self, parameter: Parameter) -> i64 {
        self.freshness_millis[parameter.index()]
    }

    /// Sets how old an input of `parameter` may be.
    ///
    /// # Panics
    ///
    /// If `millis` is not positive: a zero window would make every input stale. Edges that read
    /// windows from configuration check them first (see `metaward score`'s `config_with`).
    pub fn set_freshness_millis(&mut self, parameter: Parameter, millis: i64) -> &mut Self {
        assert!(millis > 0, "a freshness window must be positive");
        self.freshness_millis[parameter.index()] = millis;
        self
    }
}

/// What became of one parameter.
#[derive(Clone, Debug, PartialEq)]
pub enum ParameterOutcome {
    Scored {
        sub_score: u8,
        /// As measured, in the catalog's unit.
        value: f64,
        /// As looked up in the chart, after rounding to the chart's resolution.
        charted: f64,
        time: Timestamp,
        metric: String,
    },
    /// No input ever (at or before now).
    Missing,
    /// The latest usable input is older than the freshness window.
    Stale {
        time: Timestamp,
        age_millis: i64,
        window_millis: i64,
    },
    /// Inputs within the window exist but all are flagged as artefacts or implausible.
    ArtefactOnly { time: Timestamp },
    /// The value cannot be read as this parameter (an ACVPU code outside 0–4, not a number).
    Invalid { value: f64, time: Timestamp },
    /// Scale 2 with SpO2 of 93% or more scores by air or oxygen, which is not known.
    NeedsAirOrOxygen { value: f64, time: Timestamp },
}

impl ParameterOutcome {
    pub fn sub_score(&self) -> Option<u8> {
        match self {
            ParameterOutcome::Scored { sub_score, .. } => Some(*sub_score),
            _ => None,
        }
    }

    /// Why the parameter is not scored, as a short key (`missing`, `stale`, ...).
    pub fn reason_key(&self) -> Option<&'static str> {
        match self {
            ParameterOutcome::Scored { .. } => None,
            ParameterOutcome::Missing => Some("missing"),
            ParameterOutcome::Stale { .. } => Some("stale"),
            ParameterOutcome::ArtefactOnly { .. } => Some("artefact"),
            ParameterOutcome::Invalid { .. } => Some("invalid"),
            ParameterOutcome::NeedsAirOrOxygen { .. } => Some("needs-air-or-oxygen"),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ParameterResult {
    pub parameter: Parameter,
    pub outcome: ParameterOutcome,
}

/// A NEWS2 result with its breakdown.
#[derive(Clone, Debug, PartialEq)]
pub struct News2Result {
    /// When it was computed; freshness is measured back from here.
    pub at: Timestamp,
    /// The sum of the scored parameters' sub-scores.
    pub total: u8,
    /// Whether all seven parameters were scored. When not, `total` and `band` are lower bounds.
    pub complete: bool,
    pub band: Band,
    pub scale: Spo2Scale,
    pub scale_reason: ScaleReason,
    /// The seven parameters, in chart order.
    pub parameters: Vec<ParameterResult>,
}

impl News2Result {
    pub fn parameter(&self, parameter: Parameter) -> &ParameterOutcome {
        &self.parameters[parameter.index()].outcome
    }

    /// The parameters that could not be scored.
    pub fn unscored(&self) -> impl Iterator<Item = &ParameterResult> {
        self.parameters
            .iter()
            .filter(|p| p.outcome.sub_score().is_none())
    }
}

/// Computes NEWS2. Cheap to build; holds the freshness windows and the diagnosis code list.
#[derive(Clone, Debug)]
pub struct News2Calculator {
    config: News2Config,
    codes: &'static HypercapnicCodes,
}

impl Default for News2Calculator {
    fn default() -> Self {
        News2Calculator::new(News2Config::default())
    }
}

/// The input chosen for a parameter, or why there is none.
enum Selected<'a> {
    Usable(&'a News2Input),
    Unusable(ParameterOutcome),
}

impl News2Calculator {
    pub fn new(config: News2Config) -> Self {
        News2Calculator {
            config,
            codes: HypercapnicCodes::embedded(),
        }
    }

    pub fn config(&self) -> &News2Config {
        &self.config
    }

    /// NEWS2 at `now` from any number of inputs (history or latest values, in any order):
    /// per parameter, the latest input at or before `now`, not flagged, within the freshness
    /// window is used.
    pub fn score(
        &self,
        inputs: &[News2Input],
        context: &RecordContext,
        now: Timestamp,
    ) -> News2Result {
        let (scale, scale_reason) = scale::select_scale(context, self.codes);
        let selected: Vec<Selected> = Parameter::ALL
            .into_iter()
            .map(|parameter| self.select(parameter, inputs, now))
            .collect();
        // Air or oxygen, when known, also decides Scale 2 saturations of 93% or more.
        let on_oxygen = match &selected[Parameter::AirOrOxygen.index()] {
            Selected::Usable(input) => Some(input.value > 0.0),
            Selected::Unusable(_) => None,
        };
        let parameters: Vec<ParameterResult> = Parameter::ALL
            .into_iter()
            .zip(selected)
            .map(|(parameter, selected)| ParameterResult {
                parameter,
                outcome: match selected {
                    Selected::Usable(input) => sub_score(parameter, input, scale, on_oxygen),
                    Selected::Unusable(outcome) => outcome,
                },
            })
            .collect();
        let scores: Vec<u8> = parameters
            .iter()
            .filter_map(|p| p.outcome.sub_score())
            .collect();
        let total = scores.iter().sum();
        let highest = scores.iter().copied().max().unwrap_or(0);
        News2Result {
            at: now,
            total,
            complete: scores.len() == Parameter::ALL.len(),
            band: Band::of(total, highest),
            scale,
            scale_reason,
            parameters,
        }
    }

    fn select<'a>(
        &self,
        parameter: Parameter,
        inputs: &'a [News2Input],
        now: Timestamp,
    ) -> Selected<'a> {
        let window = self.freshness_millis(parameter);
        let known = || {
            inputs
                .iter()
                .filter(move |i| i.parameter == parameter && i.time <= now)
        };
        let usable = |i: &&News2Input| !i.quality.is_artefact() && i.value.is_finite();
        let fresh = |i: &&News2Input| now.since(i.time) <= window;
        // The latest wins; at equal times the later input in the slice (the later arrival).
        let latest = |a: &&News2Input, b: &&News2Input| a.time.cmp(&b.time);
        if let Some(input) = known().filter(usable).filter(fresh).max_by(latest) {
            return Selected::Usable(input);
        }
        if let Some(input) = known().filter(fresh).max_by(latest) {
            return Selected::Unusable(ParameterOutcome::ArtefactOnly { time: input.time });
        }
        if let Some(input) = known().filter(usable).max_by(latest) {
            return Selected::Unusable(ParameterOutcome::Stale {
                time: input.time,
                age_millis: now.since(input.time),
                window_millis: window,
            });
        }
        if let Some(input) = known().max_by(latest) {
            // Only old artefacts: nothing usable was ever seen, but say when the last one was.
            return Selected::Unusable(ParameterOutcome::ArtefactOnly { time: input.time });
        }
        Selected::Unusable(ParameterOutcome::Missing)
    }

    fn freshness_millis(&self, parameter: Parameter) -> i64 {
        self.config.freshness_millis(parameter)
    }
}

fn sub_score(
    parameter: Parameter,
    input: &News2Input,
    scale: Spo2Scale,
    on_oxygen: Option<bool>,
) -> ParameterOutcome {
    let decimals = table::chart_decimals(parameter);
    let units = table::to_chart_units(input.value, decimals);
    let scored = |sub_score: u8, charted: f64| ParameterOutcome::Scored {
        sub_score,
        value: input.value,
        charted,
        time: input.time,
        metric: input.metric.clone(),
    };
    let from_table = |rows: &[table::Row]| {
        let score = table::lookup(rows, units).expect("chart tables cover every value");
        scored(score, table::from_chart_units(units, decimals))
    };
    match parameter {
        Parameter::RespirationRate => from_table(&table::RESPIRATION_RATE),
        Parameter::SystolicBp => from_table(&table::SYSTOLIC_BP),
        Parameter::Pulse => from_table(&table::PULSE),
        Parameter::Temperature => from_table(&table::TEMPERATURE_TENTHS),
        Parameter::Spo2 => match scale {
            Spo2Scale::Scale1 => from_table(&table::SPO2_SCALE_1),
            Spo2Scale::Scale2 if units < table::SPO2_SCALE_2_OXYGEN_DEPENDENT_FROM => {
                from_table(&table::SPO2_SCALE_2_BELOW_93)
            }
            Spo2Scale::Scale2 => match on_oxygen {
                Some(false) => from_table(&table::SPO2_SCALE_2_ON_AIR),
                Some(true) => from_table(&table::SPO2_SCALE_2_ON_OXYGEN),
                None => ParameterOutcome::NeedsAirOrOxygen {
                    value: input.value,
                    time: input.time,
                },
            },
        },
        Parameter::AirOrOxygen => {
            // The input is the inhaled oxygen flow: any flow is supplemental oxygen.
            if input.value < 0.0 {
                return ParameterOutcome::Invalid {
                    value: input.value,
                    time: input.time,
                };
            }
            let on_oxygen = input.value > 0.0;
            let score = if on_oxygen {
                table::OXYGEN_SCORE
            } else {
                table::AIR_SCORE
            };
            scored(score, input.value)
        }
        Parameter::Consciousness => match Consciousness::from_code(input.value) {
            Some(level) => scored(table::consciousness_score(level), level.code()),
            None => ParameterOutcome::Invalid {
                value: input.value,
                time: input.time,
            },
        },
    }
}

#[cfg(test)]
mod tests;
