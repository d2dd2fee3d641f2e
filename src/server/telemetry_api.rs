//! `POST /api/telemetry/{service}/{function}` on the collector port: Telemetry API events
//! (a JSON array, Lambda's or FunctionGraph's shape, per event) from an extension on
//! another platform. Every event is read before any is taken, so a bad one changes
//! nothing; `platform::telemetry_in` gathers them into spans and a record.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};

use super::{text_error, AppState};
use crate::error::ErrorCode;
use crate::platform::telemetry_in::{self, MAX_EVENTS};
use crate::platform::Platform;
use crate::receive::body;

/// Largest body a post may have.
const MAX_BODY_BYTES: usize = 2 << 20;

pub fn router(state: AppState, platform: Arc<Platform>) -> Router {
    Router::new()
        .route("/api/telemetry/{service}/{function}", post(take))
        .with_state((state, platform))
}

async fn take(
    State((state, platform)): State<(AppState, Arc<Platform>)>,
    Path((service, function)): Path<(String, String)>,
    headers: HeaderMap,
    req_body: Body,
) -> Response {
    let bad = |m: String| text_error(ErrorCode::BadRequest, m);
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.len() <= 128
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    if !name_ok(&service) || !name_ok(&function) {
        return bad("service and function names are letters, digits, '-', '_' or '.'".into());
    }
    let mut mem = state.budget.reserve();
    // a batch of the Telemetry API is at most 1 MiB: a body at most twice that keeps the
    // JSON tree it becomes small
    let mut limits = state.body_limits();
    limits.max_bytes = limits.max_bytes.min(MAX_BODY_BYTES);
    let raw = match body::read_request(req_body, &headers, limits, &mut mem).await {
        Ok(raw) => raw,
        Err(e) => return text_error(e.code(), e.to_string()),
    };
    let bytes = match raw.decode(&mut mem) {
        Ok(b) => b,
        Err(e) => return text_error(e.code(), e.to_string()),
    };
    let events: Vec<serde_json::Value> = match serde_json::from_slice(&bytes) {
        Ok(serde_json::Value::Array(a)) => a,
        Ok(_) => return bad("the body must be a JSON array of events".into()),
        Err(e) => return bad(format!("the body is not JSON: {e}")),
    };
    if events.len() > MAX_EVENTS {
        return bad(format!(
            "{} events; at most {MAX_EVENTS} a post",
            events.len()
        ));
    }
    let mut parsed = Vec::with_capacity(events.len());
    for (i, e) in events.iter().enumerate() {
        match telemetry_in::parse(e) {
            Ok(p) => parsed.push(p),
            Err(m) => return bad(format!("event {i}: {m}")),
        }
    }
    let taken = platform.take_telemetry(&service, &function, &parsed);
    (
        StatusCode::OK,
        Json(serde_json::json!({"used": taken.used, "ignored": taken.ignored})),
    )
        .into_response()
}
