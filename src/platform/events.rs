//! Telemetry events out (the Telemetry API of function platforms): the platform's
//! lifecycle events of each invocation and the function's output lines, pushed as JSON
//! arrays to the listeners subscribed to a function, in FunctionGraph's shape
//! (`{name, startTime, traceId, status, endTime, metrics}`) or Lambda's
//! (`{time, type, record}`).
//!
//! Each subscription has one sender task, so a listener gets its events in the order
//! they were made. Events wait in a buffer bounded by the subscription's `max_items` and
//! `max_bytes`; a batch goes when either is reached or `timeout_ms` after its first event.
//! A listener that is slow or down makes events drop (never the invocation wait): they
//! are counted and reported to it as `platform.logsDropped` with the next batch that
//! goes. What events an invocation makes is the platform's (`mod.rs`); this module
//! shapes, buffers and sends.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::model::{SpanId, TraceId};

/// The platforms' bounds for buffering (Lambda's Telemetry API).
pub const ITEMS: (u32, u32, u32) = (1_000, 10_000, 10_000);
pub const BYTES: (u32, u32, u32) = (262_144, 1_048_576, 262_144);
pub const TIMEOUT_MS: (u32, u32, u32) = (25, 30_000, 1_000);
/// Listeners one function may have (Lambda allows 10 extensions): each holds a buffer of
/// up to `max_bytes`.
pub const MAX_LISTENERS: usize = 10;
/// Attempts to deliver one batch, and how long each may take.
const ATTEMPTS: u32 = 3;
const POST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[serde(rename = "functiongraph")]
    FunctionGraph,
    Lambda,
}

/// Which events a listener wants: `platform`, `function`, `extension`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Types {
    pub platform: bool,
    pub function: bool,
    pub extension: bool,
}

impl Types {
    pub fn parse(names: &[String]) -> Result<Types, String> {
        let mut t = Types::default();
        for n in names {
            match n.as_str() {
                "platform" => t.platform = true,
                "function" => t.function = true,
                "extension" => t.extension = true,
                other => {
                    return Err(format!(
                        "type {other:?} is not platform, function or extension"
                    ))
                }
            }
        }
        if names.is_empty() {
            return Err("types must name at least one of platform, function, extension".into());
        }
        Ok(t)
    }
}

/// One listener's subscription, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub url: String,
    pub types: Types,
    pub format: Format,
    pub max_items: u32,
    pub max_bytes: u32,
    pub timeout_ms: u32,
}

/// A buffering setting within the platforms' bounds (`(min, max, default)`).
pub fn bounded(
    name: &str,
    v: Option<u32>,
    (min, max, default): (u32, u32, u32),
) -> Result<u32, String> {
    match v {
        None => Ok(default),
        Some(v) if (min..=max).contains(&v) => Ok(v),
        Some(v) => Err(format!("{name} {v} is outside {min}..={max}")),
    }
}

pub fn check_url(url: &str) -> Result<(), String> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(format!(
            "listener URL {url:?} must start with http:// or https://"
        ))
    }
}

/// The trace context an event carries: the Invocation span.
#[derive(Debug, Clone, Copy)]
pub struct Tracing {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent_id: SpanId,
    pub sampled: bool,
}

impl Tracing {
    /// As X-Ray writes it (as OpenTelemetry's X-Ray propagator maps 128-bit ids).
    fn xray(&self) -> String {
        let hex = format!("{:032x}", self.trace_id.0);
        format!(
            "Root=1-{}-{};Parent={};Sampled={}",
            &hex[..8],
            &hex[8..],
            self.span_id,
            u8::from(self.sampled)
        )
    }

    fn fc(&self) -> String {
        format!(
            "{}:{}:{}:{}",
            self.trace_id,
            self.span_id,
            self.parent_id,
            u8::from(self.sampled)
        )
    }
}

/// What the report events say.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub duration_ms: f64,
    pub billed_ms: u64,
    pub memory_mb: u64,
    pub max_memory_used_mb: f64,
    /// On a cold start: its whole duration.
    pub init_duration_ms: Option<f64>,
}

