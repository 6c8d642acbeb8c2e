//! The HTTP edge: REST under `/api/v1`, the live stream, the OpenAPI document, health,
//! Prometheus metrics and the embedded web page. Only this module knows the JSON shapes.

mod alarms;
mod credential;
mod error;
mod fhir;
pub mod fhir_record;
mod openapi;
mod prescriptions;
pub mod presence;
mod rest;
mod rounds;
mod sql;
mod stream;
mod web;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post, put};

use crate::Stores;
use crate::metrics::Metrics;
use crate::ward::Ward;

pub use error::ApiError;
pub use sql::cell_json as sql_cell_json;

#[derive(Clone)]
pub struct AppState {
    pub ward: Arc<Ward>,
    pub stores: Stores,
    pub metrics: Arc<Metrics>,
    pub log: durable_log::Log,
    pub credentials: Arc<crate::sources::mqtt::DeviceCredentials>,
    /// The ingest pipeline: for device data over HTTP (FHIR) and dead letters of refused input.
    pub ingest: crate::pipeline::Ingest,
    /// Who is watching the ward (docs/stream.md, presence).
    pub presence: Arc<presence::Presence>,
    /// Sessions and the audit trail (`auth`).
    pub auth: Arc<crate::auth::Auth>,
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
        .route("/patients/{patient_id}/regions", get(rest::patient_regions))
        .route(
            "/patients/{patient_id}/oxygen-target",
            get(prescriptions::get)
                .put(prescriptions::put)
                .delete(prescriptions::delete),
        )
        .route("/patients/{patient_id}/trends", get(rest::patient_trends))
        .route(
            "/patients/{patient_id}/news2/history",
            get(rest::patient_news2_history),
        )
        .route(
            "/patients/{patient_id}/waveform",
            get(rest::patient_waveform),
        )
        .route("/devices", get(rest::devices).post(rest::register_device))
        .route("/devices/unassociated", get(rest::unassociated_devices))
        .route("/devices/technical", get(rest::devices_technical))
        .route("/devices/{device_id}", get(rest::device))
        .route(
            "/devices/{device_id}/credential",
            put(credential::set_credential).delete(credential::revoke_credential),
        )
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
        .route("/sql", post(sql::run))
        .route(
            "/rounds/notes",
            get(rounds::list_notes).post(rounds::create_note),
        )
        .route("/rounds/reviews", get(rounds::last_reviews))
        .route("/alarms", get(alarms::list))
        .route("/alarms/{alarm_id}", get(alarms::get))
        .route("/alarms/{alarm_id}/acknowledge", post(alarms::acknowledge))
        .route("/alarms/{alarm_id}/silence", post(alarms::silence))
        .route(
            "/patients/{patient_id}/alarm-limits/{metric}",
            put(alarms::put_limits)
                .get(alarms::get_limits)
                .delete(alarms::delete_limits),
        )
        .route("/catalog", get(rest::catalog))
        .route("/stream", get(stream::stream))
        .route("/openapi.json", get(openapi::document))
        .merge(crate::auth::routes::routes())
        .merge(crate::auth::token_routes::routes());
    Router::new()
        .nest("/api/v1", api)
        .nest("/fhir", fhir::routes())
        .route("/healthz", get(rest::healthz))
        .route("/metrics", get(rest::prometheus))
        .fallback(web::asset)
        // Every request passes the access policy first (auth::policy): new routes are closed
        // until listed there.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::middleware::authorize,
        ))
        .with_state(state)
}
