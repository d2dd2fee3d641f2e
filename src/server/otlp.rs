//! OTLP over HTTP: `POST /v1/traces` (protobuf or JSON; on the OTLP/HTTP port and on the
//! collector port), and the two steps it shares with the gRPC route (`otlp_grpc`):
//! [`decode_and_map`] and [`ingest`], the one path from an OTLP request to the pipeline.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;

use super::AppState;
use crate::budget::Reservation;
use crate::cpu;
use crate::error::ErrorCode;
use crate::pipeline::{Partial, SubmitError};
use crate::receive::otlp::Mapped;
use crate::receive::{self, body, otlp, OtlpFormat, ReceiveError};

/// Decode (within the request's budget and caps) and map an OTLP body, on the CPU pool
/// when it is large. Returns the reservation, to be held until the spans are stored.
pub async fn decode_and_map(
    state: &AppState,
    body: Bytes,
    format: OtlpFormat,
    mut mem: Reservation,
) -> Result<(Mapped, Reservation), ReceiveError> {
    let limits = state.settings.limits;
    cpu::run(body.len(), move || {
        let mapped = receive::decode_otlp(&body, format, &limits, &mut mem)?;
        drop(body);
        Ok((mapped, mem))
    })
    .await
}

/// Validate and store one mapped export request; refused spans are reported, not fatal.
pub async fn ingest(
    state: &AppState,
    tenant: crate::store::keys::Tenant,
    mapped: Mapped,
    format: &'static str,
) -> Result<ExportTraceServiceResponse, SubmitError> {
    state
        .metrics
        .received(format, mapped.spans.len() + mapped.rejected.len());
    let outcome = state
        .pipeline
        .submit(tenant, mapped.spans, Partial::DropInvalid)
        .await?;
    if !mapped.rejected.is_empty() {
        state.metrics.refused(mapped.rejected.len(), "invalid");
    }
    Ok(otlp::response(mapped.rejected, &outcome.rejected))
}

/// `google.rpc.Status`, the body OTLP/HTTP puts on an error response.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// An OTLP/HTTP error: the status its code maps to, a `google.rpc.Status` body in the
/// request's encoding, and `Retry-After` when retrying helps.
fn error_response(code: ErrorCode, message: String, format: OtlpFormat) -> Response {
    let status =
        StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let rpc = RpcStatus {
        code: code.grpc_code() as i32,
        message,
    };
    let mut resp = match format {
        OtlpFormat::Protobuf => (
            status,
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            rpc.encode_to_vec(),
        )
            .into_response(),
        OtlpFormat::Json => (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({"code": rpc.code, "message": rpc.message}).to_string(),
        )
            .into_response(),
    };
    if let Some(after) = code.retry_after() {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static(after));
    }
    resp
}

fn success_response(resp: ExportTraceServiceResponse, format: OtlpFormat) -> Response {
    match format {
        OtlpFormat::Protobuf => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            resp.encode_to_vec(),
        )
            .into_response(),
        OtlpFormat::Json => {
            // proto3 JSON: int64 as a decimal string, empty messages as {}.
            let body = match resp.partial_success {
                None => serde_json::json!({}),
                Some(p) => serde_json::json!({"partialSuccess": {
                    "rejectedSpans": p.rejected_spans.to_string(),
                    "errorMessage": p.error_message,
                }}),
            };
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response()
        }
    }
}

/// `POST /v1/traces`: the tenant from the token in the headers.
pub async fn post_traces(
    State(state): State<AppState>,
    headers: HeaderMap,
    req_body: Body,
) -> Response {
    match super::tenant::of_headers(&state, &headers) {
        Ok(tenant) => post_traces_as(state, tenant, headers, req_body).await,
        Err(refused) => refused.into_response(),
    }
}

/// `POST /adapt_{token}/v1/traces` and `/adapt_{token}/api/otlp/traces`: the tenant from
/// the confidential path.
pub async fn post_adapt_traces(
    State(state): State<AppState>,
    axum::extract::Path(adapt): axum::extract::Path<String>,
    headers: HeaderMap,
    req_body: Body,
) -> Response {
    match super::tenant::of_adapt_segment(&state, &adapt) {
        Ok(tenant) => post_traces_as(state, tenant, headers, req_body).await,
        Err(refused) => refused.into_response(),
    }
}

async fn post_traces_as(
    state: AppState,
    tenant: crate::store::keys::Tenant,
    headers: HeaderMap,
    req_body: Body,
) -> Response {
    let format = match receive::otlp_format(header_str(&headers, header::CONTENT_TYPE)) {
        Ok(f) => f,
        Err(e) => {
            state.metrics.rejected_request("bad_request");
            // No encoding to answer in: answer in JSON, which a person can read.
            return error_response(e.code(), e.to_string(), OtlpFormat::Json);
        }
    };
    let mut mem = state.budget.reserve();
    let decoded = async {
        let raw = body::read_request(req_body, &headers, state.body_limits(), &mut mem).await?;
        let bytes = cpu::run(raw.len(), move || raw.decode(&mut mem).map(|b| (b, mem))).await;
        let (bytes, mem) = bytes?;
        decode_and_map(&state, bytes, format, mem).await
    }
    .await;
    let (mapped, _mem) = match decoded {
        Ok(r) => r,
        Err(e) => {
            state.metrics.rejected_request(e.metric_reason());
            return error_response(e.code(), e.to_string(), format);
        }
    };
    let label = match format {
        OtlpFormat::Protobuf => "otlp_http_protobuf",
        OtlpFormat::Json => "otlp_http_json",
    };
    match ingest(&state, tenant, mapped, label).await {
        Ok(resp) => success_response(resp, format),
        Err(e) => {
            state.metrics.rejected_request("submit");
            error_response(e.code(), e.to_string(), format)
        }
    }
}
