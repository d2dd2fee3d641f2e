//! Reading the store: whole traces by id, posting scans newest first, invocation
//! records. Reads hide entries past retention that compaction has not removed yet.
//! Nothing here writes.

use rocksdb::{Direction, IteratorMode, ReadOptions};

use super::{
    codec, keys, postings, Store, StoreError, CF_INVOCATIONS, CF_POSTINGS, CF_SPANS, FAMILIES,
};
use crate::model::{Span, TraceId};
use keys::{IndexPrefix, Tenant};

impl Store {
    /// Every stored span of a trace, in start order; empty when the trace is unknown.
    pub fn trace(&self, tenant: Tenant, trace: TraceId) -> Result<Vec<Span>, StoreError> {
        let prefix = keys::trace_prefix(tenant, trace);
        let cutoff = self.cutoff_of(tenant);
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
    /// candidate: callers check the spans. Only the minutes the term filter (`terms`)
    /// names are read; the answer says how many posting blocks were.
    pub fn scan_index(
        &self,
        term: &IndexPrefix,
        durations: Option<(u64, u64)>,
        oldest: u64,
        newest: u64,
        mut f: impl FnMut(u64, TraceId) -> bool,
    ) -> Result<ScanStats, StoreError> {
        let mut stats = ScanStats::default();
        let oldest = oldest.max(self.cutoff_of(term.tenant()));
        if oldest > newest {
            return Ok(stats);
        }
        let (oldest_bucket, newest_bucket) = (
            oldest / keys::POSTING_BUCKET_US,
            newest / keys::POSTING_BUCKET_US,
        );
        let tenant = term.tenant();
        let hash = term.term_hash();
        let (shard, bits) = (keys::shard_of(hash), keys::hash_bits(hash));
        let index = self.cf(CF_POSTINGS);
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(keys::posting_upper_bound(tenant));
        let mut it = self.db.raw_iterator_cf_opt(index, ro);

        let mut hits = Vec::new();
        // (time, trace) found in the current bucket, answered when the bucket ends
        let mut found: Vec<(u64, TraceId)> = Vec::new();
        let answer = |found: &mut Vec<(u64, TraceId)>, f: &mut dyn FnMut(u64, TraceId) -> bool| {
            found.sort_unstable_by(|a, b| b.cmp(a));
            found.dedup_by_key(|e| e.1);
            let go_on = found.iter().all(|&(t, trace)| f(t, trace));
            found.clear();
            go_on
        };
        // The buckets to read, newest first: the minutes the filter names, or all.
        let ranges: Vec<(u64, u64)> = match self.term_minutes(
            tenant,
            hash,
            keys::minute_of_bucket(oldest_bucket),
            keys::minute_of_bucket(newest_bucket),
        )? {
            None => vec![(newest_bucket, oldest_bucket)],
            Some(minutes) => minutes
                .into_iter()
                .map(|m| {
                    let (first, last) = keys::buckets_of_minute(m);
                    (last.min(newest_bucket), first.max(oldest_bucket))
                })
                .collect(),
        };
        for (newest_bucket, oldest_bucket) in ranges {
            // One seek per bucket that holds anything: a seek that lands past its bucket
            // names the next older bucket with data, so empty seconds cost nothing.
            let mut bucket = newest_bucket;
            while bucket >= oldest_bucket {
                let prefix = keys::posting_seek(tenant, shard, bucket);
                it.seek(prefix);
                while let (Some(k), Some(v)) = (it.key(), it.value()) {
                    if !k.starts_with(&prefix) {
                        break;
                    }
                    let Some((_, _, seq)) = keys::parse_posting_key(k) else {
                        it.next();
                        continue;
                    };
                    stats.blocks += 1;
                    hits.clear();
                    postings::lookup(v, self.layout_of(seq), bits, &mut hits)
                        .map_err(|e| StoreError::Index(e.to_string()))?;
                    if let Some((lo, hi)) = durations {
                        hits.retain(|h| {
                            h.durations.is_some_and(|(dmin, dmax)| {
                                (dmin as u64) <= hi && (dmax as u64 >= lo || dmax == u32::MAX)
                            })
                        });
                    }
                    if !hits.is_empty() {
                        let table_key = keys::posting_key(tenant, keys::TABLE_SHARD, bucket, seq);
                        let Some(table) = self.db.get_pinned_cf(index, table_key)? else {
                            return Err(StoreError::Index(format!(
                                "posting block of bucket {bucket} group {seq} has no trace table"
                            )));
                        };
                        for h in &hits {
                            let (trace, t) =
                                postings::table_entry(&table, h.trace).ok_or_else(|| {
                                    StoreError::Index(format!(
                                        "trace {} is not in its table",
                                        h.trace
                                    ))
                                })?;
                            if t <= newest {
                                found.push((t, trace));
                            }
                        }
                    }
                    it.next();
                }
                it.status()?;
                if !answer(&mut found, &mut f) {
                    return Ok(stats);
                }
                bucket = match it.key().and_then(keys::parse_posting_key) {
                    Some((_, older, _)) if older < bucket => older,
                    Some(_) => match bucket.checked_sub(1) {
                        Some(b) => b,
                        None => break,
                    },
                    // nothing older in the tenant's postings at all
                    None => return Ok(stats),
                };
            }
        }
        Ok(stats)
    }

    /// Walk the invocation records of `service` (one `function`, or all of the
    /// service's) that started in `[start, end]` (µs), calling `f(record)` until it
    /// returns false. One function's come newest first; a whole service's come function
    /// by function.
    pub fn scan_invocations(
        &self,
        tenant: Tenant,
        service: &str,
        function: Option<&str>,
        start: u64,
        end: u64,
        mut f: impl FnMut(&[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let start = start.max(self.cutoff_of(tenant));
        let prefix = IndexPrefix(match function {
            Some(function) => keys::invocation_prefix(tenant, service, function),
            None => keys::invocation_service_prefix(tenant, service),
        });
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(prefix.upper_bound());
        let seek = match function {
            Some(_) => prefix.seek_newest(end),
            None => prefix.0.clone(),
        };
        let iter = self.db.iterator_cf_opt(
            self.cf(CF_INVOCATIONS),
            ro,
            IteratorMode::From(&seek, Direction::Forward),
        );
        for item in iter {
            let (k, v) = item?;
            let Some(t) = keys::invocation_key_time(&k) else {
                continue;
            };
            if t > end || t < start {
                if function.is_some() && t < start {
                    break;
                }
                continue;
            }
            if !f(&v) {
                break;
            }
        }
        Ok(())
    }

    /// The record of `request_id`, if one is stored.
    pub fn invocation(
        &self,
        tenant: Tenant,
        request_id: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let prefix = keys::request_id_prefix(tenant, request_id);
        let cf = self.cf(CF_INVOCATIONS);
        let mut it = self.db.raw_iterator_cf(cf);
        it.seek(&prefix);
        let record_key = match (it.key(), it.value()) {
            (Some(k), Some(v)) if k.starts_with(&prefix) && k.len() == prefix.len() + 8 => {
                v.to_vec()
            }
            _ => return Ok(None),
        };
        it.status()?;
        if keys::invocation_key_time(&record_key).is_some_and(|t| t < self.cutoff_of(tenant)) {
            return Ok(None);
        }
        Ok(self.db.get_cf(cf, record_key)?)
    }

    /// Everything in the spans family, counted the way `trace` shows it: each distinct
    /// (trace, start, span id) once, whatever the retention. Walks the whole family, so
    /// it is for `fctrace check` on a stopped daemon's directory, not for queries.
    pub fn census(&self) -> Result<Census, StoreError> {
        let mut census = Census::default();
        let mut current: Option<Vec<u8>> = None;
        let mut seen: Vec<(u64, crate::model::SpanId)> = Vec::new();
        fn finish(seen: &mut Vec<(u64, crate::model::SpanId)>, census: &mut Census) {
            seen.sort_unstable();
            seen.dedup();
            census.spans += seen.len() as u64;
            census.traces += 1;
            seen.clear();
        }
        let iter = self.db.iterator_cf(self.cf(CF_SPANS), IteratorMode::Start);
        for item in iter {
            let (k, v) = item?;
            let prefix = k.get(..keys::TRACE_PREFIX_LEN).unwrap_or(&k);
            if current.as_deref() != Some(prefix) {
                if current.is_some() {
                    finish(&mut seen, &mut census);
                }
                current = Some(prefix.to_vec());
            }
            census.chunks += 1;
            seen.extend(
                codec::decode_chunk(&k, &v)?
                    .iter()
                    .map(|s| (s.start_time, s.span_id)),
            );
        }
        if current.is_some() {
            finish(&mut seen, &mut census);
        }
        census.family_bytes = self.family_bytes();
        Ok(census)
    }

    /// An integer property of family `name`, 0 when RocksDB has none.
    fn property(&self, name: &str, property: &str) -> u64 {
        self.db
            .property_int_value_cf(self.cf(name), property)
            .ok()
            .flatten()
            .unwrap_or(0)
    }

    /// An integer property summed over every family.
    fn property_sum(&self, property: &str) -> u64 {
        FAMILIES
            .into_iter()
            .map(|name| self.property(name, property))
            .sum()
    }

    /// Compactions running now, and the bytes RocksDB estimates are still to compact.
    pub fn compaction(&self) -> (u64, u64) {
        let running = self
            .db
            .property_int_value("rocksdb.num-running-compactions")
            .ok()
            .flatten()
            .unwrap_or(0);
        (
            running,
            self.property_sum("rocksdb.estimate-pending-compaction-bytes"),
        )
    }

    /// What the store holds in memory, by kind: the block cache (shared by every family:
    /// data, index and filter blocks), table readers outside it, and memtables.
    pub fn memory(&self) -> [(&'static str, u64); 3] {
        [
            (
                "block_cache",
                self.property(CF_SPANS, "rocksdb.block-cache-usage"),
            ),
            (
                "table_readers",
                self.property_sum("rocksdb.estimate-table-readers-mem"),
            ),
            (
                "memtables",
                self.property_sum("rocksdb.cur-size-all-mem-tables"),
            ),
        ]
    }

    /// Bytes of table files per column family (what is flushed; memtables not counted).
    pub fn family_bytes(&self) -> std::collections::BTreeMap<String, u64> {
        FAMILIES
            .into_iter()
            .map(|name| {
                let bytes = self.property(name, "rocksdb.total-sst-files-size");
                (name.to_owned(), bytes)
            })
            .collect()
    }
}

/// What one `Store::scan_index` read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ScanStats {
    /// Posting blocks looked into.
    pub blocks: u64,
}

/// What `Store::census` counted.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Census {
    pub traces: u64,
    pub spans: u64,
    pub chunks: u64,
    /// Table-file bytes per column family.
    pub family_bytes: std::collections::BTreeMap<String, u64>,
}
