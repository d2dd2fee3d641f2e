//! The Zipkin collector port (9411): `POST /api/v2/spans` in JSON or protobuf and
//! `POST /api/v1/spans` in JSON, gzip or not, answered 202 as Zipkin answers. Decoding and
//! the mapping are `receive::zipkin`'s; this module reads the body and submits.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::Response;
use axum::routing::post;
use axum::Router;

use super::{text_error, AppState};
use crate::budget::Reservation;
use crate::receive::{self, zipkin, zipkin_v1, ReceiveError};

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v2/spans", post(post_v2))
        .route("/api/v1/spans", post(post_v1))
        .with_state(state)
}

#[derive(Clone, Copy)]
enum Encoding {
    V2Json,
    V2Proto,
    V1Json,
}

async fn post_v2(State(state): State<AppState>, headers: HeaderMap, req_body: Body) -> Response {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // Zipkin's own server takes a body without a content type as JSON
    let encoding = match receive::media_type(ct).as_str() {
        "" | "application/json" => Encoding::V2Json,
        "application/x-protobuf" | "application/protobuf" => Encoding::V2Proto,
        _ => {
            let e = ReceiveError::ZipkinContentType(ct.chars().take(100).collect());
            state.metrics.rejected_request(e.metric_reason());
            return text_error(e.code(), e.to_string());
        }
    };
    ingest(state, headers, req_body, encoding).await
}

async fn post_v1(State(state): State<AppState>, headers: HeaderMap, req_body: Body) -> Response {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !matches!(receive::media_type(ct).as_str(), "" | "application/json") {
        // v1 thrift is not taken: every maintained Zipkin client sends JSON or v2
        let e = ReceiveError::ZipkinContentType(ct.chars().take(100).collect());
        state.metrics.rejected_request(e.metric_reason());
        return text_error(e.code(), e.to_string());
    }
    ingest(state, headers, req_body, Encoding::V1Json).await
}

async fn ingest(
    state: AppState,
    headers: HeaderMap,
    req_body: Body,
    encoding: Encoding,
) -> Response {
    let decode = move |bytes: &[u8], limits: &receive::Limits, mem: &mut Reservation| {
        let spans = match encoding {
            Encoding::V2Json => zipkin::decode_json_v2(bytes, limits, mem)?,
            Encoding::V2Proto => zipkin::decode_proto(bytes, limits, mem)?,
            Encoding::V1Json => zipkin_v1::decode_json_v1(bytes, limits, mem)?,
        };
        Ok(zipkin::to_model(spans))
    };
    match super::tenant::of_headers(&state, &headers) {
        Ok(tenant) => {
            super::collector::receive_whole(
                &state,
                tenant,
                &headers,
                req_body,
                ("zipkin", decode),
                None,
            )
            .await
        }
        Err(refused) => axum::response::IntoResponse::into_response(refused),
    }
}
