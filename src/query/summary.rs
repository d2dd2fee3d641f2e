//! Trace summaries for people: the search behind `/api/v1/traces` and the web UI's result
//! list. Finds candidate traces with the Jaeger search planner, then filters on what only a
//! whole trace knows (its duration, whether anything failed, its HTTP request, where it
//! ran) and sorts. A row carries what an APM's result list shows: method, REST and real
//! URL, status, response time, component, environment, instance host and IP, and where
//! the request's logs are.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::{Span, StatusCode, Value};

/// What the human search adds to Jaeger's (parsed by `human`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TraceFilters {
    pub trace_duration_min: Option<u64>,
    pub trace_duration_max: Option<u64>,
    pub errors_only: bool,
    pub successes_only: bool,
    pub http_method: Option<String>,
    pub http_status: Option<String>,
    /// A REST template (`http.route`) or real URL: a substring, or all of it with
    /// `url_exact`.
    pub url: Option<String>,
    pub url_exact: bool,
    /// Where the trace ran, from resource attributes (see [`REGION_KEYS`] and the rest).
    pub region: Option<String>,
    pub environment: Option<String>,
    pub component: Option<String>,
    pub instance: Option<String>,
    pub sort: Sort,
    pub order: Order,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Order {
    /// Newest or longest first.
    #[default]
    Desc,
    Asc,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Sort {
    /// By start time.
    #[default]
    Start,
    /// By response time (the whole trace's duration).
    Duration,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TraceSummary {
    #[serde(rename = "traceID")]
    pub trace_id: String,
    pub root_service: String,
    pub root_operation: String,
    pub start_time: u64,
    pub duration: u64,
    pub span_count: usize,
    pub services: Vec<String>,
    pub error: bool,
    pub error_count: usize,
    pub http_method: Option<String>,
    /// The real URL.
    pub http_url: Option<String>,
    pub http_status: Option<String>,
    /// The REST template (`http.route`).
    pub rest_url: Option<String>,
    pub component: Option<String>,
    pub environment: Option<String>,
    pub region: Option<String>,
    pub instance_id: Option<String>,
    pub instance_host: Option<String>,
    pub instance_ip: Option<String>,
    /// The function logs of the request the trace is (its platform spans' request id).
    pub logs_url: Option<String>,
    /// Spans whose parent is not in the trace (`/api/v3/trace-summaries` shows it).
    #[serde(skip)]
    pub orphan_count: usize,
    /// Spans and error spans of each service, by name (`/api/v3/trace-summaries`).
    #[serde(skip)]
    pub per_service: Vec<ServiceCount>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceCount {
    pub name: String,
    pub spans: usize,
    pub errors: usize,
}

const METHOD_KEYS: [&str; 2] = ["http.method", "http.request.method"];
const STATUS_KEYS: [&str; 2] = ["http.status_code", "http.response.status_code"];
const URL_KEYS: [&str; 4] = ["http.url", "url.full", "http.target", "url.path"];
const ROUTE_KEYS: [&str; 1] = ["http.route"];
/// Resource attributes (process tags) or span tags that say where a trace ran.
pub const REGION_KEYS: [&str; 1] = ["cloud.region"];
pub const ENVIRONMENT_KEYS: [&str; 2] = ["deployment.environment", "deployment.environment.name"];
/// OpenTracing's `component` (the framework or library), else the instrumentation scope.
pub const COMPONENT_KEYS: [&str; 3] = ["component", "otel.scope.name", "otel.library.name"];
pub const INSTANCE_KEYS: [&str; 5] = [
    "service.instance.id",
    "fc.instance_id",
    "host.name",
    "hostname",
    "ip",
];
const HOST_KEYS: [&str; 2] = ["host.name", "hostname"];
const IP_KEYS: [&str; 3] = ["ip", "host.ip", "net.host.ip"];
const REQUEST_KEYS: [&str; 2] = ["fc.request_id", "faas.invocation_id"];

fn as_text(v: &Value) -> String {
    match v {
        Value::Str(x) => x.to_string(),
        other => other.to_search_string(),
    }
}

/// The first of `keys` a span carries in its tags, earliest span first.
fn first_tag(spans: &[&Span], keys: &[&str]) -> Option<String> {
    spans
        .iter()
        .find_map(|s| keys.iter().find_map(|k| s.tag(k).map(as_text)))
}

/// The first of `keys` a span carries in its tags or its process (resource) tags.
fn first_attr(spans: &[&Span], keys: &[&str]) -> Option<String> {
    spans.iter().find_map(|s| {
        keys.iter().find_map(|k| {
            s.tag(k)
                .or_else(|| {
                    s.process
                        .tags
                        .iter()
                        .find(|kv| kv.key == *k)
                        .map(|kv| &kv.value)
                })
                .map(as_text)
        })
    })
}

/// Summarise one trace (spans in any order).
pub fn summarize(spans: &[Span]) -> TraceSummary {
    let ids: std::collections::HashSet<_> = spans.iter().map(|s| s.span_id).collect();
    let root = spans
        .iter()
        .filter(|s| s.parent_span_id().is_none_or(|p| !ids.contains(&p)))
        .min_by_key(|s| s.start_time)
        .or_else(|| spans.first());
    let start = spans.iter().map(|s| s.start_time).min().unwrap_or(0);
    let end = spans
        .iter()
        .map(|s| s.start_time + s.duration)
        .max()
        .unwrap_or(0);
    let mut per_service: BTreeMap<&str, ServiceCount> = BTreeMap::new();
    let (mut errors, mut orphans) = (0, 0);
    for s in spans {
        let failed = s.status().code == StatusCode::Error;
        errors += usize::from(failed);
        orphans += usize::from(s.parent_span_id().is_some_and(|p| !ids.contains(&p)));
        let c = per_service
            .entry(&s.process.service_name)
            .or_insert_with(|| ServiceCount {
                name: s.process.service_name.clone(),
                spans: 0,
                errors: 0,
            });
        c.spans += 1;
        c.errors += usize::from(failed);
    }
    // HTTP details from the root first, then any span, earliest first.
    let mut by_start: Vec<&Span> = spans.iter().collect();
    by_start.sort_by_key(|s| s.start_time);
    if let Some(r) = root {
        by_start.insert(0, r);
    }
    TraceSummary {
        trace_id: spans
            .first()
            .map(|s| s.trace_id.to_string())
            .unwrap_or_default(),
        root_service: root
            .map(|r| r.process.service_name.clone())
            .unwrap_or_default(),
        root_operation: root.map(|r| r.operation_name.clone()).unwrap_or_default(),
        start_time: start,
        duration: end.saturating_sub(start),
        span_count: spans.len(),
        services: per_service.keys().map(|k| (*k).to_owned()).collect(),
        error: errors > 0,
        error_count: errors,
        http_method: first_tag(&by_start, &METHOD_KEYS),
        http_url: first_tag(&by_start, &URL_KEYS),
        http_status: first_tag(&by_start, &STATUS_KEYS),
        rest_url: first_tag(&by_start, &ROUTE_KEYS),
        component: first_attr(&by_start, &COMPONENT_KEYS),
        environment: first_attr(&by_start, &ENVIRONMENT_KEYS),
        region: first_attr(&by_start, &REGION_KEYS),
        instance_id: first_attr(&by_start, &INSTANCE_KEYS[..2]),
        instance_host: first_attr(&by_start, &HOST_KEYS),
        instance_ip: first_attr(&by_start, &IP_KEYS),
        logs_url: first_tag(&by_start, &REQUEST_KEYS).map(|id| {
            format!(
                "/api/v1/logs?requestId={}",
                percent_encoding::utf8_percent_encode(&id, percent_encoding::NON_ALPHANUMERIC)
            )
        }),
        orphan_count: orphans,
        per_service: per_service.into_values().collect(),
    }
}

fn any_tag(spans: &[Span], keys: &[&str], pred: impl Fn(&str) -> bool) -> bool {
    spans.iter().any(|s| {
        keys.iter()
            .any(|k| s.tag(k).is_some_and(|v| pred(&v.to_search_string())))
    })
}

/// Whether any span carries one of `keys` equal to `want` in its tags or process tags.
fn any_attr(spans: &[Span], keys: &[&str], want: &str) -> bool {
    spans.iter().any(|s| {
        keys.iter().any(|k| {
            s.tag(k).is_some_and(|v| as_text(v) == want)
                || s.process
                    .tags
                    .iter()
                    .any(|kv| kv.key == *k && as_text(&kv.value) == want)
        })
    })
}

/// Whether a whole trace passes the filters.
pub fn passes(spans: &[Span], summary: &TraceSummary, f: &TraceFilters) -> bool {
    let place = |want: &Option<String>, keys: &[&str]| {
        want.as_ref().is_none_or(|w| any_attr(spans, keys, w))
    };
    f.trace_duration_min.is_none_or(|d| summary.duration >= d)
        && f.trace_duration_max.is_none_or(|d| summary.duration <= d)
        && (!f.errors_only || summary.error)
        && (!f.successes_only || !summary.error)
        && place(&f.region, &REGION_KEYS)
        && place(&f.environment, &ENVIRONMENT_KEYS)
        && place(&f.component, &COMPONENT_KEYS)
        && place(&f.instance, &INSTANCE_KEYS)
        && f.http_method
            .as_ref()
            .is_none_or(|m| any_tag(spans, &METHOD_KEYS, |v| v.eq_ignore_ascii_case(m)))
        && f.http_status
            .as_ref()
            .is_none_or(|st| any_tag(spans, &STATUS_KEYS, |v| v == st))
        && f.url.as_ref().is_none_or(|u| {
            let keys = [&URL_KEYS[..], &ROUTE_KEYS[..]].concat();
            if f.url_exact {
                any_tag(spans, &keys, |v| v == u)
            } else {
                any_tag(spans, &keys, |v| v.contains(u.as_str()))
            }
        })
}

pub fn sort(list: &mut [TraceSummary], by: Sort, order: Order) {
    match by {
        Sort::Start => list.sort_by_key(|t| t.start_time),
        Sort::Duration => list.sort_by_key(|t| (t.duration, t.start_time)),
    }
    if order == Order::Desc {
        list.reverse();
    }
}
