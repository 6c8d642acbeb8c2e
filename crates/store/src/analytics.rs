//! Read-only SQL for analysts, over the same SQLite database the server writes (WAL lets it
//! read while the projection writes). Each query gets a connection of its own, opened read-only,
//! with an authorizer that allows reading and nothing else (no ATTACH of other files, no PRAGMA
//! beyond the schema's description), a time limit enforced by SQLite's progress handler and a
//! row limit. The schema analysts query is documented in docs/sql.md.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

/// How much one query may take.
#[derive(Clone, Copy, Debug)]
pub struct SqlLimits {
    pub max_rows: usize,
    pub timeout: Duration,
}

impl Default for SqlLimits {
    fn default() -> Self {
        SqlLimits {
            max_rows: 10_000,
            timeout: Duration::from_secs(5),
        }
    }
}

/// A cell: SQLite's own types.
#[derive(Clone, Debug, PartialEq)]
pub enum SqlValue {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    /// Blobs are returned as their length: raw bytes are not for a table on screen.
    Blob(usize),
}

#[derive(Clone, Debug, PartialEq)]
pub struct SqlResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<SqlValue>>,
    /// More rows existed than `max_rows`.
    pub truncated: bool,
    pub elapsed: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error("only one read-only SELECT statement is allowed: {0}")]
    NotAllowed(String),
    #[error("the query ran longer than {0:?} and was stopped")]
    Timeout(Duration),
    #[error("{0}")]
    Sql(String),
}

/// Runs one read-only query against the database at `path`, over every ward.
pub fn query_read_only(path: &Path, sql: &str, limits: SqlLimits) -> Result<SqlResult, SqlError> {
    query_read_only_in(path, sql, limits, None)
}

/// Runs one read-only query seeing only `wards` (`None`: every ward). For a ward-scoped
/// caller each ward table is shadowed by a temporary view of the same name holding only that
/// ward's rows (SQLite resolves an unqualified name in `temp` first), reading the real tables
/// other than through those views is refused, and tables that cannot be split by ward (devices,
/// dead letters, the FHIR record, users, audit) are refused.
pub fn query_read_only_in(
    path: &Path,
    sql: &str,
    limits: SqlLimits,
    wards: Option<&[String]>,
) -> Result<SqlResult, SqlError> {
    let started = Instant::now();
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(path, flags).map_err(sql_error)?;
    conn.busy_timeout(limits.timeout).map_err(sql_error)?;
    match wards {
        None => conn.authorizer(Some(only_reading)).map_err(sql_error)?,
        Some(wards) => {
            conn.execute_batch(&ward_views(wards)).map_err(sql_error)?;
            conn.authorizer(Some(only_reading_through_ward_views))
                .map_err(sql_error)?
        }
    }
    let deadline = started + limits.timeout;
    conn.progress_handler(10_000, Some(move || Instant::now() > deadline))
        .map_err(sql_error)?;
    let timed_out = |error: rusqlite::Error| {
        if Instant::now() > deadline {
            SqlError::Timeout(limits.timeout)
        } else {
            sql_error(error)
        }
    };

    let mut statement = conn.prepare(sql).map_err(|error| match error {
        rusqlite::Error::SqliteFailure(failure, ref message)
            if failure.code == rusqlite::ErrorCode::AuthorizationForStatementDenied =>
        {
            SqlError::NotAllowed(message.clone().unwrap_or_else(|| "not authorized".into()))
        }
        rusqlite::Error::MultipleStatement => {
            SqlError::NotAllowed("more than one statement".into())
        }
        other => sql_error(other),
    })?;
    if !statement.readonly() {
        return Err(SqlError::NotAllowed("the statement would write".into()));
    }
    let columns: Vec<String> = statement.column_names().map(str::to_owned).collect();
    let width = columns.len();
    let mut rows = Vec::new();
    let mut truncated = false;
    let mut cursor = statement.query([]).map_err(timed_out)?;
    while let Some(row) = cursor.next().map_err(timed_out)? {
        if rows.len() == limits.max_rows {
            truncated = true;
            break;
        }
        let mut cells = Vec::with_capacity(width);
        for i in 0..width {
            cells.push(match row.get_ref(i).map_err(sql_error)? {
                ValueRef::Null => SqlValue::Null,
                ValueRef::Integer(v) => SqlValue::Integer(v),
                ValueRef::Real(v) => SqlValue::Real(v),
                ValueRef::Text(text) => SqlValue::Text(String::from_utf8_lossy(text).into_owned()),
                ValueRef::Blob(blob) => SqlValue::Blob(blob.len()),
            });
        }
        rows.push(cells);
    }
    Ok(SqlResult {
        columns,
        rows,
        truncated,
        elapsed: started.elapsed(),
    })
}

