//! The ingest pipeline every source meets: attribute → append to the durable log (the
//! acknowledgment waits for this) → apply to the live twin. The SQL store follows the log on
//! its own (see `projector`), so a slow disk for queries never slows an acknowledgment.

use std::sync::Arc;

use durable_log::{Log, LogError, Offset};
use model::{AssociationTarget, DeviceId, Observation, ObservedValue, Timestamp};
use tokio::sync::Notify;

use crate::metrics::Metrics;
use crate::record::{DeadLetter, LogRecord, ObservationsRecord};
use crate::ward::Ward;

#[derive(Clone)]
pub struct Ingest {
    log: Log,
    ward: Arc<Ward>,
    metrics: Arc<Metrics>,
    /// Wakes the store projector when something new is durable.
    appended: Arc<Notify>,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the log could not make the data durable: {0}")]
    Log(#[from] LogError),
}

impl Ingest {
    pub fn new(log: Log, ward: Arc<Ward>, metrics: Arc<Metrics>, appended: Arc<Notify>) -> Ingest {
        Ingest {
            log,
            ward,
            metrics,
            appended,
        }
    }

    pub fn ward(&self) -> &Arc<Ward> {
        &self.ward
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Accepts one device message's observations. Returns once they are durable; only then
    /// may the source acknowledge. `subject` is the patient or bed the message names (HL7 PID
    /// or PV1-3, FHIR `subject`); without one, the device's association decides.
    pub async fn accept(
        &self,
        source: &str,
        device_id: DeviceId,
        observations: Vec<Observation>,
        received: Timestamp,
        subject: Option<AssociationTarget>,
    ) -> Result<Offset, IngestError> {
        self.accept_all(source, vec![(device_id, observations, subject)], received)
            .await
    }

    /// Accepts several groups of observations (each from one device, about one subject) as one
    /// message, such as a FHIR transaction: all of them in one log record, so after a crash the
    /// log holds all or none of them, and the answer waits for its fsync.
    pub async fn accept_all(
        &self,
        source: &str,
        groups: Vec<(DeviceId, Vec<Observation>, Option<AssociationTarget>)>,
        received: Timestamp,
    ) -> Result<Offset, IngestError> {
        let (mut count, mut samples) = (0, 0);
        let mut records = Vec::with_capacity(groups.len());
        for (device_id, observations, subject) in groups {
            count += observations.len();
            samples += observations
                .iter()
                .map(|observation| match &observation.value {
                    ObservedValue::Numeric(_) => 1,
                    ObservedValue::Waveform(chunk) => chunk.samples.len(),
                })
                .sum::<usize>();
            records.push(ObservationsRecord {
                source: source.to_owned(),
                device_id,
                received,
                observations: self.ward.attribute(observations, subject.as_ref()),
            });
        }
        let record = if records.len() == 1 {
            LogRecord::Observations(records.remove(0))
        } else {
            LogRecord::Transaction(records)
        };
        let offset = self.log.append(record.encode()).await?;
        self.appended.notify_one();
        self.metrics.accepted(source, count, samples);
        // Each device's part is one message to the twin: its values, its technical state, and
        // what it means clinically.
        for record in record.into_observation_records() {
            self.ward.apply_message(
                &record.device_id,
                &record.source,
                record.received,
                &record.observations,
            );
        }
        Ok(offset)
    }

    /// Accepts one message whose observations may come from several devices (an HL7
    /// gateway's ORU^R01 with several monitors), about one subject if the message names one:
    /// grouped by device and kept as one log record (all or none), counted as one message.
    pub async fn accept_message(
        &self,
        source: &str,
        observations: Vec<Observation>,
        received: Timestamp,
        subject: Option<AssociationTarget>,
    ) -> Result<Offset, IngestError> {
        let mut groups: Vec<(DeviceId, Vec<Observation>, Option<AssociationTarget>)> = Vec::new();
        for observation in observations {
            match groups
                .iter_mut()
                .find(|(device, _, _)| *device == observation.device_id)
            {
                Some((_, group, _)) => group.push(observation),
                None => groups.push((
                    observation.device_id.clone(),
                    vec![observation],
                    subject.clone(),
                )),
            }
        }
        self.accept_all(source, groups, received).await
    }

    /// Keeps input that was refused, durably, so an operator can see it and nothing that was
    /// acknowledged is lost. Counts it under its reason.
    pub async fn dead_letter(&self, dead: DeadLetter) -> Result<Offset, IngestError> {
        self.metrics.rejected(&dead.source, &dead.reason);
        let offset = self
            .log
            .append(LogRecord::DeadLetter(dead).encode())
            .await?;
        self.appended.notify_one();
        Ok(offset)
    }
}

/// Milliseconds since the epoch, now. Only the edges read the clock; the core is given time.
pub fn now() -> Timestamp {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp(since_epoch.as_millis() as i64)
}
