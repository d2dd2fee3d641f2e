//! Posting blocks: the search index as a few large values instead of one key per entry.
//!
//! A search term (service, service+operation, or service+tag=value; see
//! [`IndexPrefix`]) hashes to one of [`keys::POSTING_SHARDS`] shards. Each group commit
//! writes, per one-second bucket of span start time, one trace table and one block per
//! shard it touched (keys in `keys`). A block is the concatenation of the sub-blocks of
//! the batches in that group; a sub-block holds its entries sorted by hash, in columns,
//! so a lookup is a binary search over the hash column (storage format 8):
//!
//! ```text
//! sub-block: base varint | n_timed varint | n_plain varint | spreads_len varint
//!            | timed hashes n_timed x u32 | timed traces n_timed x u16
//!            | timed min durations n_timed x u32
//!            | plain hashes n_plain x u32 | plain traces n_plain x u16
//!            | spreads: n_timed varints (max duration - min duration), spreads_len bytes
//! table:     n x (trace id 16 bytes big-endian, earliest start µs u64 little-endian)
//! ```
//!
//! (integers little-endian, varints LEB128). Columns and varints replaced format 7's
//! fixed 12-byte headers and 14-byte timed entries (`lookup` still reads those): a group
//! writes one sub-block per batch and shard, most of a few entries, and most timed
//! entries are one span's, whose spread is 0 (BENCHMARKS.md: 45.3 → 41.8 B a span).
//!
//! `trace` is an index into the group's table for that bucket; `base` (written by
//! [`merge`]) is where the batch's own table starts in it. A batch with more than 65,536
//! traces in one second gets a second table (and sub-blocks) for that second. Service and operation entries
//! are "timed": they carry the smallest and largest duration (µs, saturating) of the
//! trace's matching spans, so a duration search prunes without loading spans. Tag entries
//! are "plain". A trace's time is the earliest start of its spans in the bucket, never
//! later than the matching span's own start.
//!
//! Entries are per (term, trace) within a batch and bucket; hashes can collide, which only
//! adds candidates, since every search checks the loaded spans exactly. This module owns
//! the value layout and writes it; `lookup` reads it, `keys` owns the keys and `Store`
//! the reads and writes.

use foldhash::{HashMap, HashMapExt};

use super::keys::{self, IndexPrefix, Tenant};
use crate::model::TraceId;

use crate::varint;

pub use super::lookup::{lookup, table_entry, Hit, Layout, Malformed, TABLE_ENTRY_LEN};

/// Bytes a sub-block's entries take at most: a timed entry's columns and spread, a
/// plain entry's columns, a header.
const TIMED_LEN: usize = 4 + 2 + 4 + 5;
const PLAIN_LEN: usize = 4 + 2;
const SUB_HEADER: usize = 4 * 5;
/// Traces one table holds, so a sub-block's trace index fits in two bytes.
const TABLE_CAPACITY: usize = 1 << 16;

/// One key's worth of a batch's postings: a trace table or a shard's sub-block, as a
/// byte range of the batch buffer.
#[derive(Debug, Clone)]
pub struct Part {
    pub bucket: u64,
    pub shard: u16,
    pub range: (usize, usize),
    /// Traces in the table (for tables only).
    pub traces: u32,
}

/// Collects a batch's postings while the encoder walks its spans.
///
/// Finding a span's slot is two hash lookups, whatever the number of seconds the batch
/// spans, and entries go into three flat vectors sorted once at the end: a body of spans
/// spread over many seconds costs about what one second does, with no small allocation
/// per second.
#[derive(Default)]
pub struct Builder {
    /// (second, traces in its table) per table, in the order tables were opened
    tables: Vec<(u64, u32)>,
    /// (table, trace, earliest start), in slot order within each table
    traces: Vec<(u32, TraceId, u64)>,
    /// (entry key, duration): see [`entry_key`]
    timed: Vec<(u128, u32)>,
    /// entry keys, see [`entry_key`]
    plain: Vec<u128>,
    /// (second, trace) → its slot and where its entry is in `traces`
    slots: HashMap<(u64, TraceId), (Slot, usize)>,
    /// second → the table of that second that still has room
    open: HashMap<u64, u32>,
}

/// Where one span's entries go: its table and its trace's slot there.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Slot {
    table: u32,
    trace: u16,
}

