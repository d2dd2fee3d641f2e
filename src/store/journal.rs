//! The metrics journal: the metric aggregates of recent group commits, folded in memory
//! and merged into the `metrics` family about once a second, instead of one merge
//! operand per aggregate and commit.
//!
//! A batch of spans touches a metric series per operation it holds (RED metrics), and a
//! merge operand each cost its memtable insert and then its fold at the flush: 11 % of
//! the daemon's CPU under load (BENCHMARKS.md), for values that mostly add up to the same
//! few keys a second later. Now each commit puts its aggregates as one value in the
//! `journal` family (key: the group's number), in the same `WriteBatch` as its spans, so
//! what is acknowledged is as durable as before; once written they are also folded into
//! [`Pending`]. When [`FOLD_EVERY`] has passed (or [`MAX_PENDING`] aggregates are held),
//! the commit hands everything pending to the fold thread (`metrics::Folder`) as one
//! fold, bounded by the journal keys it came from, and starts a new generation.
//!
//! The fold thread writes the fold's merge operands in key order, [`FOLD_CHUNK`] a
//! write (a group commit waits while RocksDB inserts a write), each write leaving a mark
//! in `meta`: the fold's bound and the last key written. The last write deletes the
//! fold's journal and marks it whole. Reads add what is pending, and what of the fold
//! in flight their snapshot's mark says is not stored yet, to what is stored
//! (`metrics`), so each aggregate is counted once. At open the journal is read back
//! into [`Pending`], skipping what the mark of a fold cut short says it wrote.
//!
//! This module owns the journal's bytes, the pending generations and the marks; the
//! aggregate is `monitor::minute`'s, the layout of metric keys `keys`', the writes
//! `metrics`'.

use std::time::{Duration, Instant};

use prost::encoding::{decode_varint, encode_varint};
use rocksdb::{ColumnFamily, WriteBatch};

pub(super) use super::aggregates::Aggregates;
use crate::monitor::minute::Minute;

/// How long aggregates stay pending before a commit folds them into `metrics`.
pub const FOLD_EVERY: Duration = Duration::from_secs(1);
/// Aggregates (series and minute) pending at most: a commit folds once there are more
/// (each is a few hundred bytes).
pub const MAX_PENDING: usize = 50_000;

/// The journal key of group `seq`.
pub(super) fn key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// Append one aggregate (metric key and encoded `Minute`) to a journal value.
pub(super) fn frame(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    encode_varint(key.len() as u64, out);
    out.extend_from_slice(key);
    encode_varint(value.len() as u64, out);
    out.extend_from_slice(value);
}

/// The (key, value) pairs of a journal value; stops at the first that is not whole.
pub(super) fn frames(mut b: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    fn part<'a>(b: &mut &'a [u8]) -> Option<&'a [u8]> {
        let n = usize::try_from(decode_varint(b).ok()?).ok()?;
        let (head, rest) = (b.get(..n)?, b.get(n..)?);
        *b = rest;
        Some(head)
    }
    std::iter::from_fn(move || {
        if b.is_empty() {
            return None;
        }
        let k = part(&mut b);
        let v = part(&mut b);
        match (k, v) {
            (Some(k), Some(v)) => Some((k, v)),
            _ => {
                b = &[];
                None
            }
        }
    })
}

/// A fold being written: its aggregates, and the journal keys below which they came
/// from (what the fold deletes, and what it records as folded).
pub(super) type Fold = (std::sync::Arc<Aggregates>, u64);

/// Aggregates written to the journal and not yet in `metrics`: those of the commits
/// since the last fold began, and those of the fold being written, if one is.
pub(super) struct Pending {
    current: Aggregates,
    folding: Option<Fold>,
    since: Instant,
}

impl Default for Pending {
    fn default() -> Self {
        Pending {
            current: Aggregates::default(),
            folding: None,
            since: Instant::now(),
        }
    }
}

/// What a read adds to what it finds stored: the pending aggregates, and those of a fold
/// being written with the journal bound it records, for the read to tell whether its
/// snapshot already holds them.
pub(super) struct Unfolded<T> {
    pub(super) current: T,
    pub(super) folding: Option<(T, u64)>,
}

impl Pending {
    /// Fold one journaled aggregate in; false (and nothing changed) when the key is not
    /// a metric key or the value not an aggregate.
    pub(super) fn add(&mut self, key: &[u8], value: &[u8]) -> bool {
        if key.len() < 8 {
            return false;
        }
        if self.current.len() == 0 {
            self.since = Instant::now();
        }
        self.current.add(key, value)
    }

    /// Fold in every aggregate of a journal value (see [`frames`]); returns how many
    /// were not aggregates (those change nothing).
    pub(super) fn add_frames(&mut self, value: &[u8]) -> usize {
        if self.current.len() == 0 {
            self.since = Instant::now();
        }
        let frames = frames(value).filter(|(k, _)| k.len() >= 8);
        self.current.add_frames(frames)
    }

