//! `metaward test-rules FILE|DIR...`: replays rules files (a timeline of vitals and record
//! context with expected results at given minutes) through the clinical crate and reports every
//! expectation that is not met, exiting non-zero if any is not. The format is documented in
//! docs/news2.md; the shipped suite is `rules/news2/`.
//!
//! Today an expectation is about the NEWS2 result. Alarm expectations will be added as new
//! fields of `expect` (or a new entry kind); until then an unknown field is an error, so a file
//! written for a later version can never pass by being half read.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use clinical::{Band, News2Calculator, News2Input, News2Result, Parameter, RecordContext};
use model::Timestamp;
use serde::Deserialize;

use crate::score::{ContextJson, ValueJson, config_with, scale_reason_key, to_input};

#[derive(Args, Debug)]
pub struct TestRulesArgs {
    /// Rules files (`.toml`), or folders holding them
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

/// Minute 0 of every rules file: 2026-01-01T00:00:00Z. Only differences in time matter.
const START_MILLIS: i64 = 1_767_225_600_000;

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RulesFile {
    pub description: String,
    /// Freshness windows overriding the defaults, in minutes, by NEWS2 parameter key.
    #[serde(default)]
    pub freshness_minutes: BTreeMap<String, f64>,
    /// The record context from minute 0.
    #[serde(default)]
    pub context: ContextJson,
    #[serde(default)]
    pub step: Vec<Step>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Minutes since the start; steps go forward in time (equal minutes are applied in order).
    pub minute: f64,
    /// Values measured at this minute, by catalog metric key or NEWS2 parameter key.
    #[serde(default)]
    pub vitals: BTreeMap<String, ValueJson>,
    /// Which of this step's vitals the device flagged as artefacts.
    #[serde(default)]
    pub artefacts: Vec<String>,
    /// The record context from this minute on (replaces the previous one).
    pub context: Option<ContextJson>,
    /// What the result must be at this minute, after this step's vitals and context.
    pub expect: Option<Expect>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub total: Option<u8>,
    /// `zero`, `low`, `low-medium`, `medium`, `high`.
    pub band: Option<String>,
    pub complete: Option<bool>,
    /// 1 or 2.
    pub scale: Option<u8>,
    /// `target-prescribed`, `other-target-prescribed`, `hypercapnic-diagnosis`, `none`.
    pub scale_reason: Option<String>,
    /// Sub-scores by NEWS2 parameter key; each must be scored with this sub-score.
    #[serde(default)]
    pub sub_scores: BTreeMap<String, u8>,
    /// Parameters that must not be scored, with the reason: `missing`, `stale`, `artefact`,
    /// `invalid`, `needs-air-or-oxygen`.
    #[serde(default)]
    pub unscored: BTreeMap<String, String>,
}

/// What one file gave.
#[derive(Debug, Default)]
pub struct FileOutcome {
    pub description: String,
    pub expectations: usize,
    pub failures: Vec<String>,
}

pub fn run(args: TestRulesArgs) -> anyhow::Result<()> {
    let files = expand(&args.paths)?;
    let mut total_expectations = 0;
    let mut total_failures = 0;
    for file in &files {
        let outcome = run_file(file).with_context(|| format!("{}", file.display()))?;
        total_expectations += outcome.expectations;
        total_failures += outcome.failures.len();
        if outcome.failures.is_empty() {
            println!(
                "ok    {}: {} expectations met",
                file.display(),
                outcome.expectations
            );
        } else {
            println!(
                "FAIL  {}: {} of {} expectations not met",
                file.display(),
                outcome.failures.len(),
                outcome.expectations
            );
            println!("  ({})", outcome.description.trim());
            for failure in &outcome.failures {
                println!("{failure}");
            }
        }
    }
    println!(
        "{} files, {} expectations, {} not met",
        files.len(),
        total_expectations,
        total_failures
    );
    if total_failures > 0 {
        bail!("{total_failures} rules expectations not met");
    }
    Ok(())
}

/// Files as given, and the `.toml` files of folders (sorted, not recursive).
fn expand(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut inside: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("reading {}", path.display()))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                .collect();
            inside.sort();
            if inside.is_empty() {
                bail!("{} holds no .toml rules files", path.display());
            }
            files.extend(inside);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

pub fn run_file(path: &Path) -> anyhow::Result<FileOutcome> {
    let text = std::fs::read_to_string(path).context("reading")?;
    let file: RulesFile = toml::from_str(&text).context("parsing")?;
    run_rules(&file)
}

pub fn run_rules(file: &RulesFile) -> anyhow::Result<FileOutcome> {
    let calculator = News2Calculator::new(config_with(&file.freshness_minutes)?);
    let mut context: RecordContext = file.context.to_context().context("context")?;
    let mut inputs: Vec<News2Input> = Vec::new();
    let mut outcome = FileOutcome {
        description: file.description.clone(),
        ..FileOutcome::default()
    };
    let mut previous_minute = f64::NEG_INFINITY;
    for (index, step) in file.step.iter().enumerate() {
        let label = format!("step {} (minute {})", index + 1, step.minute);
        if !step.minute.is_finite() || step.minute < previous_minute {
            bail!("{label}: steps must go forward in time");
        }
        previous_minute = step.minute;
        let now = Timestamp::from_millis(START_MILLIS + (step.minute * 60_000.0).round() as i64);
        for flagged in &step.artefacts {
            if !step.vitals.contains_key(flagged) {
                bail!("{label}: artefact `{flagged}` is not among this step's vitals");
            }
        }
        for (metric, value) in &step.vitals {
            let artefact = step.artefacts.contains(metric);
            let input = to_input(metric, value, now, artefact)
                .with_context(|| format!("{label}: vitals"))?;
            inputs.push(input);
        }
        if let Some(new_context) = &step.context {
            context = new_context
                .to_context()
                .with_context(|| format!("{label}: context"))?;
        }
        if let Some(expect) = &step.expect {
            let result = calculator.score(&inputs, &context, now);
            let (checked, failures) =
                check(expect, &result).with_context(|| format!("{label}: expect"))?;
            if checked == 0 {
                bail!("{label}: an expect entry must expect something");
            }
            outcome.expectations += checked;
            for failure in failures {
                outcome.failures.push(format!("  {label}: {failure}"));
            }
        }
    }
    if outcome.expectations == 0 {
        bail!("the file expects nothing");
    }
    Ok(outcome)
}

/// Compares one expectation with a result: how many things were checked, and every difference.
fn check(expect: &Expect, result: &News2Result) -> anyhow::Result<(usize, Vec<String>)> {
    let mut checked = 0;
    let mut failures = Vec::new();
    let mut compare = |what: &str, expected: String, got: String| {
        checked += 1;
        if expected != got {
            failures.push(format!("{what}: expected {expected}, got {got}"));
        }
    };
    if let Some(total) = expect.total {
        compare("total", total.to_string(), result.total.to_string());
    }
    if let Some(band) = &expect.band {
        if Band::from_key(band).is_none() {
            bail!("unknown band `{band}` (zero, low, low-medium, medium, high)");
        }
        compare("band", band.clone(), result.band.key().to_owned());
    }
    if let Some(complete) = expect.complete {
        compare(
            "complete",
            complete.to_string(),
            result.complete.to_string(),
        );
    }
    if let Some(scale) = expect.scale {
        compare(
            "scale",
            scale.to_string(),
            result.scale.number().to_string(),
        );
    }
    if let Some(reason) = &expect.scale_reason {
        compare(
            "scale_reason",
            reason.clone(),
            scale_reason_key(&result.scale_reason).to_owned(),
        );
    }
    for (key, expected) in &expect.sub_scores {
        let parameter =
            Parameter::from_key(key).with_context(|| format!("unknown NEWS2 parameter `{key}`"))?;
        let outcome = result.parameter(parameter);
        let got = match outcome {
            clinical::ParameterOutcome::Scored {
                sub_score,
                value,
                charted,
                ..
            } => {
                let mut got = sub_score.to_string();
                if *sub_score != *expected {
                    let _ = write!(got, " (value {value}, charted {charted})");
                }
                got
            }
            other => format!("not scored ({})", other.reason_key().unwrap_or("?")),
        };
        compare(&format!("{key} sub-score"), expected.to_string(), got);
    }
    for (key, expected) in &expect.unscored {
        let parameter =
            Parameter::from_key(key).with_context(|| format!("unknown NEWS2 parameter `{key}`"))?;
        let outcome = result.parameter(parameter);
        let got = match outcome.reason_key() {
            Some(reason) => reason.to_owned(),
            None => format!("scored {}", outcome.sub_score().unwrap_or(0)),
        };
        compare(&format!("{key} unscored"), expected.clone(), got);
    }
    Ok((checked, failures))
}
