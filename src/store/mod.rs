//! The store: spans, their search indexes and the service catalog in RocksDB.
//!
//! In: [`EncodedBatch`]es (made by [`encode`] on the caller's thread, so the single writer
//! only copies bytes) committed as one `WriteBatch` by [`Store::commit`]. Out: whole traces
//! by id, index scans newest first, and the service/operation catalog, which is kept in
//! the `meta` family and in memory so start-up never scans spans.
//!
//! Column families: `spans`, `index`, `meta`, `invocations` (see `keys` for every layout).
//! Retention is RocksDB's own: a compaction filter drops span and index entries older than
//! the retention age, periodic compaction makes sure old files are rewritten, and reads
//! hide expired entries that compaction has not reached yet.
//!
//! This module decides nothing about what to store (the pipeline does) and knows no
//! JSON (the query side does).

pub mod codec;
pub mod keys;
pub mod postings;

#[allow(clippy::all, missing_docs)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/fctrace.storage.v1.rs"));
}

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::Duration;

use rocksdb::{
    compaction_filter::{CompactionFilter, Decision},
    compaction_filter_factory::{CompactionFilterContext, CompactionFilterFactory},
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DBCompressionType, Direction,
    IteratorMode, Options, ReadOptions, SliceTransform, WriteBatch, WriteOptions, DB,
};
use thiserror::Error;

use crate::error::ErrorCode;
use crate::model::{Span, SpanKind, TraceId};
use keys::{IndexPrefix, Tenant};

/// Bump when any key layout or the span encoding changes.
pub const FORMAT_VERSION: u32 = 2;

const CF_SPANS: &str = "spans";
const CF_INDEX: &str = "index";
const CF_META: &str = "meta";
const CF_INVOCATIONS: &str = "invocations";

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("data directory {dir} holds storage format version {found}; this fctrace reads version {FORMAT_VERSION}")]
    FormatVersion { dir: PathBuf, found: String },
    #[error("stored span is corrupt: {0}")]
    Corrupt(#[from] codec::CodecError),
    #[error("stored index is corrupt: {0}")]
    Index(String),
    #[error("disk is full: {0}")]
    DiskFull(String),
}

impl StoreError {
    pub fn code(&self) -> ErrorCode {
        match self {
            StoreError::DiskFull(_) => ErrorCode::Unavailable,
            _ => ErrorCode::Internal,
        }
    }

    fn from_write(e: rocksdb::Error) -> Self {
        let msg = e.to_string();
        if msg.contains("No space left") || msg.contains("NoSpace") {
            StoreError::DiskFull(msg)
        } else {
            StoreError::Rocks(e)
        }
    }
}

#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// How long spans are kept, by their start time.
    pub retention: Duration,
    /// fsync the WAL before acknowledging a batch (survives power loss, not only a crash).
    pub sync_writes: bool,
    /// Shared block cache for reads.
    pub block_cache_bytes: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            retention: Duration::from_secs(72 * 3600),
            sync_writes: true,
            block_cache_bytes: 64 << 20,
        }
    }
}

/// Services and their operations (with span kind), per tenant.
#[derive(Debug, Default)]
struct Catalog {
    services: BTreeMap<(Tenant, String), BTreeSet<(String, SpanKind)>>,
}

pub struct Store {
    db: DB,
    catalog: RwLock<Catalog>,
    retention_us: u64,
    write_opts: WriteOptions,
    /// The last group sequence number used in posting keys.
    seq: AtomicU64,
}

/// Start times before this are past retention.
fn cutoff_us(retention_us: u64) -> u64 {
    crate::clock::now_us().saturating_sub(retention_us)
}

/// Retention in compactions: each compaction gets a filter that read the clock once
/// when it was made (a compaction sees millions of keys) and drops entries whose time,
/// as `time_of` reads it from the key, is before the cutoff.
struct Retention {
    name: &'static std::ffi::CStr,
    retention_us: u64,
    time_of: fn(&[u8]) -> Option<u64>,
}

struct RetentionFilter {
    name: &'static std::ffi::CStr,
    cutoff: u64,
    time_of: fn(&[u8]) -> Option<u64>,
}

