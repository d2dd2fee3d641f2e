//! Reading an HTTP request body within a size limit and a time limit, then undoing its
//! content encoding within the same size limit.
//!
//! The limit applies to what fctrace would hold in memory: the declared length is checked
//! first, the streamed body is cut off as soon as it passes the limit (chunked bodies have
//! no declared length), and decompression stops at the limit too, so a small gzip bomb
//! cannot grow past it. Every byte kept is charged to the request's memory reservation
//! before it is kept. A client that has not sent its whole body within the time limit is
//! cut off (408), so a stalled upload cannot hold a connection and its memory forever.

use std::io::Read;
use std::time::Duration;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;

use super::{LimitError, ReceiveError};
use crate::budget::Reservation;

/// How much and how long a body may be.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub max_bytes: usize,
    pub timeout: Duration,
}

/// A body as received, and how to undo its encoding.
pub struct RawBody {
    raw: Bytes,
    encoding: Encoding,
    limit: usize,
}

impl RawBody {
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Undo the content encoding (CPU work: run it off the async threads for big bodies).
    pub fn decode(self, mem: &mut Reservation) -> Result<Bytes, ReceiveError> {
        let limit = self.limit;
        match self.encoding {
            Encoding::Identity => Ok(self.raw),
            Encoding::Gzip => {
                decode_capped(flate2::read::MultiGzDecoder::new(&self.raw[..]), limit, mem)
            }
            Encoding::Deflate => {
                decode_capped(flate2::read::ZlibDecoder::new(&self.raw[..]), limit, mem)
            }
            Encoding::Zstd => {
                let reader = zstd::stream::read::Decoder::new(&self.raw[..])
                    .map_err(|e| ReceiveError::Decompress(e.to_string()))?;
                decode_capped(reader, limit, mem)
            }
        }
    }
}

/// [`receive`] with the length and encoding taken from the request's headers.
pub async fn read_request(
    body: Body,
    headers: &axum::http::HeaderMap,
    limits: BodyLimits,
    mem: &mut Reservation,
) -> Result<RawBody, ReceiveError> {
    let h = |name: axum::http::header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    receive(
        body,
        h(axum::http::header::CONTENT_LENGTH),
        h(axum::http::header::CONTENT_ENCODING),
        limits,
        mem,
    )
    .await
}

/// Receive `body` whole within `limits`, refusing it once it exceeds the size limit or
/// the time limit passes.
pub async fn receive(
    body: Body,
    content_length: Option<&str>,
    content_encoding: Option<&str>,
    limits: BodyLimits,
    mem: &mut Reservation,
) -> Result<RawBody, ReceiveError> {
    let limit = limits.max_bytes;
    let encoding = Encoding::parse(content_encoding)?;
    let declared = content_length.and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(len) = declared {
        if len > limit as u64 {
            return Err(ReceiveError::TooLarge { limit });
        }
    }
    let mut body = body;
    let mut buf = BytesMut::new();
    // Room for a declared length (within the limit) is made at once, so a large body is
    // not copied several times into fresh pages as it grows; it is charged only as it
    // arrives, since untouched capacity costs no memory and a client that declares much
    // and sends little must not hold the budget.
    if let Some(len) = declared {
        buf.reserve(len as usize);
    }
    let streamed = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ReceiveError::Body(e.to_string()))?;
            if let Ok(data) = frame.into_data() {
                if buf.len() + data.len() > limit {
                    return Err(ReceiveError::TooLarge { limit });
                }
                mem.charge(data.len()).map_err(LimitError::from)?;
                buf.extend_from_slice(&data);
            }
        }
        Ok(())
    };
    match tokio::time::timeout(limits.timeout, streamed).await {
        Ok(r) => r?,
        Err(_) => return Err(ReceiveError::Timeout(limits.timeout)),
    }
    Ok(RawBody {
        raw: buf.freeze(),
        encoding,
        limit,
    })
}

/// Receive and decode a body in one step (small bodies, tests).
pub async fn read(
    body: Body,
    content_length: Option<&str>,
    content_encoding: Option<&str>,
    limits: BodyLimits,
    mem: &mut Reservation,
) -> Result<Bytes, ReceiveError> {
    receive(body, content_length, content_encoding, limits, mem)
        .await?
        .decode(mem)
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

fn decode_capped(
    mut reader: impl Read,
    limit: usize,
    mem: &mut Reservation,
) -> Result<Bytes, ReceiveError> {
    const STEP: usize = 64 << 10;
    let mut out: Vec<u8> = Vec::new();
    loop {
        // charged before the buffer grows for it
        if out.len() == out.capacity() {
            let more = out
                .capacity()
                .max(STEP)
                .min(limit + 1 - out.len().min(limit));
            mem.charge(more).map_err(LimitError::from)?;
            out.reserve_exact(more);
        }
        let at = out.len();
        let room = out.capacity() - at;
        out.resize(at + room, 0);
        let n = reader
            .read(&mut out[at..])
            .map_err(|e| ReceiveError::Decompress(e.to_string()))?;
        out.truncate(at + n);
        if out.len() > limit {
            return Err(ReceiveError::TooLarge { limit });
        }
        if n == 0 {
            return Ok(Bytes::from(out));
        }
    }
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

    fn limits(max_bytes: usize) -> BodyLimits {
        BodyLimits {
            max_bytes,
            timeout: Duration::from_secs(5),
        }
    }

    async fn read(
        body: Body,
        content_length: Option<&str>,
        content_encoding: Option<&str>,
        limit: usize,
    ) -> Result<Bytes, ReceiveError> {
        let mut mem = Reservation::unlimited();
        super::read(
            body,
            content_length,
            content_encoding,
            limits(limit),
            &mut mem,
        )
        .await
    }

    #[tokio::test]
    async fn decompression_is_charged_before_it_allocates() {
        let budget = crate::budget::MemoryBudget::new(4 << 20, 2 << 20);
        let mut mem = budget.reserve();
        let z = gzip(&vec![7u8; 10 << 20]);
        let err = super::read(
            Body::from(z),
            None,
            Some("gzip"),
            limits(20 << 20),
            &mut mem,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, ReceiveError::Limit(LimitError::Budget(_))),
            "{err}"
        );
        assert!(budget.used() <= 2 << 20);
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
