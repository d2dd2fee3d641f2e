//! Reading an HTTP request body within a size limit, then undoing its content encoding
//! within the same limit.
//!
//! The limit applies to what fctrace would hold in memory: the declared length is checked
//! first, the streamed body is cut off as soon as it passes the limit (chunked bodies have
//! no declared length), and decompression stops at the limit too, so a small gzip bomb
//! cannot grow past it.

use std::io::Read;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;

use super::ReceiveError;

/// [`read`] with the length and encoding taken from the request's headers.
pub async fn read_request(
    body: Body,
    headers: &axum::http::HeaderMap,
    limit: usize,
) -> Result<Bytes, ReceiveError> {
    let h = |name: axum::http::header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    read(
        body,
        h(axum::http::header::CONTENT_LENGTH),
        h(axum::http::header::CONTENT_ENCODING),
        limit,
    )
    .await
}

/// Read `body` whole, refusing it once it exceeds `limit` bytes before or after decoding.
pub async fn read(
    body: Body,
    content_length: Option<&str>,
    content_encoding: Option<&str>,
    limit: usize,
) -> Result<Bytes, ReceiveError> {
    let encoding = Encoding::parse(content_encoding)?;
    if let Some(len) = content_length.and_then(|v| v.trim().parse::<u64>().ok()) {
        if len > limit as u64 {
            return Err(ReceiveError::TooLarge { limit });
        }
    }
    let mut body = body;
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ReceiveError::Body(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(ReceiveError::TooLarge { limit });
            }
            buf.extend_from_slice(&data);
        }
    }
    let raw = buf.freeze();
    match encoding {
        Encoding::Identity => Ok(raw),
        Encoding::Gzip => decode_capped(flate2::read::MultiGzDecoder::new(&raw[..]), limit),
        Encoding::Deflate => decode_capped(flate2::read::ZlibDecoder::new(&raw[..]), limit),
        Encoding::Zstd => {
            let reader = zstd::stream::read::Decoder::new(&raw[..])
                .map_err(|e| ReceiveError::Decompress(e.to_string()))?;
            decode_capped(reader, limit)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Identity,
    Gzip,
    Deflate,
    Zstd,
}

impl Encoding {
    fn parse(header: Option<&str>) -> Result<Self, ReceiveError> {
        match header.map(|h| h.trim().to_ascii_lowercase()).as_deref() {
            None | Some("") | Some("identity") => Ok(Encoding::Identity),
            Some("gzip") | Some("x-gzip") => Ok(Encoding::Gzip),
            Some("deflate") => Ok(Encoding::Deflate),
            Some("zstd") => Ok(Encoding::Zstd),
            Some(other) => Err(ReceiveError::ContentEncoding(
                other.chars().take(40).collect(),
            )),
        }
    }
}

fn decode_capped(reader: impl Read, limit: usize) -> Result<Bytes, ReceiveError> {
    let mut out = Vec::new();
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ReceiveError::Decompress(e.to_string()))?;
    if out.len() > limit {
        return Err(ReceiveError::TooLarge { limit });
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[tokio::test]
    async fn gzip_is_decoded_within_the_limit() {
        let z = gzip(b"hello");
        let out = read(Body::from(z), None, Some("gzip"), 100).await.unwrap();
        assert_eq!(&out[..], b"hello");
    }

    #[tokio::test]
    async fn a_gzip_bomb_stops_at_the_limit() {
        let z = gzip(&vec![0u8; 10_000_000]);
        assert!(z.len() < 100_000);
        let err = read(Body::from(z), None, Some("gzip"), 1_000_000)
            .await
            .unwrap_err();
        assert!(matches!(err, ReceiveError::TooLarge { .. }));
    }

    #[tokio::test]
    async fn declared_and_streamed_sizes_are_both_checked() {
        let err = read(Body::from("x"), Some("1000"), None, 10)
            .await
            .unwrap_err();
        assert!(matches!(err, ReceiveError::TooLarge { .. }));
        let err = read(Body::from(vec![1u8; 11]), None, None, 10)
            .await
            .unwrap_err();
        assert!(matches!(err, ReceiveError::TooLarge { .. }));
        let err = read(Body::from("x"), None, Some("br"), 10)
            .await
            .unwrap_err();
        assert!(matches!(err, ReceiveError::ContentEncoding(_)));
        let err = read(Body::from("not gzip"), None, Some("gzip"), 10)
            .await
            .unwrap_err();
        assert!(matches!(err, ReceiveError::Decompress(_)));
    }
}