impl CompactionFilterFactory for Retention {
    type Filter = RetentionFilter;

    fn create(&mut self, _: CompactionFilterContext) -> RetentionFilter {
        RetentionFilter {
            name: self.name,
            cutoff: cutoff_us(self.retention_us),
            time_of: self.time_of,
        }
    }

    fn name(&self) -> &std::ffi::CStr {
        self.name
    }
}

impl CompactionFilter for RetentionFilter {
    fn filter(&mut self, _level: u32, key: &[u8], _value: &[u8]) -> Decision {
        match (self.time_of)(key) {
            Some(t) if t < self.cutoff => Decision::Remove,
            _ => Decision::Keep,
        }
    }

    fn name(&self) -> &std::ffi::CStr {
        self.name
    }
}

/// The time by which a posting block expires: the end of its bucket.
fn posting_expiry(key: &[u8]) -> Option<u64> {
    keys::parse_posting_key(key).map(|(_, bucket, _)| {
        bucket
            .saturating_add(1)
            .saturating_mul(keys::POSTING_BUCKET_US)
            - 1
    })
}

impl Store {
    pub fn open(dir: &Path, opts: &StoreOptions) -> Result<Store, StoreError> {
        let retention_us = opts.retention.as_micros().min(u64::MAX as u128) as u64;
        let cache = Cache::new_lru_cache(opts.block_cache_bytes);

        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_max_background_jobs(2);
        db_opts.set_keep_log_file_num(3);
        // Bounds the WAL kept for rarely written families (meta), whose unflushed
        // memtables would otherwise pin old log files.
        db_opts.set_max_total_wal_size(256 << 20);

        let base = |write_buffer: usize| {
            let mut o = Options::default();
            let mut block = BlockBasedOptions::default();
            block.set_block_cache(&cache);
            block.set_bloom_filter(10.0, false);
            // 16 KiB blocks: zstd and lz4 build their tables once per block, so larger
            // blocks cost less CPU in flushes and compactions and compress better.
            block.set_block_size(16 << 10);
            o.set_block_based_table_factory(&block);
            o.set_compression_type(DBCompressionType::Lz4);
            o.set_bottommost_compression_type(DBCompressionType::Zstd);
            o.set_bottommost_compression_options(-14, 1, 0, 0, true);
            o.set_write_buffer_size(write_buffer);
            o.set_compaction_style(rocksdb::DBCompactionStyle::Universal);
            o.set_max_write_buffer_number(2);
            o
        };
        // Files older than this are compacted even if nothing else would touch them, so
        // the compaction filter sees expired entries and the disk space comes back.
        let periodic = opts.retention.as_secs().clamp(3600, 86400);

        let mut spans = base(32 << 20);
        // Values come compressed by `codec`; RocksDB compressing them again would only
        // cost CPU on every flush and compaction.
        spans.set_compression_type(DBCompressionType::None);
        spans.set_bottommost_compression_type(DBCompressionType::None);
        spans.set_prefix_extractor(SliceTransform::create_fixed_prefix(keys::TRACE_PREFIX_LEN));
        spans.set_periodic_compaction_seconds(periodic);
        spans.set_compaction_filter_factory(Retention {
            name: c"fctrace_span_retention",
            retention_us,
            time_of: keys::span_key_time,
        });

        let mut index = base(32 << 20);
        index.set_periodic_compaction_seconds(periodic);
        // a block goes when all of its bucket is past retention
        index.set_compaction_filter_factory(Retention {
            name: c"fctrace_index_retention",
            retention_us,
            time_of: posting_expiry,
        });

        let meta = base(4 << 20);
        let invocations = base(8 << 20);

        let cfs = vec![
            ColumnFamilyDescriptor::new(CF_SPANS, spans),
            ColumnFamilyDescriptor::new(CF_INDEX, index),
            ColumnFamilyDescriptor::new(CF_META, meta),
            ColumnFamilyDescriptor::new(CF_INVOCATIONS, invocations),
        ];
        let db = DB::open_cf_descriptors(&db_opts, dir, cfs)?;

        let mut write_opts = WriteOptions::default();
        write_opts.set_sync(opts.sync_writes);

        let store = Store {
            db,
            catalog: RwLock::new(Catalog::default()),
            retention_us,
            write_opts,
            seq: AtomicU64::new(0),
        };
        store.check_format_version(dir)?;
        store.load_catalog()?;
        Ok(store)
    }

