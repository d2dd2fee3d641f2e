//! Sampling strategies in Jaeger's file format, resolved per service as Jaeger's static
//! strategy store does, and the JSON the remote sampling API answers.
//!
//! File: `{"default_strategy": {...}, "service_strategies": [{"service": .., "type":
//! "probabilistic"|"ratelimiting", "param": .., "operation_strategies": [{"operation": ..,
//! "type": "probabilistic", "param": ..}]}]}`. Merging follows Jaeger: a service with its
//! own operation rules gets the default strategy's operation rules for operations it does
//! not name; a probabilistic service without operation rules inherits the default's
//! operation rules with its own rate as the default probability. Operation rules are
//! probabilistic only. Unlike Jaeger, a bad rule is refused rather than replaced, so a
//! typo never silently changes sampling.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Jaeger's default probability for operations without a rule.
const DEFAULT_SAMPLING_PROBABILITY: f64 = 0.001;

#[derive(Debug, Error, PartialEq)]
pub enum StrategyError {
    #[error("not valid strategies JSON: {0}")]
    Json(String),
    #[error("{at}: unknown type {found:?}; use \"probabilistic\" or \"ratelimiting\"")]
    Type { at: String, found: String },
    #[error("{at}: {why}")]
    Param { at: String, why: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    default_strategy: Option<RawStrategy>,
    #[serde(default)]
    service_strategies: Vec<RawStrategy>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStrategy {
    service: Option<String>,
    operation: Option<String>,
    #[serde(rename = "type")]
    kind: String,
    param: f64,
    #[serde(default)]
    operation_strategies: Vec<RawStrategy>,
    /// fctrace's addition to Jaeger's file: the per-operation lower bound of a service
    /// with operation strategies (Jaeger's adaptive sampler sets it; its files cannot).
    #[serde(default)]
    default_lower_bound_traces_per_second: Option<f64>,
}

/// A top-level strategy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Strategy {
    Probabilistic(f64),
    RateLimiting(f64),
}

/// Per-operation rules, as Jaeger's `operationSampling`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OperationRules {
    pub default_probability: f64,
    pub default_lower_bound_per_second: f64,
    pub per_operation: Vec<(String, f64)>,
}

/// What one service samples with.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceStrategy {
    pub strategy: Strategy,
    pub operations: Option<OperationRules>,
}

impl ServiceStrategy {
    /// The probability an operation is sampled with, when operation rules apply.
    pub fn operation_probability(&self, operation: &str) -> Option<f64> {
        let ops = self.operations.as_ref()?;
        Some(
            ops.per_operation
                .iter()
                .find(|(op, _)| op == operation)
                .map(|(_, p)| *p)
                .unwrap_or(ops.default_probability),
        )
    }
}

/// All rules: the default and each named service's, already merged.
#[derive(Debug, Clone, PartialEq)]
pub struct Strategies {
    default: ServiceStrategy,
    services: BTreeMap<String, ServiceStrategy>,
}

impl Default for Strategies {
    /// The platform's default: one trace per second per service.
    fn default() -> Self {
        Strategies {
            default: ServiceStrategy {
                strategy: Strategy::RateLimiting(1.0),
                operations: None,
            },
            services: BTreeMap::new(),
        }
    }
}

fn parse_strategy(raw: &RawStrategy, at: &str) -> Result<Strategy, StrategyError> {
    if !raw.param.is_finite() {
        return Err(StrategyError::Param {
            at: at.into(),
            why: "param must be a number".into(),
        });
    }
    match raw.kind.as_str() {
        "probabilistic" if (0.0..=1.0).contains(&raw.param) => {
            Ok(Strategy::Probabilistic(raw.param))
        }
        "probabilistic" => Err(StrategyError::Param {
            at: at.into(),
            why: format!("probabilistic param {} is outside 0..=1", raw.param),
        }),
        "ratelimiting" if raw.param >= 0.0 => Ok(Strategy::RateLimiting(raw.param)),
        "ratelimiting" => Err(StrategyError::Param {
            at: at.into(),
            why: format!("ratelimiting param {} is negative", raw.param),
        }),
        other => Err(StrategyError::Type {
            at: at.into(),
            found: other.into(),
        }),
    }
}

