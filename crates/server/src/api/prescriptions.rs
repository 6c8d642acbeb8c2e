//! `/api/v1/patients/{id}/oxygen-target`: a clinician's prescribed target SpO2 range. NEWS2
//! scores SpO2 on Scale 2 for a patient prescribed 88–92% (docs/news2.md); the prescription is
//! stored, shown with the patient, and takes effect in the score within a second.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use model::PatientId;
use serde::Deserialize;
use serde_json::{Value, json};
use store::OxygenTargetRecord;

use super::{ApiError, AppState};
use crate::pipeline::now;

type ApiResult = Result<Json<Value>, ApiError>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetBody {
    low_percent: f64,
    high_percent: f64,
    /// Who prescribes. (Until users exist, the caller says; then it is the signed-in user.)
    by: String,
}

fn target_json(patient: &str, target: Option<&OxygenTargetRecord>) -> Value {
    json!({
        "patient_id": patient,
        "oxygen_target": target.map(|t| json!({
            "low_percent": t.low_percent, "high_percent": t.high_percent,
            "set_by": t.set_by, "set_at": t.set_at.millis() })),
    })
}

fn known_patient(state: &AppState, patient_id: &str) -> Result<(), ApiError> {
    let known = state
        .ward
        .directory()
        .patients
        .iter()
        .any(|p| p.id == patient_id);
    known
        .then_some(())
        .ok_or_else(|| ApiError::not_found("patient"))
}

pub async fn get(State(state): State<AppState>, Path(patient_id): Path<String>) -> ApiResult {
    known_patient(&state, &patient_id)?;
    let id = PatientId::new(&patient_id);
    let targets = state.stores.read(|store| store.oxygen_targets()).await??;
    let target = targets.into_iter().find(|(p, _)| *p == id).map(|(_, t)| t);
    Ok(Json(target_json(&patient_id, target.as_ref())))
}

pub async fn put(
    State(state): State<AppState>,
    Path(patient_id): Path<String>,
    body: Result<Json<TargetBody>, JsonRejection>,
) -> ApiResult {
    let Json(body) = body?;
    known_patient(&state, &patient_id)?;
    let (low, high) = (body.low_percent, body.high_percent);
    if !(low.is_finite() && high.is_finite() && 0.0 < low && low <= high && high <= 100.0) {
        return Err(ApiError::bad_request(
            "the target must be 0 < low_percent <= high_percent <= 100",
        ));
    }
    let by = body.by.trim().to_owned();
    if by.is_empty() {
        return Err(ApiError::bad_request("`by` must not be empty"));
    }
    let target = OxygenTargetRecord {
        low_percent: low,
        high_percent: high,
        set_by: by,
        set_at: now(),
    };
    change(&state, &patient_id, Some(target.clone())).await?;
    Ok(Json(target_json(&patient_id, Some(&target))))
}

pub async fn delete(State(state): State<AppState>, Path(patient_id): Path<String>) -> ApiResult {
    known_patient(&state, &patient_id)?;
    change(&state, &patient_id, None).await?;
    Ok(Json(target_json(&patient_id, None)))
}

/// Stores the prescription and reloads the ward's directory, which feeds the NEWS2 context.
async fn change(
    state: &AppState,
    patient_id: &str,
    target: Option<OxygenTargetRecord>,
) -> Result<(), ApiError> {
    let (ward, id) = (state.ward.clone(), PatientId::new(patient_id));
    state
        .stores
        .write(move |store| -> Result<(), store::StoreError> {
            store.set_oxygen_target(&id, target.as_ref())?;
            crate::setup::reload(&ward, store)
        })
        .await??;
    Ok(())
}
