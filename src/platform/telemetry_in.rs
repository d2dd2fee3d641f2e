//! Telemetry events in: what an extension on another platform posts (FunctionGraph's or
//! Lambda's Telemetry API events, the shape detected per event) becomes the same platform
//! spans and invocation record as a call through the gateway.
//!
//! Events are gathered per request id, in any order and over several posts. A request is
//! built once its `platform.report` has been seen for [`SETTLE`] (late init events still
//! join it), or when it has everything it can have. The trace is the one the events name
//! (Lambda's X-Ray `tracing`, FunctionGraph's `traceContext`: the span there is the
//! Invocation span, as the platform handed it to the function), else a fresh one; either
//! way the request id is registered with the stitcher at first sight, so function spans
//! tagged `faas.invocation_id` land under Invocation. Lambda's init events carry no
//! request id: they wait for the next report of that function that says it had a cold
//! start (`initDurationMs`). State is bounded: [`MAX_PENDING`] requests, each forgotten
//! [`MAX_AGE`] after its first event.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::functions::{self, FunctionSpec};
use super::instance::{ColdStart, Timed};
use super::record::Outcomes;
use super::stitch::Target;
use super::{context, error_type, spans, Platform};
use crate::model::{SpanContext, SpanId, TraceId};

pub const SETTLE: Duration = Duration::from_millis(500);
pub const MAX_PENDING: usize = 20_000;
pub const MAX_AGE: Duration = Duration::from_secs(300);
/// Events one post may carry.
pub const MAX_EVENTS: usize = 10_000;

/// One event, read.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub kind: Kind,
    pub request_id: Option<String>,
    /// When it started (or happened), µs.
    pub start: u64,
    /// When it ended, µs (= start for points in time).
    pub end: u64,
    pub status: Option<String>,
    pub trace: Option<(TraceId, SpanId)>,
    pub report: Option<ReportIn>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    InitStart,
    InitRuntimeDone,
    InitReport,
    Start,
    RuntimeDone,
    Report,
    /// `function`, `extension`, `platform.logsDropped`, and what this does not use.
    Other,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReportIn {
    pub duration_ms: f64,
    pub billed_ms: f64,
    pub memory_mb: u64,
    pub used_mb: f64,
    pub init_ms: Option<f64>,
    pub instance: Option<String>,
}

fn rfc3339(v: &Value) -> Option<u64> {
    let t = time::OffsetDateTime::parse(
        v.as_str()?.trim(),
        &time::format_description::well_known::Rfc3339,
    )
    .ok()?;
    u64::try_from(t.unix_timestamp_nanos() / 1000).ok()
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64().or_else(|| v.as_str()?.trim().parse().ok())
}

