//! The query side: reads the store, never writes it.
//!
//! [`Query`] answers the questions the HTTP API asks: services, operations, a trace by id,
//! a search, and service dependencies. The search planner uses the indexes only to find
//! candidate traces, newest first, and then checks each candidate's spans exactly, so the
//! answer follows Jaeger's semantics whatever the indexes leave out. JSON shapes live in
//! `jaeger_json`; parameter parsing in `params`.

pub mod calls;
pub mod human;
pub mod jaeger_json;
pub mod logs;
pub mod otlp_json;
pub mod params;
pub mod red;
pub mod remote;
pub mod summary;
pub mod tree;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use crate::model::InvocationRecord;
use crate::model::{Span, SpanKind, TraceId};
use crate::monitor::minute::Minute;
use crate::store::keys::{self, IndexPrefix, Tenant, MAX_INDEXED_LEN};
use crate::store::{Store, StoreError};
pub use params::TraceQuery;

/// A condition's index scan stops collecting after this many entries and the condition is
/// then only checked on candidates, so one unselective tag cannot make a search unbounded.
const FILTER_SCAN_CAP: usize = 10_000;
/// Most traces one search loads to check before it gives up on finding more.
const MAX_CANDIDATES: usize = 20_000;

#[derive(Clone)]
pub struct Query {
    store: Arc<Store>,
    /// On a query node: the store nodes that hold the traces.
    remote: Option<Arc<dyn remote::Remote>>,
    /// What the current request could not read (`for_request`).
    gaps: remote::Gaps,
}

/// A parent service calling a child service, counted over a window.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DependencyLink {
    pub parent: String,
    pub child: String,
    pub call_count: u64,
}

impl Query {
    pub fn new(store: Arc<Store>) -> Self {
        Query {
            store,
            remote: None,
            gaps: remote::Gaps::default(),
        }
    }

    /// A query side that reads traces, services, operations and dependencies from
    /// `remote` (a query node), and everything else from `store`.
    pub fn with_remote(store: Arc<Store>, remote: Arc<dyn remote::Remote>) -> Self {
        Query {
            remote: Some(remote),
            ..Query::new(store)
        }
    }

    /// Whether traces are read from store nodes elsewhere.
    pub fn is_remote(&self) -> bool {
        self.remote.is_some()
    }

    /// This query side for one request, with the gaps its reads leave (empty on a
    /// single node; on a query node, the partitions no store node answered for).
    pub fn for_request(&self) -> (Query, remote::Gaps) {
        let gaps = remote::Gaps::default();
        let q = Query {
            gaps: gaps.clone(),
            ..self.clone()
        };
        (q, gaps)
    }

    pub fn services(&self, tenant: Tenant) -> Vec<String> {
        if let Some(r) = &self.remote {
            let (services, missing) = r.services(tenant);
            self.gaps.add(missing);
            return services;
        }
        self.store.services(tenant)
    }

    pub fn operations(
        &self,
        tenant: Tenant,
        service: &str,
        kind: Option<SpanKind>,
    ) -> Vec<(String, SpanKind)> {
        let mut ops = match &self.remote {
            Some(r) => {
                let (ops, missing) = r.operations(tenant, service);
                self.gaps.add(missing);
                ops
            }
            None => self.store.operations(tenant, service),
        };
        if let Some(k) = kind {
            ops.retain(|(_, kind)| *kind == k);
        }
        ops
    }

    /// Invocation records of one function (newest first) or of a whole service, that
    /// started in `[start, end]` (µs) and that `filter` keeps, at most `limit`; and
    /// whether the walk stopped at `calls::MAX_SCANNED` records read.
    #[allow(clippy::too_many_arguments)]
    pub fn invocations(
        &self,
        tenant: Tenant,
        service: &str,
        function: Option<&str>,
        start: u64,
        end: u64,
        limit: usize,
        filter: &calls::CallFilter,
    ) -> Result<(Vec<InvocationRecord>, bool), StoreError> {
        if let Some(r) = &self.remote {
            let (found, missing) = r.invocations(
                tenant,
                &remote::Calls {
                    service,
                    function,
                    start,
                    end,
                    limit,
                    filter,
                },
            );
            self.gaps.add(missing);
            return Ok(found);
        }
        let (mut out, mut scanned) = (Vec::new(), 0usize);
        self.store
            .scan_invocations(tenant, service, function, start, end, |v| {
                scanned += 1;
                // a record that does not parse is not one this build wrote: skip it
                if let Ok(r) = serde_json::from_slice::<InvocationRecord>(v) {
                    if filter.keeps(&r) {
                        out.push(r);
                    }
                }
                out.len() < limit && scanned < calls::MAX_SCANNED
            })?;
        Ok((out, scanned >= calls::MAX_SCANNED))
    }

