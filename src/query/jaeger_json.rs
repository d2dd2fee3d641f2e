//! Jaeger's classic query-API JSON: the envelope, traces, operations and dependencies.
//!
//! These are view types built from the model; the model and the store can change without
//! changing what Grafana's Jaeger data source and the Jaeger UI read.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use serde::Serialize;

use super::DependencyLink;
use crate::model::{KeyValue, Process, Span, SpanKind, Value};

/// `{"data":..,"total":N,"limit":0,"offset":0,"errors":null}`.
#[derive(Debug, Serialize)]
pub struct Envelope<T: Serialize> {
    pub data: Option<T>,
    pub total: usize,
    pub limit: usize,
    pub offset: usize,
    pub errors: Option<Vec<EnvelopeError>>,
}

#[derive(Debug, Serialize)]
pub struct EnvelopeError {
    pub code: u16,
    pub msg: String,
}

impl<T: Serialize> Envelope<T> {
    pub fn data(data: T, total: usize) -> Self {
        Envelope {
            data: Some(data),
            total,
            limit: 0,
            offset: 0,
            errors: None,
        }
    }
}

impl Envelope<()> {
    pub fn error(code: u16, msg: impl Into<String>) -> Self {
        Envelope {
            data: None,
            total: 0,
            limit: 0,
            offset: 0,
            errors: Some(vec![EnvelopeError {
                code,
                msg: msg.into(),
            }]),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Trace {
    #[serde(rename = "traceID")]
    pub trace_id: String,
    pub spans: Vec<SpanView>,
    pub processes: BTreeMap<String, ProcessView>,
    pub warnings: Option<Vec<String>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SpanView {
    #[serde(rename = "traceID")]
    pub trace_id: String,
    #[serde(rename = "spanID")]
    pub span_id: String,
    pub operation_name: String,
    pub references: Vec<RefView>,
    pub start_time: u64,
    pub duration: u64,
    pub tags: Vec<KeyValueView>,
    pub logs: Vec<LogView>,
    #[serde(rename = "processID")]
    pub process_id: String,
    pub warnings: Option<Vec<String>>,
    pub flags: u32,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RefView {
    pub ref_type: &'static str,
    #[serde(rename = "traceID")]
    pub trace_id: String,
    #[serde(rename = "spanID")]
    pub span_id: String,
}

#[derive(Debug, Serialize)]
pub struct KeyValueView {
    pub key: String,
    #[serde(rename = "type")]
    pub ty: &'static str,
    pub value: serde_json::Value,
}

#[derive(Debug, Serialize)]
pub struct LogView {
    pub timestamp: u64,
    pub fields: Vec<KeyValueView>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessView {
    pub service_name: String,
    pub tags: Vec<KeyValueView>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationView {
    pub name: String,
    pub span_kind: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DependencyView {
    pub parent: String,
    pub child: String,
    pub call_count: u64,
}

pub fn kv(kv: &KeyValue) -> KeyValueView {
    let (ty, value) = match &kv.value {
        Value::Str(s) => ("string", serde_json::Value::from(s.as_str())),
        Value::Bool(b) => ("bool", serde_json::Value::from(*b)),
        Value::I64(i) => ("int64", serde_json::Value::from(*i)),
        Value::F64(f) => ("float64", serde_json::Value::from(*f)),
        // Jaeger's Go JSON writes byte slices as base64.
        Value::Binary(b) => (
            "binary",
            serde_json::Value::from(base64::engine::general_purpose::STANDARD.encode(b)),
        ),
    };
    KeyValueView {
        key: kv.key.to_string(),
        ty,
        value,
    }
}

fn kvs(list: &[KeyValue]) -> Vec<KeyValueView> {
    list.iter().map(kv).collect()
}

/// One trace's spans as Jaeger JSON, with identical processes shared as `p1`, `p2`, ….
pub fn trace(spans: &[Span]) -> Trace {
    let mut processes: Vec<&Arc<Process>> = Vec::new();
    let mut views = Vec::with_capacity(spans.len());
    for s in spans {
        let idx = match processes
            .iter()
            .position(|p| Arc::ptr_eq(p, &s.process) || ***p == *s.process)
        {
            Some(i) => i,
            None => {
                processes.push(&s.process);
                processes.len() - 1
            }
        };
        views.push(SpanView {
            trace_id: s.trace_id.to_string(),
            span_id: s.span_id.to_string(),
            operation_name: s.operation_name.clone(),
            references: s
                .references
                .iter()
                .map(|r| RefView {
                    ref_type: r.ref_type.as_jaeger_str(),
                    trace_id: r.trace_id.to_string(),
                    span_id: r.span_id.to_string(),
                })
                .collect(),
            start_time: s.start_time,
            duration: s.duration,
            tags: kvs(&s.tags),
            logs: s
                .logs
                .iter()
                .map(|l| LogView {
                    timestamp: l.timestamp,
                    fields: kvs(&l.fields),
                })
                .collect(),
            process_id: format!("p{}", idx + 1),
            warnings: None,
            flags: s.flags,
        });
    }
    Trace {
        trace_id: spans
            .first()
            .map(|s| s.trace_id.to_string())
            .unwrap_or_default(),
        spans: views,
        processes: processes
            .iter()
            .enumerate()
            .map(|(i, p)| {
                (
                    format!("p{}", i + 1),
                    ProcessView {
                        service_name: p.service_name.clone(),
                        tags: kvs(&p.tags),
                    },
                )
            })
            .collect(),
        warnings: None,
    }
}

pub fn operations(ops: &[(String, SpanKind)]) -> Vec<OperationView> {
    ops.iter()
        .map(|(name, kind)| OperationView {
            name: name.clone(),
            span_kind: kind.as_str(),
        })
        .collect()
}

pub fn dependencies(links: &[DependencyLink]) -> Vec<DependencyView> {
    links
        .iter()
        .map(|l| DependencyView {
            parent: l.parent.clone(),
            child: l.child.clone(),
            call_count: l.call_count,
        })
        .collect()
}
