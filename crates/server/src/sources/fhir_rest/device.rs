//! Device resources: create (`POST /fhir/Device`), update or create (`PUT /fhir/Device/{id}`),
//! read, and search by identifier. They write the same device registry as
//! `POST /api/v1/devices`: the store first (device, details and identifiers in one
//! transaction), then the live registry. Device changes are configuration, not device data:
//! refusals are answered with an OperationOutcome but are not dead letters.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use fhir::device::DeviceDescription;
use fhir::{Bundle, BundleEntry, Coding, Issue, IssueCode};
use model::DeviceId;
use store::{DeviceDetails, DeviceIdentifier, DeviceRecord, DeviceType, StoreError};
use twin::DeviceInfo;

use super::{check_content_type, outcome_response, parse_json, resource_response, server_issue};
use crate::api::AppState;

fn parse_device(headers: &HeaderMap, body: &[u8]) -> Result<fhir::Device, Issue> {
    check_content_type(headers)?;
    fhir::device::parse(parse_json(body)?)
}

/// A device id usable both as a FHIR id and on the other channels (MQTT topic).
fn usable_id(id: &str) -> bool {
    fhir::observation::valid_id(id)
}

pub async fn create(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let result = async {
        let device = parse_device(&headers, &body)?;
        let description = fhir::device::describe(&device)?;
        // The server names what is created; the name that serves on every channel is the
        // device's own EUI-64 (16 hex digits) or else its serial number.
        let id = description
            .identifiers
            .iter()
            .find(|(system, _)| system == fhir::system::EUI64)
            .map(|(system, value)| store::identifier_key(system, value))
            .or_else(|| description.serial_number.clone())
            .filter(|id| usable_id(id))
            .ok_or_else(|| {
                Issue::unprocessable(
                    IssueCode::Required,
                    "device_id",
                    "Device.identifier",
                    format!("POST needs an EUI-64 identifier ({}) or a serialNumber to name the device; otherwise use PUT /fhir/Device/{{id}}", fhir::system::EUI64),
                )
            })?;
        register(&state, DeviceId::new(id), description).await
    }
    .await;
    result.unwrap_or_else(|issue| outcome_response(&issue))
}

pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        if !usable_id(&id) {
            return Err(Issue::new(
                400,
                IssueCode::Value,
                "device_id",
                None,
                "the id in the URL must be 1 to 64 of letters, digits, - and .",
            ));
        }
        let device = parse_device(&headers, &body)?;
        if device.id.as_deref() != Some(id.as_str()) {
            return Err(Issue::new(
                400,
                IssueCode::Invalid,
                "device_id",
                Some("Device.id"),
                "Device.id must be present and equal the id in the URL",
            ));
        }
        let description = fhir::device::describe(&device)?;
        register(&state, DeviceId::new(id), description).await
    }
    .await;
    result.unwrap_or_else(|issue| outcome_response(&issue))
}

