//! One call to a function instance: the request the instance gets (the caller's
//! headers for HTTP triggers, the platform's `x-fc-*` headers and the trace context) and
//! its outcome within the function's timeout and memory, classified as the platforms
//! classify errors. Choosing or starting the instance is `instance`'s job; spans and
//! records are built by the caller of this.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use bytes::Bytes;

use super::context::{self, TraceDecision, JAEGER_ENDPOINT_HEADER};
use super::functions::FunctionSpec;
use super::{error_type, instance, InvokeRequest, Platform, Trigger};
use crate::model::SpanId;

/// Largest function response the gateway relays.
const MAX_RESPONSE_BYTES: usize = 32 << 20;

/// Headers that belong to one hop and are not relayed.
fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "host"
            | "content-length"
    )
}

impl Platform {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn outbound_headers(
        &self,
        spec: &FunctionSpec,
        req: &InvokeRequest,
        request_id: &str,
        decision: &TraceDecision,
        invocation_span: SpanId,
        invoke_span: SpanId,
        flags: u8,
        baggage: &[(String, String)],
    ) -> HeaderMap {
        let mut h = HeaderMap::new();
        if matches!(req.trigger, Trigger::Http { .. }) {
            for (k, v) in &req.headers {
                let name = k.as_str();
                if !is_hop_by_hop(name) && !context::is_context_header(name) {
                    h.append(k.clone(), v.clone());
                }
            }
        } else if let Some(ct) = req.headers.get(axum::http::header::CONTENT_TYPE) {
            h.insert(axum::http::header::CONTENT_TYPE, ct.clone());
        }
        let mut put = |name: &'static str, value: String| {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(HeaderName::from_static(name), v);
            }
        };
        put("x-fc-request-id", request_id.to_owned());
        put("x-fc-function-name", spec.name.clone());
        put("x-fc-service-name", spec.service.clone());
        put("x-fc-function-memory", spec.memory_mb.to_string());
        put(
            "x-fc-function-timeout",
            spec.timeout.as_secs().max(1).to_string(),
        );
        put(JAEGER_ENDPOINT_HEADER, self.jaeger_endpoint_for(spec));
        context::outbound(
            &mut h,
            decision,
            invocation_span,
            invoke_span,
            flags,
            baggage,
        );
        h
    }

    /// Run the function on its instance, within its timeout and memory, and classify the
    /// outcome.
    pub(super) async fn call(
        &self,
        spec: &FunctionSpec,
        lease: &instance::Lease,
        req: &InvokeRequest,
        headers: HeaderMap,
        peak_rss: &mut u64,
    ) -> (StatusCode, HeaderMap, Bytes, Option<(&'static str, String)>) {
        let instance = &lease.instance;
        let (method, url) = match &req.trigger {
            Trigger::Event => (Method::POST, format!("{}/invoke", instance.base_url)),
            Trigger::Http {
                method,
                path_and_query,
            } => (
                method.clone(),
                format!("{}{}", instance.base_url, path_and_query),
            ),
        };
        let send = async {
            let resp = self
                .http
                .request(method, url)
                .headers(headers)
                .body(req.body.clone())
                .send()
                .await?;
            instance
                .rx_bytes
                .fetch_add(req.body.len() as u64, std::sync::atomic::Ordering::Relaxed);
            let status = resp.status();
            let headers = resp.headers().clone();
            let mut resp = resp;
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await? {
                instance
                    .tx_bytes
                    .fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Ok::<_, reqwest::Error>((
                        StatusCode::BAD_GATEWAY,
                        HeaderMap::new(),
                        None,
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok((status, headers, Some(Bytes::from(body))))
        };
        let limit = spec.memory_mb * 1024 * 1024;
        let pid = instance.pid();
        let watch = async {
            // Poll the instance's memory; returning means it went over its limit.
            let Some(pid) = pid else {
                return std::future::pending::<()>().await;
            };
            loop {
                if let Some(rss) = instance::rss_bytes(pid) {
                    *peak_rss = (*peak_rss).max(rss);
                    if rss > limit {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let error_body = |kind: &str, msg: &str| {
            Bytes::from(serde_json::json!({"errorType": kind, "errorMessage": msg}).to_string())
        };
        tokio::select! {
            result = tokio::time::timeout(spec.timeout, send) => match result {
                Err(_) => {
                    instance.kill();
                    let msg = format!("function timed out after {:?}", spec.timeout);
                    (StatusCode::GATEWAY_TIMEOUT, HeaderMap::new(), error_body(error_type::TIMEOUT, &msg), Some((error_type::TIMEOUT, msg)))
                }
                Ok(Err(e)) => {
                    // The instance is no use if it cannot be reached.
                    instance.kill();
                    let msg = format!("function did not answer: {e}");
                    (StatusCode::BAD_GATEWAY, HeaderMap::new(), error_body(error_type::UNHANDLED, &msg), Some((error_type::UNHANDLED, msg)))
                }
                Ok(Ok((status, headers, None))) => {
                    let msg = format!("function response is larger than {MAX_RESPONSE_BYTES} bytes");
                    (status, headers, error_body(error_type::UNHANDLED, &msg), Some((error_type::UNHANDLED, msg)))
                }
                Ok(Ok((status, mut headers, Some(body)))) => {
                    let fc_404 = headers.get("x-fc-status").is_some_and(|v| v.as_bytes() == b"404");
                    for name in ["transfer-encoding", "connection", "content-length", "x-fc-status"] {
                        headers.remove(name);
                    }
                    let error = if status.is_server_error() || fc_404 {
                        Some((error_type::UNHANDLED, format!("function answered {}{}", status.as_u16(), if fc_404 { " with x-fc-status: 404" } else { "" })))
                    } else {
                        None
                    };
                    (status, headers, body, error)
                }
            },
            _ = watch => {
                instance.kill();
                let msg = format!("function used more than its {} MB of memory and was stopped", spec.memory_mb);
                (StatusCode::BAD_GATEWAY, HeaderMap::new(), error_body(error_type::OOM, &msg), Some((error_type::OOM, msg)))
            }
        }
    }
}
