//! The query side's view of data held elsewhere: on a query node (`--role query`) the
//! traces live on store nodes, each serving some partitions, and [`Remote`] is how
//! [`super::Query`] reads them (`cluster::fanout` implements it). The query side keeps
//! its answers' shapes; this module only says what a remote read returns: a merged
//! answer and, as [`Gaps`], what could not be read, so an answer is never silently
//! short.

use std::sync::{Arc, Mutex};

use super::calls::CallFilter;
use super::logs::{FoundLine, LogQuery};
use super::{DependencyLink, TraceQuery};
use crate::model::{InvocationRecord, Span, SpanKind, TraceId};
use crate::store::keys::Tenant;

/// A merged answer and what it misses (one line per partition group not read).
pub type Partial<T> = (T, Vec<String>);

/// Reads across store nodes. Calls block: the query side runs off the async threads.
pub trait Remote: Send + Sync {
    /// A trace from the node serving its partition; `Err` when none answered.
    fn trace(&self, tenant: Tenant, id: TraceId) -> Result<Option<Vec<Span>>, String>;
    /// A search on every node, merged newest first, at most `q.limit` traces.
    fn search(&self, tenant: Tenant, q: &TraceQuery) -> Partial<Vec<Vec<Span>>>;
    fn services(&self, tenant: Tenant) -> Partial<Vec<String>>;
    fn operations(&self, tenant: Tenant, service: &str) -> Partial<Vec<(String, SpanKind)>>;
    fn dependencies(&self, tenant: Tenant, end: u64, lookback: u64)
        -> Partial<Vec<DependencyLink>>;
    /// A series' values from every node, oldest first; a time several nodes have is
    /// one aggregate summed (`monitor::minute`), or the one sample they all hold.
    fn metric_values(&self, series: &[u8], first: u64, last: u64) -> Partial<Vec<(u64, Vec<u8>)>>;
    /// Invocation records from every node, in a single node's order, at most
    /// `calls.limit`; and whether some node stopped at its scan limit.
    fn invocations(
        &self,
        tenant: Tenant,
        calls: &Calls<'_>,
    ) -> Partial<(Vec<InvocationRecord>, bool)>;
    /// A record by request id from whichever node has it; `Err` when none has it and
    /// some node did not answer.
    fn invocation(
        &self,
        tenant: Tenant,
        request_id: &str,
    ) -> Result<Option<InvocationRecord>, String>;
    /// Function log lines from every node, oldest first, at most `q.limit`.
    fn logs(&self, tenant: Tenant, q: &LogQuery) -> Partial<(Vec<FoundLine>, bool)>;
}

/// Which invocation records to list.
pub struct Calls<'a> {
    pub service: &'a str,
    pub function: Option<&'a str>,
    pub start: u64,
    pub end: u64,
    pub limit: usize,
    pub filter: &'a CallFilter,
}

/// What one request's reads could not reach, collected as they happen.
#[derive(Clone, Default)]
pub struct Gaps(Arc<Mutex<Vec<String>>>);

impl Gaps {
    pub fn add(&self, missing: Vec<String>) {
        if missing.is_empty() {
            return;
        }
        if let Ok(mut g) = self.0.lock() {
            for m in missing {
                if !g.contains(&m) {
                    g.push(m);
                }
            }
        }
    }

    /// What was missed so far.
    pub fn take(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|mut g| std::mem::take(&mut *g))
            .unwrap_or_default()
    }

    /// What was missed, as one message, for an answer that has no place for a partial
    /// result (it is then refused whole); `None` when nothing was.
    pub fn refusal(&self) -> Option<String> {
        let missing = self.take();
        (!missing.is_empty()).then(|| missing.join("; "))
    }
}
