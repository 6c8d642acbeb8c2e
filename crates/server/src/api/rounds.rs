//! Virtual rounds over REST: a clinician's note at a bed, with an optional consciousness
//! assessment (ACVPU) and whether the patient was reviewed. The ACVPU goes through the same
//! ingest as any device value (durable in the log before the answer, then the twin and NEWS2),
//! as the observation `consciousness_acvpu` of the pseudo-device `charting` about the patient;
//! the note itself is stored in `round_notes` and written to the medical record as a FHIR
//! R4 `ClinicalImpression` (summary = the text, assessor = the author, the ACVPU as a finding). A refused note is counted and kept as a dead
//! letter, like any refused input.

use std::collections::HashSet;

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use model::{AssociationTarget, DeviceId, Observation, ObservedValue, PatientId, Quality};
use serde::Deserialize;
use serde_json::{Value, json};
use store::RoundNote;

use super::{ApiError, AppState};
use crate::auth::Caller;
use crate::pipeline::now;
use crate::record::DeadLetter;
use crate::ward::CHARTING_SOURCE;

/// The pseudo-device a charted assessment comes from.
const CHARTING_DEVICE: &str = "charting";
const MAX_NOTE_CHARS: usize = 10_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoteRequest {
    patient_id: String,
    /// The author is the signed-in user. Optional; if given it must be that user.
    author: Option<String>,
    #[serde(default)]
    text: String,
    /// `A`, `C` (new confusion), `V`, `P` or `U`.
    acvpu: Option<String>,
    #[serde(default)]
    reviewed: bool,
}

/// ACVPU's letter to the catalog's code (docs/news2.md: 0 Alert … 4 Unresponsive).
fn acvpu_code(letter: &str) -> Option<(char, f64)> {
    let code = match letter {
        "A" => 0.0,
        "C" => 1.0,
        "V" => 2.0,
        "P" => 3.0,
        "U" => 4.0,
        _ => return None,
    };
    Some((letter.chars().next()?, code))
}

pub fn note_json(note: &RoundNote) -> Value {
    json!({ "id": note.id, "patient_id": note.patient_id.to_string(), "author": note.author,
            "at": note.at.millis(), "text": note.text,
            "acvpu": note.acvpu.map(String::from), "reviewed": note.reviewed,
            "record": note.record_reference })
}

/// `POST /api/v1/rounds/notes`: 201 with the stored note, written in the signed-in user's name.
pub async fn create_note(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let request = match parse(&state, &caller, &body) {
        Ok(request) => request,
        Err((reason, message)) => return Err(refuse(&state, &body, reason, message).await),
    };
    let patient_id = PatientId::new(&request.patient_id);
    let acvpu = match request.acvpu.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(letter) => Some(acvpu_code(letter).expect("checked in parse")),
    };
    let at = now();
    if let Some((_, code)) = acvpu {
        let observation = Observation {
            device_id: DeviceId::new(CHARTING_DEVICE),
            metric: "consciousness_acvpu".into(),
            value: ObservedValue::Numeric(code),
            device_time: at,
            received_time: at,
            body_site: None,
            quality: Quality::GOOD,
            reference_range: None,
        };
        state
            .ingest
            .accept(
                CHARTING_SOURCE,
                DeviceId::new(CHARTING_DEVICE),
                vec![observation],
                at,
                Some(AssociationTarget::Patient(patient_id.clone())),
            )
            .await
            .map_err(ApiError::internal)?;
    }
    let (author, text, reviewed) = (
        caller.user.clone(),
        request.text.trim().to_owned(),
        request.reviewed,
    );
    let impression = clinical_impression(&patient_id, &author, at, &text, acvpu.map(|(l, _)| l));
    let note = state
        .stores
        .write(move |store| {
            let written = store
                .fhir_write_resource(
                    None,
                    &impression,
                    None,
                    None,
                    at.millis(),
                    &mut store::fhir_record::new_resource_id,
                )
                .map_err(ApiError::internal)?;
            let reference = written
                .id
                .map(|id| format!("{}/{id}", written.resource_type));
            store
                .insert_round_note(RoundNote {
                    id: 0,
                    patient_id,
                    author,
                    at,
                    text,
                    acvpu: acvpu.map(|(letter, _)| letter),
                    reviewed,
                    record_reference: reference,
                })
                .map_err(ApiError::from)
        })
        .await??;
    let written = note_json(&note);
    state.ward.publish_note(&note.patient_id, written.clone());
    Ok((StatusCode::CREATED, Json(written)))
}

