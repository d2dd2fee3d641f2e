//! The query port: Jaeger's classic JSON API, `/metrics`, `/healthz` and `/readyz`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Serialize;

use super::json::Json;
use super::tenant::TenantOf;
use super::AppState;
use crate::model::{Span, SpanKind, TraceId};
use crate::query::jaeger_json::{self, Envelope};
use crate::query::otlp_json;
use crate::query::params::{self, ParamError};
use crate::query::remote::Gaps;
use crate::store::StoreError;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/services", get(services))
        .route(
            "/api/services/{service}/operations",
            get(service_operations),
        )
        .route("/api/operations", get(operations))
        .route("/api/traces", get(search))
        .route("/api/traces/{id}", get(trace))
        .route("/api/dependencies", get(dependencies))
        .route("/api/metrics/{endpoint}", get(super::red_api::metrics))
        .route("/api/v1/invocations", get(super::invocations_api::list))
        .route(
            "/api/v1/invocations/aggregate",
            get(super::invocations_api::aggregate),
        )
        .route(
            "/api/v1/invocations/{request_id}",
            get(super::invocations_api::one),
        )
        .route("/api/v1/logs", get(super::logs_api::list))
        .route("/api/v1/metrics", get(super::metrics_api::list))
        .route("/api/v1/metrics/{name}", get(super::metrics_api::series))
        .route("/api/v1/traces", get(v1_search))
        .route("/api/v1/traces/{id}/tree", get(v1_tree))
        .route("/", get(super::ui::index))
        .route("/ui/{file}", get(super::ui::asset))
        .route("/api/v3/services", get(v3_services))
        .route("/api/v3/operations", get(v3_operations))
        .route("/api/v3/traces", get(v3_search))
        .route("/api/v3/traces/{id}", get(v3_trace))
        .route("/api/v3/trace-summaries", get(v3_summaries))
        .route("/metrics", get(metrics))
        .route("/api/admin/compact", axum::routing::post(compact))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .with_state(state)
}

/// Errors of the query API, answered in Jaeger's envelope.
pub(super) enum ApiError {
    BadRequest(String),
    NotFound(&'static str),
    Internal(String),
    /// Part of the data is on a store node that did not answer (a query node).
    Unavailable(String),
}

impl From<ParamError> for ApiError {
    fn from(e: ParamError) -> Self {
        ApiError::BadRequest(e.0)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if let StoreError::Unreachable(m) = e {
            return ApiError::Unavailable(m);
        }
        tracing::error!(error = %e, "query failed");
        ApiError::Internal(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, msg) = match self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, m.to_owned()),
            ApiError::Internal(m) => (StatusCode::INTERNAL_SERVER_ERROR, m),
            ApiError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, m),
        };
        (status, Json(Envelope::error(status.as_u16(), msg))).into_response()
    }
}

pub(super) fn ok<T: Serialize>(data: T, total: usize) -> Response {
    Json(Envelope::data(data, total)).into_response()
}

/// [`ok`] with what a query node could not read (a store node down) in the envelope's
/// `errors`, beside the data it could.
pub(super) fn ok_but<T: Serialize>(data: T, total: usize, gaps: &Gaps) -> Response {
    let mut envelope = Envelope::data(data, total);
    envelope.errors = gap_errors(gaps);
    Json(envelope).into_response()
}

/// What a query node could not read, as the envelope's `errors` (`None`: nothing).
pub(super) fn gap_errors(gaps: &Gaps) -> Option<Vec<jaeger_json::EnvelopeError>> {
    let missing = gaps.take();
    (!missing.is_empty()).then(|| {
        missing
            .into_iter()
            .map(|msg| jaeger_json::EnvelopeError { code: 503, msg })
            .collect()
    })
}

/// Run a blocking store read off the async threads.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(ApiError::from)
}

async fn services(
    State(state): State<AppState>,
    TenantOf(tenant): TenantOf,
) -> Result<Response, ApiError> {
    let (query, gaps) = state.query.for_request();
    let services = blocking(move || Ok(query.services(tenant))).await?;
    let n = services.len();
    Ok(ok_but(services, n, &gaps))
}

