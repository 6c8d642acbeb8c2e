//! The browser page, built by Vite into `web/dist` and embedded in the binary, so the demo
//! needs nothing beside the binary. Unknown paths under `/api` get a JSON 404, never the page.

use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

use super::ApiError;

#[derive(RustEmbed)]
#[folder = "../../web/dist"]
struct Assets;

pub async fn asset(uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    if path.starts_with("api/") {
        return ApiError {
            status: StatusCode::NOT_FOUND,
            code: "no_route",
            message: format!("no route {}", uri.path()),
        }
        .into_response();
    }
    let path = if path.is_empty() { "index.html" } else { path };
    match Assets::get(path) {
        Some(file) => {
            let mime = mime_guess::from_path(path).first_or_octet_stream();
            ([(header::CONTENT_TYPE, mime.as_ref().to_owned())], file.data).into_response()
        }
        None if Assets::get("index.html").is_none() => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the web page was not built into this binary: run `npm ci && npm run build` in web/ and rebuild",
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}
