//! `GET /api/v1/openapi.json`: the hand-written OpenAPI document. A test walks every path in
//! it against the router, so the document cannot drift from the routes.

use axum::http::header;
use axum::response::IntoResponse;

pub const DOCUMENT: &str = include_str!("openapi.json");

pub async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}