fn parse_service(raw: &RawStrategy, at: &str) -> Result<ServiceStrategy, StrategyError> {
    let strategy = parse_strategy(raw, at)?;
    if raw.operation_strategies.is_empty() {
        return Ok(ServiceStrategy {
            strategy,
            operations: None,
        });
    }
    let mut rules = OperationRules {
        default_probability: match strategy {
            Strategy::Probabilistic(p) => p,
            Strategy::RateLimiting(_) => DEFAULT_SAMPLING_PROBABILITY,
        },
        default_lower_bound_per_second: match raw.default_lower_bound_traces_per_second {
            None => 0.0,
            Some(lb) if lb.is_finite() && lb >= 0.0 => lb,
            Some(lb) => {
                return Err(StrategyError::Param {
                    at: at.into(),
                    why: format!("default_lower_bound_traces_per_second {lb} is negative"),
                })
            }
        },
        per_operation: Vec::new(),
    };
    for (i, op) in raw.operation_strategies.iter().enumerate() {
        let op_at = format!("{at}.operation_strategies[{i}]");
        let name = op.operation.clone().ok_or_else(|| StrategyError::Param {
            at: op_at.clone(),
            why: "operation is required".into(),
        })?;
        match parse_strategy(op, &op_at)? {
            Strategy::Probabilistic(p) => rules.per_operation.push((name, p)),
            Strategy::RateLimiting(_) => {
                return Err(StrategyError::Param {
                    at: op_at,
                    why: "operation strategies can only be probabilistic".into(),
                })
            }
        }
    }
    Ok(ServiceStrategy {
        strategy,
        operations: Some(rules),
    })
}

impl Strategies {
    pub fn parse(text: &str) -> Result<Strategies, StrategyError> {
        Self::parse_noting(text).map(|(s, _)| s)
    }

    /// Parse a file as the platforms document them: comments and trailing commas are
    /// tolerated (and returned, for a warning); anything else that is not JSON is refused
    /// with its line and column.
    pub fn parse_noting(text: &str) -> Result<(Strategies, Vec<String>), StrategyError> {
        let (clean, tolerated) = super::lenient::tolerate(text);
        Self::parse_json(&clean).map(|s| (s, tolerated))
    }

    fn parse_json(text: &str) -> Result<Strategies, StrategyError> {
        let raw: RawFile =
            serde_json::from_str(text).map_err(|e| StrategyError::Json(e.to_string()))?;
        let default = match &raw.default_strategy {
            Some(d) => parse_service(d, "default_strategy")?,
            None => ServiceStrategy {
                strategy: Strategy::Probabilistic(DEFAULT_SAMPLING_PROBABILITY),
                operations: None,
            },
        };
        let mut services = BTreeMap::new();
        for (i, s) in raw.service_strategies.iter().enumerate() {
            let at = format!("service_strategies[{i}]");
            let name = s.service.clone().ok_or_else(|| StrategyError::Param {
                at: at.clone(),
                why: "service is required".into(),
            })?;
            let mut parsed = parse_service(s, &at)?;
            match (&mut parsed.operations, &default.operations) {
                (Some(own), Some(inherited)) => {
                    for (op, p) in &inherited.per_operation {
                        if !own.per_operation.iter().any(|(o, _)| o == op) {
                            own.per_operation.push((op.clone(), *p));
                        }
                    }
                }
                (None, Some(inherited)) => {
                    if let Strategy::Probabilistic(p) = parsed.strategy {
                        let mut ops = inherited.clone();
                        ops.default_probability = p;
                        parsed.operations = Some(ops);
                    }
                }
                _ => {}
            }
            services.insert(name, parsed);
        }
        Ok(Strategies { default, services })
    }

    /// Rules made in code (adaptive sampling's), not read from a file.
    pub fn from_parts(
        default: ServiceStrategy,
        services: BTreeMap<String, ServiceStrategy>,
    ) -> Strategies {
        Strategies { default, services }
    }

    /// The rule of `service`, else of `fallback` (the platform's tracing service), else
    /// the default.
    pub fn for_service_or(&self, service: &str, fallback: &str) -> &ServiceStrategy {
        self.services
            .get(service)
            .or_else(|| self.services.get(fallback))
            .unwrap_or(&self.default)
    }

    pub fn for_service(&self, service: &str) -> &ServiceStrategy {
        self.services.get(service).unwrap_or(&self.default)
    }
}

