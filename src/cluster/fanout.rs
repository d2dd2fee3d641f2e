//! A query node's reads ([`crate::query::remote::Remote`]): a trace from the store node
//! holding its partition's lease, a search from every owner (each told which partitions
//! it answers for, so a trace is counted once even where an old owner still holds a
//! copy); services, operations, dependencies, metric series, invocation records and
//! function log lines from every owner, merged (a series' minute that several nodes
//! hold is summed: each holds the calls of its own partitions). A partition
//! without an owner, or whose owner does not answer, becomes a line in the answer's
//! gaps. The requests and answers of the internal API (`server::internal_api`) are
//! defined here, JSON in and JSON or `store::trace_wire` out.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::node::Node;
use super::partition_of;
use crate::model::{InvocationRecord, Span, SpanKind, TraceId};
use crate::monitor::minute::Minute;
use crate::query::calls::CallFilter;
use crate::query::logs::{FoundLine, LogQuery};
use crate::query::remote::{Calls, Partial, Remote};
use crate::query::{DependencyLink, TraceQuery};
use crate::store::keys::Tenant;
use crate::store::trace_wire::traces_from_wire;

/// How long a query node waits for a store node's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// A search as it travels: the partitions the asked node answers for, and the search
/// (without trace ids: a query node looks those up one by one).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchRequest {
    pub tenant: Tenant,
    pub partitions: Vec<u32>,
    pub partition_count: u32,
    pub query: TraceQuery,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TraceRequest {
    pub tenant: Tenant,
    /// Hex, as in the query API.
    pub trace_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CatalogRequest {
    pub tenant: Tenant,
    /// For operations: the service.
    #[serde(default)]
    pub service: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DependenciesRequest {
    pub tenant: Tenant,
    pub end: u64,
    pub lookback: u64,
}

/// An operation as it travels: its name and span kind (`SpanKind::as_str`).
pub type WireOperation = (String, String);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ValuesRequest {
    /// A `keys::metric_series` (it names its tenant).
    pub series: Vec<u8>,
    pub first: u64,
    pub last: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CallsRequest {
    pub tenant: Tenant,
    pub service: String,
    pub function: Option<String>,
    pub start: u64,
    pub end: u64,
    pub limit: usize,
    pub filter: CallFilter,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CallsAnswer {
    pub records: Vec<InvocationRecord>,
    pub capped: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordRequest {
    pub tenant: Tenant,
    pub request_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogsRequest {
    pub tenant: Tenant,
    pub query: LogQuery,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogsAnswer {
    pub lines: Vec<FoundLine>,
    pub capped: bool,
}

/// Reads the cluster's store nodes for a query node.
pub struct Fanout {
    node: Arc<Node>,
    http: reqwest::Client,
    runtime: tokio::runtime::Handle,
    partitions: u32,
}

/// The owners to ask: by address, the node's name and its partitions.
type Owners = BTreeMap<String, (String, Vec<u32>)>;

impl Fanout {
    pub fn new(node: Arc<Node>, runtime: tokio::runtime::Handle) -> Fanout {
        let partitions = node.log.settings().partitions;
        Fanout {
            node,
            http: reqwest::Client::builder()
                .timeout(ANSWER_TIMEOUT)
                .build()
                .unwrap_or_default(),
            runtime,
            partitions,
        }
    }

    /// Run `f` to its end from the query side's blocking threads.
    fn block<F: std::future::Future>(&self, f: F) -> F::Output {
        tokio::task::block_in_place(|| self.runtime.block_on(f))
    }

    /// Every partition's owner, and a gap line for the partitions without one.
    fn owners(&self) -> (Owners, Vec<String>) {
        let map = self.node.map();
        let mut owners = Owners::new();
        let mut orphans = Vec::new();
        for p in 0..self.partitions {
            match map.owner(p) {
                Some(l) => owners
                    .entry(l.addr.clone())
                    .or_insert_with(|| (l.node.clone(), Vec::new()))
                    .1
                    .push(p),
                None => orphans.push(p),
            }
        }
        let gaps = if orphans.is_empty() {
            Vec::new()
        } else {
            vec![format!(
                "partitions {orphans:?} have no store node serving them (one is down or catching up); their traces are missing from this answer"
            )]
        };
        (owners, gaps)
    }

    async fn post(
        &self,
        addr: &str,
        path: &str,
        body: &impl Serialize,
    ) -> Result<bytes::Bytes, String> {
        let resp = self
            .http
            .post(format!("http://{addr}/internal/v1/{path}"))
            .json(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{status}: {}", String::from_utf8_lossy(&bytes)));
        }
        Ok(bytes)
    }

    /// Ask every owner `ask(its partitions)` at `path`, decoding with `decode`; the
    /// answers that came and a gap line for each owner that did not answer.
    fn each_owner<B: Serialize, T>(
        &self,
        path: &str,
        ask: impl Fn(Vec<u32>) -> B,
        decode: impl Fn(&[u8]) -> Result<T, String>,
    ) -> Partial<Vec<T>> {
        let (owners, mut gaps) = self.owners();
        let asks = owners.into_iter().map(|(addr, (node, parts))| {
            let body = ask(parts.clone());
            async move {
                (
                    node,
                    addr.clone(),
                    parts,
                    self.post(&addr, path, &body).await,
                )
            }
        });
        let answers = self.block(futures_util::future::join_all(asks));
        let mut out = Vec::new();
        for (node, addr, parts, answer) in answers {
            match answer.and_then(|b| decode(&b)) {
                Ok(t) => out.push(t),
                Err(e) => gaps.push(format!(
                    "store node {node} ({addr}) did not answer for partitions {parts:?}: {e}"
                )),
            }
        }
        (out, gaps)
    }
}

/// Several nodes' values of one series as one, oldest first: the same minute's
/// aggregates add up (each node counted its own partitions' calls); a sample (not an
/// aggregate) two nodes hold is the same sample, kept once.
fn merge_values(answers: Vec<Vec<(u64, Vec<u8>)>>) -> Vec<(u64, Vec<u8>)> {
    let mut merged: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    for (t, v) in answers.into_iter().flatten() {
        match merged.get_mut(&t) {
            None => {
                merged.insert(t, v);
            }
            Some(have) => {
                if let (Some(mut a), Some(b)) = (Minute::decode(have), Minute::decode(&v)) {
                    a.merge(&b);
                    *have = a.to_bytes();
                }
            }
        }
    }
    merged.into_iter().collect()
}

fn json<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, String> {
    serde_json::from_slice(b).map_err(|e| format!("unreadable answer: {e}"))
}

fn traces(b: &[u8]) -> Result<Vec<Vec<Span>>, String> {
    traces_from_wire(b).map_err(|e| format!("unreadable answer: {e}"))
}

impl Remote for Fanout {
    fn trace(&self, tenant: Tenant, id: TraceId) -> Result<Option<Vec<Span>>, String> {
        let p = partition_of(id, self.partitions);
        let map = self.node.map();
        let Some(owner) = map.owner(p) else {
            return Err(format!(
                "partition {p}, which holds this trace, has no store node serving it (one is down or catching up)"
            ));
        };
        let body = TraceRequest {
            tenant,
            trace_id: format!("{:032x}", id.0),
        };
        let found = self
            .block(self.post(&owner.addr, "trace", &body))
            .and_then(|b| traces(&b))
            .map_err(|e| {
                format!(
                    "store node {} ({}) serving partition {p} did not answer: {e}",
                    owner.node, owner.addr
                )
            })?;
        Ok(found.into_iter().next().filter(|t| !t.is_empty()))
    }

    fn search(&self, tenant: Tenant, q: &TraceQuery) -> Partial<Vec<Vec<Span>>> {
        let ask = |partitions| SearchRequest {
            tenant,
            partitions,
            partition_count: self.partitions,
            query: TraceQuery {
                trace_ids: Vec::new(),
                ..q.clone()
            },
        };
        let (answers, gaps) = self.each_owner("search", ask, traces);
        let mut seen = HashSet::new();
        let mut all: Vec<(u64, Vec<Span>)> = answers
            .into_iter()
            .flatten()
            .filter(|t| t.first().is_some_and(|s| seen.insert(s.trace_id)))
            .map(|t| (t.iter().map(|s| s.start_time).min().unwrap_or(0), t))
            .collect();
        all.sort_by_key(|(start, _)| std::cmp::Reverse(*start));
        all.truncate(q.limit);
        (all.into_iter().map(|(_, t)| t).collect(), gaps)
    }

    fn services(&self, tenant: Tenant) -> Partial<Vec<String>> {
        let ask = |_| CatalogRequest {
            tenant,
            service: String::new(),
        };
        let (answers, gaps) = self.each_owner("services", ask, json::<Vec<String>>);
        let all: BTreeSet<String> = answers.into_iter().flatten().collect();
        (all.into_iter().collect(), gaps)
    }

    fn operations(&self, tenant: Tenant, service: &str) -> Partial<Vec<(String, SpanKind)>> {
        let ask = |_| CatalogRequest {
            tenant,
            service: service.to_owned(),
        };
        let (answers, gaps) = self.each_owner("operations", ask, json::<Vec<WireOperation>>);
        let all: BTreeSet<(String, SpanKind)> = answers
            .into_iter()
            .flatten()
            .filter_map(|(name, kind)| Some((name, SpanKind::parse(&kind)?)))
            .collect();
        (all.into_iter().collect(), gaps)
    }

    fn dependencies(
        &self,
        tenant: Tenant,
        end: u64,
        lookback: u64,
    ) -> Partial<Vec<DependencyLink>> {
        let ask = |_| DependenciesRequest {
            tenant,
            end,
            lookback,
        };
        let (answers, gaps) = self.each_owner("dependencies", ask, json::<Vec<DependencyLink>>);
        let mut sum: BTreeMap<(String, String), u64> = BTreeMap::new();
        for l in answers.into_iter().flatten() {
            *sum.entry((l.parent, l.child)).or_default() += l.call_count;
        }
        let links = sum
            .into_iter()
            .map(|((parent, child), call_count)| DependencyLink {
                parent,
                child,
                call_count,
            })
            .collect();
        (links, gaps)
    }

    fn metric_values(&self, series: &[u8], first: u64, last: u64) -> Partial<Vec<(u64, Vec<u8>)>> {
        let ask = |_| ValuesRequest {
            series: series.to_vec(),
            first,
            last,
        };
        let (answers, gaps) = self.each_owner("metric_values", ask, json::<Vec<(u64, Vec<u8>)>>);
        (merge_values(answers), gaps)
    }

    fn invocations(&self, tenant: Tenant, c: &Calls<'_>) -> Partial<(Vec<InvocationRecord>, bool)> {
        let ask = |_| CallsRequest {
            tenant,
            service: c.service.to_owned(),
            function: c.function.map(str::to_owned),
            start: c.start,
            end: c.end,
            limit: c.limit,
            filter: c.filter.clone(),
        };
        let (answers, gaps) = self.each_owner("invocations", ask, json::<CallsAnswer>);
        let capped = answers.iter().any(|a| a.capped);
        let mut seen = HashSet::new();
        let mut records: Vec<InvocationRecord> = answers
            .into_iter()
            .flat_map(|a| a.records)
            .filter(|r| seen.insert(r.request_id.clone()))
            .collect();
        // a single node's order: by function, newest first
        records.sort_by(|a, b| {
            (&a.function, std::cmp::Reverse(a.start_time))
                .cmp(&(&b.function, std::cmp::Reverse(b.start_time)))
        });
        records.truncate(c.limit);
        ((records, capped), gaps)
    }

    fn invocation(
        &self,
        tenant: Tenant,
        request_id: &str,
    ) -> Result<Option<InvocationRecord>, String> {
        let ask = |_| RecordRequest {
            tenant,
            request_id: request_id.to_owned(),
        };
        let (answers, gaps) = self.each_owner("invocation", ask, json::<Option<InvocationRecord>>);
        match answers.into_iter().flatten().next() {
            Some(r) => Ok(Some(r)),
            None if gaps.is_empty() => Ok(None),
            None => Err(gaps.join("; ")),
        }
    }

    fn logs(&self, tenant: Tenant, q: &LogQuery) -> Partial<(Vec<FoundLine>, bool)> {
        let ask = |_| LogsRequest {
            tenant,
            query: q.clone(),
        };
        let (answers, gaps) = self.each_owner("logs", ask, json::<LogsAnswer>);
        let capped = answers.iter().any(|a| a.capped);
        let mut lines: Vec<FoundLine> = answers.into_iter().flat_map(|a| a.lines).collect();
        lines.sort_by_key(|l| l.line.time);
        // a line an old owner still holds a copy of is the same line
        lines.dedup();
        lines.truncate(q.limit);
        ((lines, capped), gaps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minute(invocations: u64, errors: u64, max_us: u64) -> Vec<u8> {
        Minute {
            invocations,
            function_errors: errors,
            latency_max_us: max_us,
            ..Minute::default()
        }
        .to_bytes()
    }

    #[test]
    fn a_minute_two_nodes_hold_adds_up_and_a_sample_is_kept_once() {
        let a = vec![(10, minute(3, 1, 50)), (11, minute(1, 0, 5))];
        let b = vec![(11, minute(2, 2, 70)), (12, minute(4, 0, 9))];
        let merged = merge_values(vec![a, b]);
        let got: Vec<(u64, u64, u64, u64)> = merged
            .iter()
            .map(|(t, v)| {
                let m = Minute::decode(v).unwrap();
                (*t, m.invocations, m.function_errors, m.latency_max_us)
            })
            .collect();
        assert_eq!(got, [(10, 3, 1, 50), (11, 3, 2, 70), (12, 4, 0, 9)]);
        // samples are JSON, not aggregates: the same one from two nodes stays one
        let sample = br#"{"cpuPercent":1.5}"#.to_vec();
        let merged = merge_values(vec![vec![(7, sample.clone())], vec![(7, sample.clone())]]);
        assert_eq!(merged, [(7, sample)]);
    }
}
