//! `metaward score`: reads vitals and record context as JSON (a file or stdin), prints the NEWS2
//! result with its breakdown, for checking a score by hand. `--json` prints the result as JSON.
//!
//! The JSON shapes here are edge types (documented in docs/news2.md); they are converted to the
//! clinical crate's core types, which never see JSON. Shared with `metaward test-rules`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use clinical::news2::Consciousness;
use clinical::{
    CodedCondition, News2Calculator, News2Config, News2Input, News2Result, OxygenTarget, Parameter,
    ParameterOutcome, RecordContext, ScaleReason,
};
use model::civil::days_from_civil;
use model::{Catalog, Quality, Timestamp};
use serde::{Deserialize, Serialize};

#[derive(Args, Debug)]
pub struct ScoreArgs {
    /// JSON file with `vitals`, `context` and optionally `now`; `-` or nothing reads stdin
    pub file: Option<PathBuf>,
    /// Print the result as JSON instead of text
    #[arg(long)]
    pub json: bool,
}

/// The request `metaward score` reads.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct ScoreRequest {
    /// When to score: milliseconds since the epoch or `YYYY-MM-DDTHH:MM[:SS[.fff]]Z`; the
    /// clock's time when absent.
    pub now: Option<TimeJson>,
    #[serde(default)]
    pub vitals: Vec<VitalJson>,
    #[serde(default)]
    pub context: ContextJson,
    /// Freshness windows overriding the defaults, in minutes, by NEWS2 parameter key.
    #[serde(default)]
    pub freshness_minutes: BTreeMap<String, f64>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum TimeJson {
    Millis(i64),
    Text(String),
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct VitalJson {
    /// A catalog metric key (`heart_rate`, `nibp_systolic`, `inhaled_oxygen_flow`, ...) or a
    /// NEWS2 parameter key (`pulse`, `systolic_bp`, `air_or_oxygen`, ...).
    pub metric: String,
    pub value: ValueJson,
    /// When measured; `now` when absent.
    pub time: Option<TimeJson>,
    /// Flagged by the device as an artefact.
    #[serde(default)]
    pub artefact: bool,
}

/// A number, or an ACVPU letter for consciousness.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum ValueJson {
    Number(f64),
    Text(String),
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct ContextJson {
    /// Active diagnoses: FHIR code system URI and code.
    #[serde(default)]
    pub conditions: Vec<ConditionJson>,
    /// A clinician's prescribed target saturation range, in percent.
    pub oxygen_target: Option<TargetJson>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ConditionJson {
    pub system: String,
    pub code: String,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct TargetJson {
    pub low: f64,
    pub high: f64,
}

impl ContextJson {
    pub fn to_context(&self) -> anyhow::Result<RecordContext> {
        if let Some(target) = &self.oxygen_target
            && !(target.low < target.high && target.low > 0.0 && target.high <= 100.0)
        {
            bail!(
                "oxygen_target {}-{}% is not a saturation range",
                target.low,
                target.high
            );
        }
        Ok(RecordContext {
            conditions: self
                .conditions
                .iter()
                .map(|c| CodedCondition {
                    system: c.system.clone(),
                    code: c.code.clone(),
                })
                .collect(),
            oxygen_target: self.oxygen_target.as_ref().map(|t| OxygenTarget {
                low_percent: t.low,
                high_percent: t.high,
            }),
        })
    }
}

/// The clock, read only here at the edge; the clinical crate takes time as an input.
fn clock_now() -> Timestamp {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    Timestamp::from_millis(millis)
}

pub fn parse_time(time: &TimeJson) -> anyhow::Result<Timestamp> {
    match time {
        TimeJson::Millis(ms) => Ok(Timestamp::from_millis(*ms)),
        TimeJson::Text(text) => parse_utc(text)
            .with_context(|| format!("`{text}` is not a UTC time like 2026-01-01T08:00:00Z")),
    }
}

/// `YYYY-MM-DDTHH:MM[:SS[.fff]]Z`, UTC only, so a time never depends on the machine's zone.
fn parse_utc(text: &str) -> Option<Timestamp> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut date_parts = date.split('-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (
        date_parts.next()??,
        date_parts.next()??,
        date_parts.next()??,
    );
    if date_parts.next().is_some() || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let mut time_parts = time.split(':');
    let hour: i64 = time_parts.next()?.parse().ok()?;
    let minute: i64 = time_parts.next()?.parse().ok()?;
    let seconds: f64 = match time_parts.next() {
        Some(s) => s.parse().ok()?,
        None => 0.0,
    };
    if time_parts.next().is_some() || hour > 23 || minute > 59 || !(0.0..60.0).contains(&seconds) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let millis = ((days * 24 + hour) * 60 + minute) * 60_000 + (seconds * 1000.0).round() as i64;
    Some(Timestamp::from_millis(millis))
}

/// A timestamp as `YYYY-MM-DDTHH:MM:SS[.fff]Z`.
pub fn format_time(time: Timestamp) -> String {
    let millis = time.millis();
    let days = millis.div_euclid(86_400_000);
    let of_day = millis.rem_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s, ms) = (
        of_day / 3_600_000,
        of_day / 60_000 % 60,
        of_day / 1000 % 60,
        of_day % 1000,
    );
    if ms == 0 {
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
    } else {
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{ms:03}Z")
    }
}

/// One vital as a NEWS2 input: the metric maps through the catalog's NEWS2 column (or is a
/// parameter key itself), and a value outside the catalog's plausible range is flagged
/// implausible, as the live normalizer does.
pub fn to_input(
    metric: &str,
    value: &ValueJson,
    time: Timestamp,
    artefact: bool,
) -> anyhow::Result<News2Input> {
    let catalog = Catalog::embedded();
    let catalog_metric = catalog.by_key(metric);
    let parameter = match catalog_metric {
        Some(m) => m
            .news2
            .as_deref()
            .and_then(Parameter::from_key)
            .with_context(|| format!("metric `{metric}` does not feed NEWS2"))?,
        None => Parameter::from_key(metric).with_context(|| {
            format!("`{metric}` is neither a catalog metric nor a NEWS2 parameter")
        })?,
    };
    let value = match value {
        ValueJson::Number(number) => *number,
        ValueJson::Text(text) if parameter == Parameter::Consciousness => {
            Consciousness::from_letter(text)
                .with_context(|| format!("`{text}` is not an ACVPU letter (A, C, V, P, U)"))?
                .code()
        }
        ValueJson::Text(text) => bail!("`{metric}` needs a number, not `{text}`"),
    };
    let implausible = catalog_metric.is_some_and(|m| !m.plausible.contains(value));
    Ok(News2Input {
        parameter,
        metric: metric.to_owned(),
        value,
        time,
        quality: Quality {
            implausible,
            device_flagged: artefact,
        },
    })
}

pub fn config_with(freshness_minutes: &BTreeMap<String, f64>) -> anyhow::Result<News2Config> {
    let mut config = News2Config::default();
    for (key, minutes) in freshness_minutes {
        let parameter = Parameter::from_key(key)
            .with_context(|| format!("freshness for unknown NEWS2 parameter `{key}`"))?;
        if !(minutes.is_finite() && *minutes > 0.0) {
            bail!("freshness for `{key}` must be a positive number of minutes");
        }
        config.set_freshness_millis(parameter, (minutes * 60_000.0).round() as i64);
    }
    Ok(config)
}

pub fn run(args: ScoreArgs) -> anyhow::Result<()> {
    let text = match &args.file {
        Some(path) if path.as_os_str() != "-" => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
        _ => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading stdin")?;
            text
        }
    };
    let request: ScoreRequest = serde_json::from_str(&text).context("parsing the request JSON")?;
    let result = score_request(&request)?;
    let text = if args.json {
        serde_json::to_string_pretty(&ResultJson::of(&result))? + "\n"
    } else {
        render(&result)
    };
    // A closed pipe (`| head`) is an error to report, not a panic.
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .context("writing the result")
}

