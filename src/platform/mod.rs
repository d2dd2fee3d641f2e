//! The function platform: function registry, invoke gateway logic, instance pools and
//! cold starts, platform spans, the `x-fc-tracing-*` context handed to functions, and
//! invocation records.
//!
//! In: an invoke request (event or proxied HTTP request) for `service/function`. Out: the
//! function's response, plus platform spans and an invocation record handed to the
//! pipeline like any receiver's batch. This module does not parse HTTP routes (the server
//! does) and does not store anything itself.

mod call;
pub mod context;
pub mod events;
pub mod functions;
pub mod instance;
mod lifecycle;
pub mod logs;
pub mod provision;
pub mod queue;
pub mod record;
mod recursion;
pub mod sampler;
pub mod spans;
pub mod stitch;
pub mod telemetry_in;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, Method, StatusCode};
use bytes::Bytes;
use thiserror::Error;

use crate::clock::now_us;
use crate::monitor::minute::{Call, Outcome};
use crate::pipeline::{with_retries, CallFacts, Partial, Pipeline};
use crate::sampling::HeadSampler;
use crate::store::keys::DEFAULT_TENANT;
use crate::telemetry::Metrics;
use context::{baggage, decide_trace, random_span_id};
use functions::FunctionSpec;
use instance::{AcquireError, Pool, Timed};
use logs::LogSink;
use record::{monitor_function, operation_of, Outcomes, QUALIFIER};
use stitch::{Stitcher, Target};

