//! Device observations as searchable things: the projected `vitals` and `waveform_chunks` rows
//! that have a log position, found by a typed filter (what a FHIR Observation search of device
//! data can ask: patient or room, device, metric, effective and received time, id), sorted and
//! counted in SQL, so a search never loads more rows than the page it answers.
//!
//! The FHIR side (`server::api::fhir_record::device_search`) decides what a search parameter
//! means for device data; this module only runs the filter it builds.

use model::{
    DeviceId, Observation, ObservedValue, PatientId, Quality, ReferenceRange, RoomId, Timestamp,
    WaveformChunk,
};
use rusqlite::types::Value as SqlValue;

use crate::waveform_codec::{self, Encoding};
use crate::{Store, StoreError, offset_to_sql};

/// Rows matching every group, a group matching when any of its tests does.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeviceObservationFilter {
    pub all_of: Vec<Vec<DeviceTest>>,
}

/// One test on a device observation.
#[derive(Clone, Debug, PartialEq)]
pub enum DeviceTest {
    /// Attributed to this patient.
    Patient(String),
    /// A room's environment: attributed to no patient, in this room.
    Room(String),
    /// Whether it has a subject (a patient or a room) at all.
    HasSubject(bool),
    /// Whether it is attributed to a patient.
    HasPatient(bool),
    /// Whether it is an artefact (implausible, or flagged by its device).
    Artefact(bool),
    Device(String),
    /// Its metric is one of these catalog keys.
    MetricIn(Vec<String>),
    /// When the device measured it (a waveform: its first sample).
    Effective(PointTest),
    /// When the server received it (the FHIR `meta.lastUpdated`).
    Received(PointTest),
    /// The observation `{log_offset}-{log_position}`.
    Id {
        log_offset: u64,
        log_position: u32,
    },
    /// Matches nothing (a test the caller knows no device observation passes).
    Never,
}

/// A test of an instant `t` (epoch milliseconds) against bounds, inclusive where it says so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PointTest {
    /// `low <= t <= high`
    Between(i64, i64),
    /// not `low <= t <= high`
    NotBetween(i64, i64),
    /// `t > bound`
    After(i64),
    /// `t < bound`
    Before(i64),
    /// `t >= bound`
    AtLeast(i64),
    /// `t <= bound`
    AtMost(i64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceSortKey {
    Effective,
    Received,
    /// The id's text, `{log_offset}-{log_position}`, compared as text (as FHIR ids are).
    Id,
}

/// A device observation found by a search, with what its FHIR form needs.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceObservationRow {
    pub log_offset: u64,
    pub log_position: u32,
    pub patient_id: Option<PatientId>,
    pub room_id: Option<RoomId>,
    pub observation: Observation,
}

impl DeviceObservationRow {
    /// The FHIR id this observation is read back by.
    pub fn fhir_id(&self) -> String {
        format!("{}-{}", self.log_offset, self.log_position)
    }
}

/// The two tables as one: the same columns under the same names, so one WHERE fits both.
const VITALS_COLUMNS: &str = "0 AS kind, log_offset, log_position, device_id, patient_id, room_id,
    metric, device_time_ms AS t, received_ms, value, body_site, implausible, device_flagged,
    ref_low, ref_high, NULL AS rate_hz, NULL AS n_samples, NULL AS encoding, NULL AS resolution,
    NULL AS data";
const CHUNK_COLUMNS: &str = "1 AS kind, log_offset, log_position, device_id, patient_id, room_id,
    metric, start_ms AS t, received_ms, NULL AS value, body_site, implausible, device_flagged,
    NULL AS ref_low, NULL AS ref_high, rate_hz, n_samples, encoding, resolution, data";

/// The FHIR id as text, which is how ids sort.
const ID_TEXT: &str = "log_offset || '-' || log_position AS id_text";

