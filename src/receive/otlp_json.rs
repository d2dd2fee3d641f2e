//! OTLP/JSON request bodies → the OTLP protobuf types, accepting what real producers send.
//!
//! OTLP/JSON is proto3 JSON with exceptions: trace and span ids are hex, not base64.
//! Producers differ in the rest, so this reader takes field names in lowerCamelCase or
//! snake_case, 64-bit integers as numbers or strings, enums as integers or as their names
//! (`SPAN_KIND_SERVER`, `STATUS_CODE_ERROR`), every `AnyValue` kind, and ignores unknown
//! fields. Structural errors (a field of the wrong JSON type, an id that is not hex) refuse
//! the request with the path of the offending field; span-level problems (an id of the
//! wrong length) are left to the mapping in `otlp`, which refuses that span alone.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span::{Event, Link},
    ResourceSpans, ScopeSpans, Span, Status,
};
use serde_json::{Map, Value as J};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum JsonError {
    #[error("invalid JSON: {0}")]
    Syntax(String),
    #[error("{path}: {why}")]
    Field { path: String, why: String },
}

fn bad(path: &str, why: impl Into<String>) -> JsonError {
    JsonError::Field {
        path: path.to_owned(),
        why: why.into(),
    }
}

/// Nested AnyValues (arrays in arrays…) deeper than this are refused.
const MAX_DEPTH: usize = 32;

pub fn decode(body: &[u8]) -> Result<ExportTraceServiceRequest, JsonError> {
    let root: J = serde_json::from_slice(body).map_err(|e| JsonError::Syntax(e.to_string()))?;
    let root = object(&root, "$")?;
    let mut req = ExportTraceServiceRequest::default();
    for (i, rs) in array(root, "$", &["resourceSpans", "resource_spans"])?
        .iter()
        .enumerate()
    {
        req.resource_spans
            .push(resource_spans(rs, &format!("resourceSpans[{i}]"))?);
    }
    Ok(req)
}

fn object<'a>(v: &'a J, path: &str) -> Result<&'a Map<String, J>, JsonError> {
    v.as_object().ok_or_else(|| bad(path, "expected an object"))
}

/// The first present, non-null field among the given spellings.
fn get<'a>(obj: &'a Map<String, J>, names: &[&str]) -> Option<&'a J> {
    names
        .iter()
        .find_map(|n| obj.get(*n))
        .filter(|v| !v.is_null())
}

fn array<'a>(obj: &'a Map<String, J>, path: &str, names: &[&str]) -> Result<&'a [J], JsonError> {
    match get(obj, names) {
        None => Ok(&[]),
        Some(J::Array(a)) => Ok(a),
        Some(_) => Err(bad(&format!("{path}.{}", names[0]), "expected an array")),
    }
}

fn string(obj: &Map<String, J>, path: &str, names: &[&str]) -> Result<String, JsonError> {
    match get(obj, names) {
        None => Ok(String::new()),
        Some(J::String(s)) => Ok(s.clone()),
        Some(_) => Err(bad(&format!("{path}.{}", names[0]), "expected a string")),
    }
}

fn u64_field(obj: &Map<String, J>, path: &str, names: &[&str]) -> Result<u64, JsonError> {
    match get(obj, names) {
        None => Ok(0),
        Some(J::Number(n)) => n.as_u64().ok_or_else(|| {
            bad(
                &format!("{path}.{}", names[0]),
                "expected a non-negative integer",
            )
        }),
        Some(J::String(s)) => s.parse().map_err(|_| {
            bad(
                &format!("{path}.{}", names[0]),
                "expected a non-negative integer",
            )
        }),
        Some(_) => Err(bad(&format!("{path}.{}", names[0]), "expected an integer")),
    }
}

fn i64_value(v: &J, path: &str) -> Result<i64, JsonError> {
    match v {
        J::Number(n) => n
            .as_i64()
            .ok_or_else(|| bad(path, "expected a 64-bit integer")),
        J::String(s) => s
            .parse()
            .map_err(|_| bad(path, "expected a 64-bit integer")),
        _ => Err(bad(path, "expected an integer")),
    }
}

