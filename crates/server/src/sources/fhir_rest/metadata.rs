//! `GET /fhir/metadata`: the CapabilityStatement, listing exactly what this server does today.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::resource_response;
use crate::api::AppState;

pub async fn capability_statement(State(_state): State<AppState>) -> Response {
    let statement = json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": &fhir::datetime::format(crate::pipeline::now())[..10],
        "kind": "instance",
        "software": { "name": "metaward", "version": env!("CARGO_PKG_VERSION") },
        "implementation": { "description": "metaward FHIR R4 endpoint for device observations and the device registry" },
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "documentation": "Device observations are accepted and made durable; they are read back through the REST API (/api/v1), not as FHIR resources yet. See docs/fhir.md.",
            "resource": [
                {
                    "type": "Observation",
                    "profile": "http://hl7.org/fhir/StructureDefinition/vitalsigns",
                    "interaction": [{ "code": "create" }],
                    "versioning": "no-version"
                },
                {
                    "type": "Device",
                    "interaction": [
                        { "code": "create" }, { "code": "read" }, { "code": "update" }, { "code": "search-type" }
                    ],
                    "versioning": "no-version",
                    "updateCreate": true,
                    "searchParam": [
                        { "name": "identifier", "type": "token", "documentation": "system|value; an EUI-64 matches in any spelling" }
                    ]
                }
            ],
            "interaction": [{ "code": "transaction" }, { "code": "batch" }]
        }]
    });
    resource_response(StatusCode::OK, &statement)
}
