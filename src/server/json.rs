//! JSON responses written into one growing buffer. axum's `Json` writes through a
//! `BytesMut` writer, one call per token, and a 200-span trace is thousands of tokens
//! (`BytesMut::put_slice` alone was 8 % of the daemon's CPU answering queries,
//! BENCHMARKS.md). Response bodies only; requests still use axum's extractor.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// A JSON body with `Content-Type: application/json`, like axum's `Json` response.
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        let mut body = Vec::with_capacity(4096);
        match serde_json::to_writer(&mut body, &self.0) {
            Ok(()) => (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                body,
            )
                .into_response(),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn body_and_content_type_are_json() {
        let r = Json(serde_json::json!({"a": [1, "x\"y"]})).into_response();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        assert_eq!(&body[..], br#"{"a":[1,"x\"y"]}"#);
    }
}
