//! `/fhir`: one FHIR R4 endpoint for two kinds of data.
//!
//! - **Device observations** (an Observation with a `device` reference, or a Bundle made only
//!   of those) are device data: they go through the ingest pipeline into the durable log and
//!   the live twin (`sources::fhir_rest`), answered once durable.
//! - **Everything else** is the medical record (`api::fhir_record`): Patients, Encounters,
//!   Conditions, labs, Devices, ... kept versioned in the SQL store and searchable.
//!
//! A Device written to the record that describes a ward device (its kind is known) is also
//! registered in the device registry under its FHIR id, with its identifiers, so the same
//! device speaks over MQTT, HL7 and FHIR as one.

use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{OriginalUri, Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::AppState;
use super::fhir_record::{self, ChangeBody};
use crate::auth::tokens::DeviceCaller;
use crate::sources::fhir_rest;

/// A device token posted something that is not its device data (a record resource, a Bundle
/// with other entries): refused as device input is (403, counted, dead letter).
async fn refuse_device(
    state: &AppState,
    uri: &OriginalUri,
    body: Result<Bytes, BytesRejection>,
    device: &DeviceCaller,
) -> Response {
    let issue = fhir_rest::observation::device_scope_issue(&format!(
        "a device token may only post its own device Observations (or a Bundle of only those); this is not device data of device {}",
        device.0
    ));
    let raw = body.map(|bytes| bytes.to_vec()).unwrap_or_default();
    fhir_rest::observation::refuse_device(state, uri.path(), raw, &issue).await
}

pub fn routes() -> Router<AppState> {
    fhir_record::routes(bundle, metadata, create)
}

/// Whether a parsed body is device data: an Observation naming its device (by reference or
/// by identifier).
fn is_device_observation(resource: &Value) -> bool {
    resource["resourceType"] == "Observation" && resource["device"].is_object()
}

/// A Bundle whose every entry is a device observation posted as such.
fn is_device_bundle(bundle: &Value) -> bool {
    bundle["entry"].as_array().is_some_and(|entries| {
        !entries.is_empty()
            && entries.iter().all(|entry| {
                entry["request"]["method"] == "POST" && is_device_observation(&entry["resource"])
            })
    })
}

async fn bundle(
    state: State<AppState>,
    device: Option<Extension<DeviceCaller>>,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    // A readable Bundle that is not made only of device observations is the record's; the
    // device path explains anything else (not JSON, not a Bundle) in device terms.
    let record_bundle = body
        .as_ref()
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(bytes).ok())
        .is_some_and(|bundle| bundle["resourceType"] == "Bundle" && !is_device_bundle(&bundle));
    let device_data = !record_bundle;
    let speaker = device.map(|Extension(device)| device);
    if let Some(speaker) = &speaker
        && !device_data
    {
        return refuse_device(&state, &uri, body, speaker).await;
    }
    if device_data {
        let speaker = speaker.map(|speaker| speaker.0);
        return fhir_rest::observation::bundle(state, uri, headers, body, speaker).await;
    }
    match body {
        Ok(bytes) => fhir_record::handlers::bundle(state, ChangeBody(bytes))
            .await
            .into_response(),
        // The record path explains an unreadable body in its own terms.
        Err(rejection) => {
            fhir_rest::observation::bundle(state, uri, headers, Err(rejection), None).await
        }
    }
}

async fn create(
    state: State<AppState>,
    device: Option<Extension<DeviceCaller>>,
    Path(resource_type): Path<String>,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    // An Observation is device data unless it is readable and names no device: the device
    // path is the one that explains a body it cannot read in device terms (media type, JSON).
    let record_observation = body
        .as_ref()
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(bytes).ok())
        .is_some_and(|resource| resource.is_object() && !is_device_observation(&resource));
    let device_data = resource_type == "Observation" && !record_observation;
    let speaker = device.map(|Extension(device)| device);
    if let Some(speaker) = &speaker
        && !device_data
    {
        return refuse_device(&state, &uri, body, speaker).await;
    }
    if device_data {
        let speaker = speaker.map(|speaker| speaker.0);
        return fhir_rest::observation::create(state, uri, headers, body, speaker).await;
    }
    match body {
        Ok(bytes) => {
            fhir_record::handlers::create(state, Path(resource_type), headers, ChangeBody(bytes))
                .await
                .into_response()
        }
        Err(rejection) => {
            fhir_rest::observation::create(state, uri, headers, Err(rejection), None).await
        }
    }
}

/// The CapabilityStatement: the record's, which lists every type and interaction as the tables
/// that run them say, with how device observations are taken.
async fn metadata(state: State<AppState>, headers: HeaderMap) -> Response {
    fhir_record::capability::metadata_with_devices(state, headers).await
}
