//! Span values: `model::Span` to the `StoredSpan` protobuf of `proto/storage.proto` and back.
//!
//! The key carries trace id, start time and span id (see `keys`), so they are not in
//! the value. Decoding rebuilds the span from both.

use std::sync::Arc;

use prost::Message;

use super::keys;
use super::proto;
use crate::model::{KeyValue, Log, Process, RefType, Span, SpanId, SpanRef, TraceId, Value};

/// Encode the value of a span into `out` (cleared first).
pub fn encode_span(span: &Span, out: &mut Vec<u8>) {
    let stored = proto::StoredSpan {
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
    };
    out.clear();
    out.reserve(stored.encoded_len());
    // Encoding into a Vec only fails when it lacks capacity, which reserve rules out.
    let _ = stored.encode(out);
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("span key has {0} bytes, expected {expected}", expected = keys::SPAN_KEY_LEN)]
    Key(usize),
    #[error("span value does not decode: {0}")]
    Value(#[from] prost::DecodeError),
}

/// Rebuild a span from its key and value.
pub fn decode_span(key: &[u8], value: &[u8]) -> Result<Span, CodecError> {
    let (trace_id, start_time, span_id) =
        keys::parse_span_key(key).ok_or(CodecError::Key(key.len()))?;
    let s = proto::StoredSpan::decode(value)?;
    let process = s.process.unwrap_or_default();
    Ok(Span {
        trace_id,
        span_id,
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
        start_time,
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
    })
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
        let key = keys::span_key(0, span.trace_id, span.start_time, span.span_id);
        let mut value = Vec::new();
        encode_span(&span, &mut value);
        assert_eq!(decode_span(&key, &value).unwrap(), span);
        assert!(decode_span(&key[..10], &value).is_err());
        assert!(decode_span(&key, &[0xff, 0xff]).is_err());
    }
}
