//! OTLP traces → model: the one mapping every OTLP path (HTTP protobuf, HTTP JSON, gRPC)
//! goes through, so a span reads back the same whichever way it came.
//!
//! The mapping is Jaeger's (DESIGN section 3): `service.name` names the process and the
//! other resource attributes become process tags; scope, kind, status and trace state
//! become `otel.scope.*`, `span.kind`, `otel.status_*`/`error` and `w3c.tracestate` tags;
//! events become logs with an `event` field; the parent is the first CHILD_OF reference and
//! links are FOLLOWS_FROM references. A span that cannot be mapped (bad id length, end
//! before start) is refused alone, with its reason, so the rest of the request is kept
//! (OTLP's partial success).

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue as OtlpKeyValue};
use opentelemetry_proto::tonic::trace::v1::{status::StatusCode, Span as OtlpSpan};

use crate::model::{
    keys, KeyValue, Log, Process, RefType, Span, SpanId, SpanKind, SpanRef, TraceId, Value,
};

/// Service name of spans whose resource has none, as OpenTelemetry SDKs default it.
pub const UNKNOWN_SERVICE: &str = "unknown_service";

/// Spans mapped from one request, and why the others were refused.
#[derive(Debug, Default)]
pub struct Mapped {
    pub spans: Vec<Span>,
    pub rejected: Vec<String>,
}

/// Map a whole export request (decoded by prost: OTLP/JSON; protobuf bodies take
/// `otlp_wire`, which builds the same parts straight from the bytes).
pub fn map_request(req: ExportTraceServiceRequest) -> Mapped {
    let mut out = Mapped::default();
    let mut index = 0usize;
    for rs in req.resource_spans {
        let attributes = rs.resource.map(|r| r.attributes).unwrap_or_default();
        let process = process(attributes.into_iter().map(|kv| {
            let is_string = matches!(
                kv.value,
                Some(AnyValue {
                    value: Some(any_value::Value::StringValue(_)),
                })
            );
            (key_value(kv), is_string)
        }));
        for ss in rs.scope_spans {
            let scope = ss
                .scope
                .map(|s| (s.name, s.version, s.attributes))
                .unwrap_or_default();
            let scope_tags = scope_tags(scope.0, scope.1);
            let process = scope_process(&process, scope.2.into_iter().map(key_value).collect());
            for span in ss.spans {
                out.push(&mut index, span_of(parts(span), &process, &scope_tags));
            }
        }
    }
    out
}

impl Mapped {
    /// Keep a mapped span, or the reason the `index`th span of the request was refused.
    pub(super) fn push(&mut self, index: &mut usize, span: Result<Span, String>) {
        match span {
            Ok(s) => self.spans.push(s),
            Err(why) => self.rejected.push(format!("span {index}: {why}")),
        }
        *index += 1;
    }
}

/// A resource's process: the first string `service.name` attribute names it (as
/// OpenTelemetry SDKs do, `unknown_service` without one); every other attribute, in
/// order, is a process tag. `is_string` says whether the attribute's value was a string.
pub(super) fn process(attributes: impl Iterator<Item = (KeyValue, bool)>) -> Arc<Process> {
    let mut service = None;
    let mut tags = Vec::new();
    for (kv, is_string) in attributes {
        match (kv.key.as_str(), kv.value) {
            ("service.name", Value::Str(s)) if is_string && service.is_none() => {
                service = Some(s.into_string())
            }
            (_, value) => tags.push(KeyValue { key: kv.key, value }),
        }
    }
    Arc::new(Process {
        service_name: service.unwrap_or_else(|| UNKNOWN_SERVICE.to_owned()),
        tags,
    })
}

/// The tags an instrumentation scope adds to each of its spans.
pub(super) fn scope_tags(name: String, version: String) -> Vec<KeyValue> {
    let mut tags = Vec::new();
    if !name.is_empty() {
        tags.push(KeyValue::new(
            keys::OTEL_SCOPE_NAME,
            Value::Str(name.into()),
        ));
    }
    if !version.is_empty() {
        tags.push(KeyValue::new(
            keys::OTEL_SCOPE_VERSION,
            Value::Str(version.into()),
        ));
    }
    tags
}

/// The process of a scope's spans: the resource's own, or, when the scope has attributes,
/// a copy with them as `otel.scope.attributes.KEY` tags, shared by the scope's spans (so
/// they are stored and searched with the resource's, never copied per span).
pub(super) fn scope_process(resource: &Arc<Process>, attributes: Vec<KeyValue>) -> Arc<Process> {
    if attributes.is_empty() {
        return Arc::clone(resource);
    }
    let mut p = Process::clone(resource);
    p.tags.reserve(attributes.len());
    for kv in attributes {
        p.tags.push(KeyValue {
            key: format!("{}{}", keys::SCOPE_ATTRIBUTE_PREFIX, kv.key).into(),
            value: kv.value,
        });
    }
    Arc::new(p)
}