fn f64_value(v: &J, path: &str) -> Result<f64, JsonError> {
    match v {
        J::Number(n) => n.as_f64().ok_or_else(|| bad(path, "expected a number")),
        J::String(s) => match s.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            _ => s.parse().map_err(|_| bad(path, "expected a number")),
        },
        _ => Err(bad(path, "expected a number")),
    }
}

/// An enum given as its number or its name.
fn enum_field(
    obj: &Map<String, J>,
    path: &str,
    names: &[&str],
    by_name: &[(&str, i32)],
) -> Result<i32, JsonError> {
    let p = || format!("{path}.{}", names[0]);
    match get(obj, names) {
        None => Ok(0),
        Some(J::Number(n)) => n
            .as_i64()
            .and_then(|v| i32::try_from(v).ok())
            .ok_or_else(|| bad(&p(), "expected an enum number")),
        Some(J::String(s)) => by_name
            .iter()
            .find(|(name, _)| name == s)
            .map(|(_, v)| *v)
            .ok_or_else(|| bad(&p(), format!("unknown enum value {s:?}"))),
        Some(_) => Err(bad(&p(), "expected an enum number or name")),
    }
}

fn hex_id(obj: &Map<String, J>, path: &str, names: &[&str]) -> Result<Vec<u8>, JsonError> {
    let s = string(obj, path, names)?;
    let p = || format!("{path}.{}", names[0]);
    if s.len() % 2 != 0 {
        return Err(bad(&p(), "expected an even number of hex digits"));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| bad(&p(), "expected hex digits"))
        })
        .collect()
}

fn resource_spans(v: &J, path: &str) -> Result<ResourceSpans, JsonError> {
    let obj = object(v, path)?;
    let resource = match get(obj, &["resource"]) {
        None => None,
        Some(r) => {
            let r = object(r, &format!("{path}.resource"))?;
            Some(Resource {
                attributes: attributes(r, &format!("{path}.resource"))?,
                ..Default::default()
            })
        }
    };
    let mut scope_spans = Vec::new();
    // instrumentationLibrarySpans: what SDKs sent before OTLP 0.15; same shape.
    for names in [
        &["scopeSpans", "scope_spans"][..],
        &[
            "instrumentationLibrarySpans",
            "instrumentation_library_spans",
        ][..],
    ] {
        for (i, ss) in array(obj, path, names)?.iter().enumerate() {
            scope_spans.push(scope(ss, &format!("{path}.{}[{i}]", names[0]))?);
        }
    }
    Ok(ResourceSpans {
        resource,
        scope_spans,
        schema_url: string(obj, path, &["schemaUrl", "schema_url"])?,
    })
}

fn scope(v: &J, path: &str) -> Result<ScopeSpans, JsonError> {
    let obj = object(v, path)?;
    let scope = match get(
        obj,
        &["scope", "instrumentationLibrary", "instrumentation_library"],
    ) {
        None => None,
        Some(s) => {
            let sp = format!("{path}.scope");
            let s = object(s, &sp)?;
            Some(InstrumentationScope {
                name: string(s, &sp, &["name"])?,
                version: string(s, &sp, &["version"])?,
                attributes: attributes(s, &sp)?,
                ..Default::default()
            })
        }
    };
    let mut spans = Vec::new();
    for (i, s) in array(obj, path, &["spans"])?.iter().enumerate() {
        spans.push(span(s, &format!("{path}.spans[{i}]"))?);
    }
    Ok(ScopeSpans {
        scope,
        spans,
        schema_url: string(obj, path, &["schemaUrl", "schema_url"])?,
    })
}

const KINDS: &[(&str, i32)] = &[
    ("SPAN_KIND_UNSPECIFIED", 0),
    ("SPAN_KIND_INTERNAL", 1),
    ("SPAN_KIND_SERVER", 2),
    ("SPAN_KIND_CLIENT", 3),
    ("SPAN_KIND_PRODUCER", 4),
    ("SPAN_KIND_CONSUMER", 5),
];

const STATUS_CODES: &[(&str, i32)] = &[
    ("STATUS_CODE_UNSET", 0),
    ("STATUS_CODE_OK", 1),
    ("STATUS_CODE_ERROR", 2),
];