fn text(v: &Value) -> Option<String> {
    v.as_str()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn kind_of(name: &str) -> Kind {
    match name.trim() {
        "platform.initStart" => Kind::InitStart,
        "platform.initRuntimeDone" => Kind::InitRuntimeDone,
        "platform.initReport" => Kind::InitReport,
        "platform.start" => Kind::Start,
        "platform.runtimeDone" | "platform.RuntimeDone" => Kind::RuntimeDone,
        "platform.report" => Kind::Report,
        _ => Kind::Other,
    }
}

/// An X-Ray trace header's trace id and parent (`Root=1-…-…;Parent=…`).
fn xray(v: &str) -> Option<(TraceId, SpanId)> {
    let (mut root, mut parent) = (None, None);
    for f in v.split(';') {
        match f.trim().split_once('=') {
            Some(("Root", r)) => root = Some(r),
            Some(("Parent", p)) => parent = Some(p),
            _ => {}
        }
    }
    let hex: String = root?.strip_prefix("1-")?.split('-').collect();
    if hex.len() != 32 {
        return None;
    }
    let trace = u128::from_str_radix(&hex, 16).ok().filter(|&t| t != 0)?;
    let span = u64::from_str_radix(parent?, 16).ok().filter(|&s| s != 0)?;
    Some((TraceId(trace), SpanId(span)))
}

/// Read one event of either shape; `Err` says what is wrong with it.
pub fn parse(e: &Value) -> Result<Parsed, String> {
    if !e.is_object() {
        return Err("an event must be a JSON object".into());
    }
    if let (Some(kind), Some(record)) = (e.get("type").and_then(Value::as_str), e.get("record")) {
        // Lambda: {time, type, record}
        let at = rfc3339(&e["time"]).ok_or("time must be an RFC 3339 time")?;
        let kind = kind_of(kind);
        let m = &record["metrics"];
        let duration_us = num(&m["durationMs"]).map_or(0, |d| (d.max(0.0) * 1000.0) as u64);
        // runtimeDone and the reports are made when what they report ended
        let (start, end) = match kind {
            Kind::RuntimeDone | Kind::Report | Kind::InitReport => {
                (at.saturating_sub(duration_us), at)
            }
            _ => (at, at),
        };
        return Ok(Parsed {
            kind,
            request_id: text(&record["requestId"]),
            start,
            end,
            status: text(&record["status"]),
            trace: record["tracing"]["value"].as_str().and_then(xray),
            report: (kind == Kind::Report).then(|| ReportIn {
                duration_ms: num(&m["durationMs"]).unwrap_or(0.0),
                billed_ms: num(&m["billedDurationMs"]).unwrap_or(0.0),
                memory_mb: num(&m["memorySizeMB"]).unwrap_or(0.0) as u64,
                used_mb: num(&m["maxMemoryUsedMB"]).unwrap_or(0.0),
                init_ms: num(&m["initDurationMs"]),
                instance: None,
            }),
        });
    }
    if let Some(name) = e.get("name").and_then(Value::as_str) {
        // FunctionGraph: {name, startTime, traceId, status, endTime, metrics}
        let start = rfc3339(&e["startTime"]).ok_or("startTime must be an RFC 3339 time")?;
        let kind = kind_of(name);
        // the documents' example names the metrics `reportMetrics`
        let m = if e["metrics"].is_object() {
            &e["metrics"]
        } else {
            &e["reportMetrics"]
        };
        let duration_us = num(&m["durationMs"]).map_or(0, |d| (d.max(0.0) * 1000.0) as u64);
        let end = rfc3339(&e["endTime"]).unwrap_or(start + duration_us);
        let trace = e["traceContext"]
            .as_str()
            .and_then(|c| c.parse::<SpanContext>().ok())
            .map(|c| (c.trace_id, c.span_id));
        return Ok(Parsed {
            kind,
            request_id: text(&e["traceId"]),
            start,
            end: end.max(start),
            status: text(&e["status"]),
            trace,
            report: (kind == Kind::Report).then(|| ReportIn {
                duration_ms: num(&m["durationMs"]).unwrap_or(0.0),
                billed_ms: num(&m["billingDurationMS"]).unwrap_or(0.0),
                memory_mb: num(&m["memorySize"])
                    .or_else(|| num(&m[" memorySize "]))
                    .unwrap_or(0.0) as u64,
                used_mb: num(&m["memoryUsed"]).unwrap_or(0.0),
                init_ms: None,
                instance: text(&m["podName"]),
            }),
        });
    }
    Err("an event needs `type` and `record` (Lambda) or `name` (FunctionGraph)".into())
}

/// What is known of one request so far.
#[derive(Debug, Clone)]
pub struct Gathered {
    pub service: String,
    pub function: String,
    pub request_id: String,
    pub trace_id: TraceId,
    pub invocation_span: SpanId,
    /// The trace came from the events (not made up here).
    pub traced: bool,
    pub init_start: Option<u64>,
    pub init_end: Option<u64>,
    pub init_status: Option<String>,
    pub start: Option<u64>,
    pub run_end: Option<u64>,
    pub status: Option<String>,
    pub report: Option<(u64, u64, ReportIn)>,
    first_seen: Instant,
    report_seen: Option<Instant>,
}

impl Gathered {
    /// When the run started and how long it took.
    pub fn run(&self) -> Option<Timed> {
        let report = self.report.as_ref();
        let start = self.start.or(report.map(|r| r.0))?;
        let end = self
            .run_end
            .or(report.map(|r| r.1))
            .unwrap_or(start)
            .max(start);
        Some(Timed {
            start_us: start,
            duration_us: end - start,
        })
    }

    /// The cold start, from the init events or, lacking them, the report's init time.
    pub fn cold(&self) -> Option<ColdStart> {
        let run = self.run()?;
        let init = match (self.init_start, self.init_end) {
            (Some(s), e) => Timed {
                start_us: s,
                duration_us: e.unwrap_or(run.start_us).max(s) - s,
            },
            (None, _) => {
                let ms = self.report.as_ref()?.2.init_ms?;
                let us = (ms.max(0.0) * 1000.0) as u64;
                Timed {
                    start_us: run.start_us.saturating_sub(us),
                    duration_us: us,
                }
            }
        };
        Some(ColdStart {
            prepare_code: None,
            runtime_init: Some(init),
            initializer: None,
        })
    }

    /// Everything the events will say is here: the report, and the init when the
    /// report says there was one.
    fn complete(&self) -> bool {
        let Some((_, _, r)) = &self.report else {
            return false;
        };
        self.start.is_some() && (r.init_ms.is_none() || self.init_start.is_some())
    }
}

/// Lambda init events waiting for the request they started (no request id in them).
#[derive(Debug, Clone, Default)]
struct Init {
    start: Option<u64>,
    end: Option<u64>,
    status: Option<String>,
}

/// Requests being gathered, and the init events waiting for theirs.
#[derive(Default)]
pub struct Gatherer {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    requests: HashMap<String, Gathered>,
    order: VecDeque<String>,
    /// per (service, function), oldest first
    inits: HashMap<(String, String), VecDeque<Init>>,
}

/// What taking one post did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Taken {
    pub used: usize,
    pub ignored: usize,
    /// Request ids seen for the first time, with their target trace and Invocation span.
    pub new: Vec<(String, TraceId, SpanId)>,
}

