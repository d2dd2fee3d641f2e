//! The function platform: function registry, invoke gateway logic, instance pools and
//! cold starts, platform spans, the `x-fc-tracing-*` context handed to functions, and
//! invocation records.
//!
//! In: an invoke request (event or proxied HTTP request) for `service/function`. Out: the
//! function's response, plus platform spans and an invocation record handed to the
//! pipeline like any receiver's batch. This module does not parse HTTP routes (the server
//! does) and does not store anything itself.

pub mod functions;
pub mod instance;
pub mod record;
pub mod sampler;
pub mod spans;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use base64::Engine;
use bytes::Bytes;
use thiserror::Error;

use crate::clock::now_us;
use crate::model::{SpanContext, SpanId, TraceId};
use crate::monitor::minute::{Call, Outcome};
use crate::pipeline::stitch::Target;
use crate::pipeline::{with_retries, CallFacts, Partial, Pipeline};
use crate::sampling::HeadSampler;
use crate::store::keys::DEFAULT_TENANT;
use crate::telemetry::Metrics;
use functions::FunctionSpec;
use instance::{AcquireError, Pool, Timed};
use record::{monitor_function, operation_of, Outcomes, QUALIFIER};

pub const CONTEXT_HEADER: &str = "x-fc-tracing-opentracing-span-context";
pub const BAGGAGE_PREFIX: &str = "x-fc-tracing-opentracing-span-context-baggage-";
pub const BAGGAGES_HEADER: &str = "x-fc-tracing-opentracing-span-baggages";
pub const JAEGER_ENDPOINT_HEADER: &str = "x-fc-tracing-jaeger-endpoint";

/// Largest function response the gateway relays.
const MAX_RESPONSE_BYTES: usize = 32 << 20;

#[derive(Debug, Error)]
pub enum InvokeError {
    #[error("function {0}/{1} not found")]
    NotFound(String, String),
    #[error("the platform is at its limit of {limit} concurrent invocations")]
    ResourceThrottled { limit: usize, request_id: String },
    #[error("function {service}/{function} is throttled: {why}")]
    Throttled {
        service: String,
        function: String,
        why: String,
        request_id: String,
    },
}

/// What the caller asked the function to do.
pub enum Trigger {
    /// `POST …/invocations`: the body is the event, sent to the function's `POST /invoke`.
    Event,
    /// `ANY /proxy/…/{path}`: the request is forwarded as it came.
    Http {
        method: Method,
        path_and_query: String,
    },
}

pub struct InvokeRequest {
    pub service: String,
    pub function: String,
    pub trigger: Trigger,
    pub headers: HeaderMap,
    pub body: Bytes,
}

pub struct InvokeResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub request_id: String,
    pub duration: Duration,
    pub error_type: Option<&'static str>,
}

/// Function error kinds, as the platform names them.
pub mod error_type {
    pub const UNHANDLED: &str = "FunctionUnhandledError";
    pub const TIMEOUT: &str = "FunctionTimeoutError";
    pub const OOM: &str = "FunctionOOMError";
    pub const START: &str = "FunctionStartError";
    pub const INITIALIZATION: &str = "FunctionInitializationError";
}

pub struct Platform {
    pools: HashMap<(String, String), Arc<Pool>>,
    /// Instance metrics: the previous reading and latest sample of each live instance.
    samples: std::sync::Mutex<sampler::Samples>,
    /// `--max-concurrent-invocations`: calls beyond it get 503 (resource throttles).
    limit: Arc<tokio::sync::Semaphore>,
    max_concurrent: usize,
    pipeline: Pipeline,
    metrics: Arc<Metrics>,
    sampler: Arc<HeadSampler>,
    http: reqwest::Client,
    /// `x-fc-tracing-jaeger-endpoint`: where functions send their spans.
    jaeger_endpoint: String,
}

/// The trace an invocation belongs to, decided from the inbound headers.
struct TraceDecision {
    trace_id: TraceId,
    caller: Option<SpanId>,
    sampled: bool,
    debug: bool,
    warnings: Vec<String>,
}

fn random_span_id() -> SpanId {
    SpanId(fastrand::u64(1..))
}

