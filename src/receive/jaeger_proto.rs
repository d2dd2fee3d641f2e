//! Jaeger's protobuf model (`jaeger.api_v2`, what `CollectorService/PostSpans` carries)
//! decoded and mapped to the model.
//!
//! The request is walked on the wire first (see `proto_fields`): its spans and their
//! references, tags, logs and fields are counted, checked against the request's caps and
//! charged before prost allocates. The mapping is field for field (the model is Jaeger's);
//! a span's own process wins over the batch's, as Jaeger's collector has it. It does not
//! validate spans for storage (the pipeline does) nor speak gRPC (see `server::grpc`).

use std::sync::Arc;

use thiserror::Error;

use super::limits::{LimitError, Limits};
use super::proto_fields::Fields;
use crate::budget::Reservation;
use crate::model::{KeyValue, Log, Process, RefType, Span, SpanId, SpanRef, TraceId, Value};

#[allow(clippy::all)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/jaeger.api_v2.rs"));
}

#[derive(Debug, Error)]
pub enum JaegerProtoError {
    #[error("not a PostSpansRequest: {0}")]
    Wire(String),
    #[error("span {index}: {message}")]
    Span { index: usize, message: String },
    #[error(transparent)]
    Limit(#[from] LimitError),
}

/// What one counted element (a reference, tag, log or log field) may cost in memory once
/// decoded and mapped.
const ELEMENT_COST: usize = 160;

/// Decode a `PostSpansRequest` within `limits`, charging `mem` before decoding.
pub fn decode_post_spans(
    body: &[u8],
    limits: &Limits,
    mem: &mut Reservation,
) -> Result<Vec<Span>, JaegerProtoError> {
    use prost::Message;
    let (spans, elements) = count(body).map_err(JaegerProtoError::Wire)?;
    limits.spans(spans)?;
    mem.charge_each(
        spans,
        std::mem::size_of::<pb::Span>() + std::mem::size_of::<Span>(),
    )
    .and_then(|_| mem.charge_each(elements, ELEMENT_COST))
    .and_then(|_| mem.charge(body.len()))
    .map_err(LimitError::from)?;
    let req =
        pb::PostSpansRequest::decode(body).map_err(|e| JaegerProtoError::Wire(e.to_string()))?;
    let batch = req.batch.unwrap_or_default();
    let batch_process = batch.process.map(|p| Arc::new(process(p)));
    let mut out = Vec::with_capacity(batch.spans.len());
    for (index, s) in batch.spans.into_iter().enumerate() {
        let at = |message: String| JaegerProtoError::Span { index, message };
        limits.tags("Span.tags", s.tags.len())?;
        limits.logs(s.logs.len())?;
        let process = match (s.process.clone(), &batch_process) {
            (Some(p), _) => Arc::new(process(p)),
            (None, Some(p)) => Arc::clone(p),
            (None, None) => return Err(at("no process on the span or its batch".into())),
        };
        out.push(span(s, process).map_err(at)?);
    }
    Ok(out)
}

/// Spans, and the elements inside them, counted on the wire.
fn count(body: &[u8]) -> Result<(usize, usize), String> {
    let (mut spans, mut elements) = (0usize, 0usize);
    // occurrences of field `of` in `msg`
    let count_fields = |msg: &[u8], of: u32| -> Result<usize, String> {
        let mut n = 0;
        for (f, v) in Fields::new(msg) {
            v?;
            n += usize::from(f == of);
        }
        Ok(n)
    };
    for (f, batch) in Fields::new(body) {
        let batch = batch?;
        if f != 1 {
            continue;
        }
        for (f, v) in Fields::new(batch) {
            let v = v?;
            match f {
                1 => {
                    spans += 1;
                    for (f, v) in Fields::new(v) {
                        let v = v?;
                        match f {
                            // references, tags, warnings
                            4 | 8 | 12 => elements += 1,
                            // a log and its fields
                            9 => elements += 1 + count_fields(v, 2)?,
                            10 => elements += count_fields(v, 2)?,
                            _ => {}
                        }
                    }
                }
                2 => elements += count_fields(v, 2)?,
                _ => {}
            }
        }
    }
    Ok((spans, elements))
}

fn trace_id(b: &[u8]) -> Result<TraceId, String> {
    <[u8; 16]>::try_from(b)
        .map(TraceId::from_bytes)
        .map_err(|_| format!("trace_id is {} bytes; Jaeger's are 16", b.len()))
}

fn span_id(what: &str, b: &[u8]) -> Result<SpanId, String> {
    <[u8; 8]>::try_from(b)
        .map(|a| SpanId(u64::from_be_bytes(a)))
        .map_err(|_| format!("{what} is {} bytes; Jaeger's are 8", b.len()))
}

/// Microseconds since the epoch; times before it (or unset) are 0, for the pipeline to
/// judge.
fn micros(t: Option<prost_types::Timestamp>) -> u64 {
    t.map(|t| {
        let us = i128::from(t.seconds) * 1_000_000 + i128::from(t.nanos) / 1000;
        u64::try_from(us).unwrap_or(0)
    })
    .unwrap_or(0)
}

fn duration_micros(d: Option<prost_types::Duration>) -> u64 {
    d.map(|d| {
        let us = i128::from(d.seconds) * 1_000_000 + i128::from(d.nanos) / 1000;
        u64::try_from(us).unwrap_or(0)
    })
    .unwrap_or(0)
}

fn value(kv: pb::KeyValue) -> KeyValue {
    let value = match pb::ValueType::try_from(kv.v_type) {
        Ok(pb::ValueType::Bool) => Value::Bool(kv.v_bool),
        Ok(pb::ValueType::Int64) => Value::I64(kv.v_int64),
        Ok(pb::ValueType::Float64) => Value::F64(kv.v_float64),
        Ok(pb::ValueType::Binary) => Value::Binary(kv.v_binary),
        // STRING, and a type this version does not know, read as the string
        _ => Value::Str(kv.v_str.into()),
    };
    KeyValue {
        key: kv.key.into(),
        value,
    }
}

fn process(p: pb::Process) -> Process {
    Process {
        service_name: p.service_name,
        tags: p.tags.into_iter().map(value).collect(),
    }
}

fn span(s: pb::Span, process: Arc<Process>) -> Result<Span, String> {
    let trace = trace_id(&s.trace_id)?;
    let references = s
        .references
        .into_iter()
        .map(|r| {
            Ok(SpanRef {
                ref_type: match pb::SpanRefType::try_from(r.ref_type) {
                    Ok(pb::SpanRefType::FollowsFrom) => RefType::FollowsFrom,
                    _ => RefType::ChildOf,
                },
                trace_id: trace_id(&r.trace_id)?,
                span_id: span_id("reference span_id", &r.span_id)?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Span {
        trace_id: trace,
        span_id: span_id("span_id", &s.span_id)?,
        operation_name: s.operation_name,
        references,
        flags: s.flags,
        start_time: micros(s.start_time),
        duration: duration_micros(s.duration),
        tags: s.tags.into_iter().map(value).collect(),
        logs: s
            .logs
            .into_iter()
            .map(|l| Log {
                timestamp: micros(l.timestamp),
                fields: l.fields.into_iter().map(value).collect(),
            })
            .collect(),
        process,
    })
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    fn kv(key: &str, v_type: pb::ValueType) -> pb::KeyValue {
        pb::KeyValue {
            key: key.into(),
            v_type: v_type as i32,
            v_str: "s".into(),
            v_bool: true,
            v_int64: 7,
            v_float64: 0.5,
            v_binary: vec![1, 2],
        }
    }

    fn request(spans: Vec<pb::Span>) -> Vec<u8> {
        pb::PostSpansRequest {
            batch: Some(pb::Batch {
                spans,
                process: Some(pb::Process {
                    service_name: "batch-svc".into(),
                    tags: vec![kv("host", pb::ValueType::String)],
                }),
            }),
        }
        .encode_to_vec()
    }

    fn one_span() -> pb::Span {
        let mut trace = vec![0u8; 16];
        trace[7] = 1;
        trace[15] = 2;
        pb::Span {
            trace_id: trace.clone(),
            span_id: vec![0, 0, 0, 0, 0, 0, 0, 3],
            operation_name: "op".into(),
            references: vec![pb::SpanRef {
                trace_id: trace,
                span_id: vec![0, 0, 0, 0, 0, 0, 0, 4],
                ref_type: pb::SpanRefType::FollowsFrom as i32,
            }],
            flags: 1,
            start_time: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 123_456_789,
            }),
            duration: Some(prost_types::Duration {
                seconds: 2,
                nanos: 5_000,
            }),
            tags: vec![
                kv("b", pb::ValueType::Bool),
                kv("i", pb::ValueType::Int64),
                kv("f", pb::ValueType::Float64),
                kv("x", pb::ValueType::Binary),
            ],
            logs: vec![pb::Log {
                timestamp: Some(prost_types::Timestamp {
                    seconds: 1_700_000_001,
                    nanos: 0,
                }),
                fields: vec![kv("event", pb::ValueType::String)],
            }],
            ..Default::default()
        }
    }

    fn decode(body: &[u8], limits: &Limits) -> Result<Vec<Span>, JaegerProtoError> {
        decode_post_spans(body, limits, &mut Reservation::unlimited())
    }

    #[test]
    fn maps_field_for_field() {
        let spans = decode(&request(vec![one_span()]), &Limits::default()).unwrap();
        let s = &spans[0];
        assert_eq!(s.trace_id, TraceId::from_parts(1, 2));
        assert_eq!(s.span_id, SpanId(3));
        assert_eq!(s.references[0].ref_type, RefType::FollowsFrom);
        assert_eq!(s.references[0].span_id, SpanId(4));
        assert_eq!(s.start_time, 1_700_000_000_123_456);
        assert_eq!(s.duration, 2_000_005);
        let values: Vec<&Value> = s.tags.iter().map(|t| &t.value).collect();
        assert_eq!(
            values,
            [
                &Value::Bool(true),
                &Value::I64(7),
                &Value::F64(0.5),
                &Value::Binary(vec![1, 2])
            ]
        );
        assert_eq!(s.logs[0].timestamp, 1_700_000_001_000_000);
        assert_eq!(s.logs[0].fields[0].value, Value::Str("s".into()));
        assert_eq!(s.process.service_name, "batch-svc");
    }

    #[test]
    fn a_span_process_wins_and_one_is_needed() {
        let mut own = one_span();
        own.process = Some(pb::Process {
            service_name: "own".into(),
            tags: vec![],
        });
        let spans = decode(&request(vec![one_span(), own]), &Limits::default()).unwrap();
        assert_eq!(spans[0].process.service_name, "batch-svc");
        assert_eq!(spans[1].process.service_name, "own");
        let bare = pb::PostSpansRequest {
            batch: Some(pb::Batch {
                spans: vec![one_span()],
                process: None,
            }),
        }
        .encode_to_vec();
        let e = decode(&bare, &Limits::default()).unwrap_err();
        assert!(e.to_string().contains("span 0: no process"), "{e}");
    }

    #[test]
    fn bad_ids_truncations_and_floods_are_errors() {
        let mut short = one_span();
        short.trace_id = vec![1; 8];
        let e = decode(&request(vec![short]), &Limits::default()).unwrap_err();
        assert!(e.to_string().contains("trace_id is 8 bytes"), "{e}");
        let good = request(vec![one_span()]);
        for end in 1..good.len() {
            assert!(decode(&good[..end], &Limits::default()).is_err(), "{end}");
        }
        // 50,000 empty spans in 100 KB: refused by count before any is decoded
        let mut batch = Vec::new();
        for _ in 0..50_000 {
            batch.extend_from_slice(&[0x0a, 0x00]);
        }
        let mut body = vec![0x0a];
        prost::encoding::encode_varint(batch.len() as u64, &mut body);
        body.extend_from_slice(&batch);
        let limits = Limits {
            max_spans: 10_000,
            ..Limits::default()
        };
        assert!(matches!(
            decode(&body, &limits),
            Err(JaegerProtoError::Limit(_))
        ));
    }
}
