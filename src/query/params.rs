//! Jaeger's `/api/traces` search parameters, parsed and checked into a [`TraceQuery`].
//!
//! Parameters (times in µs since epoch, durations as Go durations):
//! `service` (absent: every service), `operation`, `tags` (a JSON object of strings), `tag=key:value` (repeatable),
//! `start`, `end`, `lookback`, `minDuration`, `maxDuration`, `limit`, `traceID`
//! (repeatable: fetch those traces instead of searching). Unknown parameters are ignored,
//! as Jaeger does, because UIs send their own (`spss`, `prettyPrint`…).
//!
//! Defaults: `end` now; `start` = `end` − `lookback` when given, else `end` − retention
//! (everything stored); `limit` 100, at most [`MAX_LIMIT`].

use std::time::Duration;

use thiserror::Error;

use crate::duration;
use crate::model::TraceId;

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 10_000;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("{0}")]
pub struct ParamError(pub String);

/// A search. It also travels between cluster nodes (`cluster::fanout`) as JSON, without
/// its trace ids: a query node looks those up one by one.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct TraceQuery {
    pub service: String,
    pub operation: Option<String>,
    /// Pairs that one span of the service must carry (in tags, log fields or process tags).
    pub tags: Vec<(String, String)>,
    /// Inclusive window on span start times, µs.
    pub start: u64,
    pub end: u64,
    /// Inclusive bounds on the duration of a matching span, µs.
    pub min_duration: Option<u64>,
    pub max_duration: Option<u64>,
    pub limit: usize,
    /// When set, these traces are returned and the other criteria are not used.
    #[serde(skip)]
    pub trace_ids: Vec<TraceId>,
}

/// A result limit: 0 means the default, anything above the maximum is the maximum.
fn limit(name: &str, v: &str) -> Result<usize, ParamError> {
    limit_or(name, v, DEFAULT_LIMIT)
}

fn limit_or(name: &str, v: &str, default: usize) -> Result<usize, ParamError> {
    let n: usize = v.trim().parse().map_err(|_| {
        ParamError(format!(
            "parameter '{name}' must be a non-negative integer, got {v:?}"
        ))
    })?;
    Ok(if n == 0 { default } else { n.min(MAX_LIMIT) })
}

/// The `limit` parameter of a list API: absent or 0 is `default`, at most [`MAX_LIMIT`].
pub fn limit_param(pairs: &[(String, String)], default: usize) -> Result<usize, ParamError> {
    match single(pairs, "limit")? {
        None => Ok(default),
        Some(v) => limit_or("limit", v, default),
    }
}

/// An optional unsigned integer parameter; `unit` names it in the error.
pub fn uint(pairs: &[(String, String)], name: &str, unit: &str) -> Result<Option<u64>, ParamError> {
    single(pairs, name)?
        .map(|v| {
            v.trim()
                .parse::<u64>()
                .map_err(|_| ParamError(format!("parameter '{name}' must be {unit}, got {v:?}")))
        })
        .transpose()
}

/// The raw query string's pairs, decoded.
pub fn pairs(raw: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The single value of a parameter; an error if it is repeated.
pub fn single<'a>(
    pairs: &'a [(String, String)],
    name: &str,
) -> Result<Option<&'a str>, ParamError> {
    let mut found = pairs
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str());
    let first = found.next();
    if found.next().is_some() {
        return Err(ParamError(format!(
            "parameter '{name}' is given more than once"
        )));
    }
    Ok(first.filter(|v| !v.is_empty()))
}

pub(super) fn micros(name: &str, v: &str) -> Result<u64, ParamError> {
    v.trim().parse::<u64>().map_err(|_| {
        ParamError(format!(
            "parameter '{name}' must be microseconds since the epoch, got {v:?}"
        ))
    })
}

/// Below this a time is taken as milliseconds: 10^14 µs is 1973, 10^14 ms the year 5138.
const MS_BELOW: u64 = 100_000_000_000_000;

/// The `start`/`end` window of a trace-by-id request, in µs. Jaeger's UI sends
/// microseconds, Grafana milliseconds; either is taken (see [`MS_BELOW`]).
pub fn trace_window(pairs: &[(String, String)]) -> Result<(Option<u64>, Option<u64>), ParamError> {
    let at = |name: &str| -> Result<Option<u64>, ParamError> {
        single(pairs, name)?
            .map(|v| {
                v.trim()
                    .parse::<u64>()
                    .map(|t| if t < MS_BELOW { t.saturating_mul(1000) } else { t })
                    .map_err(|_| {
                        ParamError(format!(
                            "parameter '{name}' must be microseconds or milliseconds since the epoch, got {v:?}"
                        ))
                    })
            })
            .transpose()
    };
    let (start, end) = (at("start")?, at("end")?);
    if let (Some(s), Some(e)) = (start, end) {
        if s > e {
            return Err(ParamError(format!(
                "parameter 'start' ({s} µs) is after 'end' ({e} µs)"
            )));
        }
    }
    Ok((start, end))
}

