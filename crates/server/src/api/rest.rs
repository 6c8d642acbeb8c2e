//! REST handlers under `/api/v1`. Reads come from the live twin (now) or the SQL store
//! (history); changes to devices and associations go to the store first, then the registry.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use model::{AssociationTarget, BedId, DeviceId, DeviceKind, PatientId, RoomId, Timestamp};
use serde::Deserialize;
use serde_json::{Value, json};
use store::{DeviceDetails, DeviceRecord, Subject};
use twin::{Attribution, DeviceInfo};

use super::stream::{metrics_json, status_json, value_json};
use super::{ApiError, AppState};
use crate::pipeline::now;

type ApiResult = Result<Json<Value>, ApiError>;

pub async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    let stats = state.log.stats();
    Json(
        json!({ "status": "ok", "log_next_offset": state.log.next_offset().0, "log_records": stats.records }),
    )
}

pub async fn prometheus(State(state): State<AppState>) -> impl IntoResponse {
    let stats = state.log.stats();
    state.metrics.log_records.set(stats.records as i64);
    state.metrics.log_syncs.set(stats.fsyncs as i64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

pub async fn catalog(State(state): State<AppState>) -> ApiResult {
    Ok(Json(json!(metrics_json(state.ward.catalog))))
}

pub async fn wards(State(state): State<AppState>) -> ApiResult {
    Ok(Json(json!(state.ward.directory().wards)))
}

pub async fn rooms(State(state): State<AppState>) -> ApiResult {
    let directory = state.ward.directory();
    let rooms: Vec<Value> = directory
        .wards
        .iter()
        .flat_map(|ward| {
            ward.rooms.iter().map(|room| {
                json!({ "id": room.id, "ward_id": ward.id, "name": room.name,
                        "x": room.x, "z": room.z, "width": room.width, "depth": room.depth,
                        "bed_ids": room.beds.iter().map(|b| &b.id).collect::<Vec<_>>() })
            })
        })
        .collect();
    Ok(Json(json!(rooms)))
}

pub async fn beds(State(state): State<AppState>) -> ApiResult {
    let directory = state.ward.directory();
    let occupant = |bed: &str| {
        directory
            .patients
            .iter()
            .find(|p| p.bed_id.as_deref() == Some(bed))
            .map(|p| p.id.clone())
    };
    let beds: Vec<Value> = directory
        .wards
        .iter()
        .flat_map(|ward| ward.rooms.iter().map(move |room| (ward, room)))
        .flat_map(|(ward, room)| room.beds.iter().map(move |bed| (ward, room, bed)))
        .map(|(ward, room, bed)| {
            json!({ "id": bed.id, "label": bed.label, "room_id": room.id, "ward_id": ward.id,
                    "patient_id": occupant(&bed.id) })
        })
        .collect();
    Ok(Json(json!(beds)))
}

pub async fn patients(State(state): State<AppState>) -> ApiResult {
    Ok(Json(json!(state.ward.directory().patients)))
}

pub async fn patient(State(state): State<AppState>, Path(patient_id): Path<String>) -> ApiResult {
    let directory = state.ward.directory();
    let patient = directory
        .patients
        .iter()
        .find(|p| p.id == patient_id)
        .ok_or_else(|| ApiError::not_found("patient"))?;
    Ok(Json(json!(patient)))
}

/// The live twin of one patient: where they lie, their conditions, every latest value and
/// how far from normal they are.
pub async fn patient_twin(
    State(state): State<AppState>,
    Path(patient_id): Path<String>,
) -> ApiResult {
    let directory = state.ward.directory();
    let patient = directory
        .patients
        .iter()
        .find(|p| p.id == patient_id)
        .ok_or_else(|| ApiError::not_found("patient"))?;
    let id = PatientId::new(&patient_id);
    let (values, status) = state.ward.patient_values(&id);
    let attribution = Attribution {
        patient: Some(id),
        bed: patient.bed_id.clone().map(BedId::new),
        room: None,
    };
    Ok(Json(json!({
        "patient": patient,
        "values": values.iter().map(|v| value_json(&attribution, v)).collect::<Vec<_>>(),
        "status": status.as_ref().map(status_json),
        "server_time": now().millis(),
    })))
}

#[derive(Deserialize)]
pub struct HistoryQuery {
    metric: String,
    from: Option<i64>,
    to: Option<i64>,
    limit: Option<usize>,
}

const MAX_HISTORY_POINTS: usize = 100_000;
const HISTORY_DEFAULT_SPAN_MS: i64 = 60 * 60 * 1000;
/// A day of ECG is millions of samples; one request takes at most this much.
const WAVEFORM_MAX_SPAN_MS: i64 = 10 * 60 * 1000;

impl HistoryQuery {
    /// `[from, to)` in epoch milliseconds; by default the last hour.
    /// `[from, to)`; `from` defaults to `default_span_ms` before `to`.
    fn range(&self, default_span_ms: i64) -> Result<(Timestamp, Timestamp, usize), ApiError> {
        let to = self
            .to
            .map(Timestamp)
            .unwrap_or_else(|| now().plus_millis(1));
        let from = self
            .from
            .map(Timestamp)
            .unwrap_or(to.plus_millis(-default_span_ms));
        if from >= to {
            return Err(ApiError::bad_request("`from` must be before `to`"));
        }
        let limit = self.limit.unwrap_or(10_000);
        if limit == 0 || limit > MAX_HISTORY_POINTS {
            return Err(ApiError::bad_request(format!(
                "`limit` must be 1 to {MAX_HISTORY_POINTS}"
            )));
        }
        Ok((from, to, limit))
    }
}

async fn history(state: AppState, subject: Subject, query: HistoryQuery) -> ApiResult {
    let Some(metric) = state.ward.catalog.by_key(&query.metric) else {
        return Err(ApiError::bad_request(format!(
            "unknown metric `{}`",
            query.metric
        )));
    };
    let (from, to, limit) = query.range(HISTORY_DEFAULT_SPAN_MS)?;
    let metric_key = metric.key.clone();
    let points = state
        .stores
        .read(move |store| store.history(&subject, &metric_key, from, to, limit))
        .await??;
    let points: Vec<Value> = points
        .iter()
        .map(|p| {
            json!({ "time": p.time.millis(), "value": p.value, "device_id": p.device_id.to_string(),
                    "artefact": p.quality.is_artefact() })
        })
        .collect();
    Ok(Json(
        json!({ "metric": metric.key, "unit": metric.ucum, "from": from.millis(), "to": to.millis(), "points": points }),
    ))
}

pub async fn patient_history(
    State(state): State<AppState>,
    Path(patient_id): Path<String>,
    Query(query): Query<HistoryQuery>,
) -> ApiResult {
    history(state, Subject::Patient(PatientId::new(patient_id)), query).await
}

pub async fn room_history(
    State(state): State<AppState>,
    Path(room_id): Path<String>,
    Query(query): Query<HistoryQuery>,
) -> ApiResult {
    history(state, Subject::Room(RoomId::new(room_id)), query).await
}

pub async fn patient_waveform(
    State(state): State<AppState>,
    Path(patient_id): Path<String>,
    Query(query): Query<HistoryQuery>,
) -> ApiResult {
    let Some(metric) = state.ward.catalog.by_key(&query.metric) else {
        return Err(ApiError::bad_request(format!(
            "unknown metric `{}`",
            query.metric
        )));
    };
    let (from, to, _) = query.range(WAVEFORM_MAX_SPAN_MS)?;
    if to.since(from) > WAVEFORM_MAX_SPAN_MS {
        return Err(ApiError::bad_request(
            "a waveform query spans at most 10 minutes",
        ));
    }
    let metric_key = metric.key.clone();
    let patient = PatientId::new(patient_id);
    let chunks = state
        .stores
        .read(move |store| store.waveform(&patient, &metric_key, from, to))
        .await??;
    let chunks: Vec<Value> = chunks
        .iter()
        .map(|c| json!({ "start": c.start.millis(), "rate_hz": c.chunk.sample_rate_hz, "samples": c.chunk.samples, "device_id": c.device_id.to_string() }))
        .collect();
    Ok(Json(
        json!({ "metric": metric.key, "unit": metric.ucum, "chunks": chunks }),
    ))
}

fn device_json(device: &DeviceRecord, details: &DeviceDetails) -> Value {
    json!({
        "id": device.id.to_string(),
        "kind": device.kind.key(),
        "model": device.model,
        "placement": device.placement.map(|r| r.to_string()),
        "manufacturer": details.manufacturer,
        "serial_number": details.serial_number,
        "identifiers": details.identifiers.iter().map(|i| json!({ "system": i.system, "value": i.value })).collect::<Vec<_>>(),
        "first_seen": device.first_seen.map(Timestamp::millis),
        "last_seen": device.last_seen.map(Timestamp::millis),
    })
}

pub async fn devices(State(state): State<AppState>) -> ApiResult {
    let devices = state
        .stores
        .read(|store| -> Result<Vec<Value>, store::StoreError> {
            store
                .devices()?
                .iter()
                .map(|device| Ok(device_json(device, &store.device_details(&device.id)?)))
                .collect()
        })
        .await??;
    Ok(Json(json!(devices)))
}

pub async fn device(State(state): State<AppState>, Path(device_id): Path<String>) -> ApiResult {
    let id = DeviceId::new(device_id);
    let device = state
        .stores
        .read(move |store| -> Result<Option<Value>, store::StoreError> {
            match store.device(&id)? {
                Some(device) => Ok(Some(device_json(&device, &store.device_details(&id)?))),
                None => Ok(None),
            }
        })
        .await??
        .ok_or_else(|| ApiError::not_found("device"))?;
    Ok(Json(device))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterDevice {
    id: String,
    kind: String,
    model: String,
    placement: Option<String>,
    manufacturer: Option<String>,
    serial_number: Option<String>,
    identifiers: Option<Vec<IdentifierJson>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentifierJson {
    system: String,
    value: String,
}

pub async fn register_device(
    State(state): State<AppState>,
    body: Result<Json<RegisterDevice>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(body) = body?;
    let kind = DeviceKind::from_key(&body.kind)
        .ok_or_else(|| ApiError::bad_request(format!("unknown device kind `{}`; one of bedside_monitor, wearable, environmental_sensor, gateway", body.kind)))?;
    let placement = body
        .placement
        .as_deref()
        .map(|key| {
            key.parse()
                .map_err(|_| ApiError::bad_request(format!("unknown body region `{key}`")))
        })
        .transpose()?;
    if crate::sources::mqtt::device_of_topic(&format!(
        "{}{}/obs",
        crate::sources::mqtt::DEVICE_TOPIC_PREFIX,
        body.id
    ))
    .is_none()
    {
        return Err(ApiError::bad_request(
            "device id must be 1 to 128 of letters, digits, - _ . :",
        ));
    }
    if let Some(identifiers) = &body.identifiers
        && identifiers
            .iter()
            .any(|i| i.system.trim().is_empty() || i.value.trim().is_empty())
    {
        return Err(ApiError::bad_request(
            "every identifier needs a non-empty system and value",
        ));
    }
    let record = DeviceRecord {
        id: DeviceId::new(&body.id),
        kind,
        model: body.model,
        placement,
        first_seen: None,
        last_seen: None,
    };
    let stored = record.clone();
    let (manufacturer, serial_number, identifiers) =
        (body.manufacturer, body.serial_number, body.identifiers);
    let details = state
        .stores
        .write(move |store| -> Result<DeviceDetails, store::StoreError> {
            // What the body leaves out stays as it was: registering again only changes what it says.
            let mut details = store.device_details(&stored.id).unwrap_or_default();
            details.manufacturer = manufacturer.or(details.manufacturer);
            details.serial_number = serial_number.or(details.serial_number);
            if let Some(identifiers) = identifiers {
                details.identifiers = identifiers
                    .into_iter()
                    .map(|i| store::DeviceIdentifier {
                        system: i.system,
                        value: i.value,
                    })
                    .collect();
            }
            store.register_device(&stored, &details)?;
            Ok(details)
        })
        .await?
        .map_err(|error| match error {
            store::StoreError::IdentifierTaken { .. } => ApiError::conflict(error.to_string()),
            other => ApiError::from(other),
        })?;
    state.ward.update_registry(|registry| {
        registry.upsert_device(DeviceInfo {
            id: record.id.clone(),
            kind,
            model: record.model.clone(),
            placement,
        })
    });
    Ok((StatusCode::CREATED, Json(device_json(&record, &details))))
}

pub async fn unassociated_devices(State(state): State<AppState>) -> ApiResult {
    let devices: Vec<Value> = state
        .ward
        .unassociated_devices()
        .iter()
        .map(|(device, values)| {
            let attribution = Attribution::default();
            json!({ "device_id": device.to_string(), "values": values.iter().map(|v| value_json(&attribution, v)).collect::<Vec<_>>() })
        })
        .collect();
    Ok(Json(json!(devices)))
}

fn association_json(association: &store::AssociationRecord) -> Value {
    json!({
        "id": association.id,
        "device_id": association.device_id.to_string(),
        "target_kind": association.target.kind(),
        "target_id": association.target.id(),
        "from": association.from.millis(),
        "to": association.to.map(Timestamp::millis),
    })
}

pub async fn open_associations(State(state): State<AppState>) -> ApiResult {
    let associations = state
        .stores
        .read(|store| store.open_associations())
        .await??;
    Ok(Json(json!(
        associations
            .iter()
            .map(association_json)
            .collect::<Vec<_>>()
    )))
}

pub async fn device_associations(
    State(state): State<AppState>,
    Path(device_id): Path<String>,
) -> ApiResult {
    let id = DeviceId::new(device_id);
    let associations = state
        .stores
        .read(move |store| store.associations_of(&id))
        .await??;
    Ok(Json(json!(
        associations
            .iter()
            .map(association_json)
            .collect::<Vec<_>>()
    )))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Associate {
    device_id: String,
    target_kind: String,
    target_id: String,
    /// Epoch milliseconds; now when absent.
    from: Option<i64>,
}

pub async fn associate(
    State(state): State<AppState>,
    body: Result<Json<Associate>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(body) = body?;
    let target =
        AssociationTarget::from_parts(&body.target_kind, &body.target_id).ok_or_else(|| {
            ApiError::bad_request(format!(
                "unknown target kind `{}`; one of bed, patient, room",
                body.target_kind
            ))
        })?;
    let from = body.from.map(Timestamp).unwrap_or_else(now);
    let device = DeviceId::new(&body.device_id);
    let (stored_device, stored_target) = (device.clone(), target.clone());
    let id = state
        .stores
        .write(move |store| store.associate(&stored_device, &stored_target, from))
        .await?
        .map_err(|error| match error {
            store::StoreError::NotFound { .. } => {
                ApiError::bad_request("unknown device; register it first")
            }
            other => ApiError::internal(other),
        })?;
    state
        .ward
        .update_registry(|registry| registry.associate(device, target.clone(), from));
    Ok((
        StatusCode::CREATED,
        Json(
            json!({ "id": id, "device_id": body.device_id, "target_kind": target.kind(), "target_id": body.target_id, "from": from.millis(), "to": null }),
        ),
    ))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct EndAssociation {
    at: Option<i64>,
}

pub async fn end_association(
    State(state): State<AppState>,
    Path(device_id): Path<String>,
    body: Option<Json<EndAssociation>>,
) -> ApiResult {
    let at = body
        .and_then(|Json(b)| b.at)
        .map(Timestamp)
        .unwrap_or_else(now);
    let device = DeviceId::new(device_id);
    let stored = device.clone();
    let ended = state
        .stores
        .write(move |store| store.end_association(&stored, at))
        .await??;
    if !ended {
        return Err(ApiError::not_found("open association of this device"));
    }
    state
        .ward
        .update_registry(|registry| registry.end_association(&device, at));
    Ok(Json(
        json!({ "device_id": device.to_string(), "ended_at": at.millis() }),
    ))
}

#[derive(Deserialize)]
pub struct DeadLetterQuery {
    limit: Option<usize>,
}

pub async fn dead_letters(
    State(state): State<AppState>,
    Query(query): Query<DeadLetterQuery>,
) -> ApiResult {
    let limit = query.limit.unwrap_or(100).min(1000);
    let letters = state
        .stores
        .read(move |store| store.dead_letters(limit))
        .await??;
    let letters: Vec<Value> = letters
        .iter()
        .map(|d| {
            json!({ "log_offset": d.log_offset, "source": d.source, "origin": d.origin, "received": d.received_ms,
                    "reason": d.reason, "detail": d.detail, "raw": String::from_utf8_lossy(&d.raw) })
        })
        .collect();
    Ok(Json(json!(letters)))
}
