//! Sampling: the rules (Jaeger strategies file, hot-reloaded), the head sampler the gateway
//! asks for each new trace, and the token buckets that rate limits share.
//!
//! In: a strategies file (or none: the platform's default of one trace per second per
//! service). Out: answers for the remote sampling API and yes/no decisions for new traces.
//! This module stores nothing and does not see spans.

pub mod adaptive;
pub mod intelligent;
mod lenient;
pub mod strategies;
pub mod tail;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use crate::model::TraceId;
use crate::telemetry::Metrics;
pub use strategies::{SamplingResponse, Strategies, Strategy, StrategyError};

/// A token bucket: `rate` tokens a second, at most `capacity`, starting full.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: f64, capacity: f64) -> Self {
        TokenBucket {
            rate,
            capacity,
            tokens: capacity,
            last: Instant::now(),
        }
    }

    /// Tokens there now.
    pub fn available(&mut self) -> f64 {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate)
            .min(self.capacity);
        self.last = now;
        self.tokens
    }

    /// Whether the bucket has refilled completely: it then behaves as a new one would.
    pub fn is_full(&mut self) -> bool {
        self.available() >= self.capacity
    }

    /// Take `n` tokens if there are that many.
    pub fn try_take(&mut self, n: f64) -> bool {
        if self.available() >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }
}

/// The current rules, swapped whole when the file changes.
pub struct Rules {
    current: RwLock<Arc<Strategies>>,
    version: AtomicU64,
    path: Option<PathBuf>,
}

impl Rules {
    /// Load the file (or the platform default when there is none). A bad file at start is
    /// an error: the daemon refuses to start on rules it cannot read.
    pub fn load(path: Option<&Path>) -> Result<Rules, String> {
        let strategies = match path {
            None => Strategies::default(),
            Some(p) => read(p)?,
        };
        Ok(Rules {
            current: RwLock::new(Arc::new(strategies)),
            version: AtomicU64::new(0),
            path: path.map(Path::to_owned),
        })
    }

    pub fn current(&self) -> Arc<Strategies> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Serve `strategies` from now on (adaptive sampling's newest probabilities).
    pub fn install(&self, strategies: Strategies) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(strategies);
        self.version.fetch_add(1, Ordering::SeqCst);
    }

    /// Changes each time new rules take effect.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::SeqCst)
    }

    /// Re-read the file whenever its contents change; a bad file keeps the last good rules.
    pub async fn watch(
        self: Arc<Self>,
        metrics: Arc<Metrics>,
        stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let Some(path) = self.path.clone() else {
            return;
        };
        let shown = path.display().to_string();
        let apply = |text: &str| match Strategies::parse_noting(text) {
            Ok((s, tolerated)) => {
                warn_tolerated(&shown, &tolerated);
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(s);
                self.version.fetch_add(1, Ordering::SeqCst);
                metrics.sampling_reload(true);
                tracing::info!(file = %shown, "sampling strategies reloaded");
            }
            Err(e) => {
                metrics.sampling_reload(false);
                tracing::error!(file = %shown, error = %e, "sampling strategies not reloaded; keeping the last good rules");
            }
        };
        crate::reload::watch_file(path.clone(), apply, stop).await;
    }
}

fn read(path: &Path) -> Result<Strategies, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let (s, tolerated) =
        Strategies::parse_noting(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    warn_tolerated(&path.display().to_string(), &tolerated);
    Ok(s)
}

/// What a strategies file needed forgiven, said once per read.
fn warn_tolerated(file: &str, tolerated: &[String]) {
    if !tolerated.is_empty() {
        tracing::warn!(
            file,
            tolerated = %tolerated.join("; "),
            "sampling strategies are not strict JSON; read anyway"
        );
    }
}

/// The platform's tracing service name, whose rule the platform's decisions fall back to.
pub const DEFAULT_PLATFORM_SERVICE: &str = "fc-tracing";

/// Head sampling for traces the platform starts: the strategy of the function's service
/// (`FC:{service}/{function}`), else of the platform's tracing service, else the default.
pub struct HeadSampler {
    rules: Arc<Rules>,
    /// The rule the platform's decisions fall back to before the default
    /// (Function Compute's tracing service, `fc-tracing`).
    platform_service: String,
    buckets: Mutex<(u64, HashMap<String, TokenBucket>)>,
    /// Intelligent sampling instead of the rules, for the gateway's fresh traces.
    intelligent: Option<intelligent::Intelligent>,
}

/// Jaeger's probabilistic decision: the low 63 bits of the trace id under a boundary.
pub fn probabilistic(trace: TraceId, rate: f64) -> bool {
    let boundary = (rate.clamp(0.0, 1.0) * (i64::MAX as f64)) as u64;
    (trace.low() & (i64::MAX as u64)) < boundary || rate >= 1.0
}

