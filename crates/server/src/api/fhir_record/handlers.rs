//! The FHIR record's HTTP handlers. Reads use the store's read connection; changes the write
//! connection, each in one SQL transaction.

use std::collections::HashSet;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use record::bundle::parse_query;
use record::params::{IndexValue, index_values};
use record::search::{MAX_COUNT, SearchRequest};
use record::{EntryOutcome, EntryResult, RecordError, SearchPage, StoredResource};
use serde_json::{Value, json};

use super::scope::RecordScope;
use super::{FhirError, base_url, fhir_response, fhir_text_response, http_date};
use crate::api::AppState;
use crate::auth::Caller;
use crate::pipeline::now;
use crate::record::DeadLetter;

type FhirResult = Result<Response, FhirError>;

/// The source label of the record in metrics and dead letters.
const SOURCE: &str = "fhir_record";

fn parse_body(body: &[u8]) -> Result<Value, RecordError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|error| RecordError::invalid(format!("the body is not JSON: {error}")))?;
    if !value.is_object() {
        return Err(RecordError::invalid(
            "the body must be a FHIR resource (a JSON object)",
        ));
    }
    Ok(value)
}

fn check_type(resource_type: &str) -> Result<(), RecordError> {
    if record::types::is_storable_type(resource_type) {
        Ok(())
    } else {
        Err(RecordError::not_found(format!(
            "unknown resource type `{resource_type}`"
        )))
    }
}

/// A request body that cannot be read (too large, cut off) as an OperationOutcome.
fn body_error(rejection: BytesRejection) -> FhirError {
    let status = rejection.status().as_u16();
    FhirError(RecordError {
        status,
        code: if status == 413 {
            "too-costly"
        } else {
            "invalid"
        },
        message: format!(
            "the request body could not be read: {} (at most {} MiB)",
            rejection.body_text(),
            super::MAX_BODY_BYTES / (1024 * 1024)
        ),
        expression: None,
    })
}

/// The body of a change. One that cannot be read is refused as an OperationOutcome and
/// counted (there is no body to keep as a dead letter).
pub struct ChangeBody(pub Bytes);

impl FromRequest<AppState> for ChangeBody {
    type Rejection = FhirError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        match Bytes::from_request(request, state).await {
            Ok(body) => Ok(ChangeBody(body)),
            Err(rejection) => {
                let error = body_error(rejection);
                state.metrics.received(SOURCE);
                state.metrics.rejected(SOURCE, error.0.code);
                Err(error)
            }
        }
    }
}

/// Counts a refused change and keeps it as a dead letter before answering.
async fn refuse(state: &AppState, origin: String, body: &[u8], error: RecordError) -> FhirError {
    if error.status < 500 {
        let dead = DeadLetter {
            source: SOURCE.into(),
            origin,
            received_ms: now().millis(),
            reason: error.code.to_owned(),
            detail: error.to_string(),
            raw: body.to_vec(),
        };
        if let Err(log_error) = state.ingest.dead_letter(dead).await {
            tracing::error!(error = %log_error, "could not keep a refused fhir request as a dead letter");
        }
    }
    FhirError(error)
}

/// Headers of a stored version: ETag, Last-Modified, and Location for creates.
fn version_headers(response: &mut Response, base: &str, outcome: &EntryOutcome, location: bool) {
    let headers = response.headers_mut();
    if let Some(version) = outcome.version {
        if let Ok(value) = HeaderValue::from_str(&format!("W/\"{version}\"")) {
            headers.insert(header::ETAG, value);
        }
        if location
            && let Some(id) = &outcome.id
            && let Ok(value) = HeaderValue::from_str(&format!(
                "{base}/{}/{id}/_history/{version}",
                outcome.resource_type
            ))
        {
            headers.insert(header::LOCATION, value);
        }
    }
    if let Some(last_updated) = outcome.last_updated
        && let Ok(value) = HeaderValue::from_str(&http_date(last_updated))
    {
        headers.insert(header::LAST_MODIFIED, value);
    }
}