    /// The record of `request_id`.
    pub fn invocation(
        &self,
        tenant: Tenant,
        request_id: &str,
    ) -> Result<Option<InvocationRecord>, StoreError> {
        if let Some(r) = &self.remote {
            return r
                .invocation(tenant, request_id)
                .map_err(StoreError::Unreachable);
        }
        Ok(self
            .store
            .invocation(tenant, request_id)?
            .and_then(|v| serde_json::from_slice(&v).ok()))
    }

    /// A trace's spans, or `None` when nothing of it is stored.
    pub fn trace(&self, tenant: Tenant, id: TraceId) -> Result<Option<Vec<Span>>, StoreError> {
        if let Some(r) = &self.remote {
            return r.trace(tenant, id).map_err(StoreError::Unreachable);
        }
        let spans = self.store.trace(tenant, id)?;
        Ok((!spans.is_empty()).then_some(spans))
    }

    /// Traces matching `q`, newest first, at most `q.limit`.
    pub fn search(&self, tenant: Tenant, q: &TraceQuery) -> Result<Vec<Vec<Span>>, StoreError> {
        self.search_where(tenant, q, &|_| true)
    }

    /// [`Query::search`] over the traces `keep` accepts (a store node answering for
    /// some partitions), so the limit counts only those.
    pub fn search_where(
        &self,
        tenant: Tenant,
        q: &TraceQuery,
        keep: &dyn Fn(TraceId) -> bool,
    ) -> Result<Vec<Vec<Span>>, StoreError> {
        if let (Some(r), true) = (&self.remote, q.trace_ids.is_empty()) {
            let (traces, missing) = r.search(tenant, q);
            self.gaps.add(missing);
            return Ok(traces);
        }
        if !q.trace_ids.is_empty() {
            let mut out = Vec::new();
            for id in &q.trace_ids {
                if let Some(t) = self.trace(tenant, *id)? {
                    out.push(t);
                }
            }
            return Ok(out);
        }
        if q.service.is_empty() {
            return self.search_every_service(tenant, q, keep);
        }

        // The driver is scanned newest first and each trace it names is loaded and
        // checked: the first indexed tag when there is one (tags are what narrow a
        // search most), else the operation or service with the duration range. Every
        // other condition becomes a set of trace ids when its scan is small, which
        // saves loading traces that cannot match; a large one is only checked.
        let primary = match &q.operation {
            Some(op) => IndexPrefix::operation(tenant, &q.service, op),
            None => IndexPrefix::service(tenant, &q.service),
        };
        let durations = (q.min_duration.is_some() || q.max_duration.is_some()).then(|| {
            (
                q.min_duration.unwrap_or(0),
                q.max_duration.unwrap_or(u64::MAX),
            )
        });
        let mut tags = q
            .tags
            .iter()
            .filter(|(_, v)| v.len() <= MAX_INDEXED_LEN)
            .map(|(k, v)| IndexPrefix::tag(tenant, &q.service, k, v));
        let (driver, driver_durations) = match tags.next() {
            Some(tag) => (tag, None),
            None => (primary.clone(), durations),
        };
        let mut filters: Vec<HashSet<TraceId>> = Vec::new();
        for tag in tags {
            if let Some(set) = self.collect(&tag, None, q)? {
                filters.push(set);
            }
        }
        if driver_durations.is_none() {
            if let Some(range) = durations {
                if let Some(set) = self.collect(&primary, Some(range), q)? {
                    filters.push(set);
                }
            }
        }
        if filters.iter().any(|f| f.is_empty()) {
            return Ok(Vec::new());
        }

        let mut seen: HashSet<TraceId> = HashSet::new();
        let mut results = Vec::new();
        let mut error = None;
        self.store
            .scan_index(&driver, driver_durations, q.start, q.end, |_, trace| {
                if !seen.insert(trace)
                    || !keep(trace)
                    || !filters.iter().all(|f| f.contains(&trace))
                {
                    return true;
                }
                match self.store.trace(tenant, trace) {
                    Ok(spans) if spans.iter().any(|s| matches(s, q)) => results.push(spans),
                    Ok(_) => {}
                    Err(e) => {
                        error = Some(e);
                        return false;
                    }
                }
                results.len() < q.limit && seen.len() < MAX_CANDIDATES
            })?;
        match error {
            Some(e) => Err(e),
            None => Ok(results),
        }
    }

    /// A search without a service: the same search in each service, newest traces first
    /// over all of them. Each service's index is keyed by service, so this is one scan per
    /// service, each stopping at `q.limit` traces.
    fn search_every_service(
        &self,
        tenant: Tenant,
        q: &TraceQuery,
        keep: &dyn Fn(TraceId) -> bool,
    ) -> Result<Vec<Vec<Span>>, StoreError> {
        let mut seen = HashSet::new();
        let mut out: Vec<(u64, Vec<Span>)> = Vec::new();
        let mut one = q.clone();
        for service in self.store.services(tenant) {
            one.service = service;
            for spans in self.search_where(tenant, &one, keep)? {
                let Some(first) = spans.first() else { continue };
                if seen.insert(first.trace_id) {
                    let start = spans.iter().map(|s| s.start_time).min().unwrap_or(0);
                    out.push((start, spans));
                }
            }
        }
        out.sort_by_key(|(start, _)| std::cmp::Reverse(*start));
        out.truncate(q.limit);
        Ok(out.into_iter().map(|(_, spans)| spans).collect())
    }

