//! Listeners and routes: binds every port, writes `ports.json`, and drains on SIGTERM.
//!
//! Handlers here parse the request, call the receiver, pipeline or query side, and map the
//! result to a response; no business logic lives in this module. Start-up order: open the
//! store, start the writer, bind, write `ports.json`, become ready. Shutdown order (on
//! SIGTERM or Ctrl-C): not ready, stop accepting and finish in-flight requests, close the
//! pipeline so the writer commits what is queued, flush RocksDB, exit.

mod agent;
mod alarms_api;
mod background;
mod cluster;
mod collector;
mod gateway;
mod grpc;
mod instances_api;
mod internal_api;
mod invocations_api;
mod jaeger_grpc;
mod json;
mod listener;
mod logs_api;
mod metrics_api;
mod otlp;
mod otlp_grpc;
mod query_api;
mod query_grpc;
mod red_api;
mod sampling_api;
mod telemetry_api;
pub mod tenant;
mod tls;
mod ui;
mod zipkin;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::budget::MemoryBudget;
use crate::config::Settings;
use crate::error::ErrorCode;
use crate::pipeline::{AdmissionOptions, Pipeline, PipelineOptions};
use crate::platform::stitch::Stitcher;
use crate::platform::Platform;
use crate::query::Query;
use crate::receive;
use crate::receive::body::BodyLimits;
use crate::sampling::{HeadSampler, Rules};
use crate::store::{Store, StoreError, StoreOptions};
use crate::telemetry::Metrics;
use background::{adaptive_loop, adaptive_saved, alarm_tasks, retention_loop};

#[derive(Debug, Error)]
pub enum ServeError {
    #[error("cannot create data directory {0}: {1}")]
    DataDir(String, std::io::Error),
    #[error("cannot open store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr} ({name}): {source}")]
    Bind {
        name: &'static str,
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot write {0}: {1}")]
    Ports(String, std::io::Error),
    #[error("sampling strategies: {0}")]
    Sampling(String),
    #[error("tenants: {0}")]
    Tenants(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("cluster: {0}")]
    Cluster(String),
    #[error("alarm rules {0}: {1}")]
    Alarms(String, String),
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub pipeline: Pipeline,
    pub query: Query,
    pub metrics: Arc<Metrics>,
    pub settings: Arc<Settings>,
    pub ready: Arc<AtomicBool>,
    pub sampler: Arc<HeadSampler>,
    pub store: Arc<Store>,
    /// The ingest memory budget every receiving request charges.
    pub budget: Arc<MemoryBudget>,
    /// Who may write and read what (off without `--tenants`).
    pub tenancy: Arc<crate::tenancy::Tenancy>,
    /// This node's part in a cluster, in a cluster role (readiness asks it).
    pub cluster: Option<Arc<crate::cluster::node::Node>>,
}

impl AppState {
    pub fn body_limits(&self) -> BodyLimits {
        BodyLimits {
            max_bytes: self.settings.max_body_bytes,
            timeout: self.settings.body_timeout,
        }
    }
}

/// A plain-text error answer with the status its code maps to; retriable errors say when
/// to come back.
pub fn text_error(code: ErrorCode, message: String) -> Response {
    let status =
        StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, message).into_response();
    if let Some(after) = code.retry_after() {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static(after));
    }
    resp
}