    fn cf(&self, name: &str) -> &ColumnFamily {
        // Every family is created in `open`; a missing one is a bug in this module.
        self.db
            .cf_handle(name)
            .unwrap_or_else(|| panic!("column family {name} was created at open"))
    }

    fn check_format_version(&self, dir: &Path) -> Result<(), StoreError> {
        let meta = self.cf(CF_META);
        let key = keys::format_version_key();
        match self.db.get_cf(meta, &key)? {
            None => {
                self.db
                    .put_cf_opt(meta, &key, FORMAT_VERSION.to_be_bytes(), &self.write_opts)?;
                Ok(())
            }
            Some(v) if v.as_slice() == FORMAT_VERSION.to_be_bytes() => Ok(()),
            Some(v) => Err(StoreError::FormatVersion {
                dir: dir.to_owned(),
                found: match <[u8; 4]>::try_from(v.as_slice()) {
                    Ok(b) => u32::from_be_bytes(b).to_string(),
                    Err(_) => format!("{v:02x?}"),
                },
            }),
        }
    }

    fn load_catalog(&self) -> Result<(), StoreError> {
        let mut catalog = Catalog::default();
        for item in self.db.iterator_cf(self.cf(CF_META), IteratorMode::Start) {
            let (k, _) = item?;
            match keys::parse_meta_key(&k) {
                Some(keys::MetaEntry::Service(t, s)) => {
                    catalog.services.entry((t, s)).or_default();
                }
                Some(keys::MetaEntry::Operation(t, s, op, kind)) => {
                    catalog
                        .services
                        .entry((t, s))
                        .or_default()
                        .insert((op, kind));
                }
                None => {}
            }
        }
        *self.catalog.write().unwrap_or_else(|e| e.into_inner()) = catalog;
        Ok(())
    }

