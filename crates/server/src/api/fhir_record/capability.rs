//! `GET /fhir/metadata`: a CapabilityStatement that says exactly what the record implements,
//! generated from the same tables the server runs on (the types, the search parameters).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use record::params::{search_params_of, searchable_types};
use record::types::{R4_RESOURCE_TYPES, is_storable_type};
use serde_json::{Value, json};

use super::{base_url, fhir_response};
use crate::api::AppState;
use crate::pipeline::now;

pub async fn metadata(State(_state): State<AppState>, headers: HeaderMap) -> Response {
    fhir_response(
        StatusCode::OK,
        &capability_statement(&base_url(&headers), now().millis()),
    )
}

/// The statement of the whole `/fhir` endpoint: the record's, and what happens to device
/// observations and ward Devices (see `api::fhir`).
pub async fn metadata_with_devices(State(_state): State<AppState>, headers: HeaderMap) -> Response {
    let mut statement = capability_statement(&base_url(&headers), now().millis());
    if let Some(resources) = statement["rest"][0]["resource"].as_array_mut() {
        for resource in resources {
            let note = match resource["type"].as_str() {
                Some("Observation") => {
                    "An Observation with a device reference (vital-signs profile, LOINC or MDC codes, components, SampledData), or a Bundle of only those, is device data: it goes to the durable log and the live twin, answered once durable (docs/fhir.md). Other Observations (labs, charted vitals) are kept in the record. Search and $lastn answer from both: device values (id `{log offset}-{k}`) are found by patient, subject, device, code, category, date, status, _id and _lastUpdated with the record's semantics, once the store's projection has them (tens of milliseconds); for Observations _offset + _count is at most 10000. A ward-scoped user's searches are limited to the patients of their wards."
                }
                Some("Device") => {
                    "A Device whose kind is known (bedside monitor, wearable, environmental sensor, gateway) is also registered in the ward's device registry under its id, with its identifiers (docs/fhir.md)."
                }
                _ => continue,
            };
            resource["documentation"] = json!(note);
        }
    }
    fhir_response(StatusCode::OK, &statement)
}

/// The interactions every kept type supports.
const INTERACTIONS: &[&str] = &[
    "read",
    "vread",
    "update",
    "delete",
    "history-instance",
    "create",
    "search-type",
];

pub fn capability_statement(base: &str, now_ms: i64) -> Value {
    let searchable = searchable_types();
    let resources: Vec<Value> = R4_RESOURCE_TYPES
        .iter()
        .filter(|name| is_storable_type(name))
        .map(|name| {
            let mut params: Vec<Value> = vec![
                json!({"name": "_id", "type": "token"}),
                json!({"name": "_lastUpdated", "type": "date"}),
            ];
            params.extend(
                search_params_of(name)
                    .map(|def| json!({"name": def.name, "type": def.kind.name()})),
            );
            let includes: Vec<String> = search_params_of(name)
                .filter(|def| def.kind == record::ParamKind::Reference)
                .map(|def| format!("{name}:{}", def.name))
                .collect();
            let interactions: Vec<Value> = INTERACTIONS
                .iter()
                .map(|code| json!({"code": code}))
                .collect();
            let mut resource = json!({
                "type": name,
                "interaction": interactions,
                "versioning": "versioned",
                "readHistory": true,
                "updateCreate": true,
                "conditionalCreate": true,
                "conditionalUpdate": true,
                "conditionalDelete": "single",
                "searchParam": params,
            });
            if !includes.is_empty() {
                resource["searchInclude"] = json!(includes);
            }
            if *name == "Observation" {
                resource["operation"] = json!([{
                    "name": "lastn",
                    "definition": "http://hl7.org/fhir/OperationDefinition/Observation-lastn"
                }]);
            }
            if !searchable.contains(name) {
                resource["documentation"] =
                    json!("kept and read generically; searchable by _id and _lastUpdated only");
            }
            resource
        })
        .collect();
    let date = record::date::format_instant(now_ms);
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": &date[..10],
        "publisher": "metaward",
        "kind": "instance",
        "software": { "name": "metaward", "version": env!("CARGO_PKG_VERSION") },
        "implementation": {
            "description": "metaward: the ward's medical record as FHIR R4",
            "url": base
        },
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [{
            "mode": "server",
            "documentation": "Unknown search parameters are refused with 400, not ignored. String search ignores case. Dates without a time zone are UTC.",
            "resource": resources,
            "interaction": [{"code": "transaction"}, {"code": "batch"}]
        }]
    })
}