impl Builder {
    /// A builder for `spans` spans carrying `tags` tags in all (decoded ones, already
    /// paid for): room for one trace and two timed entries a span and a plain entry a
    /// tag, so a batch whose spans each start in their own second does not grow its
    /// vectors by doubling (the kernel zeroes every fresh page, and a doubling copies
    /// everything into new ones: growing the plain entries was 0.5 % of the daemon's
    /// CPU under the bench). Tags repeated down a trace make fewer entries; process tags
    /// and log fields may still grow it.
    pub fn for_spans(spans: usize, tags: usize) -> Self {
        Builder {
            tables: Vec::new(),
            traces: Vec::with_capacity(spans),
            timed: Vec::with_capacity(spans * 2),
            plain: Vec::with_capacity(tags),
            slots: HashMap::with_capacity(spans),
            open: HashMap::new(),
        }
    }

    /// The slot for a span of `trace` starting at `start`.
    pub fn slot(&mut self, trace: TraceId, start: u64) -> Slot {
        let b = start / keys::POSTING_BUCKET_US;
        if let Some(&(slot, at)) = self.slots.get(&(b, trace)) {
            if let Some(t) = self.traces.get_mut(at) {
                t.2 = t.2.min(start);
            }
            return slot;
        }
        let table = match self.open.get(&b) {
            Some(&i) if (self.tables[i as usize].1 as usize) < TABLE_CAPACITY => i,
            _ => {
                // at most one table per span, and a batch's spans are capped far below
                // u32::MAX
                let i = self.tables.len() as u32;
                self.tables.push((b, 0));
                self.open.insert(b, i);
                i
            }
        };
        let count = &mut self.tables[table as usize].1;
        // below TABLE_CAPACITY, so it fits
        let slot = Slot {
            table,
            trace: *count as u16,
        };
        *count += 1;
        self.slots.insert((b, trace), (slot, self.traces.len()));
        self.traces.push((table, trace, start));
        slot
    }

    /// A service or operation entry, with the span's duration.
    pub fn timed(&mut self, slot: Slot, term: &IndexPrefix, duration: u64) {
        let d = duration.min(u32::MAX as u64) as u32;
        self.timed
            .push((entry_key(slot.table, term.term_hash(), slot.trace), d));
    }

    /// A tag entry.
    pub fn plain(&mut self, slot: Slot, term: &IndexPrefix) {
        self.plain_hash(slot, term.term_hash());
    }

    /// A tag entry by its term's hash (`IndexPrefix::term_hash`), for terms hashed once
    /// and used for many spans.
    pub fn plain_hash(&mut self, slot: Slot, hash: u64) {
        self.plain.push(entry_key(slot.table, hash, slot.trace));
    }

