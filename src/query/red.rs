//! Jaeger's metrics query API (the Monitor tab): `/api/metrics/{latencies,calls,errors}`
//! parameters, and the answer computed from the per-minute RED aggregates
//! (`monitor::red`), never from spans.
//!
//! Parameters as Jaeger's query service takes them: `service` (repeated, required),
//! `spanKind` (repeated; `server`, `consumer`, … or `SPAN_KIND_SERVER`; default server),
//! `groupByOperation`, `quantile` (latencies), `endTs`, `lookback`, `step` and `ratePer`
//! (ms). Each point at time t covers the minutes of (t − ratePer, t]: calls are a rate per
//! second over that window, errors the share of its calls that failed, latencies the
//! quantile of its durations in ms. Aggregates are per minute, so `step` is rounded up to
//! whole minutes (`/api/metrics/minstep` says 60000). The answer is Jaeger's
//! `MetricFamily` in proto3 JSON.

use std::collections::BTreeMap;

use serde_json::{json, Value as J};

use super::params::{self, ParamError};
use crate::model::SpanKind;
use crate::monitor::minute::Minute;
use crate::monitor::red;
use crate::monitor::MINUTE_US;
use crate::store::keys::Tenant;
use crate::store::StoreError;

pub const MIN_STEP_MS: u64 = 60_000;
const MINUTE_MS: u64 = 60_000;
/// Points one answer may have per series.
const MAX_POINTS: u64 = 10_080;
/// Minute aggregates one series' answer may fold (points × minutes of the rate window).
const MAX_FOLDED_MINUTES: u64 = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Measure {
    Latencies { quantile: f64 },
    Calls,
    Errors,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RedQuery {
    pub services: Vec<String>,
    pub kinds: Vec<SpanKind>,
    pub by_operation: bool,
    pub end_ms: u64,
    pub lookback_ms: u64,
    pub step_ms: u64,
    pub rate_per_ms: u64,
}

fn kind(v: &str) -> Option<SpanKind> {
    let v = v.trim().to_ascii_lowercase();
    SpanKind::parse(v.strip_prefix("span_kind_").unwrap_or(&v))
}

/// Parse the parameters of one of the three endpoints (`latencies`, `calls`, `errors`).
pub fn parse(
    pairs: &[(String, String)],
    endpoint: &str,
    now_ms: u64,
) -> Result<(RedQuery, Measure), ParamError> {
    let services: Vec<String> = pairs
        .iter()
        .filter(|(k, v)| k == "service" && !v.is_empty())
        .map(|(_, v)| v.clone())
        .collect();
    if services.is_empty() {
        return Err(ParamError(
            "parameter 'service' is required (repeat it for several)".into(),
        ));
    }
    let mut kinds = Vec::new();
    for (_, v) in pairs.iter().filter(|(k, _)| k == "spanKind") {
        kinds.push(kind(v).ok_or_else(|| {
            ParamError(format!(
                "parameter 'spanKind' must be one of server, client, producer, consumer, internal, unspecified; got {v:?}"
            ))
        })?);
    }
    if kinds.is_empty() {
        kinds.push(SpanKind::Server);
    }
    let by_operation = match params::single(pairs, "groupByOperation")? {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(v) => {
            return Err(ParamError(format!(
                "parameter 'groupByOperation' must be true or false, got {v:?}"
            )))
        }
    };
    let ms = |name: &str, default: u64| -> Result<u64, ParamError> {
        Ok(params::uint(pairs, name, "milliseconds")?.unwrap_or(default))
    };
    let q = RedQuery {
        services,
        kinds,
        by_operation,
        end_ms: ms("endTs", now_ms)?,
        lookback_ms: ms("lookback", 3_600_000)?,
        step_ms: ms("step", MIN_STEP_MS)?
            .max(1)
            .div_ceil(MINUTE_MS)
            .saturating_mul(MINUTE_MS),
        rate_per_ms: ms("ratePer", 600_000)?.max(1),
    };
    if q.lookback_ms / q.step_ms > MAX_POINTS {
        return Err(ParamError(format!(
            "'lookback' / 'step' asks for more than {MAX_POINTS} points"
        )));
    }
    // each point folds the minutes of its rate window: bound the work an answer costs
    let points = q.lookback_ms / q.step_ms + 1;
    let window = q.rate_per_ms / MINUTE_MS + 1;
    if points.saturating_mul(window) > MAX_FOLDED_MINUTES {
        return Err(ParamError(format!(
            "'ratePer' over {points} points folds more than {MAX_FOLDED_MINUTES} minutes; use a shorter 'ratePer' or fewer points"
        )));
    }
    let measure = if endpoint == "latencies" {
        let v = params::single(pairs, "quantile")?
            .ok_or_else(|| ParamError("parameter 'quantile' is required".into()))?;
        let quantile: f64 = v
            .trim()
            .parse()
            .ok()
            .filter(|q: &f64| *q > 0.0 && *q <= 1.0)
            .ok_or_else(|| {
                ParamError(format!(
                    "parameter 'quantile' must be a number in (0, 1], got {v:?}"
                ))
            })?;
        Measure::Latencies { quantile }
    } else if endpoint == "errors" {
        Measure::Errors
    } else {
        Measure::Calls
    };
    Ok((q, measure))
}

/// One series' minutes (kinds merged), by minute.
fn minutes(
    store: &dyn crate::store::MetricSource,
    tenant: Tenant,
    q: &RedQuery,
    service: &str,
    operation: Option<&str>,
) -> Result<BTreeMap<u64, Minute>, StoreError> {
    let first = q
        .end_ms
        .saturating_sub(q.lookback_ms)
        .saturating_sub(q.rate_per_ms)
        / MINUTE_MS;
    let last = q.end_ms / MINUTE_MS;
    let mut out: BTreeMap<u64, Minute> = BTreeMap::new();
    for &kind in &q.kinds {
        for (minute, m) in red::series(store, tenant, service, kind, operation, first, last)? {
            out.entry(minute).or_default().merge(&m);
        }
    }
    Ok(out)
}

/// The value at `t_ms` over (t − ratePer, t], or `None` where there is nothing to say.
fn point(minutes: &BTreeMap<u64, Minute>, q: &RedQuery, t_ms: u64, m: Measure) -> Option<f64> {
    let lo = t_ms.saturating_sub(q.rate_per_ms) / MINUTE_MS;
    let hi = t_ms / MINUTE_MS;
    let mut acc = Minute::default();
    for (_, one) in minutes.range(lo + 1..=hi) {
        acc.merge(one);
    }
    match m {
        Measure::Calls => Some(acc.invocations as f64 / (q.rate_per_ms as f64 / 1000.0)),
        _ if acc.invocations == 0 => None,
        Measure::Errors => Some(acc.function_errors as f64 / acc.invocations as f64),
        Measure::Latencies { quantile } => acc.latency_quantile(quantile).map(|us| us / 1000.0),
    }
}

fn timestamp(ms: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp((ms / 1000) as i64)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// The answer: one metric per service (and operation, when grouped), as Jaeger's
/// `MetricFamily`.
pub fn answer(
    query: &super::Query,
    tenant: Tenant,
    q: &RedQuery,
    m: Measure,
) -> Result<J, StoreError> {
    let mut metrics = Vec::new();
    let start = q.end_ms.saturating_sub(q.lookback_ms);
    let times: Vec<u64> = (0..=q.lookback_ms / q.step_ms)
        .map(|i| start + i * q.step_ms)
        .filter(|t| *t <= q.end_ms)
        .collect();
    for service in &q.services {
        let operations: Vec<Option<String>> = if q.by_operation {
            let mut ops: Vec<String> = query
                .operations(tenant, service, None)
                .into_iter()
                .filter(|(_, k)| q.kinds.contains(k))
                .map(|(name, _)| name)
                .collect();
            ops.sort();
            ops.dedup();
            ops.into_iter().map(Some).collect()
        } else {
            vec![None]
        };
        for op in operations {
            let minutes = minutes(query, tenant, q, service, op.as_deref())?;
            let points: Vec<J> = times
                .iter()
                .filter_map(|&t| {
                    point(&minutes, q, t, m).map(
                        |v| json!({"gaugeValue": {"doubleValue": v}, "timestamp": timestamp(t)}),
                    )
                })
                .collect();
            let mut labels = Vec::new();
            if let Some(op) = &op {
                labels.push(json!({"name": "operation", "value": op}));
            }
            labels.push(json!({"name": "service_name", "value": service}));
            metrics.push(json!({"labels": labels, "metricPoints": points}));
        }
    }
    let scope = if q.by_operation {
        "service_operation"
    } else {
        "service"
    };
    let group = if q.by_operation {
        "service & operation"
    } else {
        "service"
    };
    let (name, help) = match m {
        Measure::Latencies { quantile } => (
            format!("{scope}_latencies"),
            format!("{quantile}th quantile latency, grouped by {group}"),
        ),
        Measure::Calls => (
            format!("{scope}_call_rate"),
            format!("calls/sec, grouped by {group}"),
        ),
        Measure::Errors => (
            format!("{scope}_error_rate"),
            format!("error rate, computed as a fraction of errors/sec over calls/sec, grouped by {group}"),
        ),
    };
    Ok(json!({"name": name, "type": "GAUGE", "help": help, "metrics": metrics}))
}

/// Keeps the µs minute length in step with the ms one used here.
const _: () = assert!(MINUTE_US == MINUTE_MS * 1000);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::minute::{bucket_of, Calls};

    fn p(q: &str, lat: bool) -> Result<(RedQuery, Measure), ParamError> {
        let endpoint = if lat { "latencies" } else { "calls" };
        parse(&params::pairs(Some(q)), endpoint, 1_000_000_000)
    }

    #[test]
    fn parameters_as_jaeger_takes_them() {
        let (q, m) = p(
            "service=a&service=b&spanKind=server&spanKind=SPAN_KIND_CONSUMER&groupByOperation=true&quantile=0.95&endTs=7200000&lookback=3600000&step=90000&ratePer=600000",
            true,
        )
        .unwrap();
        assert_eq!(q.services, ["a", "b"]);
        assert_eq!(q.kinds, [SpanKind::Server, SpanKind::Consumer]);
        assert!(q.by_operation);
        assert_eq!(
            (q.end_ms, q.lookback_ms, q.step_ms),
            (7_200_000, 3_600_000, 120_000)
        );
        assert_eq!(m, Measure::Latencies { quantile: 0.95 });
        let (q, m) = p("service=a", false).unwrap();
        assert_eq!(q.kinds, [SpanKind::Server]);
        assert_eq!(
            (q.end_ms, q.step_ms, q.rate_per_ms),
            (1_000_000_000, 60_000, 600_000)
        );
        assert_eq!(m, Measure::Calls);
        for (bad, needle) in [
            ("", "'service'"),
            ("service=a&spanKind=sideways", "spanKind"),
            ("service=a&endTs=soon", "endTs"),
            ("service=a&groupByOperation=maybe", "groupByOperation"),
            ("service=a&lookback=100000000000&step=60000", "points"),
            // a week of minute points, each over a week's rate window
            (
                "service=a&lookback=604800000&step=60000&ratePer=604800000",
                "ratePer",
            ),
        ] {
            assert!(p(bad, false).unwrap_err().0.contains(needle), "{bad}");
        }
        assert!(p("service=a", true).unwrap_err().0.contains("quantile"));
        assert!(p("service=a&quantile=1.5", true)
            .unwrap_err()
            .0
            .contains("quantile"));
    }

    #[test]
    fn points_cover_the_rate_window() {
        let q = RedQuery {
            services: vec![],
            kinds: vec![SpanKind::Server],
            by_operation: false,
            end_ms: 10 * MINUTE_MS,
            lookback_ms: 0,
            step_ms: MINUTE_MS,
            rate_per_ms: 2 * MINUTE_MS,
        };
        let mut minutes = BTreeMap::new();
        for (minute, calls, errors) in [(7u64, 30u64, 3u64), (8, 60, 0), (9, 90, 9)] {
            let mut c = Calls::default();
            for i in 0..calls {
                let latency = 1000 * (i + 1);
                c.count_in_bucket(latency, bucket_of(latency), i < errors);
            }
            let mut bytes = Vec::new();
            c.encode(&mut bytes);
            minutes.insert(minute, Minute::decode(&bytes).unwrap());
        }
        // t = minute 10 covers minutes 9 and 10 (only 9 has calls): 90 calls in 120 s
        assert_eq!(
            point(&minutes, &q, 10 * MINUTE_MS, Measure::Calls),
            Some(0.75)
        );
        assert_eq!(
            point(&minutes, &q, 10 * MINUTE_MS, Measure::Errors),
            Some(0.1)
        );
        // t = minute 9: minutes 8 and 9, 150 calls, 9 errors
        assert_eq!(
            point(&minutes, &q, 9 * MINUTE_MS, Measure::Errors),
            Some(0.06)
        );
        let p50 = point(
            &minutes,
            &q,
            10 * MINUTE_MS,
            Measure::Latencies { quantile: 0.5 },
        );
        // durations 1..=90 ms: the median is 45 ms, within a 4 % bucket
        let p50 = p50.unwrap();
        assert!((45.0..=45.0 * 1.04).contains(&p50), "{p50}");
        assert_eq!(point(&minutes, &q, 3 * MINUTE_MS, Measure::Errors), None);
        assert_eq!(
            point(&minutes, &q, 3 * MINUTE_MS, Measure::Calls),
            Some(0.0)
        );
    }
}