fn stored_response(base: &str, stored: &StoredResource) -> Response {
    let mut response = fhir_response(StatusCode::OK, &stored.resource);
    let outcome = EntryOutcome {
        index: 0,
        resource_type: stored.resource_type.clone(),
        id: Some(stored.id.clone()),
        version: Some(stored.version),
        last_updated: Some(stored.last_updated),
        result: EntryResult::Unchanged,
    };
    version_headers(&mut response, base, &outcome, false);
    response
}

/// The resources a change wrote or deleted, as (type, id).
fn changed(outcomes: &[EntryOutcome]) -> Vec<(String, String)> {
    outcomes
        .iter()
        .filter(|outcome| {
            matches!(
                outcome.result,
                EntryResult::Created
                    | EntryResult::Updated
                    | EntryResult::Deleted { existed: true }
            )
        })
        .filter_map(|outcome| Some((outcome.resource_type.clone(), outcome.id.clone()?)))
        .collect()
}

/// After a committed change: the live ward learns what the record now says (Encounters at a
/// bed, the twin's conditions, medications, allergies, labs; `record_ward`). The change is
/// already committed, so a failure here is logged, not answered as the change's failure.
fn follow_in_ward(store: &mut store::Store, ward: &crate::ward::Ward, outcomes: &[EntryOutcome]) {
    let changed = changed(outcomes);
    if changed.is_empty() {
        return;
    }
    if let Err(error) = crate::record_ward::after_record_change(store, ward, &changed, now()) {
        tracing::error!(%error, "the ward could not follow a record change");
    }
}

/// `POST /fhir`: a transaction, batch or collection Bundle into the record.
pub async fn bundle(State(state): State<AppState>, ChangeBody(body): ChangeBody) -> FhirResult {
    state.metrics.received(SOURCE);
    // Parsing a bundle of a megabyte takes milliseconds: off the async workers.
    let parsed = {
        let body = body.clone();
        tokio::task::spawn_blocking(move || parse_body(&body))
            .await
            .map_err(|error| RecordError::store(error.to_string()))?
    };
    let bundle = match parsed {
        Ok(bundle) => bundle,
        Err(error) => return Err(refuse(&state, "POST /fhir".into(), &body, error).await),
    };
    let n_entries = bundle["entry"].as_array().map_or(0, Vec::len);
    let ward = state.ward.clone();
    let result = state
        .stores
        .write(move |store| {
            store
                .fhir_import_bundle(
                    &bundle,
                    now().millis(),
                    &mut store::fhir_record::new_resource_id,
                )
                .inspect(|(_, outcomes)| follow_in_ward(store, &ward, outcomes))
                .map(|(kind, outcomes)| {
                    let devices: Vec<String> = outcomes
                        .iter()
                        .filter(|outcome| outcome.resource_type == "Device")
                        .filter_map(|outcome| outcome.id.clone())
                        .collect();
                    (
                        record::response_bundle(kind, &outcomes).to_string(),
                        devices,
                    )
                })
        })
        .await?;
    match result {
        Ok((text, devices)) => {
            state.metrics.accepted(SOURCE, n_entries, 0);
            for id in devices {
                register_in_registry(&state, &id).await;
            }
            Ok(fhir_text_response(StatusCode::OK, text))
        }
        Err(error) => Err(refuse(&state, "POST /fhir".into(), &body, error).await),
    }
}

/// `POST /fhir/{type}`: create, conditional with If-None-Exist.
pub async fn create(
    State(state): State<AppState>,
    Path(resource_type): Path<String>,
    headers: HeaderMap,
    ChangeBody(body): ChangeBody,
) -> FhirResult {
    write(state, resource_type, None, headers, body).await
}

/// `PUT /fhir/{type}/{id}`: update or create with a client id, conditional with If-Match.
pub async fn update(
    State(state): State<AppState>,
    Path((resource_type, id)): Path<(String, String)>,
    headers: HeaderMap,
    ChangeBody(body): ChangeBody,
) -> FhirResult {
    write(state, resource_type, Some(id), headers, body).await
}