pub(super) fn go_duration_us(name: &str, v: &str) -> Result<u64, ParamError> {
    duration::parse(v)
        .map(|d| d.as_micros().min(u64::MAX as u128) as u64)
        .map_err(|e| ParamError(format!("parameter '{name}': {e}")))
}

pub fn parse_trace_query(
    pairs: &[(String, String)],
    now_us: u64,
    retention: Duration,
) -> Result<TraceQuery, ParamError> {
    let mut q = TraceQuery {
        limit: DEFAULT_LIMIT,
        ..TraceQuery::default()
    };
    for (k, v) in pairs {
        match k.as_str() {
            "traceID" | "traceId" => {
                for id in v.split(',').filter(|s| !s.is_empty()) {
                    q.trace_ids.push(
                        TraceId::from_hex(id)
                            .map_err(|e| ParamError(format!("parameter 'traceID': {e}")))?,
                    );
                }
            }
            "tag" => {
                let (key, value) = v.split_once(':').ok_or_else(|| {
                    ParamError(format!("parameter 'tag' must be key:value, got {v:?}"))
                })?;
                q.tags.push((key.to_owned(), value.to_owned()));
            }
            "tags" => {
                let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(v)
                    .map_err(|e| {
                        ParamError(format!(
                            "parameter 'tags' must be a JSON object of strings: {e}"
                        ))
                    })?;
                for (key, value) in map {
                    let value = match value {
                        serde_json::Value::String(s) => s,
                        serde_json::Value::Number(n) => n.to_string(),
                        serde_json::Value::Bool(b) => b.to_string(),
                        other => {
                            return Err(ParamError(format!(
                                "parameter 'tags': value of {key:?} must be a string, got {other}"
                            )))
                        }
                    };
                    q.tags.push((key, value));
                }
            }
            _ => {}
        }
    }
    // no service: every service (the same search in each)
    q.service = single(pairs, "service")?.unwrap_or_default().to_owned();
    q.operation = single(pairs, "operation")?.map(str::to_owned);
    q.end = match single(pairs, "end")? {
        Some(v) => micros("end", v)?,
        None => now_us,
    };
    let lookback = match single(pairs, "lookback")? {
        // The Jaeger UI sends lookback=custom alongside explicit start and end.
        Some("custom") | None => None,
        Some(v) => Some(go_duration_us("lookback", v)?),
    };
    q.start = match single(pairs, "start")? {
        Some(v) => micros("start", v)?,
        None => q
            .end
            .saturating_sub(lookback.unwrap_or(retention.as_micros().min(u64::MAX as u128) as u64)),
    };
    if q.start > q.end {
        return Err(ParamError(format!(
            "parameter 'start' ({}) is after 'end' ({})",
            q.start, q.end
        )));
    }
    q.min_duration = single(pairs, "minDuration")?
        .map(|v| go_duration_us("minDuration", v))
        .transpose()?;
    q.max_duration = single(pairs, "maxDuration")?
        .map(|v| go_duration_us("maxDuration", v))
        .transpose()?;
    if let (Some(min), Some(max)) = (q.min_duration, q.max_duration) {
        if min > max {
            return Err(ParamError(
                "parameter 'minDuration' is greater than 'maxDuration'".into(),
            ));
        }
    }
    if let Some(v) = single(pairs, "limit")? {
        q.limit = limit("limit", v)?;
    }
    Ok(q)
}

/// `/api/v1/metrics/{name}`'s parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricQuery {
    pub service: Option<String>,
    pub function: Option<String>,
    pub qualifier: String,
    pub start_us: u64,
    pub end_us: u64,
    /// Seconds: 60, 300 or 3600.
    pub period: u64,
}