    /// Start a fold of everything pending from journal keys below `upto` when one is
    /// due and none is being written: what it returns is for [`Pending::fold_done`] once
    /// written (`Store::write_fold`).
    pub(super) fn start_fold(&mut self, upto: u64) -> Option<Fold> {
        let n = self.current.len();
        let due = n > 0 && (n >= MAX_PENDING || self.since.elapsed() >= FOLD_EVERY);
        if !due || self.folding.is_some() {
            return None;
        }
        let fold = (std::sync::Arc::new(std::mem::take(&mut self.current)), upto);
        self.folding = Some(fold.clone());
        Some(fold)
    }

    /// Everything pending, as one fold (at shutdown, with no fold being written).
    pub(super) fn fold_all(&mut self, upto: u64) -> Option<Fold> {
        if self.folding.is_some() {
            return None;
        }
        let fold = (std::sync::Arc::new(std::mem::take(&mut self.current)), upto);
        self.folding = Some(fold.clone());
        Some(fold)
    }

    /// The fold started last is written whole. (One that failed part way stays in
    /// flight: reads tell from the mark it left which of its aggregates are stored, and
    /// so does the next open.)
    pub(super) fn fold_done(&mut self) {
        self.folding = None;
    }

    /// Make what is pending as old as a fold waits for.
    #[cfg(test)]
    pub(super) fn backdate(&mut self) {
        self.since = Instant::now() - FOLD_EVERY;
    }

    /// Pending aggregates of `series` at minutes `first..=last`, by minute.
    pub(super) fn of_series(
        &self,
        series: &[u8],
        first: u64,
        last: u64,
    ) -> Unfolded<Vec<(u64, Minute)>> {
        let mut current = Vec::new();
        self.current.of_series(series, first, last, &mut current);
        let folding = self.folding.as_ref().map(|(agg, upto)| {
            let mut out = Vec::new();
            agg.of_series(series, first, last, &mut out);
            (out, *upto)
        });
        Unfolded { current, folding }
    }

    /// Pending aggregates whose metric key starts with `prefix`, by key.
    pub(super) fn under(
        &self,
        prefix: &[u8],
    ) -> Unfolded<std::collections::BTreeMap<Vec<u8>, Minute>> {
        let mut current = Default::default();
        self.current.under(prefix, &mut current);
        let folding = self.folding.as_ref().map(|(agg, upto)| {
            let mut out = Default::default();
            agg.under(prefix, &mut out);
            (out, *upto)
        });
        Unfolded { current, folding }
    }
}

/// Aggregates a fold writes in one `WriteBatch`: each write holds group commits back
/// while RocksDB inserts it (a whole fold of 25,000 took 44-84 ms).
pub const FOLD_CHUNK: usize = 1024;

/// How much of a fold a snapshot holds, from the mark every write of a fold leaves in
/// `meta`: its bound, then the last key it wrote, or nothing once the fold is whole
/// (that write also deletes the fold's journal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Written {
    Nothing,
    Through(Vec<u8>),
    All,
}

impl Written {
    /// What the mark `mark` says of the fold bounded by `upto`.
    pub(super) fn of(mark: Option<&[u8]>, upto: u64) -> Written {
        match mark.and_then(|m| Some((m.get(..8)?, m.get(8..)?))) {
            Some((bound, rest)) if bound == upto.to_be_bytes() => {
                if rest.is_empty() {
                    Written::All
                } else {
                    Written::Through(rest.to_vec())
                }
            }
            _ => Written::Nothing,
        }
    }

    /// Whether the aggregate at `key` is stored already.
    pub(super) fn holds(&self, key: &[u8]) -> bool {
        match self {
            Written::Nothing => false,
            Written::Through(last) => key <= last.as_slice(),
            Written::All => true,
        }
    }
}

/// The mark of a fold bounded by `upto` written through `last` (`None`: whole).
pub(super) fn mark(upto: u64, last: Option<&[u8]>) -> Vec<u8> {
    let mut v = upto.to_be_bytes().to_vec();
    v.extend_from_slice(last.unwrap_or_default());
    v
}

/// The journal of a whole fold bounded by `upto` deleted, in `wb`.
pub(super) fn retire(wb: &mut WriteBatch, journal: &ColumnFamily, upto: u64) {
    wb.delete_range_cf(journal, key(0), key(upto));
}

