//! Writing the store: span batches encoded on the callers' threads ([`encode`],
//! [`encode_invocation`]) and committed by the one writer as one `WriteBatch`
//! ([`Store::commit`]), with their posting blocks and new catalog entries.

// foldhash: seeded per process (keys come from clients) and several times cheaper than
// SipHash on the per-span sets below.
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use rocksdb::WriteBatch;

use super::catalog::Catalog;
use super::{
    codec, journal, keys, postings, Store, StoreError, CF_INVOCATIONS, CF_JOURNAL, CF_LOGS,
    CF_META, CF_METRICS, CF_POSTINGS, CF_SPANS, CF_TERMS,
};
use crate::model::{KeyValue, Process, Span, SpanKind, Value};
use keys::{IndexPrefix, Tenant};

impl Store {
    /// Write encoded batches as one `WriteBatch`; returns once it is in the WAL (and
    /// fsynced when `sync_writes` is on). New services and operations are recorded in the
    /// same write, and the batches' metric aggregates are journaled in it (`journal`):
    /// one value for the group, folded into `metrics` about once a second.
    pub fn commit(&self, batches: &[&EncodedBatch]) -> Result<(), StoreError> {
        self.disk.check().map_err(StoreError::DiskFull)?;
        let spans = self.cf(CF_SPANS);
        let index = self.cf(CF_POSTINGS);
        let meta = self.cf(CF_META);
        let invocations = self.cf(CF_INVOCATIONS);
        let metrics = self.cf(CF_METRICS);
        let logs = self.cf(CF_LOGS);
        // Sized up front: a body spread over many seconds writes about a million keys,
        // and a batch grown by doubling touches (and the kernel zeroes) every page twice.
        let bytes: usize = batches
            .iter()
            .map(|b| b.buf.len() + (b.entries.len() + b.postings.len()) * 48)
            .sum();
        let mut wb = WriteBatch::with_capacity_bytes(bytes);
        let mut new_ops: Vec<(Tenant, &str, &str, SpanKind)> = Vec::new();
        let mut journaled = Vec::new();
        let now = crate::clock::now_us();
        let chunks: u64 = batches
            .iter()
            .map(|b| {
                b.entries
                    .iter()
                    .filter(|e| e.family == Family::Spans)
                    .count() as u64
            })
            .sum();
        // One number for the group's posting blocks, then one per span chunk; only the
        // writer thread commits, so numbers are handed out in commit order.
        let seq = self.seq.fetch_add(chunks + 1, Ordering::Relaxed) + 1;
        let mut chunk = seq;
        {
            let catalog = self.catalog.read().unwrap_or_else(|e| e.into_inner());
            for b in batches {
                for e in &b.entries {
                    let (k, v) = (&b.buf[e.key.0..e.key.1], &b.buf[e.value.0..e.value.1]);
                    match e.family {
                        Family::Spans => {
                            chunk += 1;
                            wb.put_cf(spans, keys::set_chunk(k, chunk), v);
                        }
                        Family::Invocations => wb.put_cf(invocations, k, v),
                        Family::Metrics => journal::frame(&mut journaled, k, v),
                        Family::Samples => wb.put_cf(metrics, k, v),
                        Family::Logs => wb.put_cf(logs, k, v),
                        Family::Queue => wb.put_cf(meta, k, v),
                        Family::Dequeue => wb.delete_cf(meta, k),
                    }
                }
                for (service, op, kind) in b.operations() {
                    if catalog.stale(b.tenant, service, op, kind, now) {
                        new_ops.push((b.tenant, service, op, kind));
                    }
                }
            }
        }
        wb.put_cf(meta, keys::chunk_seq_key(), chunk.to_be_bytes());
        let journal_cf = self.cf(CF_JOURNAL);
        if !journaled.is_empty() {
            wb.put_cf(journal_cf, journal::key(seq), &journaled);
        }

        postings::merge(
            batches
                .iter()
                .map(|b| (b.tenant, b.buf.as_slice(), b.postings.as_slice())),
            seq,
            |k, v| wb.put_cf(index, k, v),
        );
        for entry in &new_ops {
            Catalog::write(&mut wb, meta, *entry, now);
        }
        let terms = self.cf(CF_TERMS);
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        for b in batches {
            written.record(&mut wb, terms, b.tenant, &b.terms);
        }
        // Counted before the write (admission reads it, and must not wait for an fsync);
        // `written` keeps commits in order, so the totals put are in order too.
        self.usage
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(&mut wb, meta, batches, now);
        if let Err(e) = self.db.write_opt(wb, &self.write_opts) {
            // what it remembers must be on disk
            written.forget();
            self.usage
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .unrecord(batches, now);
            return Err(StoreError::from_write(e));
        }
        drop(written);
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.add_frames(&journaled);
        // every journal key up to this group's is pending now (only the writer thread
        // commits, so no earlier group is between its write and this)
        let fold = pending.start_fold(seq + 1);
        drop(pending);
        if let Some(fold) = fold {
            self.folder.send(self, fold);
        }
        if !new_ops.is_empty() {
            let mut catalog = self.catalog.write().unwrap_or_else(|e| e.into_inner());
            for (tenant, service, op, kind) in new_ops {
                catalog.record(tenant, service, op, kind, now);
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Family {
    Spans,
    Invocations,
    /// Merged into what the key holds (`metrics`), not put.
    Metrics,
    /// Instance samples: put into the `metrics` family.
    Samples,
    /// Function log lines: put into the `logs` family.
    Logs,
    /// Async queue entries: put into `meta`.
    Queue,
    /// Async queue entries done: deleted from `meta`.
    Dequeue,
}

/// Rows other writers put as they come, each with its own key: which family they go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    /// Instance samples (`keys::INSTANCE_SAMPLES`), in `metrics`.
    Samples,
    /// Function log lines (`keys::log_key`), in `logs`.
    Logs,
    /// Queued async events (`keys::queue_key`), in `meta`.
    Queue,
    /// Queued async events to delete (the value is ignored).
    Dequeue,
}

/// A service and operation (byte ranges of `EncodedBatch::names`) and a span kind.
pub(super) type Operation = ((usize, usize), (usize, usize), SpanKind);

#[derive(Debug)]
pub(super) struct Entry {
    pub(super) family: Family,
    pub(super) key: (usize, usize),
    pub(super) value: (usize, usize),
}

/// Keys and values for a batch of spans, laid out in one buffer, ready for the writer.
#[derive(Debug)]
pub struct EncodedBatch {
    pub(super) tenant: Tenant,
    pub(super) buf: Vec<u8>,
    pub(super) entries: Vec<Entry>,
    /// Distinct (service, operation, kind) of the batch, for the catalog: the names as
    /// byte ranges of `names` (one string for all, where two each were 2 % of the
    /// encoder's allocations under the bench, which has an operation a span).
    pub(super) operations: Vec<Operation>,
    pub(super) names: String,
    /// The batch's posting tables and sub-blocks, in `buf`.
    pub(super) postings: Vec<postings::Part>,
    /// (minute, term hash) of every posting, sorted, once each: for the term filter.
    pub(super) terms: Vec<(u64, u64)>,
    pub(super) spans: usize,
}

impl EncodedBatch {
    /// Bytes this batch holds in memory: what admission counts.
    pub fn size(&self) -> usize {
        self.buf.len()
            + self.entries.len() * std::mem::size_of::<Entry>()
            + self.postings.len() * std::mem::size_of::<postings::Part>()
            + self.terms.len() * 16
    }

    pub fn span_count(&self) -> usize {
        self.spans
    }

    /// Its distinct (service, operation, kind).
    pub(super) fn operations(&self) -> impl Iterator<Item = (&str, &str, SpanKind)> {
        let name = |(a, b): (usize, usize)| self.names.get(a..b).unwrap_or_default();
        self.operations
            .iter()
            .map(move |&(service, op, kind)| (name(service), name(op), kind))
    }

    /// Add an operation to [`EncodedBatch::operations`]; a service named as the one
    /// before is not written again.
    pub(super) fn add_operation(&mut self, service: &str, op: &str, kind: SpanKind) {
        let same = |&(range, _, _): &Operation| self.names.get(range.0..range.1) == Some(service);
        let service = match self.operations.last().filter(|o| same(o)) {
            Some(&(range, _, _)) => range,
            None => {
                let start = self.names.len();
                self.names.push_str(service);
                (start, self.names.len())
            }
        };
        let start = self.names.len();
        self.names.push_str(op);
        self.operations
            .push((service, (start, self.names.len()), kind));
    }

    /// The first key the batch writes, if any (what a cluster partitions it by).
    pub fn first_key(&self) -> Option<&[u8]> {
        self.entries
            .first()
            .and_then(|e| self.buf.get(e.key.0..e.key.1))
    }
}

impl EncodedBatch {
    /// A batch of nothing yet, for [`EncodedBatch::add_metric`].
    pub fn empty(tenant: Tenant) -> Self {
        EncodedBatch {
            tenant,
            buf: Vec::new(),
            entries: Vec::new(),
            operations: Vec::new(),
            names: String::new(),
            postings: Vec::new(),
            terms: Vec::new(),
            spans: 0,
        }
    }

    /// Put a row of `rows` in the same write.
    pub fn add_row(&mut self, rows: Rows, key: &[u8], value: &[u8]) {
        let family = match rows {
            Rows::Samples => Family::Samples,
            Rows::Logs => Family::Logs,
            Rows::Queue => Family::Queue,
            Rows::Dequeue => Family::Dequeue,
        };
        self.add(family, key, value);
    }

    fn add(&mut self, family: Family, key: &[u8], value: &[u8]) {
        let k0 = self.buf.len();
        self.buf.extend_from_slice(key);
        let k1 = self.buf.len();
        self.buf.extend_from_slice(value);
        self.entries.push(Entry {
            family,
            key: (k0, k1),
            value: (k1, self.buf.len()),
        });
    }

    /// Merge `value` (a `monitor::minute::Minute`) into the metric aggregate at `key`
    /// in the same write as the rest of the batch.
    pub fn add_metric(&mut self, key: &[u8], value: &[u8]) {
        self.add(Family::Metrics, key, value);
    }
}

/// Encode one invocation record (already serialized) under its key.
pub fn encode_invocation(
    tenant: Tenant,
    service: &str,
    function: &str,
    start_time: u64,
    request_id: &str,
    value: &[u8],
) -> EncodedBatch {
    let mut buf = keys::invocation_key(tenant, service, function, start_time, request_id);
    let k1 = buf.len();
    buf.extend_from_slice(value);
    let v1 = buf.len();
    // the request id leads to the record: its key is the value
    buf.extend_from_slice(&keys::request_id_key(tenant, request_id, start_time));
    let i1 = buf.len();
    buf.extend_from_within(..k1);
    EncodedBatch {
        tenant,
        entries: vec![
            Entry {
                family: Family::Invocations,
                key: (0, k1),
                value: (k1, v1),
            },
            Entry {
                family: Family::Invocations,
                key: (v1, i1),
                value: (i1, buf.len()),
            },
        ],
        buf,
        operations: Vec::new(),
        names: String::new(),
        postings: Vec::new(),
        terms: Vec::new(),
        spans: 0,
    }
}

/// Encode spans and their postings. Runs on the caller's thread; pure CPU, no I/O.
///
/// Postings (see `postings`): service and service+operation (with durations), and one
/// per non-binary `key=value` among a span's tags, log fields and process tags, each once
/// per trace and second of start time in the batch. Searches use them to find candidate
/// traces and check each candidate's spans exactly.
pub fn encode(tenant: Tenant, spans: &[Span]) -> EncodedBatch {
    let mut b = EncodedBatch {
        tenant,
        // a guess that saves most regrowth, never sized from a client-given count alone
        buf: Vec::with_capacity((spans.len() * 512).min(16 << 20)),
        entries: Vec::with_capacity(spans.len()),
        operations: Vec::new(),
        names: String::new(),
        postings: Vec::new(),
        terms: Vec::new(),
        spans: spans.len(),
    };
    let mut ops: HashSet<(&str, &str, SpanKind)> = HashSet::new();

    // One chunk per trace: spans in (trace, start) order, each run one value keyed by
    // its earliest span.
    let mut order: Vec<&Span> = spans.iter().collect();
    order.sort_by_key(|s| (s.trace_id, s.start_time, s.span_id));
    let mut raw = Vec::with_capacity(16 << 10);
    for run in order.chunk_by(|a, b| a.trace_id == b.trace_id) {
        let first = run[0];
        let k0 = b.buf.len();
        b.buf.extend_from_slice(&keys::span_key(
            tenant,
            first.trace_id,
            first.start_time,
            first.span_id,
        ));
        let k1 = b.buf.len();
        codec::encode_chunk(run.iter().copied(), &mut raw, &mut b.buf);
        b.entries.push(Entry {
            family: Family::Spans,
            key: (k0, k1),
            value: (k1, b.buf.len()),
        });
    }

    let tags = spans.iter().map(|s| s.tags.len()).sum();
    let mut ix = postings::Builder::for_spans(spans.len(), tags);
    let mut term = IndexPrefix(Vec::with_capacity(128));
    // Spans of one resource share their `Process`: its tag terms are hashed once per
    // batch and entered once per trace slot, not once per span.
    let mut process_terms: HashMap<*const Process, Vec<u64>> = HashMap::new();
    let mut process_slots: HashSet<(postings::Slot, *const Process)> = HashSet::new();
    let mut last_slot: Option<(postings::Slot, *const Process)> = None;
    // The span before, when it has this one's slot and service: a tag equal to its tag at
    // the same place is an entry already made (constant tags repeat down a trace).
    let mut before: Option<(&Span, postings::Slot)> = None;
    for span in spans {
        let service = span.process.service_name.as_str();
        ops.insert((service, span.operation_name.as_str(), span.kind()));

        let slot = ix.slot(span.trace_id, span.start_time);
        let repeats: &[KeyValue] = match before {
            Some((b, s))
                if s == slot
                    && (Arc::ptr_eq(&b.process, &span.process)
                        || b.process.service_name == span.process.service_name) =>
            {
                &b.tags
            }
            _ => &[],
        };
        before = Some((span, slot));
        term.reset(tenant, keys::IndexKind::Service, service);
        ix.timed(slot, &term, span.duration);
        term.reset(tenant, keys::IndexKind::Operation, service);
        term.push_str(&span.operation_name);
        ix.timed(slot, &term, span.duration);

        for (i, kv) in span.tags.iter().enumerate() {
            if !repeats.get(i).is_some_and(|r| same_tag(r, kv))
                && tag_term(&mut term, tenant, service, kv)
            {
                ix.plain(slot, &term);
            }
        }
        for kv in span.logs.iter().flat_map(|l| l.fields.iter()) {
            if tag_term(&mut term, tenant, service, kv) {
                ix.plain(slot, &term);
            }
        }
        let process = Arc::as_ptr(&span.process);
        // a trace's spans come together and share their process: only a change of slot
        // or process needs the set
        let fresh = last_slot != Some((slot, process));
        last_slot = Some((slot, process));
        if fresh && process_slots.insert((slot, process)) {
            let hashes = process_terms.entry(process).or_insert_with(|| {
                let mut hashes = Vec::with_capacity(span.process.tags.len());
                for kv in &span.process.tags {
                    if tag_term(&mut term, tenant, service, kv) {
                        hashes.push(term.term_hash());
                    }
                }
                hashes
            });
            for &h in hashes.iter() {
                ix.plain_hash(slot, h);
            }
        }
    }
    (b.postings, b.terms) = ix.finish(&mut b.buf);
    for (service, op, kind) in ops {
        b.add_operation(service, op, kind);
    }
    b
}

/// `a == b`, with keys and string values compared inline (`short_eq`).
fn same_tag(a: &KeyValue, b: &KeyValue) -> bool {
    use crate::short_eq::eq;
    eq(a.key.as_bytes(), b.key.as_bytes())
        && match (&a.value, &b.value) {
            (Value::Str(x), Value::Str(y)) => eq(x.as_bytes(), y.as_bytes()),
            (x, y) => x == y,
        }
}

/// Set `term` to the tag term of `kv` for `service`; false for a value that is not
/// indexed (binary, or longer than `keys::MAX_INDEXED_LEN`).
fn tag_term(term: &mut IndexPrefix, tenant: Tenant, service: &str, kv: &KeyValue) -> bool {
    // Integers and booleans (a quarter each of the bench's tags) are written without
    // allocating: `to_search_string` was 1.2 % of the daemon's CPU.
    let mut digits = itoa::Buffer::new();
    let v: std::borrow::Cow<str> = match &kv.value {
        Value::Binary(_) => return false,
        Value::Str(s) => std::borrow::Cow::Borrowed(s),
        Value::Bool(true) => std::borrow::Cow::Borrowed("true"),
        Value::Bool(false) => std::borrow::Cow::Borrowed("false"),
        Value::I64(i) => std::borrow::Cow::Borrowed(digits.format(*i)),
        other => std::borrow::Cow::Owned(other.to_search_string()),
    };
    if v.len() > keys::MAX_INDEXED_LEN {
        return false;
    }
    term.reset(tenant, keys::IndexKind::Tag, service);
    // scope and link attributes are found by their own keys (see `model::keys`)
    term.push_str(crate::model::keys::search_key(&kv.key));
    term.push_str(&v);
    true
}