/// `service`, `function`, `qualifier` (default `LATEST`), `start` and `end` (RFC 3339 or
/// epoch milliseconds; default the last hour) and `period` (60, 300 or 3600; default 60).
pub fn parse_metric_query(
    pairs: &[(String, String)],
    now_us: u64,
) -> Result<MetricQuery, ParamError> {
    let time = |name: &str| -> Result<Option<u64>, ParamError> {
        let Some(v) = single(pairs, name)? else {
            return Ok(None);
        };
        if v.bytes().all(|b| b.is_ascii_digit()) {
            return v
                .parse::<u64>()
                .ok()
                .and_then(|ms| ms.checked_mul(1000))
                .map(Some)
                .ok_or_else(|| ParamError(format!("parameter '{name}' is out of range")));
        }
        rfc3339_us(name, v).map(Some)
    };
    let end_us = time("end")?.unwrap_or(now_us);
    let start_us = time("start")?.unwrap_or(end_us.saturating_sub(3600 * 1_000_000));
    if start_us > end_us {
        return Err(ParamError("parameter 'start' is after 'end'".into()));
    }
    let period = match single(pairs, "period")? {
        None => 60,
        Some("60") => 60,
        Some("300") => 300,
        Some("3600") => 3600,
        Some(v) => {
            return Err(ParamError(format!(
                "parameter 'period' must be 60, 300 or 3600, got {v:?}"
            )))
        }
    };
    // a period of 3600 s over 31 days is 744 points; finer periods are capped likewise
    if (end_us - start_us) / (period * 1_000_000) > 50_000 {
        return Err(ParamError(
            "the range holds more than 50,000 periods: narrow it or use a longer period".into(),
        ));
    }
    Ok(MetricQuery {
        service: single(pairs, "service")?.map(str::to_owned),
        function: single(pairs, "function")?.map(str::to_owned),
        qualifier: single(pairs, "qualifier")?.unwrap_or("LATEST").to_owned(),
        start_us,
        end_us,
        period,
    })
}

/// An RFC 3339 time (`2026-11-21T10:00:00Z`, `…+08:00`, fractions allowed) as µs.
fn rfc3339_us(name: &str, v: &str) -> Result<u64, ParamError> {
    let t = time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
        .map_err(|e| {
            ParamError(format!(
                "parameter '{name}' must be an RFC 3339 time like 2026-11-21T10:00:00Z: {e}"
            ))
        })?;
    u64::try_from(t.unix_timestamp_nanos() / 1000)
        .map_err(|_| ParamError(format!("parameter '{name}' is before 1970")))
}