/// The caller's context when it sent a valid one (its sampled flag wins); otherwise a new
/// trace, sampled by the function's strategy.
fn decide_trace(
    headers: &HeaderMap,
    sampler: &HeadSampler,
    platform_service: &str,
) -> TraceDecision {
    let mut warnings = Vec::new();
    if let Some(raw) = headers.get(CONTEXT_HEADER) {
        match raw
            .to_str()
            .map_err(|e| e.to_string())
            .and_then(|s| s.parse::<SpanContext>().map_err(|e| e.to_string()))
        {
            Ok(ctx) => {
                return TraceDecision {
                    trace_id: ctx.trace_id,
                    caller: Some(ctx.span_id),
                    sampled: ctx.is_sampled(),
                    debug: ctx.is_debug(),
                    warnings,
                }
            }
            Err(e) => warnings.push(format!("ignored malformed {CONTEXT_HEADER}: {e}")),
        }
    }
    // 64-bit trace ids, as function platforms write them.
    let trace_id = TraceId(fastrand::u64(1..) as u128);
    TraceDecision {
        trace_id,
        caller: None,
        sampled: sampler.decide(platform_service, "InvokeFunction", trace_id),
        debug: false,
        warnings,
    }
}

/// Baggage items from `…-baggage-<key>` headers, sorted by key.
pub fn baggage(headers: &HeaderMap) -> Vec<(String, String)> {
    let mut items: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(k, v)| {
            let key = k.as_str().strip_prefix(BAGGAGE_PREFIX)?;
            Some((key.to_owned(), v.to_str().ok()?.to_owned()))
        })
        .collect();
    items.sort();
    items
}

/// Headers that belong to one hop and are not relayed.
fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "host"
            | "content-length"
    )
}

