//! OTLP endpoints: `POST /v1/traces` (protobuf or JSON; on the OTLP/HTTP port and on the
//! collector port) and the gRPC `TraceService/Export`. Both decode, then call [`ingest`],
//! the one path from an OTLP request to the pipeline.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::trace::v1::{
    trace_service_server::{TraceService, TraceServiceServer},
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tonic::codec::CompressionEncoding;

use super::AppState;
use crate::error::ErrorCode;
use crate::pipeline::{Partial, SubmitError};
use crate::receive::{self, body, otlp, OtlpFormat};
use crate::store::keys::DEFAULT_TENANT;

/// At most this many refusal reasons are spelled out in a partial-success message.
const MAX_REASONS: usize = 5;

/// Map, validate and store one export request; refused spans are reported, not fatal.
pub async fn ingest(
    state: &AppState,
    req: ExportTraceServiceRequest,
    format: &'static str,
) -> Result<ExportTraceServiceResponse, SubmitError> {
    let mapped = otlp::map_request(req);
    state
        .metrics
        .received(format, mapped.spans.len() + mapped.rejected.len());
    let outcome = state
        .pipeline
        .submit(DEFAULT_TENANT, mapped.spans, Partial::DropInvalid)
        .await?;
    let mut reasons = mapped.rejected;
    reasons.extend(outcome.rejected.iter().map(|r| r.to_string()));
    if reasons.is_empty() {
        return Ok(ExportTraceServiceResponse {
            partial_success: None,
        });
    }
    state.metrics.refused(reasons.len(), "invalid");
    let mut message = reasons
        .iter()
        .take(MAX_REASONS)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if reasons.len() > MAX_REASONS {
        message.push_str(&format!("; and {} more", reasons.len() - MAX_REASONS));
    }
    Ok(ExportTraceServiceResponse {
        partial_success: Some(ExportTracePartialSuccess {
            rejected_spans: reasons.len() as i64,
            error_message: message,
        }),
    })
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

fn grpc_code(code: ErrorCode) -> tonic::Code {
    match code {
        ErrorCode::BadRequest | ErrorCode::UnsupportedMedia => tonic::Code::InvalidArgument,
        ErrorCode::TooLarge | ErrorCode::RateLimited => tonic::Code::ResourceExhausted,
        ErrorCode::NotFound => tonic::Code::NotFound,
        ErrorCode::Unavailable => tonic::Code::Unavailable,
        ErrorCode::Internal => tonic::Code::Internal,
    }
}

/// An OTLP/HTTP error: the status its code maps to, a `google.rpc.Status` body in the
/// request's encoding, and `Retry-After` when retrying helps.
fn error_response(code: ErrorCode, message: String, format: OtlpFormat) -> Response {
    let status =
        StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let rpc = RpcStatus {
        code: grpc_code(code) as i32,
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
    if code.is_retriable() {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
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

/// `POST /v1/traces`.
pub async fn post_traces(
    State(state): State<AppState>,
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
    let decoded = async {
        let bytes = body::read_request(req_body, &headers, state.settings.max_body_bytes).await?;
        receive::decode_otlp(&bytes, format)
    }
    .await;
    let req = match decoded {
        Ok(r) => r,
        Err(e) => {
            state.metrics.rejected_request("bad_request");
            return error_response(e.code(), e.to_string(), format);
        }
    };
    let label = match format {
        OtlpFormat::Protobuf => "otlp_http_protobuf",
        OtlpFormat::Json => "otlp_http_json",
    };
    match ingest(&state, req, label).await {
        Ok(resp) => success_response(resp, format),
        Err(e) => {
            state.metrics.rejected_request("submit");
            error_response(e.code(), e.to_string(), format)
        }
    }
}

/// The gRPC `opentelemetry.proto.collector.trace.v1.TraceService`.
pub struct Grpc {
    state: AppState,
}

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        match ingest(&self.state, request.into_inner(), "otlp_grpc").await {
            Ok(resp) => Ok(tonic::Response::new(resp)),
            Err(e) => {
                self.state.metrics.rejected_request("submit");
                Err(tonic::Status::new(grpc_code(e.code()), e.to_string()))
            }
        }
    }
}

/// The gRPC service, accepting gzip and zstd and messages as large as an HTTP body.
pub fn grpc_service(state: AppState) -> TraceServiceServer<Grpc> {
    let limit = state.settings.max_body_bytes;
    TraceServiceServer::new(Grpc { state })
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Zstd)
        .max_decoding_message_size(limit)
}
