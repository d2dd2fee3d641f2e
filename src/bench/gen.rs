//! Realistic request bodies for the benchmark: batches of span trees (depth 4, 20 tags a
//! span, many services and operations) in Jaeger thrift or OTLP protobuf, encoded once as
//! templates. Each send stamps a fresh trace-id high half into the template at offsets
//! found by a marker, and moves every start and end time forward to the time of sending
//! (so spans arrive spread over time, as live traffic does), so millions of distinct
//! spans cost a memcpy, not an encode.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue as OtlpKv};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span as OtlpSpan};
use prost::Message;

use crate::model::{KeyValue, Process, RefType, Span, SpanId, SpanRef, TraceId, Value};

/// The high half of every template trace id; replaced per send.
const MARKER: u64 = 0xF1C7_4ACE_B3AC_0DE5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    JaegerThrift,
    OtlpProtobuf,
}

/// What the generated spans look like; the flags of both `fctrace bench` and `fctrace load`.
#[derive(Debug, Clone, clap::Args)]
pub struct Shape {
    /// Spans a request (a batch).
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// Tags a span.
    #[arg(long, default_value_t = 20)]
    pub tags: usize,
    #[arg(long, default_value_t = 50)]
    pub services: usize,
    #[arg(long, default_value_t = 500)]
    pub operations: usize,
    /// Levels of each trace's tree (fan-out 2).
    #[arg(long, default_value_t = 4)]
    pub depth: usize,
}

/// An encoded body and where to stamp a batch number and the time.
pub struct Template {
    pub body: Vec<u8>,
    offsets: Vec<usize>,
    /// Where times are: thrift's big-endian microseconds or OTLP's little-endian nanos.
    times: Vec<(usize, TimeUnit)>,
    /// The time the spans were made at (µs).
    base_us: u64,
    pub spans: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimeUnit {
    MicrosBe,
    NanosLe,
}

impl Template {
    /// The body with every trace id made unique to `n` and every time moved forward by
    /// as much as `now_us` is past the template's making.
    pub fn stamp(&self, n: u64, now_us: u64) -> Vec<u8> {
        let mut b = self.body.clone();
        let v = n.to_be_bytes();
        for &o in &self.offsets {
            b[o..o + 8].copy_from_slice(&v);
        }
        let shift = now_us.saturating_sub(self.base_us);
        for &(o, unit) in &self.times {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[o..o + 8]);
            let new = match unit {
                TimeUnit::MicrosBe => u64::from_be_bytes(w).wrapping_add(shift).to_be_bytes(),
                TimeUnit::NanosLe => u64::from_le_bytes(w)
                    .wrapping_add(shift * 1000)
                    .to_le_bytes(),
            };
            b[o..o + 8].copy_from_slice(&new);
        }
        b
    }
}

/// Offsets of the times in `body`: a field header (`thrift i64 field 8`, or OTLP's
/// fixed64 start and end fields) followed by a value within an hour after `base_us`.
fn offsets_of_times(format: Format, body: &[u8], base_us: u64) -> Vec<(usize, TimeUnit)> {
    let hour = 3_600_000_000u64;
    let mut out = Vec::new();
    let mut i = 0;
    while i + 11 <= body.len() {
        let found = match format {
            Format::JaegerThrift if body[i..i + 3] == [10, 0, 8] => {
                let v = u64::from_be_bytes(body[i + 3..i + 11].try_into().unwrap_or_default());
                (v >= base_us && v < base_us + hour).then_some((i + 3, TimeUnit::MicrosBe))
            }
            Format::OtlpProtobuf if body[i] == 0x39 || body[i] == 0x41 => {
                let v = u64::from_le_bytes(body[i + 1..i + 9].try_into().unwrap_or_default());
                (v >= base_us * 1000 && v < (base_us + hour) * 1000)
                    .then_some((i + 1, TimeUnit::NanosLe))
            }
            _ => None,
        };
        match found {
            Some(t) => {
                out.push(t);
                i = t.0 + 8;
            }
            None => i += 1,
        }
    }
    out
}

