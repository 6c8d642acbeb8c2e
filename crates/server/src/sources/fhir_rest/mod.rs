//! FHIR R4 device data over HTTP under `/fhir` (docs/fhir.md): device Observations (single
//! create, transaction and batch Bundles) into the ingest pipeline, and ward Devices from the
//! record into the device registry. `api::fhir` decides what reaches here.
//!
//! Every answer is FHIR: the resource or a Bundle on success, an OperationOutcome with the
//! FHIRPath of the offending element otherwise. An Observation is answered 201 only once the log
//! has made it durable; refused input is kept as a dead letter and counted under its reason
//! before the error is answered.

pub mod device;
pub mod observation;
pub mod read;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fhir::{Issue, IssueCode};
use serde::Serialize;

pub const SOURCE: &str = "fhir";
pub const FHIR_JSON: &str = "application/fhir+json";
/// The largest request body read: the whole `/fhir` endpoint's (a record Bundle runs to
/// megabytes), stated here so answers can name it.
pub const BODY_LIMIT_BYTES: usize = crate::api::fhir_record::MAX_BODY_BYTES;

/// A FHIR resource as the HTTP answer, `application/fhir+json`.
pub fn resource_response(status: StatusCode, resource: &impl Serialize) -> Response {
    let body = serde_json::to_vec(resource).expect("FHIR types serialize");
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON))],
        body,
    )
        .into_response()
}

pub fn outcome_response(issue: &Issue) -> Response {
    let status = StatusCode::from_u16(issue.status).unwrap_or(StatusCode::BAD_REQUEST);
    resource_response(status, &issue.to_outcome())
}

/// FHIR's JSON media type, or plain JSON (accepted too, as many device gateways send it).
pub fn check_content_type(headers: &HeaderMap) -> Result<(), Issue> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let media_type = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if media_type == FHIR_JSON || media_type == "application/json" {
        return Ok(());
    }
    Err(Issue::new(
        415,
        IssueCode::NotSupported,
        "media_type",
        None,
        format!(
            "content type `{content_type}` is not supported; send application/fhir+json (or application/json)"
        ),
    ))
}

/// The body as JSON, or 400 with where the syntax broke.
pub fn parse_json(body: &[u8]) -> Result<serde_json::Value, Issue> {
    serde_json::from_slice(body).map_err(|error| {
        Issue::new(
            400,
            IssueCode::Invalid,
            "json",
            None,
            format!("the body is not valid JSON: {error}"),
        )
    })
}

/// For failures of ours (the log could not make data durable): 500, nothing was accepted.
pub fn server_issue(what: &str) -> Issue {
    Issue::new(500, IssueCode::Exception, "internal", None, what.to_owned())
}
