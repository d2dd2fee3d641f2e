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

/// Map a whole export request.
pub fn map_request(req: ExportTraceServiceRequest) -> Mapped {
    let mut out = Mapped::default();
    let mut index = 0usize;
    for rs in req.resource_spans {
        let mut service = None;
        let mut tags = Vec::new();
        for kv in rs.resource.map(|r| r.attributes).unwrap_or_default() {
            match (kv.key.as_str(), &kv.value) {
                (
                    "service.name",
                    Some(AnyValue {
                        value: Some(any_value::Value::StringValue(s)),
                    }),
                ) if service.is_none() => service = Some(s.clone()),
                _ => tags.push(key_value(kv)),
            }
        }
        let process = Arc::new(Process {
            service_name: service.unwrap_or_else(|| UNKNOWN_SERVICE.to_owned()),
            tags,
        });
        for ss in rs.scope_spans {
            let mut scope_tags = Vec::new();
            if let Some(scope) = ss.scope {
                if !scope.name.is_empty() {
                    scope_tags.push(KeyValue::new(keys::OTEL_SCOPE_NAME, Value::Str(scope.name)));
                }
                if !scope.version.is_empty() {
                    scope_tags.push(KeyValue::new(
                        keys::OTEL_SCOPE_VERSION,
                        Value::Str(scope.version),
                    ));
                }
            }
            for span in ss.spans {
                match map_span(span, &process, &scope_tags) {
                    Ok(s) => out.spans.push(s),
                    Err(why) => out.rejected.push(format!("span {index}: {why}")),
                }
                index += 1;
            }
        }
    }
    out
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

fn trace_id(bytes: &[u8], what: &str) -> Result<TraceId, String> {
    let b: [u8; 16] = bytes
        .try_into()
        .map_err(|_| format!("{what} has {} bytes, expected 16", bytes.len()))?;
    Ok(TraceId::from_bytes(b))
}

fn span_id(bytes: &[u8], what: &str) -> Result<SpanId, String> {
    let b: [u8; 8] = bytes
        .try_into()
        .map_err(|_| format!("{what} has {} bytes, expected 8", bytes.len()))?;
    Ok(SpanId(u64::from_be_bytes(b)))
}

fn map_span(s: OtlpSpan, process: &Arc<Process>, scope_tags: &[KeyValue]) -> Result<Span, String> {
    let trace = trace_id(&s.trace_id, "trace id")?;
    let id = span_id(&s.span_id, "span id")?;
    if s.end_time_unix_nano < s.start_time_unix_nano {
        return Err(format!(
            "end time {} is before start time {}",
            s.end_time_unix_nano, s.start_time_unix_nano
        ));
    }
    let mut references = Vec::with_capacity(1 + s.links.len());
    if !s.parent_span_id.is_empty() {
        let parent = span_id(&s.parent_span_id, "parent span id")?;
        if parent.0 != 0 {
            references.push(SpanRef {
                ref_type: RefType::ChildOf,
                trace_id: trace,
                span_id: parent,
            });
        }
    }
    for link in &s.links {
        references.push(SpanRef {
            ref_type: RefType::FollowsFrom,
            trace_id: trace_id(&link.trace_id, "link trace id")?,
            span_id: span_id(&link.span_id, "link span id")?,
        });
    }

    let mut tags: Vec<KeyValue> = Vec::with_capacity(s.attributes.len() + scope_tags.len() + 4);
    tags.extend(s.attributes.into_iter().map(key_value));
    tags.extend_from_slice(scope_tags);
    let kind = SpanKind::from_otlp_number(s.kind as i64).unwrap_or(SpanKind::Unspecified);
    if kind != SpanKind::Unspecified {
        tags.push(KeyValue::new(
            keys::SPAN_KIND,
            Value::Str(kind.as_str().to_owned()),
        ));
    }
    if let Some(status) = s.status {
        match StatusCode::try_from(status.code).unwrap_or(StatusCode::Unset) {
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
        if !status.message.is_empty() {
            tags.push(KeyValue::new(
                keys::OTEL_STATUS_DESCRIPTION,
                Value::Str(status.message),
            ));
        }
    }
    if !s.trace_state.is_empty() {
        tags.push(KeyValue::new(
            keys::W3C_TRACESTATE,
            Value::Str(s.trace_state),
        ));
    }

    let logs = s
        .events
        .into_iter()
        .map(|e| {
            let mut fields = Vec::with_capacity(1 + e.attributes.len());
            fields.push(KeyValue::new("event", Value::Str(e.name)));
            fields.extend(e.attributes.into_iter().map(key_value));
            Log {
                timestamp: e.time_unix_nano / 1000,
                fields,
            }
        })
        .collect();

    Ok(Span {
        trace_id: trace,
        span_id: id,
        operation_name: s.name,
        references,
        // OTLP's W3C flags keep "sampled" in bit 0, like Jaeger's; a span exported at all
        // was sampled, so SDKs that leave flags unset still read as sampled.
        flags: if s.flags & 0xff == 0 {
            1
        } else {
            s.flags & 0xff
        },
        start_time: s.start_time_unix_nano / 1000,
        duration: (s.end_time_unix_nano - s.start_time_unix_nano) / 1000,
        tags,
        logs,
        process: Arc::clone(process),
    })
}

fn key_value(kv: OtlpKeyValue) -> KeyValue {
    KeyValue {
        key: kv.key,
        value: kv
            .value
            .and_then(|v| v.value)
            .map(value)
            .unwrap_or(Value::Str(String::new())),
    }
}

/// Scalars map to their own type; arrays and key-value lists become their JSON text, as
/// Jaeger stores them.
fn value(v: any_value::Value) -> Value {
    match v {
        any_value::Value::StringValue(s) => Value::Str(s),
        any_value::Value::BoolValue(b) => Value::Bool(b),
        any_value::Value::IntValue(i) => Value::I64(i),
        any_value::Value::DoubleValue(f) => Value::F64(f),
        any_value::Value::BytesValue(b) => Value::Binary(b),
        other => Value::Str(any_json(&other).to_string()),
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
