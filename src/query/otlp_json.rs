//! Model → OTLP/JSON (`TracesData`), the body of Jaeger's `/api/v3` trace answers.
//!
//! The inverse of `receive::otlp`'s mapping: the process becomes the resource
//! (`service.name` plus its tags), `otel.scope.*` tags the scope, `span.kind` the kind,
//! `otel.status_*` (or Jaeger's `error=true`) the status, `w3c.tracestate` the trace
//! state, a log's `event` field the event name, the first CHILD_OF reference the parent and
//! the other references links. Written in OTLP/JSON's own rules: hex ids, 64-bit integers
//! as decimal strings, enums as integers, lowerCamelCase names.

use std::sync::Arc;

use base64::Engine;
use serde_json::{json, Map, Value as J};

use crate::model::{keys, KeyValue, Process, RefType, Span, StatusCode, Value};

fn any_value(v: &Value) -> J {
    match v {
        Value::Str(s) => json!({"stringValue": s}),
        Value::Bool(b) => json!({"boolValue": b}),
        Value::I64(i) => json!({"intValue": i.to_string()}),
        Value::F64(f) if f.is_finite() => json!({"doubleValue": f}),
        Value::F64(f) => {
            json!({"doubleValue": if f.is_nan() { "NaN" } else if *f > 0.0 { "Infinity" } else { "-Infinity" }})
        }
        Value::Binary(b) => {
            json!({"bytesValue": base64::engine::general_purpose::STANDARD.encode(b)})
        }
    }
}

fn attributes<'a>(kvs: impl Iterator<Item = &'a KeyValue>) -> Vec<J> {
    kvs.map(|kv| json!({"key": kv.key, "value": any_value(&kv.value)}))
        .collect()
}

/// Tags that the OTLP form carries in its own fields rather than as attributes.
fn is_structural(kv: &KeyValue, status: StatusCode) -> bool {
    if kv.key.starts_with(keys::LINK_ATTRIBUTE_PREFIX) && keys::search_key(&kv.key) != kv.key {
        return true;
    }
    match kv.key.as_str() {
        keys::SPAN_KIND | keys::OTEL_STATUS_CODE | keys::OTEL_STATUS_DESCRIPTION => true,
        keys::OTEL_SCOPE_NAME | keys::OTEL_SCOPE_VERSION | keys::W3C_TRACESTATE => true,
        keys::ERROR => status == StatusCode::Error && matches!(kv.value, Value::Bool(true)),
        _ => false,
    }
}

fn str_tag<'a>(s: &'a Span, key: &str) -> &'a str {
    match s.tag(key) {
        Some(Value::Str(v)) => v,
        _ => "",
    }
}

fn span_json(s: &Span) -> J {
    let status = s.status();
    let mut parent = String::new();
    let mut links = Vec::new();
    for r in &s.references {
        if parent.is_empty() && r.ref_type == RefType::ChildOf && r.trace_id == s.trace_id {
            parent = r.span_id.to_string();
        } else {
            // the link's attributes, kept as `otel.link.N.KEY` tags
            let prefix = format!("{}{}.", keys::LINK_ATTRIBUTE_PREFIX, links.len());
            let own = s.tags.iter().filter_map(|kv| {
                kv.key.strip_prefix(prefix.as_str()).map(|k| KeyValue {
                    key: k.into(),
                    value: kv.value.clone(),
                })
            });
            let own: Vec<KeyValue> = own.collect();
            links.push(json!({
                "traceId": format!("{:032x}", r.trace_id.0),
                "spanId": r.span_id.to_string(),
                "attributes": attributes(own.iter()),
            }));
        }
    }
    let events: Vec<J> = s
        .logs
        .iter()
        .map(|l| {
            let name = l
                .fields
                .iter()
                .find(|f| f.key == "event")
                .map(|f| f.value.to_search_string())
                .unwrap_or_default();
            json!({
                "timeUnixNano": (l.timestamp.saturating_mul(1000)).to_string(),
                "name": name,
                "attributes": attributes(l.fields.iter().filter(|f| f.key != "event")),
            })
        })
        .collect();
    let mut status_json = Map::new();
    let code = match status.code {
        StatusCode::Unset => 0,
        StatusCode::Ok => 1,
        StatusCode::Error => 2,
    };
    if code != 0 {
        status_json.insert("code".into(), json!(code));
    }
    if let Some(m) = status.message {
        status_json.insert("message".into(), json!(m));
    }
    let mut out = json!({
        "traceId": format!("{:032x}", s.trace_id.0),
        "spanId": s.span_id.to_string(),
        "flags": s.flags,
        "name": s.operation_name,
        "kind": s.kind().otlp_number(),
        "startTimeUnixNano": s.start_time.saturating_mul(1000).to_string(),
        "endTimeUnixNano": s.start_time.saturating_add(s.duration).saturating_mul(1000).to_string(),
        "attributes": attributes(s.tags.iter().filter(|kv| !is_structural(kv, status.code))),
        "events": events,
        "links": links,
        "status": status_json,
    });
    if let Some(obj) = out.as_object_mut() {
        if !parent.is_empty() {
            obj.insert("parentSpanId".into(), json!(parent));
        }
        let trace_state = str_tag(s, keys::W3C_TRACESTATE);
        if !trace_state.is_empty() {
            obj.insert("traceState".into(), json!(trace_state));
        }
    }
    out
}