/// Tables no analyst reads: secrets (and the hashes of bearer tokens).
const NOT_FOR_ANALYSTS: &[&str] = &["device_credentials", "api_tokens", "sessions"];

/// Reading tables (but not secrets), calling functions, recursive CTEs, and the pragmas that
/// describe the schema.
fn only_reading(context: AuthContext<'_>) -> Authorization {
    match context.action {
        AuthAction::Read { table_name, .. } if NOT_FOR_ANALYSTS.contains(&table_name) => {
            Authorization::Deny
        }
        // Users are fine to count and join; their password hashes are not for anyone.
        AuthAction::Read {
            table_name: "users",
            column_name: "password_hash",
        } => Authorization::Deny,
        AuthAction::Select | AuthAction::Read { .. } | AuthAction::Function { .. } => {
            Authorization::Allow
        }
        AuthAction::Recursive => Authorization::Allow,
        AuthAction::Pragma {
            pragma_name: "table_info" | "table_list" | "index_list",
            ..
        } => Authorization::Allow,
        _ => Authorization::Deny,
    }
}

/// The temporary views that shadow the ward tables for a caller of `wards`. A patient belongs
/// to a ward once they have stayed in one of its beds.
fn ward_views(wards: &[String]) -> String {
    let list = if wards.is_empty() {
        "NULL".to_owned()
    } else {
        wards
            .iter()
            .map(|w| format!("'{}'", w.replace('\'', "''")))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let rooms = format!("SELECT id FROM main.rooms WHERE ward_id IN ({list})");
    let beds = format!("SELECT id FROM main.beds WHERE room_id IN ({rooms})");
    let patients = format!("SELECT patient_id FROM main.bed_occupancy WHERE bed_id IN ({beds})");
    let by_patient = format!("patient_id IN ({patients})");
    let patient_or_room = format!("{by_patient} OR room_id IN ({rooms})");
    let views = [
        ("wards", format!("id IN ({list})")),
        ("rooms", format!("ward_id IN ({list})")),
        ("beds", format!("room_id IN ({rooms})")),
        ("bed_occupancy", format!("bed_id IN ({beds})")),
        ("patients", format!("id IN ({patients})")),
        ("conditions", by_patient.clone()),
        ("vitals", patient_or_room.clone()),
        ("waveform_chunks", patient_or_room),
        ("news2_scores", by_patient.clone()),
        ("oxygen_targets", by_patient.clone()),
        ("round_notes", by_patient.clone()),
        ("alarm_limit_overrides", by_patient.clone()),
        ("alarm_limit_tiers", by_patient),
        (
            "alarms",
            format!(
                "(subject_kind = 'patient' AND subject_id IN ({patients})) \
                 OR (subject_kind = 'room' AND subject_id IN ({rooms}))"
            ),
        ),
        (
            "alarm_events",
            "alarm_id IN (SELECT id FROM temp.alarms)".to_owned(),
        ),
        // The record's views, to the ward's patients.
        ("record_encounters", format!("patient_id IN ({patients})")),
        ("record_conditions", format!("patient_id IN ({patients})")),
        ("record_medications", format!("patient_id IN ({patients})")),
        ("record_allergies", format!("patient_id IN ({patients})")),
        ("record_labs", format!("patient_id IN ({patients})")),
    ];
    views
        .iter()
        .map(|(table, condition)| {
            format!("CREATE TEMP VIEW {table} AS SELECT * FROM main.{table} WHERE {condition};\n")
        })
        .collect()
}

/// For a ward-scoped caller: [`only_reading`], and the real tables only through the ward views.
fn only_reading_through_ward_views(context: AuthContext<'_>) -> Authorization {
    if let AuthAction::Read { .. } = context.action
        && context.database_name == Some("main")
        && context.accessor.is_none()
    {
        return Authorization::Deny;
    }
    only_reading(context)
}

fn sql_error(error: rusqlite::Error) -> SqlError {
    SqlError::Sql(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    fn database() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.sqlite");
        let store = Store::open(&path).unwrap();
        store
            .connection()
            .execute_batch(
                "INSERT INTO wards (id, name) VALUES ('w1', 'Ward 1'), ('w2', 'Ward 2');",
            )
            .unwrap();
        (dir, path)
    }

    #[test]
    fn a_select_returns_columns_and_rows() {
        let (_dir, path) = database();
        let result = query_read_only(
            &path,
            "SELECT id, name, length(name) AS n FROM wards ORDER BY id",
            SqlLimits::default(),
        )
        .unwrap();
        assert_eq!(result.columns, ["id", "name", "n"]);
        assert_eq!(result.rows.len(), 2);
        assert_eq!(result.rows[0][0], SqlValue::Text("w1".into()));
        assert_eq!(result.rows[0][2], SqlValue::Integer(6));
        assert!(!result.truncated);
    }

    #[test]
    fn rows_beyond_the_limit_are_cut_and_said_so() {
        let (_dir, path) = database();
        let limits = SqlLimits {
            max_rows: 1,
            ..SqlLimits::default()
        };
        let result = query_read_only(&path, "SELECT id FROM wards", limits).unwrap();
        assert_eq!(result.rows.len(), 1);
        assert!(result.truncated);
    }

    #[test]
    fn anything_but_reading_is_refused() {
        let (_dir, path) = database();
        for sql in [
            "DELETE FROM wards",
            "INSERT INTO wards (id, name) VALUES ('w3', 'x')",
            "UPDATE wards SET name = 'x'",
            "DROP TABLE wards",
            "CREATE TABLE t (x)",
            "ATTACH DATABASE '/tmp/other.sqlite' AS other",
            "PRAGMA journal_mode = DELETE",
            "SELECT 1; DELETE FROM wards",
            "SELECT * FROM device_credentials",
            "SELECT hex(token_hash) FROM api_tokens",
            "SELECT hex(access_hash) FROM sessions",
            "SELECT password_hash FROM users",
            "SELECT * FROM users",
        ] {
            let refused = query_read_only(&path, sql, SqlLimits::default());
            assert!(
                matches!(refused, Err(SqlError::NotAllowed(_))),
                "{sql}: {refused:?}"
            );
        }
        let still =
            query_read_only(&path, "SELECT count(*) FROM wards", SqlLimits::default()).unwrap();
        assert_eq!(still.rows[0][0], SqlValue::Integer(2));
        // Describing the schema is allowed.
        let info = query_read_only(&path, "PRAGMA table_info(wards)", SqlLimits::default());
        assert!(info.is_ok(), "{info:?}");
    }

    #[test]
    fn a_ward_scoped_caller_sees_only_their_wards_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.sqlite");
        let store = Store::open(&path).unwrap();
        store
            .connection()
            .execute_batch(
                "INSERT INTO wards (id, name) VALUES ('w1', 'Ward 1'), ('w2', 'Ward 2');
                 INSERT INTO rooms (id, ward_id, name, x, z, width, depth)
                     VALUES ('r1', 'w1', 'R1', 0, 0, 1, 1), ('r2', 'w2', 'R2', 0, 0, 1, 1);
                 INSERT INTO beds (id, room_id, label, x, z, rotation)
                     VALUES ('b1', 'r1', 'B1', 0, 0, 0), ('b2', 'r2', 'B2', 0, 0, 0);
                 INSERT INTO patients (id, name, sex) VALUES ('p1', 'One', 'female'), ('p2', 'Two', 'male');
                 INSERT INTO bed_occupancy (patient_id, bed_id, from_ms) VALUES ('p1', 'b1', 0), ('p2', 'b2', 0);
                 INSERT INTO vitals (log_offset, device_id, patient_id, metric, value, device_time_ms, received_ms)
                     VALUES (1, 'd1', 'p1', 'spo2', 97, 1, 1), (2, 'd2', 'p2', 'spo2', 88, 1, 1);",
            )
            .unwrap();
        // The record: a medication each for p1 and p2.
        for (id, patient) in [("m1", "p1"), ("m2", "p2")] {
            let resource = format!(
                r#"{{"resourceType": "MedicationRequest", "id": "{id}", "status": "active",
                    "subject": {{"reference": "Patient/{patient}"}},
                    "medicationCodeableConcept": {{"coding": [{{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "313782", "display": "Acetaminophen 325 MG"}}]}}}}"#
            );
            store
                .connection()
                .execute(
                    "INSERT INTO fhir_resources (resource_type, id, version, last_updated_ms, resource)
                     VALUES ('MedicationRequest', ?1, 1, 0, ?2)",
                    rusqlite::params![id, resource],
                )
                .unwrap();
            store
                .connection()
                .execute(
                    "INSERT INTO fhir_current (resource_type, id, version, last_updated_ms)
                     VALUES ('MedicationRequest', ?1, 1, 0)",
                    [id],
                )
                .unwrap();
        }
        let w1 = ["w1".to_owned()];
        let ask = |sql: &str| query_read_only_in(&path, sql, SqlLimits::default(), Some(&w1));
        let seen = ask("SELECT p.id, v.value FROM patients p JOIN vitals v ON v.patient_id = p.id")
            .unwrap();
        assert_eq!(
            seen.rows,
            [vec![SqlValue::Text("p1".into()), SqlValue::Real(97.0)]]
        );
        assert_eq!(
            ask("SELECT count(*) FROM wards").unwrap().rows[0][0],
            SqlValue::Integer(1)
        );
        // The record joins the ward's tables, within the ward.
        let meds = ask(
            "SELECT p.id, m.code, m.display FROM patients p JOIN record_medications m ON m.patient_id = p.id",
        )
        .unwrap();
        assert_eq!(
            meds.rows,
            [vec![
                SqlValue::Text("p1".into()),
                SqlValue::Text("313782".into()),
                SqlValue::Text("Acetaminophen 325 MG".into())
            ]]
        );
        let everyone = query_read_only(
            &path,
            "SELECT count(*) FROM record_medications",
            SqlLimits::default(),
        )
        .unwrap();
        assert_eq!(everyone.rows[0][0], SqlValue::Integer(2));
        // The real tables, and the tables no ward owns, are out of reach.
        for sql in [
            "SELECT * FROM main.vitals",
            "SELECT * FROM devices",
            "SELECT * FROM dead_letters",
            "SELECT * FROM fhir_resources",
            "SELECT * FROM main.record_medications",
        ] {
            assert!(matches!(ask(sql), Err(SqlError::NotAllowed(_))), "{sql}");
        }
        // Every ward: everything.
        let all =
            query_read_only(&path, "SELECT count(*) FROM vitals", SqlLimits::default()).unwrap();
        assert_eq!(all.rows[0][0], SqlValue::Integer(2));
    }

    #[test]
    fn a_query_that_runs_too_long_is_stopped() {
        let (_dir, path) = database();
        let limits = SqlLimits {
            max_rows: 10,
            timeout: Duration::from_millis(200),
        };
        let endless = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n)
                       SELECT count(*) FROM n";
        let stopped = query_read_only(&path, endless, limits);
        assert!(matches!(stopped, Err(SqlError::Timeout(_))), "{stopped:?}");
    }

    #[test]
    fn errors_say_what_sqlite_said() {
        let (_dir, path) = database();
        let error =
            query_read_only(&path, "SELECT nope FROM wards", SqlLimits::default()).unwrap_err();
        assert!(error.to_string().contains("no such column"), "{error}");
    }
}
