//! Trace summaries for people: the search behind `/api/v1/traces` and the web UI's result
//! list. Finds candidate traces with the Jaeger search planner, then filters on what only a
//! whole trace knows (its duration, whether anything failed, its HTTP request) and sorts.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::{Span, StatusCode, Value};

/// What the human search adds to Jaeger's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TraceFilters {
    pub trace_duration_min: Option<u64>,
    pub trace_duration_max: Option<u64>,
    pub errors_only: bool,
    pub http_method: Option<String>,
    pub http_status: Option<String>,
    /// A substring of the request URL.
    pub url: Option<String>,
    pub sort: Sort,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Sort {
    /// Newest first.
    #[default]
    Start,
    /// Longest first.
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
    pub http_url: Option<String>,
    pub http_status: Option<String>,
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

fn first_tag(spans: &[&Span], keys: &[&str]) -> Option<String> {
    spans.iter().find_map(|s| {
        keys.iter().find_map(|k| {
            s.tag(k).map(|v| match v {
                Value::Str(x) => x.clone(),
                other => other.to_search_string(),
            })
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

/// Whether a whole trace passes the filters.
pub fn passes(spans: &[Span], summary: &TraceSummary, f: &TraceFilters) -> bool {
    f.trace_duration_min.is_none_or(|d| summary.duration >= d)
        && f.trace_duration_max.is_none_or(|d| summary.duration <= d)
        && (!f.errors_only || summary.error)
        && f.http_method
            .as_ref()
            .is_none_or(|m| any_tag(spans, &METHOD_KEYS, |v| v.eq_ignore_ascii_case(m)))
        && f.http_status
            .as_ref()
            .is_none_or(|st| any_tag(spans, &STATUS_KEYS, |v| v == st))
        && f.url
            .as_ref()
            .is_none_or(|u| any_tag(spans, &URL_KEYS, |v| v.contains(u.as_str())))
}

pub fn sort(list: &mut [TraceSummary], by: Sort) {
    match by {
        Sort::Start => list.sort_by_key(|t| std::cmp::Reverse(t.start_time)),
        Sort::Duration => list.sort_by_key(|t| std::cmp::Reverse((t.duration, t.start_time))),
    }
}
