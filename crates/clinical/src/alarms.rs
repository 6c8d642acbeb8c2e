//! Alarms, with the lifecycle of the IHE Alarm Communication Management (ACM) model: raised,
//! delivered, acknowledged (who, when), escalated when no one acknowledges in time, resolved;
//! latched and non-latched; silenced with a reason for a bounded time.
//!
//! Four kinds feed it: physiological (a value beyond a limit for longer than the alarm-condition
//! delay; limits per metric with patient-specific overrides), score (a NEWS2 band), technical
//! (device offline, artefact, low battery, unassociated device sending data) and environmental
//! (a room value beyond its range for longer than its delay).
//!
//! Invariant: no alarm is ever dropped or merged away. At most one alarm is active per subject
//! and condition; a worse value raises that alarm's priority, it never replaces the alarm.
//! Every transition is returned as an [`AlarmEvent`] for the caller to store and stream.
//! Like the rest of the core, this does no I/O and takes time as an input.

use std::collections::{BTreeMap, HashMap};

use model::{DeviceId, PatientId, RoomId, Timestamp};
use serde::Deserialize;

/// Alarm priority, as IEC 60601-1-8 names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    Medium,
    High,
}

impl Priority {
    pub const ALL: [Priority; 3] = [Priority::Low, Priority::Medium, Priority::High];

    pub fn key(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Medium => "medium",
            Priority::High => "high",
        }
    }

    pub fn from_key(key: &str) -> Option<Priority> {
        Priority::ALL.into_iter().find(|p| p.key() == key)
    }
}

/// Whom or what an alarm is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AlarmSubject {
    Patient(PatientId),
    Room(RoomId),
    Device(DeviceId),
}

/// Which side of a limit a value is beyond.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LimitSide {
    Low,
    High,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TechnicalCondition {
    DeviceOffline,
    /// The device flags what it measures as unreliable (probe off, leads off, artefact).
    Artefact,
    LowBattery,
    UnassociatedDevice,
}

impl TechnicalCondition {
    pub const ALL: [TechnicalCondition; 4] = [
        TechnicalCondition::DeviceOffline,
        TechnicalCondition::Artefact,
        TechnicalCondition::LowBattery,
        TechnicalCondition::UnassociatedDevice,
    ];

    pub fn from_key(key: &str) -> Option<TechnicalCondition> {
        TechnicalCondition::ALL.into_iter().find(|c| c.key() == key)
    }

    pub fn key(self) -> &'static str {
        match self {
            TechnicalCondition::DeviceOffline => "device_offline",
            TechnicalCondition::Artefact => "artefact",
            TechnicalCondition::LowBattery => "low_battery",
            TechnicalCondition::UnassociatedDevice => "unassociated_device",
        }
    }
}

/// What an alarm is about, beyond its subject. Together they identify an alarm condition.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AlarmCondition {
    Physiological { metric: String, side: LimitSide },
    Environmental { metric: String, side: LimitSide },
    Score { score: String },
    Technical(TechnicalCondition),
}

impl LimitSide {
    pub fn key(self) -> &'static str {
        match self {
            LimitSide::Low => "low",
            LimitSide::High => "high",
        }
    }

    pub fn from_key(key: &str) -> Option<LimitSide> {
        match key {
            "low" => Some(LimitSide::Low),
            "high" => Some(LimitSide::High),
            _ => None,
        }
    }
}

impl AlarmSubject {
    /// `patient`, `room` or `device`, with the id: as stored and served.
    pub fn parts(&self) -> (&'static str, &str) {
        match self {
            AlarmSubject::Patient(id) => ("patient", id.as_str()),
            AlarmSubject::Room(id) => ("room", id.as_str()),
            AlarmSubject::Device(id) => ("device", id.as_str()),
        }
    }

    pub fn from_parts(kind: &str, id: &str) -> Option<AlarmSubject> {
        match kind {
            "patient" => Some(AlarmSubject::Patient(id.into())),
            "room" => Some(AlarmSubject::Room(id.into())),
            "device" => Some(AlarmSubject::Device(id.into())),
            _ => None,
        }
    }
}

impl AlarmCondition {
    /// (kind, the metric, score or technical condition, the side of a limit): as stored and served.
    pub fn parts(&self) -> (&'static str, &str, Option<LimitSide>) {
        match self {
            AlarmCondition::Physiological { metric, side } => {
                ("physiological", metric.as_str(), Some(*side))
            }
            AlarmCondition::Environmental { metric, side } => {
                ("environmental", metric.as_str(), Some(*side))
            }
            AlarmCondition::Score { score } => ("score", score.as_str(), None),
            AlarmCondition::Technical(condition) => ("technical", condition.key(), None),
        }
    }