    /// Write every table and sub-block into `out`, returning where each one is, and the
    /// distinct (minute, term hash) pairs of the batch, sorted (for `terms`).
    pub fn finish(mut self, out: &mut Vec<u8>) -> (Vec<Part>, Vec<(u64, u64)>) {
        // stable: slot order within a table is push order
        self.traces.sort_by_key(|t| t.0);
        // Entries sort as single integers: tuple comparisons were most of this
        // function's time (`scripts/profile.sh`).
        sort_bucketed(&mut self.timed, ENTRY_HASH_TOP, |e| e.0);
        sort_bucketed(&mut self.plain, ENTRY_HASH_TOP, |&k| k);
        self.plain.dedup();
        // (table, hash, trace, min, max), one per (table, hash, trace)
        let mut timed: Vec<(u32, u64, u16, u32, u32)> = Vec::with_capacity(self.timed.len());
        for &(k, d) in &self.timed {
            let (tb, h, tr) = split_key(k);
            match timed.last_mut() {
                Some(last) if (last.0, last.1, last.2) == (tb, h, tr) => {
                    last.3 = last.3.min(d);
                    last.4 = last.4.max(d);
                }
                _ => timed.push((tb, h, tr, d, d)),
            }
        }
        let mut parts = Vec::with_capacity(self.tables.len() * 4);
        // what the loop below writes, so `out` grows once
        out.reserve(
            self.traces.len() * TABLE_ENTRY_LEN
                + timed.len() * (TIMED_LEN + SUB_HEADER)
                + self.plain.len() * PLAIN_LEN,
        );
        let (mut tr_at, mut ti, mut pi) = (0, 0, 0);
        let mut spreads = Vec::new();
        for (table, &(bucket, n)) in self.tables.iter().enumerate() {
            let table = table as u32;
            let start = out.len();
            let tr_end = tr_at + self.traces[tr_at..].partition_point(|t| t.0 == table);
            for (_, trace, t) in &self.traces[tr_at..tr_end] {
                out.extend_from_slice(&trace.to_bytes());
                out.extend_from_slice(&t.to_le_bytes());
            }
            tr_at = tr_end;
            parts.push(Part {
                bucket,
                shard: keys::TABLE_SHARD,
                range: (start, out.len()),
                traces: n,
            });
            let t_all = ti + timed[ti..].partition_point(|e| e.0 == table);
            let p_all = pi + self.plain[pi..].partition_point(|&e| split_key(e).0 == table);
            while ti < t_all || pi < p_all {
                let shard = match (timed[ti..t_all].first(), self.plain[pi..p_all].first()) {
                    (Some(t), Some(&p)) => keys::shard_of(t.1.min(split_key(p).1)),
                    (Some(t), None) => keys::shard_of(t.1),
                    (None, Some(&p)) => keys::shard_of(split_key(p).1),
                    (None, None) => break,
                };
                let t_end = ti + timed[ti..t_all].partition_point(|e| keys::shard_of(e.1) == shard);
                let p_end = pi
                    + self.plain[pi..p_all]
                        .partition_point(|&e| keys::shard_of(split_key(e).1) == shard);
                let start = out.len();
                let (timed, plain) = (&timed[ti..t_end], &self.plain[pi..p_end]);
                spreads.clear();
                for &(_, _, _, lo, hi) in timed {
                    varint::push(u64::from(hi - lo), &mut spreads);
                }
                // the base is `merge`'s to write, in front
                varint::push(timed.len() as u64, out);
                varint::push(plain.len() as u64, out);
                varint::push(spreads.len() as u64, out);
                for &(_, h, ..) in timed {
                    out.extend_from_slice(&keys::hash_bits(h).to_le_bytes());
                }
                for &(_, _, tr, ..) in timed {
                    out.extend_from_slice(&tr.to_le_bytes());
                }
                for &(.., lo, _) in timed {
                    out.extend_from_slice(&lo.to_le_bytes());
                }
                for &e in plain {
                    out.extend_from_slice(&keys::hash_bits(split_key(e).1).to_le_bytes());
                }
                for &e in plain {
                    out.extend_from_slice(&split_key(e).2.to_le_bytes());
                }
                out.extend_from_slice(&spreads);
                parts.push(Part {
                    bucket,
                    shard,
                    range: (start, out.len()),
                    traces: 0,
                });
                ti = t_end;
                pi = p_end;
            }
        }
        // Both lists are sorted by (table, hash): dropping repeats as they come leaves
        // about one entry per distinct term and table, so the sort is of few.
        let minute = |table: u32| keys::minute_of_bucket(self.tables[table as usize].0);
        let mut terms: Vec<(u64, u64)> = Vec::new();
        let mut last = None;
        for (table, hash) in timed.iter().map(|e| (e.0, e.1)) {
            if last != Some((table, hash)) {
                terms.push((minute(table), hash));
                last = Some((table, hash));
            }
        }
        last = None;
        for (table, hash, _) in self.plain.iter().map(|&e| split_key(e)) {
            if last != Some((table, hash)) {
                terms.push((minute(table), hash));
                last = Some((table, hash));
            }
        }
        // (minute, hash): bucketed by minute and the hash's top byte
        sort_bucketed(&mut terms, TERM_HASH_TOP, term_key);
        terms.dedup();
        (parts, terms)
    }
}

/// One entry as a single integer that sorts as (table, term hash, trace slot).
fn entry_key(table: u32, hash: u64, trace: u16) -> u128 {
    (table as u128) << 80 | (hash as u128) << 16 | trace as u128
}

/// Sort `v` by `key`, as `sort_unstable_by_key` would, with most of its comparisons
/// saved: first into buckets by the key's bits above `shift + BUCKET_BITS` (a table, a
/// minute: few distinct values in a batch) and the [`BUCKET_BITS`] at `shift` (a hash's
/// top bits), a prefix of the key's order, then each bucket (a few keys) on its own. The
/// builder's sorts of a batch's entries (~12,000 keys of 128 bits in the bench's
/// batches) and terms were ~8 % of the daemon's CPU. Keys spread over many tables or
/// minutes sort the plain way.
fn sort_bucketed<T: Copy>(v: &mut Vec<T>, shift: u32, key: impl Fn(&T) -> u128) {
    const MAX_MAJORS: u128 = 4;
    let major = |k: u128| k >> (shift + BUCKET_BITS);
    if v.len() < 512 {
        v.sort_unstable_by_key(key);
        return;
    }
    let (lo, hi) = v.iter().fold((u128::MAX, 0), |(lo, hi), e| {
        let m = major(key(e));
        (lo.min(m), hi.max(m))
    });
    if hi - lo >= MAX_MAJORS {
        v.sort_unstable_by_key(key);
        return;
    }
    let low = (1usize << BUCKET_BITS) - 1;
    let bucket = |k: u128| ((major(k) - lo) as usize) << BUCKET_BITS | (k >> shift) as usize & low;
    let mut starts = vec![0usize; (((hi - lo) as usize + 1) << BUCKET_BITS) + 1];
    for e in v.iter() {
        starts[bucket(key(e)) + 1] += 1;
    }
    for b in 1..starts.len() {
        starts[b] += starts[b - 1];
    }
    let mut at = starts.clone();
    let mut out = v.clone();
    for e in v.iter() {
        let b = bucket(key(e));
        out[at[b]] = *e;
        at[b] += 1;
    }
    for w in starts.windows(2) {
        if w[1] - w[0] > 1 {
            out[w[0]..w[1]].sort_unstable_by_key(&key);
        }
    }
    *v = out;
}

