//! One error shape for the REST API: an HTTP status and `{"error": {"code", "message"}}`.
//! Messages never carry patient data.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn not_found(what: &str) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: format!("{what} not found"),
        }
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::FORBIDDEN,
            code: "forbidden",
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "bad_request",
            message: message.into(),
        }
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::CONFLICT,
            code: "conflict",
            message: message.into(),
        }
    }

    pub fn internal(error: impl std::fmt::Display) -> ApiError {
        tracing::error!(%error, "request failed");
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: "internal error; see the server log".into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        (self.status, Json(body)).into_response()
    }
}

impl From<store::StoreError> for ApiError {
    fn from(error: store::StoreError) -> Self {
        ApiError::internal(error)
    }
}

/// The alarm engine's refusals in HTTP terms: an unknown alarm is 404, a change the alarm's
/// state does not allow is 409, a silence outside the rules is 400.
impl From<clinical::alarms::AlarmError> for ApiError {
    fn from(error: clinical::alarms::AlarmError) -> Self {
        use clinical::alarms::AlarmError;
        let (status, code) = match &error {
            AlarmError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            AlarmError::Resolved(_) | AlarmError::AlreadyAcknowledged(_) => {
                (StatusCode::CONFLICT, "conflict")
            }
            AlarmError::SilenceTooLong { .. }
            | AlarmError::SilenceWithoutReason
            | AlarmError::Config(_) => (StatusCode::BAD_REQUEST, "bad_request"),
        };
        ApiError {
            status,
            code,
            message: error.to_string(),
        }
    }
}

/// A body that is not the JSON the route takes is the caller's error: 400 with what was wrong.
impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::JsonRejection) -> Self {
        ApiError::bad_request(rejection.body_text())
    }
}
