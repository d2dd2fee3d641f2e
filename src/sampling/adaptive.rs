//! Adaptive sampling (`--sampling-adaptive`): per service and operation probabilities
//! that bring the traces kept to `--sampling-target-tps` a second, as Jaeger's adaptive
//! sampler does.
//!
//! The pipeline shows every accepted batch to [`Adaptive::observe`], which counts root
//! spans (spans with no parent: one per trace that reached fctrace, whatever SDK sent it,
//! with or without `sampler.*` tags) per service and operation. Each interval
//! [`Adaptive::recalculate`] turns a count into the rate kept under the probability served
//! during the interval, and moves the probability towards target / (that rate / the
//! probability): left alone within 30 % of the target, at most ×4 up per step, never below
//! the minimum. The result replaces the served rules (`Rules::install`), in Jaeger's
//! per-operation response with the lower bound, so SDKs and the gateway's own sampler
//! follow it; it is kept in RocksDB and read back at start. Bounded: at most
//! [`MAX_OPERATIONS`] operations are followed; later ones get the initial probability.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

use super::strategies::{OperationRules, ServiceStrategy, Strategies, Strategy};
use super::Rules;
use crate::model::Span;

/// Operations followed at once.
pub const MAX_OPERATIONS: usize = 10_000;
/// Within this share of the target a probability is left as it is.
const TOLERANCE: f64 = 0.3;
/// The most a probability grows in one step.
const MAX_INCREASE: f64 = 4.0;

/// The flags (each also an `FCTRACE_*` variable and a key of `[sampling.adaptive]`).
#[derive(Debug, Clone, Default, Args)]
pub struct AdaptiveArgs {
    /// Adaptive sampling: per-operation probabilities recomputed from the traces received
    /// (instead of a strategies file)
    #[arg(long, env = "FCTRACE_SAMPLING_ADAPTIVE", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub sampling_adaptive: Option<bool>,
    /// Traces a second each operation should keep [default: 1]
    #[arg(long, env = "FCTRACE_SAMPLING_TARGET_TPS", value_name = "N")]
    pub sampling_target_tps: Option<f64>,
    /// Lowest probability adaptive sampling serves [default: 0.00001]
    #[arg(long, env = "FCTRACE_SAMPLING_MIN_PROBABILITY", value_name = "P")]
    pub sampling_min_probability: Option<f64>,
    /// Probability of an operation not seen yet [default: 0.001]
    #[arg(long, env = "FCTRACE_SAMPLING_INITIAL_PROBABILITY", value_name = "P")]
    pub sampling_initial_probability: Option<f64>,
    /// Traces a second each operation keeps whatever its probability [default: 0.016666]
    #[arg(long, env = "FCTRACE_SAMPLING_LOWER_BOUND_TPS", value_name = "N")]
    pub sampling_lower_bound_tps: Option<f64>,
    /// How often probabilities are recomputed [default: 1m]
    #[arg(
        long,
        env = "FCTRACE_SAMPLING_ADAPTIVE_INTERVAL",
        value_name = "DURATION"
    )]
    pub sampling_adaptive_interval: Option<String>,
}

/// `[sampling.adaptive]` in the config file: the same settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdaptiveFile {
    pub enabled: Option<bool>,
    pub target_tps: Option<f64>,
    pub min_probability: Option<f64>,
    pub initial_probability: Option<f64>,
    pub lower_bound_tps: Option<f64>,
    pub interval: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AdaptiveOptions {
    pub target_tps: f64,
    pub min_probability: f64,
    pub initial_probability: f64,
    pub lower_bound_tps: f64,
    pub interval: Duration,
}

