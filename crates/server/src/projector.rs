//! The SQL store follows the durable log: records are read from the store's checkpoint on, in
//! log order, and applied in batches, each batch in one transaction with the new checkpoint.
//! The same loop catches up after a restart and keeps up while running, so the store is
//! always exactly the log up to its checkpoint.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use durable_log::{Log, Offset};
use store::{DeadLetterRecord, Store, StoredObservation};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::record::LogRecord;

const MAX_BATCH_RECORDS: usize = 2048;

/// Applies every durable record not yet in the store; returns how many records were applied.
pub fn catch_up(log: &Log, store: &Mutex<Store>, metrics: &Metrics) -> anyhow::Result<u64> {
    let mut applied = 0;
    loop {
        let checkpoint = store.lock().expect("store lock").checkpoint()?;
        let mut reader = log.read_from(Offset(checkpoint))?;
        let mut observations = Vec::new();
        let mut dead_letters = Vec::new();
        let mut next = checkpoint;
        let mut records = 0;
        for item in reader.by_ref().take(MAX_BATCH_RECORDS) {
            let (offset, bytes) = item?;
            next = offset.0 + 1;
            records += 1;
            match LogRecord::decode(&bytes) {
                Ok(record @ (LogRecord::Observations(_) | LogRecord::Transaction(_))) => {
                    let attributed = record
                        .into_observation_records()
                        .into_iter()
                        .flat_map(|record| record.observations);
                    // The position counts the record's observations in this order, as the
                    // FHIR read of `{offset}-{k}` does.
                    observations.extend(attributed.enumerate().map(|(position, attributed)| {
                        StoredObservation {
                            log_offset: offset.0,
                            log_position: position as u32,
                            patient_id: attributed.attribution.patient,
                            bed_id: attributed.attribution.bed,
                            room_id: attributed.attribution.room,
                            observation: attributed.observation,
                        }
                    }));
                }
                Ok(LogRecord::DeadLetter(dead)) => dead_letters.push(DeadLetterRecord {
                    log_offset: offset.0,
                    source: dead.source,
                    origin: dead.origin,
                    received_ms: dead.received_ms,
                    reason: dead.reason,
                    detail: dead.detail,
                    raw: dead.raw,
                }),
                // A record this build cannot read stays in the log for a build that can; the
                // store moves past it rather than stalling every query behind it.
                Err(error) => {
                    tracing::error!(offset = offset.0, %error, "skipping unreadable log record")
                }
            }
        }
        if records == 0 {
            return Ok(applied);
        }
        store
            .lock()
            .expect("store lock")
            .insert_batch(&observations, &dead_letters, next)?;
        metrics
            .store_observations_written
            .inc_by(observations.len() as u64);
        metrics.store_checkpoint.set(next as i64);
        applied += records;
    }
}

/// Runs [`catch_up`] whenever something new is durable, until `shutdown`.
pub async fn run(
    log: Log,
    store: Arc<Mutex<Store>>,
    metrics: Arc<Metrics>,
    appended: Arc<Notify>,
    shutdown: CancellationToken,
) {
    loop {
        let (log2, store2, metrics2) = (log.clone(), store.clone(), metrics.clone());
        match tokio::task::spawn_blocking(move || catch_up(&log2, &store2, &metrics2)).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                tracing::error!(%error, "store projection failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(error) => tracing::error!(%error, "store projection task failed"),
        }
        tokio::select! {
            _ = appended.notified() => {
                // Let a few more records arrive so a batch is worth its transaction.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            _ = shutdown.cancelled() => return,
        }
    }
}
