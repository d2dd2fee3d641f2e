//! The store: spans, their search indexes, invocation records and the service catalog
//! in RocksDB.
//!
//! In: [`EncodedBatch`]es (made by [`encode`] on the caller's thread, so the single writer
//! only copies bytes) committed as one `WriteBatch` by [`Store::commit`] (`write`). Out:
//! whole traces by id, index scans newest first, invocation records (`read`), and the
//! service/operation catalog (`catalog`). Retention (`retention`) never rewrites live
//! data: span files go whole, posting seconds by range, and reads hide what has not gone
//! yet. This file opens and tunes the database and checks its format; `upgrade` moves
//! older formats' data at open.
//!
//! Column families: `chunks` (span chunks, FIFO), `postings` (time first, leveled),
//! `terms` (the term filter, see `terms`), `meta`, `invocations`, `metrics`, `logs` (see
//! `keys` for every layout) and `journal` (metric aggregates not yet in `metrics`, see
//! `journal`).
//! The store decides nothing about what to store (the pipeline does) and knows no JSON
//! (the query side does).

mod aggregates;
mod catalog;
pub mod codec;
mod disk;
mod journal;
pub mod keys;
mod logs;
mod lookup;
mod metrics;
pub mod postings;
mod quota;
mod read;
mod retention;
mod terms;
pub mod trace_wire;
mod upgrade;
mod wire;
mod write;

pub use metrics::MetricSource;
pub use read::{Census, ScanStats};
pub use wire::WireError;
pub use write::{encode, encode_invocation, EncodedBatch, Rows};

#[allow(clippy::all, missing_docs)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/fctrace.storage.v1.rs"));
}

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DBCompressionType,
    FifoCompactOptions, Options, SliceTransform, WriteOptions, DB,
};
use thiserror::Error;

use crate::error::ErrorCode;
use catalog::Catalog;
use retention::Retention;

/// Bump when any key layout or the span encoding changes (6: span chunks of format byte
/// 2, see `codec`, and the `metrics` family; 7: the `logs` family; 8: posting
/// sub-blocks in columns, see `postings`: groups written before it keep the fixed layout,
/// told apart by `columns_from`; 9: the metrics `journal` family, created empty; 10:
/// metric aggregates of version 5, only their fields that are not zero, see
/// `monitor::minute`: older ones are still read, and an older build would drop these).
pub const FORMAT_VERSION: u32 = 10;
/// Older formats this build still opens (2: span keys without chunk numbers, still read
/// as they are; 2 and 3: chunks in a compacted `spans` family and posting blocks shard
/// first in `index`, both moved at open, see `upgrade`; 2 to 4: no term filter, so
/// searches scan every minute until what was written before has passed retention; 5:
/// only chunks of format byte 1, read as they are, and its term filter kept; 6: no
/// `logs` family, created empty);
/// opening one marks it as the current format, so an older build refuses it from then on.
const READABLE_FORMATS: &[u32] = &[2, 3, 4, 5, 6];
/// The first format with a term filter: opening it keeps the filter's start.
const FIRST_WITH_TERMS: u32 = 5;

const CF_SPANS: &str = "chunks";
/// Where formats 2 and 3 kept span chunks (compacted, not FIFO); moved at open.
const CF_SPANS_V3: &str = "spans";
const CF_POSTINGS: &str = "postings";
/// Where formats 2 and 3 kept posting blocks; gone once `upgrade_postings` has run.
const CF_INDEX_V3: &str = "index";
const CF_META: &str = "meta";
const CF_INVOCATIONS: &str = "invocations";
const CF_TERMS: &str = "terms";
/// Per-minute metric aggregates (see `metrics`); new in format 5 stores since issue 14,
/// created empty when an older store opens.
const CF_METRICS: &str = "metrics";
/// Function log lines (FIFO: whole files go at retention, like span chunks).
const CF_LOGS: &str = "logs";
/// Metric aggregates committed and not yet merged into `metrics` (see `journal`).
const CF_JOURNAL: &str = "journal";
/// Every family this format has.
const FAMILIES: [&str; 8] = [
    CF_JOURNAL,
    CF_SPANS,
    CF_POSTINGS,
    CF_TERMS,
    CF_META,
    CF_INVOCATIONS,
    CF_METRICS,
    CF_LOGS,
];

