//! Devices in the FHIR record that are ward devices (their kind is known: bedside monitor,
//! wearable, environmental sensor, gateway) also go into the device registry, under their FHIR
//! id, with model, manufacturer, serial number, type and identifiers, written the same way as
//! `POST /api/v1/devices`: the store first (one transaction), then the live registry. So a
//! device registered through FHIR is the same device over MQTT (topic), HL7 (OBX-18 EUI-64
//! identifier) and FHIR (`Device/{id}` references). A Device of another kind (an implant, a
//! wheelchair) stays in the record only.

use fhir::device::DeviceDescription;
use fhir::{Issue, IssueCode};
use model::DeviceId;
use serde_json::Value;
use store::{DeviceDetails, DeviceIdentifier, DeviceRecord, DeviceType, StoreError};
use twin::DeviceInfo;

use super::server_issue;
use crate::api::AppState;

/// Registers the record's Device `resource` (already stored under `id`) in the device registry
/// if it describes a ward device. Returns whether it did; an identifier that already names
/// another device is refused (409).
pub async fn register_record_device(
    state: &AppState,
    id: &str,
    resource: &Value,
) -> Result<bool, Issue> {
    let Ok(device) = fhir::device::parse(resource.clone()) else {
        return Ok(false);
    };
    let Ok(description) = fhir::device::describe(&device) else {
        return Ok(false);
    };
    if !fhir::observation::valid_id(id) {
        return Ok(false);
    }
    register(state, DeviceId::new(id), description).await?;
    Ok(true)
}

async fn register(
    state: &AppState,
    id: DeviceId,
    description: DeviceDescription,
) -> Result<(), Issue> {
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
    let (_created, record) = match outcome {
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
    Ok(())
}
