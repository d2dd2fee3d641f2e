//! The remote sampling API: `GET /sampling?service=` and `GET /?service=` on the sampling
//! port, `GET /api/sampling?service=` on the collector port. Answers Jaeger's JSON for the
//! service's strategy; `service` missing or repeated is a 400.
//!
//! With tenants, a call needs a tenant's token like every query (in a header, or as
//! `/adapt_{token}/sampling` and `/adapt_{token}/api/sampling`, the confidential form a
//! Jaeger client's sampling URL can carry). The strategies are the operator's file,
//! the same for every tenant: a token only decides whether the call is answered.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use super::AppState;
use crate::query::params;
use crate::sampling::SamplingResponse;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/sampling", get(strategy))
        .route("/", get(strategy))
        .route("/{adapt}/sampling", get(adapt_strategy))
        .with_state(state)
}

/// `/adapt_{token}/…sampling?service=`: the token in the path.
pub async fn adapt_strategy(
    State(state): State<AppState>,
    Path(adapt): Path<String>,
    raw: RawQuery,
) -> Response {
    match super::tenant::of_adapt_segment(&state, &adapt) {
        Ok(_) => answer(&state, raw),
        Err(refused) => refused.into_response(),
    }
}

pub async fn strategy(
    State(state): State<AppState>,
    _tenant: super::tenant::TenantOf,
    raw: RawQuery,
) -> Response {
    answer(&state, raw)
}

fn answer(state: &AppState, RawQuery(raw): RawQuery) -> Response {
    let pairs = params::pairs(raw.as_deref());
    let count = pairs.iter().filter(|(k, _)| k == "service").count();
    let service = match (count, pairs.iter().find(|(k, _)| k == "service")) {
        (1, Some((_, v))) if !v.is_empty() => v.clone(),
        (0, _) | (1, _) => {
            return (
                StatusCode::BAD_REQUEST,
                "'service' parameter must be provided once",
            )
                .into_response()
        }
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                "'service' parameter must be provided once, not repeated",
            )
                .into_response()
        }
    };
    let strategies = state.sampler.rules().current();
    Json(SamplingResponse::from(strategies.for_service(&service))).into_response()
}
