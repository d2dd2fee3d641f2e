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
    /// zstd's context and a buffer for its output, kept per thread.
    static COMPRESSOR: RefCell<(Option<zstd::bulk::Compressor<'static>>, Vec<u8>)> =
        const { RefCell::new((None, Vec::new())) };
}

// The `StoredSpan` wire format written straight from the model: building the prost
// struct first would copy every string of every span once more. Decoding uses prost,
// so the round-trip test checks this writer against the schema.
mod wire {
    use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};

    use crate::model::{KeyValue, Span, Value};

    fn key_len(field: u32) -> usize {
        encoded_len_varint(u64::from(field << 3))
    }

    fn ld_len(field: u32, len: usize) -> usize {
        key_len(field) + encoded_len_varint(len as u64) + len
    }

    fn put_ld(field: u32, bytes: &[u8], out: &mut Vec<u8>) {
        encode_key(field, WireType::LengthDelimited, out);
        encode_varint(bytes.len() as u64, out);
        out.extend_from_slice(bytes);
    }

    fn put_varint(field: u32, v: u64, out: &mut Vec<u8>) {
        if v != 0 {
            encode_key(field, WireType::Varint, out);
            encode_varint(v, out);
        }
    }

    fn put_fixed64(field: u32, v: u64, out: &mut Vec<u8>) {
        if v != 0 {
            encode_key(field, WireType::SixtyFourBit, out);
            out.extend_from_slice(&v.to_le_bytes());
        }
    }

    fn str_len(field: u32, s: &str) -> usize {
        if s.is_empty() {
            0
        } else {
            ld_len(field, s.len())
        }
    }

    fn put_str(field: u32, s: &str, out: &mut Vec<u8>) {
        if !s.is_empty() {
            put_ld(field, s.as_bytes(), out);
        }
    }

    /// `KeyValue { key = 1; oneof value { v_str = 2; v_bool = 3; v_i64 = 4; v_f64 = 5;
    /// v_binary = 6 } }`: a set oneof member is written even when it is the default.
    fn kv_len(kv: &KeyValue) -> usize {
        str_len(1, &kv.key)
            + match &kv.value {
                Value::Str(s) => ld_len(2, s.len()),
                Value::Bool(_) => 2,
                Value::I64(i) => 1 + encoded_len_varint(*i as u64),
                Value::F64(_) => 9,
                Value::Binary(b) => ld_len(6, b.len()),
            }
    }

    fn put_kv(field: u32, kv: &KeyValue, out: &mut Vec<u8>) {
        encode_key(field, WireType::LengthDelimited, out);
        encode_varint(kv_len(kv) as u64, out);
        put_str(1, &kv.key, out);
        match &kv.value {
            Value::Str(s) => put_ld(2, s.as_bytes(), out),
            Value::Bool(b) => {
                encode_key(3, WireType::Varint, out);
                out.push(*b as u8);
            }
            Value::I64(i) => {
                encode_key(4, WireType::Varint, out);
                encode_varint(*i as u64, out);
            }
            Value::F64(f) => {
                encode_key(5, WireType::SixtyFourBit, out);
                out.extend_from_slice(&f.to_bits().to_le_bytes());
            }
            Value::Binary(b) => put_ld(6, b, out),
        }
    }

    fn kvs_len(field: u32, kvs: &[KeyValue]) -> usize {
        kvs.iter().map(|kv| ld_len(field, kv_len(kv))).sum()
    }

    fn varint_field_len(field: u32, v: u64) -> usize {
        if v == 0 {
            0
        } else {
            key_len(field) + encoded_len_varint(v)
        }
    }

    fn fixed64_field_len(field: u32, v: u64) -> usize {
        if v == 0 {
            0
        } else {
            key_len(field) + 8
        }
    }

    /// Append `span` as field 1 (`StoredChunk.spans`) to `out`.
    pub fn put_span(span: &Span, out: &mut Vec<u8>) {
        let refs = |r: &crate::model::SpanRef| {
            let kind = match r.ref_type {
                crate::model::RefType::ChildOf => 0u64,
                crate::model::RefType::FollowsFrom => 1,
            };
            (kind, r.trace_id.high(), r.trace_id.low(), r.span_id.0)
        };
        let ref_len = |r: &crate::model::SpanRef| {
            let (kind, hi, lo, id) = refs(r);
            varint_field_len(1, kind)
                + fixed64_field_len(2, hi)
                + fixed64_field_len(3, lo)
                + fixed64_field_len(4, id)
        };
        let log_len =
            |l: &crate::model::Log| varint_field_len(1, l.timestamp) + kvs_len(2, &l.fields);
        let process_len = str_len(1, &span.process.service_name) + kvs_len(2, &span.process.tags);
        let len = str_len(1, &span.operation_name)
            + span
                .references
                .iter()
                .map(|r| ld_len(2, ref_len(r)))
                .sum::<usize>()
            + varint_field_len(3, u64::from(span.flags))
            + varint_field_len(4, span.duration)
            + kvs_len(5, &span.tags)
            + span
                .logs
                .iter()
                .map(|l| ld_len(6, log_len(l)))
                .sum::<usize>()
            + ld_len(7, process_len)
            + fixed64_field_len(8, span.span_id.0)
            + varint_field_len(9, span.start_time);

        encode_key(1, WireType::LengthDelimited, out);
        encode_varint(len as u64, out);
        let start = out.len();
        put_str(1, &span.operation_name, out);
        for r in &span.references {
            encode_key(2, WireType::LengthDelimited, out);
            encode_varint(ref_len(r) as u64, out);
            let (kind, hi, lo, id) = refs(r);
            put_varint(1, kind, out);
            put_fixed64(2, hi, out);
            put_fixed64(3, lo, out);
            put_fixed64(4, id, out);
        }
        put_varint(3, u64::from(span.flags), out);
        put_varint(4, span.duration, out);
        for kv in &span.tags {
            put_kv(5, kv, out);
        }
        for l in &span.logs {
            encode_key(6, WireType::LengthDelimited, out);
            encode_varint(log_len(l) as u64, out);
            put_varint(1, l.timestamp, out);
            for kv in &l.fields {
                put_kv(2, kv, out);
            }
        }
        encode_key(7, WireType::LengthDelimited, out);
        encode_varint(process_len as u64, out);
        put_str(1, &span.process.service_name, out);
        for kv in &span.process.tags {
            put_kv(2, kv, out);
        }
        put_fixed64(8, span.span_id.0, out);
        put_varint(9, span.start_time, out);
        debug_assert_eq!(out.len() - start, len, "StoredSpan length");
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
        wire::put_span(span, raw);
    }
    out.push(FORMAT_ZSTD_CHUNK);
    prost::encoding::encode_varint(raw.len() as u64, out);
    let done = COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        let (compressor, scratch) = &mut *c;
        if compressor.is_none() {
            *compressor = zstd::bulk::Compressor::new(ZSTD_LEVEL).ok();
        }
        let compressor = compressor.as_mut()?;
        scratch.clear();
        scratch.reserve(zstd::zstd_safe::compress_bound(raw.len()));
        compressor.compress_to_buffer(raw, scratch).ok()?;
        out.extend_from_slice(scratch);
        Some(())
    });
    if done.is_none() {
        // Only a failure to allocate zstd's context gets here: store a plain frame.
        out.extend_from_slice(&zstd::stream::encode_all(raw.as_slice(), 0).unwrap_or_default());
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
                KeyValue::new("", Value::Str(String::new())),
                KeyValue::new("zero", Value::I64(0)),
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
        let reencoded = proto::StoredChunk::decode(raw.as_slice())
            .unwrap()
            .encode_to_vec();
        assert_eq!(
            reencoded, raw,
            "written exactly as prost writes a StoredChunk"
        );
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
