//! The function metrics as Prometheus series, named as OpenTelemetry's FaaS conventions
//! name them (`faas_invocations_total`, `faas_errors_total`, `faas_coldstarts_total`,
//! `faas_invoke_duration_seconds`, `faas_init_duration_seconds`, `faas_mem_usage_bytes`),
//! for a Prometheus that scrapes `/metrics`. Labels are `service` and `function` of
//! declared functions only (calls for unknown ones count under `__unknown__`), and
//! errors add a bounded `kind`. This module registers and updates the series; what a
//! call's outcome was comes from the platform, as for the per-minute metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::minute::{Call, Outcome};
use super::Function;

/// The label values of calls for functions that do not exist.
pub const UNKNOWN: &str = "__unknown__";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FunctionLabels {
    service: String,
    function: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    service: String,
    function: String,
    /// `function`, `server`, `client`, `concurrency_throttle`, `resource_throttle`
    kind: &'static str,
}

type Histograms = Family<FunctionLabels, Histogram, fn() -> Histogram>;

pub struct Faas {
    invocations: Family<FunctionLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    coldstarts: Family<FunctionLabels, Counter>,
    duration: Histograms,
    init: Histograms,
    memory: Histograms,
}

fn seconds() -> Histogram {
    // 1 ms to ~9 minutes
    Histogram::new(exponential_buckets(0.001, 2.0, 20))
}

fn bytes() -> Histogram {
    // 1 MiB to 8 GiB
    Histogram::new(exponential_buckets(1048576.0, 2.0, 14))
}

impl Faas {
    /// The series, registered in `registry` without a prefix (their names are the
    /// conventions').
    pub fn register(registry: &mut Registry) -> Faas {
        let f = Faas {
            invocations: Family::default(),
            errors: Family::default(),
            coldstarts: Family::default(),
            duration: Family::new_with_constructor(seconds),
            init: Family::new_with_constructor(seconds),
            memory: Family::new_with_constructor(bytes),
        };
        registry.register(
            "faas_invocations",
            "Function calls received by the gateway, refused ones included",
            f.invocations.clone(),
        );
        registry.register(
            "faas_errors",
            "Function calls that failed, by kind: function, server, client, concurrency_throttle, resource_throttle",
            f.errors.clone(),
        );
        registry.register(
            "faas_coldstarts",
            "Function calls that started a new instance",
            f.coldstarts.clone(),
        );
        registry.register(
            "faas_invoke_duration_seconds",
            "End-to-end time of a function call in the platform",
            f.duration.clone(),
        );
        registry.register(
            "faas_init_duration_seconds",
            "Time of the initializer on a cold start",
            f.init.clone(),
        );
        registry.register(
            "faas_mem_usage_bytes",
            "Largest resident memory of the instance seen during a call",
            f.memory.clone(),
        );
        f
    }

    /// Count one call (`function` is `None` for a function that does not exist).
    pub fn observe(&self, function: Option<&Function>, call: &Call) {
        let labels = FunctionLabels {
            service: function.map_or(UNKNOWN, |f| f.service.as_str()).to_owned(),
            function: function.map_or(UNKNOWN, |f| f.function.as_str()).to_owned(),
        };
        self.invocations.get_or_create(&labels).inc();
        let kind = match call.outcome {
            Outcome::Ok => None,
            Outcome::FunctionError => Some("function"),
            Outcome::ServerError => Some("server"),
            Outcome::ClientError => Some("client"),
            Outcome::ConcurrencyThrottle => Some("concurrency_throttle"),
            Outcome::ResourceThrottle => Some("resource_throttle"),
            Outcome::RecursionDropped => Some("recursion"),
        };
        if let Some(kind) = kind {
            self.errors
                .get_or_create(&ErrorLabels {
                    service: labels.service.clone(),
                    function: labels.function.clone(),
                    kind,
                })
                .inc();
        }
        if call.cold_start {
            self.coldstarts.get_or_create(&labels).inc();
            if call.init_us > 0 {
                self.init
                    .get_or_create(&labels)
                    .observe(call.init_us as f64 / 1e6);
            }
        }
        self.duration
            .get_or_create(&labels)
            .observe(call.latency_us as f64 / 1e6);
        if call.memory_usage_kb > 0 {
            self.memory
                .get_or_create(&labels)
                .observe(call.memory_usage_kb as f64 * 1024.0);
        }
    }
}
