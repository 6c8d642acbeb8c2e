//! `POST /fhir/Observation` and `POST /fhir` (transaction and batch Bundles of Observations).
//!
//! The unit of acceptance, counted in `/metrics` so that received = accepted + rejected: one
//! Observation create, one transaction Bundle (all or nothing), each entry of a batch Bundle
//! (independent), or one body that is not a usable Bundle at all.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fhir::observation::DeviceReference;
use fhir::{Bundle, BundleEntry, BundleResponse, Issue, IssueCode, OperationOutcome};
use model::{AssociationTarget, DeviceId, Timestamp};

use super::{
    BODY_LIMIT_BYTES, SOURCE, check_content_type, outcome_response, parse_json, resource_response,
    server_issue,
};
use crate::api::AppState;
use crate::pipeline::now;
use crate::record::DeadLetter;

/// One Observation, understood and mapped, ready for the log.
struct Prepared {
    resource: fhir::Observation,
    device_id: DeviceId,
    subject: Option<AssociationTarget>,
    observations: Vec<model::Observation>,
}

/// `speaker`: the device whose token authenticated the request (`auth::tokens`), which may
/// post only Observations naming itself; `None` for a user.
pub async fn create(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    speaker: Option<DeviceId>,
) -> Response {
    let received = now();
    state.metrics.received(SOURCE);
    let origin = uri.path().to_owned();
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            return reject(
                &state,
                &origin,
                received,
                Vec::new(),
                &unreadable(rejection),
            )
            .await;
        }
    };
    let prepared = match check_content_type(&headers).and_then(|()| parse_json(&body)) {
        Ok(json) => prepare(&state, json, received, speaker.as_ref()).await,
        Err(issue) => Err(issue),
    };
    let prepared = match prepared {
        Ok(prepared) => prepared,
        Err(issue) => return reject(&state, &origin, received, body.to_vec(), &issue).await,
    };
    let Prepared {
        mut resource,
        device_id,
        subject,
        observations,
    } = prepared;
    let offset = match state
        .ingest
        .accept(SOURCE, device_id, observations, received, subject)
        .await
    {
        Ok(offset) => offset,
        Err(error) => {
            tracing::error!(%error, "could not make a fhir observation durable");
            state.metrics.rejected(SOURCE, "internal");
            return outcome_response(&server_issue(
                "the data could not be made durable; nothing was accepted, retry",
            ));
        }
    };
    let id = format!("{}-0", offset.0);
    resource.id = Some(id.clone());
    resource.meta = Some(fhir::Meta {
        last_updated: Some(fhir::datetime::format(received)),
        ..fhir::Meta::default()
    });
    let location = format!("/fhir/Observation/{id}");
    let minimal = headers
        .get("prefer")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|prefer| prefer.contains("return=minimal"));
    let mut response = if minimal {
        StatusCode::CREATED.into_response()
    } else {
        resource_response(StatusCode::CREATED, &resource)
    };
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

async fn prepare(
    state: &AppState,
    json: serde_json::Value,
    received: Timestamp,
    speaker: Option<&DeviceId>,
) -> Result<Prepared, Issue> {
    let resource = fhir::observation::parse(json)?;
    let device_id = resolve_device(state, fhir::observation::device_reference(&resource)?).await?;
    if let Some(speaker) = speaker
        && *speaker != device_id
    {
        return Err(Issue::new(
            403,
            IssueCode::Forbidden,
            "device_mismatch",
            Some("Observation.device"),
            format!(
                "this token belongs to device {speaker}: it may post only that device's Observations, not Device/{device_id}'s"
            ),
        ));
    }
    let subject = fhir::observation::subject(&resource)?;
    check_subject(state, subject.as_ref())?;
    let observations =
        fhir::observation::to_core(state.ward.catalog, &resource, &device_id, received)?;
    Ok(Prepared {
        resource,
        device_id,
        subject,
        observations,
    })
}

