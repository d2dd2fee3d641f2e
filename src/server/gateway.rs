//! The invoke gateway port: the function platform's API.
//!
//! `POST /2016-08-15/services/{service}/functions/{function}/invocations` (body = event) and
//! `ANY /2016-08-15/proxy/{service}/{function}/{path..}` (HTTP trigger). Answers with the
//! function's response plus `x-fc-request-id` and `x-fc-invocation-duration` (ms).
//! With `x-fc-invocation-type: Async` (or `Event`) an event call is answered 202 with its
//! `x-fc-request-id` once queued (`platform::queue`).
//! `PUT /2022-07-01/telemetry` subscribes a listener to a function's telemetry events
//! (a Lambda-style subscription body; the function named by `x-fc-service-name` and
//! `x-fc-function-name`, the shape by `x-fc-telemetry-format`, default `lambda`).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post, put};
use axum::Router;

use crate::budget::MemoryBudget;
use crate::platform::events::Format;
use crate::platform::functions::RawTelemetry;
use crate::platform::{InvokeError, InvokeRequest, Platform, Trigger};
use crate::receive::body;
use crate::receive::body::BodyLimits;

#[derive(Clone)]
struct Gateway {
    platform: Arc<Platform>,
    /// Events are bounded by `--max-event-bytes` and the body timeout, and charged to
    /// the ingest memory budget like span bodies.
    limits: BodyLimits,
    budget: Arc<MemoryBudget>,
}

pub fn router(platform: Arc<Platform>, limits: BodyLimits, budget: Arc<MemoryBudget>) -> Router {
    Router::new()
        .route(
            "/2016-08-15/services/{service}/functions/{function}/invocations",
            post(invoke_event),
        )
        .route(
            "/2016-08-15/proxy/{service}/{function}",
            any(invoke_http_root),
        )
        .route(
            "/2016-08-15/proxy/{service}/{function}/",
            any(invoke_http_root),
        )
        .route(
            "/2016-08-15/proxy/{service}/{function}/{*path}",
            any(invoke_http),
        )
        .route("/2022-07-01/telemetry", put(subscribe))
        .fallback(|| async {
            json_error(
                StatusCode::NOT_FOUND,
                "NotFound",
                "no such route on the invoke gateway".into(),
            )
        })
        .with_state(Gateway {
            platform,
            limits,
            budget,
        })
}

fn json_error(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({"errorCode": code, "errorMessage": message}).to_string(),
    )
        .into_response()
}

async fn invoke_event(
    State(g): State<Gateway>,
    Path((service, function)): Path<(String, String)>,
    req: Request,
) -> Response {
    run(g, service, function, req, |_| Trigger::Event).await
}

async fn invoke_http_root(
    State(g): State<Gateway>,
    Path((service, function)): Path<(String, String)>,
    req: Request,
) -> Response {
    run(g, service, function, req, |r| http_trigger(r, "")).await
}

