//! A store node's API for query nodes (`--internal-addr`, `cluster::fanout` is the
//! other end): a trace, a search limited to the partitions the caller names, services,
//! operations, dependencies, a metric series' values, invocation records and function
//! log lines, each for the tenant the request names. It trusts its
//! caller (tenancy is the query node's job), so it belongs on the cluster's own network.
//! Traces go out in `store::trace_wire`, the rest as JSON.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};

use super::AppState;
use crate::cluster::fanout::{
    CallsAnswer, CallsRequest, CatalogRequest, DependenciesRequest, LogsAnswer, LogsRequest,
    RecordRequest, SearchRequest, TraceRequest, ValuesRequest, WireOperation,
};
use crate::cluster::partition_of;
use crate::model::TraceId;
use crate::store::trace_wire::traces_to_wire;
use crate::store::StoreError;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/internal/v1/trace", post(trace))
        .route("/internal/v1/search", post(search))
        .route("/internal/v1/services", post(services))
        .route("/internal/v1/operations", post(operations))
        .route("/internal/v1/dependencies", post(dependencies))
        .route("/internal/v1/metric_values", post(metric_values))
        .route("/internal/v1/invocations", post(invocations))
        .route("/internal/v1/invocation", post(invocation))
        .route("/internal/v1/logs", post(logs))
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .with_state(state)
}

fn failed(e: impl std::fmt::Display) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
}

/// Run a store read off the async threads and answer with what `to` makes of it.
async fn read<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
    to: impl FnOnce(T) -> Response,
) -> Response {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => to(v),
        Ok(Err(e)) => failed(e),
        Err(e) => failed(e),
    }
}

fn wire(traces: Vec<Vec<crate::model::Span>>) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
        Bytes::from(traces_to_wire(&traces)),
    )
        .into_response()
}

async fn trace(State(state): State<AppState>, Json(r): Json<TraceRequest>) -> Response {
    let id = match TraceId::from_hex(&r.trace_id) {
        Ok(id) => id,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("trace id: {e}")).into_response(),
    };
    let query = state.query.clone();
    read(
        move || query.trace(r.tenant, id),
        |t| wire(t.into_iter().collect()),
    )
    .await
}

async fn search(State(state): State<AppState>, Json(r): Json<SearchRequest>) -> Response {
    let query = state.query.clone();
    read(
        move || {
            let asked: std::collections::HashSet<u32> = r.partitions.iter().copied().collect();
            let count = r.partition_count;
            let keep = move |t: TraceId| asked.contains(&partition_of(t, count));
            query.search_where(r.tenant, &r.query, &keep)
        },
        wire,
    )
    .await
}

async fn services(State(state): State<AppState>, Json(r): Json<CatalogRequest>) -> Response {
    let query = state.query.clone();
    read(
        move || Ok(query.services(r.tenant)),
        |s| Json(s).into_response(),
    )
    .await
}

async fn operations(State(state): State<AppState>, Json(r): Json<CatalogRequest>) -> Response {
    let query = state.query.clone();
    read(
        move || Ok(query.operations(r.tenant, &r.service, None)),
        |ops| {
            let ops: Vec<WireOperation> = ops
                .into_iter()
                .map(|(name, kind)| (name, kind.as_str().to_owned()))
                .collect();
            Json(ops).into_response()
        },
    )
    .await
}

async fn dependencies(
    State(state): State<AppState>,
    Json(r): Json<DependenciesRequest>,
) -> Response {
    let query = state.query.clone();
    read(
        move || query.dependencies(r.tenant, r.end, r.lookback),
        |links| Json(links).into_response(),
    )
    .await
}

async fn metric_values(State(state): State<AppState>, Json(r): Json<ValuesRequest>) -> Response {
    let store = std::sync::Arc::clone(&state.store);
    read(
        move || store.metric_values(&r.series, r.first, r.last),
        |v| Json(v).into_response(),
    )
    .await
}

async fn invocations(State(state): State<AppState>, Json(r): Json<CallsRequest>) -> Response {
    let query = state.query.clone();
    read(
        move || {
            query.invocations(
                r.tenant,
                &r.service,
                r.function.as_deref(),
                r.start,
                r.end,
                r.limit,
                &r.filter,
            )
        },
        |(records, capped)| Json(CallsAnswer { records, capped }).into_response(),
    )
    .await
}

async fn invocation(State(state): State<AppState>, Json(r): Json<RecordRequest>) -> Response {
    let query = state.query.clone();
    read(
        move || query.invocation(r.tenant, &r.request_id),
        |found| Json(found).into_response(),
    )
    .await
}

async fn logs(State(state): State<AppState>, Json(r): Json<LogsRequest>) -> Response {
    let query = state.query.clone();
    read(
        move || query.logs(r.tenant, &r.query),
        |(lines, capped)| Json(LogsAnswer { lines, capped }).into_response(),
    )
    .await
}