/// The bloom filters a family's table files carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Filter {
    /// Whole keys and prefixes: for point reads.
    WholeKeys,
    /// Prefixes only: a family read only by prefix needs half the filter.
    Prefixes,
    Off,
}

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
    /// On a query node: the store node holding the data did not answer.
    #[error("{0}")]
    Unreachable(String),
}

impl StoreError {
    pub fn code(&self) -> ErrorCode {
        match self {
            StoreError::DiskFull(_) | StoreError::Unreachable(_) => ErrorCode::Unavailable,
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
    /// Writes are refused while the filesystem has less than this free; 0 turns it off.
    pub min_free_disk_bytes: u64,
    /// How far in the future a stored span may start (the pipeline refuses later ones):
    /// span files are kept this much longer than retention.
    pub future_skew: Duration,
    /// How long per-minute metric aggregates are kept.
    pub metrics_retention: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            retention: Duration::from_secs(72 * 3600),
            sync_writes: true,
            block_cache_bytes: 64 << 20,
            min_free_disk_bytes: 0,
            future_skew: Duration::from_secs(3600),
            metrics_retention: Duration::from_secs(31 * 86400),
        }
    }
}

pub struct Store {
    /// Shared with the fold thread (`journal`), which ends before the store drops.
    db: Arc<DB>,
    catalog: RwLock<Catalog>,
    retention_us: u64,
    write_opts: WriteOptions,
    /// The last number used for a posting group or a span chunk; persisted with every
    /// write (`keys::chunk_seq_key`), so no key is ever written twice.
    seq: AtomicU64,
    disk: disk::DiskGuard,
    /// Wall-clock µs since which every write recorded its terms (`terms`).
    terms_from: u64,
    /// Posting groups numbered from this on have format 8's column layout; older ones
    /// (a directory of format 7 or before) the fixed one.
    columns_from: u64,
    /// The term-filter keys written since start, so each is written once.
    written: Mutex<terms::Written>,
    /// Tenants' shorter retentions (`quota`), shared with the compaction filters.
    tenant_retention: quota::TenantRetention,
    /// Tenants' bytes written per hour (`quota`).
    usage: Mutex<quota::Usage>,
    /// Metric aggregates journaled and not yet in `metrics` (`journal`).
    pending: Arc<Mutex<journal::Pending>>,
    /// Writes the folds of `pending` off the writer's thread (`metrics`).
    folder: metrics::Folder,
}

impl Drop for Store {
    fn drop(&mut self) {
        // the fold thread holds the database open: it finishes first
        self.folder.stop();
    }
}

