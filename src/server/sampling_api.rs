//! The remote sampling API: `GET /sampling?service=` and `GET /?service=` on the sampling
//! port, `GET /api/sampling?service=` on the collector port. Answers Jaeger's JSON for the
//! service's strategy; `service` missing or repeated is a 400.

use axum::extract::{RawQuery, State};
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
        .with_state(state)
}

pub async fn strategy(State(state): State<AppState>, RawQuery(raw): RawQuery) -> Response {
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
