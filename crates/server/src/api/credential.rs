//! `PUT` / `DELETE /api/v1/devices/{device_id}/credential`: set, rotate and revoke a device's
//! MQTT credential for the embedded broker. The secret is generated here and returned once;
//! only its salted Argon2id hash is stored. Changes apply to the broker at once (no restart):
//! the next CONNECT checks the new hash, and a connection that proved a rotated or revoked
//! secret may publish no more.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use model::DeviceId;
use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::pipeline::now;
use crate::sources::mqtt::credentials::{generate_secret, hash_secret};

pub async fn set_credential(
    State(state): State<AppState>,
    Path(device_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = DeviceId::new(&device_id);
    let secret = generate_secret();
    let hash = {
        let secret = secret.clone();
        tokio::task::spawn_blocking(move || hash_secret(&secret))
            .await
            .map_err(ApiError::internal)?
    };
    let set_at = now();
    let (stored_id, stored_hash) = (id.clone(), hash.clone());
    let stored = state
        .stores
        .write(move |store| store.set_device_credential(&stored_id, &stored_hash, set_at))
        .await?;
    match stored {
        Ok(()) => {}
        Err(store::StoreError::NotFound { .. }) => return Err(ApiError::not_found("device")),
        Err(error) => return Err(error.into()),
    }
    state.credentials.set(id, hash);
    tracing::info!(device = %device_id, "device mqtt credential set");
    Ok(Json(json!({
        "device_id": device_id,
        "username": device_id,
        "secret": secret,
        "set_at": set_at.millis(),
    })))
}

pub async fn revoke_credential(
    State(state): State<AppState>,
    Path(device_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = DeviceId::new(&device_id);
    let removed_id = id.clone();
    let removed = state
        .stores
        .write(move |store| store.remove_device_credential(&removed_id))
        .await??;
    if !removed {
        return Err(ApiError::not_found("device credential"));
    }
    state.credentials.revoke(&id);
    tracing::info!(device = %device_id, "device mqtt credential revoked");
    Ok(StatusCode::NO_CONTENT)
}
