//! The term filter: which minutes of start time hold postings of a search term, so a
//! search reads only those minutes' blocks and a search for something no span has is one
//! seek, however large the store (issue 13: "misses are cheap").
//!
//! Each group commit writes, in the same `WriteBatch` as its postings, one key per term
//! and minute it is the first to write since the daemon started (`terms` keys in `keys`):
//! a restart only writes some keys again. A minute with more than
//! [`TERMS_PER_MINUTE`] distinct terms (a tag unique to every span, say) gets one
//! overflow key instead of the rest, and searches read that minute whatever the term: the
//! filter's write cost stays bounded, and a minute it cannot describe is scanned, never
//! skipped. Keys are hour first, so retention drops expired hours by key range
//! (`retention`), as it drops posting seconds.
//!
//! This module owns the writer's memory of what it has written and the lookup; `keys`
//! owns the layout, `read` the scans that use it.

use std::collections::HashMap;

use rocksdb::{ColumnFamily, Direction, IteratorMode, ReadOptions, WriteBatch};

use super::keys::{self, Tenant};
use super::{Store, StoreError, CF_TERMS};

/// Distinct terms a minute lists before it is marked as overflowing. The benchmark's
/// spans (50 services, 20 tags of up to 1,000 values each) make ~290,000 a minute.
pub const TERMS_PER_MINUTE: usize = 1 << 19;
/// (tenant, minute, term) the writer remembers in all (about 16 bytes each); past this it
/// forgets the oldest minutes, which only means writing some of their keys again.
const REMEMBERED: usize = 1 << 20;

#[derive(Default)]
struct Minute {
    terms: Hashes,
    overflow: bool,
}

/// A set of term hashes, placed by their top bits with linear probing. Term hashes are
/// xxh3 already, so they place themselves; and a batch's terms come sorted by hash, so
/// its lookups sweep the table in address order instead of jumping about it (the
/// writer's check of every term of every batch was 3 % of the daemon's CPU as a hash
/// set, mostly waiting on memory). A hash that finds no room within [`PROBES`] slots
/// (hashes made to crowd together) is not remembered: its key is written again each
/// time, which costs what the batch that carries it was charged for.
#[derive(Default)]
struct Hashes {
    /// 0 is an empty slot; hash 0 itself is `zero`.
    slots: Vec<u64>,
    len: usize,
    zero: bool,
}

/// Slots a lookup looks at before giving up. The table is at most half full, where a
/// run this long among xxh3 hashes is too unlikely to be seen (a batch's sorted hashes
/// are spread by `reserve`); crowded hashes cost a scan of 2 KiB each.
const PROBES: usize = 256;

impl Hashes {
    fn len(&self) -> usize {
        self.len + usize::from(self.zero)
    }

    /// Make room for `more` hashes before adding them. A run of sorted hashes added to a
    /// table sized for fewer would crowd its low slots (their places are in order), so
    /// the table takes its final size first.
    fn reserve(&mut self, more: usize) {
        while (self.len + more.min(TERMS_PER_MINUTE)) * 2 > self.slots.len() {
            self.grow();
        }
    }

    /// Read the home slots of `hashes` ahead of adding them: the loads are independent,
    /// so the memory system serves many at once, where the adds' own loads each wait on
    /// a compare and a branch (most of this set's cost is waiting on memory).
    fn warm(&self, hashes: impl Iterator<Item = u64>) {
        let n = self.slots.len();
        if n == 0 {
            return;
        }
        let shift = 64 - n.trailing_zeros();
        let sum = hashes.fold(0u64, |acc, h| acc ^ self.slots[(h >> shift) as usize]);
        std::hint::black_box(sum);
    }

    /// Add `h`; true when it was not there (or could not be remembered).
    fn insert(&mut self, h: u64) -> bool {
        if h == 0 {
            return !std::mem::replace(&mut self.zero, true);
        }
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        match self.place(h) {
            Some(i) if self.slots[i] == h => false,
            Some(i) => {
                self.slots[i] = h;
                self.len += 1;
                true
            }
            None => true,
        }
    }

    /// The slot holding `h`, or the empty one it would go in.
    fn place(&self, h: u64) -> Option<usize> {
        let n = self.slots.len();
        let start = (h >> (64 - n.trailing_zeros())) as usize;
        (0..PROBES.min(n))
            .map(|d| (start + d) & (n - 1))
            .find(|&i| self.slots[i] == h || self.slots[i] == 0)
    }

    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(1024);
        let old = std::mem::replace(&mut self.slots, vec![0; size]);
        self.len = 0;
        for h in old.into_iter().filter(|&h| h != 0) {
            if let Some(i) = self.place(h) {
                self.slots[i] = h;
                self.len += 1;
            }
        }
    }
}

