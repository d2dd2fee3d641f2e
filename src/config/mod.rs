//! Configuration: a TOML file, then `FCTRACE_*` environment variables, then flags, each
//! overriding the one before; checked once at start into [`Settings`].
//!
//! [`ServeArgs`] holds the flags (clap reads the environment variable of each flag too),
//! [`FileConfig`] the file, and [`Settings::resolve`] merges them over the defaults and
//! validates, naming the key that is wrong.

use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

mod args;

pub use args::{LogFormat, ServeArgs};

use crate::duration;
use crate::platform::functions::{self, FunctionSpec, FunctionsFile, RawFunction};
use crate::receive::Limits;
use crate::sampling::tail::{TailConfig, TailSettings};

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{key}: {message}")]
    Invalid { key: &'static str, message: String },
    #[error("{0}")]
    Section(String),
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

/// The config file: the same settings as the flags, by the same names.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub collector_http_addr: Option<String>,
    pub otlp_http_addr: Option<String>,
    pub otlp_grpc_addr: Option<String>,
    pub query_addr: Option<String>,
    pub gateway_addr: Option<String>,
    pub sampling_addr: Option<String>,
    pub agent_compact_addr: Option<String>,
    pub agent_binary_addr: Option<String>,
    pub jaeger_grpc_addr: Option<String>,
    pub zipkin_addr: Option<String>,
    pub sampling_strategies: Option<PathBuf>,
    pub tenants: Option<PathBuf>,
    pub role: Option<crate::cluster::Role>,
    pub nats_url: Option<String>,
    pub partitions: Option<u32>,
    pub replicas: Option<usize>,
    pub node_id: Option<String>,
    pub internal_addr: Option<String>,
    pub advertise_addr: Option<String>,
    pub platform_tracing_service: Option<String>,
    pub service_spans_per_second: Option<f64>,
    pub max_in_flight_spans: Option<usize>,
    pub function_jaeger_endpoint: Option<String>,
    pub max_event_bytes: Option<usize>,
    pub listen_all: Option<bool>,
    pub retention: Option<String>,
    pub max_body_bytes: Option<usize>,
    pub sync_writes: Option<bool>,
    pub queue_bytes: Option<usize>,
    pub log_format: Option<LogFormat>,
    pub ingest_memory_bytes: Option<usize>,
    pub max_request_memory_bytes: Option<usize>,
    pub max_spans_per_request: Option<usize>,
    pub max_tags_per_span: Option<usize>,
    pub max_logs_per_span: Option<usize>,
    pub max_attribute_depth: Option<usize>,
    pub body_timeout: Option<String>,
    pub max_connections: Option<usize>,
    pub max_future_skew: Option<String>,
    pub max_concurrent_invocations: Option<usize>,
    pub function_log_bytes: Option<usize>,
    pub metrics_retention: Option<String>,
    pub instance_metrics_interval: Option<String>,
    pub alarms: Option<PathBuf>,
    pub alarm_interval: Option<String>,
    pub admin_token: Option<String>,
    pub admin_token_file: Option<PathBuf>,
    pub min_free_disk_bytes: Option<u64>,
    #[serde(default)]
    pub functions: Vec<RawFunction>,
    #[serde(default)]
    pub sampling: SamplingSection,
}

/// `[sampling]` in the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingSection {
    #[serde(default)]
    pub tail: TailConfig,
    #[serde(default)]
    pub intelligent: crate::sampling::intelligent::IntelligentConfig,
    #[serde(default)]
    pub adaptive: crate::sampling::adaptive::AdaptiveFile,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }
}

/// Checked settings the daemon runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub collector_http_addr: String,
    pub otlp_http_addr: String,
    pub otlp_grpc_addr: String,
    pub query_addr: String,
    pub gateway_addr: String,
    pub sampling_addr: String,
    pub agent_compact_addr: String,
    pub agent_binary_addr: String,
    pub jaeger_grpc_addr: String,
    pub zipkin_addr: String,
    pub sampling_strategies: Option<PathBuf>,
    pub tenants: Option<PathBuf>,
    /// This process's part in a cluster, and the cluster (none for `all`).
    pub role: crate::cluster::Role,
    pub cluster: Option<crate::cluster::ClusterSettings>,
    /// (certificate, key, client CA) when the listeners speak TLS.
    pub tls: Option<(PathBuf, PathBuf, Option<PathBuf>)>,
    pub platform_tracing_service: String,
    pub service_spans_per_second: f64,
    pub max_in_flight_spans: usize,
    pub tail_sampling: Option<TailSettings>,
    /// Intelligent sampling for the gateway's fresh traces, when on.
    pub gateway_intelligent: Option<crate::sampling::intelligent::IntelligentSettings>,
    /// Adaptive sampling's settings, when it is on (then there is no strategies file).
    pub adaptive: Option<crate::sampling::adaptive::AdaptiveOptions>,
    pub functions: Vec<FunctionSpec>,
    pub function_jaeger_endpoint: Option<String>,
    pub max_event_bytes: usize,
    pub retention: Duration,
    pub max_body_bytes: usize,
    pub sync_writes: bool,
    pub queue_bytes: usize,
    pub log_format: LogFormat,
    pub ingest_memory_bytes: usize,
    pub max_request_memory_bytes: usize,
    pub limits: Limits,
    pub body_timeout: Duration,
    pub max_connections: usize,
    pub max_future_skew: Duration,
    pub max_concurrent_invocations: usize,
    pub function_log_bytes: u64,
    pub metrics_retention: Duration,
    pub instance_metrics_interval: Duration,
    pub alarms: Option<PathBuf>,
    pub alarm_interval: Duration,
    pub admin_token: Option<String>,
    pub min_free_disk_bytes: u64,
}

