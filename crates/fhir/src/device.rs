//! A FHIR Device to the registry's terms: its metaward id (the logical id), kind, model,
//! manufacturer and identifiers (EUI-64 per the Point-of-Care Device IG, serial numbers).

use model::DeviceKind;

use crate::issue::{self, Issue, IssueCode};
use crate::system;
use crate::types::{CodeableConcept, Coding, Device, DeviceName, Identifier};

/// MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS (69965), the PoCD IG's patient monitor MDS example.
const MDC_PATIENT_MONITOR_MDS: &str = "69965";

#[derive(Clone, Debug, PartialEq)]
pub struct DeviceDescription {
    pub kind: DeviceKind,
    pub model: String,
    pub manufacturer: Option<String>,
    pub serial_number: Option<String>,
    /// (system, value) pairs.
    pub identifiers: Vec<(String, String)>,
    /// The `type` codings as sent, kept for the answer.
    pub type_codings: Vec<Coding>,
}

pub fn parse(json: serde_json::Value) -> Result<Device, Issue> {
    match json.get("resourceType").and_then(serde_json::Value::as_str) {
        Some("Device") => {}
        _ => {
            return Err(Issue::new(
                400,
                IssueCode::Invalid,
                "resource_type",
                Some("Device.resourceType"),
                "resourceType must be \"Device\"",
            ));
        }
    }
    serde_path_to_error::deserialize(json).map_err(|error| issue::from_serde("Device", error))
}

pub fn describe(device: &Device) -> Result<DeviceDescription, Issue> {
    let codings = device
        .type_
        .as_ref()
        .map(|type_| type_.coding.clone())
        .unwrap_or_default();
    let ours = codings
        .iter()
        .find(|coding| coding.is(system::METAWARD_DEVICE_KIND));
    let kind = match ours {
        Some(coding) => {
            let key = coding.code.as_deref().unwrap_or("");
            DeviceKind::from_key(key).ok_or_else(|| {
                Issue::unprocessable(
                    IssueCode::CodeInvalid,
                    "device_kind",
                    "Device.type",
                    format!("unknown device kind `{key}`; one of bedside_monitor, wearable, environmental_sensor, gateway"),
                )
            })?
        }
        None if codings.iter().any(|coding| {
            coding.is(system::MDC) && coding.code.as_deref() == Some(MDC_PATIENT_MONITOR_MDS)
        }) =>
        {
            DeviceKind::BedsideMonitor
        }
        None => {
            return Err(Issue::unprocessable(
                IssueCode::Required,
                "device_kind",
                "Device.type",
                format!(
                    "Device.type needs a coding from {} (bedside_monitor, wearable, environmental_sensor, gateway) or MDC {MDC_PATIENT_MONITOR_MDS} (multi-parameter patient monitor)",
                    system::METAWARD_DEVICE_KIND
                ),
            ));
        }
    };
    let model = device
        .model_number
        .clone()
        .or_else(|| {
            device
                .device_name
                .iter()
                .find(|name| name.type_ == "model-name")
                .map(|name| name.name.clone())
        })
        .unwrap_or_default();
    let mut identifiers = Vec::new();
    for (index, identifier) in device.identifier.iter().enumerate() {
        match (&identifier.system, &identifier.value) {
            (Some(system), Some(value)) if !system.is_empty() && !value.trim().is_empty() => {
                identifiers.push((system.clone(), value.clone()))
            }
            _ => {
                return Err(Issue::unprocessable(
                    IssueCode::Required,
                    "identifier",
                    &format!("Device.identifier[{index}]"),
                    "a device identifier needs both system and value",
                ));
            }
        }
    }
    Ok(DeviceDescription {
        kind,
        model,
        manufacturer: device.manufacturer.clone(),
        serial_number: device.serial_number.clone(),
        identifiers,
        type_codings: codings,
    })
}

/// The Device resource for a registered device.
pub fn to_resource(
    id: &str,
    description: &DeviceDescription,
    last_updated: Option<String>,
) -> Device {
    let mut codings = description.type_codings.clone();
    if !codings.iter().any(|c| c.is(system::METAWARD_DEVICE_KIND)) {
        codings.push(Coding::new(
            system::METAWARD_DEVICE_KIND,
            description.kind.key(),
            None,
        ));
    }
    Device {
        resource_type: "Device".into(),
        id: Some(id.to_owned()),
        meta: last_updated.map(|last_updated| crate::types::Meta {
            last_updated: Some(last_updated),
            ..Default::default()
        }),
        identifier: description
            .identifiers
            .iter()
            .map(|(system, value)| Identifier {
                system: Some(system.clone()),
                value: Some(value.clone()),
                ..Default::default()
            })
            .collect(),
        status: None,
        manufacturer: description.manufacturer.clone(),
        device_name: Vec::<DeviceName>::new(),
        model_number: (!description.model.is_empty()).then(|| description.model.clone()),
        serial_number: description.serial_number.clone(),
        type_: Some(CodeableConcept {
            coding: codings,
            text: None,
        }),
        patient: None,
        location: None,
        parent: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn described(json: serde_json::Value) -> Result<DeviceDescription, Issue> {
        describe(&parse(json)?)
    }

    #[test]
    fn a_pocd_monitor_is_a_bedside_monitor_and_keeps_its_type() {
        let description = described(json!({
            "resourceType": "Device",
            "identifier": [{"system": system::EUI64, "value": "01-23-45-67-89-AB-CD-EF"}],
            "manufacturer": "MyCompany", "serialNumber": "123456",
            "deviceName": [{"name": "MyPhysioMonitor", "type": "model-name"}],
            "type": {"coding": [{"system": system::MDC, "code": "69965"}]}
        }))
        .unwrap();
        assert_eq!(description.kind, DeviceKind::BedsideMonitor);
        assert_eq!(description.model, "MyPhysioMonitor");
        assert_eq!(description.identifiers.len(), 1);
        let resource = to_resource("d1", &description, None);
        let codes: Vec<_> = resource
            .type_
            .unwrap()
            .coding
            .into_iter()
            .filter_map(|c| c.code)
            .collect();
        assert_eq!(codes, ["69965", "bedside_monitor"]);
    }

    #[test]
    fn the_kind_comes_from_our_code_system_or_is_asked_for() {
        let wearable = described(json!({
            "resourceType": "Device",
            "type": {"coding": [{"system": system::METAWARD_DEVICE_KIND, "code": "wearable"}]}
        }))
        .unwrap();
        assert_eq!(wearable.kind, DeviceKind::Wearable);
        let missing = described(json!({"resourceType": "Device"})).unwrap_err();
        assert_eq!((missing.status, missing.reason), (422, "device_kind"));
        let unknown = described(json!({
            "resourceType": "Device",
            "type": {"coding": [{"system": system::METAWARD_DEVICE_KIND, "code": "toaster"}]}
        }))
        .unwrap_err();
        assert_eq!(unknown.expression.as_deref(), Some("Device.type"));
        let half = described(json!({
            "resourceType": "Device",
            "identifier": [{"value": "x"}],
            "type": {"coding": [{"system": system::METAWARD_DEVICE_KIND, "code": "gateway"}]}
        }))
        .unwrap_err();
        assert_eq!(half.expression.as_deref(), Some("Device.identifier[0]"));
        assert_eq!(
            parse(json!({"resourceType": "Patient"}))
                .unwrap_err()
                .status,
            400
        );
    }
}
