//! The technical state of every device that sends data, for clinical engineers: when it was
//! last heard from, how often it sends, its battery where it reports one, how much of what it
//! sends is flagged (by itself, or as implausible), and whether it has gone silent for longer
//! than its kind allows (offline).
//!
//! Invariant: like the rest of the twin this does no I/O and reads no clock. Messages come in
//! with their receive time; `tick(now)` is how silence becomes "offline", so the server calls
//! it on a timer and a test calls it with whatever time it likes.

use std::collections::{HashMap, VecDeque};

use model::{DeviceId, Observation, ObservedValue, Timestamp};

/// The catalog key of a device's own battery level.
pub const BATTERY_METRIC: &str = "battery";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceHealthConfig {
    /// Silence after which a device counts as offline. Five missed reports of the slowest
    /// simulated sender (room sensors every 5 s) is 25 s; 30 s leaves a margin.
    pub offline_after_ms: i64,
    /// The window over which the message rate and the share of flagged values are measured.
    pub rate_window_ms: i64,
}

impl Default for DeviceHealthConfig {
    fn default() -> Self {
        DeviceHealthConfig {
            offline_after_ms: 30_000,
            rate_window_ms: 60_000,
        }
    }
}

/// What one device looks like right now, as served and streamed.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceHealth {
    pub device_id: DeviceId,
    /// The source the last message came through (`mqtt`, `hl7`, `fhir`).
    pub source: Option<String>,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub online: bool,
    pub messages_total: u64,
    /// Messages per minute over the rate window (over the time since first seen, if shorter).
    pub messages_per_minute: f64,
    /// Battery level in percent and when it was measured, if the device reports one.
    pub battery: Option<(f64, Timestamp)>,
    /// Values in the rate window the device itself flagged (artefact, probe or leads off).
    pub device_flagged_recent: u32,
    /// Values in the rate window outside the catalog's plausible range.
    pub implausible_recent: u32,
    /// Values in the rate window, flagged or not: the denominator of the two above.
    pub values_recent: u32,
}

/// A change worth telling subscribers (and, later, the technical alarms) about.
#[derive(Clone, Debug, PartialEq)]
pub enum HealthChange {
    CameOnline(DeviceHealth),
    WentOffline(DeviceHealth),
}

#[derive(Debug)]
struct Tracked {
    health: DeviceHealth,
    /// Receive time and (values, device-flagged, implausible) counts of the messages in the window.
    recent: VecDeque<(Timestamp, Counts)>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    values: u32,
    device_flagged: u32,
    implausible: u32,
}

#[derive(Debug, Default)]
pub struct DeviceHealthBook {
    config: DeviceHealthConfig,
    devices: HashMap<DeviceId, Tracked>,
}

impl DeviceHealthBook {
    pub fn new(config: DeviceHealthConfig) -> DeviceHealthBook {
        DeviceHealthBook {
            config,
            devices: HashMap::new(),
        }
    }

    pub fn config(&self) -> &DeviceHealthConfig {
        &self.config
    }

    /// Remembers a device heard from before a restart, without counting a message: the rate
    /// starts again from nothing, and `tick` decides whether it is still online.
    pub fn seed(&mut self, device_id: &DeviceId, last_seen: Timestamp) {
        let tracked = self.devices.entry(device_id.clone()).or_insert_with(|| {
            Tracked::new(device_id.clone(), None, last_seen, /* online */ true)
        });
        tracked.health.last_seen = tracked.health.last_seen.max(last_seen);
    }

    /// Records one accepted message. Returns `CameOnline` for a device that was offline or
    /// never seen.
    pub fn heard(
        &mut self,
        device_id: &DeviceId,
        source: &str,
        received: Timestamp,
        observations: &[&Observation],
    ) -> Option<HealthChange> {
        let window = self.config.rate_window_ms;
        let mut was_online = true;
        let tracked = self.devices.entry(device_id.clone()).or_insert_with(|| {
            was_online = false;
            Tracked::new(device_id.clone(), Some(source), received, false)
        });
        was_online &= tracked.health.online;
        let mut counts = Counts::default();
        for observation in observations {
            counts.values += 1;
            counts.device_flagged += u32::from(observation.quality.device_flagged);
            counts.implausible += u32::from(observation.quality.implausible);
            if observation.metric == BATTERY_METRIC
                && let ObservedValue::Numeric(level) = observation.value
                && !observation.quality.is_artefact()
                && tracked
                    .health
                    .battery
                    .is_none_or(|(_, at)| at <= observation.device_time)
            {
                tracked.health.battery = Some((level, observation.device_time));
            }
        }
        let health = &mut tracked.health;
        health.source = Some(source.to_owned());
        health.last_seen = health.last_seen.max(received);
        health.messages_total += 1;
        health.online = true;
        tracked.recent.push_back((received, counts));
        tracked.forget_before(received, window);
        if was_online {
            None
        } else {
            Some(HealthChange::CameOnline(tracked.health.clone()))
        }
    }

    /// Marks devices silent for longer than `offline_after` as offline and refreshes the
    /// windowed figures. Returns the devices that went offline now.
    pub fn tick(&mut self, now: Timestamp) -> Vec<HealthChange> {
        let (offline_after, window) = (self.config.offline_after_ms, self.config.rate_window_ms);
        let mut changes = Vec::new();
        for tracked in self.devices.values_mut() {
            tracked.forget_before(now, window);
            if tracked.health.online && now.since(tracked.health.last_seen) > offline_after {
                tracked.health.online = false;
                changes.push(HealthChange::WentOffline(tracked.health.clone()));
            }
        }
        changes.sort_by(|a, b| a.health().device_id.cmp(&b.health().device_id));
        changes
    }

