//! What the durable log holds, as an edge type: one record per accepted device message (its
//! observations already attributed, so replay needs nothing but the log) or per rejected
//! input (a dead letter, kept because it was acknowledged). Encoded with postcard; the first
//! byte of every record is the format version.

use model::{
    BedId, DeviceId, Observation, ObservedValue, PatientId, Quality, RoomId, Timestamp,
    WaveformChunk,
};
use serde::{Deserialize, Serialize};
use twin::{Attributed, Attribution};

/// Version 2 added each observation's reference range; version 1 records still decode (`v1`).
const FORMAT_VERSION: u8 = 2;

#[derive(Debug, Clone, PartialEq)]
pub enum LogRecord {
    Observations(ObservationsRecord),
    DeadLetter(DeadLetter),
    /// Several devices' or subjects' observations accepted as one unit (a FHIR transaction):
    /// one record, so the log keeps all of them or, after a torn write, none.
    Transaction(Vec<ObservationsRecord>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ObservationsRecord {
    pub source: String,
    pub device_id: DeviceId,
    pub received: Timestamp,
    pub observations: Vec<Attributed>,
}

/// Input we could not accept, kept with the reason for an operator to see.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub source: String,
    /// Where it came from: the MQTT topic, the peer address, the URL.
    pub origin: String,
    pub received_ms: i64,
    /// A short stable label, also used as the metrics label.
    pub reason: String,
    pub detail: String,
    pub raw: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
enum Wire {
    Observations {
        source: String,
        device_id: String,
        received_ms: i64,
        observations: Vec<WireObservation>,
    },
    DeadLetter(DeadLetter),
    // Appended after the variants above so records written before it still decode.
    Transaction(Vec<WireGroup>),
}

#[derive(Serialize, Deserialize)]
struct WireGroup {
    source: String,
    device_id: String,
    received_ms: i64,
    observations: Vec<WireObservation>,
}

#[derive(Serialize, Deserialize)]
struct WireObservation {
    metric: String,
    device_time_ms: i64,
    value: WireValue,
    body_site: Option<String>,
    region: Option<String>,
    implausible: bool,
    device_flagged: bool,
    patient: Option<String>,
    bed: Option<String>,
    room: Option<String>,
    /// (low, high) of the range the device sent with the value.
    reference_range: Option<(Option<f64>, Option<f64>)>,
}

/// The record format before reference ranges, read from logs written then.
mod v1 {
    use serde::Deserialize;

    use super::{DeadLetter, WireValue};

    #[derive(Deserialize)]
    #[cfg_attr(test, derive(serde::Serialize))]
    pub enum Wire {
        Observations {
            source: String,
            device_id: String,
            received_ms: i64,
            observations: Vec<WireObservation>,
        },
        DeadLetter(DeadLetter),
        Transaction(Vec<WireGroup>),
    }

    #[derive(Deserialize)]
    #[cfg_attr(test, derive(serde::Serialize))]
    pub struct WireGroup {
        pub source: String,
        pub device_id: String,
        pub received_ms: i64,
        pub observations: Vec<WireObservation>,
    }

    #[derive(Deserialize)]
    #[cfg_attr(test, derive(serde::Serialize))]
    pub struct WireObservation {
        pub metric: String,
        pub device_time_ms: i64,
        pub value: WireValue,
        pub body_site: Option<String>,
        pub region: Option<String>,
        pub implausible: bool,
        pub device_flagged: bool,
        pub patient: Option<String>,
        pub bed: Option<String>,
        pub room: Option<String>,
    }

    impl From<WireObservation> for super::WireObservation {
        fn from(old: WireObservation) -> Self {
            super::WireObservation {
                metric: old.metric,
                device_time_ms: old.device_time_ms,
                value: old.value,
                body_site: old.body_site,
                region: old.region,
                implausible: old.implausible,
                device_flagged: old.device_flagged,
                patient: old.patient,
                bed: old.bed,
                room: old.room,
                reference_range: None,
            }
        }
    }

    impl From<WireGroup> for super::WireGroup {
        fn from(old: WireGroup) -> Self {
            super::WireGroup {
                source: old.source,
                device_id: old.device_id,
                received_ms: old.received_ms,
                observations: old.observations.into_iter().map(Into::into).collect(),
            }
        }
    }

    impl From<Wire> for super::Wire {
        fn from(old: Wire) -> Self {
            match old {
                Wire::Observations {
                    source,
                    device_id,
                    received_ms,
                    observations,
                } => super::Wire::Observations {
                    source,
                    device_id,
                    received_ms,
                    observations: observations.into_iter().map(Into::into).collect(),
                },
                Wire::DeadLetter(dead) => super::Wire::DeadLetter(dead),
                Wire::Transaction(groups) => {
                    super::Wire::Transaction(groups.into_iter().map(Into::into).collect())
                }
            }
        }
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) enum WireValue {
    Numeric(f64),
    Waveform { rate_hz: f64, samples: Vec<f32> },
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("log record has format version {0}, this build reads version {FORMAT_VERSION}")]
    Version(u8),
    #[error("log record is empty")]
    Empty,
    #[error("log record does not decode: {0}")]
    Decode(#[from] postcard::Error),
    #[error("log record names an unknown body region: {0}")]
    Region(String),
}

impl LogRecord {
    pub fn encode(&self) -> Vec<u8> {
        let wire = match self {
            LogRecord::Observations(record) => Wire::Observations {
                source: record.source.clone(),
                device_id: record.device_id.to_string(),
                received_ms: record.received.millis(),
                observations: record.observations.iter().map(to_wire).collect(),
            },
            LogRecord::DeadLetter(dead) => Wire::DeadLetter(dead.clone()),
            LogRecord::Transaction(records) => Wire::Transaction(
                records
                    .iter()
                    .map(|record| WireGroup {
                        source: record.source.clone(),
                        device_id: record.device_id.to_string(),
                        received_ms: record.received.millis(),
                        observations: record.observations.iter().map(to_wire).collect(),
                    })
                    .collect(),
            ),
        };
        let mut bytes = vec![FORMAT_VERSION];
        bytes.extend(postcard::to_stdvec(&wire).expect("log records always serialize"));
        bytes
    }

    pub fn decode(bytes: &[u8]) -> Result<LogRecord, RecordError> {
        let (&version, body) = bytes.split_first().ok_or(RecordError::Empty)?;
        let wire = match version {
            FORMAT_VERSION => postcard::from_bytes::<Wire>(body)?,
            1 => postcard::from_bytes::<v1::Wire>(body)?.into(),
            other => return Err(RecordError::Version(other)),
        };
        Ok(match wire {
            Wire::DeadLetter(dead) => LogRecord::DeadLetter(dead),
            Wire::Observations {
                source,
                device_id,
                received_ms,
                observations,
            } => LogRecord::Observations(group_from_wire(WireGroup {
                source,
                device_id,
                received_ms,
                observations,
            })?),
            Wire::Transaction(groups) => LogRecord::Transaction(
                groups
                    .into_iter()
                    .map(group_from_wire)
                    .collect::<Result<_, _>>()?,
            ),
        })
    }

    /// The observation records it holds: one, several (a transaction) or none (a dead letter).
    pub fn into_observation_records(self) -> Vec<ObservationsRecord> {
        match self {
            LogRecord::Observations(record) => vec![record],
            LogRecord::Transaction(records) => records,
            LogRecord::DeadLetter(_) => Vec::new(),
        }
    }
}

fn group_from_wire(group: WireGroup) -> Result<ObservationsRecord, RecordError> {
    let device_id = DeviceId::new(group.device_id);
    let received = Timestamp(group.received_ms);
    let observations = group
        .observations
        .into_iter()
        .map(|wire| from_wire(wire, &device_id, received))
        .collect::<Result<_, _>>()?;
    Ok(ObservationsRecord {
        source: group.source,
        device_id,
        received,
        observations,
    })
}

fn to_wire(attributed: &Attributed) -> WireObservation {
    let observation = &attributed.observation;
    WireObservation {
        metric: observation.metric.clone(),
        device_time_ms: observation.device_time.millis(),
        value: match &observation.value {
            ObservedValue::Numeric(value) => WireValue::Numeric(*value),
            ObservedValue::Waveform(chunk) => WireValue::Waveform {
                rate_hz: chunk.sample_rate_hz,
                samples: chunk.samples.clone(),
            },
        },
        body_site: observation.body_site.map(|region| region.to_string()),
        region: attributed.region.map(|region| region.to_string()),
        implausible: observation.quality.implausible,
        device_flagged: observation.quality.device_flagged,
        patient: attributed
            .attribution
            .patient
            .as_ref()
            .map(ToString::to_string),
        bed: attributed.attribution.bed.as_ref().map(ToString::to_string),
        room: attributed
            .attribution
            .room
            .as_ref()
            .map(ToString::to_string),
        reference_range: observation
            .reference_range
            .map(|range| (range.low, range.high)),
    }
}

fn from_wire(
    wire: WireObservation,
    device_id: &DeviceId,
    received: Timestamp,
) -> Result<Attributed, RecordError> {
    let region = |key: Option<String>| {
        key.map(|key| key.parse().map_err(|_| RecordError::Region(key)))
            .transpose()
    };
    Ok(Attributed {
        observation: Observation {
            device_id: device_id.clone(),
            metric: wire.metric,
            value: match wire.value {
                WireValue::Numeric(value) => ObservedValue::Numeric(value),
                WireValue::Waveform { rate_hz, samples } => {
                    ObservedValue::Waveform(WaveformChunk {
                        sample_rate_hz: rate_hz,
                        samples,
                    })
                }
            },
            device_time: Timestamp(wire.device_time_ms),
            received_time: received,
            body_site: region(wire.body_site)?,
            quality: Quality {
                implausible: wire.implausible,
                device_flagged: wire.device_flagged,
            },
            reference_range: wire
                .reference_range
                .map(|(low, high)| model::ReferenceRange { low, high }),
        },
        region: region(wire.region)?,
        attribution: Attribution {
            patient: wire.patient.map(PatientId::new),
            bed: wire.bed.map(BedId::new),
            room: wire.room.map(RoomId::new),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_range_survives_the_log() {
        let mut observation = Observation {
            device_id: "mon-1".into(),
            metric: "nibp_systolic".into(),
            value: ObservedValue::Numeric(140.0),
            device_time: Timestamp(4),
            received_time: Timestamp(5),
            body_site: None,
            quality: Quality::GOOD,
            reference_range: None,
        };
        observation.reference_range = Some(model::ReferenceRange {
            low: None,
            high: Some(120.0),
        });
        let record = LogRecord::Observations(ObservationsRecord {
            source: "hl7".into(),
            device_id: "mon-1".into(),
            received: Timestamp(5),
            observations: vec![Attributed {
                observation: observation.clone(),
                attribution: Attribution::default(),
                region: None,
            }],
        });
        assert_eq!(record.encode()[0], 2);
        assert_eq!(LogRecord::decode(&record.encode()).unwrap(), record);
    }

    #[test]
    fn a_version_1_record_still_decodes() {
        let old = v1::Wire::Observations {
            source: "mqtt".into(),
            device_id: "mon-1".into(),
            received_ms: 5,
            observations: vec![v1::WireObservation {
                metric: "spo2".into(),
                device_time_ms: 4,
                value: WireValue::Numeric(97.0),
                body_site: None,
                region: Some("finger_left".into()),
                implausible: false,
                device_flagged: false,
                patient: Some("p1".into()),
                bed: None,
                room: None,
            }],
        };
        let mut bytes = vec![1];
        bytes.extend(postcard::to_stdvec(&old).unwrap());
        let LogRecord::Observations(record) = LogRecord::decode(&bytes).unwrap() else {
            panic!("not observations");
        };
        let observation = &record.observations[0].observation;
        assert_eq!(observation.value, ObservedValue::Numeric(97.0));
        assert_eq!(observation.reference_range, None);
        assert_eq!(
            record.observations[0].attribution.patient,
            Some("p1".into())
        );
    }
    use model::{BodyPart, BodyRegion, Side};

    #[test]
    fn records_round_trip() {
        let finger = BodyRegion::new(BodyPart::Finger, Some(Side::Right));
        let record = LogRecord::Observations(ObservationsRecord {
            source: "mqtt".into(),
            device_id: "dev".into(),
            received: Timestamp(10),
            observations: vec![
                Attributed {
                    observation: Observation {
                        device_id: "dev".into(),
                        metric: "spo2".into(),
                        value: ObservedValue::Numeric(97.5),
                        device_time: Timestamp(9),
                        received_time: Timestamp(10),
                        body_site: Some(finger),
                        quality: Quality {
                            implausible: false,
                            device_flagged: true,
                        },
                        reference_range: None,
                    },
                    attribution: Attribution {
                        patient: Some("p".into()),
                        bed: Some("b".into()),
                        room: Some("r".into()),
                    },
                    region: Some(finger),
                },
                Attributed {
                    observation: Observation {
                        device_id: "dev".into(),
                        metric: "ecg_ii".into(),
                        value: ObservedValue::Waveform(WaveformChunk {
                            sample_rate_hz: 250.0,
                            samples: vec![0.5, -0.25],
                        }),
                        device_time: Timestamp(8),
                        received_time: Timestamp(10),
                        body_site: None,
                        quality: Quality::GOOD,
                        reference_range: None,
                    },
                    attribution: Attribution::default(),
                    region: None,
                },
            ],
        });
        assert_eq!(LogRecord::decode(&record.encode()).unwrap(), record);
        let LogRecord::Observations(first) = record else {
            unreachable!()
        };
        let mut second = first.clone();
        second.device_id = "other".into();
        for attributed in &mut second.observations {
            attributed.observation.device_id = "other".into();
        }
        let transaction = LogRecord::Transaction(vec![first, second]);
        assert_eq!(
            LogRecord::decode(&transaction.encode()).unwrap(),
            transaction
        );
        let dead = LogRecord::DeadLetter(DeadLetter {
            source: "mqtt".into(),
            origin: "metaward/v1/devices/x/obs".into(),
            received_ms: 1,
            reason: "payload".into(),
            detail: "payload has no numerics and no waveforms".into(),
            raw: b"{}".to_vec(),
        });
        assert_eq!(LogRecord::decode(&dead.encode()).unwrap(), dead);
    }

    #[test]
    fn foreign_versions_are_refused() {
        assert!(matches!(
            LogRecord::decode(&[9, 0]),
            Err(RecordError::Version(9))
        ));
        assert!(matches!(LogRecord::decode(&[]), Err(RecordError::Empty)));
    }
}