/// `stored` (an encoded aggregate, if any) plus `pending`, encoded.
pub(super) fn add_to(stored: Option<&[u8]>, pending: &Minute) -> Vec<u8> {
    let mut m = stored.and_then(Minute::decode).unwrap_or_default();
    m.merge(pending);
    m.to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agg(calls: u64) -> Minute {
        Minute {
            invocations: calls,
            latency_sum_us: calls * 10,
            ..Minute::default()
        }
    }

    fn metric_key(series: &[u8], minute: u64) -> Vec<u8> {
        let mut k = series.to_vec();
        k.extend_from_slice(&minute.to_be_bytes());
        k
    }

    #[test]
    fn frames_read_back_what_was_framed_and_stop_at_a_torn_one() {
        let mut v = Vec::new();
        frame(&mut v, b"k1", b"value one");
        frame(&mut v, b"", b"");
        frame(&mut v, &[7u8; 300], b"x");
        let got: Vec<_> = frames(&v).collect();
        assert_eq!(
            got,
            vec![
                (&b"k1"[..], &b"value one"[..]),
                (&b""[..], &b""[..]),
                (&[7u8; 300][..], &b"x"[..])
            ]
        );
        assert_eq!(frames(&v[..v.len() - 1]).count(), 2);
        // a length far past the end
        assert_eq!(frames(&[0xff, 0xff, 0xff, 0x7f, 1]).count(), 0);
    }

    fn calls(v: &[(u64, Minute)]) -> Vec<(u64, u64)> {
        v.iter().map(|(m, x)| (*m, x.invocations)).collect()
    }

    #[test]
    fn pending_folds_by_series_and_minute() {
        let mut p = Pending::default();
        assert!(p.start_fold(1).is_none(), "nothing to fold");
        assert!(p.add(&metric_key(b"svc-a", 7), &agg(2).to_bytes()));
        assert!(p.add(&metric_key(b"svc-a", 7), &agg(3).to_bytes()));
        assert!(p.add(&metric_key(b"svc-a", 8), &agg(1).to_bytes()));
        assert!(p.add(&metric_key(b"svc-b", 7), &agg(4).to_bytes()));
        // not a metric key, not an aggregate
        assert!(!p.add(b"short", &agg(1).to_bytes()));
        assert!(!p.add(&metric_key(b"svc-a", 7), b"\x09"));
        assert_eq!(p.current.len(), 3);

        let a = p.of_series(b"svc-a", 0, 100);
        assert_eq!(calls(&a.current), [(7, 5), (8, 1)]);
        assert_eq!(a.current[0].1.latency_sum_us, 50);
        assert!(a.folding.is_none());
        assert_eq!(calls(&p.of_series(b"svc-a", 8, 8).current), [(8, 1)]);
        assert!(p.of_series(b"svc-c", 0, 100).current.is_empty());
        // a window shorter than what is pending is looked up minute by minute
        assert_eq!(calls(&p.of_series(b"svc-a", 7, 7).current), [(7, 5)]);
        assert!(p.of_series(b"svc", 0, u64::MAX).current.is_empty());
        // a prefix shorter or longer than the series
        assert_eq!(p.under(b"svc").current.len(), 3);
        let b7 = metric_key(b"svc-b", 7);
        assert_eq!(p.under(&b7).current[&b7].invocations, 4);

        assert!(p.start_fold(42).is_none(), "not due yet");
        p.backdate();
        let (folding, upto) = p.start_fold(42).unwrap();
        assert_eq!((folding.len(), upto), (3, 42));
        assert!(p.start_fold(43).is_none(), "one fold at a time");
        // reads see a fold in flight apart, with its bound, and what came after it
        p.add(&metric_key(b"svc-a", 7), &agg(1).to_bytes());
        let a = p.of_series(b"svc-a", 0, 100);
        assert_eq!(calls(&a.current), [(7, 1)]);
        let (f, bound) = a.folding.unwrap();
        assert_eq!((calls(&f), bound), (vec![(7, 5), (8, 1)], 42));
        p.fold_done();
        let a = p.of_series(b"svc-a", 0, 100);
        assert_eq!(calls(&a.current), [(7, 1)]);
        assert!(a.folding.is_none());
        assert_eq!(p.fold_all(60).map(|(f, _)| f.len()), Some(1));
        assert!(p.fold_all(61).is_none(), "one fold at a time");
    }

    #[test]
    fn pending_is_due_when_full() {
        let mut p = Pending::default();
        for i in 0..MAX_PENDING as u64 - 1 {
            p.add(&metric_key(b"s", i), &agg(1).to_bytes());
        }
        assert!(p.start_fold(1).is_none(), "due early");
        p.add(&metric_key(b"s", u64::MAX), &agg(1).to_bytes());
        assert_eq!(p.start_fold(1).map(|f| f.0.len()), Some(MAX_PENDING));
    }

    #[test]
    fn a_fold_mark_tells_what_a_snapshot_holds() {
        let through = mark(42, Some(b"m"));
        assert_eq!(
            Written::of(Some(&through), 42),
            Written::Through(b"m".to_vec())
        );
        let w = Written::of(Some(&through), 42);
        assert!(w.holds(b"a") && w.holds(b"m") && !w.holds(b"ma") && !w.holds(b"z"));
        // the mark of an earlier fold, or none: nothing of this one
        assert_eq!(Written::of(Some(&through), 43), Written::Nothing);
        assert_eq!(Written::of(None, 42), Written::Nothing);
        assert_eq!(Written::of(Some(b"short"), 42), Written::Nothing);
        assert_eq!(Written::of(Some(&mark(42, None)), 42), Written::All);
        assert!(Written::All.holds(b"z") && !Written::Nothing.holds(b""));
    }

    #[test]
    fn stored_and_pending_add_up() {
        let both = add_to(Some(&agg(2).to_bytes()), &agg(3));
        assert_eq!(Minute::decode(&both).unwrap().invocations, 5);
        let fresh = add_to(None, &agg(3));
        assert_eq!(Minute::decode(&fresh).unwrap().invocations, 3);
    }
}