impl Store {
    /// How many device observations match `filter`, and the first `limit` of them in `sort`
    /// order (each key ascending unless its flag says descending; ties by received time, then
    /// id, as the FHIR record breaks them).
    pub fn search_device_observations(
        &self,
        filter: &DeviceObservationFilter,
        sort: &[(DeviceSortKey, bool)],
        limit: usize,
    ) -> Result<(u64, Vec<DeviceObservationRow>), StoreError> {
        let vitals = where_clause(filter, "device_time_ms")?;
        let chunks = where_clause(filter, "start_ms")?;
        let Some(((vitals_sql, vitals_args), (chunks_sql, chunks_args))) = vitals.zip(chunks)
        else {
            return Ok((0, Vec::new()));
        };
        let args: Vec<SqlValue> = vitals_args.into_iter().chain(chunks_args).collect();

        let total: i64 = self.conn.query_row(
            &format!(
                "SELECT (SELECT count(*) FROM vitals WHERE {vitals_sql})
                      + (SELECT count(*) FROM waveform_chunks WHERE {chunks_sql})"
            ),
            rusqlite::params_from_iter(args.iter()),
            |row| row.get(0),
        )?;
        if limit == 0 || total == 0 {
            return Ok((total as u64, Vec::new()));
        }
        let mut order: Vec<String> = sort
            .iter()
            .map(|(key, descending)| {
                let column = match key {
                    DeviceSortKey::Effective => "t",
                    DeviceSortKey::Received => "received_ms",
                    DeviceSortKey::Id => "id_text",
                };
                format!("{column} {}", if *descending { "DESC" } else { "ASC" })
            })
            .collect();
        order.extend(["received_ms ASC".to_owned(), "id_text ASC".to_owned()]);
        let order = order.join(", ");
        // Each table's first `limit` in the order, then the first `limit` of those: the same
        // rows as ordering the union, but each side can stop early along its index (a
        // patient's newest heart rates) instead of the union being read whole and sorted.
        let sql = format!(
            "SELECT * FROM (
                 SELECT * FROM (
                     SELECT {VITALS_COLUMNS}, {ID_TEXT} FROM vitals WHERE {vitals_sql}
                     ORDER BY {order} LIMIT {limit})
                 UNION ALL
                 SELECT * FROM (
                     SELECT {CHUNK_COLUMNS}, {ID_TEXT} FROM waveform_chunks WHERE {chunks_sql}
                     ORDER BY {order} LIMIT {limit}))
             ORDER BY {order} LIMIT {limit}"
        );
        let mut statement = self.conn.prepare(&sql)?;
        let rows = statement.query_map(rusqlite::params_from_iter(args.iter()), read_row)?;
        let rows = rows
            .map(|row| row?.into_row())
            .collect::<Result<_, StoreError>>()?;
        Ok((total as u64, rows))
    }

    /// The device observation `{log_offset}-{log_position}`, if the projection holds it.
    pub fn device_observation(
        &self,
        log_offset: u64,
        log_position: u32,
    ) -> Result<Option<DeviceObservationRow>, StoreError> {
        let filter = DeviceObservationFilter {
            all_of: vec![vec![DeviceTest::Id {
                log_offset,
                log_position,
            }]],
        };
        let (_, mut rows) = self.search_device_observations(&filter, &[], 1)?;
        Ok(rows.pop())
    }
}

/// The WHERE of one table (`time_column`: its effective time), with its arguments in order;
/// `None` when a group can match nothing, so the search is empty.
#[allow(clippy::type_complexity)]
fn where_clause(
    filter: &DeviceObservationFilter,
    time_column: &str,
) -> Result<Option<(String, Vec<SqlValue>)>, StoreError> {
    // Every row has a log position (v13 rebuilt the projection with them): no test for it
    // here, so counting a patient's values reads only the index.
    let mut sql = vec!["1".to_owned()];
    let mut args = Vec::new();
    for group in &filter.all_of {
        let mut alternatives = Vec::new();
        for test in group {
            if let Some(condition) = condition(test, time_column, &mut args)? {
                alternatives.push(condition);
            }
        }
        if alternatives.is_empty() {
            return Ok(None);
        }
        sql.push(format!("({})", alternatives.join(" OR ")));
    }
    Ok(Some((sql.join(" AND "), args)))
}

/// One test as SQL, pushing its arguments; `None` for a test that matches nothing.
fn condition(
    test: &DeviceTest,
    time_column: &str,
    args: &mut Vec<SqlValue>,
) -> Result<Option<String>, StoreError> {
    let mut arg = |value: SqlValue| {
        args.push(value);
        "?"
    };
    Ok(Some(match test {
        DeviceTest::Patient(id) => format!("patient_id = {}", arg(id.clone().into())),
        DeviceTest::Room(id) => {
            format!(
                "(patient_id IS NULL AND room_id = {})",
                arg(id.clone().into())
            )
        }
        DeviceTest::HasSubject(true) => "(patient_id IS NOT NULL OR room_id IS NOT NULL)".into(),
        DeviceTest::HasSubject(false) => "(patient_id IS NULL AND room_id IS NULL)".into(),
        DeviceTest::HasPatient(true) => "patient_id IS NOT NULL".into(),
        DeviceTest::HasPatient(false) => "patient_id IS NULL".into(),
        DeviceTest::Artefact(true) => "(implausible OR device_flagged)".into(),
        DeviceTest::Artefact(false) => "NOT (implausible OR device_flagged)".into(),
        DeviceTest::Device(id) => format!("device_id = {}", arg(id.clone().into())),
        DeviceTest::MetricIn(metrics) if metrics.is_empty() => return Ok(None),
        DeviceTest::MetricIn(metrics) => {
            let marks: Vec<&str> = metrics
                .iter()
                .map(|metric| arg(metric.clone().into()))
                .collect();
            format!("metric IN ({})", marks.join(", "))
        }
        DeviceTest::Effective(point) => point_sql(time_column, *point, &mut arg),
        DeviceTest::Received(point) => point_sql("received_ms", *point, &mut arg),
        DeviceTest::Id {
            log_offset,
            log_position,
        } => {
            let offset = offset_to_sql(*log_offset)?;
            format!(
                "(log_offset = {} AND log_position = {})",
                arg(offset.into()),
                arg(i64::from(*log_position).into())
            )
        }
        DeviceTest::Never => return Ok(None),
    }))
}