pub fn score_request(request: &ScoreRequest) -> anyhow::Result<News2Result> {
    let now = match &request.now {
        Some(time) => parse_time(time).context("now")?,
        None => clock_now(),
    };
    let inputs = request
        .vitals
        .iter()
        .enumerate()
        .map(|(i, vital)| {
            let time = match &vital.time {
                Some(time) => parse_time(time)?,
                None => now,
            };
            to_input(&vital.metric, &vital.value, time, vital.artefact)
                .with_context(|| format!("vitals[{i}]"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let context = request.context.to_context()?;
    let calculator = News2Calculator::new(config_with(&request.freshness_minutes)?);
    Ok(calculator.score(&inputs, &context, now))
}

pub fn scale_reason_key(reason: &ScaleReason) -> &'static str {
    match reason {
        ScaleReason::TargetPrescribed(_) => "target-prescribed",
        ScaleReason::OtherTargetPrescribed(_) => "other-target-prescribed",
        ScaleReason::HypercapnicDiagnosis { .. } => "hypercapnic-diagnosis",
        ScaleReason::NoScale2Indication => "none",
    }
}

fn unit(parameter: Parameter) -> &'static str {
    match parameter {
        Parameter::RespirationRate | Parameter::Pulse => "/min",
        Parameter::Spo2 => "%",
        Parameter::AirOrOxygen => "L/min O2",
        Parameter::SystolicBp => "mmHg",
        Parameter::Consciousness => "",
        Parameter::Temperature => "°C",
    }
}

fn shown_value(parameter: Parameter, value: f64) -> String {
    match parameter {
        Parameter::Consciousness => Consciousness::from_code(value)
            .map(|c| c.letter().to_owned())
            .unwrap_or_else(|| value.to_string()),
        Parameter::AirOrOxygen if value == 0.0 => "air".to_owned(),
        _ => format!("{value} {}", unit(parameter)),
    }
}

fn minutes(millis: i64) -> String {
    let minutes = millis as f64 / 60_000.0;
    format!("{minutes:.0} min")
}

/// The result as text, one line per parameter.
pub fn render(result: &News2Result) -> String {
    let mut out = String::new();
    let completeness = if result.complete {
        "complete".to_owned()
    } else {
        let names: Vec<_> = result.unscored().map(|p| p.parameter.key()).collect();
        format!(
            "INCOMPLETE (not scored: {}); total and band are a lower bound",
            names.join(", ")
        )
    };
    out.push_str(&format!(
        "NEWS2 {}{} at {}: {} risk ({})\n",
        if result.complete { "" } else { "at least " },
        result.total,
        format_time(result.at),
        result.band.clinical_risk(),
        result.band.key(),
    ));
    out.push_str(&format!("  {completeness}\n"));
    out.push_str(&format!("  response: {}\n", result.band.response()));
    out.push_str(&format!(
        "  SpO2 scale {}: {}\n",
        result.scale.number(),
        result.scale_reason.describe()
    ));
    for p in &result.parameters {
        let name = p.parameter.display();
        let line = match &p.outcome {
            ParameterOutcome::Scored {
                sub_score,
                value,
                charted,
                time,
                metric,
            } => {
                let mut shown = shown_value(p.parameter, *value);
                if charted != value && p.parameter != Parameter::AirOrOxygen {
                    shown.push_str(&format!(" (charted {charted})"));
                }
                format!("{sub_score}  {shown}, {metric} at {}", format_time(*time))
            }
            ParameterOutcome::Missing => "-  missing".to_owned(),
            ParameterOutcome::Stale {
                time,
                age_millis,
                window_millis,
            } => format!(
                "-  stale: last at {}, {} old (window {})",
                format_time(*time),
                minutes(*age_millis),
                minutes(*window_millis)
            ),
            ParameterOutcome::ArtefactOnly { time } => {
                format!(
                    "-  artefact only: last flagged value at {}",
                    format_time(*time)
                )
            }
            ParameterOutcome::Invalid { value, time } => {
                format!("-  invalid value {value} at {}", format_time(*time))
            }
            ParameterOutcome::NeedsAirOrOxygen { value, time } => format!(
                "-  {value}% at {} scores by air or oxygen on scale 2, which is not known",
                format_time(*time)
            ),
        };
        out.push_str(&format!("  {name:<24} {line}\n"));
    }
    out
}

/// The result as JSON (documented in docs/news2.md).
#[derive(Serialize)]
pub struct ResultJson {
    pub at: String,
    pub total: u8,
    pub complete: bool,
    pub band: &'static str,
    pub clinical_risk: &'static str,
    pub response: &'static str,
    pub scale: u8,
    pub scale_reason: &'static str,
    pub scale_reason_text: String,
    pub parameters: Vec<ParameterJson>,
}

#[derive(Serialize)]
pub struct ParameterJson {
    pub parameter: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_score: Option<u8>,
    /// `scored`, `missing`, `stale`, `artefact`, `invalid`, `needs-air-or-oxygen`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub charted: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_minutes: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_minutes: Option<f64>,
}

impl ResultJson {
    pub fn of(result: &News2Result) -> ResultJson {
        ResultJson {
            at: format_time(result.at),
            total: result.total,
            complete: result.complete,
            band: result.band.key(),
            clinical_risk: result.band.clinical_risk(),
            response: result.band.response(),
            scale: result.scale.number(),
            scale_reason: scale_reason_key(&result.scale_reason),
            scale_reason_text: result.scale_reason.describe(),
            parameters: result
                .parameters
                .iter()
                .map(|p| {
                    let mut json = ParameterJson {
                        parameter: p.parameter.key(),
                        sub_score: p.outcome.sub_score(),
                        status: p.outcome.reason_key().unwrap_or("scored"),
                        value: None,
                        charted: None,
                        metric: None,
                        time: None,
                        age_minutes: None,
                        window_minutes: None,
                    };
                    match &p.outcome {
                        ParameterOutcome::Scored {
                            value,
                            charted,
                            time,
                            metric,
                            ..
                        } => {
                            json.value = Some(*value);
                            json.charted = Some(*charted);
                            json.metric = Some(metric.clone());
                            json.time = Some(format_time(*time));
                        }
                        ParameterOutcome::Stale {
                            time,
                            age_millis,
                            window_millis,
                        } => {
                            json.time = Some(format_time(*time));
                            json.age_minutes = Some(*age_millis as f64 / 60_000.0);
                            json.window_minutes = Some(*window_millis as f64 / 60_000.0);
                        }
                        ParameterOutcome::ArtefactOnly { time } => {
                            json.time = Some(format_time(*time))
                        }
                        ParameterOutcome::Invalid { value, time }
                        | ParameterOutcome::NeedsAirOrOxygen { value, time } => {
                            json.value = Some(*value);
                            json.time = Some(format_time(*time));
                        }
                        ParameterOutcome::Missing => {}
                    }
                    json
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times_round_trip() {
        for text in [
            "1970-01-01T00:00:00Z",
            "2026-01-01T08:00:00Z",
            "2024-02-29T23:59:59.500Z",
        ] {
            let time = parse_utc(text).unwrap();
            assert_eq!(format_time(time), text);
        }
        assert_eq!(
            parse_utc("2026-01-01T08:00Z"),
            parse_utc("2026-01-01T08:00:00Z")
        );
        assert_eq!(
            parse_utc("2026-01-01T00:00:00Z").unwrap().millis(),
            1_767_225_600_000
        );
        for bad in [
            "2026-01-01 08:00:00",
            "2026-01-01T08:00:00+01:00",
            "2026-13-01T00:00Z",
        ] {
            assert!(parse_utc(bad).is_none(), "{bad}");
        }
    }
}
