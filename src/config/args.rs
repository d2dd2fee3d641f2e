//! The flags of `fctrace serve` (clap reads each one's `FCTRACE_*` environment variable
//! too): what a user can set on the command line, nothing checked yet ([`super::Settings`]
//! does that).

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Flags of `fctrace serve`. Every one also reads `FCTRACE_<NAME>` from the environment.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// TOML config file (keys are the flag names with underscores).
    #[arg(long, env = "FCTRACE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory for the RocksDB data and ports.json [default: ./data]
    #[arg(long, env = "FCTRACE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Jaeger collector HTTP (POST /api/traces) [default: 127.0.0.1:14268]
    #[arg(long, env = "FCTRACE_COLLECTOR_HTTP_ADDR", value_name = "HOST:PORT")]
    pub collector_http_addr: Option<String>,
    /// OTLP/HTTP (POST /v1/traces) [default: 127.0.0.1:4318]
    #[arg(long, env = "FCTRACE_OTLP_HTTP_ADDR", value_name = "HOST:PORT")]
    pub otlp_http_addr: Option<String>,
    /// OTLP/gRPC (TraceService/Export) [default: 127.0.0.1:4317]
    #[arg(long, env = "FCTRACE_OTLP_GRPC_ADDR", value_name = "HOST:PORT")]
    pub otlp_grpc_addr: Option<String>,
    /// Query API, /metrics, /healthz, /readyz [default: 127.0.0.1:16686]
    #[arg(long, env = "FCTRACE_QUERY_ADDR", value_name = "HOST:PORT")]
    pub query_addr: Option<String>,
    /// Invoke gateway (the function platform's API) [default: 127.0.0.1:8000]
    #[arg(long, env = "FCTRACE_GATEWAY_ADDR", value_name = "HOST:PORT")]
    pub gateway_addr: Option<String>,
    /// Remote sampling API (GET /sampling?service=) [default: 127.0.0.1:5778]
    #[arg(long, env = "FCTRACE_SAMPLING_ADDR", value_name = "HOST:PORT")]
    pub sampling_addr: Option<String>,
    /// Jaeger agent UDP, thrift compact (emitBatch) [default: 127.0.0.1:6831]
    #[arg(long, env = "FCTRACE_AGENT_COMPACT_ADDR", value_name = "HOST:PORT")]
    pub agent_compact_addr: Option<String>,
    /// Jaeger agent UDP, thrift binary (emitBatch) [default: 127.0.0.1:6832]
    #[arg(long, env = "FCTRACE_AGENT_BINARY_ADDR", value_name = "HOST:PORT")]
    pub agent_binary_addr: Option<String>,
    /// Jaeger gRPC collector (api_v2 CollectorService/PostSpans) [default: 127.0.0.1:14250]
    #[arg(long, env = "FCTRACE_JAEGER_GRPC_ADDR", value_name = "HOST:PORT")]
    pub jaeger_grpc_addr: Option<String>,
    /// Zipkin collector (POST /api/v2/spans, /api/v1/spans) [default: 127.0.0.1:9411]
    #[arg(long, env = "FCTRACE_ZIPKIN_ADDR", value_name = "HOST:PORT")]
    pub zipkin_addr: Option<String>,
    /// Jaeger sampling strategies file, re-read when it changes
    /// [default: one trace per second per service]
    #[arg(long, env = "FCTRACE_SAMPLING_STRATEGIES", value_name = "FILE")]
    pub sampling_strategies: Option<PathBuf>,
    /// Tenants file (TOML `[[tenants]]`, re-read when it changes): with it, every ingest
    /// and query request needs a tenant's token [default: one tenant, no tokens]
    #[arg(long, env = "FCTRACE_TENANTS", value_name = "FILE")]
    pub tenants: Option<PathBuf>,
    /// This process's part in a cluster: all, ingest, store, query (docs/cluster.md)
    /// [default: all]
    #[arg(long, env = "FCTRACE_ROLE", value_enum)]
    pub role: Option<crate::cluster::Role>,
    /// The NATS servers of the cluster's log, comma-separated (nats://HOST:4222)
    #[arg(long, env = "FCTRACE_NATS_URL", value_name = "URL[,URL...]")]
    pub nats_url: Option<String>,
    /// Partitions of the cluster's log, fixed for the cluster's life [default: 16]
    #[arg(long, env = "FCTRACE_PARTITIONS", value_name = "N")]
    pub partitions: Option<u32>,
    /// Copies of the log JetStream keeps [default: 3]
    #[arg(long, env = "FCTRACE_REPLICAS", value_name = "R")]
    pub replicas: Option<usize>,
    /// This node's name in the cluster, stable across restarts (a store node's
    /// consumers are named by it) [default: the role's name]
    #[arg(long, env = "FCTRACE_NODE_ID", value_name = "NAME")]
    pub node_id: Option<String>,
    /// A store node's API for query nodes (trusted network only: it takes any tenant)
    /// [default: 127.0.0.1:16689, or 0.0.0.0:16689 with --listen-all]
    #[arg(long, env = "FCTRACE_INTERNAL_ADDR", value_name = "HOST:PORT")]
    pub internal_addr: Option<String>,
    /// The address query nodes reach this store node's internal API at
    /// [default: the internal listener's address]
    #[arg(long, env = "FCTRACE_ADVERTISE_ADDR", value_name = "HOST:PORT")]
    pub advertise_addr: Option<String>,
    /// TLS on every listener: the certificate chain (PEM), re-read when it changes
    #[arg(
        long,
        env = "FCTRACE_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM)
    #[arg(
        long,
        env = "FCTRACE_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// Client certificates the ingest listeners require, signed by these CAs (PEM)
    #[arg(
        long,
        env = "FCTRACE_TLS_CLIENT_CA",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_client_ca: Option<PathBuf>,
    /// The rule the gateway's own sampling falls back to when `FC:{service}/{function}`
    /// has none, before the default [default: fc-tracing]
    #[arg(long, env = "FCTRACE_PLATFORM_TRACING_SERVICE", value_name = "NAME")]
    pub platform_tracing_service: Option<String>,
    #[command(flatten)]
    pub adaptive: crate::sampling::adaptive::AdaptiveArgs,
    /// Spans a second one service may send before it gets 429s; 0 = no limit [default: 0]
    #[arg(long, env = "FCTRACE_SERVICE_SPANS_PER_SECOND", value_name = "N")]
    pub service_spans_per_second: Option<f64>,
    /// Spans accepted but not yet stored, over all clients, before 429s; 0 = no limit [default: 1000000]
    #[arg(long, env = "FCTRACE_MAX_IN_FLIGHT_SPANS", value_name = "N")]
    pub max_in_flight_spans: Option<usize>,
    /// TOML file of [[functions]] (added to those in --config)
    #[arg(long, env = "FCTRACE_FUNCTIONS", value_name = "FILE")]
    pub functions: Option<PathBuf>,
    /// The collector URL functions are told to send spans to (x-fc-tracing-jaeger-endpoint)
    /// [default: the collector's own address + /api/traces]
    #[arg(long, env = "FCTRACE_FUNCTION_JAEGER_ENDPOINT", value_name = "URL")]
    pub function_jaeger_endpoint: Option<String>,
    /// Largest invoke event or proxied request body, in bytes [default: 6291456]
    #[arg(long, env = "FCTRACE_MAX_EVENT_BYTES", value_name = "BYTES")]
    pub max_event_bytes: Option<usize>,
    /// Bind the default addresses on every interface (0.0.0.0) instead of 127.0.0.1.
    #[arg(long, env = "FCTRACE_LISTEN_ALL", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub listen_all: Option<bool>,
    /// How long spans are kept, by start time, as a duration like 72h or 3d [default: 72h]
    #[arg(long, env = "FCTRACE_RETENTION", value_name = "DURATION")]
    pub retention: Option<String>,
    /// Largest accepted request body, after decompression, in bytes [default: 20971520]
    #[arg(long, env = "FCTRACE_MAX_BODY_BYTES", value_name = "BYTES")]
    pub max_body_bytes: Option<usize>,
    /// fsync the write-ahead log before acknowledging spans [default: true]
    #[arg(long, env = "FCTRACE_SYNC_WRITES", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub sync_writes: Option<bool>,
    /// Encoded bytes that may wait for the store at once; beyond it clients get 503 [default: 134217728]
    #[arg(long, env = "FCTRACE_QUEUE_BYTES", value_name = "BYTES")]
    pub queue_bytes: Option<usize>,
    /// Log format [default: text]
    #[arg(long, env = "FCTRACE_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Bytes of request data (bodies, decoded spans) held at once over all clients;
    /// beyond it requests get 503 [default: 536870912]
    #[arg(long, env = "FCTRACE_INGEST_MEMORY_BYTES", value_name = "BYTES")]
    pub ingest_memory_bytes: Option<usize>,
    /// Bytes one request may hold of the ingest budget; a request that needs more gets 413
    /// [default: 167772160]
    #[arg(long, env = "FCTRACE_MAX_REQUEST_MEMORY_BYTES", value_name = "BYTES")]
    pub max_request_memory_bytes: Option<usize>,
    /// Spans one request may carry [default: 100000]
    #[arg(long, env = "FCTRACE_MAX_SPANS_PER_REQUEST", value_name = "N")]
    pub max_spans_per_request: Option<usize>,
    /// Tags (attributes) one span, process, log or link may carry [default: 1024]
    #[arg(long, env = "FCTRACE_MAX_TAGS_PER_SPAN", value_name = "N")]
    pub max_tags_per_span: Option<usize>,
    /// Logs (events) one span may carry [default: 1024]
    #[arg(long, env = "FCTRACE_MAX_LOGS_PER_SPAN", value_name = "N")]
    pub max_logs_per_span: Option<usize>,
    /// Nesting of OTLP array/map attribute values [default: 16]
    #[arg(long, env = "FCTRACE_MAX_ATTRIBUTE_DEPTH", value_name = "N")]
    pub max_attribute_depth: Option<usize>,
    /// A request body not received within this is cut off with 408 [default: 30s]
    #[arg(long, env = "FCTRACE_BODY_TIMEOUT", value_name = "DURATION")]
    pub body_timeout: Option<String>,
    /// Open connections per listener; more wait to be accepted [default: 1024]
    #[arg(long, env = "FCTRACE_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Spans starting further than this in the future are refused [default: 1h]
    #[arg(long, env = "FCTRACE_MAX_FUTURE_SKEW", value_name = "DURATION")]
    pub max_future_skew: Option<String>,
    /// Invocations running at once on the whole platform; more get 503 (resource
    /// throttles) [default: 300]
    #[arg(long, env = "FCTRACE_MAX_CONCURRENT_INVOCATIONS", value_name = "N")]
    pub max_concurrent_invocations: Option<usize>,
    /// Bytes of output one function instance may store a minute; beyond, its lines are
    /// dropped (and counted) until the next minute [default: 1048576]
    #[arg(long, env = "FCTRACE_FUNCTION_LOG_BYTES", value_name = "BYTES")]
    pub function_log_bytes: Option<usize>,
    /// How long per-minute function metrics are kept [default: 31d]
    #[arg(long, env = "FCTRACE_METRICS_RETENTION", value_name = "DURATION")]
    pub metrics_retention: Option<String>,
    /// Alarm rules file (JSON, re-read when it changes; see README "Alarms")
    #[arg(long, env = "FCTRACE_ALARMS", value_name = "FILE")]
    pub alarms: Option<PathBuf>,
    /// How often alarm rules are evaluated [default: 60s]
    #[arg(long, env = "FCTRACE_ALARM_INTERVAL", value_name = "DURATION")]
    pub alarm_interval: Option<String>,
    /// How often each live function instance is sampled (CPU, memory, traffic) [default: 10s]
    #[arg(
        long,
        env = "FCTRACE_INSTANCE_METRICS_INTERVAL",
        value_name = "DURATION"
    )]
    pub instance_metrics_interval: Option<String>,
    /// Writes are refused (503) while the data directory's filesystem has less free; 0 = off
    /// [default: 67108864]
    #[arg(long, env = "FCTRACE_MIN_FREE_DISK_BYTES", value_name = "BYTES")]
    pub min_free_disk_bytes: Option<u64>,
    /// Token for /api/admin/* (Authorization: Bearer TOKEN); admin endpoints are off without one
    #[arg(
        long,
        env = "FCTRACE_ADMIN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
    /// File holding the admin token (its first line)
    #[arg(long, env = "FCTRACE_ADMIN_TOKEN_FILE", value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
}