    /// Trace summaries for people: `q` finds candidates (any service when `q.service` is
    /// empty), `filters` judge whole traces, at most `q.limit` come back, sorted.
    pub fn summaries(
        &self,
        tenant: Tenant,
        q: &TraceQuery,
        filters: &summary::TraceFilters,
    ) -> Result<Vec<summary::TraceSummary>, StoreError> {
        // Whole-trace filters and sorting need more candidates than answers.
        let mut wide = q.clone();
        wide.limit = (q.limit.saturating_mul(10)).clamp(200, 5_000);
        let mut out = Vec::new();
        // a trace id asked for is shown whatever the other criteria say
        let by_id = !q.trace_ids.is_empty();
        for spans in self.search(tenant, &wide)? {
            let s = summary::summarize(&spans);
            if by_id || summary::passes(&spans, &s, filters) {
                out.push(s);
            }
        }
        summary::sort(&mut out, filters.sort, filters.order);
        out.truncate(q.limit);
        Ok(out)
    }

    /// Trace ids an index holds for `q`'s window, or `None` if there are too many to be
    /// worth a set.
    fn collect(
        &self,
        prefix: &IndexPrefix,
        durations: Option<(u64, u64)>,
        q: &TraceQuery,
    ) -> Result<Option<HashSet<TraceId>>, StoreError> {
        let mut set = HashSet::new();
        let mut entries = 0usize;
        self.store
            .scan_index(prefix, durations, q.start, q.end, |_, trace| {
                set.insert(trace);
                entries += 1;
                entries < FILTER_SCAN_CAP
            })?;
        Ok((entries < FILTER_SCAN_CAP).then_some(set))
    }

    /// Calls between services over `[end - lookback, end]` (µs), from the counts kept at
    /// ingest (`pipeline::edges`), hour by hour: an hour that overlaps the window counts
    /// whole. Reads one key per pair of services and hour, never a span.
    pub fn dependencies(
        &self,
        tenant: Tenant,
        end: u64,
        lookback: u64,
    ) -> Result<Vec<DependencyLink>, StoreError> {
        if let Some(r) = &self.remote {
            let (links, missing) = r.dependencies(tenant, end, lookback);
            self.gaps.add(missing);
            return Ok(links);
        }
        let first = end.saturating_sub(lookback) / crate::monitor::MINUTE_US / 60 * 60;
        let last = end / crate::monitor::MINUTE_US;
        let mut counts: BTreeMap<(String, String), u64> = BTreeMap::new();
        let mut bad = None;
        self.store.metric_scan(&keys::edge_prefix(tenant), |k, v| {
            match (keys::parse_edge_key(k), Minute::decode(v)) {
                (Some((parent, child, minute)), Some(m)) => {
                    if (first..=last).contains(&minute) {
                        *counts.entry((parent, child)).or_default() += m.invocations;
                    }
                }
                _ => bad = Some(k.len()),
            }
            true
        })?;
        if let Some(len) = bad {
            tracing::warn!(
                key_len = len,
                "an edge count that does not decode was skipped"
            );
        }
        Ok(counts
            .into_iter()
            .map(|((parent, child), call_count)| DependencyLink {
                parent,
                child,
                call_count,
            })
            .collect())
    }
}

/// Per-series values (function metrics, RED, instance samples) from this node's store,
/// or on a query node from every store node's, merged.
impl crate::store::MetricSource for Query {
    fn metric_values(
        &self,
        series: &[u8],
        first: u64,
        last: u64,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        match &self.remote {
            Some(r) => {
                let (values, missing) = r.metric_values(series, first, last);
                self.gaps.add(missing);
                Ok(values)
            }
            None => self.store.metric_values(series, first, last),
        }
    }

    fn missed(&self) -> Vec<String> {
        self.gaps.take()
    }
}

/// Whether one span satisfies every condition of a search.
fn matches(s: &Span, q: &TraceQuery) -> bool {
    s.process.service_name == q.service
        && q.operation
            .as_ref()
            .is_none_or(|op| &s.operation_name == op)
        && s.start_time >= q.start
        && s.start_time <= q.end
        && q.min_duration.is_none_or(|d| s.duration >= d)
        && q.max_duration.is_none_or(|d| s.duration <= d)
        && q.tags.iter().all(|(k, v)| s.has_tag_anywhere(k, v))
}