/// What the writer has put in the filter since it started.
#[derive(Default)]
pub(super) struct Written {
    minutes: HashMap<(Tenant, u64), Minute>,
    remembered: usize,
}

impl Written {
    /// Add the keys `terms` (sorted (minute, hash) of one batch) still need to `wb`.
    /// Call [`Written::forget`] if the write then fails: what it remembers must be on disk.
    pub fn record(
        &mut self,
        wb: &mut WriteBatch,
        cf: &ColumnFamily,
        tenant: Tenant,
        terms: &[(u64, u64)],
    ) {
        for run in terms.chunk_by(|a, b| a.0 == b.0) {
            let minute = run[0].0;
            let m = self.minutes.entry((tenant, minute)).or_default();
            if m.overflow {
                continue;
            }
            m.terms.reserve(run.len());
            m.terms.warm(run.iter().map(|t| t.1));
            for &(_, hash) in run {
                if m.terms.len() >= TERMS_PER_MINUTE {
                    m.overflow = true;
                    wb.put_cf(cf, keys::overflow_key(tenant, minute), []);
                    break;
                }
                let before = m.terms.len();
                if m.terms.insert(hash) {
                    wb.put_cf(cf, keys::term_key(tenant, hash, minute), []);
                }
                // `reserve` made room for the run, so no insert regrows (and drops a
                // crowded hash) here; saturating all the same
                self.remembered += m.terms.len().saturating_sub(before);
            }
        }
        if self.remembered > REMEMBERED {
            self.shrink();
        }
    }

    /// Forget everything: the next writes repeat their keys.
    pub fn forget(&mut self) {
        *self = Written::default();
    }

    /// Forget the oldest minutes until a quarter of the room is free.
    fn shrink(&mut self) {
        let mut by_age: Vec<(u64, Tenant, usize)> = self
            .minutes
            .iter()
            .map(|(&(t, m), v)| (m, t, v.terms.len()))
            .collect();
        by_age.sort_unstable();
        for (minute, tenant, n) in by_age {
            if self.remembered <= REMEMBERED * 3 / 4 {
                break;
            }
            self.minutes.remove(&(tenant, minute));
            self.remembered -= n;
        }
    }
}

impl Store {
    /// The minutes in `[oldest, newest]` (minute numbers) that may hold postings of the
    /// term hashed `hash`, newest first; `None` when the filter cannot say (a store from
    /// before the filter whose older spans are still within retention).
    pub(super) fn term_minutes(
        &self,
        tenant: Tenant,
        hash: u64,
        oldest: u64,
        newest: u64,
    ) -> Result<Option<Vec<u64>>, StoreError> {
        if self.terms_from > super::retention::cutoff_us(self.retention_us) {
            return Ok(None);
        }
        let cf = self.cf(CF_TERMS);
        let mut out = Vec::new();
        // Hour by hour, newest first, only hours that hold any term: `hours` finds the
        // next one, and the term's minutes in it are one prefix (the family's prefix
        // bloom filter answers an hour no file holds it in without reading a block).
        let (oldest_hour, mut hour) = (
            oldest / keys::TERM_HOUR_MINUTES,
            newest / keys::TERM_HOUR_MINUTES,
        );
        let mut ro = ReadOptions::default();
        ro.set_total_order_seek(true);
        let mut hours = self.db.raw_iterator_cf_opt(cf, ro);
        while hour >= oldest_hour {
            hours.seek(&keys::term_prefix(tenant, hour, 0)[..keys::TERM_HOUR_PREFIX_LEN]);
            let Some(found) = hours.key().and_then(|k| keys::term_key_hour(tenant, k)) else {
                break;
            };
            if found < oldest_hour {
                break;
            }
            let mut ro = ReadOptions::default();
            ro.set_prefix_same_as_start(true);
            let last_minute = (found + 1) * keys::TERM_HOUR_MINUTES - 1;
            let seek = keys::term_key(tenant, hash, newest.min(last_minute));
            self.minutes_from(cf, ro, &seek, keys::TERM_PREFIX_LEN, oldest, &mut out)?;
            match found.checked_sub(1) {
                Some(h) => hour = h,
                None => break,
            }
        }
        hours.status()?;
        let mut ro = ReadOptions::default();
        ro.set_total_order_seek(true);
        let overflow = keys::overflow_key(tenant, newest);
        self.minutes_from(cf, ro, &overflow, 3, oldest, &mut out)?;
        out.sort_unstable_by(|a, b| b.cmp(a));
        out.dedup();
        Ok(Some(out))
    }

