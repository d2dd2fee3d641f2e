//! The metrics family: one aggregate per metric series and minute (`keys::metric_key`),
//! folded by RocksDB's merge operator from the aggregates the writer merges in (about
//! once a second, from `journal`), so recording a call is a blind write and a read sees
//! every call acknowledged so far, the minute being filled included: reads add what the
//! journal holds pending to what is stored. Retention by a compaction filter on the
//! minute. The aggregate itself (`monitor::minute`) is not this module's: it only
//! stores it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use rocksdb::{IteratorMode, MergeOperands, ReadOptions, SnapshotWithThreadMode, WriteBatch, DB};

use super::{journal, keys, Store, StoreError, CF_JOURNAL, CF_META, CF_METRICS};
use crate::monitor::minute::Minute;

/// Writes folds of the pending aggregates (`journal`) on a thread of its own, in writes
/// of [`journal::FOLD_CHUNK`]: a fold is tens of thousands of merge operands, and group
/// commits wait while RocksDB inserts a write.
pub(super) struct Folder {
    send: Mutex<Option<mpsc::SyncSender<journal::Fold>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Set at stop: a fold whose write fails gives up instead of retrying.
    stopping: Arc<AtomicBool>,
}

impl Folder {
    pub(super) fn start(db: &Arc<DB>, pending: &Arc<Mutex<journal::Pending>>) -> Self {
        // one fold is written at a time (`Pending::start_fold`), so one slot is room
        let (send, folds) = mpsc::sync_channel::<journal::Fold>(1);
        let stopping = Arc::new(AtomicBool::new(false));
        let (db, pending, stop) = (Arc::clone(db), Arc::clone(pending), Arc::clone(&stopping));
        let thread = std::thread::Builder::new()
            .name("fctrace-fold".into())
            .spawn(move || {
                for fold in folds {
                    if write_fold(&db, &fold, &stop).is_ok() {
                        pending
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .fold_done();
                    }
                }
            });
        let thread = match thread {
            Ok(t) => Some(t),
            Err(e) => {
                // folds are then written by the writer itself (`Folder::send`)
                tracing::warn!(error = %e, "no fold thread");
                None
            }
        };
        let send = thread.as_ref().map(|_| send);
        Folder {
            send: Mutex::new(send),
            thread: Mutex::new(thread),
            stopping,
        }
    }

    /// Hand `fold` to the fold thread, or write it here when there is none (stopped).
    pub(super) fn send(&self, store: &Store, fold: journal::Fold) {
        let sent = match &*self.send.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(send) => send.send(fold).map_err(|e| e.0),
            None => Err(fold),
        };
        if let Err(fold) = sent {
            if write_fold(&store.db, &fold, &self.stopping).is_ok() {
                store
                    .pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .fold_done();
            }
        }
    }

    /// Finish the fold being written, if any, and end the thread.
    pub(super) fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.send.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
    }
}

/// Write `fold`: its merge operands in key order, [`journal::FOLD_CHUNK`] a write, each
/// write marking how far the fold is; the last deletes the fold's journal. A write that
/// fails is retried every second (a full disk), unless the store is stopping.
fn write_fold(db: &DB, fold: &journal::Fold, stopping: &AtomicBool) -> Result<(), rocksdb::Error> {
    let (metrics, journal_cf, meta) = match (
        db.cf_handle(CF_METRICS),
        db.cf_handle(CF_JOURNAL),
        db.cf_handle(CF_META),
    ) {
        (Some(a), Some(b), Some(c)) => (a, b, c),
        // created at open: cannot happen
        _ => return Ok(()),
    };
    let (aggregates, upto) = (&fold.0, fold.1);
    let sorted = aggregates.sorted();
    // Not synced: the WAL is replayed as a prefix, so a fold's writes lost with the
    // machine go with its mark and the journal is read back as before; the next group
    // commit's sync makes them durable. (A sync each was 25 fsyncs a fold.)
    let opts = rocksdb::WriteOptions::default();
    let folded = keys::metrics_folded_key();
    let chunks = sorted.len().div_ceil(journal::FOLD_CHUNK).max(1);
    let mut value = Vec::new();
    for i in 0..chunks {
        let from = i * journal::FOLD_CHUNK;
        let chunk = &sorted[from.min(sorted.len())..(from + journal::FOLD_CHUNK).min(sorted.len())];
        loop {
            let mut wb = WriteBatch::default();
            for (k, agg) in chunk {
                value.clear();
                agg.encode(&mut value);
                wb.merge_cf(metrics, k, &value);
            }
            let last = if i + 1 < chunks {
                chunk.last().map(|e| e.0)
            } else {
                None
            };
            if last.is_none() {
                journal::retire(&mut wb, journal_cf, upto);
            }
            wb.put_cf(meta, &folded, journal::mark(upto, last));
            match db.write_opt(wb, &opts) {
                Ok(()) => break,
                Err(e) if stopping.load(Ordering::Relaxed) => return Err(e),
                Err(e) => {
                    tracing::error!(error = %e, "metric aggregates not folded; retrying");
                    std::thread::sleep(std::time::Duration::from_secs(1));
                }
            }
        }
    }
    Ok(())
}

