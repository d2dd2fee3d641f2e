//! `GET /api/v1/logs`: function log lines. `service` and `function`, or `requestId`
//! (its record names the function), with `instanceID`, `start`/`end` (µs since the
//! epoch; default the last hour), `q` (a substring) and `limit` (1000, at most 10,000).
//! Routes and parameters only: `query::logs` finds.

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::query_api::{blocking, ApiError};
use super::tenant::TenantOf;
use super::AppState;
use crate::query::logs::{LogQuery, MAX_SCANNED};
use crate::query::params;

const DEFAULT_LIMIT: usize = 1000;
const LOOKBACK_US: u64 = 3600 * 1_000_000;

fn parse(pairs: &[(String, String)]) -> Result<LogQuery, ApiError> {
    let text = |name: &str| -> Result<Option<String>, ApiError> {
        Ok(params::single(pairs, name)?
            .filter(|v| !v.is_empty())
            .map(str::to_owned))
    };
    let q = LogQuery {
        service: text("service")?,
        function: text("function")?,
        request_id: text("requestId")?,
        instance_id: text("instanceID")?,
        q: text("q")?,
        start_us: 0,
        end_us: 0,
        limit: params::limit_param(pairs, DEFAULT_LIMIT)?,
        resolved: false,
    };
    if q.request_id.is_none() && (q.service.is_none() || q.function.is_none()) {
        return Err(ApiError::BadRequest(
            "parameters 'service' and 'function' are required, or 'requestId'".into(),
        ));
    }
    let unit = "microseconds since the epoch";
    let end = params::uint(pairs, "end", unit)?;
    let start = params::uint(pairs, "start", unit)?;
    let (start_us, end_us) = match (start, end, &q.request_id) {
        // a request's record gives its window
        (None, None, Some(_)) => (0, u64::MAX),
        (s, e, _) => {
            let end = e.unwrap_or_else(crate::clock::now_us);
            (s.unwrap_or(end.saturating_sub(LOOKBACK_US)), end)
        }
    };
    if start_us > end_us {
        return Err(ApiError::BadRequest(
            "parameter 'start' is after 'end'".into(),
        ));
    }
    Ok(LogQuery {
        start_us,
        end_us,
        ..q
    })
}

pub(super) async fn list(
    State(state): State<AppState>,
    TenantOf(tenant): TenantOf,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = parse(&params::pairs(raw.as_deref()))?;
    let (query, gaps) = state.query.for_request();
    let (lines, capped) = blocking(move || query.logs(tenant, &q)).await?;
    let total = lines.len();
    Ok(Json(serde_json::json!({
        "data": lines,
        "total": total,
        // the walk stopped after this many lines: narrow the window to see the rest
        "truncated": capped.then_some(MAX_SCANNED),
        // what a query node could not read (a store node down), as Jaeger's envelope says it
        "errors": super::query_api::gap_errors(&gaps),
    }))
    .into_response())
}