    /// Minutes of the keys from `seek` on that share its first `prefix_len` bytes, down
    /// to `oldest`.
    fn minutes_from(
        &self,
        cf: &ColumnFamily,
        ro: ReadOptions,
        seek: &[u8],
        prefix_len: usize,
        oldest: u64,
        out: &mut Vec<u64>,
    ) -> Result<(), StoreError> {
        let prefix = &seek[..prefix_len];
        for item in self
            .db
            .iterator_cf_opt(cf, ro, IteratorMode::From(seek, Direction::Forward))
        {
            let (k, _) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            match keys::terms_key_minute(&k) {
                Some(m) if m >= oldest => out.push(m),
                _ => break,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::{encode, StoreOptions};
    use super::*;
    use crate::model::{KeyValue, Process, Span, SpanId, TraceId, Value};
    use keys::IndexPrefix;

    fn span(trace: u128, start: u64, tag: &str) -> Span {
        Span {
            trace_id: TraceId(trace),
            span_id: SpanId(1),
            operation_name: "op".into(),
            references: vec![],
            flags: 1,
            start_time: start,
            duration: 5,
            tags: vec![KeyValue::new("k", Value::Str(tag.into()))],
            logs: vec![],
            process: Arc::new(Process {
                service_name: "svc".into(),
                tags: vec![],
            }),
        }
    }

    fn open(dir: &std::path::Path) -> Store {
        let opts = StoreOptions {
            sync_writes: false,
            ..StoreOptions::default()
        };
        Store::open(dir, &opts).unwrap()
    }

    /// (traces found, blocks read) scanning `tag` over all time
    fn scan(store: &Store, tag: &str) -> (Vec<u128>, u64) {
        let mut found = Vec::new();
        let stats = store
            .scan_index(
                &IndexPrefix::tag(0, "svc", "k", tag),
                None,
                0,
                u64::MAX,
                |_, t| {
                    found.push(t.0);
                    true
                },
            )
            .unwrap();
        (found, stats.blocks)
    }

    const MINUTE: u64 = keys::TERM_MINUTE_US;

    /// Trace 1 alone in a minute ten minutes ago; 2,000 traces with distinct tag values
    /// over the seconds of a later minute, so every shard has blocks there.
    fn two_minutes(store: &Store) {
        let now = crate::clock::now_us();
        let early = (now / MINUTE - 10) * MINUTE + 5;
        let late = (now / MINUTE - 2) * MINUTE;
        let mut spans = vec![span(1, early, "rare")];
        spans.extend((0..2000u64).map(|i| {
            span(
                100 + i as u128,
                late + (i % 60) * keys::POSTING_BUCKET_US,
                &format!("x{i}"),
            )
        }));
        store.commit(&[&encode(0, &spans)]).unwrap();
    }

    #[test]
    fn a_search_reads_only_the_minutes_its_term_is_in() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        two_minutes(&store);
        assert_eq!(
            scan(&store, "rare"),
            (vec![1], 1),
            "one block, in its own minute"
        );
        assert_eq!(scan(&store, "absent"), (vec![], 0), "a miss reads no block");
        let (found, blocks) = scan(&store, "x7");
        assert_eq!(found, vec![107]);
        assert!((1..=60).contains(&blocks), "{blocks}");
    }

    #[test]
    fn a_store_from_before_the_filter_is_scanned_whole_until_retention_passes() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(dir.path());
            two_minutes(&store);
            // what format 4 left: the same postings, no filter, version 4
            let cf = store.cf(CF_TERMS);
            store
                .db
                .delete_range_cf(cf, [0u8].as_slice(), [0xffu8; 32].as_slice())
                .unwrap();
            let meta = store.cf(super::super::CF_META);
            store
                .db
                .put_cf(meta, keys::format_version_key(), 4u32.to_be_bytes())
                .unwrap();
            store.db.delete_cf(meta, keys::terms_from_key()).unwrap();
        }
        let store = open(dir.path());
        let (found, blocks) = scan(&store, "rare");
        assert_eq!(found, vec![1]);
        assert!(blocks > 1, "every minute is read: {blocks}");
        assert_eq!(scan(&store, "x7").0, vec![107]);
        // and the filter stays off across restarts until then
        drop(store);
        assert!(scan(&open(dir.path()), "rare").1 > 1);
    }

