//! Metric aggregates by metric key, in memory: what the journal holds pending
//! (`journal::Pending`) until a fold writes it to `metrics`.
//!
//! Every group commit adds its batches' aggregates here, and a batch of spans carries
//! one per operation it touches (RED metrics): under the OTLP bench that is one add per
//! span, each a lookup in a table of tens of thousands of keys whose cost was waiting on
//! memory (the table's slot, the key's bytes, the aggregate: 5 % of the daemon's CPU).
//! So the table is open addressing over one array of words, the keys sit end to end in
//! one buffer, and [`Aggregates::add_frames`] reads every place a group's adds will
//! touch in passes of independent loads before it adds, which the memory system serves
//! many at once. This module owns that layout; the aggregate is `monitor::minute`'s, the
//! journal's bytes `journal`'s.

use std::hash::BuildHasher;

use crate::monitor::minute::Minute;

/// Aggregates by metric key.
#[derive(Default)]
pub(crate) struct Aggregates {
    /// Open addressing, placed by the top bits of the key's hash (seeded per process:
    /// keys come from clients): each word the hash's low 32 bits above the slot + 1; 0
    /// is empty. At most half full.
    table: Vec<u64>,
    /// Every key, end to end.
    keys: Vec<u8>,
    /// Per slot: its key's hash and where its key is in `keys`.
    meta: Vec<(u64, usize, usize)>,
    slots: Vec<Minute>,
    hasher: foldhash::quality::RandomState,
}

impl Aggregates {
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    fn home(&self, hash: u64) -> usize {
        // the table's length is a power of two, at least 2
        (hash >> (64 - self.table.len().trailing_zeros())) as usize
    }

    fn key(&self, slot: usize) -> &[u8] {
        let (_, start, end) = self.meta[slot];
        &self.keys[start..end]
    }

    /// The slot of `key` (hashed `hash`), or the empty place it would go in.
    fn find(&self, key: &[u8], hash: u64) -> Result<usize, usize> {
        let mask = self.table.len() - 1;
        let mut at = self.home(hash);
        loop {
            let w = self.table[at];
            if w == 0 {
                return Err(at);
            }
            let slot = (w & u64::from(u32::MAX)) as usize - 1;
            if w >> 32 == hash & u64::from(u32::MAX) && self.key(slot) == key {
                return Ok(slot);
            }
            at = (at + 1) & mask;
        }
    }

    fn get(&self, key: &[u8]) -> Option<&Minute> {
        if self.table.is_empty() {
            return None;
        }
        self.find(key, self.hash(key)).ok().map(|i| &self.slots[i])
    }

    /// Add the encoded aggregate `value` under `key`; false (and nothing changed) when
    /// it is not one.
    pub(crate) fn add(&mut self, key: &[u8], value: &[u8]) -> bool {
        let hash = self.hash(key);
        self.add_hashed(key, hash, value)
    }

    fn add_hashed(&mut self, key: &[u8], hash: u64, value: &[u8]) -> bool {
        if (self.slots.len() + 1) * 2 > self.table.len() {
            self.grow();
        }
        let at = match self.find(key, hash) {
            Ok(slot) => return self.slots[slot].merge_encoded(value),
            Err(at) => at,
        };
        let Some(m) = Minute::decode(value) else {
            return false;
        };
        let slot = self.slots.len();
        self.table[at] = (hash & u64::from(u32::MAX)) << 32 | (slot as u64 + 1);
        let start = self.keys.len();
        self.keys.extend_from_slice(key);
        self.meta.push((hash, start, self.keys.len()));
        self.slots.push(m);
        true
    }

    fn grow(&mut self) {
        let size = (self.table.len() * 2).max(64);
        self.table = vec![0; size];
        let mask = size - 1;
        for (slot, &(hash, _, _)) in self.meta.iter().enumerate() {
            let mut at = self.home(hash);
            while self.table[at] != 0 {
                at = (at + 1) & mask;
            }
            self.table[at] = (hash & u64::from(u32::MAX)) << 32 | (slot as u64 + 1);
        }
    }