/// `PUT /fhir/{type}?query` and `DELETE /fhir/{type}?query`: run as a one-entry transaction,
/// so they follow the same rules as in a Bundle (one match: that resource; several: 412).
async fn conditional(
    state: AppState,
    headers: HeaderMap,
    method: &str,
    resource_type: String,
    query: Option<String>,
    body: Bytes,
) -> FhirResult {
    state.metrics.received(SOURCE);
    let origin = format!("{method} /fhir/{resource_type}?…");
    let query = query.unwrap_or_default();
    let checked = check_type(&resource_type)
        .and_then(|()| {
            if query.is_empty() {
                Err(RecordError::invalid(format!(
                    "conditional {method} needs a search query"
                )))
            } else {
                Ok(())
            }
        })
        .and_then(|()| {
            if method == "PUT" {
                parse_body(&body).map(Some)
            } else {
                Ok(None)
            }
        });
    let resource = match checked {
        Ok(resource) => resource,
        Err(error) => return Err(refuse(&state, origin, &body, error).await),
    };
    let mut entry =
        json!({"request": {"method": method, "url": format!("{resource_type}?{query}")}});
    if let Some(resource) = resource {
        entry["resource"] = resource;
    }
    let ward = state.ward.clone();
    let result = state
        .stores
        .write(move |store| {
            store
                .fhir_process_entries(
                    record::BundleKind::Transaction,
                    &[entry],
                    now().millis(),
                    &mut store::fhir_record::new_resource_id,
                )
                .inspect(|outcomes| follow_in_ward(store, &ward, outcomes))
        })
        .await?;
    let mut outcomes = match result {
        Ok(outcomes) => outcomes,
        Err(mut error) => {
            error.expression = None;
            return Err(refuse(&state, origin, &body, error).await);
        }
    };
    state.metrics.accepted(SOURCE, 1, 0);
    let outcome = outcomes.remove(0);
    let status = match outcome.result {
        EntryResult::Deleted { .. } => return Ok(StatusCode::NO_CONTENT.into_response()),
        EntryResult::Created => StatusCode::CREATED,
        _ => StatusCode::OK,
    };
    let stored = {
        let (resource_type, id) = (
            outcome.resource_type.clone(),
            outcome.id.clone().unwrap_or_default(),
        );
        state
            .stores
            .read(move |store| store.fhir_read(&resource_type, &id))
            .await??
    };
    let mut response = fhir_response(
        status,
        &stored.map_or(Value::Null, |stored| stored.resource),
    );
    version_headers(
        &mut response,
        &base_url(&headers),
        &outcome,
        status == StatusCode::CREATED,
    );
    Ok(response)
}

pub async fn conditional_update(
    State(state): State<AppState>,
    Path(resource_type): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    ChangeBody(body): ChangeBody,
) -> FhirResult {
    conditional(state, headers, "PUT", resource_type, query, body).await
}