fn span(v: &J, path: &str) -> Result<Span, JsonError> {
    let obj = object(v, path)?;
    let mut events = Vec::new();
    for (i, e) in array(obj, path, &["events"])?.iter().enumerate() {
        let ep = format!("{path}.events[{i}]");
        let e = object(e, &ep)?;
        events.push(Event {
            time_unix_nano: u64_field(e, &ep, &["timeUnixNano", "time_unix_nano"])?,
            name: string(e, &ep, &["name"])?,
            attributes: attributes(e, &ep)?,
            dropped_attributes_count: 0,
        });
    }
    let mut links = Vec::new();
    for (i, l) in array(obj, path, &["links"])?.iter().enumerate() {
        let lp = format!("{path}.links[{i}]");
        let l = object(l, &lp)?;
        links.push(Link {
            trace_id: hex_id(l, &lp, &["traceId", "trace_id"])?,
            span_id: hex_id(l, &lp, &["spanId", "span_id"])?,
            trace_state: string(l, &lp, &["traceState", "trace_state"])?,
            attributes: attributes(l, &lp)?,
            dropped_attributes_count: 0,
            flags: u64_field(l, &lp, &["flags"])? as u32,
        });
    }
    let status = match get(obj, &["status"]) {
        None => None,
        Some(s) => {
            let sp = format!("{path}.status");
            let s = object(s, &sp)?;
            Some(Status {
                message: string(s, &sp, &["message"])?,
                code: enum_field(s, &sp, &["code"], STATUS_CODES)?,
            })
        }
    };
    Ok(Span {
        trace_id: hex_id(obj, path, &["traceId", "trace_id"])?,
        span_id: hex_id(obj, path, &["spanId", "span_id"])?,
        trace_state: string(obj, path, &["traceState", "trace_state"])?,
        parent_span_id: hex_id(obj, path, &["parentSpanId", "parent_span_id"])?,
        flags: u64_field(obj, path, &["flags"])? as u32,
        name: string(obj, path, &["name"])?,
        kind: enum_field(obj, path, &["kind"], KINDS)?,
        start_time_unix_nano: u64_field(obj, path, &["startTimeUnixNano", "start_time_unix_nano"])?,
        end_time_unix_nano: u64_field(obj, path, &["endTimeUnixNano", "end_time_unix_nano"])?,
        attributes: attributes(obj, path)?,
        dropped_attributes_count: 0,
        events,
        dropped_events_count: 0,
        links,
        dropped_links_count: 0,
        status,
    })
}

fn attributes(obj: &Map<String, J>, path: &str) -> Result<Vec<KeyValue>, JsonError> {
    key_values(
        array(obj, path, &["attributes"])?,
        &format!("{path}.attributes"),
        0,
    )
}

fn key_values(list: &[J], path: &str, depth: usize) -> Result<Vec<KeyValue>, JsonError> {
    list.iter()
        .enumerate()
        .map(|(i, kv)| {
            let p = format!("{path}[{i}]");
            let o = object(kv, &p)?;
            Ok(KeyValue {
                key: string(o, &p, &["key"])?,
                value: match get(o, &["value"]) {
                    None => None,
                    Some(v) => Some(any_value(v, &format!("{p}.value"), depth)?),
                },
                ..Default::default()
            })
        })
        .collect()
}

