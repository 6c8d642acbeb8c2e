//! `/api/v1/tokens…`: admins create, list, rotate and revoke API tokens (`auth::tokens`). The
//! secret is in the answer of a create or a rotate, once; lists never show it. The middleware
//! audits each change.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::tokens::{self, NewToken, TokenError};
use crate::api::{ApiError, AppState};
use crate::pipeline::now;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/tokens", get(list).post(create))
        .route("/tokens/{name}", delete(revoke))
        .route("/tokens/{name}/rotate", post(rotate))
}

fn api_error(error: TokenError) -> ApiError {
    match error {
        TokenError::Store(store::StoreError::Conflict(message)) => ApiError::conflict(message),
        TokenError::Store(store::StoreError::NotFound { what, .. }) => ApiError::not_found(what),
        TokenError::Store(error) => ApiError::from(error),
        other => ApiError::bad_request(other.to_string()),
    }
}

pub async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let records = state.stores.read(|store| store.api_tokens()).await??;
    Ok(Json(json!(
        records.iter().map(tokens::token_json).collect::<Vec<_>>()
    )))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTokenBody {
    name: String,
    /// `device` or `service`.
    kind: String,
    /// For a device token: the device it speaks for.
    device: Option<String>,
    /// For a service token: the user it acts as.
    user: Option<String>,
    expires_in_days: Option<u32>,
}

/// Creates a token; its secret is in the answer, once.
pub async fn create(
    State(state): State<AppState>,
    body: Result<Json<NewTokenBody>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(body) = body?;
    let kind = match (body.kind.as_str(), body.device, body.user) {
        ("device", Some(device), None) => NewToken::Device(device),
        ("service", None, Some(user)) => NewToken::Service(user),
        _ => {
            return Err(ApiError::bad_request(
                "a token is {\"kind\": \"device\", \"device\": ID} or {\"kind\": \"service\", \"user\": NAME}",
            ));
        }
    };
    let (name, days) = (body.name, body.expires_in_days);
    let (record, secret) = state
        .stores
        .write(move |store| tokens::create(store, &name, kind, days, now().millis()))
        .await?
        .map_err(api_error)?;
    let mut answer = tokens::token_json(&record);
    answer["token"] = json!(secret);
    Ok((StatusCode::CREATED, Json(answer)))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RotateBody {
    expires_in_days: Option<u32>,
}

/// A new secret (in the answer, once); the old one stops working at once.
pub async fn rotate(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Option<Json<RotateBody>>,
) -> Result<Json<Value>, ApiError> {
    let days = body.map(|Json(body)| body.expires_in_days).unwrap_or(None);
    let (record, secret) = state
        .stores
        .write(move |store| tokens::rotate(store, &name, days, now().millis()))
        .await?
        .map_err(api_error)?;
    let mut answer = tokens::token_json(&record);
    answer["token"] = json!(secret);
    Ok(Json(answer))
}

pub async fn revoke(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state
        .stores
        .write(move |store| store.revoke_api_token(&name))
        .await?
        .map_err(|error| api_error(error.into()))?;
    Ok(StatusCode::NO_CONTENT)
}