pub async fn conditional_delete(
    State(state): State<AppState>,
    Path(resource_type): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> FhirResult {
    conditional(state, headers, "DELETE", resource_type, query, Bytes::new()).await
}

async fn write(
    state: AppState,
    resource_type: String,
    put_id: Option<String>,
    headers: HeaderMap,
    body: Bytes,
) -> FhirResult {
    state.metrics.received(SOURCE);
    let origin = match &put_id {
        Some(id) => format!("PUT /fhir/{resource_type}/{id}"),
        None => format!("POST /fhir/{resource_type}"),
    };
    let checked = check_type(&resource_type)
        .and_then(|()| parse_body(&body))
        .and_then(|resource| {
            if resource["resourceType"] != resource_type.as_str() {
                return Err(RecordError::invalid(format!(
                    "the body is not a {resource_type} resource"
                ))
                .at("resourceType"));
            }
            if let (Some(id), Some(body_id)) = (&put_id, resource["id"].as_str())
                && id != body_id
            {
                return Err(
                    RecordError::invalid("the resource id differs from the id in the URL").at("id"),
                );
            }
            if put_id
                .as_deref()
                .is_some_and(|id| !record::types::is_valid_id(id))
            {
                return Err(RecordError::invalid(
                    "the id in the URL must match [A-Za-z0-9-.]{1,64}",
                ));
            }
            Ok(resource)
        });
    let resource = match checked {
        Ok(resource) => resource,
        Err(error) => return Err(refuse(&state, origin, &body, error).await),
    };
    let header_text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (if_none_exist, if_match) = (header_text("if-none-exist"), header_text("if-match"));
    let ward = state.ward.clone();
    let result = state
        .stores
        .write(move |store| {
            store
                .fhir_write_resource(
                    put_id.as_deref(),
                    &resource,
                    if_none_exist.as_deref(),
                    if_match.as_deref(),
                    now().millis(),
                    &mut store::fhir_record::new_resource_id,
                )
                .inspect(|outcome| follow_in_ward(store, &ward, std::slice::from_ref(outcome)))
        })
        .await?;
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(error) => return Err(refuse(&state, origin, &body, error).await),
    };
    state.metrics.accepted(SOURCE, 1, 0);
    let (status, location) = match outcome.result {
        EntryResult::Created => (StatusCode::CREATED, true),
        _ => (StatusCode::OK, false),
    };
    let stored = {
        let (resource_type, id) = (
            outcome.resource_type.clone(),
            outcome.id.clone().unwrap_or_default(),
        );
        state
            .stores
            .read(move |store| store.fhir_read(&resource_type, &id))
            .await??
    };
    let body = stored.map_or(Value::Null, |stored| stored.resource);
    if outcome.resource_type == "Device"
        && let Some(id) = &outcome.id
    {
        register_in_registry(&state, id).await;
    }
    let mut response = fhir_response(status, &body);
    version_headers(&mut response, &base_url(&headers), &outcome, location);
    Ok(response)
}

/// A ward Device written to the record joins the device registry (`sources::fhir_rest::device`).
/// The record's write is already committed: a registry refusal (an identifier naming another
/// device) is logged, and the Device stays in the record only.
async fn register_in_registry(state: &AppState, id: &str) {
    let stored = {
        let id = id.to_owned();
        state
            .stores
            .read(move |store| store.fhir_read("Device", &id))
            .await
    };
    let Ok(Ok(Some(stored))) = stored else {
        return;
    };
    if let Err(issue) =
        crate::sources::fhir_rest::device::register_record_device(state, id, &stored.resource).await
    {
        tracing::warn!(device = %id, problem = %issue.diagnostics, "a fhir device was not registered");
    }
}

/// `DELETE /fhir/{type}/{id}`.
pub async fn delete(
    State(state): State<AppState>,
    Path((resource_type, id)): Path<(String, String)>,
) -> FhirResult {
    check_type(&resource_type)?;
    state.metrics.received(SOURCE);
    let ward = state.ward.clone();
    let deleted = state
        .stores
        .write(move |store| {
            let deleted = store.fhir_delete(&resource_type, &id, now().millis())?;
            if deleted.is_some() {
                let changed = [(resource_type, id)];
                if let Err(error) =
                    crate::record_ward::after_record_change(store, &ward, &changed, now())
                {
                    tracing::error!(%error, "the ward could not follow a record deletion");
                }
            }
            Ok::<_, record::RecordError>(deleted)
        })
        .await??;
    state.metrics.accepted(SOURCE, 1, 0);
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Some(deleted) = deleted
        && let Ok(value) = HeaderValue::from_str(&format!("W/\"{}\"", deleted.version))
    {
        response.headers_mut().insert(header::ETAG, value);
    }
    Ok(response)
}