impl AdaptiveOptions {
    /// The settings, when adaptive sampling is on; the error names the setting.
    pub fn resolve(
        args: &AdaptiveArgs,
        file: &AdaptiveFile,
    ) -> Result<Option<AdaptiveOptions>, (&'static str, String)> {
        if !args.sampling_adaptive.or(file.enabled).unwrap_or(false) {
            return Ok(None);
        }
        let number = |key: &'static str, v: Option<f64>, default: f64, max: f64| {
            let v = v.unwrap_or(default);
            if v.is_finite() && v > 0.0 && v <= max {
                Ok(v)
            } else {
                Err((key, format!("{v} is outside (0, {max}]")))
            }
        };
        let interval_text = args
            .sampling_adaptive_interval
            .clone()
            .or(file.interval.clone())
            .unwrap_or_else(|| "1m".into());
        let interval = crate::duration::parse(&interval_text)
            .map_err(|e| ("sampling_adaptive_interval", e.to_string()))?;
        if interval < Duration::from_millis(100) {
            return Err((
                "sampling_adaptive_interval",
                "must be at least 100ms".into(),
            ));
        }
        Ok(Some(AdaptiveOptions {
            target_tps: number(
                "sampling_target_tps",
                args.sampling_target_tps.or(file.target_tps),
                1.0,
                1e6,
            )?,
            min_probability: number(
                "sampling_min_probability",
                args.sampling_min_probability.or(file.min_probability),
                1e-5,
                1.0,
            )?,
            initial_probability: number(
                "sampling_initial_probability",
                args.sampling_initial_probability
                    .or(file.initial_probability),
                0.001,
                1.0,
            )?,
            lower_bound_tps: number(
                "sampling_lower_bound_tps",
                args.sampling_lower_bound_tps.or(file.lower_bound_tps),
                1.0 / 60.0,
                1e6,
            )?,
            interval,
        }))
    }
}

#[derive(Debug, Clone, Copy)]
struct Op {
    /// Root spans this interval.
    roots: u64,
    probability: f64,
}

pub struct Adaptive {
    opts: AdaptiveOptions,
    rules: Arc<Rules>,
    /// service → operation → its state
    ops: Mutex<BTreeMap<String, BTreeMap<String, Op>>>,
    /// Operations in `ops` (changed only under its lock), so a batch need not count them.
    followed: AtomicUsize,
}

impl std::fmt::Debug for Adaptive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Adaptive")
            .field("opts", &self.opts)
            .finish()
    }
}

impl Adaptive {
    /// Start from `saved` probabilities (service → operation → probability), serving them.
    pub fn new(
        opts: AdaptiveOptions,
        rules: Arc<Rules>,
        saved: BTreeMap<String, BTreeMap<String, f64>>,
    ) -> Adaptive {
        let ops: BTreeMap<String, BTreeMap<String, Op>> = saved
            .into_iter()
            .map(|(service, ops)| {
                let ops = ops
                    .into_iter()
                    .filter(|(_, p)| p.is_finite())
                    .map(|(op, p)| {
                        let probability = p.clamp(opts.min_probability, 1.0);
                        (
                            op,
                            Op {
                                roots: 0,
                                probability,
                            },
                        )
                    })
                    .collect();
                (service, ops)
            })
            .collect();
        let a = Adaptive {
            opts,
            rules,
            followed: AtomicUsize::new(ops.values().map(BTreeMap::len).sum()),
            ops: Mutex::new(ops),
        };
        a.install();
        a
    }

    pub fn interval(&self) -> Duration {
        self.opts.interval
    }

    /// Count the root spans of an accepted batch (one lock per batch).
    pub fn observe(&self, spans: &[Span]) {
        let mut roots: HashMap<(&str, &str), u64> = HashMap::new();
        for s in spans.iter().filter(|s| s.parent_span_id().is_none()) {
            *roots
                .entry((&s.process.service_name, &s.operation_name))
                .or_default() += 1;
        }
        if roots.is_empty() {
            return;
        }
        let mut ops = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        let mut followed = self.followed.load(Ordering::Relaxed);
        for ((service, op), n) in roots {
            let known = ops.get_mut(service).and_then(|m| m.get_mut(op));
            match known {
                Some(o) => o.roots += n,
                None if followed < MAX_OPERATIONS => {
                    followed += 1;
                    self.followed.store(followed, Ordering::Relaxed);
                    ops.entry(service.to_owned()).or_default().insert(
                        op.to_owned(),
                        Op {
                            roots: n,
                            probability: self.opts.initial_probability,
                        },
                    );
                }
                None => {}
            }
        }
    }

    /// One step: new probabilities from the interval's counts (`elapsed` long), served
    /// from now on. Returns them, for the store.
    pub fn recalculate(&self, elapsed: Duration) -> BTreeMap<String, BTreeMap<String, f64>> {
        let secs = elapsed.as_secs_f64().max(0.001);
        let mut ops = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        for o in ops.values_mut().flat_map(BTreeMap::values_mut) {
            o.probability = next_probability(o.probability, o.roots as f64 / secs, &self.opts);
            o.roots = 0;
        }
        let saved = ops
            .iter()
            .map(|(s, m)| {
                (
                    s.clone(),
                    m.iter()
                        .map(|(o, op)| (o.clone(), op.probability))
                        .collect(),
                )
            })
            .collect();
        drop(ops);
        self.install();
        saved
    }