/// RocksDB's merge for the family: every operand and the existing value folded into one.
/// Bytes that are not an aggregate (none are written) are left out rather than failing
/// every read of the key.
pub(super) fn merge_minutes(
    _key: &[u8],
    existing: Option<&[u8]>,
    operands: &MergeOperands,
) -> Option<Vec<u8>> {
    let mut acc = existing.and_then(Minute::decode).unwrap_or_default();
    for op in operands {
        acc.merge_encoded(op);
    }
    Some(acc.to_bytes())
}

/// Where per-series values are read from: a store, or on a query node every store
/// node's, merged (`query::Query`). The monitoring reads go through it.
pub trait MetricSource {
    /// The values of `series` at times `first..=last`, oldest first (see
    /// [`Store::metric_values`]).
    fn metric_values(
        &self,
        series: &[u8],
        first: u64,
        last: u64,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;

    /// What the reads since the last call could not reach (a query node's store node
    /// down), emptied; a store misses nothing.
    fn missed(&self) -> Vec<String> {
        Vec::new()
    }

    /// [`MetricSource::metric_values`] of a series of aggregates, decoded.
    fn metric_minutes(
        &self,
        series: &[u8],
        first: u64,
        last: u64,
    ) -> Result<Vec<(u64, Minute)>, StoreError> {
        self.metric_values(series, first, last)?
            .into_iter()
            .map(|(minute, v)| {
                Minute::decode(&v).map(|m| (minute, m)).ok_or_else(|| {
                    StoreError::Index(format!("metric aggregate at minute {minute} is corrupt"))
                })
            })
            .collect()
    }
}

impl MetricSource for Store {
    fn metric_values(
        &self,
        series: &[u8],
        first: u64,
        last: u64,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        Store::metric_values(self, series, first, last)
    }
}

impl Store {
    /// The values of `series` (a `keys::metric_series`) at times `first..=last` (in the
    /// series' unit: minutes, or ms for samples), oldest first.
    pub fn metric_values(
        &self,
        series: &[u8],
        first: u64,
        last: u64,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        // what is pending and a snapshot taken together (see `unfolded`)
        let (pending, snapshot) = {
            let p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            (p.of_series(series, first, last), self.db.snapshot())
        };
        let mut add = pending.current;
        if let Some((folding, upto)) = pending.folding {
            let written = self.fold_written(upto, &snapshot)?;
            let mut k = series.to_vec();
            for (minute, agg) in folding {
                k.truncate(series.len());
                k.extend_from_slice(&minute.to_be_bytes());
                if !written.holds(&k) {
                    add.push((minute, agg));
                }
            }
        }
        let mut ro = ReadOptions::default();
        ro.set_snapshot(&snapshot);
        ro.set_iterate_upper_bound(keys::metric_key(series, last.saturating_add(1)));
        let start = keys::metric_key(series, first);
        let iter = self.db.iterator_cf_opt(
            self.cf(CF_METRICS),
            ro,
            IteratorMode::From(&start, rocksdb::Direction::Forward),
        );
        let mut out = Vec::new();
        for item in iter {
            let (k, v) = item?;
            // a longer series whose prefix is this one's ends in other bytes: its key is
            // not this series' length plus a time
            if k.len() != series.len() + 8 || !k.starts_with(series) {
                continue;
            }
            let Some(t) = k.get(series.len()..).and_then(|b| b.try_into().ok()) else {
                continue;
            };
            out.push((u64::from_be_bytes(t), v.to_vec()));
        }
        for (minute, agg) in add {
            match out.binary_search_by_key(&minute, |e| e.0) {
                Ok(i) => out[i].1 = journal::add_to(Some(&out[i].1), &agg),
                Err(i) => out.insert(i, (minute, journal::add_to(None, &agg))),
            }
        }
        Ok(out)
    }

