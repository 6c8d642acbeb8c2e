//! Alarms over REST: the active list (live, from the engine), any alarm with its history (from
//! the store), acknowledging and silencing, and patients' own alarm limits. A change answers
//! only once it is stored, so an acknowledgment that was confirmed is never lost.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use clinical::alarms::{AlarmSubject, LimitTier, MetricLimits, Priority};
use model::PatientId;
use serde::Deserialize;
use serde_json::{Value, json};
use store::AlarmQuery;

use super::stream::alarm_json;
use super::{ApiError, AppState};
use crate::auth::Caller;
use crate::pipeline::now;
use crate::ward::AlarmChange;

type ApiResult = Result<Json<Value>, ApiError>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmListQuery {
    /// `active` (default: live from the engine) or `all` (from the store, newest first).
    state: Option<String>,
    patient: Option<String>,
    room: Option<String>,
    device: Option<String>,
    limit: Option<usize>,
}

pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<AlarmListQuery>,
) -> ApiResult {
    let subject = match (query.patient, query.room, query.device) {
        (Some(id), None, None) => Some(AlarmSubject::Patient(id.as_str().into())),
        (None, Some(id), None) => Some(AlarmSubject::Room(id.as_str().into())),
        (None, None, Some(id)) => Some(AlarmSubject::Device(id.as_str().into())),
        (None, None, None) => None,
        _ => {
            return Err(ApiError::bad_request(
                "filter by at most one of patient, room, device",
            ));
        }
    };
    let limit = query.limit.unwrap_or(200).min(10_000);
    let alarms = match query.state.as_deref().unwrap_or("active") {
        "active" => state
            .ward
            .active_alarms()
            .into_iter()
            .filter(|alarm| subject.as_ref().is_none_or(|s| *s == alarm.subject))
            .take(limit)
            .collect(),
        "all" => {
            state
                .stores
                .read(move |store| {
                    store.alarms(&AlarmQuery {
                        active_only: false,
                        subject,
                        limit,
                    })
                })
                .await??
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "state must be `active` or `all`, not `{other}`"
            )));
        }
    };
    // Only the alarms of the caller's wards (by the alarm subject's ward now).
    let alarms: Vec<_> = alarms
        .iter()
        .filter(|alarm| caller.sees(state.ward.alarm_scope(&alarm.subject).0.as_ref()))
        .map(alarm_json)
        .collect();
    Ok(Json(json!(alarms)))
}