/// Run the daemon until SIGTERM or Ctrl-C, then drain and return.
pub async fn serve(settings: Settings) -> Result<(), ServeError> {
    std::fs::create_dir_all(&settings.data_dir)
        .map_err(|e| ServeError::DataDir(settings.data_dir.display().to_string(), e))?;
    let started = std::time::Instant::now();
    let store_opts = StoreOptions {
        retention: settings.retention,
        sync_writes: settings.sync_writes,
        min_free_disk_bytes: settings.min_free_disk_bytes,
        future_skew: settings.max_future_skew,
        metrics_retention: settings.metrics_retention,
        ..StoreOptions::default()
    };
    let store = Arc::new(Store::open(&settings.data_dir.join("db"), &store_opts)?);
    tracing::info!(
        dir = %settings.data_dir.display(),
        services = store.services(0).len(),
        took_ms = started.elapsed().as_millis() as u64,
        "store opened"
    );
    let metrics = Arc::new(Metrics::new());
    let tenancy = Arc::new(match &settings.tenants {
        None => crate::tenancy::Tenancy::off(Arc::clone(&store)),
        Some(path) => {
            crate::tenancy::Tenancy::load(path, Arc::clone(&store)).map_err(ServeError::Tenants)?
        }
    });
    let rules = Arc::new(
        Rules::load(settings.sampling_strategies.as_deref()).map_err(ServeError::Sampling)?,
    );
    let adaptive = settings.adaptive.as_ref().map(|opts| {
        Arc::new(crate::sampling::adaptive::Adaptive::new(
            opts.clone(),
            Arc::clone(&rules),
            adaptive_saved(&store),
        ))
    });
    // Shared by the pipeline (which applies it to every batch) and the platform (which
    // registers each invocation in it).
    let stitcher = Arc::new(Stitcher::default());
    let node = cluster::connect(&settings, &metrics).await?;
    let (pipeline, writer) = Pipeline::start(
        Arc::clone(&store),
        PipelineOptions {
            queue_bytes: settings.queue_bytes,
            admission: AdmissionOptions {
                service_spans_per_second: settings.service_spans_per_second,
                max_in_flight_spans: settings.max_in_flight_spans,
            },
            tail: settings.tail_sampling.clone(),
            tenant_quotas: tenancy.is_on().then(|| {
                let tenancy = Arc::clone(&tenancy);
                let store = Arc::clone(&store);
                crate::pipeline::TenantQuotas(Arc::new(move |t| {
                    let spec = tenancy.by_id(t)?;
                    if spec.spans_per_second.is_none() && spec.max_stored_bytes.is_none() {
                        return None;
                    }
                    Some(crate::pipeline::TenantQuota {
                        name: spec.name.clone(),
                        spans_per_second: spec.spans_per_second,
                        max_stored_bytes: spec.max_stored_bytes,
                        stored_bytes: match spec.max_stored_bytes {
                            Some(_) => store.stored_bytes(t),
                            None => 0,
                        },
                    })
                }))
            }),
            adaptive: adaptive.clone(),
            retention: settings.retention,
            max_future_skew: settings.max_future_skew,
            log: node.as_ref().map(|n| {
                crate::cluster::LogHandle(Arc::clone(&n.log) as Arc<dyn crate::cluster::Log>)
            }),
            ..PipelineOptions::default()
        },
        Arc::clone(&metrics),
        Some(Arc::clone(&stitcher) as Arc<dyn crate::pipeline::Stitch>),
    );
    let mut sampler = HeadSampler::new(Arc::clone(&rules))
        .with_platform_service(&settings.platform_tracing_service);
    if let Some(i) = &settings.gateway_intelligent {
        sampler = sampler.with_intelligent(i.clone());
    }
    let sampler = Arc::new(sampler);
    let alarm_rules = match &settings.alarms {
        None => Vec::new(),
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|text| crate::monitor::alarms::parse(&text))
            .map_err(|e| ServeError::Alarms(path.display().to_string(), e))?,
    };
    let (alarms, alarm_queue) = crate::monitor::alarms::Alarms::new(alarm_rules);
    let settings = Arc::new(settings);
    let state = AppState {
        pipeline,
        query: cluster::query(&settings, node.as_ref(), &store),
        metrics,
        settings: Arc::clone(&settings),
        ready: Arc::new(AtomicBool::new(false)),
        sampler: Arc::clone(&sampler),
        store: Arc::clone(&store),
        budget: MemoryBudget::new(
            settings.ingest_memory_bytes,
            settings.max_request_memory_bytes,
        ),
        tenancy: Arc::clone(&tenancy),
        cluster: node.clone(),
    };

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut bound: BTreeMap<&'static str, String> = BTreeMap::new();
    let collector_listener =
        bind("collector_http", &settings.collector_http_addr, &mut bound).await?;
    let otlp_http_listener = bind("otlp_http", &settings.otlp_http_addr, &mut bound).await?;
    let query_listener = bind("query", &settings.query_addr, &mut bound).await?;
    let gateway_listener = bind("gateway", &settings.gateway_addr, &mut bound).await?;
    let grpc_listener = bind("otlp_grpc", &settings.otlp_grpc_addr, &mut bound).await?;
    let sampling_listener = bind("sampling", &settings.sampling_addr, &mut bound).await?;
    let jaeger_grpc_listener = bind("jaeger_grpc", &settings.jaeger_grpc_addr, &mut bound).await?;
    let zipkin_listener = bind("zipkin", &settings.zipkin_addr, &mut bound).await?;
    let agent_compact = bind_udp("agent_compact", &settings.agent_compact_addr, &mut bound)?;
    let agent_binary = bind_udp("agent_binary", &settings.agent_binary_addr, &mut bound)?;
    let internal_listener = match (&settings.cluster, settings.role) {
        (Some(c), crate::cluster::Role::Store) => {
            Some(bind("internal", &c.internal_addr, &mut bound).await?)
        }
        _ => None,
    };
    let internal_addr = cluster::advertised(
        &settings,
        internal_listener.as_ref().and_then(|l| l.local_addr().ok()),
    );

    // Functions send their spans to this daemon's collectors, as they can reach them.
    let reachable = |l: &tokio::net::TcpListener, fallback: u16| {
        let mut addr = l
            .local_addr()
            .unwrap_or_else(|_| ([127, 0, 0, 1], fallback).into());
        if addr.ip().is_unspecified() {
            addr.set_ip([127, 0, 0, 1].into());
        }
        addr
    };
    let endpoints = crate::platform::Endpoints {
        jaeger_is_ours: settings.function_jaeger_endpoint.is_none(),
        jaeger: settings
            .function_jaeger_endpoint
            .clone()
            .unwrap_or_else(|| {
                format!(
                    "http://{}/api/traces",
                    reachable(&collector_listener, 14268)
                )
            }),
        otlp: format!("http://{}", reachable(&otlp_http_listener, 4318)),
    };
    let functions =
        tenant::assign_functions(&settings.functions, &tenancy).map_err(ServeError::Tenants)?;
    let platform = Arc::new(Platform::new(
        functions,
        state.pipeline.clone(),
        Arc::clone(&state.metrics),
        Arc::clone(&sampler),
        stitcher,
        crate::platform::PlatformOptions {
            endpoints,
            max_concurrent: settings.max_concurrent_invocations,
            log_bytes_per_minute: settings.function_log_bytes,
        },
    ));

    let otlp_http = Router::new()
        .route("/v1/traces", axum::routing::post(otlp::post_traces))
        .route(
            "/{adapt}/v1/traces",
            axum::routing::post(otlp::post_adapt_traces),
        )
        .route(
            "/{adapt}/api/otlp/traces",
            axum::routing::post(otlp::post_adapt_traces),
        )
        .with_state(state.clone());
    // (listener, routes, whether it is an ingest port)
    let mut query_routes = query_api::router(state.clone())
        .merge(instances_api::router(state.clone(), Arc::clone(&platform)))
        .merge(alarms_api::router(state.clone(), Arc::clone(&alarms)));
    query_routes = match settings.role {
        crate::cluster::Role::Query => {
            query_routes.layer(axum::middleware::from_fn(cluster::query_node_routes))
        }
        crate::cluster::Role::Ingest | crate::cluster::Role::Store => {
            query_routes.layer(axum::middleware::from_fn(cluster::no_alarms_here))
        }
        crate::cluster::Role::All => query_routes,
    };
    let http_listeners = [
        (
            collector_listener,
            collector::router(state.clone())
                .merge(telemetry_api::router(state.clone(), Arc::clone(&platform))),
            true,
        ),
        (otlp_http_listener, otlp_http, true),
        (query_listener, query_routes, false),
        (
            gateway_listener,
            gateway::router(
                Arc::clone(&platform),
                BodyLimits {
                    max_bytes: settings.max_event_bytes,
                    timeout: settings.body_timeout,
                },
                Arc::clone(&state.budget),
            ),
            false,
        ),
        (
            sampling_listener,
            sampling_api::router(state.clone()),
            false,
        ),
        (zipkin_listener, zipkin::router(state.clone()), true),
    ];
    let mut tasks = Vec::new();
    let max_connections = settings.max_connections;
    let tls = match &settings.tls {
        None => None,
        Some((cert, key, ca)) => Some(Arc::new(
            tls::Tls::new(cert, key, ca.as_deref()).map_err(ServeError::Tls)?,
        )),
    };
    if let Some(t) = &tls {
        tasks.push(tokio::spawn({
            let (t, stop) = (Arc::clone(t), stop_rx.clone());
            async move {
                t.watch(stop).await;
                Ok(())
            }
        }));
    }
    // every listener speaks TLS when configured; the ingest ones may require client
    // certificates
    let limited = |l: TcpListener, ingest: bool| match &tls {
        None => listener::Limited::new(l, max_connections),
        Some(t) => {
            let acceptor = if ingest { &t.ingest } else { &t.plain };
            listener::Limited::with_tls(l, max_connections, acceptor.clone())
        }
    };
    for (listener, router, ingest) in http_listeners {
        tasks.push(tokio::spawn(run_listener(
            limited(listener, ingest),
            router,
            stop_rx.clone(),
        )));
    }
    // plain HTTP on the cluster's own network (see `internal_api`)
    if let Some(l) = internal_listener {
        tasks.push(tokio::spawn(run_listener(
            listener::Limited::new(l, max_connections),
            internal_api::router(state.clone()),
            stop_rx.clone(),
        )));
    }
    // the OTLP/gRPC port also answers Jaeger's gRPC query API
    tasks.push(tokio::spawn(grpc::serve(
        tonic::service::Routes::new(grpc::RawService::<otlp_grpc::Export>::new(state.clone()))
            .add_service(query_grpc::QueryService::new(state.clone())),
        limited(grpc_listener, true),
        stop_rx.clone(),
    )));
    tasks.push(tokio::spawn(grpc::serve(
        tonic::service::Routes::new(grpc::RawService::<jaeger_grpc::PostSpans>::new(
            state.clone(),
        )),
        limited(jaeger_grpc_listener, true),
        stop_rx.clone(),
    )));
    let runtime = tokio::runtime::Handle::current();
    let agents = [
        (
            agent_compact,
            receive::jaeger_thrift::ThriftProtocol::Compact,
        ),
        (agent_binary, receive::jaeger_thrift::ThriftProtocol::Binary),
    ]
    .into_iter()
    .map(|(socket, protocol)| {
        agent::AgentPort::start(socket, protocol, state.clone(), runtime.clone())
    })
    .collect::<Result<Vec<_>, _>>()?;
    let reaper = tokio::spawn(Arc::clone(&platform).reap_loop(stop_rx.clone()));
    let provisioner = tokio::spawn(Arc::clone(&platform).provision_loop(stop_rx.clone()));
    let telemetry_in = tokio::spawn(Arc::clone(&platform).telemetry_loop(stop_rx.clone()));
    // what it has not run when the daemon stops stays queued in the store
    let dispatch =
        tokio::spawn(Arc::clone(&platform).dispatch_loop(Arc::clone(&store), stop_rx.clone()));
    let sampler = tokio::spawn(
        Arc::clone(&platform).sample_loop(settings.instance_metrics_interval, stop_rx.clone()),
    );
    let alarm_tasks = alarm_tasks(&settings, &alarms, alarm_queue, &state, &stop_rx);
    let tail = tokio::spawn(state.pipeline.clone().tail_loop(stop_rx.clone()));
    let adaptive_task =
        adaptive.map(|a| tokio::spawn(adaptive_loop(a, Arc::clone(&store), stop_rx.clone())));
    let rules_watch =
        tokio::spawn(Arc::clone(&rules).watch(Arc::clone(&state.metrics), stop_rx.clone()));
    let tenants_watch = tokio::spawn(Arc::clone(&tenancy).watch(stop_rx.clone()));
    write_ports(&settings.data_dir, &bound)?;

    let retention_task = tokio::spawn(retention_loop(Arc::clone(&store), stop_rx.clone()));
    let node_loop = cluster::run(
        &settings,
        node.as_ref(),
        internal_addr,
        &state.pipeline,
        &stop_rx,
    );
    state.ready.store(true, Ordering::SeqCst);
    tracing::info!(took_ms = started.elapsed().as_millis() as u64, "ready");

    shutdown_signal().await;
    tracing::info!("shutting down: draining requests");
    state.ready.store(false, Ordering::SeqCst);
    let _ = stop_tx.send(true);
    for t in tasks {
        if let Ok(Err(e)) = t.await {
            tracing::warn!(error = %e, "listener ended with an error");
        }
    }
    let _ = tokio::task::spawn_blocking(move || agents.into_iter().for_each(|a| a.stop())).await;
    let _ = retention_task.await;
    if let Some(l) = node_loop {
        let _ = l.await;
    }
    let _ = reaper.await;
    let _ = provisioner.await;
    let _ = telemetry_in.await;
    let _ = dispatch.await;
    let _ = sampler.await;
    for t in alarm_tasks {
        let _ = t.await;
    }
    let _ = rules_watch.await;
    let _ = tenants_watch.await;
    if let Some(t) = adaptive_task {
        let _ = t.await;
    }
    // Held traces are decided and written before the queue closes.
    let _ = tail.await;
    platform.stop_all();
    drop(platform);
    // Every router (and its pipeline handle) is gone: closing the queue lets the writer
    // commit what is left and exit.
    drop(state);
    tokio::task::spawn_blocking(move || writer.join())
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    store.flush()?;
    tracing::info!("stopped");
    Ok(())
}