async fn resolve_device(state: &AppState, reference: DeviceReference) -> Result<DeviceId, Issue> {
    match reference {
        // A device that is not registered yet is accepted, as over MQTT: its data stays
        // unassociated (listed for clinical engineers) unless the Observation names a subject.
        DeviceReference::Id(id) => Ok(id),
        DeviceReference::Identifier { system, value } => {
            let (looked_system, looked_value) = (system.clone(), value.clone());
            let found = state
                .stores
                .read(move |store| store.device_by_identifier(&looked_system, &looked_value))
                .await
                .map_err(|_| server_issue("the device registry could not be read"))?
                .map_err(|_| server_issue("the device registry could not be read"))?;
            found.ok_or_else(|| {
                Issue::unprocessable(
                    IssueCode::NotFound,
                    "unknown_device",
                    "Observation.device.identifier",
                    format!("no registered device has identifier {system}|{value}; register it with PUT /fhir/Device/{{id}} or reference Device/{{id}}"),
                )
            })
        }
    }
}

/// A named patient or room must be known to the ward: data put on an id nobody has would be
/// invisible on every view and attributed by guess.
fn check_subject(state: &AppState, subject: Option<&AssociationTarget>) -> Result<(), Issue> {
    let directory = state.ward.directory();
    let known = match subject {
        None => true,
        Some(AssociationTarget::Patient(patient)) => directory
            .patients
            .iter()
            .any(|known| known.id == patient.as_str()),
        Some(AssociationTarget::Room(room)) => directory
            .wards
            .iter()
            .flat_map(|ward| &ward.rooms)
            .any(|known| known.id == room.as_str()),
        Some(AssociationTarget::Bed(_)) => true,
    };
    if known {
        return Ok(());
    }
    Err(Issue::unprocessable(
        IssueCode::NotFound,
        "unknown_subject",
        "Observation.subject.reference",
        "the subject is not a patient or location known to this ward",
    ))
}

/// A body that could not be read: over the size limit (413, kept without its bytes) or broken
/// off mid-way (400).
fn unreadable(rejection: BytesRejection) -> Issue {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return Issue::new(
            413,
            IssueCode::TooCostly,
            "too_large",
            None,
            format!(
                "the body is larger than the {} MiB limit; split it into several requests",
                BODY_LIMIT_BYTES / (1024 * 1024)
            ),
        );
    }
    Issue::new(400, IssueCode::Invalid, "body", None, rejection.body_text())
}

/// Keeps the refused input as a dead letter (counted under its reason), then answers with the
/// OperationOutcome.
async fn reject(
    state: &AppState,
    origin: &str,
    received: Timestamp,
    raw: Vec<u8>,
    issue: &Issue,
) -> Response {
    if let Err(response) = keep(state, origin, received, raw, issue).await {
        return response;
    }
    let mut response = outcome_response(issue);
    response
        .extensions_mut()
        .insert(crate::auth::middleware::RefusalReason(issue.reason));
    response
}

/// 403: what a device token may not do (`reason` `device_scope`).
pub fn device_scope_issue(diagnostics: &str) -> Issue {
    Issue::new(
        403,
        IssueCode::Forbidden,
        "device_scope",
        None,
        diagnostics.to_owned(),
    )
}

/// Refuses a device's request as refused device input is: counted as received and rejected
/// under the issue's reason, kept as a dead letter, answered with the OperationOutcome.
pub async fn refuse_device(
    state: &AppState,
    origin: &str,
    raw: Vec<u8>,
    issue: &Issue,
) -> Response {
    state.metrics.received(SOURCE);
    reject(state, origin, now(), raw, issue).await
}

async fn keep(
    state: &AppState,
    origin: &str,
    received: Timestamp,
    raw: Vec<u8>,
    issue: &Issue,
) -> Result<(), Response> {
    let detail = match &issue.expression {
        Some(expression) => format!("{expression}: {}", issue.diagnostics),
        None => issue.diagnostics.clone(),
    };
    let dead = DeadLetter {
        source: SOURCE.into(),
        origin: origin.to_owned(),
        received_ms: received.millis(),
        reason: issue.reason.into(),
        detail,
        raw,
    };
    match state.ingest.dead_letter(dead).await {
        Ok(_) => Ok(()),
        Err(error) => {
            tracing::error!(%error, "could not keep a refused fhir resource");
            Err(outcome_response(&server_issue(
                "the refused input could not be kept; retry",
            )))
        }
    }
}

fn status_line(status: u16) -> String {
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|status| status.canonical_reason())
        .unwrap_or("");
    format!("{status} {reason}")
}