pub const DEFAULT_MAX_BODY_BYTES: usize = 20 << 20;

/// A listen address: the flag, else the file, else the default port on `host`.
fn addr(
    key: &'static str,
    flag: &Option<String>,
    file: Option<String>,
    host: &str,
    port: u16,
) -> Result<String, ConfigError> {
    check_addr(
        key,
        flag.clone()
            .or(file)
            .unwrap_or_else(|| format!("{host}:{port}")),
    )
}

fn check_addr(key: &'static str, addr: String) -> Result<String, ConfigError> {
    match addr.to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(_)) => Ok(addr),
        Ok(None) => Err(invalid(key, format!("{addr:?} resolves to no address"))),
        Err(e) => Err(invalid(key, format!("{addr:?} is not HOST:PORT ({e})"))),
    }
}

/// The role and, for any role but `all`, the cluster it is part of.
fn cluster_settings(
    args: &ServeArgs,
    file: &FileConfig,
    host: &str,
) -> Result<
    (
        crate::cluster::Role,
        Option<crate::cluster::ClusterSettings>,
    ),
    ConfigError,
> {
    use crate::cluster::{ClusterSettings, Role};
    let role = args.role.or(file.role).unwrap_or_default();
    let urls = args.nats_url.clone().or(file.nats_url.clone());
    if role == Role::All {
        return Ok((role, None));
    }
    let urls: Vec<String> = urls
        .ok_or_else(|| invalid("nats_url", "a cluster role needs the NATS servers"))?
        .split(',')
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty())
        .collect();
    if urls.is_empty() {
        return Err(invalid("nats_url", "no NATS server given"));
    }
    let partitions = args.partitions.or(file.partitions).unwrap_or(16);
    if !(1..=1024).contains(&partitions) {
        return Err(invalid("partitions", "between 1 and 1024"));
    }
    let replicas = args.replicas.or(file.replicas).unwrap_or(3);
    if !(1..=5).contains(&replicas) {
        return Err(invalid("replicas", "between 1 and 5 (JetStream's limit)"));
    }
    let node_id = args
        .node_id
        .clone()
        .or(file.node_id.clone())
        .unwrap_or_else(|| format!("{role:?}").to_lowercase());
    if node_id.is_empty()
        || !node_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(invalid("node_id", "letters, digits, '-' or '_'"));
    }
    Ok((
        role,
        Some(ClusterSettings {
            nats_urls: urls,
            partitions,
            replicas,
            node_id,
            internal_addr: args
                .internal_addr
                .clone()
                .or(file.internal_addr.clone())
                .unwrap_or_else(|| format!("{host}:16689")),
            advertise_addr: args.advertise_addr.clone().or(file.advertise_addr.clone()),
        }),
    ))
}