async fn bind(
    name: &'static str,
    addr: &str,
    bound: &mut BTreeMap<&'static str, String>,
) -> Result<TcpListener, ServeError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind {
            name,
            addr: addr.to_owned(),
            source,
        })?;
    let local = listener.local_addr()?;
    tracing::info!(listener = name, addr = %local, "listening");
    bound.insert(name, local.to_string());
    Ok(listener)
}

fn bind_udp(
    name: &'static str,
    addr: &str,
    bound: &mut BTreeMap<&'static str, String>,
) -> Result<std::net::UdpSocket, ServeError> {
    let socket = std::net::UdpSocket::bind(addr).map_err(|source| ServeError::Bind {
        name,
        addr: addr.to_owned(),
        source,
    })?;
    let local = socket.local_addr()?;
    tracing::info!(listener = name, addr = %local, "listening (udp)");
    bound.insert(name, local.to_string());
    Ok(socket)
}

async fn run_listener(
    listener: listener::Limited,
    router: Router,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
}

/// Write the bound addresses where tests and scripts can find them, atomically.
fn write_ports(dir: &Path, bound: &BTreeMap<&'static str, String>) -> Result<(), ServeError> {
    let path = dir.join("ports.json");
    let tmp = dir.join("ports.json.tmp");
    let mut all: BTreeMap<&str, String> = bound.clone();
    all.insert("pid", std::process::id().to_string());
    let text = serde_json::to_string_pretty(&all).unwrap_or_default();
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|e| ServeError::Ports(path.display().to_string(), e))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