async fn service_operations(
    State(state): State<AppState>,
    TenantOf(tenant): TenantOf,
    Path(service): Path<String>,
) -> Result<Response, ApiError> {
    let (query, gaps) = state.query.for_request();
    let ops = blocking(move || Ok(query.operations(tenant, &service, None))).await?;
    let mut names: Vec<String> = ops.into_iter().map(|(name, _)| name).collect();
    names.dedup();
    let n = names.len();
    Ok(ok_but(names, n, &gaps))
}

async fn operations(
    State(state): State<AppState>,
    TenantOf(tenant): TenantOf,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = params::pairs(raw.as_deref());
    let service = params::single(&pairs, "service")?
        .ok_or_else(|| ApiError::BadRequest("parameter 'service' is required".into()))?;
    let kind = match params::single(&pairs, "spanKind")? {
        None => None,
        Some(k) => Some(SpanKind::parse(k).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "parameter 'spanKind' must be one of server, client, producer, consumer, internal; got {k:?}"
            ))
        })?),
    };
    let (query, gaps) = state.query.for_request();
    let service = service.to_owned();
    let ops = blocking(move || Ok(query.operations(tenant, &service, kind))).await?;
    Ok(ok_but(jaeger_json::operations(&ops), ops.len(), &gaps))
}

async fn search(
    State(state): State<AppState>,
    TenantOf(tenant): TenantOf,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = params::pairs(raw.as_deref());
    let now = crate::clock::now_us();
    let q = params::parse_trace_query(&pairs, now, state.settings.retention)?;
    let (query, gaps) = state.query.for_request();
    let traces = blocking(move || query.search(tenant, &q)).await?;
    let views: Vec<_> = traces.iter().map(|t| jaeger_json::trace(t)).collect();
    let n = views.len();
    Ok(ok_but(views, n, &gaps))
}

async fn trace(
    State(state): State<AppState>,
    TenantOf(tenant): TenantOf,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let id = TraceId::from_hex(&id).map_err(|e| ApiError::BadRequest(format!("trace id: {e}")))?;
    // A trace is found by its id alone: the window clients send (Jaeger's UI in µs,
    // Grafana in ms) is checked, not used to narrow, so a trace reaching past it is whole.
    params::trace_window(&params::pairs(raw.as_deref()))?;
    let query = state.query.clone();
    match blocking(move || query.trace(tenant, id)).await? {
        Some(spans) => Ok(ok(vec![jaeger_json::trace(&spans)], 1)),
        None => Err(ApiError::NotFound("trace not found")),
    }
}

async fn dependencies(
    State(state): State<AppState>,
    TenantOf(tenant): TenantOf,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = params::pairs(raw.as_deref());
    let now_ms = crate::clock::now_us() / 1000;
    let end_ms = params::uint(&pairs, "endTs", "milliseconds")?.unwrap_or(now_ms);
    // Jaeger's default lookback for dependencies is one day.
    let lookback_ms = params::uint(&pairs, "lookback", "milliseconds")?.unwrap_or(86_400_000);
    let (query, gaps) = state.query.for_request();
    let links = blocking(move || {
        query.dependencies(
            tenant,
            end_ms.saturating_mul(1000),
            lookback_ms.saturating_mul(1000),
        )
    })
    .await?;
    Ok(ok_but(
        jaeger_json::dependencies(&links),
        links.len(),
        &gaps,
    ))
}

/// Errors of `/api/v3`, in its own shape: `{"error":{"httpCode":N,"message":".."}}`.
struct V3Error(StatusCode, String);

impl From<ApiError> for V3Error {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::BadRequest(m) => V3Error(StatusCode::BAD_REQUEST, m),
            ApiError::NotFound(m) => V3Error(StatusCode::NOT_FOUND, m.to_owned()),
            ApiError::Internal(m) => V3Error(StatusCode::INTERNAL_SERVER_ERROR, m),
            ApiError::Unavailable(m) => V3Error(StatusCode::SERVICE_UNAVAILABLE, m),
        }
    }
}