    /// Write encoded batches as one `WriteBatch`; returns once it is in the WAL (and
    /// fsynced when `sync_writes` is on). New services and operations are recorded in the
    /// same write.
    pub fn commit(&self, batches: &[&EncodedBatch]) -> Result<(), StoreError> {
        let spans = self.cf(CF_SPANS);
        let index = self.cf(CF_INDEX);
        let meta = self.cf(CF_META);
        let invocations = self.cf(CF_INVOCATIONS);
        let mut wb = WriteBatch::default();
        let mut new_ops: Vec<(Tenant, &str, &str, SpanKind)> = Vec::new();
        {
            let catalog = self.catalog.read().unwrap_or_else(|e| e.into_inner());
            for b in batches {
                for e in &b.entries {
                    let cf = match e.family {
                        Family::Spans => spans,
                        Family::Invocations => invocations,
                    };
                    wb.put_cf(cf, &b.buf[e.key.0..e.key.1], &b.buf[e.value.0..e.value.1]);
                }
                for (service, op, kind) in &b.operations {
                    let known = catalog
                        .services
                        .get(&(b.tenant, service.clone()))
                        .is_some_and(|ops| ops.contains(&(op.clone(), *kind)));
                    if !known {
                        new_ops.push((b.tenant, service, op, *kind));
                    }
                }
            }
        }
        // A sequence number unique to this group: the clock, or one past the last, so a
        // restart (which starts from the clock again) does not reuse one.
        let now = crate::clock::now_us();
        let seq = match self
            .seq
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
                Some(now.max(last + 1))
            }) {
            Ok(last) | Err(last) => now.max(last + 1),
        };
        for (k, v) in postings::merge(
            batches
                .iter()
                .map(|b| (b.tenant, b.buf.as_slice(), b.postings.as_slice())),
            seq,
        ) {
            wb.put_cf(index, k, v);
        }
        for (tenant, service, op, kind) in &new_ops {
            wb.put_cf(meta, keys::meta_service_key(*tenant, service), []);
            wb.put_cf(
                meta,
                keys::meta_operation_key(*tenant, service, op, *kind),
                [],
            );
        }
        self.db
            .write_opt(wb, &self.write_opts)
            .map_err(StoreError::from_write)?;
        if !new_ops.is_empty() {
            let mut catalog = self.catalog.write().unwrap_or_else(|e| e.into_inner());
            for (tenant, service, op, kind) in new_ops {
                catalog
                    .services
                    .entry((tenant, service.to_owned()))
                    .or_default()
                    .insert((op.to_owned(), kind));
            }
        }
        Ok(())
    }

    /// Every stored span of a trace, in start order; empty when the trace is unknown.
    pub fn trace(&self, tenant: Tenant, trace: TraceId) -> Result<Vec<Span>, StoreError> {
        let prefix = keys::trace_prefix(tenant, trace);
        let cutoff = cutoff_us(self.retention_us);
        let mut ro = ReadOptions::default();
        ro.set_prefix_same_as_start(true);
        let mut out: Vec<Span> = Vec::new();
        let iter = self.db.iterator_cf_opt(
            self.cf(CF_SPANS),
            ro,
            IteratorMode::From(&prefix, Direction::Forward),
        );
        for item in iter {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            if keys::span_key_time(&k).is_some_and(|t| t < cutoff) {
                continue;
            }
            out.extend(codec::decode_chunk(&k, &v)?);
        }
        // A span sent twice may sit in two chunks: keep one (the later chunk's) per
        // (start, span id), in start order.
        out.reverse();
        out.sort_by_key(|s| (s.start_time, s.span_id));
        out.dedup_by_key(|s| (s.start_time, s.span_id));
        Ok(out)
    }

    /// Walk a term's postings newest first over `[oldest, newest]` (µs), calling
    /// `f(time, trace)` until it returns false. Traces come bucket by bucket (one second of
    /// start time), newest time first within a bucket; a trace can come once per bucket
    /// and per group that wrote it. With `durations`, only traces with a span of the
    /// term whose duration may lie in that range (inclusive) come. Every answer is a
    /// candidate: callers check the spans.
    pub fn scan_index(
        &self,
        term: &IndexPrefix,
        durations: Option<(u64, u64)>,
        oldest: u64,
        newest: u64,
        mut f: impl FnMut(u64, TraceId) -> bool,
    ) -> Result<(), StoreError> {
        let oldest = oldest.max(cutoff_us(self.retention_us));
        if oldest > newest {
            return Ok(());
        }
        let (oldest_bucket, newest_bucket) = (
            oldest / keys::POSTING_BUCKET_US,
            newest / keys::POSTING_BUCKET_US,
        );
        let tenant = term.tenant();
        let hash = term.term_hash();
        let (shard, bits) = (keys::shard_of(hash), keys::hash_bits(hash));
        let index = self.cf(CF_INDEX);
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(keys::posting_upper_bound(tenant, shard));
        let seek = keys::posting_seek(tenant, shard, newest_bucket);
        let iter =
            self.db
                .iterator_cf_opt(index, ro, IteratorMode::From(&seek, Direction::Forward));

        let mut hits = Vec::new();
        // (time, trace) found in the current bucket, answered when the bucket ends
        let mut found: Vec<(u64, TraceId)> = Vec::new();
        let mut current = None;
        let answer = |found: &mut Vec<(u64, TraceId)>, f: &mut dyn FnMut(u64, TraceId) -> bool| {
            found.sort_unstable_by(|a, b| b.cmp(a));
            found.dedup_by_key(|e| e.1);
            let go_on = found.iter().all(|&(t, trace)| f(t, trace));
            found.clear();
            go_on
        };
        for item in iter {
            let (k, v) = item?;
            let Some((_, bucket, seq)) = keys::parse_posting_key(&k) else {
                continue;
            };
            if bucket < oldest_bucket {
                break;
            }
            if current != Some(bucket) {
                if !answer(&mut found, &mut f) {
                    return Ok(());
                }
                current = Some(bucket);
            }
            hits.clear();
            postings::lookup(&v, bits, &mut hits).map_err(|e| StoreError::Index(e.to_string()))?;
            if let Some((lo, hi)) = durations {
                hits.retain(|h| {
                    h.durations.is_some_and(|(dmin, dmax)| {
                        (dmin as u64) <= hi && (dmax as u64 >= lo || dmax == u32::MAX)
                    })
                });
            }
            if hits.is_empty() {
                continue;
            }
            let table_key = keys::posting_key(tenant, keys::TABLE_SHARD, bucket, seq);
            let Some(table) = self.db.get_pinned_cf(index, table_key)? else {
                return Err(StoreError::Index(format!(
                    "posting block of bucket {bucket} group {seq} has no trace table"
                )));
            };
            for h in &hits {
                let (trace, t) = postings::table_entry(&table, h.trace).ok_or_else(|| {
                    StoreError::Index(format!("trace {} is not in its table", h.trace))
                })?;
                if t <= newest {
                    found.push((t, trace));
                }
            }
        }
        answer(&mut found, &mut f);
        Ok(())
    }

    /// Invocation records of one function (JSON values) that started in `[start, end]`
    /// (µs), newest first, at most `limit`.
    pub fn invocations(
        &self,
        tenant: Tenant,
        service: &str,
        function: &str,
        start: u64,
        end: u64,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let prefix = IndexPrefix(keys::invocation_prefix(tenant, service, function));
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(prefix.upper_bound());
        let seek = prefix.seek_newest(end);
        let mut out = Vec::new();
        let iter = self.db.iterator_cf_opt(
            self.cf(CF_INVOCATIONS),
            ro,
            IteratorMode::From(&seek, Direction::Forward),
        );
        for item in iter {
            let (k, v) = item?;
            let t = k
                .get(prefix.len()..prefix.len() + 8)
                .and_then(|b| b.try_into().ok())
                .map(|b| !u64::from_be_bytes(b));
            if t.is_none_or(|t| t < start) {
                break;
            }
            out.push(v.to_vec());
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    pub fn services(&self, tenant: Tenant) -> Vec<String> {
        let catalog = self.catalog.read().unwrap_or_else(|e| e.into_inner());
        catalog
            .services
            .keys()
            .filter(|(t, _)| *t == tenant)
            .map(|(_, s)| s.clone())
            .collect()
    }

    /// Operations of a service with their span kinds, sorted by name then kind.
    pub fn operations(&self, tenant: Tenant, service: &str) -> Vec<(String, SpanKind)> {
        let catalog = self.catalog.read().unwrap_or_else(|e| e.into_inner());
        catalog
            .services
            .get(&(tenant, service.to_owned()))
            .map(|ops| ops.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Compact the span and index families now: expired entries go and their disk space
    /// comes back. The small families are flushed first, because a write-ahead log file
    /// is only deleted once no family's memtable still needs it.
    pub fn compact(&self) {
        for name in [CF_META, CF_INVOCATIONS] {
            if let Err(e) = self.db.flush_cf(self.cf(name)) {
                tracing::warn!(error = %e, family = name, "flush before retention compaction failed");
            }
        }
        for name in [CF_SPANS, CF_INDEX] {
            self.db
                .compact_range_cf(self.cf(name), None::<&[u8]>, None::<&[u8]>);
        }
    }

    /// Flush memtables to SST files (on shutdown, so the next start replays no WAL).
    pub fn flush(&self) -> Result<(), StoreError> {
        for name in [CF_SPANS, CF_INDEX, CF_META, CF_INVOCATIONS] {
            self.db.flush_cf(self.cf(name))?;
        }
        Ok(())
    }

    pub fn retention(&self) -> Duration {
        Duration::from_micros(self.retention_us)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Spans,
    Invocations,
}

#[derive(Debug)]
struct Entry {
    family: Family,
    key: (usize, usize),
    value: (usize, usize),
}

/// Keys and values for a batch of spans, laid out in one buffer, ready for the writer.
#[derive(Debug)]
pub struct EncodedBatch {
    tenant: Tenant,
    buf: Vec<u8>,
    entries: Vec<Entry>,
    /// Distinct (service, operation, kind) of the batch, for the catalog.
    operations: Vec<(String, String, SpanKind)>,
    /// The batch's posting tables and sub-blocks, in `buf`.
    postings: Vec<postings::Part>,
    spans: usize,
}

impl EncodedBatch {
    /// Bytes this batch holds in memory: what admission counts.
    pub fn size(&self) -> usize {
        self.buf.len()
            + self.entries.len() * std::mem::size_of::<Entry>()
            + self.postings.len() * std::mem::size_of::<postings::Part>()
    }

    pub fn span_count(&self) -> usize {
        self.spans
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
    EncodedBatch {
        tenant,
        entries: vec![Entry {
            family: Family::Invocations,
            key: (0, k1),
            value: (k1, buf.len()),
        }],
        buf,
        operations: Vec::new(),
        postings: Vec::new(),
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
        buf: Vec::with_capacity(spans.len() * 1024),
        entries: Vec::with_capacity(spans.len()),
        operations: Vec::new(),
        postings: Vec::new(),
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

    let mut ix = postings::Builder::default();
    let mut term = IndexPrefix(Vec::with_capacity(128));
    for span in spans {
        let service = span.process.service_name.as_str();
        ops.insert((service, span.operation_name.as_str(), span.kind()));

        let slot = ix.slot(span.trace_id, span.start_time);
        term.reset(tenant, keys::IndexKind::Service, service);
        ix.timed(slot, &term, span.duration);
        term.reset(tenant, keys::IndexKind::Operation, service);
        term.push_str(&span.operation_name);
        ix.timed(slot, &term, span.duration);

        let all_tags = span
            .tags
            .iter()
            .chain(span.process.tags.iter())
            .chain(span.logs.iter().flat_map(|l| l.fields.iter()));
        for kv in all_tags {
            let v: std::borrow::Cow<str> = match &kv.value {
                crate::model::Value::Binary(_) => continue,
                crate::model::Value::Str(s) => std::borrow::Cow::Borrowed(s),
                other => std::borrow::Cow::Owned(other.to_search_string()),
            };
            if v.len() > keys::MAX_INDEXED_LEN {
                continue;
            }
            term.reset(tenant, keys::IndexKind::Tag, service);
            term.push_str(&kv.key);
            term.push_str(&v);
            ix.plain(slot, &term);
        }
    }
    b.postings = ix.finish(&mut b.buf);
    b.operations = ops
        .into_iter()
        .map(|(s, o, k)| (s.to_owned(), o.to_owned(), k))
        .collect();
    b
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::{KeyValue, Process, SpanId, Value};

    fn span(trace: u128, id: u64, service: &str, op: &str, start: u64, duration: u64) -> Span {
        Span {
            trace_id: TraceId(trace),
            span_id: SpanId(id),
            operation_name: op.into(),
            references: vec![],
            flags: 1,
            start_time: start,
            duration,
            tags: vec![KeyValue::new("span.kind", Value::Str("server".into()))],
            logs: vec![],
            process: Arc::new(Process {
                service_name: service.into(),
                tags: vec![],
            }),
        }
    }

    fn open(dir: &Path) -> Store {
        let opts = StoreOptions {
            sync_writes: false,
            ..StoreOptions::default()
        };
        Store::open(dir, &opts).unwrap()
    }

    #[test]
    fn catalog_comes_back_from_meta_without_spans() {
        let dir = tempfile::tempdir().unwrap();
        let now = crate::clock::now_us();
        {
            let store = open(dir.path());
            let b = encode(
                0,
                &[
                    span(1, 1, "a", "op1", now, 5),
                    span(2, 1, "b", "op2", now, 5),
                ],
            );
            store.commit(&[&b]).unwrap();
            // Remove every span and index entry: only `meta` can name the services now.
            for cf in [CF_SPANS, CF_INDEX] {
                store
                    .db
                    .delete_range_cf(store.cf(cf), [0u8].as_slice(), [0xffu8; 64].as_slice())
                    .unwrap();
            }
        }
        let store = open(dir.path());
        assert_eq!(store.services(0), vec!["a".to_string(), "b".to_string()]);
        assert_eq!(
            store.operations(0, "a"),
            vec![("op1".to_string(), SpanKind::Server)]
        );
        assert!(store.trace(0, TraceId(1)).unwrap().is_empty());
    }

    fn scan(
        store: &Store,
        term: &IndexPrefix,
        d: Option<(u64, u64)>,
        lo: u64,
        hi: u64,
    ) -> Vec<u128> {
        let mut seen = Vec::new();
        store
            .scan_index(term, d, lo, hi, |_, t| {
                seen.push(t.0);
                true
            })
            .unwrap();
        seen
    }

    #[test]
    fn index_scans_are_newest_first_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let now = crate::clock::now_us();
        let sec = keys::POSTING_BUCKET_US;
        // five traces, two seconds apart, durations 10..50
        let spans: Vec<Span> = (1..=5u64)
            .map(|i| {
                span(
                    i as u128,
                    1,
                    "svc",
                    "op",
                    now - 20 * sec + i * 2 * sec,
                    i * 10,
                )
            })
            .collect();
        store.commit(&[&encode(0, &spans)]).unwrap();
        let svc = IndexPrefix::service(0, "svc");
        assert_eq!(
            scan(&store, &svc, None, now - 15 * sec, now - 11 * sec),
            vec![4, 3]
        );
        assert_eq!(scan(&store, &svc, None, 0, u64::MAX), vec![5, 4, 3, 2, 1]);
        assert_eq!(
            scan(&store, &svc, Some((20, 40)), 0, u64::MAX),
            vec![4, 3, 2]
        );
        let op = IndexPrefix::operation(0, "svc", "op");
        assert_eq!(scan(&store, &op, Some((41, 1000)), 0, u64::MAX), vec![5]);
        let tag = IndexPrefix::tag(0, "svc", "span.kind", "server");
        assert_eq!(scan(&store, &tag, None, 0, u64::MAX), vec![5, 4, 3, 2, 1]);
        assert!(scan(&store, &IndexPrefix::service(0, "other"), None, 0, u64::MAX).is_empty());
        // a second group's blocks are found beside the first's, newest first in a bucket
        store
            .commit(&[&encode(
                0,
                &[span(9, 1, "svc", "op", now - 20 * sec + 10 * sec + 1, 5)],
            )])
            .unwrap();
        assert_eq!(
            scan(&store, &svc, None, now - 11 * sec, now - 9 * sec),
            vec![9, 5]
        );
    }

    #[test]
    fn postings_hold_one_entry_per_trace_term_and_second() {
        let now = crate::clock::now_us();
        let sec = keys::POSTING_BUCKET_US;
        let t = now - now % sec;
        // one trace, three spans in one second and one in the next, same service and tag
        let mut spans: Vec<Span> = [t + 30, t + 10, t + 20, t + sec + 5]
            .iter()
            .enumerate()
            .map(|(i, start)| span(7, i as u64 + 1, "svc", "op", *start, 5))
            .collect();
        spans.push(span(8, 1, "svc", "op", t + 15, 5));
        let b = encode(0, &spans);
        let tables: Vec<&postings::Part> = b
            .postings
            .iter()
            .filter(|p| p.shard == keys::TABLE_SHARD)
            .collect();
        assert_eq!(tables.len(), 2, "one table per second");
        // the first second: traces 7 (earliest start t+10) and 8
        let first = &b.buf[tables[0].range.0..tables[0].range.1];
        assert_eq!(postings::table_entry(first, 0), Some((TraceId(7), t + 10)));
        assert_eq!(postings::table_entry(first, 1), Some((TraceId(8), t + 15)));
        assert_eq!(postings::table_entry(first, 2), None);
        // the service term: one hit per trace in each second
        let h = IndexPrefix::service(0, "svc").term_hash();
        let mut hits = Vec::new();
        for p in b.postings.iter().filter(|p| p.shard == keys::shard_of(h)) {
            postings::lookup(&b.buf[p.range.0..p.range.1], keys::hash_bits(h), &mut hits).unwrap();
        }
        assert_eq!(hits.len(), 3);
    }

    #[test]
    fn unknown_format_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(dir.path());
            store
                .db
                .put_cf(
                    store.cf(CF_META),
                    keys::format_version_key(),
                    99u32.to_be_bytes(),
                )
                .unwrap();
        }
        let opts = StoreOptions::default();
        let err = Store::open(dir.path(), &opts).err().unwrap().to_string();
        assert!(err.contains("format version 99"), "{err}");
    }
}