/// At most this many refusal reasons are spelled out in a partial-success message.
const MAX_REASONS: usize = 5;

/// OTLP's answer to an export: partial success naming the refused spans (those the
/// mapping refused, then those the pipeline refused), or plain success.
pub fn response(
    mapped: Vec<String>,
    refused: &[crate::pipeline::Invalid],
) -> opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse {
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTracePartialSuccess, ExportTraceServiceResponse,
    };
    let mut reasons = mapped;
    reasons.extend(refused.iter().map(|r| r.to_string()));
    if reasons.is_empty() {
        return ExportTraceServiceResponse {
            partial_success: None,
        };
    }
    let mut message = reasons
        .iter()
        .take(MAX_REASONS)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if reasons.len() > MAX_REASONS {
        message.push_str(&format!("; and {} more", reasons.len() - MAX_REASONS));
    }
    ExportTraceServiceResponse {
        partial_success: Some(ExportTracePartialSuccess {
            rejected_spans: reasons.len() as i64,
            error_message: message,
        }),
    }
}

pub(super) fn trace_id(bytes: &[u8], what: &str) -> Result<TraceId, String> {
    let b: [u8; 16] = bytes
        .try_into()
        .map_err(|_| format!("{what} has {} bytes, expected 16", bytes.len()))?;
    Ok(TraceId::from_bytes(b))
}

pub(super) fn span_id(bytes: &[u8], what: &str) -> Result<SpanId, String> {
    let b: [u8; 8] = bytes
        .try_into()
        .map_err(|_| format!("{what} has {} bytes, expected 8", bytes.len()))?;
    Ok(SpanId(u64::from_be_bytes(b)))
}

/// One OTLP span's fields, decoded but not yet mapped: what both decoders produce.
/// Ids are checked when decoded, their errors kept for [`span_of`] to report in order.
#[derive(Debug, Default)]
pub(super) struct SpanParts {
    pub trace: Option<Result<TraceId, String>>,
    pub id: Option<Result<SpanId, String>>,
    /// `None` when the parent span id is empty (a root span).
    pub parent: Option<Result<SpanId, String>>,
    pub links: Vec<Result<(TraceId, SpanId), String>>,
    /// Attributes of the links, by the link's index.
    pub link_attributes: Vec<(usize, KeyValue)>,
    pub name: String,
    pub kind: i32,
    pub start: u64,
    pub end: u64,
    pub flags: u32,
    pub attributes: Vec<KeyValue>,
    pub events: Vec<Log>,
    /// (code, message) when the span has a status.
    pub status: Option<(i32, String)>,
    pub trace_state: String,
}

fn parts(s: OtlpSpan) -> SpanParts {
    SpanParts {
        trace: Some(trace_id(&s.trace_id, "trace id")),
        id: Some(span_id(&s.span_id, "span id")),
        parent: (!s.parent_span_id.is_empty())
            .then(|| span_id(&s.parent_span_id, "parent span id")),
        links: s
            .links
            .iter()
            .map(|l| link(&l.trace_id, &l.span_id))
            .collect(),
        link_attributes: s
            .links
            .into_iter()
            .enumerate()
            .flat_map(|(i, l)| l.attributes.into_iter().map(move |kv| (i, key_value(kv))))
            .collect(),
        name: s.name,
        kind: s.kind,
        start: s.start_time_unix_nano,
        end: s.end_time_unix_nano,
        flags: s.flags,
        attributes: s.attributes.into_iter().map(key_value).collect(),
        events: s
            .events
            .into_iter()
            .map(|e| {
                log(
                    e.time_unix_nano,
                    e.name,
                    e.attributes.into_iter().map(key_value),
                )
            })
            .collect(),
        status: s.status.map(|st| (st.code, st.message)),
        trace_state: s.trace_state,
    }
}

pub(super) fn link(trace: &[u8], span: &[u8]) -> Result<(TraceId, SpanId), String> {
    Ok((
        trace_id(trace, "link trace id")?,
        span_id(span, "link span id")?,
    ))
}

/// An event as a log: its name under `event`, then its attributes.
pub(super) fn log(
    time_nanos: u64,
    name: String,
    attributes: impl Iterator<Item = KeyValue>,
) -> Log {
    let mut fields = Vec::with_capacity(1 + attributes.size_hint().0);
    fields.push(KeyValue::new("event", Value::Str(name.into())));
    fields.extend(attributes);
    Log {
        timestamp: time_nanos / 1000,
        fields,
    }
}