impl From<ParamError> for V3Error {
    fn from(e: ParamError) -> Self {
        V3Error(StatusCode::BAD_REQUEST, e.0)
    }
}

impl V3Error {
    /// `/api/v3` has no place for a partial answer: what a query node could not read
    /// makes the whole answer 503.
    fn unless_gaps(gaps: &Gaps) -> Result<(), V3Error> {
        match gaps.refusal() {
            None => Ok(()),
            Some(why) => Err(V3Error(StatusCode::SERVICE_UNAVAILABLE, why)),
        }
    }
}

impl IntoResponse for V3Error {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"httpCode": self.0.as_u16(), "message": self.1}});
        (self.0, Json(body)).into_response()
    }
}

async fn v3_services(
    State(state): State<AppState>,
    TenantOf(tenant): TenantOf,
) -> Result<Response, V3Error> {
    let (query, gaps) = state.query.for_request();
    let services = blocking(move || Ok(query.services(tenant))).await?;
    V3Error::unless_gaps(&gaps)?;
    Ok(Json(serde_json::json!({ "services": services })).into_response())
}

async fn v3_operations(
    State(state): State<AppState>,
    TenantOf(tenant): TenantOf,
    RawQuery(raw): RawQuery,
) -> Result<Response, V3Error> {
    let pairs = params::pairs(raw.as_deref());
    let service = params::single(&pairs, "service")?.ok_or_else(|| {
        V3Error(
            StatusCode::BAD_REQUEST,
            "parameter 'service' is required".into(),
        )
    })?;
    let kind = match params::single(&pairs, "span_kind")?.or(params::single(&pairs, "spanKind")?) {
        None => None,
        Some(k) => Some(SpanKind::parse(k).ok_or_else(|| {
            V3Error(
                StatusCode::BAD_REQUEST,
                format!("parameter 'span_kind' must be one of server, client, producer, consumer, internal; got {k:?}"),
            )
        })?),
    };
    let (query, gaps) = state.query.for_request();
    let service = service.to_owned();
    let ops = blocking(move || Ok(query.operations(tenant, &service, kind))).await?;
    V3Error::unless_gaps(&gaps)?;
    Ok(Json(serde_json::json!({ "operations": jaeger_json::operations(&ops) })).into_response())
}

async fn v3_trace(
    State(state): State<AppState>,
    TenantOf(tenant): TenantOf,
    Path(id): Path<String>,
) -> Result<Response, V3Error> {
    let id = TraceId::from_hex(&id)
        .map_err(|e| V3Error(StatusCode::BAD_REQUEST, format!("trace id: {e}")))?;
    let query = state.query.clone();
    match blocking(move || query.trace(tenant, id)).await? {
        Some(spans) => Ok(
            Json(serde_json::json!({ "result": otlp_json::traces_data(&spans) })).into_response(),
        ),
        None => Err(V3Error(StatusCode::NOT_FOUND, "trace not found".into())),
    }
}

/// The traces `/api/v3/traces`' parameters find (also what `/api/v3/trace-summaries`
/// summarises).
async fn v3_find(
    state: &AppState,
    tenant: crate::store::keys::Tenant,
    raw: Option<String>,
) -> Result<Vec<Vec<Span>>, V3Error> {
    let pairs = params::pairs(raw.as_deref());
    let q = params::parse_v3_query(&pairs, crate::clock::now_us(), state.settings.retention)?;
    let (query, gaps) = state.query.for_request();
    let traces = blocking(move || query.search(tenant, &q)).await?;
    V3Error::unless_gaps(&gaps)?;
    Ok(traces)
}

async fn v3_search(
    State(state): State<AppState>,
    TenantOf(tenant): TenantOf,
    RawQuery(raw): RawQuery,
) -> Result<Response, V3Error> {
    let traces = v3_find(&state, tenant, raw).await?;
    let data = otlp_json::traces_data(traces.iter().flatten());
    Ok(Json(serde_json::json!({ "result": data })).into_response())
}

