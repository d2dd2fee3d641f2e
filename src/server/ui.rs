//! The web UI: static files embedded in the binary (no build step, no network), served on
//! the query port. The page talks to the query API like any other client.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("../../ui/index.html");
const APP_JS: &str = include_str!("../../ui/app.js");
const APP_CSS: &str = include_str!("../../ui/app.css");
const FUNCTIONS_JS: &str = include_str!("../../ui/functions.js");
const TRACE_VIEWS_JS: &str = include_str!("../../ui/trace_views.js");
const AUTH_JS: &str = include_str!("../../ui/auth.js");
const FAVICON: &str = include_str!("../../ui/favicon.svg");

pub async fn index() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX).into_response()
}

pub async fn asset(Path(file): Path<String>) -> Response {
    match file.as_str() {
        "app.js" => (
            [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
            APP_JS,
        )
            .into_response(),
        "functions.js" => (
            [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
            FUNCTIONS_JS,
        )
            .into_response(),
        "auth.js" => (
            [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
            AUTH_JS,
        )
            .into_response(),
        "trace_views.js" => (
            [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
            TRACE_VIEWS_JS,
        )
            .into_response(),
        "app.css" => ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], APP_CSS).into_response(),
        "favicon.svg" => ([(header::CONTENT_TYPE, "image/svg+xml")], FAVICON).into_response(),
        _ => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}
