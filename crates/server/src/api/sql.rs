//! `POST /api/v1/sql`: analysts' read-only SQL over the documented schema (docs/sql.md), with
//! a row limit and a time limit. Refusals and SQL errors are 400 with SQLite's own words.

use std::time::Duration;

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use serde::Deserialize;
use serde_json::{Value, json};
use store::analytics::{SqlError, SqlLimits, SqlValue};

use super::{ApiError, AppState};
use crate::auth::Caller;

/// The most a caller may ask for.
const MAX_ROWS: usize = 100_000;
const MAX_TIMEOUT_MS: u64 = 30_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlRequest {
    query: String,
    /// Rows to return at most (default 10 000).
    limit: Option<usize>,
    /// Milliseconds the query may run (default 5 000).
    timeout_ms: Option<u64>,
}

pub async fn run(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<SqlRequest>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(request) = body?;
    let defaults = SqlLimits::default();
    let limits = SqlLimits {
        max_rows: request
            .limit
            .unwrap_or(defaults.max_rows)
            .clamp(1, MAX_ROWS),
        timeout: request.timeout_ms.map_or(defaults.timeout, |ms| {
            Duration::from_millis(ms.clamp(1, MAX_TIMEOUT_MS))
        }),
    };
    let result = state
        .stores
        .query_read_only(
            request.query,
            limits,
            caller
                .wards
                .as_ref()
                .map(|wards| wards.iter().map(ToString::to_string).collect()),
        )
        .await?
        .map_err(|error| {
            let code = match error {
                SqlError::NotAllowed(_) => "not_read_only",
                SqlError::Timeout(_) => "timeout",
                SqlError::Sql(_) => "sql",
            };
            ApiError {
                status: axum::http::StatusCode::BAD_REQUEST,
                code,
                message: error.to_string(),
            }
        })?;
    let rows: Vec<Vec<Value>> = result
        .rows
        .iter()
        .map(|row| row.iter().map(cell_json).collect())
        .collect();
    Ok(Json(json!({
        "columns": result.columns,
        "rows": rows,
        "truncated": result.truncated,
        "elapsed_ms": result.elapsed.as_secs_f64() * 1000.0,
    })))
}

pub fn cell_json(cell: &SqlValue) -> Value {
    match cell {
        SqlValue::Null => Value::Null,
        SqlValue::Integer(v) => json!(v),
        SqlValue::Real(v) => json!(v),
        SqlValue::Text(v) => json!(v),
        SqlValue::Blob(len) => json!({ "blob_bytes": len }),
    }
}