/// One event, before it takes a platform's shape. Times are µs since the epoch.
#[derive(Debug, Clone)]
pub enum Event {
    InitStart {
        at: u64,
        request_id: String,
        function: String,
        instance: String,
        memory_mb: u64,
    },
    InitRuntimeDone {
        at: u64,
        request_id: String,
        status: &'static str,
    },
    InitReport {
        start: u64,
        end: u64,
        request_id: String,
        status: &'static str,
        instance: String,
        memory_mb: u64,
    },
    Start {
        at: u64,
        request_id: String,
        tracing: Tracing,
    },
    RuntimeDone {
        start: u64,
        end: u64,
        request_id: String,
        status: &'static str,
        error_type: Option<String>,
        produced_bytes: u64,
        tracing: Tracing,
    },
    Report {
        start: u64,
        end: u64,
        request_id: String,
        status: &'static str,
        instance: String,
        report: Report,
        tracing: Tracing,
    },
    /// A line the function printed.
    Function { at: u64, message: String },
}

impl Event {
    fn is_platform(&self) -> bool {
        !matches!(self, Event::Function { .. })
    }
}

/// RFC 3339 in UTC with milliseconds, as both platforms write event times.
pub(super) fn time(us: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(us as i128 * 1000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Milliseconds, to the microsecond.
fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// `event` in `format`'s shape.
pub fn shape(event: &Event, format: Format) -> Value {
    match format {
        Format::Lambda => lambda(event),
        Format::FunctionGraph => functiongraph(event),
    }
}

fn lambda(event: &Event) -> Value {
    let tracing = |t: &Tracing| json!({"spanId": t.span_id.to_string(), "type": "X-Amzn-Trace-Id", "value": t.xray()});
    let (at, kind, record) = match event {
        Event::InitStart {
            at,
            function,
            instance,
            memory_mb,
            ..
        } => (
            *at,
            "platform.initStart",
            json!({
                "initializationType": "on-demand", "phase": "init", "functionName": function,
                "functionVersion": "$LATEST", "instanceId": instance, "instanceMaxMemory": memory_mb,
            }),
        ),
        Event::InitRuntimeDone { at, status, .. } => (
            *at,
            "platform.initRuntimeDone",
            json!({
                "initializationType": "on-demand", "phase": "init", "status": status,
            }),
        ),
        Event::InitReport {
            start, end, status, ..
        } => (
            *end,
            "platform.initReport",
            json!({
                "initializationType": "on-demand", "phase": "init", "status": status,
                "metrics": {"durationMs": ms(end - start)},
            }),
        ),
        Event::Start {
            at,
            request_id,
            tracing: t,
        } => (
            *at,
            "platform.start",
            json!({
                "requestId": request_id, "version": "$LATEST", "tracing": tracing(t),
            }),
        ),
        Event::RuntimeDone {
            start,
            end,
            request_id,
            status,
            error_type,
            produced_bytes,
            tracing: t,
        } => {
            let mut r = json!({
                "requestId": request_id, "status": status, "tracing": tracing(t),
                "metrics": {"durationMs": ms(end - start), "producedBytes": produced_bytes},
            });
            if let Some(e) = error_type {
                r["errorType"] = json!(e);
            }
            (*end, "platform.runtimeDone", r)
        }
        Event::Report {
            end,
            request_id,
            status,
            report,
            tracing: t,
            ..
        } => {
            let mut metrics = json!({
                "durationMs": report.duration_ms, "billedDurationMs": report.billed_ms,
                "memorySizeMB": report.memory_mb, "maxMemoryUsedMB": report.max_memory_used_mb.ceil() as u64,
            });
            if let Some(init) = report.init_duration_ms {
                metrics["initDurationMs"] = json!(init);
            }
            (
                *end,
                "platform.report",
                json!({
                    "requestId": request_id, "status": status, "metrics": metrics, "tracing": tracing(t),
                }),
            )
        }
        Event::Function { at, message } => (*at, "function", json!(message)),
    };
    json!({"time": time(at), "type": kind, "record": record})
}

fn functiongraph(event: &Event) -> Value {
    let metrics = |duration_ms: f64, billed: u64, used: f64, size: u64, pod: &str| {
        json!({
            "durationMs": duration_ms, "billingDurationMS": billed, "memoryUsed": used,
            "memorySize": size, "podName": pod,
        })
    };
    match event {
        Event::InitStart { at, request_id, .. } => json!({
            "name": "platform.initStart", "startTime": time(*at), "traceId": request_id,
        }),
        Event::InitRuntimeDone {
            at,
            request_id,
            status,
        } => json!({
            "name": "platform.initRuntimeDone", "startTime": time(*at), "traceId": request_id,
            "status": status,
        }),
        Event::InitReport {
            start,
            end,
            request_id,
            status,
            instance,
            memory_mb,
        } => {
            let d = ms(end - start);
            json!({
                "name": "platform.initReport", "startTime": time(*start), "traceId": request_id,
                "endTime": time(*end), "status": status,
                "metrics": metrics(d, d.ceil() as u64, 0.0, *memory_mb, instance),
            })
        }
        Event::Start {
            at,
            request_id,
            tracing,
        } => json!({
            "name": "platform.start", "startTime": time(*at), "traceId": request_id,
            "traceContext": tracing.fc(),
        }),
        Event::RuntimeDone {
            start,
            end,
            request_id,
            status,
            tracing,
            ..
        } => json!({
            "name": "platform.RuntimeDone", "startTime": time(*start), "traceId": request_id,
            "endTime": time(*end), "status": status, "traceContext": tracing.fc(),
        }),
        Event::Report {
            start,
            end,
            request_id,
            status,
            instance,
            report,
            tracing,
        } => json!({
            "name": "platform.report", "startTime": time(*start), "traceId": request_id,
            "endTime": time(*end), "status": status, "traceContext": tracing.fc(),
            "metrics": metrics(report.duration_ms, report.billed_ms, report.max_memory_used_mb,
                report.memory_mb, instance),
        }),
        Event::Function { at, message } => json!({
            "name": "function", "startTime": time(*at), "logs": message,
        }),
    }
}

fn logs_dropped(format: Format, records: u64, bytes: u64) -> Value {
    let reason = "the listener did not keep up: the buffer was full";
    match format {
        Format::Lambda => {
            json!({"time": time(crate::clock::now_us()), "type": "platform.logsDropped",
            "record": {"reason": reason, "droppedRecords": records, "droppedBytes": bytes}})
        }
        Format::FunctionGraph => json!({"name": "platform.logsDropped",
            "startTime": time(crate::clock::now_us()), "reason": reason,
            "droppedRecords": records, "droppedBytes": bytes}),
    }
}

#[derive(Default)]
struct Buffer {
    events: VecDeque<Vec<u8>>,
    bytes: usize,
    /// When the oldest waiting event came.
    since: Option<Instant>,
    dropped: (u64, u64),
}

/// One subscription's buffer and sender.
pub struct Listener {
    pub sub: Subscription,
    buf: Mutex<Buffer>,
    notify: Notify,
    /// Replaced by another subscription to the same URL: the sender ends.
    stopped: AtomicBool,
    metrics: Arc<crate::telemetry::Metrics>,
}

impl Listener {
    fn offer(&self, event: &Event) {
        let wanted = if event.is_platform() {
            self.sub.types.platform
        } else {
            self.sub.types.function
        };
        if !wanted {
            return;
        }
        let bytes = shape(event, self.sub.format).to_string().into_bytes();
        let mut b = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        if b.events.len() >= self.sub.max_items as usize
            || b.bytes + bytes.len() > self.sub.max_bytes as usize
        {
            b.dropped.0 += 1;
            b.dropped.1 += bytes.len() as u64;
            drop(b);
            self.metrics.telemetry_events("dropped", 1);
            return;
        }
        b.bytes += bytes.len();
        b.events.push_back(bytes);
        b.since.get_or_insert_with(Instant::now);
        drop(b);
        self.notify.notify_one();
    }

    /// The next batch once it is due: full, or `timeout_ms` after its first event;
    /// `None` once the subscription was replaced.
    async fn next_batch(&self) -> Option<(Vec<Vec<u8>>, (u64, u64))> {
        let timeout = Duration::from_millis(self.sub.timeout_ms as u64);
        loop {
            if self.stopped.load(Ordering::SeqCst) {
                return None;
            }
            let due = {
                let b = self.buf.lock().unwrap_or_else(|e| e.into_inner());
                match b.since {
                    None if b.dropped.0 == 0 => None,
                    None => Some(Instant::now()),
                    Some(since) => {
                        let full = b.events.len() >= self.sub.max_items as usize
                            || b.bytes >= self.sub.max_bytes as usize;
                        Some(if full {
                            Instant::now()
                        } else {
                            since + timeout
                        })
                    }
                }
            };
            match due {
                Some(at) if at <= Instant::now() => break,
                Some(at) => {
                    let _ = tokio::time::timeout_at(at.into(), self.notify.notified()).await;
                }
                None => self.notify.notified().await,
            }
        }
        let mut b = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        let events: Vec<Vec<u8>> = b.events.drain(..).collect();
        b.bytes = 0;
        b.since = None;
        Some((events, std::mem::take(&mut b.dropped)))
    }

    async fn run(self: Arc<Self>, http: reqwest::Client) {
        loop {
            let Some((events, dropped)) = self.next_batch().await else {
                return;
            };
            let mut body =
                Vec::with_capacity(events.iter().map(|e| e.len() + 1).sum::<usize>() + 256);
            body.push(b'[');
            if dropped.0 > 0 {
                body.extend_from_slice(
                    logs_dropped(self.sub.format, dropped.0, dropped.1)
                        .to_string()
                        .as_bytes(),
                );
            }
            for e in &events {
                if body.len() > 1 {
                    body.push(b',');
                }
                body.extend_from_slice(e);
            }
            body.push(b']');
            let mut sent = false;
            for attempt in 0..ATTEMPTS {
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_millis(100 << (2 * attempt))).await;
                }
                let r = http
                    .post(&self.sub.url)
                    .header("content-type", "application/json")
                    .timeout(POST_TIMEOUT)
                    .body(body.clone())
                    .send()
                    .await;
                if r.is_ok_and(|r| r.status().is_success()) {
                    sent = true;
                    break;
                }
            }
            if sent {
                self.metrics.telemetry_events("sent", events.len());
            } else {
                tracing::warn!(url = %self.sub.url, events = events.len(), "telemetry listener did not take a batch");
                self.metrics.telemetry_events("dropped", events.len());
                let mut b = self.buf.lock().unwrap_or_else(|e| e.into_inner());
                b.dropped.0 += events.len() as u64;
                b.dropped.1 += events.iter().map(|e| e.len() as u64).sum::<u64>();
            }
        }
    }
}