async fn invoke_http(
    State(g): State<Gateway>,
    Path((service, function, path)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    run(g, service, function, req, |r| http_trigger(r, &path)).await
}

fn http_trigger(req: &Request, path: &str) -> Trigger {
    let query = req
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    Trigger::Http {
        method: req.method().clone(),
        path_and_query: format!("/{path}{query}"),
    }
}

async fn run(
    g: Gateway,
    service: String,
    function: String,
    req: Request,
    trigger: impl FnOnce(&Request) -> Trigger,
) -> Response {
    let trigger = trigger(&req);
    let arrived = std::time::Instant::now();
    let (parts, req_body) = req.into_parts();
    let content_length = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok());
    let mut mem = g.budget.reserve();
    let bytes = match body::read(req_body, content_length, None, g.limits, &mut mem).await {
        Ok(b) => b,
        Err(e) => {
            let status =
                StatusCode::from_u16(e.code().http_status()).unwrap_or(StatusCode::BAD_REQUEST);
            // a call refused before it reached the function still counts (client error)
            g.platform.refused(&service, &function, arrived.elapsed());
            return json_error(status, "InvalidArgument", format!("event: {e}"));
        }
    };
    let is_async = matches!(trigger, Trigger::Event)
        && parts
            .headers
            .get("x-fc-invocation-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("async") || v.eq_ignore_ascii_case("event"));
    let req = InvokeRequest {
        service,
        function,
        trigger,
        headers: parts.headers,
        body: bytes,
    };
    if is_async {
        // answered once the event is durable; it runs later (`platform::queue`)
        return match g.platform.enqueue(req).await {
            Ok(id) => {
                let mut resp = StatusCode::ACCEPTED.into_response();
                if let Ok(v) = HeaderValue::from_str(&id) {
                    resp.headers_mut().insert("x-fc-request-id", v);
                }
                resp
            }
            Err(InvokeError::NotFound(s, f)) => json_error(
                StatusCode::NOT_FOUND,
                "FunctionNotFound",
                format!("function {s}/{f} not found"),
            ),
            Err(e) => json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                e.to_string(),
            ),
        };
    }
    let outcome = g.platform.invoke(req).await;
    match outcome {
        Ok(r) => {
            let mut resp = Response::new(Body::from(r.body));
            *resp.status_mut() = r.status;
            *resp.headers_mut() = r.headers;
            let h = resp.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&r.request_id) {
                h.insert("x-fc-request-id", v);
            }
            h.insert(
                "x-fc-invocation-duration",
                HeaderValue::from(r.duration.as_millis().max(1) as u64),
            );
            if let Some(kind) = r.error_type {
                h.insert("x-fc-error-type", HeaderValue::from_static(kind));
            }
            resp
        }
        Err(e @ InvokeError::NotFound(..)) => {
            json_error(StatusCode::NOT_FOUND, "FunctionNotFound", e.to_string())
        }
        // only enqueueing fails so
        Err(e @ InvokeError::Queue(_)) => json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            e.to_string(),
        ),
        Err(e @ InvokeError::ResourceThrottled { .. }) => {
            let mut resp = json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ResourceExhausted",
                e.to_string(),
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            if let InvokeError::ResourceThrottled { request_id, .. } = &e {
                if let Ok(v) = HeaderValue::from_str(request_id) {
                    resp.headers_mut().insert("x-fc-request-id", v);
                }
            }
            resp
        }
        Err(e @ InvokeError::Recursive { .. }) => {
            let mut resp = json_error(
                StatusCode::BAD_REQUEST,
                "RecursiveInvocationException",
                e.to_string(),
            );
            if let InvokeError::Recursive { request_id, .. } = &e {
                if let Ok(v) = HeaderValue::from_str(request_id) {
                    resp.headers_mut().insert("x-fc-request-id", v);
                }
            }
            resp
        }
        Err(InvokeError::Throttled {
            service,
            function,
            why,
            request_id,
        }) => {
            let mut resp = json_error(
                StatusCode::TOO_MANY_REQUESTS,
                "ResourceThrottled",
                format!("function {service}/{function} is throttled: {why}"),
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            if let Ok(v) = HeaderValue::from_str(&request_id) {
                resp.headers_mut().insert("x-fc-request-id", v);
            }
            resp
        }
    }
}

/// A Lambda-style subscription: `{"destination": {"protocol": "HTTP", "URI"}, "types",
/// "buffering": {"maxItems", "maxBytes", "timeoutMs"}}` (`schemaVersion` accepted).
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubscribeBody {
    #[allow(dead_code)]
    schema_version: Option<String>,
    destination: Destination,
    types: Vec<String>,
    #[serde(default)]
    buffering: Buffering,
}

#[derive(serde::Deserialize)]
struct Destination {
    protocol: String,
    #[serde(rename = "URI")]
    uri: String,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Buffering {
    max_items: Option<u32>,
    max_bytes: Option<u32>,
    timeout_ms: Option<u32>,
}

async fn subscribe(
    State(g): State<Gateway>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let bad = |m: String| json_error(StatusCode::BAD_REQUEST, "InvalidArgument", m);
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let (service, function) = (header("x-fc-service-name"), header("x-fc-function-name"));
    if service.is_empty() || function.is_empty() {
        return bad("headers x-fc-service-name and x-fc-function-name name the function".into());
    }
    let format = match header("x-fc-telemetry-format") {
        "" | "lambda" => Format::Lambda,
        "functiongraph" => Format::FunctionGraph,
        other => {
            return bad(format!(
                "x-fc-telemetry-format {other:?} is not lambda or functiongraph"
            ))
        }
    };
    let b: SubscribeBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return bad(format!("subscription body: {e}")),
    };
    if b.destination.protocol != "HTTP" {
        return bad(format!(
            "destination protocol {:?} is not HTTP",
            b.destination.protocol
        ));
    }
    let raw = RawTelemetry {
        url: Some(b.destination.uri),
        types: Some(b.types),
        format: Some(format),
        max_items: b.buffering.max_items,
        max_bytes: b.buffering.max_bytes,
        timeout_ms: b.buffering.timeout_ms,
    };
    let sub = match raw.check() {
        Ok(s) => s,
        Err((field, m)) => return bad(format!("{field}: {m}")),
    };
    match g.platform.subscribe(service, function, sub) {
        Some(Ok(())) => (StatusCode::OK, "OK").into_response(),
        Some(Err(m)) => bad(m),
        None => json_error(
            StatusCode::NOT_FOUND,
            "FunctionNotFound",
            format!("function {service}/{function} not found"),
        ),
    }
}