/// The span, or why it is refused: the first bad id (trace, span, parent, links in
/// order), or an end before the start.
pub(super) fn span_of(
    p: SpanParts,
    process: &Arc<Process>,
    scope_tags: &[KeyValue],
) -> Result<Span, String> {
    let trace = p.trace.unwrap_or_else(|| trace_id(&[], "trace id"))?;
    let id = p.id.unwrap_or_else(|| span_id(&[], "span id"))?;
    if p.end < p.start {
        return Err(format!(
            "end time {} is before start time {}",
            p.end, p.start
        ));
    }
    let mut references = Vec::with_capacity(1 + p.links.len());
    if let Some(parent) = p.parent {
        let parent = parent?;
        if parent.0 != 0 {
            references.push(SpanRef {
                ref_type: RefType::ChildOf,
                trace_id: trace,
                span_id: parent,
            });
        }
    }
    for link in p.links {
        let (trace_id, span_id) = link?;
        references.push(SpanRef {
            ref_type: RefType::FollowsFrom,
            trace_id,
            span_id,
        });
    }

    let mut tags = p.attributes;
    tags.reserve(scope_tags.len() + p.link_attributes.len() + 4);
    tags.extend_from_slice(scope_tags);
    for (i, kv) in p.link_attributes {
        tags.push(KeyValue {
            key: format!("{}{i}.{}", keys::LINK_ATTRIBUTE_PREFIX, kv.key).into(),
            value: kv.value,
        });
    }
    let kind = SpanKind::from_otlp_number(p.kind as i64).unwrap_or(SpanKind::Unspecified);
    if kind != SpanKind::Unspecified {
        tags.push(KeyValue::new(
            keys::SPAN_KIND,
            Value::Str(kind.as_str().into()),
        ));
    }
    if let Some((code, message)) = p.status {
        match StatusCode::try_from(code).unwrap_or(StatusCode::Unset) {
            StatusCode::Error => {
                tags.push(KeyValue::new(
                    keys::OTEL_STATUS_CODE,
                    Value::Str("ERROR".into()),
                ));
                tags.push(KeyValue::new(keys::ERROR, Value::Bool(true)));
            }
            StatusCode::Ok => tags.push(KeyValue::new(
                keys::OTEL_STATUS_CODE,
                Value::Str("OK".into()),
            )),
            StatusCode::Unset => {}
        }
        if !message.is_empty() {
            tags.push(KeyValue::new(
                keys::OTEL_STATUS_DESCRIPTION,
                Value::Str(message.into()),
            ));
        }
    }
    if !p.trace_state.is_empty() {
        tags.push(KeyValue::new(
            keys::W3C_TRACESTATE,
            Value::Str(p.trace_state.into()),
        ));
    }

    Ok(Span {
        trace_id: trace,
        span_id: id,
        operation_name: p.name,
        references,
        // OTLP's W3C flags keep "sampled" in bit 0, like Jaeger's; a span exported at all
        // was sampled, so SDKs that leave flags unset still read as sampled.
        flags: if p.flags & 0xff == 0 {
            1
        } else {
            p.flags & 0xff
        },
        start_time: p.start / 1000,
        duration: (p.end - p.start) / 1000,
        tags,
        logs: p.events,
        process: Arc::clone(process),
    })
}

pub(super) fn key_value(kv: OtlpKeyValue) -> KeyValue {
    KeyValue {
        key: kv.key.into(),
        value: kv
            .value
            .and_then(|v| v.value)
            .map(value)
            .unwrap_or(Value::Str(Default::default())),
    }
}

/// Scalars map to their own type; arrays and key-value lists become their JSON text, as
/// Jaeger stores them.
pub(super) fn value(v: any_value::Value) -> Value {
    match v {
        any_value::Value::StringValue(s) => Value::Str(s.into()),
        any_value::Value::BoolValue(b) => Value::Bool(b),
        any_value::Value::IntValue(i) => Value::I64(i),
        any_value::Value::DoubleValue(f) => Value::F64(f),
        any_value::Value::BytesValue(b) => Value::Binary(b),
        other => Value::Str(any_json(&other).to_string().into()),
    }
}

fn any_json(v: &any_value::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        any_value::Value::StringValue(s) => J::from(s.as_str()),
        any_value::Value::BoolValue(b) => J::from(*b),
        any_value::Value::IntValue(i) => J::from(*i),
        any_value::Value::DoubleValue(f) => J::from(*f),
        any_value::Value::BytesValue(b) => {
            use base64::Engine;
            J::from(base64::engine::general_purpose::STANDARD.encode(b))
        }
        any_value::Value::ArrayValue(a) => J::Array(
            a.values
                .iter()
                .map(|x| x.value.as_ref().map(any_json).unwrap_or(J::Null))
                .collect(),
        ),
        any_value::Value::KvlistValue(l) => J::Object(
            l.values
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        kv.value
                            .as_ref()
                            .and_then(|v| v.value.as_ref())
                            .map(any_json)
                            .unwrap_or(J::Null),
                    )
                })
                .collect(),
        ),
        _ => J::Null,
    }
}