/// The note as the record keeps it: a completed ClinicalImpression about the patient.
fn clinical_impression(
    patient_id: &PatientId,
    author: &str,
    at: model::Timestamp,
    text: &str,
    acvpu: Option<char>,
) -> Value {
    let mut resource = json!({
        "resourceType": "ClinicalImpression",
        "status": "completed",
        "description": "Virtual ward round note",
        "subject": { "reference": format!("Patient/{patient_id}") },
        "effectiveDateTime": record::date::format_instant(at.millis()),
        "date": record::date::format_instant(at.millis()),
        "assessor": { "display": author },
    });
    if !text.is_empty() {
        resource["summary"] = json!(text);
    }
    if let Some(letter) = acvpu {
        resource["finding"] = json!([{ "itemCodeableConcept": {
            "coding": [{ "system": "http://loinc.org", "code": "80288-4",
                         "display": "Level of consciousness (ACVPU)" }],
            "text": format!("ACVPU {letter}") } }]);
    }
    resource
}

/// Checks a request; on refusal, the metrics reason and the message.
fn parse(
    state: &AppState,
    caller: &Caller,
    body: &[u8],
) -> Result<NoteRequest, (&'static str, String)> {
    let request: NoteRequest =
        serde_json::from_slice(body).map_err(|e| ("invalid_json", format!("invalid note: {e}")))?;
    // Nobody writes a note in another's name: an `author`, kept for older clients, must be
    // the signed-in user.
    if let Some(author) = request.author.as_deref().map(str::trim)
        && author != caller.user
    {
        return Err((
            "wrong_author",
            "`author` must be the signed-in user (or left out)".into(),
        ));
    }
    if request.text.chars().count() > MAX_NOTE_CHARS {
        return Err((
            "note_too_long",
            format!("a note has at most {MAX_NOTE_CHARS} characters"),
        ));
    }
    let acvpu = request
        .acvpu
        .as_deref()
        .map(str::trim)
        .filter(|a| !a.is_empty());
    if let Some(letter) = acvpu
        && acvpu_code(letter).is_none()
    {
        return Err((
            "invalid_acvpu",
            format!("`acvpu` must be one of A, C, V, P, U, not `{letter}`"),
        ));
    }
    if request.text.trim().is_empty() && acvpu.is_none() && !request.reviewed {
        return Err((
            "empty_note",
            "a note needs `text`, `acvpu` or `reviewed`".into(),
        ));
    }
    if !state
        .ward
        .directory()
        .patients
        .iter()
        .any(|p| p.id == request.patient_id)
    {
        return Err(("unknown_patient", "no such patient".into()));
    }
    if !sees(&visible_patients(state, caller), &request.patient_id) {
        return Err((
            "outside_wards",
            "the patient is not in one of your wards".into(),
        ));
    }
    Ok(request)
}

async fn refuse(state: &AppState, body: &[u8], reason: &'static str, message: String) -> ApiError {
    let dead = DeadLetter {
        source: "rounds".into(),
        origin: "POST /api/v1/rounds/notes".into(),
        received_ms: now().millis(),
        reason: reason.into(),
        detail: message.clone(),
        raw: body.to_vec(),
    };
    // dead_letter counts the refusal in /metrics with its reason.
    if let Err(error) = state.ingest.dead_letter(dead).await {
        tracing::error!(error = %error, "could not keep a refused round note as a dead letter");
    }
    if reason == "unknown_patient" {
        ApiError::not_found("patient")
    } else if reason == "outside_wards" {
        ApiError::forbidden(message)
    } else {
        ApiError::bad_request(message)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotesQuery {
    patient: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/v1/rounds/notes?patient=&limit=`: newest first.
pub async fn list_notes(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<NotesQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let visible = visible_patients(&state, &caller);
    if let Some(patient) = &query.patient
        && !sees(&visible, patient)
    {
        return Err(ApiError::forbidden(
            "the patient is not in one of your wards",
        ));
    }
    let patients: Option<Vec<PatientId>> = match (query.patient, visible) {
        (Some(patient), _) => Some(vec![PatientId::new(patient)]),
        (None, Some(patients)) => Some(patients.into_iter().map(PatientId::new).collect()),
        (None, None) => None,
    };
    let notes = state
        .stores
        .read(move |store| store.round_notes(patients.as_deref(), limit))
        .await??;
    Ok(Json(json!(notes.iter().map(note_json).collect::<Vec<_>>())))
}

/// The patients a caller may see round notes of (`None`: all).
fn visible_patients(state: &AppState, caller: &Caller) -> Option<HashSet<String>> {
    crate::auth::visible_patients(&state.ward.directory(), caller)
}

fn sees(visible: &Option<HashSet<String>>, patient: &str) -> bool {
    visible
        .as_ref()
        .is_none_or(|patients| patients.contains(patient))
}

/// `GET /api/v1/rounds/reviews`: each patient's latest review, for the worklist's
/// "time since last review".
pub async fn last_reviews(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, ApiError> {
    let reviews = state.stores.read(|store| store.last_reviews()).await??;
    let visible = visible_patients(&state, &caller);
    Ok(Json(json!(
        reviews
            .iter()
            .filter(|r| sees(&visible, r.patient_id.as_str()))
            .map(|r| json!({ "patient_id": r.patient_id.to_string(), "at": r.at.millis(), "author": r.author }))
            .collect::<Vec<_>>()
    )))
}
