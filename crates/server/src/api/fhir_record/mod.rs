//! The medical record's FHIR R4 REST API under `/fhir`: the CapabilityStatement, read, vread,
//! history, search (with `_include`, `_sort`, `_count`, paging), `Observation/$lastn`, create,
//! update, delete, and `POST /fhir` for transaction, batch and collection Bundles.
//!
//! The rules live in the `record` crate and the SQL in `store::fhir_record`; this module only
//! knows HTTP: headers (ETag, If-Match, If-None-Exist, Location, Last-Modified), statuses, and
//! errors as OperationOutcome. Every change is acknowledged after its SQL transaction commits
//! (the store is the record's truth; device data has the log instead). A refused change is
//! counted (`metaward_messages_rejected_total{source="fhir_record"}`) and kept as a dead letter.

pub mod capability;
pub mod device_search;
pub mod handlers;
pub mod news2;
pub mod scope;

pub use handlers::ChangeBody;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use record::RecordError;
use serde_json::Value;

use super::{ApiError, AppState};

/// The routes, relative to `/fhir`. `bundle`, `metadata` and `create` are given by the
/// caller, which decides what is device data and what is the record (`api::fhir`).
pub fn routes<B, M, C, TB, TM, TC>(bundle: B, metadata: M, create: C) -> Router<AppState>
where
    B: axum::handler::Handler<TB, AppState>,
    M: axum::handler::Handler<TM, AppState>,
    C: axum::handler::Handler<TC, AppState>,
    TB: 'static,
    TM: 'static,
    TC: 'static,
{
    Router::new()
        .route("/", post(bundle))
        .route("/metadata", get(metadata))
        .route("/Observation/$lastn", get(handlers::lastn))
        .route(
            "/{resource_type}",
            get(handlers::search)
                .post(create)
                .put(handlers::conditional_update)
                .delete(handlers::conditional_delete),
        )
        .route(
            "/{resource_type}/{id}",
            get(handlers::read)
                .put(handlers::update)
                .delete(handlers::delete),
        )
        .route("/{resource_type}/_search", post(handlers::search_by_post))
        .route("/{resource_type}/{id}/_history", get(handlers::history))
        .route(
            "/{resource_type}/{id}/_history/{version}",
            get(handlers::vread),
        )
        .fallback(unknown_interaction)
        .method_not_allowed_fallback(unknown_interaction)
        // An EMR's transaction Bundle for one patient runs to megabytes (Synthea's reach 1 MB);
        // axum's default of 2 MB would refuse a long record.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// The largest request body the FHIR API takes.
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Any other path or method under `/fhir`: an OperationOutcome, not an empty 404 or 405.
async fn unknown_interaction(method: axum::http::Method, uri: axum::http::Uri) -> FhirError {
    FhirError(RecordError::not_supported(format!(
        "{method} {}: not a FHIR interaction this server implements (see /fhir/metadata)",
        uri.path()
    )))
}

pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// A FHIR JSON response.
pub fn fhir_response(status: StatusCode, body: &Value) -> Response {
    fhir_text_response(status, body.to_string())
}

/// A FHIR JSON response already serialized.
pub fn fhir_text_response(status: StatusCode, text: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON))],
        text,
    )
        .into_response()
}

/// An error answered as an OperationOutcome with its HTTP status.
#[derive(Debug)]
pub struct FhirError(pub RecordError);

impl From<RecordError> for FhirError {
    fn from(error: RecordError) -> Self {
        FhirError(error)
    }
}

impl From<ApiError> for FhirError {
    fn from(error: ApiError) -> Self {
        FhirError(RecordError::store(error.message))
    }
}

impl IntoResponse for FhirError {
    fn into_response(self) -> Response {
        let error = self.0;
        if error.status >= 500 {
            tracing::error!(error = %error, "fhir record request failed");
        }
        let status =
            StatusCode::from_u16(error.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        fhir_response(status, &error.to_operation_outcome())
    }
}

/// The base URL clients reach the FHIR API at, from the request's Host.
pub fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}/fhir")
}

/// An HTTP-date (RFC 9110 IMF-fixdate) for Last-Modified.
pub fn http_date(epoch_ms: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = epoch_ms.div_euclid(86_400_000);
    let seconds = epoch_ms.rem_euclid(86_400_000) / 1000;
    let (year, month, day) = record::date::civil_from_days(days);
    format!(
        "{}, {day:02} {} {year:04} {:02}:{:02}:{:02} GMT",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn http_dates() {
        assert_eq!(super::http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            super::http_date(1_764_051_000_000),
            "Tue, 25 Nov 2025 06:10:00 GMT"
        );
    }
}
