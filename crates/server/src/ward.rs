//! The server's shared view of the ward: who is associated with what (the registry, read on
//! every ingest), the live twin and its subscribers (changed on every accepted message), and
//! the directory of places and people, and the alarms judged from what arrives (`alarms`).
//! Locks are held for microseconds, never across I/O.

mod alarms;
mod scores;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use model::{
    AssociationTarget, Catalog, DeviceId, Observation, PatientId, RoomId, Timestamp, WardId,
};
use twin::{
    Attributed, Attribution, DeviceHealth, DeviceHealthBook, DeviceHealthConfig, HealthChange,
    LiveTwin, PatientStatus, Registry, TwinEvent, ValueState,
};

use clinical::News2Result;
use clinical::alarms::Alarm;
use clinical::watch::{ClinicalWatch, Judged, Measured};

use crate::directory::Directory;
use crate::hub::{Filter, Hub, Subscriber, WardEvent};

pub use alarms::{AlarmChange, ClinicalRecorder, ClinicalWrite};

/// The source of observations charted by a clinician (a round's ACVPU), not measured by a device.
pub const CHARTING_SOURCE: &str = "charting";

pub struct Ward {
    pub catalog: &'static Catalog,
    registry: RwLock<Registry>,
    live: Mutex<Live>,
    directory: RwLock<Arc<Directory>>,
}

#[derive(Default)]
struct Live {
    twin: LiveTwin,
    hub: Hub,
    ward_of_room: HashMap<RoomId, WardId>,
    ward_of_patient: HashMap<PatientId, WardId>,
    devices: DeviceHealthBook,
    /// Each device's latest attribution, to route its online/offline changes and alarms.
    device_attribution: HashMap<DeviceId, Attribution>,
    /// NEWS2 and the alarm engine: what each message and each second mean clinically.
    clinical: ClinicalWatch,
    /// Where alarm events and scores go to be stored; `None` only without a store (tests).
    recorder: Option<ClinicalRecorder>,
}

impl Live {
    fn publish(&mut self, events: &[WardEvent]) {
        let Live {
            hub,
            ward_of_room,
            ward_of_patient,
            ..
        } = self;
        hub.publish(events, |attribution| {
            ward_of(ward_of_room, ward_of_patient, attribution)
        });
    }

    fn publish_twin(&mut self, events: Vec<TwinEvent>) {
        let events: Vec<WardEvent> = events.into_iter().map(WardEvent::Twin).collect();
        self.publish(&events);
    }

    fn device_event(&self, change: HealthChange) -> TwinEvent {
        let health = match change {
            HealthChange::CameOnline(health) | HealthChange::WentOffline(health) => health,
        };
        TwinEvent::Device {
            attribution: self
                .device_attribution
                .get(&health.device_id)
                .cloned()
                .unwrap_or_default(),
            health,
        }
    }
}

/// What a new subscriber sees first; taken under the same lock that routes events, so the
/// events that follow continue exactly from it.
pub struct Snapshot {
    pub directory: Arc<Directory>,
    pub patient_values: Vec<(PatientId, Vec<ValueState>)>,
    pub room_values: Vec<(RoomId, Vec<ValueState>)>,
    pub statuses: Vec<PatientStatus>,
    /// Active alarms, highest priority first.
    pub alarms: Vec<Alarm>,
    /// The latest NEWS2 of each patient.
    pub scores: Vec<(PatientId, News2Result)>,
}

impl Ward {
    pub fn new(
        catalog: &'static Catalog,
        registry: Registry,
        directory: Directory,
        device_health: DeviceHealthConfig,
        clinical: ClinicalWatch,
    ) -> Ward {
        let ward = Ward {
            catalog,
            registry: RwLock::new(registry),
            live: Mutex::new(Live {
                devices: DeviceHealthBook::new(device_health),
                clinical,
                ..Live::default()
            }),
            directory: RwLock::new(Arc::new(Directory::default())),
        };
        ward.set_directory(directory);
        ward
    }

    pub fn directory(&self) -> Arc<Directory> {
        self.directory.read().expect("directory lock").clone()
    }

    /// Replaces the directory (after the store changed) and tells the stream's subscribers
    /// about every patient whose view changed (a record written through `/fhir`, a condition
    /// set through REST, an admission), in the same lock that routes events, so a subscriber's
    /// snapshot and these changes never overlap or leave a gap.
    /// Tells the stream's subscribers who see `patient` that a round note about them was
    /// written (`note` as the REST API lists notes).
    pub fn publish_note(&self, patient: &PatientId, note: serde_json::Value) {
        let event = WardEvent::Note {
            patient: patient.clone(),
            note: Box::new(note),
        };
        self.live.lock().expect("live lock").publish(&[event]);
    }

