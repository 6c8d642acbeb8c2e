//! The HTTP edge: REST under `/api/v1`, the live stream, the OpenAPI document, health,
//! Prometheus metrics and the embedded web page. Only this module knows the JSON shapes.

mod error;
pub mod fhir_record;
mod openapi;
mod rest;
mod stream;
mod web;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use crate::Stores;
use crate::metrics::Metrics;
use crate::pipeline::Ingest;
use crate::ward::Ward;

pub use error::ApiError;

#[derive(Clone)]
pub struct AppState {
    pub ward: Arc<Ward>,
    pub stores: Stores,
    pub metrics: Arc<Metrics>,
    pub log: durable_log::Log,
    /// For dead letters of refused FHIR record requests.
    pub ingest: Ingest,
}

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/wards", get(rest::wards))
        .route("/rooms", get(rest::rooms))
        .route("/rooms/{room_id}/history", get(rest::room_history))
        .route("/beds", get(rest::beds))
        .route("/patients", get(rest::patients))
        .route("/patients/{patient_id}", get(rest::patient))
        .route("/patients/{patient_id}/twin", get(rest::patient_twin))
        .route("/patients/{patient_id}/history", get(rest::patient_history))
        .route(
            "/patients/{patient_id}/waveform",
            get(rest::patient_waveform),
        )
        .route("/devices", get(rest::devices).post(rest::register_device))
        .route("/devices/unassociated", get(rest::unassociated_devices))
        .route("/devices/technical", get(rest::devices_technical))
        .route("/devices/{device_id}", get(rest::device))
        .route(
            "/devices/{device_id}/associations",
            get(rest::device_associations),
        )
        .route(
            "/devices/{device_id}/associations/end",
            post(rest::end_association),
        )
        .route(
            "/associations",
            get(rest::open_associations).post(rest::associate),
        )
        .route("/dead-letters", get(rest::dead_letters))
        .route("/catalog", get(rest::catalog))
        .route("/stream", get(stream::stream))
        .route("/openapi.json", get(openapi::document));
    Router::new()
        .nest("/api/v1", api)
        .nest("/fhir", fhir_record::routes())
        .route("/healthz", get(rest::healthz))
        .route("/metrics", get(rest::prometheus))
        .fallback(web::asset)
        .with_state(state)
}
