//! Numeric vitals and waveform chunks projected from the log, the checkpoint that says how far,
//! and the queries over them.

use model::{
    BodyRegion, Catalog, DeviceId, ObservedValue, PatientId, Quality, Timestamp, WaveformChunk,
};
use rusqlite::params;

use crate::waveform_codec::{self, Encoding};
use crate::{
    DeadLetterRecord, HistoryPoint, LatestValue, Store, StoreError, StoredObservation,
    StoredWaveform, Subject, offset_to_sql,
};

impl Store {
    /// Applies a batch read from the log and advances the checkpoint to `checkpoint` (the offset
    /// replay resumes at), all in one transaction: either the whole batch and the new checkpoint
    /// are stored, or nothing is. Rows already stored (same log offset, device, metric and time)
    /// are skipped, so replaying a batch is harmless; the checkpoint never moves backwards.
    ///
    /// Waveforms are quantized to one decimal finer than the catalog shows (1 µV for ECG in mV);
    /// metrics the catalog does not know are stored raw.
    pub fn insert_observations(
        &mut self,
        batch: &[StoredObservation],
        checkpoint: u64,
    ) -> Result<(), StoreError> {
        self.insert_batch(batch, &[], checkpoint)
    }

    /// [`Store::insert_observations`] with the dead letters read in the same stretch of log.
    pub fn insert_batch(
        &mut self,
        batch: &[StoredObservation],
        dead_letters: &[DeadLetterRecord],
        checkpoint: u64,
    ) -> Result<(), StoreError> {
        let checkpoint = offset_to_sql(checkpoint)?;
        let catalog = Catalog::embedded();
        let tx = self.conn.transaction()?;
        {
            let mut insert_vital = tx.prepare_cached(
                "INSERT OR IGNORE INTO vitals (log_offset, device_id, patient_id, room_id, bed_id,
                     metric, value, device_time_ms, received_ms, body_site, implausible,
                     device_flagged, ref_low, ref_high, log_position)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
            )?;
            let mut insert_chunk = tx.prepare_cached(
                "INSERT OR IGNORE INTO waveform_chunks (log_offset, device_id, patient_id, room_id,
                     bed_id, metric, start_ms, end_ms, received_ms, rate_hz, n_samples, encoding,
                     resolution, data, body_site, implausible, device_flagged, log_position)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                     ?17, ?18)",
            )?;
            for stored in batch {
                let log_offset = offset_to_sql(stored.log_offset)?;
                let observation = &stored.observation;
                let device_id = observation.device_id.as_str();
                let patient_id = stored.patient_id.as_ref().map(|id| id.as_str());
                let room_id = stored.room_id.as_ref().map(|id| id.as_str());
                let bed_id = stored.bed_id.as_ref().map(|id| id.as_str());
                let body_site = observation.body_site.map(|region| region.to_string());
                match &observation.value {
                    ObservedValue::Numeric(value) => {
                        // SQLite would store NaN as NULL anyway; say so explicitly.
                        let value = (!value.is_nan()).then_some(*value);
                        insert_vital.execute(params![
                            log_offset,
                            device_id,
                            patient_id,
                            room_id,
                            bed_id,
                            observation.metric,
                            value,
                            observation.device_time.millis(),
                            observation.received_time.millis(),
                            body_site,
                            observation.quality.implausible,
                            observation.quality.device_flagged,
                            observation.reference_range.and_then(|range| range.low),
                            observation.reference_range.and_then(|range| range.high),
                            stored.log_position,
                        ])?;
                    }
                    ObservedValue::Waveform(chunk) => {
                        let resolution = catalog
                            .by_key(&observation.metric)
                            .map(|metric| waveform_codec::resolution_for_decimals(metric.decimals));
                        let (encoding, data, resolution) = match resolution {
                            Some(resolution) => {
                                let (encoding, data) =
                                    waveform_codec::encode(&chunk.samples, resolution)?;
                                (encoding, data, resolution)
                            }
                            None => (
                                Encoding::F32Le,
                                waveform_codec::encode_f32le(&chunk.samples),
                                0.0,
                            ),
                        };
                        let start = observation.device_time;
                        insert_chunk.execute(params![
                            log_offset,
                            device_id,
                            patient_id,
                            room_id,
                            bed_id,
                            observation.metric,
                            start.millis(),
                            start.plus_millis(chunk.duration_millis()).millis(),
                            observation.received_time.millis(),
                            chunk.sample_rate_hz,
                            chunk.samples.len() as i64,
                            encoding.as_str(),
                            resolution,
                            data,
                            body_site,
                            observation.quality.implausible,
                            observation.quality.device_flagged,
                            stored.log_position,
                        ])?;
                    }
                }
            }
            // When each registered device was first and last heard from, for the registry and
            // for its technical state after a restart. Unregistered devices change nothing.
            let mut heard: std::collections::HashMap<&str, (i64, i64)> = Default::default();
            for stored in batch {
                let observation = &stored.observation;
                let received = observation.received_time.millis();
                heard
                    .entry(observation.device_id.as_str())
                    .and_modify(|(first, last)| {
                        *first = (*first).min(received);
                        *last = (*last).max(received);
                    })
                    .or_insert((received, received));
            }
            let mut touch_device = tx.prepare_cached(
                "UPDATE devices SET
                     first_seen_ms = min(coalesce(first_seen_ms, ?2), ?2),
                     last_seen_ms = max(coalesce(last_seen_ms, ?3), ?3)
                 WHERE id = ?1",
            )?;
            for (device_id, (first, last)) in heard {
                touch_device.execute(params![device_id, first, last])?;
            }
            let mut insert_dead_letter = tx.prepare_cached(
                "INSERT OR IGNORE INTO dead_letters (log_offset, source, origin, received_ms,
                     reason, detail, raw)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for dead in dead_letters {
                insert_dead_letter.execute(params![
                    offset_to_sql(dead.log_offset)?,
                    dead.source,
                    dead.origin,
                    dead.received_ms,
                    dead.reason,
                    dead.detail,
                    dead.raw,
                ])?;
            }
            tx.execute(
                "UPDATE checkpoint SET log_offset = max(log_offset, ?1) WHERE id = 1",
                [checkpoint],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The log offset replay resumes at: every record before it has been applied.
    pub fn checkpoint(&self) -> Result<u64, StoreError> {
        let offset: i64 = self.conn.query_row(
            "SELECT log_offset FROM checkpoint WHERE id = 1",
            [],
            |row| row.get(0),
        )?;
        u64::try_from(offset).map_err(|_| StoreError::Corrupt(format!("checkpoint {offset}")))
    }

    /// The subject's values of `metric` with device time in `[from, to)`, oldest first, at most
    /// `limit` of them (the oldest `limit`: page on by querying again from the last time + 1 ms).
    /// Flagged values are included, with their flags; a value the device sent as NaN is NaN.
    pub fn history(
        &self,
        subject: &Subject,
        metric: &str,
        from: Timestamp,
        to: Timestamp,
        limit: usize,
    ) -> Result<Vec<HistoryPoint>, StoreError> {
        let (column, id) = subject_column(subject);
        // The column name comes from a closed set, never from input.
        let sql = format!(
            "SELECT device_time_ms, value, implausible, device_flagged, device_id, ref_low, ref_high
             FROM vitals
             WHERE {column} = ?1 AND metric = ?2 AND device_time_ms >= ?3 AND device_time_ms < ?4
             ORDER BY device_time_ms, log_offset LIMIT ?5"
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_map(
                params![id, metric, from.millis(), to.millis(), limit],
                |row| {
                    Ok(HistoryPoint {
                        time: Timestamp::from_millis(row.get(0)?),
                        value: row.get::<_, Option<f64>>(1)?.unwrap_or(f64::NAN),
                        quality: Quality {
                            implausible: row.get(2)?,
                            device_flagged: row.get(3)?,
                        },
                        device_id: DeviceId::new(row.get::<_, String>(4)?),
                        reference_range: match (
                            row.get::<_, Option<f64>>(5)?,
                            row.get::<_, Option<f64>>(6)?,
                        ) {
                            (None, None) => None,
                            (low, high) => Some(model::ReferenceRange { low, high }),
                        },
                    })
                },
            )?
            .collect::<Result<_, _>>()?)
    }

    /// The last value of every metric the subject has, by device time, flagged or not, ordered
    /// by metric. Used to rebuild the live state quickly.
    pub fn latest_values(&self, subject: &Subject) -> Result<Vec<LatestValue>, StoreError> {
        let (column, id) = subject_column(subject);
        // Ties on device time go to the later log record, then the greater device id, so the
        // answer does not depend on the query plan. Standard SQL, as it must also run on PostgreSQL.
        let sql = format!(
            "SELECT metric, device_time_ms, value, implausible, device_flagged, device_id,
                    received_ms, body_site
             FROM (SELECT *, row_number() OVER (PARTITION BY metric
                       ORDER BY device_time_ms DESC, log_offset DESC, device_id DESC) AS rank
                   FROM vitals WHERE {column} = ?1)
             WHERE rank = 1 ORDER BY metric"
        );
        let rows: Vec<LatestRow> = self
            .conn
            .prepare_cached(&sql)?
            .query_map([id], |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                    row.get(5)?,
                    row.get(6)?,
                    row.get(7)?,
                ))
            })?
            .collect::<Result<_, _>>()?;
        rows.into_iter()
            .map(
                |(metric, time, value, implausible, device_flagged, device_id, received, site)| {
                    Ok(LatestValue {
                        metric,
                        time: Timestamp::from_millis(time),
                        received_time: Timestamp::from_millis(received),
                        value: value.unwrap_or(f64::NAN),
                        quality: Quality {
                            implausible,
                            device_flagged,
                        },
                        device_id: DeviceId::new(device_id),
                        body_site: parse_region(site)?,
                    })
                },
            )
            .collect()
    }

    /// The patient's waveform chunks of `metric` that overlap `[from, to)`, decoded, oldest first.
    /// Chunks are returned whole (they may start before `from` or end after `to`).
    pub fn waveform(
        &self,
        patient: &PatientId,
        metric: &str,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<StoredWaveform>, StoreError> {
        let rows: Vec<ChunkRow> = self
            .conn
            .prepare_cached(
                "SELECT device_id, start_ms, rate_hz, n_samples, encoding, resolution, data,
                        implausible, device_flagged
                 FROM waveform_chunks
                 WHERE patient_id = ?1 AND metric = ?2 AND start_ms < ?4 AND end_ms > ?3
                 ORDER BY start_ms, log_offset",
            )?
            .query_map(
                params![patient.as_str(), metric, from.millis(), to.millis()],
                |row| {
                    Ok((
                        row.get(0)?,
                        row.get(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                        row.get(5)?,
                        row.get(6)?,
                        row.get(7)?,
                        row.get(8)?,
                    ))
                },
            )?
            .collect::<Result<_, _>>()?;
        rows.into_iter()
            .map(
                |(
                    device_id,
                    start,
                    rate_hz,
                    n_samples,
                    encoding,
                    resolution,
                    data,
                    implausible,
                    device_flagged,
                )| {
                    let encoding = Encoding::parse(&encoding).ok_or_else(|| {
                        StoreError::Corrupt(format!("waveform encoding `{encoding}`"))
                    })?;
                    let n_samples = usize::try_from(n_samples)
                        .map_err(|_| StoreError::Corrupt(format!("n_samples {n_samples}")))?;
                    let samples = waveform_codec::decode(encoding, &data, n_samples, resolution)?;
                    Ok(StoredWaveform {
                        device_id: DeviceId::new(device_id),
                        start: Timestamp::from_millis(start),
                        chunk: WaveformChunk {
                            sample_rate_hz: rate_hz,
                            samples,
                        },
                        quality: Quality {
                            implausible,
                            device_flagged,
                        },
                    })
                },
            )
            .collect()
    }

    /// How many numeric rows and waveform chunks are stored (for tests, metrics and checks).
    pub fn counts(&self) -> Result<(u64, u64), StoreError> {
        let vitals: i64 = self
            .conn
            .query_row("SELECT count(*) FROM vitals", [], |row| row.get(0))?;
        let chunks: i64 =
            self.conn
                .query_row("SELECT count(*) FROM waveform_chunks", [], |row| row.get(0))?;
        Ok((vitals as u64, chunks as u64))
    }
}

type LatestRow = (
    String,
    i64,
    Option<f64>,
    bool,
    bool,
    String,
    i64,
    Option<String>,
);

type ChunkRow = (String, i64, f64, i64, String, f64, Vec<u8>, bool, bool);

fn subject_column(subject: &Subject) -> (&'static str, &str) {
    match subject {
        Subject::Patient(id) => ("patient_id", id.as_str()),
        Subject::Room(id) => ("room_id", id.as_str()),
    }
}

pub(crate) fn parse_region(key: Option<String>) -> Result<Option<BodyRegion>, StoreError> {
    key.map(|key| {
        key.parse()
            .map_err(|_| StoreError::Corrupt(format!("body region `{key}`")))
    })
    .transpose()
}

impl Store {
    /// The newest dead letters first.
    pub fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetterRecord>, StoreError> {
        self.dead_letters_where(None, None, limit)
    }

    /// Dead letters, newest first, of one source and/or reason when given.
    pub fn dead_letters_where(
        &self,
        source: Option<&str>,
        reason: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadLetterRecord>, StoreError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT log_offset, source, origin, received_ms, reason, detail, raw
             FROM dead_letters WHERE (?2 IS NULL OR source = ?2) AND (?3 IS NULL OR reason = ?3)
             ORDER BY log_offset DESC LIMIT ?1",
        )?;
        let rows = statement.query_map(params![limit as i64, source, reason], |row| {
            Ok(DeadLetterRecord {
                log_offset: row.get::<_, i64>(0)? as u64,
                source: row.get(1)?,
                origin: row.get(2)?,
                received_ms: row.get(3)?,
                reason: row.get(4)?,
                detail: row.get(5)?,
                raw: row.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
