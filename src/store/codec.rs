//! Span values: chunks of `model::Span`s as the `StoredChunk` protobuf of
//! `proto/storage.proto`, compressed once with zstd, and back.
//!
//! A chunk is the spans of one trace from one batch. Compressing here, on the request's
//! thread and once, is what lets the `spans` family store values as they are: flushes
//! and compactions then copy bytes instead of compressing them again on every rewrite,
//! and memtables and the WAL hold compressed bytes. The key carries the trace id (see
//! `keys`), so spans leave it out.

use std::cell::RefCell;
use std::sync::Arc;

use prost::Message;

use super::keys;
use super::proto;
use crate::model::{KeyValue, Log, Process, RefType, Span, SpanId, SpanRef, TraceId, Value};

/// The first byte of every chunk value: zstd-compressed `StoredChunk`.
const FORMAT_ZSTD_CHUNK: u8 = 1;
/// zstd level 1: most of level 3's ratio on span data at a fraction of its CPU.
const ZSTD_LEVEL: i32 = 1;
/// A chunk's encoded size is read from the value before decompressing; a larger claim
/// is corruption, not something to allocate for.
pub const MAX_CHUNK_RAW: usize = 256 << 20;

thread_local! {
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
}

fn stored(span: &Span) -> proto::StoredSpan {
    proto::StoredSpan {
        span_id: span.span_id.0,
        start_time: span.start_time,
        operation_name: span.operation_name.clone(),
        references: span
            .references
            .iter()
            .map(|r| proto::SpanRef {
                ref_type: match r.ref_type {
                    RefType::ChildOf => proto::RefType::ChildOf as i32,
                    RefType::FollowsFrom => proto::RefType::FollowsFrom as i32,
                },
                trace_id_high: r.trace_id.high(),
                trace_id_low: r.trace_id.low(),
                span_id: r.span_id.0,
            })
            .collect(),
        flags: span.flags,
        duration: span.duration,
        tags: span.tags.iter().map(kv_to_proto).collect(),
        logs: span
            .logs
            .iter()
            .map(|l| proto::Log {
                timestamp: l.timestamp,
                fields: l.fields.iter().map(kv_to_proto).collect(),
            })
            .collect(),
        process: Some(proto::Process {
            service_name: span.process.service_name.clone(),
            tags: span.process.tags.iter().map(kv_to_proto).collect(),
        }),
    }
}