    pub fn set_directory(&self, directory: Directory) {
        let mut live = self.live.lock().expect("live lock");
        let old = self.directory();
        let new_ward_of_patient = directory.ward_of_patient();
        let changes = patient_changes(
            &old,
            &live.ward_of_patient,
            &directory,
            &new_ward_of_patient,
        );
        live.ward_of_room = directory.ward_of_room();
        live.ward_of_patient = new_ward_of_patient;
        live.clinical.set_contexts(scores::contexts_of(&directory));
        *self.directory.write().expect("directory lock") = Arc::new(directory);
        live.publish(&changes);
    }

    pub fn update_registry<T>(&self, change: impl FnOnce(&mut Registry) -> T) -> T {
        change(&mut self.registry.write().expect("registry lock"))
    }

    pub fn read_registry<T>(&self, read: impl FnOnce(&Registry) -> T) -> T {
        read(&self.registry.read().expect("registry lock"))
    }

    /// `subject` is the patient or bed the message itself names, if it names one.
    pub fn attribute(
        &self,
        observations: Vec<Observation>,
        subject: Option<&AssociationTarget>,
    ) -> Vec<Attributed> {
        let registry = self.registry.read().expect("registry lock");
        observations
            .into_iter()
            .map(|observation| {
                twin::attribution::attribute(&registry, self.catalog, observation, subject)
            })
            .collect()
    }

    /// Applies durable observations to the live twin and routes the resulting events. For
    /// values restored from the store; live messages go through [`Ward::apply_message`].
    pub fn apply(&self, observations: &[Attributed]) {
        let mut live = self.live.lock().expect("live lock");
        let mut events = Vec::new();
        for attributed in observations {
            events.extend(live.twin.apply(self.catalog, attributed));
        }
        live.publish_twin(events);
    }

    /// Applies one accepted device message: its observations to the twin, and the fact that
    /// the device was heard from to its technical state.
    pub fn apply_message(
        &self,
        device_id: &DeviceId,
        source: &str,
        received: Timestamp,
        observations: &[Attributed],
    ) {
        let mut live = self.live.lock().expect("live lock");
        let mut events = Vec::new();
        for attributed in observations {
            events.extend(live.twin.apply(self.catalog, attributed));
        }
        if let Some(latest) = observations.last() {
            live.device_attribution
                .insert(device_id.clone(), latest.attribution.clone());
        }
        let heard: Vec<&Observation> = observations.iter().map(|a| &a.observation).collect();
        let measured: Vec<Measured> = observations
            .iter()
            .map(|a| Measured {
                observation: &a.observation,
                patient: a.attribution.patient.as_ref(),
                room: a.attribution.room.as_ref(),
                unassociated: a.attribution.is_unassociated(),
            })
            .collect();
        let mut judged = live.clinical.message(device_id, received, &measured);
        // A charted assessment comes from a person, not a device that can go offline: it has
        // no technical state, so its silence never raises a device alarm.
        let device_change = if source == CHARTING_SOURCE {
            None
        } else {
            live.devices.heard(device_id, source, received, &heard)
        };
        if let Some(change) = device_change {
            let online = live.clinical.device_online(device_id, true, received);
            judged.alarm_events.extend(online.alarm_events);
            events.push(live.device_event(change));
        }
        live.publish_twin(events);
        live.publish_judged(judged);
    }

    /// Lets time pass for the devices' technical state: the silent ones go offline.
    pub fn tick(&self, now: Timestamp) {
        let mut live = self.live.lock().expect("live lock");
        let changes = live.devices.tick(now);
        let mut judged = Judged::default();
        let mut events = Vec::new();
        for change in changes {
            let device = change.health().device_id.clone();
            let offline = live.clinical.device_online(&device, false, now);
            judged.alarm_events.extend(offline.alarm_events);
            events.push(live.device_event(change));
        }
        // Escalations, silences ending, and scores whose inputs grew stale.
        let passed = live.clinical.tick(now);
        judged.alarm_events.extend(passed.alarm_events);
        judged.scores.extend(passed.scores);
        live.publish_twin(events);
        live.publish_judged(judged);
    }

    /// Remembers devices heard from before a restart (see [`DeviceHealthBook::seed`]).
    pub fn seed_device_health(&self, seen: impl IntoIterator<Item = (DeviceId, Timestamp)>) {
        let mut live = self.live.lock().expect("live lock");
        for (device_id, last_seen) in seen {
            live.devices.seed(&device_id, last_seen);
        }
    }

    pub fn device_health(&self, device_id: &DeviceId) -> Option<DeviceHealth> {
        let live = self.live.lock().expect("live lock");
        live.devices.get(device_id).cloned()
    }