pub async fn bundle(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    speaker: Option<DeviceId>,
) -> Response {
    let received = now();
    let origin = uri.path().to_owned();
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            state.metrics.received(SOURCE);
            return reject(
                &state,
                &origin,
                received,
                Vec::new(),
                &unreadable(rejection),
            )
            .await;
        }
    };
    let bundle = check_content_type(&headers)
        .and_then(|()| parse_json(&body))
        .and_then(parse_bundle);
    let bundle = match bundle {
        Ok(bundle) => bundle,
        Err(issue) => {
            state.metrics.received(SOURCE);
            return reject(&state, &origin, received, body.to_vec(), &issue).await;
        }
    };
    if bundle.type_ == "transaction" {
        state.metrics.received(SOURCE);
        transaction(
            &state,
            &origin,
            received,
            bundle,
            body.to_vec(),
            speaker.as_ref(),
        )
        .await
    } else {
        batch(&state, &origin, received, bundle, speaker.as_ref()).await
    }
}

fn parse_bundle(json: serde_json::Value) -> Result<Bundle, Issue> {
    if json.get("resourceType").and_then(serde_json::Value::as_str) != Some("Bundle") {
        return Err(Issue::new(
            400,
            IssueCode::Invalid,
            "resource_type",
            Some("Bundle.resourceType"),
            "POST /fhir takes a Bundle of type transaction or batch",
        ));
    }
    let bundle: Bundle = fhir::issue::parse_resource("Bundle", json)?;
    if !matches!(bundle.type_.as_str(), "transaction" | "batch") {
        return Err(Issue::unprocessable(
            IssueCode::NotSupported,
            "bundle_type",
            "Bundle.type",
            format!(
                "Bundle type `{}` is not processed here; use transaction or batch",
                bundle.type_
            ),
        ));
    }
    Ok(bundle)
}

async fn prepare_entry(
    state: &AppState,
    index: usize,
    entry: BundleEntry,
    received: Timestamp,
    speaker: Option<&DeviceId>,
) -> Result<Prepared, Issue> {
    let at = format!("Bundle.entry[{index}]");
    let supported = entry.request.as_ref().is_some_and(|request| {
        request.method == "POST" && request.url.trim_start_matches('/') == "Observation"
    });
    if !supported {
        return Err(Issue::unprocessable(
            IssueCode::NotSupported,
            "bundle_entry",
            &format!("{at}.request"),
            "each entry must be request POST Observation (other interactions are not supported in Bundles yet)",
        ));
    }
    let Some(resource) = entry.resource else {
        return Err(Issue::unprocessable(
            IssueCode::Required,
            "required",
            &format!("{at}.resource"),
            "the entry has no resource",
        ));
    };
    prepare(state, resource, received, speaker)
        .await
        .map_err(|issue| issue.in_entry(index))
}

fn entry_response(
    status: u16,
    location: Option<String>,
    received: Timestamp,
    outcome: Option<OperationOutcome>,
) -> BundleEntry {
    BundleEntry {
        response: Some(BundleResponse {
            status: status_line(status),
            location,
            last_modified: (status < 300).then(|| fhir::datetime::format(received)),
            outcome,
            etag: None,
        }),
        ..BundleEntry::default()
    }
}

fn response_bundle(type_: &str, entry: Vec<BundleEntry>) -> Bundle {
    Bundle {
        resource_type: "Bundle".into(),
        type_: type_.into(),
        entry,
        ..Bundle::default()
    }
}