    pub fn get(&self, device_id: &DeviceId) -> Option<&DeviceHealth> {
        self.devices.get(device_id).map(|tracked| &tracked.health)
    }

    pub fn all(&self) -> impl Iterator<Item = &DeviceHealth> {
        self.devices.values().map(|tracked| &tracked.health)
    }
}

impl HealthChange {
    pub fn health(&self) -> &DeviceHealth {
        match self {
            HealthChange::CameOnline(health) | HealthChange::WentOffline(health) => health,
        }
    }
}

impl Tracked {
    fn new(device_id: DeviceId, source: Option<&str>, seen: Timestamp, online: bool) -> Tracked {
        Tracked {
            health: DeviceHealth {
                device_id,
                source: source.map(str::to_owned),
                first_seen: seen,
                last_seen: seen,
                online,
                messages_total: 0,
                messages_per_minute: 0.0,
                battery: None,
                device_flagged_recent: 0,
                implausible_recent: 0,
                values_recent: 0,
            },
            recent: VecDeque::new(),
        }
    }

    /// Drops messages older than the window ending at `now` and recomputes the windowed figures.
    fn forget_before(&mut self, now: Timestamp, window_ms: i64) {
        while self
            .recent
            .front()
            .is_some_and(|(at, _)| now.since(*at) >= window_ms)
        {
            self.recent.pop_front();
        }
        let health = &mut self.health;
        // Over a device's first minute, the rate is over the time it has been seen, not the
        // whole window; at least one second, so a first message is not an infinite rate.
        let span_ms = window_ms.min(now.since(health.first_seen)).max(1000);
        health.messages_per_minute = self.recent.len() as f64 * 60_000.0 / span_ms as f64;
        let mut total = Counts::default();
        for (_, counts) in &self.recent {
            total.values += counts.values;
            total.device_flagged += counts.device_flagged;
            total.implausible += counts.implausible;
        }
        health.values_recent = total.values;
        health.device_flagged_recent = total.device_flagged;
        health.implausible_recent = total.implausible;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::Quality;

    fn observation(metric: &str, value: f64, t: i64, quality: Quality) -> Observation {
        Observation {
            device_id: DeviceId::from("patch"),
            metric: metric.into(),
            value: ObservedValue::Numeric(value),
            device_time: Timestamp(t),
            received_time: Timestamp(t),
            body_site: None,
            quality,
            reference_range: None,
        }
    }

    fn book() -> DeviceHealthBook {
        DeviceHealthBook::new(DeviceHealthConfig {
            offline_after_ms: 10_000,
            rate_window_ms: 60_000,
        })
    }

    #[test]
    fn a_new_device_comes_online_once_and_goes_offline_after_the_silence() {
        let mut book = book();
        let id = DeviceId::from("patch");
        let first = book.heard(&id, "mqtt", Timestamp(0), &[]);
        assert!(matches!(first, Some(HealthChange::CameOnline(_))));
        assert_eq!(book.heard(&id, "mqtt", Timestamp(1_000), &[]), None);
        // Exactly at the limit it is still online; a millisecond later it is not.
        assert!(book.tick(Timestamp(11_000)).is_empty());
        let changes = book.tick(Timestamp(11_001));
        assert!(matches!(&changes[..], [HealthChange::WentOffline(h)] if !h.online));
        assert!(book.tick(Timestamp(20_000)).is_empty(), "said once");
        let back = book.heard(&id, "hl7", Timestamp(30_000), &[]);
        assert!(
            matches!(back, Some(HealthChange::CameOnline(h)) if h.source.as_deref() == Some("hl7"))
        );
        assert_eq!(book.get(&id).unwrap().messages_total, 3);
    }

    #[test]
    fn the_rate_is_messages_per_minute_over_the_window() {
        let mut book = book();
        let id = DeviceId::from("monitor");
        for second in 0..120 {
            book.heard(&id, "mqtt", Timestamp(second * 1000), &[]);
        }
        book.tick(Timestamp(119_500));
        let health = book.get(&id).unwrap();
        assert_eq!(health.messages_per_minute, 60.0);
        // Half a minute after the first message, two messages a second is 120 a minute.
        let mut book = self::book();
        for half_second in 0..60 {
            book.heard(&id, "mqtt", Timestamp(half_second * 500), &[]);
        }
        book.tick(Timestamp(30_000));
        assert_eq!(book.get(&id).unwrap().messages_per_minute, 120.0);
    }

    #[test]
    fn battery_and_flagged_values_are_tracked_and_age_out() {
        let mut book = book();
        let id = DeviceId::from("patch");
        let flagged = Quality {
            implausible: false,
            device_flagged: true,
        };
        book.heard(
            &id,
            "mqtt",
            Timestamp(0),
            &[
                &observation("battery", 81.0, 0, Quality::GOOD),
                &observation("spo2", 0.0, 0, flagged),
            ],
        );
        // An older battery reading arriving late does not replace the newer one.
        book.heard(
            &id,
            "mqtt",
            Timestamp(1_000),
            &[&observation("battery", 90.0, -5_000, Quality::GOOD)],
        );
        let health = book.get(&id).unwrap();
        assert_eq!(health.battery, Some((81.0, Timestamp(0))));
        assert_eq!((health.values_recent, health.device_flagged_recent), (3, 1));
        book.tick(Timestamp(60_500));
        let health = book.get(&id).unwrap();
        assert_eq!((health.values_recent, health.device_flagged_recent), (1, 0));
    }

    #[test]
    fn a_seeded_device_goes_offline_unless_heard_from() {
        let mut book = book();
        let id = DeviceId::from("old");
        book.seed(&id, Timestamp(5_000));
        let changes = book.tick(Timestamp(100_000));
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].health().last_seen, Timestamp(5_000));
    }
}