    /// Every device heard from, by id.
    pub fn devices_health(&self) -> Vec<DeviceHealth> {
        let live = self.live.lock().expect("live lock");
        let mut all: Vec<DeviceHealth> = live.devices.all().cloned().collect();
        all.sort_by(|a, b| a.device_id.cmp(&b.device_id));
        all
    }

    pub fn subscribe(&self, filter: Filter) -> (Snapshot, Arc<Subscriber>) {
        let mut live = self.live.lock().expect("live lock");
        let subscriber = live.hub.subscribe(filter.clone());
        let directory = self.directory();
        let directory = match &filter.scope {
            None => directory,
            Some(_) => Arc::new(Directory {
                wards: directory
                    .wards
                    .iter()
                    .filter(|ward| filter.in_scope(Some(&WardId::new(&ward.id))))
                    .cloned()
                    .collect(),
                patients: directory
                    .patients
                    .iter()
                    .filter(|patient| {
                        filter.in_scope(live.ward_of_patient.get(&PatientId::new(&patient.id)))
                    })
                    .cloned()
                    .collect(),
            }),
        };
        let wants_patient = |patient: &PatientId| {
            filter.patient.as_ref().is_none_or(|p| p == patient)
                && filter
                    .ward
                    .as_ref()
                    .is_none_or(|w| live.ward_of_patient.get(patient) == Some(w))
                && filter.in_scope(live.ward_of_patient.get(patient))
        };
        let wants_room = |room: &RoomId| {
            filter.patient.is_none()
                && filter
                    .ward
                    .as_ref()
                    .is_none_or(|w| live.ward_of_room.get(room) == Some(w))
                && filter.in_scope(live.ward_of_room.get(room))
        };
        let patient_values = live
            .twin
            .patients()
            .filter(|patient| wants_patient(patient))
            .map(|patient| {
                (
                    patient.clone(),
                    live.twin.patient_values(patient).cloned().collect(),
                )
            })
            .collect();
        let statuses = live
            .twin
            .patients()
            .filter(|patient| wants_patient(patient))
            .filter_map(|patient| live.twin.patient_status(patient).cloned())
            .collect();
        let room_values = live
            .twin
            .rooms()
            .filter(|room| wants_room(room))
            .map(|room| (room.clone(), live.twin.room_values(room).cloned().collect()))
            .collect();
        let alarms = live
            .clinical
            .alarms
            .active()
            .into_iter()
            .filter(|alarm| {
                let attribution = live.alarm_attribution(&alarm.subject);
                let ward = ward_of(&live.ward_of_room, &live.ward_of_patient, &attribution);
                filter.in_scope(ward.as_ref())
                    && filter
                        .patient
                        .as_ref()
                        .is_none_or(|p| attribution.patient.as_ref() == Some(p))
                    && filter.ward.as_ref().is_none_or(|w| {
                        ward_of(&live.ward_of_room, &live.ward_of_patient, &attribution).as_ref()
                            == Some(w)
                    })
            })
            .cloned()
            .collect();
        let scores = live
            .clinical
            .scores()
            .filter(|(patient, _)| wants_patient(patient))
            .map(|(patient, result)| (patient.clone(), result.clone()))
            .collect();
        let snapshot = Snapshot {
            directory,
            patient_values,
            room_values,
            statuses,
            alarms,
            scores,
        };
        (snapshot, subscriber)
    }

    /// The ward (and patient) an alarm's subject belongs to now, for access checks.
    pub fn alarm_scope(
        &self,
        subject: &clinical::alarms::AlarmSubject,
    ) -> (Option<WardId>, Option<PatientId>) {
        let live = self.live.lock().expect("live lock");
        let attribution = live.alarm_attribution(subject);
        (
            ward_of(&live.ward_of_room, &live.ward_of_patient, &attribution),
            attribution.patient,
        )
    }

    /// A patient's latest NEWS2, if any of its inputs has arrived.
    pub fn news2(&self, patient: &PatientId) -> Option<News2Result> {
        let live = self.live.lock().expect("live lock");
        live.clinical.score(patient).cloned()
    }

    pub fn patient_values(&self, patient: &PatientId) -> (Vec<ValueState>, Option<PatientStatus>) {
        let live = self.live.lock().expect("live lock");
        (
            live.twin.patient_values(patient).cloned().collect(),
            live.twin.patient_status(patient).cloned(),
        )
    }

    /// Devices sending data that belong to no one, with their last values.
    pub fn unassociated_devices(&self) -> Vec<(model::DeviceId, Vec<ValueState>)> {
        let live = self.live.lock().expect("live lock");
        live.twin
            .unassociated()
            .map(|(device, values)| (device.clone(), values.values().cloned().collect()))
            .collect()
    }