/// A function's listeners. Offering an event never waits.
pub struct Subscribers {
    listeners: Mutex<Vec<Arc<Listener>>>,
    http: reqwest::Client,
    metrics: Arc<crate::telemetry::Metrics>,
}

impl Subscribers {
    pub fn new(
        subs: &[Subscription],
        http: reqwest::Client,
        metrics: Arc<crate::telemetry::Metrics>,
    ) -> Self {
        let s = Subscribers {
            listeners: Mutex::new(Vec::new()),
            http,
            metrics,
        };
        for sub in subs.iter().take(MAX_LISTENERS) {
            let _ = s.subscribe(sub.clone());
        }
        s
    }

    /// Add a listener, or replace the one at the same URL (whose sender then stops);
    /// refused past [`MAX_LISTENERS`].
    pub fn subscribe(&self, sub: Subscription) -> Result<(), String> {
        let listener = Arc::new(Listener {
            sub,
            buf: Mutex::new(Buffer::default()),
            notify: Notify::new(),
            stopped: AtomicBool::new(false),
            metrics: Arc::clone(&self.metrics),
        });
        let mut all = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        let replaces = all.iter().any(|l| l.sub.url == listener.sub.url);
        if !replaces && all.len() >= MAX_LISTENERS {
            return Err(format!("a function has at most {MAX_LISTENERS} listeners"));
        }
        for old in all.iter().filter(|l| l.sub.url == listener.sub.url) {
            old.stopped.store(true, Ordering::SeqCst);
            old.notify.notify_one();
        }
        all.retain(|l| l.sub.url != listener.sub.url);
        all.push(Arc::clone(&listener));
        drop(all);
        tokio::spawn(listener.run(self.http.clone()));
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    pub fn offer(&self, event: &Event) {
        let all = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        for l in all.iter() {
            l.offer(event);
        }
    }
}

#[cfg(test)]
#[path = "events_tests.rs"]
mod tests;
