//! Asynchronous invocations: `x-fc-invocation-type: Async` (or `Event`) is answered 202
//! once the event is durable in the store's queue (`meta` family, see `keys::queue_key`);
//! a dispatcher then runs it within the function's concurrency, retries function
//! errors (`async_retries`, 1 s, 2 s, … apart), lets it expire after `max_event_age`, sends
//! the outcome to the `on_success`/`on_failure` destination (another function, called
//! asynchronously, or an HTTP URL), and removes it from the queue. Events still queued
//! when the daemon stops (or is killed) run after it starts again: at least once.
//!
//! The trace: InvokeFunction (async, the whole stay) → AsyncWait (queued until the first
//! attempt) and each attempt's InvokeFunction with its platform spans. Each attempt
//! leaves a record under the request id the caller got, with `invocationType: Async`,
//! its `attempt` and `asyncStatus` (`Retrying`, `Succeeded`, `Failed`, `Expired`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use base64::Engine;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Semaphore};

use super::context::{random_span_id, CONTEXT_HEADER};
use super::functions::Destination;
use super::{InvokeError, InvokeRequest, Platform, Trigger};
use crate::clock::now_us;
use crate::model::{
    KeyValue, Process, RefType, Span, SpanContext, SpanId, SpanRef, TraceId, Value,
};
use crate::monitor::minute::AsyncStep;
use crate::pipeline::with_retries;
use crate::store::keys::{self, DEFAULT_TENANT};
use crate::store::{Rows, Store, StoreError};

/// A throttled attempt waits this long and tries again (not counted as an attempt).
const THROTTLE_WAIT: Duration = Duration::from_secs(1);
/// Events waiting for the dispatcher at most; more are refused with 503.
const DISPATCH_QUEUE: usize = 65_536;

/// One queued event, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Queued {
    pub service: String,
    pub function: String,
    pub request_id: String,
    /// The event, base64.
    pub body: String,
    pub content_type: Option<String>,
    pub trace_id: String,
    pub root_span: String,
    pub caller: Option<String>,
    pub sampled: bool,
    pub enqueued_at: u64,
    /// The function's tenant when it was queued: the key it is stored under (events
    /// queued before tenants existed have none: the default tenant).
    #[serde(default)]
    pub tenant: keys::Tenant,
}

impl Queued {
    fn key(&self) -> Vec<u8> {
        keys::queue_key(self.tenant, self.enqueued_at, &self.request_id)
    }

    fn trace(&self) -> (TraceId, SpanId, Option<SpanId>) {
        let span = |s: &str| SpanId::from_hex(s).unwrap_or_default();
        (
            TraceId::from_hex(&self.trace_id).unwrap_or_default(),
            span(&self.root_span),
            self.caller.as_deref().map(span),
        )
    }
}

/// Which attempt of an asynchronous call an invocation is.
#[derive(Debug, Clone)]
pub struct AsyncCall {
    pub request_id: String,
    pub attempt: u32,
    pub last: bool,
}

/// The dispatcher's side: where queued events go to be run.
pub struct Dispatch {
    tx: mpsc::Sender<Queued>,
    rx: std::sync::Mutex<Option<mpsc::Receiver<Queued>>>,
    /// Events queued per (service, function), for the backlog metric.
    backlog: std::sync::Mutex<HashMap<(String, String), u64>>,
}

impl Dispatch {
    /// Change `q`'s function's backlog by one; returns it after.
    fn count(&self, q: &Queued, up: bool) -> u64 {
        let mut all = self.backlog.lock().unwrap_or_else(|e| e.into_inner());
        let n = all
            .entry((q.service.clone(), q.function.clone()))
            .or_default();
        *n = if up { *n + 1 } else { n.saturating_sub(1) };
        *n
    }
}

impl Default for Dispatch {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel(DISPATCH_QUEUE);
        Dispatch {
            tx,
            rx: std::sync::Mutex::new(Some(rx)),
            backlog: Default::default(),
        }
    }
}

