//! The daemon's own metrics, served at `/metrics` in Prometheus text format, and the log
//! subscriber set-up. Owns no business logic: other modules call the recording methods.

use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FormatLabel {
    format: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FunctionLabel {
    function: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InvocationLabel {
    function: String,
    error_type: String,
    cold_start: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceReasonLabel {
    service: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TailLabel {
    class: &'static str,
    decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DatagramLabel {
    protocol: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AsyncLabel {
    function: String,
    event: &'static str,
}

pub struct Metrics {
    registry: Registry,
    faas: crate::monitor::faas::Faas,
    cluster: crate::cluster::metrics::ClusterMetrics,
    spans_received: Family<FormatLabel, Counter>,
    spans_stored: Counter,
    spans_refused: Family<ReasonLabel, Counter>,
    requests_rejected: Family<ReasonLabel, Counter>,
    write_groups: Counter,
    write_requests: Counter,
    write_seconds: Histogram,
    invocations: Family<InvocationLabel, Counter>,
    throttles: Family<FunctionLabel, Counter>,
    recursion_dropped: Family<FunctionLabel, Counter>,
    log_lines_stored: Counter,
    log_lines_dropped: Family<ReasonLabel, Counter>,
    telemetry_events: Family<ReasonLabel, Counter>,
    async_events: Family<AsyncLabel, Counter>,
    agent_datagrams: Family<DatagramLabel, Counter>,
    admission_refused: Family<ServiceReasonLabel, Counter>,
    sampling_reloads: Family<OutcomeLabel, Counter>,
    alarm_notifications: Family<OutcomeLabel, Counter>,
    alarm_reloads: Family<OutcomeLabel, Counter>,
    sampling_rules_ok: prometheus_client::metrics::gauge::Gauge,
    tail_traces: Family<TailLabel, Counter>,
    gateway_sampled: Family<TailLabel, Counter>,
    tail_held_spans: prometheus_client::metrics::gauge::Gauge,
    store_memory: Family<KindLabel, prometheus_client::metrics::gauge::Gauge>,
    compactions_running: prometheus_client::metrics::gauge::Gauge,
    compaction_pending: prometheus_client::metrics::gauge::Gauge,
    /// Service names used as label values so far (client-given, so capped).
    service_labels: std::sync::Mutex<std::collections::HashSet<String>>,
    background_write_retries: Counter,
    background_writes_failed: Counter,
}

/// Distinct `service` label values kept; later services are counted under
/// [`OTHER_SERVICES`].
pub const MAX_SERVICE_LABELS: usize = 1000;
pub const OTHER_SERVICES: &str = "__other__";

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        // The daemon's own series under `fctrace_`; the function metrics under the
        // names OpenTelemetry's FaaS conventions give them.
        let mut root = Registry::default();
        let faas = crate::monitor::faas::Faas::register(&mut root);
        let registry = root.sub_registry_with_prefix("fctrace");
        let cluster = crate::cluster::metrics::ClusterMetrics::register(registry);
        let spans_received = Family::<FormatLabel, Counter>::default();
        let spans_stored = Counter::default();
        let spans_refused = Family::<ReasonLabel, Counter>::default();
        let requests_rejected = Family::<ReasonLabel, Counter>::default();
        let write_groups = Counter::default();
        let write_requests = Counter::default();
        let write_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register(
            "spans_received",
            "Spans decoded from clients, by wire format",
            spans_received.clone(),
        );
        registry.register(
            "spans_stored",
            "Spans acknowledged after reaching the write-ahead log",
            spans_stored.clone(),
        );
        registry.register(
            "spans_refused",
            "Spans refused, by reason",
            spans_refused.clone(),
        );
        registry.register(
            "requests_rejected",
            "Requests answered with an error, by reason",
            requests_rejected.clone(),
        );
        registry.register(
            "write_groups",
            "RocksDB writes (each one group commit)",
            write_groups.clone(),
        );
        registry.register(
            "write_requests",
            "Requests committed by the writer",
            write_requests.clone(),
        );
        registry.register(
            "write_duration_seconds",
            "Time one group commit took",
            write_seconds.clone(),
        );
        let invocations = Family::<InvocationLabel, Counter>::default();
        let throttles = Family::<FunctionLabel, Counter>::default();
        let recursion_dropped = Family::<FunctionLabel, Counter>::default();
        registry.register(
            "recursive_invocations_dropped",
            "Calls stopped because their call chain looped through the function (max_recursion_depth)",
            recursion_dropped.clone(),
        );
        registry.register(
            "invocations",
            "Function invocations, by function, error type and cold start",
            invocations.clone(),
        );
        registry.register(
            "throttles",
            "Invocations refused because every instance was busy",
            throttles.clone(),
        );
        let log_lines_stored = Counter::default();
        registry.register(
            "function_log_lines_stored",
            "Lines of function output stored",
            log_lines_stored.clone(),
        );
        let log_lines_dropped = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "function_log_lines_dropped",
            "Lines of function output not stored: over an instance's cap, queue full, or store failing",
            log_lines_dropped.clone(),
        );
        let telemetry_events = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "telemetry_events",
            "Telemetry API events for subscribed listeners: sent, or dropped (buffer full, listener failing)",
            telemetry_events.clone(),
        );
        let async_events = Family::<AsyncLabel, Counter>::default();
        let agent_datagrams = Family::<DatagramLabel, Counter>::default();
        registry.register(
            "agent_datagrams",
            "Jaeger agent UDP datagrams, by protocol and result",
            agent_datagrams.clone(),
        );
        registry.register(
            "async_events",
            "Asynchronous invocations by function and event: enqueued, dequeued, expired, destination_succeeded, destination_failed",
            async_events.clone(),
        );
        let admission_refused = Family::<ServiceReasonLabel, Counter>::default();
        registry.register(
            "admission_refused_spans",
            "Spans refused by admission control, by service and reason",
            admission_refused.clone(),
        );
        let sampling_reloads = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "sampling_strategy_reloads",
            "Sampling strategies file reloads, by outcome (ok, error)",
            sampling_reloads.clone(),
        );
        let alarm_notifications = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "alarm_notifications",
            "Alarm transitions POSTed to webhooks, by outcome (sent, failed after retries, dropped: queue full)",
            alarm_notifications.clone(),
        );
        let alarm_reloads = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "alarm_rules_reloads",
            "Alarm rules file reloads, by outcome (ok, error: the last good rules stay)",
            alarm_reloads.clone(),
        );
        let sampling_rules_ok = prometheus_client::metrics::gauge::Gauge::default();
        sampling_rules_ok.set(1);
        registry.register(
            "sampling_strategies_ok",
            "Whether the sampling rules in effect are the file on disk (1) or the last reload failed (0)",
            sampling_rules_ok.clone(),
        );
        let tail_traces = Family::<TailLabel, Counter>::default();
        registry.register(
            "tail_sampling_traces",
            "Traces decided by tail sampling, by class and decision",
            tail_traces.clone(),
        );
        let gateway_sampled = Family::<TailLabel, Counter>::default();
        registry.register(
            "gateway_sampling_traces",
            "Fresh traces the gateway's intelligent sampling decided, by URL class and decision",
            gateway_sampled.clone(),
        );
        let tail_held_spans = prometheus_client::metrics::gauge::Gauge::default();
        registry.register(
            "tail_sampling_held_spans",
            "Spans held by tail sampling, waiting for their trace's decision",
            tail_held_spans.clone(),
        );
        let store_memory = Family::<KindLabel, prometheus_client::metrics::gauge::Gauge>::default();
        registry.register(
            "store_memory_bytes",
            "Memory the store holds, by kind (block_cache, table_readers, memtables), read at each scrape",
            store_memory.clone(),
        );
        let compactions_running = prometheus_client::metrics::gauge::Gauge::default();
        registry.register(
            "store_compactions_running",
            "RocksDB compactions running, read at each scrape",
            compactions_running.clone(),
        );
        let compaction_pending = prometheus_client::metrics::gauge::Gauge::default();
        registry.register(
            "store_compaction_pending_bytes",
            "Bytes RocksDB estimates it still has to compact, read at each scrape",
            compaction_pending.clone(),
        );
        let background_write_retries = Counter::default();
        registry.register(
            "background_write_retries",
            "Background writes (platform spans and records, tail-sampled traces) retried after a refusal",
            background_write_retries.clone(),
        );
        let background_writes_failed = Counter::default();
        registry.register(
            "background_writes_failed",
            "Background writes (platform spans and records, tail-sampled traces) given up after their retries",
            background_writes_failed.clone(),
        );
        Metrics {
            registry: root,
            faas,
            cluster,
            service_labels: Default::default(),
            background_write_retries,
            background_writes_failed,
            tail_traces,
            gateway_sampled,
            tail_held_spans,
            store_memory,
            compactions_running,
            compaction_pending,
            admission_refused,
            sampling_reloads,
            alarm_notifications,
            alarm_reloads,
            sampling_rules_ok,
            spans_received,
            spans_stored,
            spans_refused,
            requests_rejected,
            write_groups,
            write_requests,
            write_seconds,
            invocations,
            throttles,
            recursion_dropped,
            log_lines_stored,
            log_lines_dropped,
            telemetry_events,
            async_events,
            agent_datagrams,
        }
    }

    /// One Jaeger agent datagram, by protocol (`compact`, `binary`) and result (`stored`,
    /// or why not all of it was: `malformed`, `oversized`, `limit`, `overloaded`,
    /// `invalid` for one with spans the pipeline refused).
    pub fn agent_datagram(&self, protocol: &'static str, result: &'static str) {
        self.agent_datagrams
            .get_or_create(&DatagramLabel { protocol, result })
            .inc();
    }

    /// An asynchronous invocation's step, for `function` (declared functions only).
    pub fn async_event(&self, function: &str, event: &'static str) {
        self.async_events
            .get_or_create(&AsyncLabel {
                function: function.to_owned(),
                event,
            })
            .inc();
    }

    /// Telemetry events by outcome (`sent`, `dropped`).
    pub fn telemetry_events(&self, reason: &'static str, n: usize) {
        self.telemetry_events
            .get_or_create(&ReasonLabel { reason })
            .inc_by(n as u64);
    }

    pub fn log_lines_stored(&self, n: usize) {
        self.log_lines_stored.inc_by(n as u64);
    }

    pub fn log_lines_dropped(&self, reason: &'static str, n: usize) {
        self.log_lines_dropped
            .get_or_create(&ReasonLabel { reason })
            .inc_by(n as u64);
    }

    pub fn received(&self, format: &'static str, spans: usize) {
        self.spans_received
            .get_or_create(&FormatLabel { format })
            .inc_by(spans as u64);
    }

    pub fn stored(&self, spans: usize) {
        self.spans_stored.inc_by(spans as u64);
    }

    pub fn refused(&self, spans: usize, reason: &'static str) {
        self.spans_refused
            .get_or_create(&ReasonLabel { reason })
            .inc_by(spans as u64);
    }

    pub fn rejected_request(&self, reason: &'static str) {
        self.requests_rejected
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    pub fn write_committed(&self, requests: usize, took: Duration) {
        self.write_groups.inc();
        self.write_requests.inc_by(requests as u64);
        self.write_seconds.observe(took.as_secs_f64());
    }

    pub fn invocation(&self, function: &str, error_type: Option<&str>, cold: bool) {
        self.invocations
            .get_or_create(&InvocationLabel {
                function: function.to_owned(),
                error_type: error_type.unwrap_or("").to_owned(),
                cold_start: cold.to_string(),
            })
            .inc();
    }

    /// The `faas_*` series of function calls.
    pub fn faas(&self) -> &crate::monitor::faas::Faas {
        &self.faas
    }

    pub fn cluster(&self) -> &crate::cluster::metrics::ClusterMetrics {
        &self.cluster
    }

    pub fn throttled(&self, function: &str) {
        self.throttles
            .get_or_create(&FunctionLabel {
                function: function.to_owned(),
            })
            .inc();
    }

    /// A call stopped by the recursion guard.
    pub fn recursion_dropped(&self, function: &str) {
        self.recursion_dropped
            .get_or_create(&FunctionLabel {
                function: function.to_owned(),
            })
            .inc();
    }

    pub fn admission_refused(&self, service: &str, reason: &'static str, spans: usize) {
        let service = self.service_label(service);
        self.admission_refused
            .get_or_create(&ServiceReasonLabel { service, reason })
            .inc_by(spans as u64);
    }

    /// `service` as a label value: itself while fewer than [`MAX_SERVICE_LABELS`] have
    /// been seen, else [`OTHER_SERVICES`], so a client inventing names cannot grow the
    /// metrics without bound.
    fn service_label(&self, service: &str) -> String {
        let mut seen = self
            .service_labels
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if seen.contains(service) {
            return service.to_owned();
        }
        if seen.len() < MAX_SERVICE_LABELS {
            seen.insert(service.to_owned());
            return service.to_owned();
        }
        OTHER_SERVICES.to_owned()
    }

    pub fn background_write_retried(&self) {
        self.background_write_retries.inc();
    }

    pub fn background_write_failed(&self) {
        self.background_writes_failed.inc();
    }

    pub fn alarm_notification(&self, outcome: &'static str) {
        self.alarm_notifications
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    pub fn alarm_rules_reload(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        self.alarm_reloads
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    pub fn sampling_reload(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        self.sampling_reloads
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
        self.sampling_rules_ok.set(ok as i64);
    }

    pub fn tail_decided(&self, class: &'static str, keep: bool) {
        let decision = if keep { "kept" } else { "dropped" };
        self.tail_traces
            .get_or_create(&TailLabel { class, decision })
            .inc();
    }

    pub fn gateway_sampled(&self, class: &'static str, keep: bool) {
        let decision = if keep { "kept" } else { "dropped" };
        self.gateway_sampled
            .get_or_create(&TailLabel { class, decision })
            .inc();
    }

    pub fn tail_held(&self, spans: usize) {
        self.tail_held_spans.set(spans as i64);
    }

    /// The store's memory by kind, as `Store::memory` reads it (just before a render).
    pub fn store_memory(&self, kinds: &[(&'static str, u64)]) {
        for &(kind, bytes) in kinds {
            self.store_memory
                .get_or_create(&KindLabel { kind })
                .set(bytes.min(i64::MAX as u64) as i64);
        }
    }

    /// The store's compaction state, as `Store::compaction` reads it.
    pub fn store_compaction(&self, (running, pending): (u64, u64)) {
        self.compactions_running
            .set(running.min(i64::MAX as u64) as i64);
        self.compaction_pending
            .set(pending.min(i64::MAX as u64) as i64);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Install the global log subscriber: human-readable or JSON lines, filtered by `RUST_LOG`
/// (default `info`).
pub fn init_logs(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_labels_are_capped() {
        let m = Metrics::new();
        for i in 0..MAX_SERVICE_LABELS + 50 {
            m.admission_refused(&format!("svc-{i}"), "service_rate", 1);
        }
        let text = m.render();
        let series = text
            .lines()
            .filter(|l| l.starts_with("fctrace_admission_refused_spans_total{"))
            .count();
        assert_eq!(series, MAX_SERVICE_LABELS + 1);
        assert!(text.contains(&format!("service=\"{OTHER_SERVICES}\"")));
        assert!(text.contains("service=\"svc-0\""));
    }
}