    pub fn subscriber_count(&self) -> usize {
        self.live.lock().expect("live lock").hub.subscriber_count()
    }
}

/// The patient events between two directories: each patient whose view changed, routed to
/// their ward now, and a "left" event to the ward they were in when that is another (or they
/// are no longer listed).
fn patient_changes(
    old: &Directory,
    old_wards: &HashMap<PatientId, WardId>,
    new: &Directory,
    new_wards: &HashMap<PatientId, WardId>,
) -> Vec<WardEvent> {
    let mut events = Vec::new();
    let held: HashMap<&str, &crate::directory::PatientView> = old
        .patients
        .iter()
        .map(|view| (view.id.as_str(), view))
        .collect();
    let listed: std::collections::HashSet<&str> =
        new.patients.iter().map(|view| view.id.as_str()).collect();
    for view in &new.patients {
        if held.get(view.id.as_str()) == Some(&view) {
            continue;
        }
        let patient = PatientId::new(&view.id);
        let (was, is) = (old_wards.get(&patient), new_wards.get(&patient));
        if was.is_some() && was != is {
            events.push(WardEvent::Patient {
                patient: patient.clone(),
                ward: was.cloned(),
                view: None,
            });
        }
        events.push(WardEvent::Patient {
            ward: is.cloned(),
            patient,
            view: Some(Box::new(view.clone())),
        });
    }
    for view in &old.patients {
        if !listed.contains(view.id.as_str()) {
            let patient = PatientId::new(&view.id);
            events.push(WardEvent::Patient {
                ward: old_wards.get(&patient).cloned(),
                patient,
                view: None,
            });
        }
    }
    events
}

fn ward_of(
    ward_of_room: &HashMap<RoomId, WardId>,
    ward_of_patient: &HashMap<PatientId, WardId>,
    attribution: &Attribution,
) -> Option<WardId> {
    attribution
        .room
        .as_ref()
        .and_then(|room| ward_of_room.get(room))
        .or_else(|| {
            attribution
                .patient
                .as_ref()
                .and_then(|p| ward_of_patient.get(p))
        })
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::PatientView;

    fn patient(id: &str, bed: &str, medications: usize) -> PatientView {
        PatientView {
            id: id.into(),
            name: id.into(),
            birth_date: None,
            age: None,
            sex: None,
            bed_id: Some(bed.into()),
            conditions: Vec::new(),
            oxygen_target: None,
            medications: (0..medications)
                .map(|n| crate::directory::MedicationView {
                    reference: format!("MedicationRequest/m{n}"),
                    display: "Salbutamol".into(),
                    coding: None,
                    dosage: None,
                    since: None,
                    status: "active".into(),
                    reasons: Vec::new(),
                    regions: Vec::new(),
                })
                .collect(),
            allergies: Vec::new(),
            labs: Vec::new(),
        }
    }

    fn wards(pairs: &[(&str, &str)]) -> HashMap<PatientId, WardId> {
        pairs
            .iter()
            .map(|(p, w)| (PatientId::new(*p), WardId::new(*w)))
            .collect()
    }

    /// Only changed patients make events; a move to another ward tells the old ward they left;
    /// a patient no longer listed is gone from their ward.
    #[test]
    fn patient_changes_are_routed_by_ward_and_leaving_is_said() {
        let old = Directory {
            wards: Vec::new(),
            patients: vec![
                patient("same", "b1", 0),
                patient("record", "b2", 0),
                patient("mover", "b3", 0),
                patient("leaver", "b4", 0),
            ],
        };
        let new = Directory {
            wards: Vec::new(),
            patients: vec![
                patient("same", "b1", 0),
                patient("record", "b2", 1),
                patient("mover", "b9", 0),
            ],
        };
        let old_wards = wards(&[
            ("same", "w1"),
            ("record", "w1"),
            ("mover", "w1"),
            ("leaver", "w1"),
        ]);
        let new_wards = wards(&[("same", "w1"), ("record", "w1"), ("mover", "w2")]);
        let events = patient_changes(&old, &old_wards, &new, &new_wards);
        let summary: Vec<(String, Option<String>, bool)> = events
            .iter()
            .map(|event| match event {
                WardEvent::Patient {
                    patient,
                    ward,
                    view,
                } => (
                    patient.to_string(),
                    ward.as_ref().map(ToString::to_string),
                    view.is_some(),
                ),
                other => panic!("not a patient event: {other:?}"),
            })
            .collect();
        let expect = |p: &str, w: &str, view: bool| (p.to_owned(), Some(w.to_owned()), view);
        assert_eq!(
            summary,
            [
                expect("record", "w1", true),
                expect("mover", "w1", false),
                expect("mover", "w2", true),
                expect("leaver", "w1", false),
            ]
        );
    }
}