impl Store {
    pub fn open(dir: &Path, opts: &StoreOptions) -> Result<Store, StoreError> {
        let retention_us = opts.retention.as_micros().min(u64::MAX as u128) as u64;
        let tenant_retention = quota::TenantRetention::default();
        let cache = Cache::new_lru_cache(opts.block_cache_bytes);

        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_max_background_jobs(2);
        db_opts.set_keep_log_file_num(3);
        // RocksDB's info log (LOG) rolls at 1 MiB: a retention pass logs every flush, and
        // a store with a short retention would grow it without end (4 MiB at most now).
        db_opts.set_max_log_file_size(1 << 20);
        // Bounds the WAL kept for rarely written families (meta), whose unflushed
        // memtables would otherwise pin old log files.
        db_opts.set_max_total_wal_size(256 << 20);
        // Flushes and compactions write around the page cache: the kernel's copy into it
        // (`copy_folio_from_iter_atomic`) was 4.8 % of the daemon's CPU under load, for
        // files that are read back by the one compaction (postings) or rarely (chunks).
        // (A directory that cannot be made fails the open below, with RocksDB's message.)
        let _ = std::fs::create_dir_all(dir);
        if disk::direct_writes_work(dir) {
            db_opts.set_use_direct_io_for_flush_and_compaction(true);
        } else {
            tracing::info!(dir = %dir.display(), "filesystem refuses O_DIRECT: flushes go through the page cache");
        }

        let with_filters = |write_buffer: usize, filter: Filter, block_size: usize| {
            let mut o = Options::default();
            let mut block = BlockBasedOptions::default();
            block.set_block_cache(&cache);
            match filter {
                Filter::WholeKeys => block.set_bloom_filter(10.0, false),
                // Only the chunks family reads by prefix alone, and its files never leave
                // level 0, where RocksDB loads every file's filter into the cache when it
                // opens it: Ribbon filters answer as well as 10-bit Bloom filters in ~30 %
                // less memory, for more CPU when a flush builds them (one key per trace).
                Filter::Prefixes => {
                    block.set_ribbon_filter(10.0);
                    block.set_whole_key_filtering(false);
                }
                Filter::Off => {}
            }
            // Index and filter blocks live in the block cache, not beside each open file:
            // otherwise memory grows with the store (a first soak run went from 149 to
            // 282 MiB in 23 minutes, RELIABILITY.md) and a restart loads them all.
            block.set_cache_index_and_filter_blocks(true);
            block.set_pin_l0_filter_and_index_blocks_in_cache(false);
            block.set_block_size(block_size);
            o.set_block_based_table_factory(&block);
            o.set_compression_type(DBCompressionType::Lz4);
            o.set_bottommost_compression_type(DBCompressionType::Zstd);
            o.set_bottommost_compression_options(-14, 1, 0, 0, true);
            o.set_write_buffer_size(write_buffer);
            o.set_compaction_style(rocksdb::DBCompactionStyle::Universal);
            o.set_max_write_buffer_number(2);
            o
        };
        // 16 KiB blocks: zstd and lz4 build their tables once per block, so larger
        // blocks cost less CPU in flushes and compactions and compress better.
        let base = |write_buffer: usize| with_filters(write_buffer, Filter::WholeKeys, 16 << 10);
        // Files older than this are compacted even if nothing else would touch them, so
        // the compaction filter sees expired entries and the disk space comes back.
        let periodic = opts.retention.as_secs().clamp(3600, 86400);

        // Span chunks: keys are random (trace ids), so any compaction would rewrite
        // everything again and again as the store grows. FIFO never compacts: flushed files
        // stay in level 0 until their newest entry is older than the TTL, then go whole.
        // The TTL is retention plus the future skew spans may have, so nothing goes before
        // reads stop showing it (reads hide spans past retention by start time; a file
        // goes only when all of it was written longer ago than that).
        // Read only by trace prefix: filters of prefixes alone (at 100 M spans the
        // filters of whole keys and prefixes were 30 MiB of cache right after open).
        // 64 KiB blocks: chunk values come compressed, so a block is only copied, and a
        // four times smaller index is what every table file keeps in the cache from the
        // moment it is opened (at 100 M spans the cache held 20.5 MB right after open
        // with 16 KiB blocks).
        // 64 MiB memtables: every file is a sorted run a trace lookup visits (an iterator
        // per file), so half as many files halve that part of a trace by id (at 100 M
        // spans 178 files of 32 MiB: a missing trace took 1.7-4.1 ms; 93 of 64 MiB:
        // 0.7-1.3 ms), for ~20 MiB more peak memory while ingesting (BENCHMARKS.md).
        let mut spans = with_filters(64 << 20, Filter::Prefixes, 64 << 10);
        spans.set_compaction_style(rocksdb::DBCompactionStyle::Fifo);
        let mut fifo = FifoCompactOptions::default();
        fifo.set_max_table_files_size(u64::MAX);
        spans.set_fifo_compaction_options(&fifo);
        let ttl = opts.retention.saturating_add(opts.future_skew);
        spans.set_ttl(ttl.as_secs().clamp(1, 100 * 365 * 86400));
        // Values come compressed by `codec`; RocksDB compressing them again would only
        // cost CPU on every flush.
        spans.set_compression_type(DBCompressionType::None);
        spans.set_bottommost_compression_type(DBCompressionType::None);
        spans.set_prefix_extractor(SliceTransform::create_fixed_prefix(keys::TRACE_PREFIX_LEN));

        // No bloom filters: postings are read by seeks (which whole-key filters do not
        // serve) and by point reads of trace tables that always exist, so filters only
        // cost memory in the block cache, disk and CPU in every flush and compaction.
        // 64 KiB blocks: a sub-block repeats its terms' hashes and the trace slots of
        // its neighbours, so zstd finds four times the context: 38.6 → 17.0 B a span
        // after compaction against 16 KiB blocks, with searches no slower (a seek reads
        // one block either way; BENCHMARKS.md).
        let mut postings = with_filters(32 << 20, Filter::Off, 64 << 10);
        // Keys are time first (see `keys`): leveled compaction moves files that overlap
        // nothing below them instead of rewriting them. Flushed files do overlap each
        // other and the newest file below (they share the second being written at the
        // flush), so each block is written about twice: by the flush (uncompressed) and by
        // the one compaction into the base level (zstd; later moves keep it). Small
        // files keep that one compaction from rewriting a large neighbour each time (with
        // 64 MiB files it read 3.0 GB of them in 10 minutes at 87k spans/s).
        postings.set_compaction_style(rocksdb::DBCompactionStyle::Level);
        postings.set_level_compaction_dynamic_level_bytes(true);
        postings.set_target_file_size_base(8 << 20);
        postings.set_compression_type(DBCompressionType::Zstd);
        // Flushes write level 0 uncompressed: its files live only until that one
        // compaction. One level setting serves every codec, and since RocksDB 10 a level
        // of 1 or more turns LZ4 into LZ4HC: with lz4 at level 0, LZ4HC was 5.6 % of the
        // daemon's CPU (`scripts/profile.sh`, BENCHMARKS.md).
        postings.set_compression_per_level(&[
            DBCompressionType::None,
            DBCompressionType::Zstd,
            DBCompressionType::Zstd,
            DBCompressionType::Zstd,
            DBCompressionType::Zstd,
            DBCompressionType::Zstd,
            DBCompressionType::Zstd,
        ]);
        postings.set_compression_options(-14, 1, 0, 0);
        // Expired seconds go by range (`Store::expire`); compactions that happen anyway
        // drop any block left past retention too.
        postings.set_compaction_filter_factory(Retention {
            name: c"fctrace_index_retention",
            retention_us,
            per_tenant: Some(std::sync::Arc::clone(&tenant_retention)),
            time_of: retention::posting_expiry,
        });

        let meta = base(4 << 20);
        let mut invocations = base(8 << 20);
        invocations.set_periodic_compaction_seconds(periodic);
        invocations.set_compaction_filter_factory(Retention {
            name: c"fctrace_invocation_retention",
            retention_us,
            per_tenant: Some(std::sync::Arc::clone(&tenant_retention)),
            time_of: keys::invocation_key_time,
        });

        // The term filter: small keys, hour first, no values (see `terms`); expired hours
        // go by range, and the compaction filter drops what a compaction meets anyway.
        let mut terms = base(8 << 20);
        terms.set_compaction_style(rocksdb::DBCompactionStyle::Level);
        terms.set_level_compaction_dynamic_level_bytes(true);
        terms.set_prefix_extractor(SliceTransform::create_fixed_prefix(keys::TERM_PREFIX_LEN));
        terms.set_periodic_compaction_seconds(periodic);
        terms.set_compaction_filter_factory(Retention {
            name: c"fctrace_terms_retention",
            retention_us,
            per_tenant: Some(std::sync::Arc::clone(&tenant_retention)),
            time_of: keys::terms_key_expiry,
        });

        // Metric aggregates: one small value per series and minute, merged on write.
        let mut metrics = base(4 << 20);
        metrics.set_merge_operator_associative("fctrace_minute", metrics::merge_minutes);
        metrics.set_periodic_compaction_seconds(86400);
        metrics.set_compaction_filter_factory(Retention {
            name: c"fctrace_metrics_retention",
            per_tenant: None,
            retention_us: opts.metrics_retention.as_micros().min(u64::MAX as u128) as u64,
            time_of: keys::metric_key_time,
        });

        // Function log lines: written in time order, read by function and time range,
        // gone whole files at a time like span chunks (same TTL).
        let mut logs = with_filters(8 << 20, Filter::Off, 16 << 10);
        logs.set_compaction_style(rocksdb::DBCompactionStyle::Fifo);
        let mut fifo = FifoCompactOptions::default();
        fifo.set_max_table_files_size(u64::MAX);
        logs.set_fifo_compaction_options(&fifo);
        logs.set_ttl(ttl.as_secs().clamp(1, 100 * 365 * 86400));

        // The metrics journal: one value per group commit, keyed by its number, most
        // deleted (by one range) within a second or two of being written, so most never
        // leave the memtable: a flush drops what a range deletion in it covers. 32 MiB
        // holds a few seconds of the bench's ~54 B a span: with 8 MiB it flushed twice
        // a second, each flush a new WAL file, a level-0 file and its compaction.
        let mut journal = with_filters(32 << 20, Filter::Off, 16 << 10);
        journal.set_compaction_style(rocksdb::DBCompactionStyle::Level);

        let mut cfs = vec![
            ColumnFamilyDescriptor::new(CF_JOURNAL, journal),
            ColumnFamilyDescriptor::new(CF_LOGS, logs),
            ColumnFamilyDescriptor::new(CF_SPANS, spans),
            ColumnFamilyDescriptor::new(CF_POSTINGS, postings),
            ColumnFamilyDescriptor::new(CF_TERMS, terms),
            ColumnFamilyDescriptor::new(CF_META, meta),
            ColumnFamilyDescriptor::new(CF_INVOCATIONS, invocations),
            ColumnFamilyDescriptor::new(CF_METRICS, metrics),
        ];
        let existing = DB::list_cf(&db_opts, dir).unwrap_or_default();
        let old: Vec<&str> = [CF_SPANS_V3, CF_INDEX_V3]
            .into_iter()
            .filter(|name| existing.iter().any(|cf| cf == name))
            .collect();
        for name in &old {
            // as format 3 opened them, so nothing changes shape before it is moved
            let mut o = base(8 << 20);
            if *name == CF_SPANS_V3 {
                o.set_compression_type(DBCompressionType::None);
                o.set_bottommost_compression_type(DBCompressionType::None);
            }
            cfs.push(ColumnFamilyDescriptor::new(*name, o));
        }
        let mut db = DB::open_cf_descriptors(&db_opts, dir, cfs)?;
        if old.contains(&CF_SPANS_V3) {
            upgrade::move_family(&mut db, CF_SPANS_V3, CF_SPANS, |k| Some(k.to_vec()))?;
        }
        if old.contains(&CF_INDEX_V3) {
            upgrade::move_family(&mut db, CF_INDEX_V3, CF_POSTINGS, |k| {
                keys::posting_key_from_v3(k).map(|k| k.to_vec())
            })?;
        }

        let mut write_opts = WriteOptions::default();
        write_opts.set_sync(opts.sync_writes);

        let db = Arc::new(db);
        let pending = Arc::new(Mutex::default());
        let folder = metrics::Folder::start(&db, &pending);
        let mut store = Store {
            db,
            pending,
            folder,
            terms_from: u64::MAX,
            columns_from: 0,
            written: Mutex::new(terms::Written::default()),
            catalog: RwLock::new(Catalog::new(retention_us)),
            retention_us,
            tenant_retention,
            usage: Mutex::default(),
            write_opts,
            seq: AtomicU64::new(0),
            disk: disk::DiskGuard::new(dir.to_owned(), opts.min_free_disk_bytes),
        };
        store.load_seq()?;
        store.terms_from = store.check_format_version(dir, opts.future_skew)?;
        store.columns_from = store.load_columns_from()?;
        store.load_catalog()?;
        store.load_usage()?;
        store.load_journal()?;
        Ok(store)
    }

