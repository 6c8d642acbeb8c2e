//! `metaward test-rules FILE|DIR...`: replays rules files (a timeline of vitals and record
//! context with expected results at given minutes) through the clinical crate and reports every
//! expectation that is not met, exiting non-zero if any is not. The format is documented in
//! docs/news2.md; the shipped suite is `rules/news2/`.
//!
//! The timeline goes through `clinical::watch::ClinicalWatch`, the code the server runs: vitals
//! arrive as a bedside monitor's messages for one patient, room values as a room sensor's,
//! and steps can also take devices offline, report batteries, send from an unassociated
//! device, acknowledge and silence alarms. An expectation is about the NEWS2 result and/or the
//! exact set of active alarms. An unknown field is an error, so a file written for a later
//! version can never pass by being half read.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use clinical::alarms::{Alarm, AlarmConfig, AlarmEngine, Priority};
use clinical::watch::{ClinicalWatch, Measured};
use clinical::{Band, News2Result, Parameter};
use model::{Catalog, DeviceId, Observation, ObservedValue, PatientId, Quality, RoomId, Timestamp};
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
    /// Values a room sensor measured in the room at this minute, by catalog metric key.
    #[serde(default)]
    pub room_vitals: BTreeMap<String, f64>,
    /// Devices that went silent (the monitor is `monitor`) or came back at this minute.
    #[serde(default)]
    pub devices_offline: Vec<String>,
    #[serde(default)]
    pub devices_online: Vec<String>,
    /// Battery levels (percent) reported by devices worn by the patient, by device.
    #[serde(default)]
    pub battery: BTreeMap<String, f64>,
    /// Devices associated with no one that sent a value at this minute.
    #[serde(default)]
    pub unassociated: Vec<String>,
    #[serde(default)]
    pub acknowledge: Vec<Acknowledge>,
    #[serde(default)]
    pub silence: Vec<SilenceStep>,
    /// What the result must be at this minute, after this step's vitals and context.
    pub expect: Option<Expect>,
}