/// Spans for template `t`: trees of depth `shape.depth` (root, then fan-out of 2 down the
/// levels), one service per batch, operations spread over `shape.operations`.
pub fn spans(shape: &Shape, t: usize, now_us: u64) -> Vec<Span> {
    let service = format!("bench-svc-{}", t % shape.services.max(1));
    let process = Arc::new(Process {
        service_name: service,
        tags: vec![
            KeyValue::new(
                "hostname",
                Value::Str(format!("bench-host-{}", t % 7).into()),
            ),
            KeyValue::new(
                "ip",
                Value::Str(format!("10.0.{}.{}", t % 3, t % 250).into()),
            ),
        ],
    });
    let per_trace = (1..shape.depth).fold(1, |acc, d| acc + (1 << d)).max(1);
    let mut out = Vec::with_capacity(shape.batch);
    let mut trace_no = 0u64;
    while out.len() < shape.batch {
        trace_no += 1;
        let trace = TraceId::from_parts(MARKER, (t as u64) << 32 | trace_no);
        let mut level: Vec<SpanId> = Vec::new();
        let mut id = 1u64;
        'trace: for d in 0..shape.depth {
            let parents: Vec<SpanId> = if d == 0 {
                vec![SpanId(0)]
            } else {
                level.clone()
            };
            level.clear();
            for p in parents {
                for _ in 0..if d == 0 { 1 } else { 2 } {
                    if out.len() >= shape.batch || id as usize > per_trace {
                        break 'trace;
                    }
                    let sid = SpanId((trace_no << 16) | id);
                    id += 1;
                    let op = (t * 31 + out.len()) % shape.operations.max(1);
                    let mut tags = Vec::with_capacity(shape.tags);
                    for k in 0..shape.tags {
                        tags.push(KeyValue::new(
                            format!("bench.tag.{k}"),
                            match k % 4 {
                                0 => Value::Str(format!("value-{}", (out.len() + k) % 50).into()),
                                1 => Value::I64((out.len() * k % 1000) as i64),
                                2 => Value::Bool(k % 3 == 0),
                                _ => Value::Str(format!("/api/items/{}", out.len() % 100).into()),
                            },
                        ));
                    }
                    out.push(Span {
                        trace_id: trace,
                        span_id: sid,
                        operation_name: format!("op-{op}"),
                        references: if p.0 == 0 {
                            vec![]
                        } else {
                            vec![SpanRef {
                                ref_type: RefType::ChildOf,
                                trace_id: trace,
                                span_id: p,
                            }]
                        },
                        flags: 1,
                        start_time: now_us + d as u64 * 100,
                        duration: 1000 + (out.len() as u64 * 37) % 50_000,
                        tags,
                        logs: vec![],
                        process: Arc::clone(&process),
                    });
                    level.push(sid);
                }
            }
        }
    }
    out
}

fn offsets_of_marker(body: &[u8]) -> Vec<usize> {
    let m = MARKER.to_be_bytes();
    body.windows(8)
        .enumerate()
        .filter(|(_, w)| *w == m)
        .map(|(i, _)| i)
        .collect()
}

/// Encode `spans` (made at `base_us`, as [`spans`] does) as a template.
pub fn template(format: Format, spans: &[Span], base_us: u64) -> Template {
    let body = match format {
        Format::JaegerThrift => thrift_batch(spans),
        Format::OtlpProtobuf => otlp_request(spans).encode_to_vec(),
    };
    Template {
        offsets: offsets_of_marker(&body),
        times: offsets_of_times(format, &body, base_us),
        base_us,
        body,
        spans: spans.len(),
    }
}

/// A Jaeger thrift binary `Batch` of spans that share the first span's process: what a
/// Jaeger client sends. Parents go in `parentSpanId`; other references are not written.
pub fn thrift_batch(spans: &[Span]) -> Vec<u8> {
    fn field(b: &mut Vec<u8>, ty: u8, id: i16) {
        b.push(ty);
        b.extend_from_slice(&id.to_be_bytes());
    }
    fn string(b: &mut Vec<u8>, id: i16, s: &str) {
        field(b, 11, id);
        b.extend_from_slice(&(s.len() as i32).to_be_bytes());
        b.extend_from_slice(s.as_bytes());
    }
    fn i64f(b: &mut Vec<u8>, id: i16, v: i64) {
        field(b, 10, id);
        b.extend_from_slice(&v.to_be_bytes());
    }
    fn tags(b: &mut Vec<u8>, id: i16, kvs: &[KeyValue]) {
        field(b, 15, id);
        b.push(12);
        b.extend_from_slice(&(kvs.len() as i32).to_be_bytes());
        for kv in kvs {
            string(b, 1, &kv.key);
            let ty: i32 = match &kv.value {
                Value::Str(_) => 0,
                Value::F64(_) => 1,
                Value::Bool(_) => 2,
                Value::I64(_) => 3,
                Value::Binary(_) => 4,
            };
            field(b, 8, 2);
            b.extend_from_slice(&ty.to_be_bytes());
            match &kv.value {
                Value::Str(s) => string(b, 3, s),
                Value::F64(f) => {
                    field(b, 4, 4);
                    b.extend_from_slice(&f.to_be_bytes());
                }
                Value::Bool(x) => {
                    field(b, 2, 5);
                    b.push(*x as u8);
                }
                Value::I64(i) => i64f(b, 6, *i),
                Value::Binary(x) => {
                    field(b, 11, 7);
                    b.extend_from_slice(&(x.len() as i32).to_be_bytes());
                    b.extend_from_slice(x);
                }
            }
            b.push(0);
        }
    }
    let mut b = Vec::with_capacity(spans.len() * 800);
    let Some(first) = spans.first() else {
        return b;
    };
    field(&mut b, 12, 1);
    string(&mut b, 1, &first.process.service_name);
    tags(&mut b, 2, &first.process.tags);
    b.push(0);
    field(&mut b, 15, 2);
    b.push(12);
    b.extend_from_slice(&(spans.len() as i32).to_be_bytes());
    for s in spans {
        i64f(&mut b, 1, s.trace_id.low() as i64);
        i64f(&mut b, 2, s.trace_id.high() as i64);
        i64f(&mut b, 3, s.span_id.0 as i64);
        i64f(
            &mut b,
            4,
            s.parent_span_id().map(|p| p.0).unwrap_or(0) as i64,
        );
        string(&mut b, 5, &s.operation_name);
        field(&mut b, 8, 7);
        b.extend_from_slice(&(s.flags as i32).to_be_bytes());
        i64f(&mut b, 8, s.start_time as i64);
        i64f(&mut b, 9, s.duration as i64);
        tags(&mut b, 10, &s.tags);
        if !s.logs.is_empty() {
            field(&mut b, 15, 11);
            b.push(12);
            b.extend_from_slice(&(s.logs.len() as i32).to_be_bytes());
            for l in &s.logs {
                i64f(&mut b, 1, l.timestamp as i64);
                tags(&mut b, 2, &l.fields);
                b.push(0);
            }
        }
        b.push(0);
    }
    b.push(0);
    b
}