/// `/api/v3/trace-summaries`: what `/api/v3/traces` finds, as one summary per trace,
/// newest first (what Jaeger UI's search list shows, without the spans).
async fn v3_summaries(
    State(state): State<AppState>,
    TenantOf(tenant): TenantOf,
    RawQuery(raw): RawQuery,
) -> Result<Response, V3Error> {
    let mut list: Vec<_> = v3_find(&state, tenant, raw)
        .await?
        .iter()
        .map(|spans| crate::query::summary::summarize(spans))
        .collect();
    crate::query::summary::sort(
        &mut list,
        crate::query::summary::Sort::Start,
        Default::default(),
    );
    let data = otlp_json::trace_summaries(&list);
    Ok(Json(serde_json::json!({ "result": data })).into_response())
}

/// Trace summaries for people (`/api/v1/traces`), in Jaeger's envelope.
async fn v1_search(
    State(state): State<AppState>,
    TenantOf(tenant): TenantOf,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = params::pairs(raw.as_deref());
    let (q, filters) = crate::query::human::parse_human_query(
        &pairs,
        crate::clock::now_us(),
        state.settings.retention,
    )?;
    let (query, gaps) = state.query.for_request();
    let list = blocking(move || query.summaries(tenant, &q, &filters)).await?;
    let n = list.len();
    Ok(ok_but(list, n, &gaps))
}

/// One trace as a tree with its summary.
async fn v1_tree(
    State(state): State<AppState>,
    TenantOf(tenant): TenantOf,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = TraceId::from_hex(&id).map_err(|e| ApiError::BadRequest(format!("trace id: {e}")))?;
    let query = state.query.clone();
    let tree = blocking(move || {
        Ok(query
            .trace(tenant, id)?
            .map(|spans| crate::query::tree::build(&spans)))
    })
    .await?;
    match tree {
        Some(t) => Ok(ok(t, 1)),
        None => Err(ApiError::NotFound("trace not found")),
    }
}

/// The daemon's own Prometheus metrics. With tenants their labels name every tenant's
/// services, so only the admin token reads them.
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if state.tenancy.is_on() {
        if let Some(refused) = is_admin(&state, &headers) {
            return refused;
        }
    }
    state.metrics.store_memory(&state.store.memory());
    state.metrics.store_compaction(state.store.compaction());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// The refusal for a request without the admin token (`Authorization: Bearer TOKEN`,
/// compared in time independent of where the first difference is), or `None` to go on.
fn is_admin(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    let Some(token) = state.settings.admin_token.as_deref() else {
        // off without a token: indistinguishable from a route that does not exist
        return Some(ApiError::NotFound("not found").into_response());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    (!super::tenant::same_secret(given, token)).then(|| {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "admin endpoints need Authorization: Bearer <the --admin-token>",
        )
            .into_response()
    })
}

/// Compact the store now (benchmarks measure disk use after this). Admin only.
async fn compact(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(refused) = is_admin(&state, &headers) {
        return refused;
    }
    let store = Arc::clone(&state.store);
    match tokio::task::spawn_blocking(move || store.compact()).await {
        Ok(()) => Json(serde_json::json!({"compacted": true})).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Ready once started; in a cluster also while connected to the log, for a store node
/// once every partition it consumes has caught up (what it serves is complete), and for
/// a query node once it has read the partition map.
async fn readyz(State(state): State<AppState>) -> Response {
    let unready = |why: String| (StatusCode::SERVICE_UNAVAILABLE, why).into_response();
    if !state.ready.load(Ordering::SeqCst) {
        return unready("not ready".into());
    }
    if let Some(why) = state.cluster.as_ref().and_then(|n| n.unready()) {
        return unready(why);
    }
    (StatusCode::OK, "ready").into_response()
}

async fn not_found() -> ApiError {
    ApiError::NotFound("not found")
}