    #[test]
    fn every_term_of_an_overflowing_minute_is_still_found() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let now = crate::clock::now_us();
        let at = (now / MINUTE - 3) * MINUTE;
        let n = TERMS_PER_MINUTE as u64 + 5_000;
        let spans: Vec<Span> = (0..n)
            .map(|i| {
                span(
                    1 + i as u128,
                    at + (i % 60) * keys::POSTING_BUCKET_US,
                    &format!("v{i}"),
                )
            })
            .collect();
        store.commit(&[&encode(0, &spans)]).unwrap();
        for i in (0..n).step_by(997) {
            assert_eq!(
                scan(&store, &format!("v{i}")).0,
                vec![1 + i as u128],
                "v{i}"
            );
        }
        let (found, blocks) = scan(&store, "absent");
        assert!(found.is_empty());
        assert!(blocks > 0, "an overflowing minute is read for any term");
    }

    /// Distinct hashes spread over the range, as xxh3's are (an odd multiplier is a
    /// bijection).
    fn spread(i: u64) -> u64 {
        i.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    #[test]
    fn hashes_are_a_set_and_crowded_ones_cost_a_bounded_search() {
        let mut h = Hashes::default();
        for i in 1..=100_000 {
            assert!(h.insert(spread(i)), "{i} is new");
        }
        assert!(
            (1..=100_000).all(|i| !h.insert(spread(i))),
            "all remembered"
        );
        assert_eq!(h.len(), 100_000);
        assert!(h.insert(0) && !h.insert(0) && h.len() == 100_001);
        // hashes sharing their top 40 bits all want one slot: past PROBES of them none
        // is remembered (each says new, so its key is written again), and the table
        // holds no more than that
        let mut h = Hashes::default();
        let crowd = |i: u64| (7 << 40) | (i + 1);
        for i in 0..10_000 {
            assert!(h.insert(crowd(i)));
        }
        assert_eq!(h.len(), PROBES);
        assert!((0..PROBES as u64).all(|i| !h.insert(crowd(i))));
        assert!(h.insert(crowd(PROBES as u64)));
    }

    #[test]
    fn each_term_and_minute_is_written_once_until_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let cf = store.cf(CF_TERMS);
        let mut w = Written::default();
        let mut wb = WriteBatch::default();
        w.record(&mut wb, cf, 0, &[(1, 10), (1, 11), (2, 10)]);
        assert_eq!(wb.len(), 3);
        let mut wb = WriteBatch::default();
        w.record(&mut wb, cf, 0, &[(1, 10), (2, 10), (2, 12)]);
        w.record(&mut wb, cf, 3, &[(1, 10)]);
        // only (2, 12) in tenant 0 is new, and tenant 3 has its own filter
        assert_eq!(wb.len(), 2);
        w.forget();
        let mut wb = WriteBatch::default();
        w.record(&mut wb, cf, 0, &[(1, 10)]);
        assert_eq!(wb.len(), 1);
    }

    #[test]
    fn a_minute_past_its_share_writes_one_overflow_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let cf = store.cf(CF_TERMS);
        let mut w = Written::default();
        let mut wb = WriteBatch::default();
        let terms: Vec<(u64, u64)> = (0..TERMS_PER_MINUTE as u64 + 10)
            .map(|h| (5, spread(h)))
            .collect();
        w.record(&mut wb, cf, 0, &terms);
        assert_eq!(wb.len(), TERMS_PER_MINUTE + 1);
        let mut wb = WriteBatch::default();
        w.record(&mut wb, cf, 0, &[(5, u64::MAX)]);
        assert_eq!(wb.len(), 0, "an overflowing minute takes no more keys");
    }

    #[test]
    fn forgetting_the_oldest_minutes_keeps_memory_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let cf = store.cf(CF_TERMS);
        let mut w = Written::default();
        for minute in 0..(REMEMBERED as u64 / 1000 + 10) {
            let terms: Vec<(u64, u64)> = (0..1000).map(|h| (minute, spread(h))).collect();
            w.record(&mut WriteBatch::default(), cf, 0, &terms);
            assert!(w.remembered <= REMEMBERED);
        }
        assert!(
            !w.minutes.contains_key(&(0, 0)),
            "the oldest minute went first"
        );
    }
}