fn otlp_value(v: &Value) -> AnyValue {
    AnyValue {
        value: Some(match v {
            Value::Str(s) => any_value::Value::StringValue(s.to_string()),
            Value::Bool(b) => any_value::Value::BoolValue(*b),
            Value::I64(i) => any_value::Value::IntValue(*i),
            Value::F64(f) => any_value::Value::DoubleValue(*f),
            Value::Binary(b) => any_value::Value::BytesValue(b.clone()),
        }),
    }
}

fn otlp_kvs(kvs: &[KeyValue]) -> Vec<OtlpKv> {
    kvs.iter()
        .map(|kv| OtlpKv {
            key: kv.key.to_string(),
            value: Some(otlp_value(&kv.value)),
            ..Default::default()
        })
        .collect()
}

pub fn otlp_request(spans: &[Span]) -> ExportTraceServiceRequest {
    let Some(first) = spans.first() else {
        return ExportTraceServiceRequest::default();
    };
    let mut attrs = vec![OtlpKv {
        key: "service.name".into(),
        value: Some(otlp_value(&Value::Str(
            first.process.service_name.clone().into(),
        ))),
        ..Default::default()
    }];
    attrs.extend(otlp_kvs(&first.process.tags));
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: attrs,
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: None,
                spans: spans
                    .iter()
                    .map(|s| OtlpSpan {
                        trace_id: s.trace_id.to_bytes().to_vec(),
                        span_id: s.span_id.0.to_be_bytes().to_vec(),
                        parent_span_id: s
                            .parent_span_id()
                            .map(|p| p.0.to_be_bytes().to_vec())
                            .unwrap_or_default(),
                        name: s.operation_name.clone(),
                        kind: 2,
                        start_time_unix_nano: s.start_time * 1000,
                        end_time_unix_nano: (s.start_time + s.duration) * 1000,
                        attributes: otlp_kvs(&s.tags),
                        ..Default::default()
                    })
                    .collect(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receive::jaeger_thrift::{decode_batch, ThriftProtocol};

    #[test]
    fn templates_decode_and_stamp_unique_traces() {
        let shape = Shape {
            batch: 100,
            tags: 20,
            services: 50,
            operations: 500,
            depth: 4,
        };
        let base = 1_700_000_000_000_000;
        let spans = spans(&shape, 3, base);
        assert_eq!(spans.len(), 100);
        for format in [Format::JaegerThrift, Format::OtlpProtobuf] {
            let t = template(format, &spans, base);
            assert_eq!(t.offsets.len(), 100, "{format:?}: one trace id per span");
            let body = t.stamp(42, base + 5_000_000);
            let decoded = match format {
                Format::JaegerThrift => decode_batch(
                    &body,
                    ThriftProtocol::Binary,
                    &Default::default(),
                    &mut crate::budget::Reservation::unlimited(),
                )
                .unwrap(),
                Format::OtlpProtobuf => {
                    crate::receive::otlp::map_request(
                        ExportTraceServiceRequest::decode(&body[..]).unwrap(),
                    )
                    .spans
                }
            };
            assert_eq!(decoded.len(), 100);
            assert!(decoded
                .iter()
                .all(|s| s.trace_id.high() == 42 && s.tags.len() >= 20));
            for (d, s) in decoded.iter().zip(&spans) {
                assert_eq!(d.start_time, s.start_time + 5_000_000, "{format:?}");
                assert_eq!(d.duration, s.duration, "{format:?}");
            }
            assert!(decoded.iter().any(|s| s.parent_span_id().is_some()));
        }
    }
}