    /// Serve the current probabilities: every followed service gets Jaeger's
    /// per-operation answer; others the initial probability.
    fn install(&self) {
        let ops = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        let services = ops
            .iter()
            .map(|(service, m)| {
                let rules = OperationRules {
                    default_probability: self.opts.initial_probability,
                    default_lower_bound_per_second: self.opts.lower_bound_tps,
                    per_operation: m
                        .iter()
                        .map(|(op, o)| (op.clone(), o.probability))
                        .collect(),
                };
                (
                    service.clone(),
                    ServiceStrategy {
                        strategy: Strategy::Probabilistic(self.opts.initial_probability),
                        operations: Some(rules),
                    },
                )
            })
            .collect();
        let default = ServiceStrategy {
            strategy: Strategy::Probabilistic(self.opts.initial_probability),
            operations: None,
        };
        drop(ops);
        self.rules
            .install(Strategies::from_parts(default, services));
    }
}

/// The probability after one interval in which `kept_tps` traces a second were kept
/// under `current`.
fn next_probability(current: f64, kept_tps: f64, o: &AdaptiveOptions) -> f64 {
    let target = o.target_tps;
    if (kept_tps - target).abs() <= TOLERANCE * target {
        return current;
    }
    let wanted = if kept_tps <= 0.0 {
        current * MAX_INCREASE
    } else {
        current * target / kept_tps
    };
    wanted
        .min(current * MAX_INCREASE)
        .clamp(o.min_probability, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> AdaptiveOptions {
        AdaptiveOptions {
            target_tps: 2.0,
            min_probability: 1e-4,
            initial_probability: 0.01,
            lower_bound_tps: 0.1,
            interval: Duration::from_secs(1),
        }
    }

    #[test]
    fn probabilities_move_towards_the_target() {
        let o = opts();
        // 500 traces a second arrive; at 0.01, 5 a second are kept: too many
        assert_eq!(next_probability(0.01, 5.0, &o), 0.004);
        // within 30 % of the target: left alone
        assert_eq!(next_probability(0.004, 2.5, &o), 0.004);
        // too few: up, at most fourfold a step
        assert_eq!(next_probability(0.01, 0.2, &o), 0.04);
        assert_eq!(next_probability(0.01, 0.0, &o), 0.04);
        // bounded by the minimum and by 1
        assert_eq!(next_probability(0.001, 2000.0, &o), 1e-4);
        assert_eq!(next_probability(0.5, 0.1, &o), 1.0);
    }

    #[test]
    fn a_simulated_load_converges_and_is_served() {
        let rules = Arc::new(Rules::load(None).unwrap());
        let a = Adaptive::new(opts(), Arc::clone(&rules), BTreeMap::new());
        // two operations arriving at 500 and 50 traces a second, kept as served
        let mut p = (0.01, 0.01);
        for _ in 0..8 {
            let mut ops = a.ops.lock().unwrap();
            let m = ops.entry("svc".into()).or_default();
            for (name, rate, prob) in [("fast", 500.0, p.0), ("slow", 50.0, p.1)] {
                m.entry(name.into())
                    .or_insert(Op {
                        roots: 0,
                        probability: prob,
                    })
                    .roots = (rate * prob) as u64;
            }
            drop(ops);
            a.recalculate(Duration::from_secs(1));
            let s = rules.current();
            let st = s.for_service("svc");
            p = (
                st.operation_probability("fast").unwrap(),
                st.operation_probability("slow").unwrap(),
            );
        }
        for (rate, prob) in [(500.0, p.0), (50.0, p.1)] {
            let kept = rate * prob;
            assert!(
                (2.0 * 0.7..=2.0 * 1.3).contains(&kept),
                "kept {kept} at {prob}"
            );
        }
        let s = rules.current();
        let st = s.for_service("svc");
        assert_eq!(
            st.operations
                .as_ref()
                .unwrap()
                .default_lower_bound_per_second,
            0.1
        );
        assert_eq!(st.operation_probability("never-seen"), Some(0.01));
    }
}
