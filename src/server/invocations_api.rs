//! `/api/v1/invocations`: call analysis over invocation records. The list (one
//! function's records newest first, or a service's, with filters), one record by its
//! request id, and grouped statistics (`/aggregate`). Routes and parameters only:
//! `query::calls` filters and computes.

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;

use super::query_api::{blocking, ok, ok_but, ApiError};
use super::tenant::TenantOf;
use super::AppState;
use crate::model::InvocationRecord;
use crate::query::calls::{self, Aggregation, CallFilter};
use crate::query::params;
use crate::query::remote::Gaps;

/// The window and function every call-analysis question names.
struct Scope {
    service: String,
    function: Option<String>,
    start: u64,
    end: u64,
}

fn scope(pairs: &[(String, String)], need_function: bool) -> Result<Scope, ApiError> {
    let service = params::single(pairs, "service")?
        .map(str::to_owned)
        .ok_or_else(|| ApiError::BadRequest("parameter 'service' is required".into()))?;
    let function = params::single(pairs, "function")?.map(str::to_owned);
    if need_function && function.is_none() {
        return Err(ApiError::BadRequest(
            "parameter 'function' is required".into(),
        ));
    }
    Ok(Scope {
        service,
        function,
        start: params::uint(pairs, "start", "microseconds since the epoch")?.unwrap_or(0),
        end: params::uint(pairs, "end", "microseconds since the epoch")?.unwrap_or(u64::MAX),
    })
}

/// The records of `s` that `filter` keeps, at most `limit`, whether the walk stopped
/// at `calls::MAX_SCANNED`, and what a query node could not read.
async fn records(
    state: &AppState,
    tenant: crate::store::keys::Tenant,
    s: Scope,
    limit: usize,
    filter: CallFilter,
) -> Result<(Vec<InvocationRecord>, bool, Gaps), ApiError> {
    let (query, gaps) = state.query.for_request();
    let (records, capped) = blocking(move || {
        query.invocations(
            tenant,
            &s.service,
            s.function.as_deref(),
            s.start,
            s.end,
            limit,
            &filter,
        )
    })
    .await?;
    Ok((records, capped, gaps))
}

/// `?service=&function=&start=&end=&limit=` plus the filters of [`CallFilter::parse`].
pub(super) async fn list(
    State(state): State<AppState>,
    TenantOf(tenant): TenantOf,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = params::pairs(raw.as_deref());
    let s = scope(&pairs, true)?;
    let filter = CallFilter::parse(&pairs)?;
    let limit = params::limit_param(&pairs, params::DEFAULT_LIMIT)?;
    let (records, _, gaps) = records(&state, tenant, s, limit, filter).await?;
    let n = records.len();
    Ok(ok_but(records, n, &gaps))
}

/// `GET /api/v1/invocations/{requestId}`.
pub(super) async fn one(
    State(state): State<AppState>,
    TenantOf(tenant): TenantOf,
    Path(request_id): Path<String>,
) -> Result<Response, ApiError> {
    let query = state.query.clone();
    match blocking(move || query.invocation(tenant, &request_id)).await? {
        Some(r) => Ok(ok(r, 1)),
        None => Err(ApiError::NotFound("invocation not found")),
    }
}

/// `?service=&function=` (function optional: the whole service) `&start=&end=` plus
/// the filters, `groupBy`, `field`, `stats` and `period` of [`Aggregation::parse`].
pub(super) async fn aggregate(
    State(state): State<AppState>,
    TenantOf(tenant): TenantOf,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = params::pairs(raw.as_deref());
    let s = scope(&pairs, false)?;
    let filter = CallFilter::parse(&pairs)?;
    let agg = Aggregation::parse(&pairs)?;
    let (records, capped, gaps) = records(&state, tenant, s, calls::MAX_SCANNED, filter).await?;
    if capped {
        return Err(ApiError::BadRequest(format!(
            "the window holds more than {} records: narrow it",
            calls::MAX_SCANNED
        )));
    }
    let rows = calls::aggregate(&records, &agg);
    let n = rows.len();
    Ok(ok_but(rows, n, &gaps))
}