    /// Add every (key, value) of `frames`, as [`Aggregates::add`] does each; returns how
    /// many were not aggregates. The table words of all are read first, then the keys
    /// and aggregates those lead to, then the adds find them in cache.
    pub(crate) fn add_frames<'a>(
        &mut self,
        frames: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    ) -> usize {
        let frames: Vec<(&[u8], &[u8], u64)> = frames.map(|(k, v)| (k, v, self.hash(k))).collect();
        if !self.table.is_empty() {
            let words: Vec<u64> = frames.iter().map(|f| self.table[self.home(f.2)]).collect();
            let touched = words
                .iter()
                .filter(|&&w| w != 0)
                .map(|&w| (w & u64::from(u32::MAX)) as usize - 1)
                .fold(0u64, |acc, slot| {
                    let (start, m) = (self.meta[slot].1, &self.slots[slot]);
                    // the histogram is on the heap past two buckets
                    let latency = m.latency.first().map_or(0, |e| e.1);
                    acc ^ m.invocations
                        ^ latency
                        ^ u64::from(self.keys.get(start).copied().unwrap_or(0))
                });
            std::hint::black_box(touched);
        }
        frames
            .into_iter()
            .filter(|&(k, v, hash)| !self.add_hashed(k, hash, v))
            .count()
    }

    /// Every aggregate with its key, in key order (a fold writes them in that order).
    pub(crate) fn sorted(&self) -> Vec<(&[u8], &Minute)> {
        let mut v: Vec<(&[u8], &Minute)> = (0..self.slots.len())
            .map(|i| (self.key(i), &self.slots[i]))
            .collect();
        v.sort_unstable_by(|a, b| a.0.cmp(b.0));
        v
    }

    /// Every aggregate with its key, in no order.
    fn iter(&self) -> impl Iterator<Item = (&[u8], &Minute)> {
        (0..self.slots.len()).map(|i| (self.key(i), &self.slots[i]))
    }

    /// Those of `series` at minutes `first..=last`, added to `out` (by minute): looked
    /// up minute by minute or found among all, whichever is fewer.
    pub(crate) fn of_series(
        &self,
        series: &[u8],
        first: u64,
        last: u64,
        out: &mut Vec<(u64, Minute)>,
    ) {
        let mut found = |minute: u64, agg: &Minute| match out.binary_search_by_key(&minute, |e| e.0)
        {
            Ok(i) => out[i].1.merge(agg),
            Err(i) => out.insert(i, (minute, agg.clone())),
        };
        if last.saturating_sub(first) < self.slots.len() as u64 {
            let mut k = series.to_vec();
            for minute in first..=last {
                k.truncate(series.len());
                k.extend_from_slice(&minute.to_be_bytes());
                if let Some(agg) = self.get(&k) {
                    found(minute, agg);
                }
            }
            return;
        }
        for (k, agg) in self.iter() {
            if k.len() == series.len() + 8 && k.starts_with(series) {
                let minute = u64::from_be_bytes(k[series.len()..].try_into().unwrap_or_default());
                if (first..=last).contains(&minute) {
                    found(minute, agg);
                }
            }
        }
    }

    /// Those whose metric key starts with `prefix`, added to `out` (by key).
    pub(crate) fn under(
        &self,
        prefix: &[u8],
        out: &mut std::collections::BTreeMap<Vec<u8>, Minute>,
    ) {
        for (k, agg) in self.iter() {
            if k.starts_with(prefix) {
                out.entry(k.to_vec()).or_default().merge(agg);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(invocations: u64) -> Vec<u8> {
        let mut b = Vec::new();
        Minute {
            invocations,
            ..Minute::default()
        }
        .encode(&mut b);
        b
    }

    #[test]
    fn adds_merge_by_key_through_growth_and_read_back_by_key() {
        let mut a = Aggregates::default();
        // 5,000 keys (the table grows several times), each added three times: once
        // alone and twice in frames
        let key = |i: u32| format!("svc-{i}-op").into_bytes();
        for i in 0..5_000 {
            assert!(a.add(&key(i), &encoded(1)));
        }
        let (keys, one, two) = (
            (0..5_000).map(key).collect::<Vec<_>>(),
            encoded(1),
            encoded(2),
        );
        let bad = a.add_frames(keys.iter().map(|k| (k.as_slice(), one.as_slice())));
        assert_eq!(bad, 0);
        let bad = a.add_frames(keys.iter().map(|k| (k.as_slice(), two.as_slice())));
        assert_eq!(bad, 0);
        assert_eq!(a.len(), 5_000);
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(a.get(k).map(|m| m.invocations), Some(4), "key {i}");
        }
        assert!(a.get(b"svc-5000-op").is_none());
        // sorted lists every key once, in byte order
        let sorted: Vec<&[u8]> = a.sorted().into_iter().map(|e| e.0).collect();
        let mut want: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
        want.sort();
        assert_eq!(sorted, want);
    }

    #[test]
    fn a_value_that_is_no_aggregate_changes_nothing() {
        let mut a = Aggregates::default();
        assert!(!a.add(b"k", &[0xff, 0xff]));
        assert_eq!(a.len(), 0);
        assert!(a.add(b"k", &encoded(3)));
        let bad = a.add_frames([(&b"k"[..], &[0xffu8, 0xff][..]), (b"j", &encoded(1))].into_iter());
        assert_eq!(bad, 1);
        assert_eq!(a.get(b"k").map(|m| m.invocations), Some(3));
        assert_eq!(a.len(), 2);
    }

    #[test]
    fn keys_that_share_a_prefix_are_told_apart() {
        let mut a = Aggregates::default();
        assert!(a.add(b"ab", &encoded(1)));
        assert!(a.add(b"a", &encoded(2)));
        assert!(a.add(b"", &encoded(4)));
        // read ahead through a slot whose key is empty and last in the buffer
        let one = encoded(1);
        assert_eq!(a.add_frames([(&b""[..], one.as_slice())].into_iter()), 0);
        assert_eq!(a.get(b"").map(|m| m.invocations), Some(5));
        let got = |k: &[u8]| a.get(k).map(|m| m.invocations);
        assert_eq!(
            (got(b"ab"), got(b"a"), got(b"")),
            (Some(1), Some(2), Some(5))
        );
        let mut under = std::collections::BTreeMap::new();
        a.under(b"a", &mut under);
        assert_eq!(
            under.keys().cloned().collect::<Vec<_>>(),
            vec![b"a".to_vec(), b"ab".to_vec()]
        );
    }
}
