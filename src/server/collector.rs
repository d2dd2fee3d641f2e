//! The Jaeger collector port: `POST /api/traces` (thrift, binary or compact), and OTLP's
//! `POST /v1/traces` so one endpoint takes both formats.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

use super::{text_error, AppState};
use crate::cpu;
use crate::pipeline::Partial;
use crate::receive::{self, body, jaeger_thrift};
use crate::store::keys::DEFAULT_TENANT;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/traces", post(post_traces))
        .route(
            "/api/sampling",
            axum::routing::get(super::sampling_api::strategy),
        )
        // Invocation-scoped: every span posted here belongs to that invocation's trace.
        .route(
            "/api/invocations/{request_id}/traces",
            post(post_invocation_traces),
        )
        // One endpoint takes both formats: OTLP/HTTP is served here too.
        .route("/v1/traces", post(super::otlp::post_traces))
        .with_state(state)
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn post_traces(
    State(state): State<AppState>,
    headers: HeaderMap,
    req_body: Body,
) -> Response {
    ingest(state, headers, req_body, None).await
}

async fn post_invocation_traces(
    State(state): State<AppState>,
    Path(request_id): Path<String>,
    headers: HeaderMap,
    req_body: Body,
) -> Response {
    ingest(state, headers, req_body, Some(request_id)).await
}

async fn ingest(
    state: AppState,
    headers: HeaderMap,
    req_body: Body,
    invocation: Option<String>,
) -> Response {
    let mut mem = state.budget.reserve();
    let result = async {
        let protocol = receive::jaeger_protocol(header_str(&headers, header::CONTENT_TYPE))?;
        let raw = body::read_request(req_body, &headers, state.body_limits(), &mut mem).await?;
        let limits = state.settings.limits;
        cpu::run(raw.len(), move || {
            let bytes = raw.decode(&mut mem)?;
            let spans = jaeger_thrift::decode_batch(&bytes, protocol, &limits, &mut mem)?;
            Ok::<_, receive::ReceiveError>((spans, mem))
        })
        .await
    }
    .await;
    // held until the spans are stored: the budget counts them while they are in memory
    let (spans, _mem) = match result {
        Ok(decoded) => decoded,
        Err(e) => {
            state.metrics.rejected_request(e.metric_reason());
            tracing::debug!(error = %e, "jaeger batch refused");
            return text_error(e.code(), e.to_string());
        }
    };
    accept_whole(&state, "jaeger_thrift", spans, invocation.as_deref()).await
}

/// Store a decoded batch whole (Jaeger's and Zipkin's APIs have no partial answer): 202
/// once durable, else the pipeline's refusal as plain text.
pub(super) async fn accept_whole(
    state: &AppState,
    format: &'static str,
    spans: Vec<crate::model::Span>,
    invocation: Option<&str>,
) -> Response {
    state.metrics.received(format, spans.len());
    match state
        .pipeline
        .submit_scoped(DEFAULT_TENANT, spans, Partial::RejectBatch, invocation)
        .await
    {
        Ok(_) => StatusCode::ACCEPTED.into_response(),
        Err(e) => {
            state.metrics.rejected_request("submit");
            text_error(e.code(), e.to_string())
        }
    }
}
