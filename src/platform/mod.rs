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
mod invoke;
mod lifecycle;
pub mod logs;
mod port;
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
use std::time::Duration;

use axum::http::{HeaderMap, Method, StatusCode};
use bytes::Bytes;
use thiserror::Error;

use crate::clock::now_us;
use crate::monitor::minute::{Call, Outcome};
use crate::pipeline::{with_retries, CallFacts, Partial, Pipeline};
use crate::sampling::HeadSampler;
use crate::store::keys::DEFAULT_TENANT;
use crate::telemetry::Metrics;
use context::decide_trace;
use functions::FunctionSpec;
use instance::Pool;
use logs::LogSink;
use record::{monitor_function, QUALIFIER};
use stitch::Stitcher;

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
}