impl Settings {
    /// Merge flags (and their env vars) over the file over the defaults, and check.
    pub fn resolve(args: &ServeArgs) -> Result<Settings, ConfigError> {
        let file = match &args.config {
            Some(p) => FileConfig::load(p)?,
            None => FileConfig::default(),
        };
        let host = if args.listen_all.or(file.listen_all).unwrap_or(false) {
            "0.0.0.0"
        } else {
            "127.0.0.1"
        };
        let (role, cluster) = cluster_settings(args, &file, host)?;
        let retention_text = args
            .retention
            .clone()
            .or(file.retention)
            .unwrap_or_else(|| "72h".into());
        let retention =
            duration::parse(&retention_text).map_err(|e| invalid("retention", e.to_string()))?;
        if retention < Duration::from_secs(1) {
            return Err(invalid("retention", "must be at least 1s"));
        }
        let max_body_bytes = args
            .max_body_bytes
            .or(file.max_body_bytes)
            .unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if max_body_bytes == 0 {
            return Err(invalid("max_body_bytes", "must be greater than 0"));
        }
        let intelligent = file
            .sampling
            .intelligent
            .check()
            .map_err(ConfigError::Section)?;
        let tail_sampling = file
            .sampling
            .tail
            .check(&intelligent)
            .map_err(ConfigError::Section)?;
        let gateway_intelligent = file.sampling.intelligent.gateway.then_some(intelligent);
        let adaptive = crate::sampling::adaptive::AdaptiveOptions::resolve(
            &args.adaptive,
            &file.sampling.adaptive,
        )
        .map_err(|(key, message)| invalid(key, message))?;
        if adaptive.is_some()
            && args
                .sampling_strategies
                .clone()
                .or(file.sampling_strategies.clone())
                .is_some()
        {
            return Err(invalid(
                "sampling_adaptive",
                "adaptive sampling computes the rules itself: give it or --sampling-strategies, not both",
            ));
        }
        let mut raw_functions = file.functions;
        if let Some(path) = &args.functions {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            let extra: FunctionsFile = toml::from_str(&text).map_err(|e| ConfigError::Parse {
                path: path.clone(),
                message: e.to_string(),
            })?;
            raw_functions.extend(extra.functions);
        }
        let functions =
            functions::check(&raw_functions).map_err(|e| ConfigError::Section(e.to_string()))?;
        let queue_bytes = args.queue_bytes.or(file.queue_bytes).unwrap_or(128 << 20);
        let service_spans_per_second = args
            .service_spans_per_second
            .or(file.service_spans_per_second)
            .unwrap_or(0.0);
        if !(service_spans_per_second >= 0.0 && service_spans_per_second.is_finite()) {
            return Err(invalid(
                "service_spans_per_second",
                "must be 0 (no limit) or a positive number",
            ));
        }
        if queue_bytes < 1 << 20 {
            return Err(invalid("queue_bytes", "must be at least 1048576 (1 MiB)"));
        }
        let ingest_memory_bytes = args
            .ingest_memory_bytes
            .or(file.ingest_memory_bytes)
            .unwrap_or(512 << 20);
        let max_request_memory_bytes = args
            .max_request_memory_bytes
            .or(file.max_request_memory_bytes)
            .unwrap_or(160 << 20)
            .min(ingest_memory_bytes);
        if max_request_memory_bytes < 1 << 20 {
            return Err(invalid(
                "max_request_memory_bytes",
                "must be at least 1048576 (1 MiB), and ingest_memory_bytes too",
            ));
        }
        let defaults = Limits::default();
        let positive = |key: &'static str, v: Option<usize>, d: usize| match v.unwrap_or(d) {
            0 => Err(invalid(key, "must be greater than 0")),
            n => Ok(n),
        };
        let limits = Limits {
            max_spans: positive(
                "max_spans_per_request",
                args.max_spans_per_request.or(file.max_spans_per_request),
                defaults.max_spans,
            )?,
            max_tags: positive(
                "max_tags_per_span",
                args.max_tags_per_span.or(file.max_tags_per_span),
                defaults.max_tags,
            )?,
            max_logs: positive(
                "max_logs_per_span",
                args.max_logs_per_span.or(file.max_logs_per_span),
                defaults.max_logs,
            )?,
            max_depth: positive(
                "max_attribute_depth",
                args.max_attribute_depth.or(file.max_attribute_depth),
                defaults.max_depth,
            )?,
        };
        let duration_of = |key: &'static str, v: Option<String>, d: &str| {
            duration::parse(v.as_deref().unwrap_or(d)).map_err(|e| invalid(key, e.to_string()))
        };
        let body_timeout = duration_of(
            "body_timeout",
            args.body_timeout.clone().or(file.body_timeout),
            "30s",
        )?;
        let max_future_skew = duration_of(
            "max_future_skew",
            args.max_future_skew.clone().or(file.max_future_skew),
            "1h",
        )?;
        let metrics_retention = duration_of(
            "metrics_retention",
            args.metrics_retention.clone().or(file.metrics_retention),
            "31d",
        )?;
        let instance_metrics_interval = duration_of(
            "instance_metrics_interval",
            args.instance_metrics_interval
                .clone()
                .or(file.instance_metrics_interval),
            "10s",
        )?;
        if instance_metrics_interval < Duration::from_millis(100) {
            return Err(invalid(
                "instance_metrics_interval",
                "must be at least 100ms",
            ));
        }
        let alarm_interval = duration_of(
            "alarm_interval",
            args.alarm_interval.clone().or(file.alarm_interval),
            "60s",
        )?;
        if alarm_interval < Duration::from_millis(100) {
            return Err(invalid("alarm_interval", "must be at least 100ms"));
        }
        let max_concurrent_invocations = positive(
            "max_concurrent_invocations",
            args.max_concurrent_invocations
                .or(file.max_concurrent_invocations),
            300,
        )?;
        let function_log_bytes = positive(
            "function_log_bytes",
            args.function_log_bytes.or(file.function_log_bytes),
            1 << 20,
        )? as u64;
        let max_connections = positive(
            "max_connections",
            args.max_connections.or(file.max_connections),
            1024,
        )?;
        let admin_token = match (
            args.admin_token.clone().or(file.admin_token),
            args.admin_token_file.clone().or(file.admin_token_file),
        ) {
            (Some(t), _) => Some(t),
            (None, Some(path)) => Some(
                std::fs::read_to_string(&path)
                    .map_err(|source| ConfigError::Read { path, source })?
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_owned(),
            ),
            (None, None) => None,
        };
        if admin_token.as_deref().is_some_and(|t| t.len() < 16) {
            return Err(invalid(
                "admin_token",
                "must be at least 16 characters (admin endpoints are off without one)",
            ));
        }
        Ok(Settings {
            data_dir: args
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("./data")),
            collector_http_addr: addr(
                "collector_http_addr",
                &args.collector_http_addr,
                file.collector_http_addr,
                host,
                14268,
            )?,
            otlp_http_addr: addr(
                "otlp_http_addr",
                &args.otlp_http_addr,
                file.otlp_http_addr,
                host,
                4318,
            )?,
            otlp_grpc_addr: addr(
                "otlp_grpc_addr",
                &args.otlp_grpc_addr,
                file.otlp_grpc_addr,
                host,
                4317,
            )?,
            query_addr: addr("query_addr", &args.query_addr, file.query_addr, host, 16686)?,
            gateway_addr: addr(
                "gateway_addr",
                &args.gateway_addr,
                file.gateway_addr,
                host,
                8000,
            )?,
            sampling_addr: addr(
                "sampling_addr",
                &args.sampling_addr,
                file.sampling_addr,
                host,
                5778,
            )?,
            agent_compact_addr: addr(
                "agent_compact_addr",
                &args.agent_compact_addr,
                file.agent_compact_addr,
                host,
                6831,
            )?,
            agent_binary_addr: addr(
                "agent_binary_addr",
                &args.agent_binary_addr,
                file.agent_binary_addr,
                host,
                6832,
            )?,
            jaeger_grpc_addr: addr(
                "jaeger_grpc_addr",
                &args.jaeger_grpc_addr,
                file.jaeger_grpc_addr,
                host,
                14250,
            )?,
            zipkin_addr: addr(
                "zipkin_addr",
                &args.zipkin_addr,
                file.zipkin_addr,
                host,
                9411,
            )?,
            tenants: args.tenants.clone().or(file.tenants.clone()),
            role,
            cluster,
            tls: args
                .tls_cert
                .clone()
                .zip(args.tls_key.clone())
                .map(|(c, k)| (c, k, args.tls_client_ca.clone())),
            sampling_strategies: args
                .sampling_strategies
                .clone()
                .or(file.sampling_strategies),
            tail_sampling,
            gateway_intelligent,
            adaptive,
            platform_tracing_service: args
                .platform_tracing_service
                .clone()
                .or(file.platform_tracing_service)
                .unwrap_or_else(|| crate::sampling::DEFAULT_PLATFORM_SERVICE.to_owned()),
            service_spans_per_second,
            max_in_flight_spans: args
                .max_in_flight_spans
                .or(file.max_in_flight_spans)
                .unwrap_or(1_000_000),
            functions,
            function_jaeger_endpoint: args
                .function_jaeger_endpoint
                .clone()
                .or(file.function_jaeger_endpoint),
            max_event_bytes: args
                .max_event_bytes
                .or(file.max_event_bytes)
                .unwrap_or(6 << 20),
            retention,
            max_body_bytes,
            sync_writes: args.sync_writes.or(file.sync_writes).unwrap_or(true),
            queue_bytes,
            log_format: args.log_format.or(file.log_format).unwrap_or_default(),
            ingest_memory_bytes,
            max_request_memory_bytes,
            limits,
            body_timeout,
            max_connections,
            max_future_skew,
            max_concurrent_invocations,
            function_log_bytes,
            metrics_retention,
            instance_metrics_interval,
            alarms: args.alarms.clone().or(file.alarms),
            alarm_interval,
            admin_token,
            min_free_disk_bytes: args
                .min_free_disk_bytes
                .or(file.min_free_disk_bytes)
                .unwrap_or(64 << 20),
        })
    }
}

#[cfg(test)]
mod tests;