pub async fn get(State(state): State<AppState>, Path(id): Path<u64>) -> ApiResult {
    let (alarm, history) = state
        .stores
        .read(move |store| Ok::<_, store::StoreError>((store.alarm(id)?, store.alarm_history(id)?)))
        .await??;
    let alarm = alarm.ok_or_else(|| ApiError::not_found("alarm"))?;
    let history: Vec<Value> = history
        .iter()
        .map(|entry| {
            json!({
                "at": entry.at.millis(),
                "transition": entry.transition,
                "by": entry.by,
                "priority": entry.priority.key(),
                "state": entry.state,
            })
        })
        .collect();
    let mut body = alarm_json(&alarm);
    body["history"] = json!(history);
    Ok(Json(body))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Acknowledge {
    /// Who acknowledges: the signed-in user. Optional; if given it must be that user.
    by: Option<String>,
}

pub async fn acknowledge(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<u64>,
    body: Result<Json<Acknowledge>, JsonRejection>,
) -> ApiResult {
    let Json(body) = body?;
    let by = signed_in(&caller, body.by)?;
    let change = state
        .ward
        .change_alarm(id, |engine| engine.acknowledge(id, &by, now()))?;
    stored(change).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceRequest {
    by: Option<String>,
    reason: String,
    duration_s: u32,
}

pub async fn silence(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<u64>,
    body: Result<Json<SilenceRequest>, JsonRejection>,
) -> ApiResult {
    let Json(body) = body?;
    let by = signed_in(&caller, body.by)?;
    let duration_ms = i64::from(body.duration_s) * 1000;
    let change = state.ward.change_alarm(id, |engine| {
        engine.silence(id, &by, &body.reason, duration_ms, now())
    })?;
    stored(change).await
}

async fn stored(change: AlarmChange) -> ApiResult {
    match change.durable.await {
        Ok(true) => Ok(Json(alarm_json(&change.alarm))),
        _ => Err(ApiError::internal("the alarm change could not be stored")),
    }
}

/// Who made a change is the signed-in user; a `by` in the body, kept for older clients, must
/// name that user (nobody acknowledges in another's name).
fn signed_in(caller: &Caller, by: Option<String>) -> Result<String, ApiError> {
    match by.map(|by| by.trim().to_owned()) {
        Some(by) if by != caller.user => Err(ApiError::bad_request(
            "`by` must be the signed-in user (or left out)",
        )),
        _ => Ok(caller.user.clone()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierBody {
    at: f64,
    priority: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsBody {
    #[serde(default)]
    low: Vec<TierBody>,
    #[serde(default)]
    high: Vec<TierBody>,
    by: Option<String>,
}

fn limits_json(limits: &MetricLimits) -> Value {
    let tiers = |tiers: &[LimitTier]| {
        tiers
            .iter()
            .map(|t| json!({ "at": t.at, "priority": t.priority.key() }))
            .collect::<Vec<_>>()
    };
    json!({ "metric": limits.metric, "low": tiers(&limits.low), "high": tiers(&limits.high) })
}

/// The limits in force for a patient's metric (their own, else the ward's defaults).
pub async fn get_limits(
    State(state): State<AppState>,
    Path((patient_id, metric)): Path<(String, String)>,
) -> ApiResult {
    let limits = state
        .ward
        .patient_alarm_limits(&PatientId::new(patient_id), &metric)
        .ok_or_else(|| ApiError::not_found("alarm limits for this metric"))?;
    Ok(Json(limits_json(&limits)))
}

pub async fn put_limits(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((patient_id, metric)): Path<(String, String)>,
    body: Result<Json<LimitsBody>, JsonRejection>,
) -> ApiResult {
    let Json(body) = body?;
    let by = signed_in(&caller, body.by.clone())?;
    if state.ward.catalog.by_key(&metric).is_none() {
        return Err(ApiError::bad_request(format!(
            "`{metric}` is not a metric in the catalog"
        )));
    }
    let tiers = |tiers: Vec<TierBody>| -> Result<Vec<LimitTier>, ApiError> {
        tiers
            .into_iter()
            .map(|tier| {
                let priority = Priority::from_key(&tier.priority).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "priority `{}` is not one of low, medium, high",
                        tier.priority
                    ))
                })?;
                if !tier.at.is_finite() {
                    return Err(ApiError::bad_request("a limit must be a finite number"));
                }
                Ok(LimitTier {
                    at: tier.at,
                    priority,
                })
            })
            .collect()
    };
    let limits = MetricLimits {
        metric: metric.clone(),
        low: tiers(body.low)?,
        high: tiers(body.high)?,
    };
    let patient = PatientId::new(patient_id);
    let (stored_limits, stored_patient, stored_metric) =
        (limits.clone(), patient.clone(), metric.clone());
    state
        .stores
        .write(move |store| {
            store.set_alarm_limits(
                &stored_patient,
                &stored_metric,
                Some(&stored_limits),
                Some(&by),
                now(),
            )
        })
        .await??;
    state
        .ward
        .set_patient_alarm_limits(&patient, &metric, Some(limits.clone()));
    Ok(Json(limits_json(&limits)))
}

/// Back to the ward's default limits for this metric.
pub async fn delete_limits(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((patient_id, metric)): Path<(String, String)>,
) -> ApiResult {
    let patient = PatientId::new(patient_id);
    let (stored_patient, stored_metric) = (patient.clone(), metric.clone());
    state
        .stores
        .write(move |store| {
            store.set_alarm_limits(
                &stored_patient,
                &stored_metric,
                None,
                Some(&caller.user),
                now(),
            )
        })
        .await??;
    state.ward.set_patient_alarm_limits(&patient, &metric, None);
    let limits = state.ward.patient_alarm_limits(&patient, &metric);
    Ok(Json(
        json!({ "metric": metric, "default": limits.as_ref().map(limits_json) }),
    ))
}
