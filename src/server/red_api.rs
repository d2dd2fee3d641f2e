//! Jaeger's metrics query API for the Monitor tab on the query port:
//! `GET /api/metrics/{latencies,calls,errors}` answer Jaeger's `MetricFamily` JSON,
//! `GET /api/metrics/minstep` the smallest step in ms. Routes only: `query::red` parses
//! and computes.

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::query_api::{blocking, ok, ApiError};
use super::tenant::TenantOf;
use super::AppState;
use crate::query::{params, red};

pub(super) async fn metrics(
    State(state): State<AppState>,
    TenantOf(tenant): TenantOf,
    Path(endpoint): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    if endpoint == "minstep" {
        return Ok(ok(red::MIN_STEP_MS, 0));
    }
    if !matches!(endpoint.as_str(), "latencies" | "calls" | "errors") {
        return Err(ApiError::NotFound("not found"));
    }
    let pairs = params::pairs(raw.as_deref());
    let (q, measure) = red::parse(&pairs, &endpoint, crate::clock::now_us() / 1000)?;
    let (query, gaps) = state.query.for_request();
    let family = blocking(move || red::answer(&query, tenant, &q, measure)).await?;
    // Jaeger's MetricFamily has no place for a partial answer (a query node that could
    // not read some store node)
    if let Some(why) = gaps.refusal() {
        return Err(ApiError::Unavailable(why));
    }
    Ok(Json(family).into_response())
}
