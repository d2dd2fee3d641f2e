//! The Jaeger collector port: `POST /api/traces` (thrift, binary or compact), and OTLP's
//! `POST /v1/traces` so one endpoint takes both formats.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

use super::{text_error, AppState};
use crate::budget::Reservation;
use crate::cpu;
use crate::pipeline::Partial;
use crate::receive::{self, body, jaeger_thrift};

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
        // A tenant's confidential endpoints: the token in the path.
        .route("/{adapt}/api/traces", post(post_adapt_traces))
        .route(
            "/{adapt}/api/otlp/traces",
            post(super::otlp::post_adapt_traces),
        )
        .route("/{adapt}/v1/traces", post(super::otlp::post_adapt_traces))
        .route(
            "/{adapt}/api/sampling",
            axum::routing::get(super::sampling_api::adapt_strategy),
        )
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
    match super::tenant::of_headers(&state, &headers) {
        Ok(tenant) => ingest(state, tenant, headers, req_body, None).await,
        Err(refused) => refused.into_response(),
    }
}

async fn post_adapt_traces(
    State(state): State<AppState>,
    Path(adapt): Path<String>,
    headers: HeaderMap,
    req_body: Body,
) -> Response {
    match super::tenant::of_adapt_segment(&state, &adapt) {
        Ok(tenant) => ingest(state, tenant, headers, req_body, None).await,
        Err(refused) => refused.into_response(),
    }
}

async fn post_invocation_traces(
    State(state): State<AppState>,
    Path(request_id): Path<String>,
    headers: HeaderMap,
    req_body: Body,
) -> Response {
    match super::tenant::of_headers(&state, &headers) {
        Ok(tenant) => ingest(state, tenant, headers, req_body, Some(request_id)).await,
        Err(refused) => refused.into_response(),
    }
}

async fn ingest(
    state: AppState,
    tenant: crate::store::keys::Tenant,
    headers: HeaderMap,
    req_body: Body,
    invocation: Option<String>,
) -> Response {
    let protocol = match receive::jaeger_protocol(header_str(&headers, header::CONTENT_TYPE)) {
        Ok(p) => p,
        Err(e) => return refused(&state, &e, "jaeger batch"),
    };
    let decode = move |bytes: &[u8], limits: &receive::Limits, mem: &mut Reservation| {
        Ok(jaeger_thrift::decode_batch(bytes, protocol, limits, mem)?)
    };
    receive_whole(
        &state,
        tenant,
        &headers,
        req_body,
        ("jaeger_thrift", decode),
        invocation.as_deref(),
    )
    .await
}

fn refused(state: &AppState, e: &receive::ReceiveError, what: &str) -> Response {
    state.metrics.rejected_request(e.metric_reason());
    tracing::debug!(error = %e, "{what} refused");
    text_error(e.code(), e.to_string())
}

/// Read a body within its limits, decode it on the CPU pool with `decode` (charging the
/// request's budget), and store it whole: what every HTTP receiver without a partial
/// answer does (Jaeger thrift here, Zipkin).
pub(super) async fn receive_whole<D>(
    state: &AppState,
    tenant: crate::store::keys::Tenant,
    headers: &HeaderMap,
    req_body: Body,
    (format, decode): (&'static str, D),
    invocation: Option<&str>,
) -> Response
where
    D: FnOnce(
            &[u8],
            &receive::Limits,
            &mut Reservation,
        ) -> Result<Vec<crate::model::Span>, receive::ReceiveError>
        + Send
        + 'static,
{
    let mut mem = state.budget.reserve();
    let result = async {
        let raw = body::read_request(req_body, headers, state.body_limits(), &mut mem).await?;
        let limits = state.settings.limits;
        cpu::run(raw.len(), move || {
            let bytes = raw.decode(&mut mem)?;
            let spans = decode(&bytes, &limits, &mut mem)?;
            Ok::<_, receive::ReceiveError>((spans, mem))
        })
        .await
    }
    .await;
    // held until the spans are stored: the budget counts them while they are in memory
    match result {
        Ok((spans, _mem)) => accept_whole(state, tenant, format, spans, invocation).await,
        Err(e) => refused(state, &e, format),
    }
}

/// Store a decoded batch whole (Jaeger's and Zipkin's APIs have no partial answer): 202
/// once durable, else the pipeline's refusal as plain text.
pub(super) async fn accept_whole(
    state: &AppState,
    tenant: crate::store::keys::Tenant,
    format: &'static str,
    spans: Vec<crate::model::Span>,
    invocation: Option<&str>,
) -> Response {
    state.metrics.received(format, spans.len());
    match state
        .pipeline
        .submit_scoped(tenant, spans, Partial::RejectBatch, invocation)
        .await
    {
        Ok(_) => StatusCode::ACCEPTED.into_response(),
        Err(e) => {
            state.metrics.rejected_request("submit");
            text_error(e.code(), e.to_string())
        }
    }
}