    fn cf(&self, name: &str) -> &ColumnFamily {
        // Every family is created in `open`; a missing one is a bug in this module.
        self.db
            .cf_handle(name)
            .unwrap_or_else(|| panic!("column family {name} was created at open"))
    }

    /// Check the directory's format (marking an older one as current) and return when
    /// the term filter started: 0 for a new directory, now plus the future skew for one
    /// of a format without it (its spans may start up to that late). Marking a directory
    /// current also records from which group on posting blocks are in columns (in the
    /// same write, so a crash cannot leave one without the other): 0 for a new
    /// directory, the next group's number for an older one (`load_seq` ran before).
    fn check_format_version(&self, dir: &Path, skew: Duration) -> Result<u64, StoreError> {
        let meta = self.cf(CF_META);
        let key = keys::format_version_key();
        let from_key = keys::terms_from_key();
        let start = |from: u64, columns_from: u64| -> Result<u64, StoreError> {
            let mut wb = rocksdb::WriteBatch::default();
            wb.put_cf(meta, &key, FORMAT_VERSION.to_be_bytes());
            wb.put_cf(meta, &from_key, from.to_be_bytes());
            wb.put_cf(meta, keys::columns_from_key(), columns_from.to_be_bytes());
            self.db.write_opt(wb, &self.write_opts)?;
            Ok(from)
        };
        // (a directory that already says keeps its word)
        let next_group = match self.db.get_cf(meta, keys::columns_from_key())? {
            Some(v) => <[u8; 8]>::try_from(v.as_slice())
                .map(u64::from_be_bytes)
                .unwrap_or(u64::MAX),
            None => self.seq.load(Ordering::Relaxed).saturating_add(1),
        };
        let stored_from = || -> Result<u64, StoreError> {
            Ok(self
                .db
                .get_cf(meta, &from_key)?
                .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
                .map(u64::from_be_bytes)
                // written with the version, so never missing unless damaged: never trust
                .unwrap_or(u64::MAX))
        };
        let version = |f: u32| f.to_be_bytes();
        match self.db.get_cf(meta, &key)? {
            None => start(0, 0),
            Some(v) if v.as_slice() == version(FORMAT_VERSION) => stored_from(),
            Some(v) if (FIRST_WITH_TERMS..FORMAT_VERSION).any(|f| v.as_slice() == version(f)) => {
                tracing::info!(
                    from = ?v,
                    to = FORMAT_VERSION,
                    "data directory upgraded: what it holds stays readable, its term filter is kept"
                );
                start(stored_from()?, next_group)
            }
            Some(v)
                if READABLE_FORMATS
                    .iter()
                    .any(|f| v.as_slice() == f.to_be_bytes()) =>
            {
                tracing::info!(
                    from = ?v,
                    to = FORMAT_VERSION,
                    "data directory upgraded: old span keys stay readable"
                );
                let skew = skew.as_micros().min(u64::MAX as u128) as u64;
                start(crate::clock::now_us().saturating_add(skew), next_group)
            }
            Some(v) => Err(StoreError::FormatVersion {
                dir: dir.to_owned(),
                found: match <[u8; 4]>::try_from(v.as_slice()) {
                    Ok(b) => u32::from_be_bytes(b).to_string(),
                    Err(_) => format!("{v:02x?}"),
                },
            }),
        }
    }