/// Spans (of one or many traces) as one `TracesData`: a resource per distinct process,
/// a scope per distinct scope name and version, spans in the order given.
pub fn traces_data<'a>(spans: impl IntoIterator<Item = &'a Span>) -> J {
    // (process, [(scope name, scope version, spans)])
    type Scopes<'a> = Vec<(&'a str, &'a str, Vec<J>)>;
    let mut resources: Vec<(&Arc<Process>, Scopes)> = Vec::new();
    for s in spans {
        let ri = match resources
            .iter()
            .position(|(p, _)| Arc::ptr_eq(p, &s.process) || **p == s.process)
        {
            Some(i) => i,
            None => {
                resources.push((&s.process, Vec::new()));
                resources.len() - 1
            }
        };
        let (name, version) = (
            str_tag(s, keys::OTEL_SCOPE_NAME),
            str_tag(s, keys::OTEL_SCOPE_VERSION),
        );
        let scopes = &mut resources[ri].1;
        let si = match scopes
            .iter()
            .position(|(n, v, _)| *n == name && *v == version)
        {
            Some(i) => i,
            None => {
                scopes.push((name, version, Vec::new()));
                scopes.len() - 1
            }
        };
        scopes[si].2.push(span_json(s));
    }
    let resource_spans: Vec<J> = resources
        .into_iter()
        .map(|(p, scopes)| {
            let mut attrs =
                vec![json!({"key": "service.name", "value": {"stringValue": p.service_name}})];
            // a scope's attributes ride on the process its spans share
            let (scope_kvs, resource_kvs): (Vec<&KeyValue>, Vec<&KeyValue>) = p
                .tags
                .iter()
                .partition(|kv| kv.key.starts_with(keys::SCOPE_ATTRIBUTE_PREFIX));
            attrs.extend(attributes(resource_kvs.into_iter()));
            let scope_attrs: Vec<KeyValue> = scope_kvs
                .into_iter()
                .map(|kv| KeyValue {
                    key: keys::search_key(&kv.key).into(),
                    value: kv.value.clone(),
                })
                .collect();
            json!({
                "resource": {"attributes": attrs},
                "scopeSpans": scopes.into_iter().map(|(name, version, spans)| json!({
                    "scope": {"name": name, "version": version, "attributes": attributes(scope_attrs.iter())},
                    "spans": spans,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "resourceSpans": resource_spans })
}

/// `FindTraceSummariesResponse` in proto3 JSON (`/api/v3/trace-summaries`): a 32-digit
/// trace id, nanosecond times as decimal strings, counts as numbers.
pub fn trace_summaries(list: &[super::summary::TraceSummary]) -> J {
    let summaries: Vec<J> = list
        .iter()
        .map(|s| {
            let id = crate::model::TraceId::from_hex(&s.trace_id).unwrap_or_default();
            let start_ns = u128::from(s.start_time) * 1000;
            let end_ns = u128::from(s.start_time.saturating_add(s.duration)) * 1000;
            json!({
                "traceId": format!("{:032x}", id.0),
                "rootServiceName": s.root_service,
                "rootOperationName": s.root_operation,
                "minStartTimeUnixNano": start_ns.to_string(),
                "maxEndTimeUnixNano": end_ns.to_string(),
                "spanCount": s.span_count,
                "errorSpanCount": s.error_count,
                "orphanSpanCount": s.orphan_count,
                "services": s.per_service.iter().map(|c| json!({
                    "name": c.name,
                    "spanCount": c.spans,
                    "errorSpanCount": c.errors,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "summaries": summaries })
}