/// All or nothing: every entry is checked before anything goes to the log; then all the
/// records go together and the answer waits for their shared fsync.
async fn transaction(
    state: &AppState,
    origin: &str,
    received: Timestamp,
    bundle: Bundle,
    raw: Vec<u8>,
    speaker: Option<&DeviceId>,
) -> Response {
    let mut prepared = Vec::with_capacity(bundle.entry.len());
    let mut issues = Vec::new();
    for (index, entry) in bundle.entry.into_iter().enumerate() {
        match prepare_entry(state, index, entry, received, speaker).await {
            Ok(entry) => prepared.push(entry),
            Err(issue) => issues.push(issue),
        }
    }
    if prepared.is_empty() && issues.is_empty() {
        issues.push(Issue::unprocessable(
            IssueCode::Required,
            "required",
            "Bundle.entry",
            "the transaction has no entries",
        ));
    }
    if let Some(first) = issues.first() {
        if let Err(response) = keep(state, origin, received, raw, first).await {
            return response;
        }
        let outcome = OperationOutcome::new(issues.iter().map(Issue::outcome_issue).collect());
        let status = StatusCode::from_u16(first.status).unwrap_or(StatusCode::BAD_REQUEST);
        let mut response = resource_response(status, &outcome);
        response
            .extensions_mut()
            .insert(crate::auth::middleware::RefusalReason(first.reason));
        return response;
    }
    // One group per (device, subject), in order of first appearance, all in one log record.
    let mut groups: Vec<(DeviceId, Vec<model::Observation>, Option<AssociationTarget>)> =
        Vec::new();
    // Where each entry's first observation lands: (its group, its position in the group).
    let mut placed: Vec<(usize, usize)> = Vec::new();
    for entry in prepared {
        match groups.iter().position(|(device, _, subject)| {
            *device == entry.device_id && *subject == entry.subject
        }) {
            Some(index) => {
                placed.push((index, groups[index].1.len()));
                groups[index].1.extend(entry.observations);
            }
            None => {
                placed.push((groups.len(), 0));
                groups.push((entry.device_id, entry.observations, entry.subject));
            }
        }
    }
    // The log record lists the groups' observations one group after the other: an entry's
    // id names the position of its first observation there, so `GET /fhir/Observation/{id}`
    // finds it (`read.rs`).
    let mut group_starts = Vec::with_capacity(groups.len());
    let mut start = 0;
    for group in &groups {
        group_starts.push(start);
        start += group.1.len();
    }
    let positions: Vec<usize> = placed
        .iter()
        .map(|(group, within)| group_starts[*group] + within)
        .collect();
    let offset = match state.ingest.accept_all(SOURCE, groups, received).await {
        Ok(offset) => offset,
        Err(error) => {
            tracing::error!(%error, "could not make a fhir transaction durable");
            state.metrics.rejected(SOURCE, "internal");
            return outcome_response(&server_issue(
                "the transaction could not be made durable; retry it",
            ));
        }
    };
    // Entry k of the transaction is Observation `{offset}-{position of its first value}`.
    let entries = positions
        .into_iter()
        .map(|position| {
            let location = format!("Observation/{}-{position}", offset.0);
            entry_response(201, Some(location), received, None)
        })
        .collect();
    resource_response(
        StatusCode::OK,
        &response_bundle("transaction-response", entries),
    )
}

/// Each entry on its own: accepted ones are durable when the answer is sent, refused ones are
/// dead letters with their OperationOutcome in the response entry.
async fn batch(
    state: &AppState,
    origin: &str,
    received: Timestamp,
    bundle: Bundle,
    speaker: Option<&DeviceId>,
) -> Response {
    let work = bundle
        .entry
        .into_iter()
        .enumerate()
        .map(|(index, entry)| async move {
            state.metrics.received(SOURCE);
            let raw = serde_json::to_vec(&entry).unwrap_or_default();
            match prepare_entry(state, index, entry, received, speaker).await {
                Ok(prepared) => {
                    match state
                        .ingest
                        .accept(
                            SOURCE,
                            prepared.device_id,
                            prepared.observations,
                            received,
                            prepared.subject,
                        )
                        .await
                    {
                        Ok(offset) => entry_response(
                            201,
                            Some(format!("Observation/{}-0", offset.0)),
                            received,
                            None,
                        ),
                        Err(error) => {
                            tracing::error!(%error, "could not make a fhir batch entry durable");
                            state.metrics.rejected(SOURCE, "internal");
                            let issue =
                                server_issue("the entry could not be made durable; retry it");
                            entry_response(500, None, received, Some(issue.to_outcome()))
                        }
                    }
                }
                Err(issue) => {
                    let status = match keep(state, origin, received, raw, &issue).await {
                        Ok(()) => issue.status,
                        Err(_) => 500,
                    };
                    entry_response(status, None, received, Some(issue.to_outcome()))
                }
            }
        });
    // Concurrently, so the entries share the log's group commit.
    let entries = futures::future::join_all(work).await;
    resource_response(StatusCode::OK, &response_bundle("batch-response", entries))
}
