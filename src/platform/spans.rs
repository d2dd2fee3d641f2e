//! The platform's side of an invocation as spans, under `FC:{service}/{function}`:
//!
//! ```text
//! InvokeFunction                 the whole stay in the platform
//! ├── ColdStart                  only when a new instance was needed
//! │   ├── PrepareCode
//! │   └── RuntimeInitialization
//! ├── Initializer                only on a cold start with an initializer
//! └── Invocation                 the function's run; its own spans hang below
//! ```
//!
//! Times are the measured steps; tags follow OpenTelemetry's FaaS conventions plus `fc.*`.

use std::sync::Arc;

use super::instance::{ColdStart, Timed};
use crate::model::{keys, KeyValue, Process, RefType, Span, SpanId, SpanRef, TraceId, Value};

/// Everything the span builder needs to know about one invocation.
pub struct Invocation<'a> {
    pub service: &'a str,
    pub function: &'a str,
    pub request_id: &'a str,
    pub trace_id: TraceId,
    /// The caller's span, when the request carried a context.
    pub caller: Option<SpanId>,
    pub flags: u32,
    pub invoke_span: SpanId,
    pub invocation_span: SpanId,
    pub trigger: &'static str,
    pub memory_mb: u64,
    pub instance_id: Option<&'a str>,
    /// The machine the gateway runs on, and where it reached the instance.
    pub hostname: Option<&'a str>,
    pub ip: Option<&'a str>,
    pub invoke: Timed,
    pub cold: Option<&'a ColdStart>,
    /// The function's run, when it got that far.
    pub run: Option<Timed>,
    pub error_type: Option<&'a str>,
    pub error_message: Option<&'a str>,
    /// `Provision` or `OnDemand` ("" when it ran on no instance).
    pub resource_mode: &'a str,
    pub warnings: &'a [String],
    /// The inbound header the caller's context came from (`None` for a fresh trace).
    pub context_format: Option<&'a str>,
    pub baggage: &'a [(String, String)],
}

fn s(v: &str) -> Value {
    Value::Str(v.into())
}