impl HeadSampler {
    pub fn new(rules: Arc<Rules>) -> Self {
        HeadSampler {
            rules,
            platform_service: DEFAULT_PLATFORM_SERVICE.to_owned(),
            buckets: Mutex::new((u64::MAX, HashMap::new())),
            intelligent: None,
        }
    }

    /// Decide the platform's fresh traces by intelligent sampling (`intelligent`) instead.
    pub fn with_intelligent(mut self, settings: intelligent::IntelligentSettings) -> Self {
        self.intelligent = Some(intelligent::Intelligent::new(
            settings,
            intelligent::Cpu::process(),
        ));
        self
    }

    pub fn intelligent(&self) -> Option<&intelligent::Intelligent> {
        self.intelligent.as_ref()
    }

    /// Fall back to `service`'s rule (before the default) for the platform's decisions.
    pub fn with_platform_service(mut self, service: &str) -> Self {
        self.platform_service = service.to_owned();
        self
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Sample a new trace of `service`'s `operation`?
    ///
    /// With operation rules, as Jaeger's guaranteed-throughput sampler: the operation's
    /// probability, or else one of the lower bound's traces a second (the bound's bucket
    /// is drawn from either way, so sampled traces count towards it).
    pub fn decide(&self, service: &str, operation: &str, trace: TraceId) -> bool {
        let strategies = self.rules.current();
        let s = strategies.for_service_or(service, &self.platform_service);
        if let Some(p) = s.operation_probability(operation) {
            let sampled = probabilistic(trace, p);
            let lower = s
                .operations
                .as_ref()
                .map_or(0.0, |o| o.default_lower_bound_per_second);
            if lower <= 0.0 {
                return sampled;
            }
            let key = format!("{service}\u{0}{operation}");
            let within_bound = self.take(&key, lower);
            return sampled || within_bound;
        }
        match s.strategy {
            Strategy::Probabilistic(p) => probabilistic(trace, p),
            Strategy::RateLimiting(rate) => self.take(service, rate),
        }
    }

    /// One token from the bucket `key` fills at `rate` a second (a new bucket, full, per
    /// key and version of the rules).
    fn take(&self, key: &str, rate: f64) -> bool {
        let mut guard = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let version = self.rules.version();
        if guard.0 != version {
            // New rules: new buckets, at their new rates.
            *guard = (version, HashMap::new());
        }
        guard
            .1
            .entry(key.to_owned())
            .or_insert_with(|| TokenBucket::new(rate, rate.max(1.0)))
            .try_take(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rate_limiting_bucket_starts_full_and_refills() {
        let mut b = TokenBucket::new(1.0, 1.0);
        assert!(b.try_take(1.0));
        assert!(!b.try_take(1.0));
        b.last -= Duration::from_millis(1100);
        assert!(b.try_take(1.0));
    }

    #[test]
    fn probabilistic_follows_the_rate() {
        let n = 20_000;
        let kept = (0..n)
            .filter(|i| {
                probabilistic(
                    TraceId((*i as u128).wrapping_mul(0x9E3779B97F4A7C15) ^ 0x5555),
                    0.25,
                )
            })
            .count();
        assert!((4000..6000).contains(&kept), "{kept}");
        assert!(probabilistic(TraceId(u64::MAX as u128), 1.0));
        assert!(!probabilistic(TraceId(1), 0.0));
    }

    #[test]
    fn operation_lower_bound_guarantees_traces_the_probability_would_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        std::fs::write(
            &path,
            r#"{"service_strategies": [{"service": "s", "type": "probabilistic", "param": 0,
                "default_lower_bound_traces_per_second": 0.1,
                "operation_strategies": [{"operation": "op", "type": "probabilistic", "param": 0}]}]}"#,
        )
        .unwrap();
        let h = HeadSampler::new(Arc::new(Rules::load(Some(&path)).unwrap()));
        // probability 0: the bound's one token lets the first through, then none for 10 s
        let kept: Vec<bool> = (1..=5).map(|i| h.decide("s", "op", TraceId(i))).collect();
        assert_eq!(kept, [true, false, false, false, false]);
        // each operation has its own bound
        assert!(h.decide("s", "other", TraceId(9)));
    }

    #[test]
    fn head_sampler_defaults_to_one_per_second() {
        let h = HeadSampler::new(Arc::new(Rules::load(None).unwrap()));
        let first = h.decide("FC:a/b", "InvokeFunction", TraceId(1));
        let second = h.decide("FC:a/b", "InvokeFunction", TraceId(2));
        assert!(first && !second);
        assert!(
            h.decide("FC:a/c", "InvokeFunction", TraceId(3)),
            "buckets are per service"
        );
    }
}
