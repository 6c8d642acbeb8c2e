//! REST handlers under `/api/v1`. Reads come from the live twin (now) or the SQL store
//! (history); changes to devices and associations go to the store first, then the registry.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use base64::Engine as _;
use model::{AssociationTarget, BedId, DeviceId, DeviceKind, PatientId, RoomId, Timestamp};
use serde::Deserialize;
use serde_json::{Value, json};
use store::{DeviceDetails, DeviceRecord, Subject};
use twin::{Attribution, DeviceInfo};

use super::stream::{device_health_json, metrics_json, news2_json, status_json, value_json};
use super::{ApiError, AppState};
use crate::auth::{Caller, visible_directory};
use crate::pipeline::now;
use crate::ward::Ward;

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

pub async fn wards(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult {
    Ok(Json(json!(
        visible_directory(&state.ward.directory(), &caller).wards
    )))
}

pub async fn rooms(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult {
    let directory = visible_directory(&state.ward.directory(), &caller);
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

pub async fn beds(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult {
    let directory = visible_directory(&state.ward.directory(), &caller);
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

pub async fn patients(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult {
    Ok(Json(json!(
        visible_directory(&state.ward.directory(), &caller).patients
    )))
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
    let news2 = state.ward.news2(&id).map(|result| news2_json(&id, &result));
    let regions = state.ward.patient_regions(&id, now());
    let attribution = Attribution {
        patient: Some(id),
        bed: patient.bed_id.clone().map(BedId::new),
        room: None,
    };
    Ok(Json(json!({
        "patient": patient,
        "values": values.iter().map(|v| value_json(&attribution, v)).collect::<Vec<_>>(),
        "status": status.as_ref().map(status_json),
        "news2": news2,
        "regions": regions.iter().map(region_status_json).collect::<Vec<_>>(),
        "server_time": now().millis(),
    })))
}

/// Each body region's status, for the avatar: `GET /patients/{id}/regions`.
pub async fn patient_regions(
    State(state): State<AppState>,
    Path(patient_id): Path<String>,
) -> ApiResult {
    let id = PatientId::new(&patient_id);
    if !state
        .ward
        .directory()
        .patients
        .iter()
        .any(|p| p.id == patient_id)
    {
        return Err(ApiError::not_found("patient"));
    }
    let regions = state.ward.patient_regions(&id, now());
    Ok(Json(json!(
        regions.iter().map(region_status_json).collect::<Vec<_>>()
    )))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrendQuery {
    metric: String,
    /// Comma-separated windows: `15m`, `1h`, `4h`, `24h` (default `1h,4h,24h`).
    windows: Option<String>,
}

/// A metric's trend over one or more windows ending now: baseline, latest, change, slope per
/// hour (artefacts left out).
pub async fn patient_trends(
    State(state): State<AppState>,
    Path(patient_id): Path<String>,
    Query(query): Query<TrendQuery>,
) -> ApiResult {
    let Some(metric) = state.ward.catalog.by_key(&query.metric) else {
        return Err(ApiError::bad_request(format!(
            "unknown metric `{}`",
            query.metric
        )));
    };
    let windows = query
        .windows
        .as_deref()
        .unwrap_or("1h,4h,24h")
        .split(',')
        .map(|text| {
            parse_window(text.trim()).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "window `{text}` is not a number followed by m or h (at most 7 days)"
                ))
            })
        })
        .collect::<Result<Vec<i64>, _>>()?;
    let longest = windows.iter().copied().max().unwrap_or(0);
    let to = now();
    let (patient, metric_key) = (PatientId::new(patient_id), metric.key.clone());
    let points = state
        .stores
        .read(move |store| {
            store.history(
                &Subject::Patient(patient),
                &metric_key,
                to.plus_millis(-longest),
                to.plus_millis(1),
                MAX_HISTORY_POINTS,
            )
        })
        .await??;
    let trusted: Vec<(Timestamp, f64)> = points
        .iter()
        .filter(|p| !p.quality.is_artefact())
        .map(|p| (p.time, p.value))
        .collect();
    let trends: Vec<Value> = windows
        .iter()
        .map(
            |window| match clinical::trends::trend(&trusted, *window, to) {
                Some(t) => json!({ "window_ms": window, "n": t.n, "baseline": t.baseline,
                "latest": t.latest, "latest_time": t.latest_time.millis(), "change": t.change,
                "slope_per_hour": t.slope_per_hour, "min": t.min, "max": t.max, "mean": t.mean }),
                None => json!({ "window_ms": window, "n": 0 }),
            },
        )
        .collect();
    Ok(Json(
        json!({ "metric": metric.key, "unit": metric.ucum, "at": to.millis(), "trends": trends }),
    ))
}

/// `15m` or `4h` in milliseconds, at most a week.
fn parse_window(text: &str) -> Option<i64> {
    let (number, unit_ms) = match text.as_bytes().last()? {
        b'm' => (&text[..text.len() - 1], 60_000),
        b'h' => (&text[..text.len() - 1], 3_600_000),
        _ => return None,
    };
    let window = number.parse::<i64>().ok()?.checked_mul(unit_ms)?;
    (1..=7 * 24 * 3_600_000).contains(&window).then_some(window)
}

fn region_status_json(status: &clinical::regions::RegionStatus) -> Value {
    use clinical::regions::RegionReason;
    let reasons: Vec<Value> = status
        .reasons
        .iter()
        .map(|reason| match reason {
            RegionReason::Value { metric, value, state, why } => json!({
                "kind": "value", "metric": metric, "value": value, "state": state.key(), "why": why }),
            RegionReason::Unusable { metric, why } => json!({
                "kind": "unusable", "metric": metric, "why": why }),
            RegionReason::Condition { code, display } => json!({
                "kind": "condition", "code": code, "display": display }),
        })
        .collect();
    json!({ "region": status.region.to_string(), "state": status.state.key(), "reasons": reasons })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreHistoryQuery {
    from: Option<i64>,
    to: Option<i64>,
    limit: Option<usize>,
}

/// A patient's NEWS2 over time: each change, with every parameter's sub-score (`null` where
/// it could not be scored). By default the last 24 hours.
pub async fn patient_news2_history(
    State(state): State<AppState>,
    Path(patient_id): Path<String>,
    Query(query): Query<ScoreHistoryQuery>,
) -> ApiResult {
    let (from, to, limit) = HistoryQuery {
        metric: String::new(),
        from: query.from,
        to: query.to,
        limit: query.limit,
    }
    .range(24 * HISTORY_DEFAULT_SPAN_MS)?;
    let patient = PatientId::new(patient_id);
    let history = state
        .stores
        .read(move |store| store.news2_history(&patient, from, to, limit))
        .await??;
    let points: Vec<Value> = history
        .iter()
        .map(|score| {
            let sub_scores: serde_json::Map<String, Value> = clinical::Parameter::ALL
                .iter()
                .zip(score.sub_scores)
                .map(|(parameter, sub)| (parameter.key().to_owned(), json!(sub)))
                .collect();
            json!({ "at": score.at.millis(), "total": score.total, "band": score.band.key(),
                    "complete": score.complete, "scale": score.scale,
                    "scale_reason": score.scale_reason, "sub_scores": sub_scores })
        })
        .collect();
    Ok(Json(
        json!({ "score": "news2", "from": from.millis(), "to": to.millis(), "points": points }),
    ))
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
                    "artefact": p.quality.is_artefact(),
                    "reference_range": p.reference_range.map(|r| json!({ "low": r.low, "high": r.high })) })
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

/// A registered device, its identifiers, and its live technical state (`null` until heard).
fn device_json(device: &DeviceRecord, details: &DeviceDetails, ward: &Ward) -> Value {
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
        "technical": ward.device_health(&device.id).as_ref().map(device_health_json),
    })
}

pub async fn devices(State(state): State<AppState>) -> ApiResult {
    let ward = state.ward.clone();
    let devices = state
        .stores
        .read(move |store| -> Result<Vec<Value>, store::StoreError> {
            store
                .devices()?
                .iter()
                .map(|device| {
                    Ok(device_json(
                        device,
                        &store.device_details(&device.id)?,
                        &ward,
                    ))
                })
                .collect()
        })
        .await??;
    Ok(Json(json!(devices)))
}

/// The technical state of every device heard from since start (or known to the store from
/// before), registered or not: for clinical engineers watching connectivity.
pub async fn devices_technical(State(state): State<AppState>) -> ApiResult {
    let registered: std::collections::HashSet<DeviceId> = state
        .stores
        .read(|store| store.devices())
        .await??
        .into_iter()
        .map(|device| device.id)
        .collect();
    let devices: Vec<Value> = state
        .ward
        .devices_health()
        .iter()
        .map(|health| {
            let mut json = device_health_json(health);
            json["registered"] = json!(registered.contains(&health.device_id));
            json
        })
        .collect();
    Ok(Json(json!(devices)))
}

pub async fn device(State(state): State<AppState>, Path(device_id): Path<String>) -> ApiResult {
    let id = DeviceId::new(device_id);
    let ward = state.ward.clone();
    let device = state
        .stores
        .read(move |store| -> Result<Option<Value>, store::StoreError> {
            match store.device(&id)? {
                Some(device) => Ok(Some(device_json(
                    &device,
                    &store.device_details(&id)?,
                    &ward,
                ))),
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
    Ok((
        StatusCode::CREATED,
        Json(device_json(&record, &details, &state.ward)),
    ))
}

pub async fn unassociated_devices(State(state): State<AppState>) -> ApiResult {
    let devices: Vec<Value> = state
        .ward
        .unassociated_devices()
        .iter()
        .map(|(device, values)| {
            let attribution = Attribution::default();
            json!({
                "device_id": device.to_string(),
                "values": values.iter().map(|v| value_json(&attribution, v)).collect::<Vec<_>>(),
                "technical": state.ward.device_health(device).as_ref().map(device_health_json),
            })
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
    source: Option<String>,
    reason: Option<String>,
}

pub async fn dead_letters(
    State(state): State<AppState>,
    Query(query): Query<DeadLetterQuery>,
) -> ApiResult {
    let limit = query.limit.unwrap_or(100).min(1000);
    let letters = state
        .stores
        .read(move |store| {
            store.dead_letters_where(query.source.as_deref(), query.reason.as_deref(), limit)
        })
        .await??;
    // `raw` is for reading (bytes that are not UTF-8 shown as U+FFFD); `raw_base64` is the
    // bytes exactly as received (an HL7 message in ISO 8859-1, a binary MQTT payload).
    let letters: Vec<Value> = letters
        .iter()
        .map(|d| {
            json!({ "log_offset": d.log_offset, "source": d.source, "origin": d.origin, "received": d.received_ms,
                    "reason": d.reason, "detail": d.detail, "raw": String::from_utf8_lossy(&d.raw),
                    "raw_base64": base64::engine::general_purpose::STANDARD.encode(&d.raw) })
        })
        .collect();
    Ok(Json(json!(letters)))
}