pub fn build(inv: &Invocation<'_>) -> Vec<Span> {
    let mut process_tags = vec![
        KeyValue::new("cloud.platform", s("fctrace")),
        KeyValue::new("faas.name", s(inv.function)),
        KeyValue::new("fc.service", s(inv.service)),
    ];
    // where the platform ran it, as Jaeger clients tag their processes (the UI's host)
    if let Some(h) = inv.hostname.filter(|h| !h.is_empty()) {
        process_tags.push(KeyValue::new("hostname", s(h)));
    }
    if let Some(ip) = inv.ip.filter(|ip| !ip.is_empty()) {
        process_tags.push(KeyValue::new("ip", s(ip)));
    }
    let process = Arc::new(Process {
        service_name: format!("FC:{}/{}", inv.service, inv.function),
        tags: process_tags,
    });
    let child_of = |parent: SpanId| {
        vec![SpanRef {
            ref_type: RefType::ChildOf,
            trace_id: inv.trace_id,
            span_id: parent,
        }]
    };
    let span = |id: SpanId, name: &str, refs: Vec<SpanRef>, t: Timed, tags: Vec<KeyValue>| Span {
        trace_id: inv.trace_id,
        span_id: id,
        operation_name: name.to_owned(),
        references: refs,
        flags: inv.flags,
        start_time: t.start_us,
        duration: t.duration_us,
        tags,
        logs: Vec::new(),
        process: Arc::clone(&process),
    };
    let error_tags = || match inv.error_type {
        Some(kind) => {
            let mut t = vec![
                KeyValue::new(keys::ERROR, Value::Bool(true)),
                KeyValue::new("fc.error_type", s(kind)),
                KeyValue::new(keys::OTEL_STATUS_CODE, s("ERROR")),
            ];
            if let Some(m) = inv.error_message {
                t.push(KeyValue::new(keys::OTEL_STATUS_DESCRIPTION, s(m)));
            }
            t
        }
        None => Vec::new(),
    };

    let mut root_tags = vec![
        KeyValue::new(keys::SPAN_KIND, s("server")),
        KeyValue::new("faas.invocation_id", s(inv.request_id)),
        KeyValue::new("faas.coldstart", Value::Bool(inv.cold.is_some())),
        KeyValue::new("faas.name", s(inv.function)),
        KeyValue::new(
            "faas.max_memory",
            Value::I64((inv.memory_mb * 1024 * 1024) as i64),
        ),
        KeyValue::new("faas.trigger", s(inv.trigger)),
        KeyValue::new("cloud.platform", s("fctrace")),
        KeyValue::new("fc.request_id", s(inv.request_id)),
        KeyValue::new("fc.service", s(inv.service)),
        KeyValue::new("fc.function", s(inv.function)),
        KeyValue::new("fc.qualifier", s("LATEST")),
    ];
    if !inv.resource_mode.is_empty() {
        root_tags.push(KeyValue::new("resourceMode", s(inv.resource_mode)));
    }
    if let Some(i) = inv.instance_id {
        root_tags.push(KeyValue::new("fc.instance_id", s(i)));
    }
    if let Some(f) = inv.context_format {
        root_tags.push(KeyValue::new("fc.tracing.propagation", s(f)));
    }
    for w in inv.warnings {
        root_tags.push(KeyValue::new("fc.tracing.warning", s(w)));
    }
    for (k, v) in inv.baggage {
        root_tags.push(KeyValue::new(format!("baggage.{k}"), s(v)));
    }
    root_tags.extend(error_tags());
    let root_refs = inv.caller.map(child_of).unwrap_or_default();
    let mut spans = vec![span(
        inv.invoke_span,
        "InvokeFunction",
        root_refs,
        inv.invoke,
        root_tags,
    )];

    let mut next_id = inv.invoke_span.0;
    let mut new_id = || {
        // Ids derived from the root's, so one invocation never collides with itself.
        next_id = next_id
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407)
            | 1;
        SpanId(next_id)
    };
    if let Some(cold) = inv.cold {
        let steps: Vec<(&str, Timed)> = [
            ("PrepareCode", cold.prepare_code),
            ("RuntimeInitialization", cold.runtime_init),
        ]
        .into_iter()
        .filter_map(|(n, t)| t.map(|t| (n, t)))
        .collect();
        // A start that failed carries the error on ColdStart and on the step that failed.
        let failed = inv.run.is_none() && inv.error_type.is_some();
        let last_step = steps.len().saturating_sub(1);
        if let (Some(first), Some(last)) = (steps.first(), steps.last()) {
            let cold_id = new_id();
            let whole = Timed {
                start_us: first.1.start_us,
                duration_us: (last.1.start_us + last.1.duration_us)
                    .saturating_sub(first.1.start_us),
            };
            let mut cold_tags = vec![KeyValue::new(
                "fc.instance_id",
                s(inv.instance_id.unwrap_or("")),
            )];
            if failed {
                cold_tags.extend(error_tags());
            }
            spans.push(span(
                cold_id,
                "ColdStart",
                child_of(inv.invoke_span),
                whole,
                cold_tags,
            ));
            for (i, (name, t)) in steps.into_iter().enumerate() {
                let tags = if failed && i == last_step && cold.initializer.is_none() {
                    error_tags()
                } else {
                    Vec::new()
                };
                spans.push(span(new_id(), name, child_of(cold_id), t, tags));
            }
        }
        if let Some(t) = cold.initializer {
            let tags = if failed { error_tags() } else { Vec::new() };
            spans.push(span(
                new_id(),
                "Initializer",
                child_of(inv.invoke_span),
                t,
                tags,
            ));
        }
    }
    if let Some(run) = inv.run {
        let mut tags = vec![KeyValue::new("faas.invocation_id", s(inv.request_id))];
        tags.extend(error_tags());
        spans.push(span(
            inv.invocation_span,
            "Invocation",
            child_of(inv.invoke_span),
            run,
            tags,
        ));
    }
    spans
}