impl Gatherer {
    /// Take one post's events (all checked already) for `service/function`.
    pub fn take(&self, service: &str, function: &str, events: &[Parsed]) -> Taken {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut taken = Taken::default();
        let now = Instant::now();
        for e in events {
            let Some(id) = e.request_id.clone() else {
                // Lambda's init events: held for the cold start's request
                let inits = inner
                    .inits
                    .entry((service.to_owned(), function.to_owned()))
                    .or_default();
                match e.kind {
                    Kind::InitStart => inits.push_back(Init {
                        start: Some(e.start),
                        ..Init::default()
                    }),
                    Kind::InitRuntimeDone | Kind::InitReport => {
                        if inits.back().is_none_or(|i| i.end.is_some()) {
                            inits.push_back(Init::default());
                        }
                        if let Some(i) = inits.back_mut() {
                            i.end = Some(e.end);
                            i.status = e.status.clone().or(i.status.take());
                            i.start = i.start.or((e.kind == Kind::InitReport).then_some(e.start));
                        }
                    }
                    _ => {
                        taken.ignored += 1;
                        continue;
                    }
                }
                if inits.len() > 64 {
                    inits.pop_front();
                }
                taken.used += 1;
                continue;
            };
            if e.kind == Kind::Other {
                taken.ignored += 1;
                continue;
            }
            taken.used += 1;
            if !inner.requests.contains_key(&id) {
                if inner.order.len() >= MAX_PENDING {
                    if let Some(old) = inner.order.pop_front() {
                        inner.requests.remove(&old);
                    }
                }
                let (trace_id, invocation_span, traced) = match e.trace {
                    Some((t, s)) => (t, s, true),
                    None => (
                        TraceId(fastrand::u64(1..) as u128),
                        SpanId(fastrand::u64(1..)),
                        false,
                    ),
                };
                taken.new.push((id.clone(), trace_id, invocation_span));
                inner.order.push_back(id.clone());
                inner.requests.insert(
                    id.clone(),
                    Gathered {
                        service: service.to_owned(),
                        function: function.to_owned(),
                        request_id: id.clone(),
                        trace_id,
                        invocation_span,
                        traced,
                        init_start: None,
                        init_end: None,
                        init_status: None,
                        start: None,
                        run_end: None,
                        status: None,
                        report: None,
                        first_seen: now,
                        report_seen: None,
                    },
                );
            }
            let Some(g) = inner.requests.get_mut(&id) else {
                continue;
            };
            if let (Some((t, s)), false) = (e.trace, g.traced) {
                // a later event names the trace: it wins over the one made up
                (g.trace_id, g.invocation_span, g.traced) = (t, s, true);
                taken.new.push((id.clone(), t, s));
            }
            match e.kind {
                Kind::InitStart => g.init_start = Some(e.start),
                Kind::InitRuntimeDone => {
                    g.init_end = g.init_end.max(Some(e.end));
                    g.init_status = e.status.clone();
                }
                Kind::InitReport => {
                    g.init_start = g.init_start.or(Some(e.start));
                    g.init_end = g.init_end.max(Some(e.end));
                    g.init_status = g.init_status.take().or(e.status.clone());
                }
                Kind::Start => g.start = Some(e.start),
                Kind::RuntimeDone => {
                    g.run_end = Some(e.end);
                    g.status = e.status.clone().or(g.status.take());
                    g.start = g.start.or(Some(e.start));
                }
                Kind::Report => {
                    if let Some(r) = &e.report {
                        g.report = Some((e.start, e.end, r.clone()));
                        g.status = g.status.take().or(e.status.clone());
                        g.report_seen = Some(now);
                    }
                }
                Kind::Other => {}
            }
        }
        taken
    }