impl Platform {
    /// Queue an event for `req`'s function; returns its request id once it is durable.
    pub async fn enqueue(&self, req: InvokeRequest) -> Result<String, InvokeError> {
        let Some(pool) = self.pools.get(&(req.service.clone(), req.function.clone())) else {
            self.refused(&req.service, &req.function, Duration::ZERO);
            return Err(InvokeError::NotFound(req.service, req.function));
        };
        let decision = self.decide_trace(&req, &pool.spec);
        let q = Queued {
            service: req.service,
            function: req.function,
            request_id: format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)),
            body: base64::engine::general_purpose::STANDARD.encode(&req.body),
            content_type: req
                .headers
                .get(axum::http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            trace_id: decision.trace_id.to_string(),
            root_span: random_span_id().to_string(),
            caller: decision.caller.map(|c| c.to_string()),
            sampled: decision.sampled,
            enqueued_at: now_us(),
            tenant: pool.spec.tenant_id,
        };
        // A place in the dispatcher first: a full queue is refused (503) rather than
        // stored and left until the next start.
        let slot = self
            .dispatch
            .tx
            .try_reserve()
            .map_err(|_| InvokeError::Queue(format!("{DISPATCH_QUEUE} events are waiting")))?;
        let row = (q.key(), serde_json::to_vec(&q).unwrap_or_default());
        self.pipeline
            .submit_rows(q.tenant, Rows::Queue, &[row])
            .await
            .map_err(|e| InvokeError::Queue(e.to_string()))?;
        self.metrics
            .async_event(&pool.spec.platform_service(), "enqueued");
        let backlog = self.dispatch.count(&q, true);
        self.async_step(&q, AsyncStep::Enqueued { backlog });
        let id = q.request_id.clone();
        slot.send(q);
        Ok(id)
    }

    /// Queue what the store holds (events left by the last run), then run events as
    /// they come, until `stop`. Attempts still running then are abandoned: their events
    /// stay queued in the store and run after the next start.
    pub async fn dispatch_loop(
        self: Arc<Self>,
        store: Arc<Store>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let Some(mut rx) = self
            .dispatch
            .rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            return;
        };
        // every tenant a function belongs to (and the default one, for events queued
        // before tenants were set up)
        let mut tenants: Vec<keys::Tenant> =
            self.pools.values().map(|p| p.spec.tenant_id).collect();
        tenants.push(DEFAULT_TENANT);
        tenants.sort_unstable();
        tenants.dedup();
        let mut left = match queued(&store, &tenants) {
            Ok(left) => left,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the async queue");
                Vec::new()
            }
        };
        drop(store);
        if !left.is_empty() {
            tracing::info!(events = left.len(), "async events left by the last run");
        }
        for q in &left {
            self.dispatch.count(q, true);
        }
        left.reverse();
        // calls at once per function: as many as its instances can take
        let mut slots: HashMap<(String, String), Arc<Semaphore>> = HashMap::new();
        let mut running = tokio::task::JoinSet::new();
        loop {
            let next = match left.pop() {
                Some(q) => Some(q),
                None => tokio::select! {
                    q = rx.recv() => q,
                    _ = stop.wait_for(|s| *s) => None,
                },
            };
            let Some(q) = next else { break };
            let Some(pool) = self.pools.get(&(q.service.clone(), q.function.clone())) else {
                tracing::warn!(function = %q.function, "async event for a function no longer declared: dropped");
                self.finish(&q).await;
                continue;
            };
            let n = (pool.spec.max_instances * pool.spec.instance_concurrency) as usize;
            let slot = Arc::clone(
                slots
                    .entry((q.service.clone(), q.function.clone()))
                    .or_insert_with(|| Arc::new(Semaphore::new(n.max(1)))),
            );
            let permit = tokio::select! {
                p = slot.acquire_owned() => p,
                _ = stop.wait_for(|s| *s) => break,
            };
            let Ok(permit) = permit else { break };
            let me = Arc::clone(&self);
            running.spawn(async move {
                me.run_queued(q).await;
                drop(permit);
            });
            // reap finished attempts so the set does not grow
            while running.try_join_next().is_some() {}
        }
        running.abort_all();
        while running.join_next().await.is_some() {}
    }

    async fn run_queued(&self, q: Queued) {
        let Some(pool) = self.pools.get(&(q.service.clone(), q.function.clone())) else {
            return;
        };
        let spec = Arc::clone(&pool.spec);
        let attempts = 1 + spec.async_retries;
        let body = Bytes::from(
            base64::engine::general_purpose::STANDARD
                .decode(&q.body)
                .unwrap_or_default(),
        );
        let (trace_id, root, _) = q.trace();
        let dequeued = now_us();
        self.metrics
            .async_event(&spec.platform_service(), "dequeued");
        let backlog = self.dispatch.count(&q, false);
        self.async_step(
            &q,
            AsyncStep::Dequeued {
                wait_us: dequeued.saturating_sub(q.enqueued_at),
                backlog,
            },
        );
        let mut first_start = None;
        let mut attempt = 1;
        let outcome = loop {
            if now_us().saturating_sub(q.enqueued_at) > spec.max_event_age.as_micros() as u64 {
                self.metrics
                    .async_event(&spec.platform_service(), "expired");
                self.async_step(&q, AsyncStep::Expired);
                break Outcome::Expired;
            }
            let mut headers = HeaderMap::new();
            let ctx = SpanContext {
                trace_id,
                span_id: root,
                parent_span_id: SpanId(0),
                flags: u8::from(q.sampled),
            };
            if let Ok(v) = HeaderValue::from_str(&ctx.to_string()) {
                headers.insert(CONTEXT_HEADER, v);
            }
            if let Some(ct) = q
                .content_type
                .as_deref()
                .and_then(|c| HeaderValue::from_str(c).ok())
            {
                headers.insert(axum::http::header::CONTENT_TYPE, ct);
            }
            first_start.get_or_insert_with(now_us);
            let result = self
                .invoke_as(
                    InvokeRequest {
                        service: q.service.clone(),
                        function: q.function.clone(),
                        trigger: Trigger::Event,
                        headers,
                        body: body.clone(),
                    },
                    Some(AsyncCall {
                        request_id: q.request_id.clone(),
                        attempt,
                        last: attempt >= attempts,
                    }),
                )
                .await;
            match result {
                Ok(r) if r.error_type.is_none() => {
                    break Outcome::Succeeded(r.status.as_u16(), r.body)
                }
                Ok(r) if attempt >= attempts => {
                    break Outcome::Failed(
                        r.status.as_u16(),
                        r.error_type.unwrap_or_default(),
                        r.body,
                    )
                }
                Ok(_) => {
                    tokio::time::sleep(Duration::from_secs(attempt as u64)).await;
                    attempt += 1;
                }
                // throttled: wait for room, not an attempt
                Err(InvokeError::Throttled { .. } | InvokeError::ResourceThrottled { .. }) => {
                    tokio::time::sleep(THROTTLE_WAIT).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "async event cannot run: dropped");
                    break Outcome::Expired;
                }
            }
        };
        self.destination(
            &q,
            &spec.on_success,
            &spec.on_failure,
            &outcome,
            attempt,
            &body,
        )
        .await;
        self.async_spans(&q, first_start.unwrap_or(dequeued), &outcome);
        self.finish(&q).await;
    }

    /// Take the event out of the queue.
    async fn finish(&self, q: &Queued) {
        let row = (q.key(), Vec::new());
        let pipeline = self.pipeline.clone();
        let write = || pipeline.submit_rows(q.tenant, Rows::Dequeue, std::slice::from_ref(&row));
        if let Err(e) = with_retries(&self.metrics, write).await {
            tracing::error!(error = %e, request_id = %q.request_id, "async event not removed from the queue: it runs again after a restart");
        }
    }

    /// Send the outcome where the function says, and count it.
    async fn destination(
        &self,
        q: &Queued,
        on_success: &Option<Destination>,
        on_failure: &Option<Destination>,
        outcome: &Outcome,
        attempts: u32,
        payload: &Bytes,
    ) {
        let (dest, condition) = match outcome {
            Outcome::Succeeded(..) => (on_success, "Success"),
            Outcome::Failed(..) => (on_failure, "RetriesExhausted"),
            Outcome::Expired => (on_failure, "EventAgeExceeded"),
        };
        let Some(dest) = dest else { return };
        let as_json = |b: &Bytes| {
            serde_json::from_slice::<serde_json::Value>(b).unwrap_or_else(|_| {
                serde_json::Value::from(String::from_utf8_lossy(b).into_owned())
            })
        };
        let (status, error, response) = match outcome {
            Outcome::Succeeded(s, b) => (*s, None, as_json(b)),
            Outcome::Failed(s, e, b) => (*s, Some(*e), as_json(b)),
            Outcome::Expired => (0, None, serde_json::Value::Null),
        };
        let record = serde_json::json!({
            "version": "1.0",
            "timestamp": super::events::time(now_us()),
            "requestContext": {
                "requestId": q.request_id,
                "functionArn": format!("{}/{}", q.service, q.function),
                "condition": condition,
                "approximateInvokeCount": attempts,
            },
            "requestPayload": as_json(payload),
            "responseContext": {"statusCode": status, "executedVersion": "LATEST", "functionError": error},
            "responsePayload": response,
        });
        let body = Bytes::from(record.to_string());
        let delivered = match dest {
            Destination::Url(url) => self
                .http
                .post(url)
                .header("content-type", "application/json")
                .timeout(Duration::from_secs(10))
                .body(body)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success()),
            Destination::Function(service, function) => {
                let mut headers = HeaderMap::new();
                headers.insert(
                    axum::http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                Box::pin(self.enqueue(InvokeRequest {
                    service: service.clone(),
                    function: function.clone(),
                    trigger: Trigger::Event,
                    headers,
                    body,
                }))
                .await
                .is_ok()
            }
        };
        let function = format!("FC:{}/{}", q.service, q.function);
        let event = if delivered {
            "destination_succeeded"
        } else {
            "destination_failed"
        };
        self.metrics.async_event(&function, event);
        self.async_step(q, AsyncStep::Destination { delivered });
        // what was sent, with the request's log lines
        if let Some(pool) = self.pools.get(&(q.service.clone(), q.function.clone())) {
            let to = match dest {
                Destination::Url(u) => u.clone(),
                Destination::Function(s, f) => format!("{s}/{f}"),
            };
            let verdict = if delivered {
                "delivered"
            } else {
                "NOT delivered"
            };
            pool.logs.platform_line(
                &q.service,
                &q.function,
                &q.request_id,
                format!("[fctrace] async destination {to} ({condition}) {verdict}: {record}"),
            );
        }
        if !delivered {
            tracing::warn!(request_id = %q.request_id, destination = ?dest, "async destination not reached");
        }
    }

    /// Count a step in the per-minute metrics, in the background.
    fn async_step(&self, q: &Queued, step: AsyncStep) {
        let function = crate::monitor::Function {
            service: q.service.clone(),
            function: q.function.clone(),
            qualifier: super::record::QUALIFIER.into(),
        };
        let pipeline = self.pipeline.clone();
        let metrics = Arc::clone(&self.metrics);
        let at = now_us();
        let tenant = self.tenant_of(&q.service, &q.function);
        tokio::spawn(async move {
            let agg = crate::monitor::minute::Minute::of_async(step);
            let levels = crate::monitor::catalog::Level::ALL;
            let write = || pipeline.submit_aggregate(tenant, &levels, &function, at, &agg);
            if let Err(e) = with_retries(&metrics, write).await {
                tracing::warn!(error = %e, "async metrics not stored");
            }
        });
    }

    /// The async call's own spans: InvokeFunction (async) and AsyncWait.
    fn async_spans(&self, q: &Queued, first_start: u64, outcome: &Outcome) {
        if !q.sampled {
            return;
        }
        let (trace_id, root, caller) = q.trace();
        let end = now_us();
        let process = Arc::new(Process {
            service_name: format!("FC:{}/{}", q.service, q.function),
            tags: vec![KeyValue::new(
                "cloud.platform",
                Value::Str("fctrace".into()),
            )],
        });
        let status = match outcome {
            Outcome::Succeeded(..) => "Succeeded",
            Outcome::Failed(..) => "Failed",
            Outcome::Expired => "Expired",
        };
        let span = |id: SpanId,
                    name: &str,
                    parent: Option<SpanId>,
                    start: u64,
                    end: u64,
                    tags: Vec<KeyValue>| Span {
            trace_id,
            span_id: id,
            operation_name: name.to_owned(),
            references: parent
                .map(|p| {
                    vec![SpanRef {
                        ref_type: RefType::ChildOf,
                        trace_id,
                        span_id: p,
                    }]
                })
                .unwrap_or_default(),
            flags: 1,
            start_time: start,
            duration: end.saturating_sub(start),
            tags,
            logs: Vec::new(),
            process: Arc::clone(&process),
        };
        let mut root_tags = vec![
            KeyValue::new(
                "faas.invocation_id",
                Value::Str(q.request_id.clone().into()),
            ),
            KeyValue::new("fc.request_id", Value::Str(q.request_id.clone().into())),
            KeyValue::new("fc.invocation_type", Value::Str("Async".into())),
            KeyValue::new("fc.async_status", Value::Str(status.into())),
        ];
        if !matches!(outcome, Outcome::Succeeded(..)) {
            root_tags.push(KeyValue::new("error", Value::Bool(true)));
        }
        let spans = vec![
            span(
                root,
                "InvokeFunction",
                caller,
                q.enqueued_at,
                end,
                root_tags,
            ),
            span(
                random_span_id(),
                "AsyncWait",
                Some(root),
                q.enqueued_at,
                first_start,
                Vec::new(),
            ),
        ];
        let tenant = self.tenant_of(&q.service, &q.function);
        self.store_spans(tenant, spans, "async spans not stored after retries");
    }
}

enum Outcome {
    Succeeded(u16, Bytes),
    Failed(u16, &'static str, Bytes),
    Expired,
}

/// Every event the store's queue holds for `tenants`, oldest first.
fn queued(store: &Store, tenants: &[keys::Tenant]) -> Result<Vec<Queued>, StoreError> {
    let mut out = Vec::new();
    for tenant in tenants {
        for v in store.queued(*tenant)? {
            if let Ok(q) = serde_json::from_slice::<Queued>(&v) {
                out.push(q);
            }
        }
    }
    out.sort_by_key(|q| q.enqueued_at);
    Ok(out)
}