impl Platform {
    pub fn new(
        specs: Vec<FunctionSpec>,
        pipeline: Pipeline,
        metrics: Arc<Metrics>,
        sampler: Arc<HeadSampler>,
        jaeger_endpoint: String,
        max_concurrent: usize,
    ) -> Self {
        let http = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        let pools = specs
            .into_iter()
            .map(|spec| {
                let key = (spec.service.clone(), spec.name.clone());
                (key, Arc::new(Pool::new(Arc::new(spec), http.clone())))
            })
            .collect();
        let max_concurrent = max_concurrent.clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        Platform {
            pools,
            limit: Arc::new(tokio::sync::Semaphore::new(max_concurrent)),
            samples: Default::default(),
            max_concurrent,
            pipeline,
            metrics,
            sampler,
            http,
            jaeger_endpoint,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pools.is_empty()
    }

    /// The declared functions, by service and name.
    pub fn functions(&self) -> Vec<serde_json::Value> {
        let mut specs: Vec<&FunctionSpec> = self.pools.values().map(|p| &*p.spec).collect();
        specs.sort_by(|a, b| (&a.service, &a.name).cmp(&(&b.service, &b.name)));
        specs
            .into_iter()
            .map(|s| {
                serde_json::json!({
                    "serviceName": s.service,
                    "functionName": s.name,
                    "qualifier": QUALIFIER,
                    "memoryMB": s.memory_mb,
                    "timeoutMs": s.timeout.as_millis() as u64,
                    "maxInstances": s.max_instances,
                    "instanceConcurrency": s.instance_concurrency,
                    "initializer": s.initializer,
                })
            })
            .collect()
    }

    /// Reap idle instances of every function, now and then, until `stop` says so.
    pub async fn reap_loop(self: Arc<Self>, stop: tokio::sync::watch::Receiver<bool>) {
        crate::clock::every(Duration::from_millis(250), stop, || async {
            for pool in self.pools.values() {
                let n = pool.reap_idle();
                if n > 0 {
                    tracing::info!(function = %pool.spec.platform_service(), instances = n, "idle instances stopped");
                }
            }
        })
        .await
    }

    pub fn stop_all(&self) {
        for pool in self.pools.values() {
            pool.stop_all();
        }
    }

    /// Calls running on the whole platform now.
    fn running(&self) -> u64 {
        (self.max_concurrent - self.limit.available_permits()) as u64
    }

    /// Count a call refused before it reached a function (unknown function, bad event):
    /// a client error, for its function when it exists, else for the region alone.
    pub fn refused(&self, service: &str, function: &str, latency: Duration) {
        let pool = self.pools.get(&(service.to_owned(), function.to_owned()));
        let call = Call {
            latency_us: latency.as_micros() as u64,
            outcome: Outcome::ClientError,
            memory_limit_mb: pool.map_or(0, |p| p.spec.memory_mb),
            ..Call::default()
        };
        let function = pool.map(|p| monitor_function(&p.spec));
        self.store_call(CallFacts {
            record: None,
            function,
            at_us: now_us().saturating_sub(call.latency_us),
            call,
            platform_concurrent: self.running(),
        });
    }

    pub async fn invoke(&self, req: InvokeRequest) -> Result<InvokeResponse, InvokeError> {
        let started = Instant::now();
        let Some(pool) = self.pools.get(&(req.service.clone(), req.function.clone())) else {
            self.refused(&req.service, &req.function, started.elapsed());
            return Err(InvokeError::NotFound(req.service, req.function));
        };
        let spec = &pool.spec;
        let start_us = now_us();
        let request_id = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        // Held until the call is answered: the platform-wide limit.
        let permit = Arc::clone(&self.limit).try_acquire_owned().ok();
        let platform_concurrent = self.running();
        let decision = decide_trace(&req.headers, &self.sampler, &spec.platform_service());
        let baggage = baggage(&req.headers);
        let invoke_span = random_span_id();
        let invocation_span = random_span_id();
        let flags: u8 = match (decision.sampled, decision.debug) {
            (_, true) => 3,
            (true, false) => 1,
            (false, false) => 0,
        };
        let trigger_name = match req.trigger {
            Trigger::Event => "other",
            Trigger::Http { .. } => "http",
        };

        if permit.is_none() {
            self.record(
                spec,
                &request_id,
                start_us,
                started.elapsed(),
                &decision,
                invoke_span,
                flags,
                Outcomes {
                    error_type: Some("ResourceThrottled"),
                    status_code: 503,
                    operation: operation_of(trigger_name),
                    platform_concurrent,
                    ..Outcomes::default()
                },
            );
            return Err(InvokeError::ResourceThrottled {
                limit: self.max_concurrent,
                request_id,
            });
        }
        if decision.sampled {
            // Before the function runs: its spans may arrive before ours.
            self.pipeline.stitcher().register(
                &request_id,
                Target {
                    trace_id: decision.trace_id,
                    invocation_span,
                },
            );
        }
        let acquired = pool.acquire().await;
        // The instance to run on, or why none could be started.
        let (lease, cold) = match acquired {
            Ok((lease, cold)) => (Ok(lease), cold),
            Err(AcquireError::Throttled(max)) => {
                self.metrics.throttled(&spec.platform_service());
                let (concurrent, instances) = pool.load();
                self.record(
                    spec,
                    &request_id,
                    start_us,
                    started.elapsed(),
                    &decision,
                    invoke_span,
                    flags,
                    Outcomes {
                        error_type: Some("Throttled"),
                        status_code: 429,
                        operation: operation_of(trigger_name),
                        concurrent: concurrent + 1,
                        instances,
                        platform_concurrent,
                        ..Outcomes::default()
                    },
                );
                return Err(InvokeError::Throttled {
                    service: req.service,
                    function: req.function,
                    why: format!(
                        "every instance is busy and no more may start (max_instances {max})"
                    ),
                    request_id,
                });
            }
            Err(AcquireError::StartFailed {
                step,
                message,
                cold,
            }) => {
                let kind = if step == "Initializer" {
                    error_type::INITIALIZATION
                } else {
                    error_type::START
                };
                (Err((kind, format!("{step} failed: {message}"))), Some(cold))
            }
        };

        let (concurrent, instances) = pool.load();
        let mut run = None;
        let mut peak_rss = 0u64;
        let (status, headers, body, error) = match &lease {
            Err((kind, message)) => {
                let (kind, message) = (*kind, message.clone());
                tracing::warn!(function = %spec.platform_service(), error = %message, "instance did not start");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    HeaderMap::new(),
                    Bytes::from(
                        serde_json::json!({"errorType": kind, "errorMessage": message}).to_string(),
                    ),
                    Some((kind, message)),
                )
            }
            Ok(lease) => {
                let outbound = self.outbound_headers(
                    spec,
                    &req,
                    &request_id,
                    &decision,
                    invocation_span,
                    invoke_span,
                    flags,
                    &baggage,
                );
                let run_start = now_us();
                let run_clock = Instant::now();
                let result = self.call(spec, lease, &req, outbound, &mut peak_rss).await;
                run = Some(Timed {
                    start_us: run_start,
                    duration_us: run_clock.elapsed().as_micros() as u64,
                });
                result
            }
        };
        let instance_id = lease.as_ref().ok().map(|l| l.instance.id.clone());
        let ip_address = lease
            .as_ref()
            .map(|l| l.instance.host())
            .unwrap_or_default();
        drop(lease);

        let duration = started.elapsed();
        let invoke = Timed {
            start_us,
            duration_us: duration.as_micros() as u64,
        };
        let error_type = error.as_ref().map(|(k, _)| *k);
        if decision.sampled {
            let spans = spans::build(&spans::Invocation {
                service: &spec.service,
                function: &spec.name,
                request_id: &request_id,
                trace_id: decision.trace_id,
                caller: decision.caller,
                flags: flags as u32,
                invoke_span,
                invocation_span,
                trigger: trigger_name,
                memory_mb: spec.memory_mb,
                instance_id: instance_id.as_deref(),
                invoke,
                cold: cold.as_ref(),
                run,
                error_type,
                error_message: error.as_ref().map(|(_, m)| m.as_str()),
                warnings: &decision.warnings,
                baggage: &baggage,
            });
            let pipeline = self.pipeline.clone();
            let metrics = Arc::clone(&self.metrics);
            tokio::spawn(async move {
                let write = || async {
                    pipeline
                        .submit(DEFAULT_TENANT, spans.clone(), Partial::RejectBatch)
                        .await
                        .map(|_| ())
                };
                if let Err(e) = with_retries(&metrics, write).await {
                    tracing::error!(error = %e, "platform spans not stored after retries");
                }
            });
        }
        // the initializer alone, as the platforms report `initializationDurationMs`
        let init_us = cold
            .as_ref()
            .and_then(|c| c.initializer.as_ref())
            .map_or(0, |t| t.duration_us);
        self.record(
            spec,
            &request_id,
            start_us,
            duration,
            &decision,
            invoke_span,
            flags,
            Outcomes {
                cold: cold.is_some(),
                init_us,
                peak_rss,
                error_type,
                status_code: status.as_u16(),
                instance_id,
                ip_address,
                concurrent,
                instances,
                platform_concurrent,
                billed_ms: run.map_or(0, |r| r.duration_us.div_ceil(1000)),
                schedule_us: run.map_or(0, |r| r.start_us.saturating_sub(start_us)),
                operation: operation_of(trigger_name),
            },
        );
        drop(permit);
        self.metrics
            .invocation(&spec.platform_service(), error_type, cold.is_some());
        Ok(InvokeResponse {
            status,
            headers,
            body,
            request_id,
            duration,
            error_type,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn outbound_headers(
        &self,
        spec: &FunctionSpec,
        req: &InvokeRequest,
        request_id: &str,
        decision: &TraceDecision,
        invocation_span: SpanId,
        invoke_span: SpanId,
        flags: u8,
        baggage: &[(String, String)],
    ) -> HeaderMap {
        let mut h = HeaderMap::new();
        if matches!(req.trigger, Trigger::Http { .. }) {
            for (k, v) in &req.headers {
                let name = k.as_str();
                if !is_hop_by_hop(name) && !name.starts_with("x-fc-") {
                    h.append(k.clone(), v.clone());
                }
            }
        } else if let Some(ct) = req.headers.get(axum::http::header::CONTENT_TYPE) {
            h.insert(axum::http::header::CONTENT_TYPE, ct.clone());
        }
        let mut put = |name: &'static str, value: String| {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(HeaderName::from_static(name), v);
            }
        };
        put("x-fc-request-id", request_id.to_owned());
        put("x-fc-function-name", spec.name.clone());
        put("x-fc-service-name", spec.service.clone());
        put("x-fc-function-memory", spec.memory_mb.to_string());
        put(
            "x-fc-function-timeout",
            spec.timeout.as_secs().max(1).to_string(),
        );
        let ctx = SpanContext {
            trace_id: decision.trace_id,
            span_id: invocation_span,
            parent_span_id: invoke_span,
            flags,
        };
        put(CONTEXT_HEADER, ctx.to_string());
        let map: serde_json::Map<String, serde_json::Value> = baggage
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
            .collect();
        put(
            BAGGAGES_HEADER,
            base64::engine::general_purpose::STANDARD
                .encode(serde_json::Value::Object(map).to_string()),
        );
        put(JAEGER_ENDPOINT_HEADER, self.jaeger_endpoint.clone());
        h
    }

    /// Run the function on its instance, within its timeout and memory, and classify the
    /// outcome.
    async fn call(
        &self,
        spec: &FunctionSpec,
        lease: &instance::Lease,
        req: &InvokeRequest,
        headers: HeaderMap,
        peak_rss: &mut u64,
    ) -> (StatusCode, HeaderMap, Bytes, Option<(&'static str, String)>) {
        let instance = &lease.instance;
        let (method, url) = match &req.trigger {
            Trigger::Event => (Method::POST, format!("{}/invoke", instance.base_url)),
            Trigger::Http {
                method,
                path_and_query,
            } => (
                method.clone(),
                format!("{}{}", instance.base_url, path_and_query),
            ),
        };
        let send = async {
            let resp = self
                .http
                .request(method, url)
                .headers(headers)
                .body(req.body.clone())
                .send()
                .await?;
            instance
                .rx_bytes
                .fetch_add(req.body.len() as u64, std::sync::atomic::Ordering::Relaxed);
            let status = resp.status();
            let headers = resp.headers().clone();
            let mut resp = resp;
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await? {
                instance
                    .tx_bytes
                    .fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Ok::<_, reqwest::Error>((
                        StatusCode::BAD_GATEWAY,
                        HeaderMap::new(),
                        None,
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok((status, headers, Some(Bytes::from(body))))
        };
        let limit = spec.memory_mb * 1024 * 1024;
        let pid = instance.pid();
        let watch = async {
            // Poll the instance's memory; returning means it went over its limit.
            let Some(pid) = pid else {
                return std::future::pending::<()>().await;
            };
            loop {
                if let Some(rss) = instance::rss_bytes(pid) {
                    *peak_rss = (*peak_rss).max(rss);
                    if rss > limit {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let error_body = |kind: &str, msg: &str| {
            Bytes::from(serde_json::json!({"errorType": kind, "errorMessage": msg}).to_string())
        };
        tokio::select! {
            result = tokio::time::timeout(spec.timeout, send) => match result {
                Err(_) => {
                    instance.kill();
                    let msg = format!("function timed out after {:?}", spec.timeout);
                    (StatusCode::GATEWAY_TIMEOUT, HeaderMap::new(), error_body(error_type::TIMEOUT, &msg), Some((error_type::TIMEOUT, msg)))
                }
                Ok(Err(e)) => {
                    // The instance is no use if it cannot be reached.
                    instance.kill();
                    let msg = format!("function did not answer: {e}");
                    (StatusCode::BAD_GATEWAY, HeaderMap::new(), error_body(error_type::UNHANDLED, &msg), Some((error_type::UNHANDLED, msg)))
                }
                Ok(Ok((status, headers, None))) => {
                    let msg = format!("function response is larger than {MAX_RESPONSE_BYTES} bytes");
                    (status, headers, error_body(error_type::UNHANDLED, &msg), Some((error_type::UNHANDLED, msg)))
                }
                Ok(Ok((status, mut headers, Some(body)))) => {
                    let fc_404 = headers.get("x-fc-status").is_some_and(|v| v.as_bytes() == b"404");
                    for name in ["transfer-encoding", "connection", "content-length", "x-fc-status"] {
                        headers.remove(name);
                    }
                    let error = if status.is_server_error() || fc_404 {
                        Some((error_type::UNHANDLED, format!("function answered {}{}", status.as_u16(), if fc_404 { " with x-fc-status: 404" } else { "" })))
                    } else {
                        None
                    };
                    (status, headers, body, error)
                }
            },
            _ = watch => {
                instance.kill();
                let msg = format!("function used more than its {} MB of memory and was stopped", spec.memory_mb);
                (StatusCode::BAD_GATEWAY, HeaderMap::new(), error_body(error_type::OOM, &msg), Some((error_type::OOM, msg)))
            }
        }
    }
}