/// Bits of a key's hash [`sort_bucketed`] buckets by: 4,096 buckets of a few entries
/// each for a batch's ~12,000 (8 bits left ~50 a bucket, and their sorts were 5 % of the
/// daemon's samples).
const BUCKET_BITS: u32 = 12;

/// Bits below an [`entry_key`]'s hash's top [`BUCKET_BITS`].
const ENTRY_HASH_TOP: u32 = 80 - BUCKET_BITS;

/// A batch's (minute, term hash) as one integer that sorts the same way.
fn term_key(&(minute, hash): &(u64, u64)) -> u128 {
    u128::from(minute) << 64 | u128::from(hash)
}

/// Bits below a [`term_key`]'s hash's top [`BUCKET_BITS`].
const TERM_HASH_TOP: u32 = 64 - BUCKET_BITS;

/// (table, term hash, trace slot) of an [`entry_key`].
fn split_key(k: u128) -> (u32, u64, u16) {
    ((k >> 80) as u32, (k >> 16) as u64, k as u16)
}

/// A part on its way into a merged value: (tenant, shard, bucket), its bytes, and for a
/// sub-block the base of its table.
type MergeItem<'a> = ((Tenant, u16, u64), &'a [u8], Option<u32>);

/// Join the postings of a group's batches into one value per (bucket, shard), putting
/// each sub-block's base in front of it: where its batch's table starts in the group's table. Tables
/// come before sub-blocks within each batch's parts. Each key and value goes to `put` in
/// key order, built in one reused buffer: a body spread over many seconds makes about a
/// million of them, and one allocation each was a good part of its cost.
pub fn merge<'a>(
    batches: impl Iterator<Item = (Tenant, &'a [u8], &'a [Part])>,
    seq: u64,
    mut put: impl FnMut(&[u8], &[u8]),
) {
    // Each part with its key fields and, for a sub-block, the base of its table (a
    // sub-block always follows the table it indexes), in batch order.
    let batches: Vec<_> = batches.collect();
    let mut items: Vec<MergeItem<'a>> = Vec::with_capacity(batches.iter().map(|b| b.2.len()).sum());
    let mut table_len: HashMap<(Tenant, u64), u32> = HashMap::new();
    for (tenant, buf, parts) in batches {
        let mut base = 0u32;
        for p in parts {
            let Some(bytes) = buf.get(p.range.0..p.range.1) else {
                continue;
            };
            if p.shard == keys::TABLE_SHARD {
                let len = table_len.entry((tenant, p.bucket)).or_default();
                base = *len;
                *len += p.traces;
                items.push(((tenant, p.shard, p.bucket), bytes, None));
            } else {
                items.push(((tenant, p.shard, p.bucket), bytes, Some(base)));
            }
        }
    }
    // Key order (tenant, newest bucket first, shard), stable so batches stay in order
    // within a value: RocksDB's memtable inserts a sorted run with one search each, a
    // shuffled one with a full skip-list search per key (40 % of the writer's time for
    // a batch spread over many seconds), and integers sort faster than key bytes.
    items.sort_by_key(|(k, _, _)| (k.0, std::cmp::Reverse(k.2), k.1));
    let mut v = Vec::new();
    for group in items.chunk_by(|a, b| a.0 == b.0) {
        let (tenant, shard, bucket) = group[0].0;
        v.clear();
        for (_, bytes, base) in group {
            if let Some(b) = base {
                varint::push(u64::from(*b), &mut v);
            }
            v.extend_from_slice(bytes);
        }
        put(&keys::posting_key(tenant, shard, bucket, seq), &v);
    }
}

/// The merged postings of `batches` as owned keys and values (tests and tools).
#[cfg(test)]
fn merged<'a>(
    batches: impl Iterator<Item = (Tenant, &'a [u8], &'a [Part])>,
    seq: u64,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    merge(batches, seq, |k, v| out.push((k.to_vec(), v.to_vec())));
    out
}

#[cfg(test)]
#[path = "postings_tests.rs"]
mod tests;