    pub fn from_parts(kind: &str, what: &str, side: Option<LimitSide>) -> Option<AlarmCondition> {
        match (kind, side) {
            ("physiological", Some(side)) => Some(AlarmCondition::Physiological {
                metric: what.to_owned(),
                side,
            }),
            ("environmental", Some(side)) => Some(AlarmCondition::Environmental {
                metric: what.to_owned(),
                side,
            }),
            ("score", None) => Some(AlarmCondition::Score {
                score: what.to_owned(),
            }),
            ("technical", None) => {
                TechnicalCondition::from_key(what).map(AlarmCondition::Technical)
            }
            _ => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            AlarmCondition::Physiological { .. } => "physiological",
            AlarmCondition::Environmental { .. } => "environmental",
            AlarmCondition::Score { .. } => "score",
            AlarmCondition::Technical(_) => "technical",
        }
    }
}

/// Whether the condition behind an alarm is still there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    Present,
    Cleared(Timestamp),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Silence {
    pub by: String,
    pub reason: String,
    pub until: Timestamp,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Alarm {
    pub id: u64,
    pub subject: AlarmSubject,
    pub condition: AlarmCondition,
    pub priority: Priority,
    pub latched: bool,
    /// A line for people: what is wrong, with the value and limit.
    pub message: String,
    pub raised_at: Timestamp,
    /// The value that raised it, and the latest value while it lasts (physiological,
    /// environmental, battery); the limit it is beyond.
    pub value: Option<f64>,
    pub limit: Option<f64>,
    pub presence: Presence,
    pub delivered_at: Option<Timestamp>,
    pub acknowledged: Option<(String, Timestamp)>,
    pub escalations: u32,
    pub last_escalated_at: Option<Timestamp>,
    pub silenced: Option<Silence>,
    pub resolved_at: Option<Timestamp>,
}

impl Alarm {
    pub fn is_active(&self) -> bool {
        self.resolved_at.is_none()
    }

    /// The ACM state, as served: the furthest point in the lifecycle reached.
    pub fn state(&self) -> &'static str {
        if self.resolved_at.is_some() {
            "resolved"
        } else if self.acknowledged.is_some() {
            "acknowledged"
        } else if self.escalations > 0 {
            "escalated"
        } else if self.delivered_at.is_some() {
            "delivered"
        } else {
            "raised"
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Transition {
    Raised,
    PriorityChanged {
        from: Priority,
    },
    Delivered,
    Acknowledged,
    Escalated,
    Silenced,
    SilenceEnded,
    /// The condition went away; a latched alarm stays until acknowledged.
    ConditionCleared,
    /// The condition came back before a latched alarm was acknowledged.
    ConditionReturned,
    Resolved,
}

impl Transition {
    pub fn key(&self) -> &'static str {
        match self {
            Transition::Raised => "raised",
            Transition::PriorityChanged { .. } => "priority_changed",
            Transition::Delivered => "delivered",
            Transition::Acknowledged => "acknowledged",
            Transition::Escalated => "escalated",
            Transition::Silenced => "silenced",
            Transition::SilenceEnded => "silence_ended",
            Transition::ConditionCleared => "condition_cleared",
            Transition::ConditionReturned => "condition_returned",
            Transition::Resolved => "resolved",
        }
    }
}

/// One step in an alarm's history, with the alarm as it is after the step.
#[derive(Clone, Debug, PartialEq)]
pub struct AlarmEvent {
    pub at: Timestamp,
    pub transition: Transition,
    /// Who did it, for acknowledgments and silences.
    pub by: Option<String>,
    pub alarm: Alarm,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AlarmError {
    #[error("no alarm {0}")]
    NotFound(u64),
    #[error("alarm {0} is resolved")]
    Resolved(u64),
    #[error("alarm {0} is already acknowledged")]
    AlreadyAcknowledged(u64),
    #[error("a silence must last between 1 ms and {max_ms} ms, not {asked_ms} ms")]
    SilenceTooLong { asked_ms: i64, max_ms: i64 },
    #[error("a silence needs a reason")]
    SilenceWithoutReason,
    #[error("alarm limits do not parse: {0}")]
    Config(String),
}

// ----- configuration -------------------------------------------------------------------------

/// One tier of a limit: at or beyond `at`, an alarm of `priority`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitTier {
    pub at: f64,
    pub priority: Priority,
}

/// The limits of one metric: tiers below (`low`, "at or below") and above (`high`, "at or above").
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricLimits {
    pub metric: String,
    #[serde(default)]
    pub low: Vec<LimitTier>,
    #[serde(default)]
    pub high: Vec<LimitTier>,
}

impl MetricLimits {
    /// The worst tier `value` is at or beyond, on either side.
    fn breach(&self, value: f64) -> Option<(LimitSide, &LimitTier)> {
        worst_tier(&self.low, LimitSide::Low, value)
            .or_else(|| worst_tier(&self.high, LimitSide::High, value))
    }
}

/// The highest-priority tier of one side that `value` is at or beyond.
fn worst_tier(tiers: &[LimitTier], side: LimitSide, value: f64) -> Option<(LimitSide, &LimitTier)> {
    tiers
        .iter()
        .filter(|tier| match side {
            LimitSide::Low => value <= tier.at,
            LimitSide::High => value >= tier.at,
        })
        .max_by_key(|tier| tier.priority)
        .map(|tier| (side, tier))
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSet {
    pub delay_ms: i64,
    #[serde(default, rename = "limit")]
    pub limits: Vec<MetricLimits>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TechnicalConfig {
    pub offline_priority: Priority,
    pub low_battery_percent: f64,
    pub low_battery_priority: Priority,
    pub artefact_priority: Priority,
    pub unassociated_priority: Priority,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalateAfter {
    pub low: i64,
    pub medium: i64,
    pub high: i64,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleConfig {
    pub escalate_after_ms: EscalateAfter,
    pub max_escalations: u32,
    pub max_silence_ms: i64,
    pub latch_high_priority: bool,
    pub latch_score: bool,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmConfig {
    pub physiological: LimitSet,
    pub environmental: LimitSet,
    pub technical: TechnicalConfig,
    pub lifecycle: LifecycleConfig,
}

const DEFAULT_LIMITS: &str = include_str!("../data/alarm_limits.toml");

impl AlarmConfig {
    pub fn from_toml(text: &str) -> Result<AlarmConfig, AlarmError> {
        toml::from_str(text).map_err(|error| AlarmError::Config(error.to_string()))
    }
}

impl Default for AlarmConfig {
    /// The shipped defaults, `data/alarm_limits.toml`.
    fn default() -> Self {
        AlarmConfig::from_toml(DEFAULT_LIMITS).expect("the shipped alarm limits parse")
    }
}

// ----- the engine ----------------------------------------------------------------------------

/// A value beyond a limit, waiting out the alarm-condition delay.
#[derive(Clone, Copy, Debug)]
struct Beyond {
    side: LimitSide,
    since: Timestamp,
}

#[derive(Debug)]
pub struct AlarmEngine {
    config: AlarmConfig,
    /// Patient-specific limits, replacing the default limits of a metric for that patient.
    overrides: HashMap<PatientId, HashMap<String, MetricLimits>>,
    alarms: BTreeMap<u64, Alarm>,
    active: HashMap<(AlarmSubject, AlarmCondition), u64>,
    beyond: HashMap<(AlarmSubject, String), Beyond>,
    next_id: u64,
}

impl Default for AlarmEngine {
    fn default() -> Self {
        AlarmEngine::new(AlarmConfig::default())
    }
}

impl AlarmEngine {
    pub fn new(config: AlarmConfig) -> AlarmEngine {
        AlarmEngine {
            config,
            overrides: HashMap::new(),
            alarms: BTreeMap::new(),
            active: HashMap::new(),
            beyond: HashMap::new(),
            next_id: 1,
        }
    }

    pub fn config(&self) -> &AlarmConfig {
        &self.config
    }

    /// Takes back the alarms that were active before a restart, and goes on numbering after
    /// `max_id`. Values waiting out an alarm-condition delay start waiting again.
    pub fn restore(&mut self, active: impl IntoIterator<Item = Alarm>, max_id: u64) {
        for alarm in active.into_iter().filter(Alarm::is_active) {
            let key = (alarm.subject.clone(), alarm.condition.clone());
            self.active.insert(key, alarm.id);
            self.next_id = self.next_id.max(alarm.id + 1);
            self.alarms.insert(alarm.id, alarm);
        }
        self.next_id = self.next_id.max(max_id + 1);
    }

    /// Sets (or with `None` removes) a patient's own limits for one metric.
    pub fn set_patient_limits(
        &mut self,
        patient: &PatientId,
        metric: &str,
        limits: Option<MetricLimits>,
    ) {
        let patient_overrides = self.overrides.entry(patient.clone()).or_default();
        match limits {
            Some(limits) => {
                patient_overrides.insert(metric.to_owned(), limits);
            }
            None => {
                patient_overrides.remove(metric);
            }
        }
    }

    /// The limits in force for a patient's metric: their override, else the default.
    pub fn limits_for(&self, patient: &PatientId, metric: &str) -> Option<&MetricLimits> {
        self.overrides
            .get(patient)
            .and_then(|overrides| overrides.get(metric))
            .or_else(|| {
                self.config
                    .physiological
                    .limits
                    .iter()
                    .find(|l| l.metric == metric)
            })
    }

    pub fn get(&self, id: u64) -> Option<&Alarm> {
        self.alarms.get(&id)
    }

    /// Active alarms, highest priority first, then oldest first.
    pub fn active(&self) -> Vec<&Alarm> {
        let mut active: Vec<&Alarm> = self.active.values().map(|id| &self.alarms[id]).collect();
        active.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then(a.raised_at.cmp(&b.raised_at))
        });
        active
    }

    /// A trusted numeric of a patient (`Patient`) or a room (`Room`). Artefacts never raise or
    /// clear a physiological alarm: they raise a technical one through [`AlarmEngine::artefact`].
    pub fn observe(
        &mut self,
        subject: &AlarmSubject,
        metric: &str,
        value: f64,
        time: Timestamp,
    ) -> Vec<AlarmEvent> {
        let (limits, delay, environmental) = match subject {
            AlarmSubject::Patient(patient) => (
                self.limits_for(patient, metric).cloned(),
                self.config.physiological.delay_ms,
                false,
            ),
            AlarmSubject::Room(_) => (
                self.config
                    .environmental
                    .limits
                    .iter()
                    .find(|l| l.metric == metric)
                    .cloned(),
                self.config.environmental.delay_ms,
                true,
            ),
            AlarmSubject::Device(_) => (None, 0, false),
        };
        let Some(limits) = limits else {
            return Vec::new();
        };
        let condition_of = |side| {
            let metric = metric.to_owned();
            if environmental {
                AlarmCondition::Environmental { metric, side }
            } else {
                AlarmCondition::Physiological { metric, side }
            }
        };
        let key = (subject.clone(), metric.to_owned());
        let mut events = Vec::new();
        let breach = limits
            .breach(value)
            .map(|(side, tier)| (side, tier.clone()));
        // Whatever side is not breached now is cleared.
        for side in [LimitSide::Low, LimitSide::High] {
            if breach.as_ref().is_none_or(|(s, _)| *s != side) {
                events.extend(self.clear(subject, &condition_of(side), time));
            }
        }
        let Some((side, tier)) = breach else {
            self.beyond.remove(&key);
            return events;
        };
        let beyond = match self.beyond.get(&key) {
            Some(held) if held.side == side => *held,
            _ => {
                let started = Beyond { side, since: time };
                self.beyond.insert(key, started);
                started
            }
        };
        if time.since(beyond.since) < delay {
            return events;
        }
        let message = format!(
            "{metric} {value} {} limit {}",
            match side {
                LimitSide::Low => "at or below",
                LimitSide::High => "at or above",
            },
            tier.at
        );
        events.extend(self.raise(
            subject,
            condition_of(side),
            Finding {
                priority: tier.priority,
                message,
                value: Some(value),
                limit: Some(tier.at),
            },
            time,
        ));
        events
    }

    /// A score's alarm priority for a patient: `Some` raises (or re-prioritises) the score
    /// alarm, `None` clears it. The caller maps score bands to priorities (NEWS2: low-medium →
    /// low, medium → medium, high → high). `total` is the score, kept as the alarm's value so a
    /// client can word the alarm in its own language.
    pub fn score(
        &mut self,
        patient: &PatientId,
        score: &str,
        priority: Option<Priority>,
        message: &str,
        total: Option<f64>,
        time: Timestamp,
    ) -> Vec<AlarmEvent> {
        let subject = AlarmSubject::Patient(patient.clone());
        let condition = AlarmCondition::Score {
            score: score.to_owned(),
        };
        match priority {
            Some(priority) => self.raise(
                &subject,
                condition,
                Finding {
                    priority,
                    message: message.to_owned(),
                    value: total,
                    limit: None,
                },
                time,
            ),
            None => self.clear(&subject, &condition, time),
        }
    }

    /// A device went offline (`false`) or came back (`true`).
    pub fn device_online(
        &mut self,
        device: &DeviceId,
        online: bool,
        time: Timestamp,
    ) -> Vec<AlarmEvent> {
        let priority = self.config.technical.offline_priority;
        self.technical(
            device,
            TechnicalCondition::DeviceOffline,
            (!online).then_some(priority),
            "device stopped sending",
            None,
            time,
        )
    }

    /// Whether a device's latest values are flagged as artefacts.
    pub fn artefact(
        &mut self,
        device: &DeviceId,
        flagged: bool,
        time: Timestamp,
    ) -> Vec<AlarmEvent> {
        let priority = self.config.technical.artefact_priority;
        self.technical(
            device,
            TechnicalCondition::Artefact,
            flagged.then_some(priority),
            "device flags its values as unreliable (sensor off or artefact)",
            None,
            time,
        )
    }

    pub fn battery(&mut self, device: &DeviceId, percent: f64, time: Timestamp) -> Vec<AlarmEvent> {
        let technical = &self.config.technical;
        let low = percent <= technical.low_battery_percent;
        let priority = technical.low_battery_priority;
        self.technical(
            device,
            TechnicalCondition::LowBattery,
            low.then_some(priority),
            &format!("battery at {percent}%"),
            Some(percent),
            time,
        )
    }

    /// Whether a device is sending data while associated with no one.
    pub fn unassociated(
        &mut self,
        device: &DeviceId,
        sending: bool,
        time: Timestamp,
    ) -> Vec<AlarmEvent> {
        let priority = self.config.technical.unassociated_priority;
        self.technical(
            device,
            TechnicalCondition::UnassociatedDevice,
            sending.then_some(priority),
            "device sends data but is associated with no bed, patient or room",
            None,
            time,
        )
    }

    fn technical(
        &mut self,
        device: &DeviceId,
        condition: TechnicalCondition,
        priority: Option<Priority>,
        message: &str,
        value: Option<f64>,
        time: Timestamp,
    ) -> Vec<AlarmEvent> {
        let subject = AlarmSubject::Device(device.clone());
        let condition = AlarmCondition::Technical(condition);
        match priority {
            Some(priority) => self.raise(
                &subject,
                condition,
                Finding {
                    priority,
                    message: message.to_owned(),
                    value,
                    limit: None,
                },
                time,
            ),
            None => self.clear(&subject, &condition, time),
        }
    }

    /// The alarm has reached a person (a client displayed it).
    pub fn delivered(&mut self, id: u64, time: Timestamp) -> Result<Vec<AlarmEvent>, AlarmError> {
        let alarm = self.alarms.get_mut(&id).ok_or(AlarmError::NotFound(id))?;
        if alarm.delivered_at.is_some() || alarm.resolved_at.is_some() {
            return Ok(Vec::new());
        }
        alarm.delivered_at = Some(time);
        Ok(vec![event(time, Transition::Delivered, None, alarm)])
    }

    pub fn acknowledge(
        &mut self,
        id: u64,
        by: &str,
        time: Timestamp,
    ) -> Result<Vec<AlarmEvent>, AlarmError> {
        let alarm = self.alarms.get_mut(&id).ok_or(AlarmError::NotFound(id))?;
        if alarm.resolved_at.is_some() {
            return Err(AlarmError::Resolved(id));
        }
        if alarm.acknowledged.is_some() {
            return Err(AlarmError::AlreadyAcknowledged(id));
        }
        alarm.acknowledged = Some((by.to_owned(), time));
        let mut events = vec![event(
            time,
            Transition::Acknowledged,
            Some(by.to_owned()),
            alarm,
        )];
        // A latched alarm whose condition is gone was only waiting for this.
        if matches!(alarm.presence, Presence::Cleared(_)) {
            events.push(self.resolve(id, time));
        }
        Ok(events)
    }

    /// Silences an alarm for `duration_ms` (bounded by the configured maximum), with a reason.
    /// A silenced alarm stays active and in the list, but does not escalate.
    pub fn silence(
        &mut self,
        id: u64,
        by: &str,
        reason: &str,
        duration_ms: i64,
        time: Timestamp,
    ) -> Result<Vec<AlarmEvent>, AlarmError> {
        let max_ms = self.config.lifecycle.max_silence_ms;
        if !(1..=max_ms).contains(&duration_ms) {
            return Err(AlarmError::SilenceTooLong {
                asked_ms: duration_ms,
                max_ms,
            });
        }
        if reason.trim().is_empty() {
            return Err(AlarmError::SilenceWithoutReason);
        }
        let alarm = self.alarms.get_mut(&id).ok_or(AlarmError::NotFound(id))?;
        if alarm.resolved_at.is_some() {
            return Err(AlarmError::Resolved(id));
        }
        alarm.silenced = Some(Silence {
            by: by.to_owned(),
            reason: reason.to_owned(),
            until: time.plus_millis(duration_ms),
        });
        Ok(vec![event(
            time,
            Transition::Silenced,
            Some(by.to_owned()),
            alarm,
        )])
    }

    /// Lets time pass: silences run out, and alarms no one acknowledged escalate.
    pub fn tick(&mut self, now: Timestamp) -> Vec<AlarmEvent> {
        let lifecycle = &self.config.lifecycle;
        let mut events = Vec::new();
        for id in self.active.values() {
            let alarm = self.alarms.get_mut(id).expect("active alarms exist");
            if let Some(silence) = &alarm.silenced
                && now >= silence.until
            {
                alarm.silenced = None;
                events.push(event(now, Transition::SilenceEnded, None, alarm));
            }
            let after = match alarm.priority {
                Priority::Low => lifecycle.escalate_after_ms.low,
                Priority::Medium => lifecycle.escalate_after_ms.medium,
                Priority::High => lifecycle.escalate_after_ms.high,
            };
            let since = alarm.last_escalated_at.unwrap_or(alarm.raised_at);
            if alarm.acknowledged.is_none()
                && alarm.silenced.is_none()
                && alarm.escalations < lifecycle.max_escalations
                && now.since(since) >= after
            {
                alarm.escalations += 1;
                alarm.last_escalated_at = Some(now);
                events.push(event(now, Transition::Escalated, None, alarm));
            }
        }
        events.sort_by_key(|e| e.alarm.id);
        events
    }

    fn raise(
        &mut self,
        subject: &AlarmSubject,
        condition: AlarmCondition,
        finding: Finding,
        time: Timestamp,
    ) -> Vec<AlarmEvent> {
        let Finding {
            priority,
            message,
            value,
            limit,
        } = finding;
        let key = (subject.clone(), condition);
        if let Some(&id) = self.active.get(&key) {
            let alarm = self.alarms.get_mut(&id).expect("active alarms exist");
            let mut events = Vec::new();
            alarm.value = value.or(alarm.value);
            if matches!(alarm.presence, Presence::Cleared(_)) {
                alarm.presence = Presence::Present;
                events.push(event(time, Transition::ConditionReturned, None, alarm));
            }
            if priority > alarm.priority {
                let from = alarm.priority;
                alarm.priority = priority;
                alarm.limit = limit;
                alarm.message = message;
                alarm.latched |=
                    self.config.lifecycle.latch_high_priority && priority == Priority::High;
                events.push(event(
                    time,
                    Transition::PriorityChanged { from },
                    None,
                    alarm,
                ));
            }
            return events;
        }
        let lifecycle = &self.config.lifecycle;
        let latched = (lifecycle.latch_high_priority && priority == Priority::High)
            || (lifecycle.latch_score && matches!(key.1, AlarmCondition::Score { .. }));
        let id = self.next_id;
        self.next_id += 1;
        let alarm = Alarm {
            id,
            subject: key.0.clone(),
            condition: key.1.clone(),
            priority,
            latched,
            message,
            raised_at: time,
            value,
            limit,
            presence: Presence::Present,
            delivered_at: None,
            acknowledged: None,
            escalations: 0,
            last_escalated_at: None,
            silenced: None,
            resolved_at: None,
        };
        let raised = event(time, Transition::Raised, None, &alarm);
        self.alarms.insert(id, alarm);
        self.active.insert(key, id);
        vec![raised]
    }

    /// The condition is gone: a non-latched alarm resolves, a latched one waits for its
    /// acknowledgment (and resolves now if it already has one).
    fn clear(
        &mut self,
        subject: &AlarmSubject,
        condition: &AlarmCondition,
        time: Timestamp,
    ) -> Vec<AlarmEvent> {
        let key = (subject.clone(), condition.clone());
        let Some(&id) = self.active.get(&key) else {
            return Vec::new();
        };
        let alarm = self.alarms.get_mut(&id).expect("active alarms exist");
        if matches!(alarm.presence, Presence::Cleared(_)) {
            return Vec::new();
        }
        alarm.presence = Presence::Cleared(time);
        if alarm.latched && alarm.acknowledged.is_none() {
            return vec![event(time, Transition::ConditionCleared, None, alarm)];
        }
        vec![
            event(time, Transition::ConditionCleared, None, alarm),
            self.resolve(id, time),
        ]
    }

    fn resolve(&mut self, id: u64, time: Timestamp) -> AlarmEvent {
        let alarm = self.alarms.get_mut(&id).expect("alarm exists");
        alarm.resolved_at = Some(time);
        alarm.silenced = None;
        self.active
            .remove(&(alarm.subject.clone(), alarm.condition.clone()));
        event(time, Transition::Resolved, None, alarm)
    }
}

/// What a condition looks like when it raises (or worsens) an alarm.
struct Finding {
    priority: Priority,
    message: String,
    value: Option<f64>,
    limit: Option<f64>,
}

fn event(at: Timestamp, transition: Transition, by: Option<String>, alarm: &Alarm) -> AlarmEvent {
    AlarmEvent {
        at,
        transition,
        by,
        alarm: alarm.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(seconds: i64) -> Timestamp {
        Timestamp(seconds * 1000)
    }

    fn patient() -> AlarmSubject {
        AlarmSubject::Patient("p1".into())
    }

    fn transitions(events: &[AlarmEvent]) -> Vec<&'static str> {
        events.iter().map(|e| e.transition.key()).collect()
    }

    #[test]
    fn the_shipped_limits_parse_and_follow_the_news2_red_and_amber_bands() {
        let config = AlarmConfig::default();
        let spo2 = config
            .physiological
            .limits
            .iter()
            .find(|l| l.metric == "spo2")
            .unwrap();
        // Scale 1: ≤91 scores 3, 92–93 scores 2.
        assert_eq!(spo2.breach(91.0).unwrap().1.priority, Priority::High);
        assert_eq!(spo2.breach(93.0).unwrap().1.priority, Priority::Medium);
        assert!(spo2.breach(94.0).is_none());
        let pulse = config
            .physiological
            .limits
            .iter()
            .find(|l| l.metric == "pulse_rate")
            .unwrap();
        assert!(pulse.breach(110.0).is_none());
        assert_eq!(pulse.breach(111.0).unwrap().1.priority, Priority::Medium);
        assert_eq!(pulse.breach(131.0).unwrap().1.priority, Priority::High);
        assert_eq!(pulse.breach(40.0).unwrap().0, LimitSide::Low);
        assert!(pulse.breach(41.0).is_none());
    }

    #[test]
    fn a_value_must_stay_beyond_the_limit_for_the_delay() {
        let mut engine = AlarmEngine::new(AlarmConfig::default());
        // 10 s delay: beyond at 0 s, back within at 5 s, beyond again at 6 s and 15 s (9 s: not yet).
        assert!(engine.observe(&patient(), "spo2", 92.0, t(0)).is_empty());
        assert!(engine.observe(&patient(), "spo2", 97.0, t(5)).is_empty());
        assert!(engine.observe(&patient(), "spo2", 92.0, t(6)).is_empty());
        assert!(engine.observe(&patient(), "spo2", 93.0, t(15)).is_empty());
        let raised = engine.observe(&patient(), "spo2", 92.0, t(16));
        assert_eq!(transitions(&raised), ["raised"]);
        let alarm = &raised[0].alarm;
        assert_eq!(alarm.priority, Priority::Medium);
        assert!(!alarm.latched, "medium alarms are not latched");
        assert_eq!(alarm.limit, Some(93.0));
        // Worse: the same alarm, now high priority and latched.
        let worse = engine.observe(&patient(), "spo2", 88.0, t(17));
        assert_eq!(transitions(&worse), ["priority_changed"]);
        assert_eq!(worse[0].alarm.id, alarm.id);
        assert!(worse[0].alarm.latched);
        assert_eq!(engine.active().len(), 1);
    }

    #[test]
    fn a_non_latched_alarm_resolves_when_its_condition_clears() {
        let mut engine = AlarmEngine::new(AlarmConfig::default());
        engine.observe(&patient(), "pulse_rate", 115.0, t(0));
        let raised = engine.observe(&patient(), "pulse_rate", 118.0, t(10));
        assert_eq!(transitions(&raised), ["raised"]);
        let cleared = engine.observe(&patient(), "pulse_rate", 90.0, t(20));
        assert_eq!(transitions(&cleared), ["condition_cleared", "resolved"]);
        assert!(engine.active().is_empty());
        assert_eq!(engine.get(raised[0].alarm.id).unwrap().state(), "resolved");
    }

    #[test]
    fn a_latched_alarm_waits_for_its_acknowledgment() {
        let mut engine = AlarmEngine::new(AlarmConfig::default());
        engine.observe(&patient(), "respiration_rate", 7.0, t(0));
        let id = engine.observe(&patient(), "respiration_rate", 6.0, t(10))[0]
            .alarm
            .id;
        assert_eq!(
            transitions(&engine.observe(&patient(), "respiration_rate", 14.0, t(20))),
            ["condition_cleared"]
        );
        assert_eq!(engine.get(id).unwrap().state(), "raised");
        let acked = engine.acknowledge(id, "nurse.li", t(30)).unwrap();
        assert_eq!(transitions(&acked), ["acknowledged", "resolved"]);
        assert_eq!(
            acked[0].alarm.acknowledged,
            Some(("nurse.li".to_owned(), t(30)))
        );
        assert_eq!(
            engine.acknowledge(id, "nurse.li", t(31)),
            Err(AlarmError::Resolved(id))
        );
    }

    #[test]
    fn an_unacknowledged_alarm_escalates_until_acknowledged_and_silence_pauses_it() {
        let mut engine = AlarmEngine::new(AlarmConfig::default());
        // High priority escalates after 60 s, at most three times.
        let id = engine.score(
            &"p1".into(),
            "news2",
            Some(Priority::High),
            "NEWS2 7",
            Some(7.0),
            t(0),
        )[0]
        .alarm
        .id;
        assert!(engine.tick(t(59)).is_empty());
        assert_eq!(transitions(&engine.tick(t(60))), ["escalated"]);
        assert!(engine.tick(t(119)).is_empty());
        assert_eq!(transitions(&engine.tick(t(120))), ["escalated"]);
        // Silenced for 2 minutes: no escalation meanwhile; then the silence ends.
        engine
            .silence(id, "dr.wang", "patient being examined", 120_000, t(130))
            .unwrap();
        assert!(engine.tick(t(200)).is_empty());
        assert_eq!(
            transitions(&engine.tick(t(250))),
            ["silence_ended", "escalated"]
        );
        assert!(engine.tick(t(400)).is_empty(), "at most three escalations");
        assert_eq!(engine.get(id).unwrap().escalations, 3);
        assert_eq!(engine.get(id).unwrap().state(), "escalated");
        engine.acknowledge(id, "dr.wang", t(401)).unwrap();
        // A score alarm is latched: it resolves once the band drops and it is acknowledged.
        assert_eq!(
            transitions(&engine.score(&"p1".into(), "news2", None, "", None, t(500))),
            ["condition_cleared", "resolved"]
        );
    }

    #[test]
    fn restored_alarms_continue_where_they_were() {
        let mut engine = AlarmEngine::new(AlarmConfig::default());
        let raised = engine.device_online(&"mon-1".into(), false, t(0));
        let mut restarted = AlarmEngine::new(AlarmConfig::default());
        restarted.restore([raised[0].alarm.clone()], 41);
        // The same condition is the same alarm; a new one gets an id after the highest.
        assert!(
            restarted
                .device_online(&"mon-1".into(), false, t(5))
                .is_empty()
        );
        let cleared = restarted.device_online(&"mon-1".into(), true, t(6));
        assert_eq!(transitions(&cleared), ["condition_cleared", "resolved"]);
        assert_eq!(
            restarted.battery(&"mon-1".into(), 5.0, t(7))[0].alarm.id,
            42
        );
    }

    #[test]
    fn silences_are_bounded_and_need_a_reason() {
        let mut engine = AlarmEngine::new(AlarmConfig::default());
        let id = engine.device_online(&"mon-1".into(), false, t(0))[0]
            .alarm
            .id;
        assert_eq!(
            engine.silence(id, "n", "reason", 600_001, t(1)),
            Err(AlarmError::SilenceTooLong {
                asked_ms: 600_001,
                max_ms: 600_000
            })
        );
        assert_eq!(
            engine.silence(id, "n", " ", 1000, t(1)),
            Err(AlarmError::SilenceWithoutReason)
        );
        assert_eq!(
            engine
                .silence(id, "n", "moving bed", 1000, t(1))
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn technical_and_environmental_alarms() {
        let mut engine = AlarmEngine::new(AlarmConfig::default());
        let device = DeviceId::from("patch-1");
        let low = engine.battery(&device, 18.0, t(0));
        assert_eq!(
            low[0].alarm.condition,
            AlarmCondition::Technical(TechnicalCondition::LowBattery)
        );
        assert!(
            engine.battery(&device, 17.0, t(10)).is_empty(),
            "one alarm per condition"
        );
        assert_eq!(
            transitions(&engine.battery(&device, 80.0, t(20))),
            ["condition_cleared", "resolved"]
        );
        assert_eq!(
            transitions(&engine.artefact(&device, true, t(0))),
            ["raised"]
        );
        assert_eq!(
            transitions(&engine.unassociated(&device, true, t(0))),
            ["raised"]
        );
        assert_eq!(
            transitions(&engine.device_online(&device, false, t(0))),
            ["raised"]
        );
        assert_eq!(engine.active().len(), 3);
        assert_eq!(
            engine.active()[0].priority,
            Priority::Medium,
            "offline first"
        );

        // Rooms: 60 s delay over the catalog's normal CO2 range.
        let room = AlarmSubject::Room("r1".into());
        assert!(engine.observe(&room, "room_co2", 1200.0, t(0)).is_empty());
        let raised = engine.observe(&room, "room_co2", 1300.0, t(60));
        assert_eq!(raised[0].alarm.condition.kind(), "environmental");
        assert_eq!(raised[0].alarm.priority, Priority::Low);
    }

    #[test]
    fn a_patient_override_replaces_the_default_limits_of_that_metric() {
        let mut engine = AlarmEngine::new(AlarmConfig::default());
        let p1: PatientId = "p1".into();
        // A patient with a prescribed 88–92% target: alarm only below 85.
        engine.set_patient_limits(
            &p1,
            "spo2",
            Some(MetricLimits {
                metric: "spo2".into(),
                low: vec![LimitTier {
                    at: 85.0,
                    priority: Priority::High,
                }],
                high: vec![],
            }),
        );
        engine.observe(&patient(), "spo2", 88.0, t(0));
        assert!(engine.observe(&patient(), "spo2", 88.0, t(30)).is_empty());
        engine.observe(&patient(), "spo2", 84.0, t(40));
        assert_eq!(
            transitions(&engine.observe(&patient(), "spo2", 84.0, t(50))),
            ["raised"]
        );
        // Another patient keeps the defaults.
        let p2 = AlarmSubject::Patient("p2".into());
        engine.observe(&p2, "spo2", 88.0, t(0));
        assert_eq!(
            transitions(&engine.observe(&p2, "spo2", 88.0, t(10))),
            ["raised"]
        );
    }
}