fn point_sql(
    column: &str,
    point: PointTest,
    arg: &mut impl FnMut(SqlValue) -> &'static str,
) -> String {
    match point {
        PointTest::Between(low, high) => {
            format!(
                "{column} BETWEEN {} AND {}",
                arg(low.into()),
                arg(high.into())
            )
        }
        PointTest::NotBetween(low, high) => {
            format!(
                "{column} NOT BETWEEN {} AND {}",
                arg(low.into()),
                arg(high.into())
            )
        }
        PointTest::After(bound) => format!("{column} > {}", arg(bound.into())),
        PointTest::Before(bound) => format!("{column} < {}", arg(bound.into())),
        PointTest::AtLeast(bound) => format!("{column} >= {}", arg(bound.into())),
        PointTest::AtMost(bound) => format!("{column} <= {}", arg(bound.into())),
    }
}

/// A row as SQLite gives it, before decoding.
struct RawRow {
    kind: i64,
    log_offset: i64,
    log_position: i64,
    device_id: String,
    patient_id: Option<String>,
    room_id: Option<String>,
    metric: String,
    time_ms: i64,
    received_ms: i64,
    value: Option<f64>,
    body_site: Option<String>,
    implausible: bool,
    device_flagged: bool,
    ref_low: Option<f64>,
    ref_high: Option<f64>,
    rate_hz: Option<f64>,
    n_samples: Option<i64>,
    encoding: Option<String>,
    resolution: Option<f64>,
    data: Option<Vec<u8>>,
}

fn read_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
    Ok(RawRow {
        kind: row.get("kind")?,
        log_offset: row.get("log_offset")?,
        log_position: row.get("log_position")?,
        device_id: row.get("device_id")?,
        patient_id: row.get("patient_id")?,
        room_id: row.get("room_id")?,
        metric: row.get("metric")?,
        time_ms: row.get("t")?,
        received_ms: row.get("received_ms")?,
        value: row.get("value")?,
        body_site: row.get("body_site")?,
        implausible: row.get("implausible")?,
        device_flagged: row.get("device_flagged")?,
        ref_low: row.get("ref_low")?,
        ref_high: row.get("ref_high")?,
        rate_hz: row.get("rate_hz")?,
        n_samples: row.get("n_samples")?,
        encoding: row.get("encoding")?,
        resolution: row.get("resolution")?,
        data: row.get("data")?,
    })
}

impl RawRow {
    fn into_row(self) -> Result<DeviceObservationRow, StoreError> {
        let corrupt = |what: String| StoreError::Corrupt(what);
        let value = if self.kind == 0 {
            ObservedValue::Numeric(self.value.unwrap_or(f64::NAN))
        } else {
            let encoding = self.encoding.unwrap_or_default();
            let encoding = Encoding::parse(&encoding)
                .ok_or_else(|| corrupt(format!("waveform encoding `{encoding}`")))?;
            let n_samples = usize::try_from(self.n_samples.unwrap_or(-1))
                .map_err(|_| corrupt(format!("n_samples {:?}", self.n_samples)))?;
            let samples = waveform_codec::decode(
                encoding,
                self.data.as_deref().unwrap_or_default(),
                n_samples,
                self.resolution.unwrap_or(0.0),
            )?;
            ObservedValue::Waveform(WaveformChunk {
                sample_rate_hz: self.rate_hz.unwrap_or(0.0),
                samples,
            })
        };
        let body_site = crate::observations::parse_region(self.body_site)?;
        let reference_range =
            (self.ref_low.is_some() || self.ref_high.is_some()).then_some(ReferenceRange {
                low: self.ref_low,
                high: self.ref_high,
            });
        Ok(DeviceObservationRow {
            log_offset: u64::try_from(self.log_offset)
                .map_err(|_| corrupt(format!("log offset {}", self.log_offset)))?,
            log_position: u32::try_from(self.log_position)
                .map_err(|_| corrupt(format!("log position {}", self.log_position)))?,
            patient_id: self.patient_id.map(PatientId::new),
            room_id: self.room_id.map(RoomId::new),
            observation: Observation {
                device_id: DeviceId::new(self.device_id),
                metric: self.metric,
                value,
                device_time: Timestamp::from_millis(self.time_ms),
                received_time: Timestamp::from_millis(self.received_ms),
                body_site,
                quality: Quality {
                    implausible: self.implausible,
                    device_flagged: self.device_flagged,
                },
                reference_range,
            },
        })
    }
}