    /// Requests ready to be built: complete, or reported and settled; and requests
    /// that never got a report within [`MAX_AGE`], dropped (their count returned).
    pub fn due(&self) -> (Vec<Gathered>, usize) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let mut ready = Vec::new();
        let mut expired = 0;
        let ids: Vec<String> = inner.order.iter().cloned().collect();
        for id in ids {
            let Some(g) = inner.requests.get(&id) else {
                continue;
            };
            let settled = g
                .report_seen
                .is_some_and(|t| now.duration_since(t) >= SETTLE);
            let old = now.duration_since(g.first_seen) >= MAX_AGE;
            if !(g.complete() || settled || old) {
                continue;
            }
            let Some(mut g) = inner.requests.remove(&id) else {
                continue;
            };
            if g.report.is_none() {
                expired += 1;
                continue;
            }
            // a cold start's init events that came without a request id
            let cold = g.report.as_ref().is_some_and(|r| r.2.init_ms.is_some());
            if cold && g.init_start.is_none() {
                let key = (g.service.clone(), g.function.clone());
                if let Some(init) = inner.inits.get_mut(&key).and_then(VecDeque::pop_front) {
                    g.init_start = init.start;
                    g.init_end = init.end;
                    g.init_status = init.status;
                }
            }
            ready.push(g);
        }
        let Inner {
            order, requests, ..
        } = &mut *inner;
        order.retain(|id| requests.contains_key(id));
        (ready, expired)
    }
}

impl Platform {
    /// Take a post of events for `service/function`: every request id seen for the
    /// first time is registered for stitching at once.
    pub fn take_telemetry(&self, service: &str, function: &str, events: &[Parsed]) -> Taken {
        let taken = self.gathered.take(service, function, events);
        for (id, trace_id, invocation_span) in &taken.new {
            self.stitcher.register(
                id,
                Target {
                    trace_id: *trace_id,
                    invocation_span: *invocation_span,
                },
            );
        }
        taken
    }

