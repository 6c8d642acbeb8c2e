//! Plain records the store reads and writes. They are the store's own types, not wire types:
//! the server converts them to JSON, FHIR or whatever its edge speaks.

use model::{
    AssociationTarget, BedId, BodyRegion, DeviceId, DeviceKind, Observation, PatientId, Quality,
    RoomId, Timestamp, WardId, WaveformChunk,
};

#[derive(Clone, Debug, PartialEq)]
pub struct WardRecord {
    pub id: WardId,
    pub name: String,
}

/// A room: `(x, z)` is its corner on the floor plane, in metres, `width` along x, `depth` along z.
#[derive(Clone, Debug, PartialEq)]
pub struct RoomRecord {
    pub id: RoomId,
    pub ward_id: WardId,
    pub name: String,
    pub x: f64,
    pub z: f64,
    pub width: f64,
    pub depth: f64,
}

/// A bed: `(x, z)` in metres on the floor plane, `rotation` about the vertical axis, both as the
/// layout configuration gives them.
#[derive(Clone, Debug, PartialEq)]
pub struct BedRecord {
    pub id: BedId,
    pub room_id: RoomId,
    pub label: String,
    pub x: f64,
    pub z: f64,
    pub rotation: f64,
}

/// A ward with its rooms and their beds, ordered by id.
#[derive(Clone, Debug, PartialEq)]
pub struct WardLayout {
    pub ward: WardRecord,
    pub rooms: Vec<RoomLayout>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RoomLayout {
    pub room: RoomRecord,
    pub beds: Vec<BedRecord>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PatientRecord {
    pub id: PatientId,
    pub name: String,
    /// `YYYY-MM-DD`; `None` when the record does not know it (an unidentified patient).
    pub birth_date: Option<String>,
    /// FHIR administrative gender: `male`, `female`, `other` or `unknown`.
    pub sex: String,
    /// In the order the record lists them.
    pub conditions: Vec<ConditionRecord>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ConditionRecord {
    /// Code system URI (`http://snomed.info/sct`, `http://hl7.org/fhir/sid/icd-10`).
    pub system: String,
    pub code: String,
    pub display: String,
    /// Avatar region key (`lung_left`), when the record or the diagnosis table gives one.
    pub body_site: Option<String>,
}

/// One stay of a patient in a bed, `[from, to)`; `to` is `None` while the patient is still there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stay {
    pub patient_id: PatientId,
    pub bed_id: BedId,
    pub from: Timestamp,
    pub to: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DeviceRecord {
    pub id: DeviceId,
    pub kind: DeviceKind,
    pub model: String,
    /// Where a wearable is worn, when known.
    pub placement: Option<BodyRegion>,
    /// First and last time data from the device was received (kept by `touch_device`).
    pub first_seen: Option<Timestamp>,
    pub last_seen: Option<Timestamp>,
}

/// What a device measures for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssociationRecord {
    pub id: i64,
    pub device_id: DeviceId,
    pub target: AssociationTarget,
    pub from: Timestamp,
    pub to: Option<Timestamp>,
}

/// An observation read from the log at `log_offset`, attributed upstream (by the resolver) to the
/// patient, bed and room it belongs to at its time.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredObservation {
    pub log_offset: u64,
    /// Its place among the observations of its log record (the `k` of the FHIR id
    /// `{log_offset}-{k}`).
    pub log_position: u32,
    pub observation: Observation,
    pub patient_id: Option<PatientId>,
    pub bed_id: Option<BedId>,
    pub room_id: Option<RoomId>,
}

/// Whose values a query is about: a patient's vitals or a room's environment.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Subject {
    Patient(PatientId),
    Room(RoomId),
}

/// One numeric value in a history.
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryPoint {
    /// The device time of the measurement.
    pub time: Timestamp,
    pub value: f64,
    pub quality: Quality,
    pub device_id: DeviceId,
    /// The limits the device sent with the value, if any.
    pub reference_range: Option<model::ReferenceRange>,
}

/// The last value of one metric for a subject.
#[derive(Clone, Debug, PartialEq)]
pub struct LatestValue {
    pub metric: String,
    pub time: Timestamp,
    pub received_time: Timestamp,
    pub value: f64,
    pub quality: Quality,
    pub device_id: DeviceId,
    pub body_site: Option<BodyRegion>,
}

/// A decoded waveform chunk with its start time.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredWaveform {
    pub device_id: DeviceId,
    pub start: Timestamp,
    pub chunk: WaveformChunk,
    pub quality: Quality,
}

/// Input that was refused but kept (see the `dead_letters` table).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetterRecord {
    pub log_offset: u64,
    pub source: String,
    pub origin: String,
    pub received_ms: i64,
    pub reason: String,
    pub detail: String,
    pub raw: Vec<u8>,
}