fn any_value(v: &J, path: &str, depth: usize) -> Result<AnyValue, JsonError> {
    if depth > MAX_DEPTH {
        return Err(bad(
            path,
            format!("values nested deeper than {MAX_DEPTH} levels"),
        ));
    }
    let o = object(v, path)?;
    let value = if let Some(s) = get(o, &["stringValue", "string_value"]) {
        match s {
            J::String(s) => Some(any_value::Value::StringValue(s.clone())),
            _ => return Err(bad(path, "stringValue must be a string")),
        }
    } else if let Some(b) = get(o, &["boolValue", "bool_value"]) {
        match b {
            J::Bool(b) => Some(any_value::Value::BoolValue(*b)),
            _ => return Err(bad(path, "boolValue must be true or false")),
        }
    } else if let Some(i) = get(o, &["intValue", "int_value"]) {
        Some(any_value::Value::IntValue(i64_value(
            i,
            &format!("{path}.intValue"),
        )?))
    } else if let Some(d) = get(o, &["doubleValue", "double_value"]) {
        Some(any_value::Value::DoubleValue(f64_value(
            d,
            &format!("{path}.doubleValue"),
        )?))
    } else if let Some(b) = get(o, &["bytesValue", "bytes_value"]) {
        use base64::Engine;
        let s = b
            .as_str()
            .ok_or_else(|| bad(path, "bytesValue must be a base64 string"))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|_| bad(path, "bytesValue must be a base64 string"))?;
        Some(any_value::Value::BytesValue(bytes))
    } else if let Some(a) = get(o, &["arrayValue", "array_value"]) {
        let ap = format!("{path}.arrayValue");
        let a = object(a, &ap)?;
        let values = array(a, &ap, &["values"])?
            .iter()
            .enumerate()
            .map(|(i, x)| any_value(x, &format!("{ap}.values[{i}]"), depth + 1))
            .collect::<Result<_, _>>()?;
        Some(any_value::Value::ArrayValue(ArrayValue { values }))
    } else if let Some(l) = get(o, &["kvlistValue", "kvlist_value"]) {
        let lp = format!("{path}.kvlistValue");
        let l = object(l, &lp)?;
        let values = key_values(
            array(l, &lp, &["values"])?,
            &format!("{lp}.values"),
            depth + 1,
        )?;
        Some(any_value::Value::KvlistValue(KeyValueList { values }))
    } else {
        None
    };
    Ok(AnyValue { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_both_spellings_strings_for_ints_and_enum_names() {
        let body = br#"{"resource_spans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"s"}}]},
          "scopeSpans":[{"scope":{"name":"sc","version":"1"},"spans":[{
            "traceId":"0000000000000000124ed43254b54966","span_id":"1a2b3c4d5e6f7081",
            "name":"op","kind":"SPAN_KIND_SERVER","startTimeUnixNano":"1000","end_time_unix_nano":3000,
            "status":{"code":"STATUS_CODE_ERROR","message":"m"},"unknownField":{"x":1},
            "attributes":[{"key":"i","value":{"intValue":"7"}},{"key":"d","value":{"doubleValue":0.5}},
              {"key":"b","value":{"boolValue":true}},{"key":"y","value":{"bytesValue":"AAE="}},
              {"key":"a","value":{"arrayValue":{"values":[{"stringValue":"x"},{"intValue":1}]}}},
              {"key":"k","value":{"kvlistValue":{"values":[{"key":"z","value":{"boolValue":false}}]}}}]
          }]}]}]}"#;
        let req = decode(body).unwrap();
        let s = &req.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(s.trace_id.len(), 16);
        assert_eq!(s.kind, 2);
        assert_eq!((s.start_time_unix_nano, s.end_time_unix_nano), (1000, 3000));
        assert_eq!(s.status.as_ref().unwrap().code, 2);
        assert_eq!(s.attributes.len(), 6);
        assert_eq!(
            s.attributes[0].value.as_ref().unwrap().value,
            Some(any_value::Value::IntValue(7))
        );
    }

    #[test]
    fn structural_errors_name_the_field() {
        assert!(matches!(decode(b"{"), Err(JsonError::Syntax(_))));
        let e = decode(br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}"#)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "resourceSpans[0].scopeSpans[0].spans[0].traceId: expected hex digits"
        );
        let e = decode(br#"{"resourceSpans":{}}"#).unwrap_err();
        assert!(e.to_string().contains("expected an array"), "{e}");
        let e = decode(br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":"SIDEWAYS"}]}]}]}"#)
            .unwrap_err();
        assert!(e.to_string().contains("unknown enum value"), "{e}");
        assert_eq!(decode(b"{}").unwrap(), ExportTraceServiceRequest::default());
    }

    #[test]
    fn deep_nesting_is_refused() {
        let nested = |levels: usize| {
            let mut v = String::from(r#"{"stringValue":"x"}"#);
            for _ in 0..levels {
                v = format!(r#"{{"arrayValue":{{"values":[{v}]}}}}"#);
            }
            format!(
                r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"attributes":[{{"key":"a","value":{v}}}]}}]}}]}}]}}"#
            )
        };
        let e = decode(nested(34).as_bytes()).unwrap_err();
        assert!(e.to_string().contains("nested deeper"), "{e}");
        // deeper still, serde_json's own recursion limit stops it first
        assert!(matches!(
            decode(nested(60).as_bytes()),
            Err(JsonError::Syntax(_))
        ));
        assert!(decode(nested(30).as_bytes()).is_ok());
    }
}
