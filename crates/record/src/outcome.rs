//! Errors of the record, each with the HTTP status and the FHIR `IssueType` code it maps to,
//! and the OperationOutcome JSON that reports them. Messages never carry patient data: they
//! name types, parameters and positions in a bundle, not values from a resource.

use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RecordError {
    /// The HTTP status the error answers with.
    pub status: u16,
    /// The FHIR R4 IssueType code (`invalid`, `not-found`, `processing`, ...).
    pub code: &'static str,
    pub message: String,
    /// Where in the request: a FHIRPath-like location (`Bundle.entry[3].request.url`).
    pub expression: Option<String>,
}

impl RecordError {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> RecordError {
        RecordError {
            status,
            code,
            message: message.into(),
            expression: None,
        }
    }

    /// 400: the request is malformed (bad JSON shape, bad search parameter value).
    pub fn invalid(message: impl Into<String>) -> RecordError {
        RecordError::new(400, "invalid", message)
    }

    /// 403: the caller may not see or change this (outside their wards, or their role).
    pub fn forbidden(message: impl Into<String>) -> RecordError {
        RecordError::new(403, "forbidden", message)
    }

    /// 404: no such resource (or type).
    pub fn not_found(message: impl Into<String>) -> RecordError {
        RecordError::new(404, "not-found", message)
    }

    /// 410: the resource existed and was deleted.
    pub fn gone(message: impl Into<String>) -> RecordError {
        RecordError::new(410, "deleted", message)
    }

    /// 412: a condition (If-Match, a conditional create/update/reference) did not hold.
    pub fn precondition_failed(message: impl Into<String>) -> RecordError {
        RecordError::new(412, "conflict", message)
    }

    /// 409: the request conflicts with the record's current state.
    pub fn conflict(message: impl Into<String>) -> RecordError {
        RecordError::new(409, "conflict", message)
    }

    /// 422: well-formed, but not a resource the record can take.
    pub fn unprocessable(message: impl Into<String>) -> RecordError {
        RecordError::new(422, "processing", message)
    }

    /// 501: a FHIR interaction or operation this server does not implement.
    pub fn not_supported(message: impl Into<String>) -> RecordError {
        RecordError::new(501, "not-supported", message)
    }

    /// 500: the store failed; the message goes to the log, not necessarily to the client.
    pub fn store(message: impl Into<String>) -> RecordError {
        RecordError::new(500, "exception", message)
    }

    pub fn at(mut self, expression: impl Into<String>) -> RecordError {
        self.expression = Some(expression.into());
        self
    }

    /// The OperationOutcome reporting this error.
    pub fn to_operation_outcome(&self) -> Value {
        operation_outcome(
            "error",
            self.code,
            &self.message,
            self.expression.as_deref(),
        )
    }
}

/// An OperationOutcome with one issue.
pub fn operation_outcome(
    severity: &str,
    code: &str,
    diagnostics: &str,
    expression: Option<&str>,
) -> Value {
    let mut issue = json!({ "severity": severity, "code": code, "diagnostics": diagnostics });
    if let Some(expression) = expression {
        issue["expression"] = json!([expression]);
    }
    json!({ "resourceType": "OperationOutcome", "issue": [issue] })
}

/// The reason phrase for the statuses the record answers with, for `Bundle.entry.response.status`.
pub fn status_line(status: u16) -> String {
    let reason = match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        409 => "Conflict",
        410 => "Gone",
        412 => "Precondition Failed",
        422 => "Unprocessable Entity",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        _ => "",
    };
    format!("{status} {reason}").trim_end().to_owned()
}