/// Append the value of a chunk of spans (all of one trace) to `out`; `raw` is scratch.
pub fn encode_chunk<'a>(
    spans: impl Iterator<Item = &'a Span>,
    raw: &mut Vec<u8>,
    out: &mut Vec<u8>,
) {
    raw.clear();
    for span in spans {
        prost::encoding::message::encode(1, &stored(span), raw);
    }
    out.push(FORMAT_ZSTD_CHUNK);
    prost::encoding::encode_varint(raw.len() as u64, out);
    let compressed = COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            *c = zstd::bulk::Compressor::new(ZSTD_LEVEL).ok();
        }
        c.as_mut().and_then(|c| c.compress(raw).ok())
    });
    match compressed {
        Some(z) => out.extend_from_slice(&z),
        // Only a failure to allocate zstd's context gets here: store a plain frame.
        None => {
            out.extend_from_slice(&zstd::stream::encode_all(raw.as_slice(), 0).unwrap_or_default())
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("span key has {0} bytes, expected {expected}", expected = keys::SPAN_KEY_LEN)]
    Key(usize),
    #[error("span chunk has unknown format {0}")]
    Format(u8),
    #[error("span chunk claims {0} bytes")]
    Size(u64),
    #[error("span chunk does not decompress: {0}")]
    Zstd(std::io::Error),
    #[error("span chunk does not decode: {0}")]
    Value(#[from] prost::DecodeError),
}

/// The spans of a chunk, from its key and value.
pub fn decode_chunk(key: &[u8], value: &[u8]) -> Result<Vec<Span>, CodecError> {
    let (trace_id, _, _) = keys::parse_span_key(key).ok_or(CodecError::Key(key.len()))?;
    let (&format, mut rest) = value.split_first().ok_or(CodecError::Format(0))?;
    if format != FORMAT_ZSTD_CHUNK {
        return Err(CodecError::Format(format));
    }
    let raw_len = prost::encoding::decode_varint(&mut rest)?;
    if raw_len > MAX_CHUNK_RAW as u64 {
        return Err(CodecError::Size(raw_len));
    }
    let raw = zstd::bulk::decompress(rest, raw_len as usize).map_err(CodecError::Zstd)?;
    let chunk = proto::StoredChunk::decode(raw.as_slice())?;
    Ok(chunk
        .spans
        .into_iter()
        .map(|s| from_stored(trace_id, s))
        .collect())
}

fn from_stored(trace_id: TraceId, s: proto::StoredSpan) -> Span {
    let process = s.process.unwrap_or_default();
    Span {
        trace_id,
        span_id: SpanId(s.span_id),
        operation_name: s.operation_name,
        references: s
            .references
            .into_iter()
            .map(|r| SpanRef {
                ref_type: if r.ref_type == proto::RefType::FollowsFrom as i32 {
                    RefType::FollowsFrom
                } else {
                    RefType::ChildOf
                },
                trace_id: TraceId::from_parts(r.trace_id_high, r.trace_id_low),
                span_id: SpanId(r.span_id),
            })
            .collect(),
        flags: s.flags,
        start_time: s.start_time,
        duration: s.duration,
        tags: s.tags.into_iter().map(kv_from_proto).collect(),
        logs: s
            .logs
            .into_iter()
            .map(|l| Log {
                timestamp: l.timestamp,
                fields: l.fields.into_iter().map(kv_from_proto).collect(),
            })
            .collect(),
        process: Arc::new(Process {
            service_name: process.service_name,
            tags: process.tags.into_iter().map(kv_from_proto).collect(),
        }),
    }
}

fn kv_to_proto(kv: &KeyValue) -> proto::KeyValue {
    use proto::key_value::Value as V;
    proto::KeyValue {
        key: kv.key.clone(),
        value: Some(match &kv.value {
            Value::Str(s) => V::VStr(s.clone()),
            Value::Bool(b) => V::VBool(*b),
            Value::I64(i) => V::VI64(*i),
            Value::F64(f) => V::VF64(*f),
            Value::Binary(b) => V::VBinary(b.clone()),
        }),
    }
}

fn kv_from_proto(kv: proto::KeyValue) -> KeyValue {
    use proto::key_value::Value as V;
    let value = match kv.value {
        Some(V::VStr(s)) => Value::Str(s),
        Some(V::VBool(b)) => Value::Bool(b),
        Some(V::VI64(i)) => Value::I64(i),
        Some(V::VF64(f)) => Value::F64(f),
        Some(V::VBinary(b)) => Value::Binary(b),
        None => Value::Str(String::new()),
    };
    KeyValue { key: kv.key, value }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_everything() {
        let span = Span {
            trace_id: TraceId::from_parts(7, 8),
            span_id: SpanId(9),
            operation_name: "op".into(),
            references: vec![SpanRef {
                ref_type: RefType::FollowsFrom,
                trace_id: TraceId(3),
                span_id: SpanId(4),
            }],
            flags: 3,
            start_time: 1_700_000_000_000_000,
            duration: 1234,
            tags: vec![
                KeyValue::new("s", Value::Str("x".into())),
                KeyValue::new("b", Value::Bool(false)),
                KeyValue::new("i", Value::I64(-5)),
                KeyValue::new("f", Value::F64(0.5)),
                KeyValue::new("bin", Value::Binary(vec![0, 1, 255])),
            ],
            logs: vec![Log {
                timestamp: 5,
                fields: vec![KeyValue::new("event", Value::Str("e".into()))],
            }],
            process: Arc::new(Process {
                service_name: "svc".into(),
                tags: vec![KeyValue::new("host", Value::Str("h".into()))],
            }),
        };
        let mut other = span.clone();
        other.span_id = SpanId(10);
        other.start_time += 1;
        let key = keys::span_key(0, span.trace_id, span.start_time, span.span_id);
        let (mut raw, mut value) = (Vec::new(), Vec::new());
        encode_chunk([&span, &other].into_iter(), &mut raw, &mut value);
        assert!(value.len() < raw.len(), "compressed");
        assert_eq!(decode_chunk(&key, &value).unwrap(), vec![span, other]);
        assert!(decode_chunk(&key[..10], &value).is_err());
        assert!(decode_chunk(&key, &[0xff, 0xff]).is_err());
        assert!(
            decode_chunk(&key, &[1, 0xff, 0xff, 0xff, 0xff, 0x7f]).is_err(),
            "huge claim"
        );
        assert!(decode_chunk(&key, &value[..value.len() - 3]).is_err());
    }
}