/// Acknowledge the active alarm `alarm` (`kind:condition`, e.g. `score:news2`).
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Acknowledge {
    pub alarm: String,
    pub by: String,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct SilenceStep {
    pub alarm: String,
    pub by: String,
    pub reason: String,
    pub minutes: f64,
}

/// One active alarm, as expected.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct ExpectedAlarm {
    /// `kind:condition`: `physiological:spo2`, `environmental:room_co2`, `score:news2`,
    /// `technical:device_offline`, ...
    pub alarm: String,
    /// `patient`, `room`, or `device:ID` (default: whatever it is about).
    pub subject: Option<String>,
    /// `low`, `medium`, `high`.
    pub priority: Option<String>,
    /// `raised`, `delivered`, `escalated`, `acknowledged`.
    pub state: Option<String>,
    pub latched: Option<bool>,
    /// `low` or `high`, for limit alarms.
    pub side: Option<String>,
    pub silenced: Option<bool>,
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
    /// The exact set of active alarms at this minute (`[]`: none).
    pub alarms: Option<Vec<ExpectedAlarm>>,
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

/// The one patient, room and bedside monitor of a rules file.
const PATIENT: &str = "patient";
const ROOM: &str = "room";
const MONITOR: &str = "monitor";
const ROOM_SENSOR: &str = "room-sensor";

pub fn run_rules(file: &RulesFile) -> anyhow::Result<FileOutcome> {
    let patient = PatientId::new(PATIENT);
    let room = RoomId::new(ROOM);
    let mut watch = ClinicalWatch::new(
        AlarmEngine::new(AlarmConfig::default()),
        config_with(&file.freshness_minutes)?,
    );
    watch.set_context(&patient, file.context.to_context().context("context")?);
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
        // Time passes first (escalations, silences ending, scores growing stale).
        watch.tick(now);
        apply_step(&mut watch, step, &patient, &room, now).with_context(|| label.clone())?;
        if let Some(expect) = &step.expect {
            let result = watch.news2_at(&patient, now);
            let (mut checked, mut failures) =
                check(expect, &result).with_context(|| format!("{label}: expect"))?;
            if let Some(alarms) = &expect.alarms {
                checked += 1;
                let active: Vec<&Alarm> = watch.alarms.active();
                if let Some(difference) = compare_alarms(alarms, &active)
                    .with_context(|| format!("{label}: expect.alarms"))?
                {
                    failures.push(difference);
                }
            }
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

/// Feeds one step to the watch, the way the server would: one message per device.
fn apply_step(
    watch: &mut ClinicalWatch,
    step: &Step,
    patient: &PatientId,
    room: &RoomId,
    now: Timestamp,
) -> anyhow::Result<()> {
    for flagged in &step.artefacts {
        if !step.vitals.contains_key(flagged) {
            bail!("artefact `{flagged}` is not among this step's vitals");
        }
    }
    let mut monitor_values = Vec::new();
    for (metric, value) in &step.vitals {
        let artefact = step.artefacts.contains(metric);
        let input = to_input(metric, value, now, artefact).context("vitals")?;
        let metric = canonical_metric(input.parameter, metric);
        monitor_values.push(observation(
            MONITOR,
            &metric,
            input.value,
            now,
            input.quality,
        ));
    }
    send(watch, MONITOR, &monitor_values, Some(patient), None, now);
    let mut room_values = Vec::new();
    for (metric, value) in &step.room_vitals {
        if Catalog::embedded().by_key(metric).is_none() {
            bail!("room metric `{metric}` is not in the catalog");
        }
        room_values.push(observation(ROOM_SENSOR, metric, *value, now, Quality::GOOD));
    }
    send(watch, ROOM_SENSOR, &room_values, None, Some(room), now);
    for (device, percent) in &step.battery {
        let battery = [observation(device, "battery", *percent, now, Quality::GOOD)];
        send(watch, device, &battery, Some(patient), None, now);
    }
    for device in &step.unassociated {
        let value = [observation(device, "spo2", 97.0, now, Quality::GOOD)];
        send(watch, device, &value, None, None, now);
    }
    for device in &step.devices_offline {
        watch.device_online(&DeviceId::new(device), false, now);
    }
    for device in &step.devices_online {
        watch.device_online(&DeviceId::new(device), true, now);
    }
    if let Some(context) = &step.context {
        watch.set_context(patient, context.to_context().context("context")?);
        watch.tick(now);
    }
    for acknowledge in &step.acknowledge {
        let id = active_alarm(watch, &acknowledge.alarm)?;
        watch
            .alarms
            .acknowledge(id, &acknowledge.by, now)
            .with_context(|| format!("acknowledging {}", acknowledge.alarm))?;
    }
    for silence in &step.silence {
        let id = active_alarm(watch, &silence.alarm)?;
        let duration_ms = (silence.minutes * 60_000.0).round() as i64;
        watch
            .alarms
            .silence(id, &silence.by, &silence.reason, duration_ms, now)
            .with_context(|| format!("silencing {}", silence.alarm))?;
    }
    Ok(())
}

fn send(
    watch: &mut ClinicalWatch,
    device: &str,
    observations: &[Observation],
    patient: Option<&PatientId>,
    room: Option<&RoomId>,
    now: Timestamp,
) {
    if observations.is_empty() {
        return;
    }
    let measured: Vec<Measured> = observations
        .iter()
        .map(|observation| Measured {
            observation,
            patient,
            room,
            unassociated: patient.is_none() && room.is_none(),
        })
        .collect();
    watch.message(&DeviceId::new(device), now, &measured);
}

fn observation(
    device: &str,
    metric: &str,
    value: f64,
    time: Timestamp,
    quality: Quality,
) -> Observation {
    Observation {
        device_id: DeviceId::new(device),
        metric: metric.to_owned(),
        value: ObservedValue::Numeric(value),
        device_time: time,
        received_time: time,
        body_site: None,
        quality,
        reference_range: None,
    }
}

/// Vitals may be named by NEWS2 parameter (`pulse`); devices send catalog metrics, so such a
/// value is sent as the first catalog metric feeding that parameter.
fn canonical_metric(parameter: Parameter, given: &str) -> String {
    let catalog = Catalog::embedded();
    if catalog.by_key(given).is_some() {
        return given.to_owned();
    }
    catalog
        .metrics()
        .iter()
        .find(|m| m.news2.as_deref() == Some(parameter.key()))
        .map_or_else(|| given.to_owned(), |m| m.key.clone())
}

/// `kind:condition` of an alarm, as rules files name them.
fn alarm_key(alarm: &Alarm) -> String {
    let (kind, condition, _) = alarm.condition.parts();
    format!("{kind}:{condition}")
}

fn active_alarm(watch: &ClinicalWatch, key: &str) -> anyhow::Result<u64> {
    let matching: Vec<u64> = watch
        .alarms
        .active()
        .into_iter()
        .filter(|alarm| alarm_key(alarm) == key)
        .map(|alarm| alarm.id)
        .collect();
    match matching[..] {
        [id] => Ok(id),
        [] => bail!("no active alarm `{key}`"),
        _ => bail!("more than one active alarm `{key}`; name one condition per subject"),
    }
}

fn subject_text(alarm: &Alarm) -> String {
    let (kind, id) = alarm.subject.parts();
    match kind {
        "device" => format!("device:{id}"),
        other => other.to_owned(),
    }
}

fn describe(alarm: &Alarm) -> String {
    let side = alarm
        .condition
        .parts()
        .2
        .map(|s| format!(" {}", s.key()))
        .unwrap_or_default();
    format!(
        "{} ({}{}, {}, {}{}{})",
        alarm_key(alarm),
        subject_text(alarm),
        side,
        alarm.priority.key(),
        alarm.state(),
        if alarm.latched { ", latched" } else { "" },
        if alarm.silenced.is_some() {
            ", silenced"
        } else {
            ""
        },
    )
}

/// The active alarms must be exactly the expected ones, each as described.
fn compare_alarms(expected: &[ExpectedAlarm], active: &[&Alarm]) -> anyhow::Result<Option<String>> {
    for want in expected {
        if let Some(priority) = &want.priority
            && Priority::from_key(priority).is_none()
        {
            bail!("unknown priority `{priority}` (low, medium, high)");
        }
    }
    let matches = |want: &ExpectedAlarm, alarm: &Alarm| {
        alarm_key(alarm) == want.alarm
            && want
                .subject
                .as_ref()
                .is_none_or(|s| *s == subject_text(alarm))
            && want
                .priority
                .as_ref()
                .is_none_or(|p| p == alarm.priority.key())
            && want.state.as_ref().is_none_or(|s| s == alarm.state())
            && want.latched.is_none_or(|l| l == alarm.latched)
            && want.silenced.is_none_or(|s| s == alarm.silenced.is_some())
            && want.side.as_ref().is_none_or(|side| {
                alarm.condition.parts().2.map(|s| s.key()) == Some(side.as_str())
            })
    };
    let mut unmatched: Vec<&Alarm> = active.to_vec();
    let mut missing = Vec::new();
    for want in expected {
        match unmatched.iter().position(|alarm| matches(want, alarm)) {
            Some(found) => {
                unmatched.remove(found);
            }
            None => missing.push(want.alarm.clone()),
        }
    }
    if missing.is_empty() && unmatched.is_empty() {
        return Ok(None);
    }
    let active: Vec<String> = active.iter().map(|a| describe(a)).collect();
    Ok(Some(format!(
        "alarms: expected {} as described, missing {:?}, unexpected {:?}; active: [{}]",
        expected.len(),
        missing,
        unmatched.iter().map(|a| alarm_key(a)).collect::<Vec<_>>(),
        active.join("; ")
    )))
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