#[derive(Debug, Error)]
pub enum InvokeError {
    #[error("function {0}/{1} not found")]
    NotFound(String, String),
    #[error("the platform is at its limit of {limit} concurrent invocations")]
    ResourceThrottled { limit: usize, request_id: String },
    #[error("the event could not be queued: {0}")]
    Queue(String),
    #[error("function {service}/{function} was stopped: this call chain has passed through it {depth} times, more than its max_recursion_depth allows (a recursive loop)")]
    Recursive {
        service: String,
        function: String,
        depth: u32,
        request_id: String,
    },
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

impl Trigger {
    /// What intelligent sampling calls the call's URL within its function: the HTTP path
    /// without its query, or `invoke` for an event.
    pub fn route(&self) -> &str {
        match self {
            Trigger::Event => "invoke",
            Trigger::Http { path_and_query, .. } => {
                path_and_query.split('?').next().unwrap_or(path_and_query)
            }
        }
    }
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

/// Where functions send their own spans: this daemon's collectors, as functions reach
/// them.
pub struct Endpoints {
    /// Jaeger thrift over HTTP, handed over in `x-fc-tracing-jaeger-endpoint`.
    pub jaeger: String,
    /// Whether `jaeger` is this daemon's `/api/traces` (a tenant's function is then handed
    /// its tenant's confidential path instead), not `--function-jaeger-endpoint`'s.
    pub jaeger_is_ours: bool,
    /// OTLP/HTTP base URL, set as `OTEL_EXPORTER_OTLP_ENDPOINT` in each instance's
    /// environment.
    pub otlp: String,
}

/// How the platform runs, from the daemon's settings.
pub struct PlatformOptions {
    pub endpoints: Endpoints,
    /// `--max-concurrent-invocations`
    pub max_concurrent: usize,
    /// `--function-log-bytes`: output one instance may store a minute.
    pub log_bytes_per_minute: u64,
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
    jaeger_is_ours: bool,
    /// Where each sampled invocation is registered before its function runs.
    stitcher: Arc<Stitcher>,
    /// Telemetry events posted from other platforms, gathered per request.
    gathered: telemetry_in::Gatherer,
    /// Queued asynchronous events on their way to the dispatcher.
    dispatch: queue::Dispatch,
}

impl Platform {
    pub fn new(
        specs: Vec<FunctionSpec>,
        pipeline: Pipeline,
        metrics: Arc<Metrics>,
        sampler: Arc<HeadSampler>,
        stitcher: Arc<Stitcher>,
        opts: PlatformOptions,
    ) -> Self {
        let PlatformOptions {
            endpoints,
            max_concurrent,
            log_bytes_per_minute,
        } = opts;
        let tenants = specs
            .iter()
            .map(|s| ((s.service.clone(), s.name.clone()), s.tenant_id))
            .collect();
        let logs = LogSink::start(
            pipeline.clone(),
            Arc::clone(&metrics),
            log_bytes_per_minute,
            tenants,
        );
        let http = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        let pools = specs
            .into_iter()
            .map(|mut spec| {
                if let functions::Runtime::Command { env, .. } = &mut spec.runtime {
                    // what an unmodified OpenTelemetry SDK reads; the function's own
                    // `env` wins
                    // a tenant's function: its tenant's confidential path
                    let otlp = match &spec.ingest_token {
                        Some(t) => format!("{}/adapt_{t}", endpoints.otlp),
                        None => endpoints.otlp.clone(),
                    };
                    env.entry("OTEL_EXPORTER_OTLP_ENDPOINT".into())
                        .or_insert(otlp);
                    env.entry("OTEL_EXPORTER_OTLP_PROTOCOL".into())
                        .or_insert_with(|| "http/protobuf".into());
                    // print() reaches the log line by line, as platforms' Python
                    // runtimes run it, not in blocks at exit
                    env.entry("PYTHONUNBUFFERED".into())
                        .or_insert_with(|| "1".into());
                }
                let key = (spec.service.clone(), spec.name.clone());
                (
                    key,
                    Arc::new(Pool::new(Arc::new(spec), http.clone(), logs.clone())),
                )
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
            jaeger_endpoint: endpoints.jaeger,
            jaeger_is_ours: endpoints.jaeger_is_ours,
            stitcher,
            gathered: Default::default(),
            dispatch: Default::default(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pools.is_empty()
    }

    /// The tenant whose data a function's calls are (the default tenant for an unknown
    /// function).
    fn tenant_of(&self, service: &str, function: &str) -> crate::store::keys::Tenant {
        self.pools
            .get(&(service.to_owned(), function.to_owned()))
            .map_or(DEFAULT_TENANT, |p| p.spec.tenant_id)
    }

    /// Where `spec`'s function sends its Jaeger spans.
    fn jaeger_endpoint_for(&self, spec: &FunctionSpec) -> String {
        match (&spec.ingest_token, self.jaeger_is_ours) {
            (Some(t), true) => match self.jaeger_endpoint.strip_suffix("/api/traces") {
                Some(base) => format!("{base}/adapt_{t}/api/traces"),
                None => self.jaeger_endpoint.clone(),
            },
            _ => self.jaeger_endpoint.clone(),
        }
    }

    /// Store the platform's own spans in the background, with the bounded retries of
    /// `with_retries` (counted there): a caller's answer never waits for them.
    fn store_spans(
        &self,
        tenant: crate::store::keys::Tenant,
        spans: Vec<crate::model::Span>,
        failed: &'static str,
    ) {
        let pipeline = self.pipeline.clone();
        let metrics = Arc::clone(&self.metrics);
        tokio::spawn(async move {
            let write = || async {
                pipeline
                    .submit(tenant, spans.clone(), Partial::RejectBatch)
                    .await
                    .map(|_| ())
            };
            if let Err(e) = with_retries(&metrics, write).await {
                tracing::error!(error = %e, "{failed}");
            }
        });
    }

    /// Subscribe a listener to a function's telemetry events. `None`: no such
    /// function; `Some(Err)`: refused (the function has all the listeners it may).
    pub fn subscribe(
        &self,
        service: &str,
        function: &str,
        sub: events::Subscription,
    ) -> Option<Result<(), String>> {
        let pool = self.pools.get(&(service.to_owned(), function.to_owned()))?;
        let url = sub.url.clone();
        let done = pool.events.subscribe(sub);
        if done.is_ok() {
            tracing::info!(function = %pool.spec.platform_service(), url = %url, "telemetry listener subscribed");
        }
        Some(done)
    }

    /// The declared functions, by service and name.
    pub fn functions(&self, tenant: crate::store::keys::Tenant) -> Vec<serde_json::Value> {
        let mut specs: Vec<&FunctionSpec> = self
            .pools
            .values()
            .map(|p| &*p.spec)
            .filter(|s| s.tenant_id == tenant)
            .collect();
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

    /// The trace `req` belongs to and whether it is sampled; intelligent sampling's
    /// decisions are counted per URL class.
    fn decide_trace(&self, req: &InvokeRequest, spec: &FunctionSpec) -> context::TraceDecision {
        let d = decide_trace(
            &req.headers,
            &self.sampler,
            &spec.platform_service(),
            req.trigger.route(),
        );
        if let Some(c) = d.class {
            self.metrics.gateway_sampled(c.as_str(), d.sampled);
        }
        d
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
        self.store_call(
            DEFAULT_TENANT,
            CallFacts {
                record: None,
                function,
                at_us: now_us().saturating_sub(call.latency_us),
                call,
                platform_concurrent: self.running(),
            },
        );
    }

    pub async fn invoke(&self, req: InvokeRequest) -> Result<InvokeResponse, InvokeError> {
        self.invoke_as(req, None).await
    }

    /// Run a call; `attempt` when it is an attempt of a queued asynchronous call (its
    /// request id is the call's).
    pub async fn invoke_as(
        &self,
        req: InvokeRequest,
        attempt: Option<queue::AsyncCall>,
    ) -> Result<InvokeResponse, InvokeError> {
        let started = Instant::now();
        let Some(pool) = self.pools.get(&(req.service.clone(), req.function.clone())) else {
            self.refused(&req.service, &req.function, started.elapsed());
            return Err(InvokeError::NotFound(req.service, req.function));
        };
        let spec = &pool.spec;
        let start_us = now_us();
        let request_id = attempt.as_ref().map_or_else(
            || format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)),
            |a| a.request_id.clone(),
        );
        // Held until the call is answered: the platform-wide limit.
        let permit = Arc::clone(&self.limit).try_acquire_owned().ok();
        let platform_concurrent = self.running();
        let decision = self.decide_trace(&req, spec);
        let mut baggage = baggage(&req.headers);
        // how often this call chain has come through the function, this call included,
        // carried to the function in the baggage it passes on
        let depth = recursion::depth(&mut baggage, &spec.platform_service());
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

        if spec.max_recursion_depth > 0 && depth > spec.max_recursion_depth {
            self.metrics.recursion_dropped(&spec.platform_service());
            self.record(
                spec,
                &request_id,
                start_us,
                started.elapsed(),
                &decision,
                invoke_span,
                flags,
                Outcomes {
                    error_type: Some(record::RECURSION_ERROR),
                    status_code: 400,
                    operation: operation_of(trigger_name),
                    platform_concurrent,
                    attempt: attempt.clone(),
                    ..Outcomes::default()
                },
            );
            return Err(InvokeError::Recursive {
                service: req.service,
                function: req.function,
                depth,
                request_id,
            });
        }
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
                    attempt: attempt.clone(),
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
            self.stitcher.register(
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
                        attempt: attempt.clone(),
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
        let provision = provision::facts(spec, pool, lease.as_ref().ok());
        let tracing_ctx = events::Tracing {
            trace_id: decision.trace_id,
            span_id: invocation_span,
            parent_id: invoke_span,
            sampled: decision.sampled,
        };
        if let Some(c) = &cold {
            let instance = lease.as_ref().map(|l| l.instance.id.as_str()).unwrap_or("");
            lifecycle::init(&pool.events, c, spec, &request_id, instance, lease.is_ok());
        }
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
                let start = events::Event::Start {
                    at: run_start,
                    request_id: request_id.clone(),
                    tracing: tracing_ctx,
                };
                match &lease.instance.log {
                    Some(log) => log.start(&request_id, || pool.events.offer(&start)),
                    None => pool.events.offer(&start),
                }
                let result = self.call(spec, lease, &req, outbound, &mut peak_rss).await;
                run = Some(Timed {
                    start_us: run_start,
                    duration_us: run_clock.elapsed().as_micros() as u64,
                });
                result
            }
        };
        if let (Ok(lease), Some(run)) = (&lease, run) {
            // after the function's last lines, when its output is captured
            let ended = lifecycle::end_events(&lifecycle::Ended {
                request_id: &request_id,
                instance: &lease.instance.id,
                run_start: run.start_us,
                run_end: run.start_us + run.duration_us,
                error_type: error.as_ref().map(|(k, _)| *k),
                produced_bytes: body.len() as u64,
                report: events::Report {
                    duration_ms: run.duration_us as f64 / 1000.0,
                    billed_ms: run.duration_us.div_ceil(1000),
                    memory_mb: spec.memory_mb,
                    max_memory_used_mb: peak_rss as f64 / (1024.0 * 1024.0),
                    init_duration_ms: cold.as_ref().map(lifecycle::init_ms),
                },
                tracing: tracing_ctx,
            });
            let subs = Arc::clone(&pool.events);
            let send = move || ended.iter().for_each(|e| subs.offer(e));
            match &lease.instance.log {
                Some(log) => log.end(&request_id, send),
                None => send(),
            }
        }
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
                hostname: Some(record::hostname()),
                ip: Some(ip_address.as_str()),
                invoke,
                cold: cold.as_ref(),
                run,
                error_type,
                error_message: error.as_ref().map(|(_, m)| m.as_str()),
                resource_mode: provision.mode,
                warnings: &decision.warnings,
                context_format: decision.format,
                baggage: &baggage,
            });
            self.store_spans(
                spec.tenant_id,
                spans,
                "platform spans not stored after retries",
            );
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
                attempt,
                provision,
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
}