/// The remote sampling API's answer for one service.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SamplingResponse {
    strategy_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    probabilistic_sampling: Option<Probabilistic>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rate_limiting_sampling: Option<RateLimiting>,
    #[serde(skip_serializing_if = "Option::is_none")]
    operation_sampling: Option<OperationSampling>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Probabilistic {
    sampling_rate: f64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RateLimiting {
    /// An integer, as Jaeger's IDL has it (`i16`): Go clients refuse `1.0`.
    max_traces_per_second: i16,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct OperationSampling {
    default_sampling_probability: f64,
    default_lower_bound_traces_per_second: f64,
    per_operation_strategies: Vec<PerOperation>,
    default_upper_bound_traces_per_second: f64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PerOperation {
    operation: String,
    probabilistic_sampling: Probabilistic,
}

impl From<&ServiceStrategy> for SamplingResponse {
    fn from(s: &ServiceStrategy) -> Self {
        let (strategy_type, probabilistic_sampling, rate_limiting_sampling) = match s.strategy {
            Strategy::Probabilistic(p) => (
                "PROBABILISTIC",
                Some(Probabilistic { sampling_rate: p }),
                None,
            ),
            Strategy::RateLimiting(r) => (
                "RATE_LIMITING",
                None,
                Some(RateLimiting {
                    // the sampler itself keeps the fraction; the wire has whole traces
                    max_traces_per_second: r.round().clamp(0.0, i16::MAX as f64) as i16,
                }),
            ),
        };
        SamplingResponse {
            strategy_type,
            probabilistic_sampling,
            rate_limiting_sampling,
            operation_sampling: s.operations.as_ref().map(|o| OperationSampling {
                default_sampling_probability: o.default_probability,
                default_lower_bound_traces_per_second: o.default_lower_bound_per_second,
                per_operation_strategies: o
                    .per_operation
                    .iter()
                    .map(|(op, p)| PerOperation {
                        operation: op.clone(),
                        probabilistic_sampling: Probabilistic { sampling_rate: *p },
                    })
                    .collect(),
                default_upper_bound_traces_per_second: 0.0,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn answer(s: &Strategies, service: &str) -> serde_json::Value {
        serde_json::to_value(SamplingResponse::from(s.for_service(service))).unwrap()
    }

    #[test]
    fn platform_default_is_one_trace_per_second() {
        let s = Strategies::default();
        assert_eq!(
            answer(&s, "anything"),
            json!({"strategyType": "RATE_LIMITING", "rateLimitingSampling": {"maxTracesPerSecond": 1}})
        );
    }

    #[test]
    fn services_and_operations_merge_like_jaeger() {
        let s = Strategies::parse(
            r#"{"default_strategy": {"type": "probabilistic", "param": 0.5,
                  "operation_strategies": [{"operation": "/health", "type": "probabilistic", "param": 0.0},
                                           {"operation": "/login", "type": "probabilistic", "param": 0.9}]},
                "service_strategies": [
                  {"service": "a", "type": "probabilistic", "param": 0.8,
                   "operation_strategies": [{"operation": "/login", "type": "probabilistic", "param": 0.3}]},
                  {"service": "b", "type": "probabilistic", "param": 0.2},
                  {"service": "c", "type": "ratelimiting", "param": 5}]}"#,
        )
        .unwrap();
        assert_eq!(
            answer(&s, "a"),
            json!({"strategyType": "PROBABILISTIC", "probabilisticSampling": {"samplingRate": 0.8},
                   "operationSampling": {"defaultSamplingProbability": 0.8, "defaultLowerBoundTracesPerSecond": 0.0,
                     "perOperationStrategies": [
                       {"operation": "/login", "probabilisticSampling": {"samplingRate": 0.3}},
                       {"operation": "/health", "probabilisticSampling": {"samplingRate": 0.0}}],
                     "defaultUpperBoundTracesPerSecond": 0.0}})
        );
        let b = s.for_service("b");
        assert_eq!(b.operation_probability("/login"), Some(0.9));
        assert_eq!(b.operation_probability("/other"), Some(0.2));
        assert_eq!(
            answer(&s, "c"),
            json!({"strategyType": "RATE_LIMITING", "rateLimitingSampling": {"maxTracesPerSecond": 5}})
        );
        assert_eq!(s.for_service("zzz").strategy, Strategy::Probabilistic(0.5));
    }

    #[test]
    fn bad_files_are_refused_with_the_place() {
        let e = Strategies::parse("{").unwrap_err();
        assert!(matches!(e, StrategyError::Json(_)));
        let e = Strategies::parse(r#"{"default_strategy": {"type": "sometimes", "param": 1}}"#)
            .unwrap_err();
        assert_eq!(e.to_string(), "default_strategy: unknown type \"sometimes\"; use \"probabilistic\" or \"ratelimiting\"");
        let e = Strategies::parse(
            r#"{"service_strategies": [{"service": "a", "type": "ratelimiting", "param": -1}]}"#,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "service_strategies[0]: ratelimiting param -1 is negative"
        );
        let e = Strategies::parse(
            r#"{"service_strategies": [{"service": "a", "type": "probabilistic", "param": 1.5}]}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("outside 0..=1"));
        assert!(Strategies::parse(
            r#"{"default_strategy": {"type": "probabilistic", "param": 1}, "x": 1}"#
        )
        .is_err());
    }
}