/// The first present parameter among several spellings, once.
fn single_of<'a>(
    pairs: &'a [(String, String)],
    names: &[&str],
) -> Result<Option<&'a str>, ParamError> {
    for n in names {
        if let Some(v) = single(pairs, n)? {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

/// Jaeger's `/api/v3/traces` search: `query.service_name`, `query.operation_name`,
/// `query.attributes` (a JSON object of strings), `query.start_time_min`/`max` (RFC 3339),
/// `query.duration_min`/`max` (durations like `1.5s`), `query.search_depth` or
/// `query.num_traces` (limit). camelCase spellings (`query.serviceName`…) are accepted too.
pub fn parse_v3_query(
    pairs: &[(String, String)],
    now_us: u64,
    retention: Duration,
) -> Result<TraceQuery, ParamError> {
    let mut q = TraceQuery {
        limit: DEFAULT_LIMIT,
        ..TraceQuery::default()
    };
    q.service = single_of(pairs, &["query.service_name", "query.serviceName"])?
        .unwrap_or_default()
        .to_owned();
    q.operation =
        single_of(pairs, &["query.operation_name", "query.operationName"])?.map(str::to_owned);
    if let Some(v) = single(pairs, "query.attributes")? {
        let map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(v).map_err(|e| {
                ParamError(format!(
                    "parameter 'query.attributes' must be a JSON object of strings: {e}"
                ))
            })?;
        for (k, v) in map {
            let v = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            q.tags.push((k, v));
        }
    }
    q.end = match single_of(pairs, &["query.start_time_max", "query.startTimeMax"])? {
        Some(v) => rfc3339_us("query.start_time_max", v)?,
        None => now_us,
    };
    q.start = match single_of(pairs, &["query.start_time_min", "query.startTimeMin"])? {
        Some(v) => rfc3339_us("query.start_time_min", v)?,
        None => q
            .end
            .saturating_sub(retention.as_micros().min(u64::MAX as u128) as u64),
    };
    if q.start > q.end {
        return Err(ParamError(
            "parameter 'query.start_time_min' is after 'query.start_time_max'".into(),
        ));
    }
    q.min_duration = single_of(pairs, &["query.duration_min", "query.durationMin"])?
        .map(|v| go_duration_us("query.duration_min", v))
        .transpose()?;
    q.max_duration = single_of(pairs, &["query.duration_max", "query.durationMax"])?
        .map(|v| go_duration_us("query.duration_max", v))
        .transpose()?;
    if let (Some(min), Some(max)) = (q.min_duration, q.max_duration) {
        if min > max {
            return Err(ParamError(
                "parameter 'query.duration_min' is greater than 'query.duration_max'".into(),
            ));
        }
    }
    if let Some(v) = single_of(
        pairs,
        &[
            "query.search_depth",
            "query.searchDepth",
            "query.num_traces",
            "query.numTraces",
        ],
    )? {
        q.limit = limit("query.search_depth", v)?;
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_000_000_000_000;
    const RET: Duration = Duration::from_secs(3600);

    fn parse(q: &str) -> Result<TraceQuery, ParamError> {
        parse_trace_query(&pairs(Some(q)), NOW, RET)
    }

    #[test]
    fn trace_windows_take_milliseconds_or_microseconds() {
        let w = |q: &str| trace_window(&pairs(Some(q)));
        assert_eq!(
            w("start=1764633600000&end=1764637200000").unwrap(),
            (Some(1_764_633_600_000_000), Some(1_764_637_200_000_000))
        );
        assert_eq!(
            w("start=1764633600000000").unwrap(),
            (Some(1_764_633_600_000_000), None)
        );
        assert_eq!(w("").unwrap(), (None, None));
        assert!(w("start=soon").unwrap_err().0.contains("'start'"));
        assert!(w("start=1764637200000&end=1764633600000").is_err());
    }

    #[test]
    fn full_query() {
        let q = parse("service=s&operation=op&tags=%7B%22a%22%3A%22b%22%7D&tag=c:d:e&start=10&end=20&minDuration=1.5ms&maxDuration=2s&limit=5&spss=x").unwrap();
        assert_eq!(q.service, "s");
        assert_eq!(q.operation.as_deref(), Some("op"));
        assert_eq!(
            q.tags,
            vec![("a".into(), "b".into()), ("c".into(), "d:e".into())]
        );
        assert_eq!((q.start, q.end), (10, 20));
        assert_eq!(
            (q.min_duration, q.max_duration),
            (Some(1500), Some(2_000_000))
        );
        assert_eq!(q.limit, 5);
    }

    #[test]
    fn defaults() {
        let q = parse("service=s").unwrap();
        assert_eq!(q.end, NOW);
        assert_eq!(q.start, NOW - 3_600_000_000);
        assert_eq!(q.limit, DEFAULT_LIMIT);
        let q = parse("service=s&lookback=1h&end=7200000000").unwrap();
        assert_eq!(q.start, 3_600_000_000);
        let q = parse("traceID=abc&traceID=def").unwrap();
        assert_eq!(q.trace_ids, vec![TraceId(0xabc), TraceId(0xdef)]);
    }

    #[test]
    fn v3_query() {
        let q = parse_v3_query(
            &pairs(Some("query.serviceName=s&query.operation_name=op&query.attributes=%7B%22a%22%3A%22b%22%7D&query.start_time_min=1970-01-01T00:00:01Z&query.start_time_max=1970-01-01T00:00:02.5%2B00:00&query.duration_min=1.5s&query.search_depth=3")),
            NOW,
            RET,
        )
        .unwrap();
        assert_eq!(q.service, "s");
        assert_eq!(q.operation.as_deref(), Some("op"));
        assert_eq!(q.tags, vec![("a".into(), "b".into())]);
        assert_eq!((q.start, q.end), (1_000_000, 2_500_000));
        assert_eq!(q.min_duration, Some(1_500_000));
        assert_eq!(q.limit, 3);
        let e = parse_v3_query(
            &pairs(Some("query.service_name=s&query.start_time_min=yesterday")),
            NOW,
            RET,
        )
        .unwrap_err();
        assert!(e.0.contains("RFC 3339"), "{e}");
        // no service: every service
        assert_eq!(
            parse_v3_query(&pairs(Some("")), NOW, RET).unwrap().service,
            ""
        );
    }

    #[test]
    fn malformed_is_refused_with_a_message() {
        for (bad, needle) in [
            ("service=s&service=t", "more than once"),
            ("service=s&start=yesterday", "'start'"),
            ("service=s&start=5&end=4", "after"),
            ("service=s&minDuration=5", "minDuration"),
            ("service=s&minDuration=2s&maxDuration=1s", "greater"),
            ("service=s&limit=-1", "'limit'"),
            ("service=s&tags=%5B1%5D", "'tags'"),
            ("service=s&tag=nocolon", "key:value"),
            ("traceID=xyz", "traceID"),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.0.contains(needle), "{bad}: {err}");
        }
    }
}