    /// Build the requests whose events are all in, now and then, until `stop`.
    pub async fn telemetry_loop(self: Arc<Self>, stop: tokio::sync::watch::Receiver<bool>) {
        crate::clock::every(Duration::from_millis(100), stop, || async {
            let (ready, expired) = self.gathered.due();
            if expired > 0 {
                tracing::warn!(
                    requests = expired,
                    "telemetry events without a report forgotten"
                );
            }
            for g in ready {
                self.build_from_events(&g);
            }
        })
        .await
    }

    fn build_from_events(&self, g: &Gathered) {
        let Some(run) = g.run() else { return };
        let Some((_, report_end, report)) = &g.report else {
            return;
        };
        let cold = g.cold();
        let start_us = cold
            .as_ref()
            .and_then(|c| c.runtime_init)
            .map_or(run.start_us, |t| t.start_us.min(run.start_us));
        let end_us = (*report_end).max(run.start_us + run.duration_us);
        let invoke = Timed {
            start_us,
            duration_us: end_us - start_us,
        };
        let error_type = match g.status.as_deref() {
            None | Some("success") => None,
            Some("timeout") => Some(error_type::TIMEOUT),
            Some(_) => Some(error_type::UNHANDLED),
        };
        let invoke_span = context::random_span_id();
        let spans = spans::build(&spans::Invocation {
            resource_mode: "",
            service: &g.service,
            function: &g.function,
            request_id: &g.request_id,
            trace_id: g.trace_id,
            caller: None,
            flags: 1,
            invoke_span,
            invocation_span: g.invocation_span,
            trigger: "other",
            memory_mb: report.memory_mb,
            instance_id: report.instance.as_deref(),
            // it ran on another platform: its machine is not known here
            hostname: None,
            ip: None,
            invoke,
            cold: cold.as_ref(),
            run: Some(run),
            error_type,
            error_message: None,
            warnings: &[],
            context_format: g.traced.then_some("telemetry"),
            baggage: &[],
        });
        self.store_spans(
            crate::store::keys::DEFAULT_TENANT,
            spans,
            "platform spans from telemetry not stored after retries",
        );
        // what the record needs of the function, as the report describes it
        let spec = FunctionSpec {
            service: g.service.clone(),
            name: g.function.clone(),
            runtime: functions::Runtime::Url(String::new()),
            memory_mb: report.memory_mb,
            timeout: Duration::ZERO,
            idle_timeout: Duration::ZERO,
            initializer: false,
            instance_concurrency: 1,
            max_instances: 1,
            telemetry: Vec::new(),
            async_retries: 0,
            max_event_age: Duration::ZERO,
            max_recursion_depth: 0,
            on_success: None,
            on_failure: None,
            provision: Default::default(),
            tenant: None,
            tenant_id: crate::store::keys::DEFAULT_TENANT,
            ingest_token: None,
        };
        let decision = context::TraceDecision {
            trace_id: g.trace_id,
            caller: None,
            sampled: true,
            debug: false,
            format: None,
            tracestate: None,
            warnings: Vec::new(),
            url: None,
            class: None,
        };
        self.record(
            &spec,
            &g.request_id,
            start_us,
            Duration::from_micros(invoke.duration_us),
            &decision,
            invoke_span,
            1,
            Outcomes {
                cold: cold.is_some(),
                init_us: 0,
                peak_rss: (report.used_mb.max(0.0) * 1024.0 * 1024.0) as u64,
                error_type,
                status_code: if error_type.is_some() { 500 } else { 200 },
                instance_id: report.instance.clone(),
                billed_ms: report.billed_ms.max(0.0).ceil() as u64,
                schedule_us: run.start_us.saturating_sub(start_us),
                operation: "InvokeFunction",
                ..Outcomes::default()
            },
        );
    }
}

#[cfg(test)]
#[path = "telemetry_in_tests.rs"]
mod tests;
