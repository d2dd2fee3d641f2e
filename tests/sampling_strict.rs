//! The sampling API read as strictly as Go's Jaeger clients read it (issue 16): each
//! response decoded into the types of Jaeger's IDL (`sampling.thrift`/`sampling.proto`),
//! unknown fields refused, integers where the IDL has integers, `strategyType` as Jaeger's
//! proto JSON writes it. And the per-operation lower bound honoured by the gateway.

mod common;

use common::gateway::{behave_fn, invoke, record};
use common::*;
use serde::Deserialize;

/// `SamplingStrategyType`: proto JSON writes the enum's name.
#[derive(Debug, Deserialize, PartialEq)]
enum StrategyType {
    #[serde(rename = "PROBABILISTIC")]
    Probabilistic,
    #[serde(rename = "RATE_LIMITING")]
    RateLimiting,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Probabilistic {
    sampling_rate: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RateLimiting {
    /// `i16` in the IDL: `1.0` does not decode, as in Go
    max_traces_per_second: i16,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PerOperation {
    operation: String,
    probabilistic_sampling: Probabilistic,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct OperationSampling {
    default_sampling_probability: f64,
    default_lower_bound_traces_per_second: f64,
    per_operation_strategies: Vec<PerOperation>,
    #[allow(dead_code)]
    default_upper_bound_traces_per_second: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Response {
    strategy_type: StrategyType,
    probabilistic_sampling: Option<Probabilistic>,
    rate_limiting_sampling: Option<RateLimiting>,
    operation_sampling: Option<OperationSampling>,
}

fn strict(d: &Daemon, service: &str) -> Response {
    let url = format!("http://{}/sampling?service={service}", d.port("sampling"));
    let text = http().get(url).send().unwrap().text().unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text} does not decode strictly: {e}"))
}

#[test]
fn every_strategy_decodes_as_jaeger_s_idl_types() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("s.json");
    std::fs::write(
        &rules,
        r#"{"default_strategy": {"type": "ratelimiting", "param": 2.6},
            "service_strategies": [
              {"service": "p", "type": "probabilistic", "param": 0.25},
              {"service": "ops", "type": "probabilistic", "param": 0.5,
               "default_lower_bound_traces_per_second": 0.2,
               "operation_strategies": [{"operation": "/health", "type": "probabilistic", "param": 0}]}]}"#,
    )
    .unwrap();
    let d = start_server_with(&["--sampling-strategies", rules.to_str().unwrap()]);

    let r = strict(&d, "anyone");
    assert_eq!(r.strategy_type, StrategyType::RateLimiting);
    // a whole number of traces (2.6 rounds to 3 on the wire)
    assert_eq!(r.rate_limiting_sampling.unwrap().max_traces_per_second, 3);
    assert!(r.probabilistic_sampling.is_none() && r.operation_sampling.is_none());

    let r = strict(&d, "p");
    assert_eq!(r.strategy_type, StrategyType::Probabilistic);
    assert_eq!(r.probabilistic_sampling.unwrap().sampling_rate, 0.25);

    let r = strict(&d, "ops");
    let o = r.operation_sampling.unwrap();
    assert_eq!(o.default_sampling_probability, 0.5);
    assert_eq!(o.default_lower_bound_traces_per_second, 0.2);
    assert_eq!(o.per_operation_strategies.len(), 1);
    assert_eq!(o.per_operation_strategies[0].operation, "/health");
    assert_eq!(
        o.per_operation_strategies[0]
            .probabilistic_sampling
            .sampling_rate,
        0.0
    );

    // and a float where the IDL has an integer is what such a decoder refuses
    assert!(serde_json::from_str::<RateLimiting>(r#"{"maxTracesPerSecond": 1.0}"#).is_err());
}

#[test]
fn the_gateway_honours_the_operation_lower_bound() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("s.json");
    // probability 0 for the platform's root operation, but one trace per 10 s guaranteed
    std::fs::write(
        &rules,
        r#"{"service_strategies": [{"service": "FC:test/lb", "type": "probabilistic", "param": 0,
             "default_lower_bound_traces_per_second": 0.1,
             "operation_strategies": [{"operation": "InvokeFunction", "type": "probabilistic", "param": 0}]}]}"#,
    )
    .unwrap();
    let functions = dir.path().join("functions.toml");
    std::fs::write(&functions, behave_fn("lb", "")).unwrap();
    let d = Daemon::start_in(
        &dir.path().join("data"),
        &[
            "--functions",
            functions.to_str().unwrap(),
            "--sampling-strategies",
            rules.to_str().unwrap(),
        ],
    );
    let sampled: Vec<bool> = (0..5)
        .map(|_| {
            let a = invoke(&d, "test", "lb", "ok", &[]);
            assert_eq!(a.status, 200, "{}", a.body);
            let rid = a.header("x-fc-request-id").to_owned();
            record(&d, "test", "lb", &rid)["isSampled"] == true
        })
        .collect();
    assert_eq!(sampled, [true, false, false, false, false]);
}