    /// Every key and value of the family under `prefix`, in key order, until `f` says
    /// stop.
    pub fn metric_scan(
        &self,
        prefix: &[u8],
        mut f: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let (pending, snapshot) = {
            let p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            (p.under(prefix), self.db.snapshot())
        };
        let mut add = pending.current;
        if let Some((folding, upto)) = pending.folding {
            let written = self.fold_written(upto, &snapshot)?;
            for (k, agg) in folding {
                if !written.holds(&k) {
                    add.entry(k).or_default().merge(&agg);
                }
            }
        }
        let mut pending = add.into_iter().peekable();
        let mut ro = ReadOptions::default();
        ro.set_prefix_same_as_start(false);
        ro.set_snapshot(&snapshot);
        let iter = self.db.iterator_cf_opt(
            self.cf(CF_METRICS),
            ro,
            IteratorMode::From(prefix, rocksdb::Direction::Forward),
        );
        // the stored keys and the pending ones, merged in key order
        for item in iter {
            let (k, v) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            while let Some((pk, agg)) = pending.next_if(|(pk, _)| pk.as_slice() < &*k) {
                if !f(&pk, &journal::add_to(None, &agg)) {
                    return Ok(());
                }
            }
            let more = match pending.next_if(|(pk, _)| pk.as_slice() == &*k) {
                Some((_, agg)) => f(&k, &journal::add_to(Some(&v), &agg)),
                None => f(&k, &v),
            };
            if !more {
                return Ok(());
            }
        }
        for (pk, agg) in pending {
            if !f(&pk, &journal::add_to(None, &agg)) {
                break;
            }
        }
        Ok(())
    }

    /// How much of the fold bounded by `upto` (in flight when the read began) the read's
    /// snapshot holds. Pending aggregates and the snapshot are taken under one lock, and
    /// aggregates leave `current` for a fold under it too, so each is counted once.
    fn fold_written(
        &self,
        upto: u64,
        snapshot: &SnapshotWithThreadMode<'_, DB>,
    ) -> Result<journal::Written, StoreError> {
        let mut ro = ReadOptions::default();
        ro.set_snapshot(snapshot);
        let mark = self
            .db
            .get_cf_opt(self.cf(CF_META), keys::metrics_folded_key(), &ro)?;
        Ok(journal::Written::of(mark.as_deref(), upto))
    }

    /// Read back the journal a crash left (at open): its aggregates are pending again,
    /// and the next fold writes them and deletes it.
    pub(super) fn load_journal(&self) -> Result<(), StoreError> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        // a fold cut short: the aggregates it wrote came from the journal below its bound
        let mark = self
            .db
            .get_cf(self.cf(CF_META), keys::metrics_folded_key())?;
        let (bound, written) = match mark.as_deref().and_then(|m| m.get(..8)) {
            Some(b) => {
                let bound = u64::from_be_bytes(b.try_into().unwrap_or_default());
                (bound, journal::Written::of(mark.as_deref(), bound))
            }
            None => (0, journal::Written::Nothing),
        };
        let (mut groups, mut bad) = (0u64, 0u64);
        for item in self
            .db
            .iterator_cf(self.cf(CF_JOURNAL), IteratorMode::Start)
        {
            let (k, v) = item?;
            groups += 1;
            let seq = <[u8; 8]>::try_from(&*k)
                .map(u64::from_be_bytes)
                .unwrap_or(u64::MAX);
            for (k, v) in journal::frames(&v) {
                if seq < bound && written.holds(k) {
                    continue;
                }
                bad += u64::from(!pending.add(k, v));
            }
        }
        if groups > 0 {
            tracing::info!(groups, "metric aggregates read back from the journal");
        }
        if bad > 0 {
            tracing::warn!(
                bad,
                "journal entries that are not metric aggregates were skipped"
            );
        }
        Ok(())
    }

    /// Merge every pending aggregate into `metrics` now and empty the journal: at
    /// shutdown, once the writer has stopped (a commit between its write and its fold
    /// into `pending` would lose its aggregates with the journal). Folds after this are
    /// written by the writer's thread.
    pub(super) fn fold_metrics(&self) -> Result<(), StoreError> {
        self.folder.stop();
        let fold = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .fold_all(u64::MAX);
        if let Some(fold) = fold {
            write_fold(&self.db, &fold, &AtomicBool::new(true))?;
            self.pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .fold_done();
        }
        Ok(())
    }
}
