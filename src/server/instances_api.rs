//! `/api/v1/functions` (the declared functions) and `/api/v1/instances`: instance
//! metrics (`platform::sampler`). The live instances of a function with their latest
//! sample, one instance's samples over time, and a function's (the largest over its
//! instances at each tick), each of the caller's tenant only. Routes and parameters only.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use super::query_api::{blocking, ok, ok_but, ApiError};
use super::tenant::TenantOf;
use super::AppState;
use crate::platform::sampler::read_samples;
use crate::platform::Platform;
use crate::query::params;

#[derive(Clone)]
struct Instances {
    platform: Arc<Platform>,
    /// Who a request is (`tenant`).
    app: AppState,
}

impl axum::extract::FromRef<Instances> for AppState {
    fn from_ref(s: &Instances) -> AppState {
        s.app.clone()
    }
}

pub fn router(app: AppState, platform: Arc<Platform>) -> Router {
    Router::new()
        .route("/api/v1/functions", get(functions))
        .route("/api/v1/instances", get(live))
        .route("/api/v1/instances/metrics", get(function_samples))
        .route(
            "/api/v1/instances/{instance_id}/metrics",
            get(instance_samples),
        )
        .with_state(Instances { platform, app })
}

/// The caller's tenant's functions: `serviceName`, `functionName`, `qualifier`,
/// `memoryMB`, `timeoutMs`, `maxInstances`, `instanceConcurrency`, `initializer`.
async fn functions(State(s): State<Instances>, TenantOf(tenant): TenantOf) -> Response {
    let list = s.platform.functions(tenant);
    let n = list.len();
    ok(list, n)
}

/// `?service=&function=` (both optional): the caller's tenant's live instances, each with
/// its latest sample.
async fn live(
    State(s): State<Instances>,
    TenantOf(tenant): TenantOf,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = params::pairs(raw.as_deref());
    let service = params::single(&pairs, "service")?;
    let function = params::single(&pairs, "function")?;
    let list = s.platform.live_instances(tenant, service, function);
    let n = list.len();
    Ok(ok(list, n))
}

/// `start` and `end` in ms (default: the last hour).
fn window(pairs: &[(String, String)]) -> Result<(u64, u64), ApiError> {
    let end = params::uint(pairs, "end", "milliseconds since the epoch")?
        .unwrap_or(crate::clock::now_us() / 1000);
    let start = params::uint(pairs, "start", "milliseconds since the epoch")?
        .unwrap_or(end.saturating_sub(3_600_000));
    if start > end {
        return Err(ApiError::BadRequest(
            "parameter 'start' is after 'end'".into(),
        ));
    }
    Ok((start, end))
}

async fn instance_samples(
    State(s): State<Instances>,
    TenantOf(tenant): TenantOf,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let (start, end) = window(&params::pairs(raw.as_deref()))?;
    let (query, gaps) = s.app.query.for_request();
    let samples =
        blocking(move || read_samples(&query, tenant, Some(&id), None, start, end)).await?;
    let n = samples.len();
    Ok(ok_but(samples, n, &gaps))
}

/// `?service=&function=&start=&end=`: the function's view, the largest of its
/// instances' values at each tick.
async fn function_samples(
    State(s): State<Instances>,
    TenantOf(tenant): TenantOf,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = params::pairs(raw.as_deref());
    let need = |name: &str| {
        params::single(&pairs, name)?
            .map(str::to_owned)
            .ok_or_else(|| ApiError::BadRequest(format!("parameter '{name}' is required")))
    };
    let (service, function) = (need("service")?, need("function")?);
    let (start, end) = window(&pairs)?;
    let (query, gaps) = s.app.query.for_request();
    let samples = blocking(move || {
        read_samples(
            &query,
            tenant,
            None,
            Some((&service, &function)),
            start,
            end,
        )
    })
    .await?;
    let n = samples.len();
    Ok(ok_but(samples, n, &gaps))
}