    /// From which posting group on blocks are in columns (`check_format_version` wrote it).
    fn load_columns_from(&self) -> Result<u64, StoreError> {
        Ok(self
            .db
            .get_cf(self.cf(CF_META), keys::columns_from_key())?
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map(u64::from_be_bytes)
            // written with the version: missing only if damaged, and then no group is
            // trusted to be in columns
            .unwrap_or(u64::MAX))
    }

    /// How the posting block of group `seq` is laid out.
    pub(super) fn layout_of(&self, seq: u64) -> postings::Layout {
        if seq >= self.columns_from {
            postings::Layout::Columns
        } else {
            postings::Layout::Fixed
        }
    }

    /// Continue numbering after the last number written, or from the clock when that is
    /// later (format 2 directories have no record: their posting groups used the clock).
    fn load_seq(&self) -> Result<(), StoreError> {
        let last = self
            .db
            .get_cf(self.cf(CF_META), keys::chunk_seq_key())?
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0);
        self.seq
            .store(last.max(crate::clock::now_us()), Ordering::Relaxed);
        Ok(())
    }

    /// A value of the daemon's own state in `meta` (under a `keys::*_key()` of the system
    /// tenant), if set.
    pub fn state(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.cf(CF_META), key)?)
    }

    /// Set a value of the daemon's own state in `meta`, durably (fsynced WAL when the
    /// store syncs writes).
    pub fn set_state(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.db
            .put_cf_opt(self.cf(CF_META), key, value, &self.write_opts)?;
        Ok(())
    }

    /// Flush memtables to SST files (on shutdown, so the next start replays no WAL), after
    /// merging pending metric aggregates into `metrics`.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.fold_metrics()?;
        for name in FAMILIES {
            self.db.flush_cf(self.cf(name))?;
        }
        Ok(())
    }

    pub fn retention(&self) -> Duration {
        Duration::from_micros(self.retention_us)
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