/// `GET /fhir/{type}/{id}`: 404 when unknown, 410 when deleted.
pub async fn read(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((resource_type, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> FhirResult {
    check_type(&resource_type)?;
    let scope = RecordScope::of(&state, &caller);
    if id.starts_with(['_', '$']) {
        // `_history` of a type, other operations: not ids, and not implemented.
        return Err(RecordError::not_supported(format!(
            "GET /fhir/{resource_type}/{id} is not implemented (see /fhir/metadata)"
        ))
        .into());
    }
    let found = {
        let (resource_type, id) = (resource_type.clone(), id.clone());
        state
            .stores
            .read(move |store| store.fhir_read(&resource_type, &id))
            .await??
    };
    match found {
        // Not in the record: a device Observation's id (`{log offset}-{k}`) reads the log.
        None if resource_type == "Observation" => {
            match crate::sources::fhir_rest::read::device_observation(&state, &id).await {
                Some(observation) => {
                    scope.check(&observation)?;
                    Ok(fhir_response(StatusCode::OK, &observation))
                }
                None => Err(RecordError::not_found("no Observation with this id").into()),
            }
        }
        None => Err(RecordError::not_found(format!("no {resource_type} with this id")).into()),
        Some(stored) if stored.deleted => {
            Err(RecordError::gone(format!("this {resource_type} was deleted")).into())
        }
        Some(stored) => {
            scope.check(&stored.resource)?;
            Ok(stored_response(&base_url(&headers), &stored))
        }
    }
}

/// `GET /fhir/{type}/{id}/_history/{version}`.
pub async fn vread(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((resource_type, id, version)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> FhirResult {
    check_type(&resource_type)?;
    let scope = RecordScope::of(&state, &caller);
    let version: i64 = version
        .parse()
        .map_err(|_| RecordError::not_found("versions are whole numbers"))?;
    let found = {
        let (resource_type, id) = (resource_type.clone(), id.clone());
        state
            .stores
            .read(move |store| store.fhir_vread(&resource_type, &id, version))
            .await??
    };
    match found {
        None => {
            Err(RecordError::not_found(format!("no such version of this {resource_type}")).into())
        }
        Some(stored) if stored.deleted => Err(RecordError::gone(format!(
            "this version of the {resource_type} is its deletion"
        ))
        .into()),
        Some(stored) => {
            scope.check(&stored.resource)?;
            Ok(stored_response(&base_url(&headers), &stored))
        }
    }
}

/// `GET /fhir/{type}/{id}/_history`: every version, newest first, as a history Bundle.
pub async fn history(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((resource_type, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> FhirResult {
    check_type(&resource_type)?;
    let scope = RecordScope::of(&state, &caller);
    let versions = {
        let (resource_type, id) = (resource_type.clone(), id.clone());
        state
            .stores
            .read(move |store| store.fhir_history(&resource_type, &id))
            .await??
    };
    if versions.is_empty() {
        return Err(RecordError::not_found(format!("no {resource_type} with this id")).into());
    }
    // Any version naming a patient outside the caller's wards refuses the whole history.
    for version in versions.iter().filter(|version| !version.deleted) {
        scope.check(&version.resource)?;
    }
    let base = base_url(&headers);
    let oldest = versions.last().map(|v| v.version);
    let entries: Vec<Value> = versions
        .iter()
        .map(|version| {
            let url = format!("{resource_type}/{id}");
            let (method, status) = if version.deleted {
                ("DELETE", "204 No Content")
            } else if Some(version.version) == oldest {
                ("POST", "201 Created")
            } else {
                ("PUT", "200 OK")
            };
            let mut entry = json!({
                "fullUrl": format!("{base}/{url}"),
                "request": { "method": method, "url": url },
                "response": {
                    "status": status,
                    "etag": format!("W/\"{}\"", version.version),
                    "lastModified": record::date::format_instant(version.last_updated)
                }
            });
            if !version.deleted {
                entry["resource"] = version.resource.clone();
            }
            entry
        })
        .collect();
    Ok(fhir_response(
        StatusCode::OK,
        &json!({
            "resourceType": "Bundle", "type": "history", "total": entries.len(),
            "link": [{"relation": "self", "url": format!("{base}/{resource_type}/{id}/_history")}],
            "entry": entries
        }),
    ))
}

/// `POST /fhir/{type}/_search` with a form-encoded body: the same search as `GET`, for
/// clients that keep criteria out of URLs (and server logs).
pub async fn search_by_post(
    state: State<AppState>,
    caller: Extension<Caller>,
    resource_type: Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> FhirResult {
    let body = body.map_err(body_error)?;
    let form = std::str::from_utf8(&body).map_err(|_| {
        RecordError::invalid("the _search body must be application/x-www-form-urlencoded text")
    })?;
    let combined = [query.unwrap_or_default(), form.trim().to_owned()]
        .into_iter()
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("&");
    search(
        state,
        caller,
        resource_type,
        RawQuery(Some(combined)),
        headers,
    )
    .await
}

/// `GET /fhir/{type}?…`: a searchset Bundle with `total`, `self` and `next` links, and the
/// `_include`d resources after the matches.
pub async fn search(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(resource_type): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> FhirResult {
    let pairs = parse_query(query.as_deref().unwrap_or(""));
    let mut request = SearchRequest::parse(&resource_type, &pairs)?;
    if request.summary_count {
        request.count = 0;
    }
    let scope = RecordScope::of(&state, &caller);
    let page = {
        let mut scoped = request.clone();
        let catalog = state.ward.catalog;
        let scope = scope.clone();
        state
            .stores
            .read(move |store| -> Result<_, RecordError> {
                if !scope.restrict(&mut scoped)? {
                    return Ok((SearchPage::default(), Vec::new()));
                }
                let page = super::device_search::search(store, catalog, &scoped)?;
                let mut included = included(store, &scoped, &page.resources)?;
                included.retain(|found| scope.allows(&found.resource));
                Ok((page, included))
            })
            .await??
    };
    let (page, included) = page;
    let base = base_url(&headers);
    // Serializing a large page takes milliseconds: off the async workers.
    let text = tokio::task::spawn_blocking(move || {
        searchset(&base, &resource_type, &pairs, &request, page, &included).to_string()
    })
    .await
    .map_err(|error| RecordError::store(error.to_string()))?;
    Ok(fhir_text_response(StatusCode::OK, text))
}

/// The searchset Bundle of a page: `total`, links, matches then included resources.
fn searchset(
    base: &str,
    resource_type: &str,
    pairs: &[(String, String)],
    request: &SearchRequest,
    page: record::SearchPage,
    included: &[StoredResource],
) -> Value {
    let link_to = |offset: usize| {
        let mut query: Vec<String> = pairs
            .iter()
            .filter(|(name, _)| name != "_offset")
            .map(|(name, value)| format!("{}={}", encode(name), encode(value)))
            .collect();
        if offset > 0 {
            query.push(format!("_offset={offset}"));
        }
        if query.is_empty() {
            format!("{base}/{resource_type}")
        } else {
            format!("{base}/{resource_type}?{}", query.join("&"))
        }
    };
    let mut links = vec![json!({"relation": "self", "url": link_to(request.offset)})];
    if !request.summary_count && request.count > 0 && request.offset + request.count < page.total {
        links.push(json!({"relation": "next", "url": link_to(request.offset + request.count)}));
    }
    if request.offset > 0 && request.count > 0 {
        links.push(json!({"relation": "previous", "url": link_to(request.offset.saturating_sub(request.count))}));
    }
    let mut entries: Vec<Value> = page
        .resources
        .iter()
        .map(|found| search_entry(base, found, "match"))
        .collect();
    entries.extend(
        included
            .iter()
            .map(|found| search_entry(base, found, "include")),
    );
    let mut bundle = json!({
        "resourceType": "Bundle", "type": "searchset", "total": page.total, "link": links,
    });
    if !entries.is_empty() {
        bundle["entry"] = json!(entries);
    }
    bundle
}

fn search_entry(base: &str, found: &StoredResource, mode: &str) -> Value {
    json!({
        "fullUrl": format!("{base}/{}/{}", found.resource_type, found.id),
        "resource": found.resource,
        "search": { "mode": mode }
    })
}

/// The targets of the request's `_include` parameters among `matches`, each once.
fn included(
    store: &store::Store,
    request: &SearchRequest,
    matches: &[StoredResource],
) -> Result<Vec<StoredResource>, RecordError> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for found in matches {
        let values = index_values(&found.resource);
        for def in &request.includes {
            for (_, value) in values.iter().filter(|(name, _)| *name == def.name) {
                if let IndexValue::Reference {
                    target_type,
                    target_id,
                } = value
                    && seen.insert((target_type.clone(), target_id.clone()))
                    && let Some(target) = store.fhir_read(target_type, target_id)?
                    && !target.deleted
                {
                    out.push(target);
                }
            }
        }
    }
    Ok(out)
}

/// `GET /fhir/Observation/$lastn`: the latest `max` (default 1) observations of each code for a
/// patient, newest first, filtered by the other Observation search parameters (`category`,
/// `code`, `date`).
pub async fn lastn(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> FhirResult {
    let mut pairs = parse_query(query.as_deref().unwrap_or(""));
    let mut max = 1usize;
    let mut rest = Vec::new();
    for (name, value) in pairs.drain(..) {
        if name == "max" {
            max = value.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                RecordError::invalid(format!("max must be a whole number from 1, not `{value}`"))
            })?;
        } else if matches!(
            name.as_str(),
            "_sort" | "_count" | "_offset" | "_summary" | "_include"
        ) {
            return Err(RecordError::invalid(format!("$lastn does not take `{name}`")).into());
        } else {
            rest.push((name, value));
        }
    }
    if !rest
        .iter()
        .any(|(name, _)| name == "patient" || name == "subject")
    {
        return Err(RecordError::invalid("$lastn needs a patient (or subject) parameter").into());
    }
    let mut request = SearchRequest::parse("Observation", &rest)?;
    request.sort = vec![record::SortKey {
        param: "date".into(),
        descending: true,
    }];
    request.count = MAX_COUNT * 100;
    let catalog = state.ward.catalog;
    let scope = RecordScope::of(&state, &caller);
    let mut candidates = state
        .stores
        .read(move |store| -> Result<_, RecordError> {
            if !scope.restrict(&mut request)? {
                return Ok(Vec::new());
            }
            let mut found = store.fhir_search(&request)?.resources;
            // Device data is many values per code: the newest of each metric, from SQL.
            found.extend(super::device_search::latest_per_metric(
                store, catalog, &request, max,
            )?);
            Ok(found)
        })
        .await??;
    candidates.sort_by_cached_key(|found| std::cmp::Reverse(effective_start(&found.resource)));
    let mut per_code: std::collections::HashMap<String, usize> = Default::default();
    let base = base_url(&headers);
    let entries: Vec<Value> = candidates
        .iter()
        .filter(|found| {
            let count = per_code.entry(code_key(&found.resource)).or_default();
            *count += 1;
            *count <= max
        })
        .map(|found| search_entry(&base, found, "match"))
        .collect();
    let mut bundle = json!({"resourceType": "Bundle", "type": "searchset", "total": entries.len(),
        "link": [{"relation": "self", "url": format!("{base}/Observation/$lastn?{}", query.unwrap_or_default())}]});
    if !entries.is_empty() {
        bundle["entry"] = json!(entries);
    }
    Ok(fhir_response(StatusCode::OK, &bundle))
}

/// When an observation took effect, for ordering `$lastn`'s candidates newest first.
fn effective_start(observation: &Value) -> i64 {
    index_values(observation)
        .into_iter()
        .filter_map(|(name, value)| match (name, value) {
            ("date", IndexValue::Date(range)) => Some(range.low),
            _ => None,
        })
        .min()
        .unwrap_or(i64::MIN)
}

/// What makes two observations "the same code" for $lastn: the first coding's system and code,
/// else the text.
fn code_key(observation: &Value) -> String {
    let coding = &observation["code"]["coding"][0];
    match coding["code"].as_str() {
        Some(code) => format!("{}|{code}", coding["system"].as_str().unwrap_or_default()),
        None => observation["code"]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    }
}

fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'.'
            | b'_'
            | b'~'
            | b':'
            | b'/'
            | b'$'
            | b',' => out.push(byte as char),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}