async fn register(
    state: &AppState,
    id: DeviceId,
    description: DeviceDescription,
) -> Result<Response, Issue> {
    let details = DeviceDetails {
        manufacturer: description.manufacturer.clone(),
        serial_number: description.serial_number.clone(),
        device_type: description
            .type_codings
            .iter()
            .find(|coding| !coding.is(fhir::system::METAWARD_DEVICE_KIND))
            .and_then(|coding| {
                Some(DeviceType {
                    system: coding.system.clone()?,
                    code: coding.code.clone()?,
                    display: coding.display.clone(),
                })
            }),
        identifiers: description
            .identifiers
            .iter()
            .map(|(system, value)| DeviceIdentifier {
                system: system.clone(),
                value: value.clone(),
            })
            .collect(),
    };
    let (stored_id, kind, model) = (id.clone(), description.kind, description.model.clone());
    let outcome = state
        .stores
        .write(move |store| -> Result<(bool, DeviceRecord), StoreError> {
            let existing = store.device(&stored_id)?;
            let record = DeviceRecord {
                id: stored_id.clone(),
                kind,
                model,
                // FHIR Device has no placement; the one registered before is kept.
                placement: existing.as_ref().and_then(|device| device.placement),
                first_seen: None,
                last_seen: None,
            };
            store.register_device(&record, &details)?;
            Ok((existing.is_none(), record))
        })
        .await
        .map_err(|_| server_issue("the device registry could not be written"))?;
    let (created, record) = match outcome {
        Ok(done) => done,
        Err(StoreError::IdentifierTaken {
            system,
            value,
            device,
        }) => {
            return Err(Issue::new(
                409,
                IssueCode::Value,
                "identifier_taken",
                Some("Device.identifier"),
                format!("identifier {system}|{value} already names Device/{device}"),
            ));
        }
        Err(error) => {
            tracing::error!(%error, "could not register a fhir device");
            return Err(server_issue("the device registry could not be written"));
        }
    };
    state.ward.update_registry(|registry| {
        registry.upsert_device(DeviceInfo {
            id: record.id.clone(),
            kind: record.kind,
            model: record.model.clone(),
            placement: record.placement,
        })
    });
    let resource = fhir::device::to_resource(record.id.as_str(), &description, None);
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut response = resource_response(status, &resource);
    if let Ok(location) = HeaderValue::from_str(&format!("/fhir/Device/{}", record.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

fn description_of(record: &DeviceRecord, details: &DeviceDetails) -> DeviceDescription {
    DeviceDescription {
        kind: record.kind,
        model: record.model.clone(),
        manufacturer: details.manufacturer.clone(),
        serial_number: details.serial_number.clone(),
        identifiers: details
            .identifiers
            .iter()
            .map(|identifier| (identifier.system.clone(), identifier.value.clone()))
            .collect(),
        type_codings: details
            .device_type
            .iter()
            .map(|device_type| {
                Coding::new(
                    &device_type.system,
                    &device_type.code,
                    device_type.display.as_deref(),
                )
            })
            .collect(),
    }
}

pub async fn read(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let device_id = DeviceId::new(&id);
    let found = state
        .stores
        .read(
            move |store| -> Result<Option<(DeviceRecord, DeviceDetails)>, StoreError> {
                match store.device(&device_id)? {
                    Some(record) => {
                        let details = store.device_details(&device_id)?;
                        Ok(Some((record, details)))
                    }
                    None => Ok(None),
                }
            },
        )
        .await;
    match found {
        Ok(Ok(Some((record, details)))) => resource_response(
            StatusCode::OK,
            &fhir::device::to_resource(
                record.id.as_str(),
                &description_of(&record, &details),
                None,
            ),
        ),
        Ok(Ok(None)) => outcome_response(&Issue::new(
            404,
            IssueCode::NotFound,
            "not_found",
            None,
            format!("Device/{id} is not known"),
        )),
        _ => outcome_response(&server_issue("the device registry could not be read")),
    }
}

#[derive(serde::Deserialize)]
pub struct SearchParams {
    identifier: Option<String>,
}

/// `GET /fhir/Device?identifier=[system|]value`: a searchset Bundle.
pub async fn search(State(state): State<AppState>, Query(params): Query<SearchParams>) -> Response {
    let found = state
        .stores
        .read(
            move |store| -> Result<Vec<(DeviceRecord, DeviceDetails)>, StoreError> {
                let mut devices = Vec::new();
                for record in store.devices()? {
                    let details = store.device_details(&record.id)?;
                    let matches = match &params.identifier {
                        None => true,
                        Some(token) => {
                            let (system, value) = match token.split_once('|') {
                                Some((system, value)) => (Some(system), value),
                                None => (None, token.as_str()),
                            };
                            details.identifiers.iter().any(|identifier| {
                                system.is_none_or(|system| system == identifier.system)
                                    && store::identifier_key(&identifier.system, value)
                                        == store::identifier_key(
                                            &identifier.system,
                                            &identifier.value,
                                        )
                            })
                        }
                    };
                    if matches {
                        devices.push((record, details));
                    }
                }
                Ok(devices)
            },
        )
        .await;
    let Ok(Ok(devices)) = found else {
        return outcome_response(&server_issue("the device registry could not be read"));
    };
    let entry: Vec<BundleEntry> = devices
        .iter()
        .map(|(record, details)| BundleEntry {
            resource: serde_json::to_value(fhir::device::to_resource(
                record.id.as_str(),
                &description_of(record, details),
                None,
            ))
            .ok(),
            ..BundleEntry::default()
        })
        .collect();
    let bundle = Bundle {
        resource_type: "Bundle".into(),
        type_: "searchset".into(),
        total: Some(entry.len() as u64),
        entry,
        ..Bundle::default()
    };
    resource_response(StatusCode::OK, &bundle)
}
