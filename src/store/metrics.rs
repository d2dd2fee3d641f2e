//! The metrics family: one aggregate per metric series and minute (`keys::metric_key`),
//! folded by RocksDB's merge operator from the per-call aggregates the writer merges in,
//! so recording a call is one blind write and a read sees every call acknowledged so far,
//! the minute being filled included. Retention by a compaction filter on the minute.
//! The aggregate itself (`monitor::minute`) is not this module's: it only stores it.

use rocksdb::{IteratorMode, MergeOperands, ReadOptions};

use super::{keys, Store, StoreError, CF_METRICS};
use crate::monitor::minute::Minute;

/// RocksDB's merge for the family: every operand and the existing value folded into one.
/// Bytes that are not an aggregate (none are written) are left out rather than failing
/// every read of the key.
pub(super) fn merge_minutes(
    _key: &[u8],
    existing: Option<&[u8]>,
    operands: &MergeOperands,
) -> Option<Vec<u8>> {
    let mut acc = existing.and_then(Minute::decode).unwrap_or_default();
    // one operand's aggregate at a time, in one reused value
    let mut m = Minute::default();
    for op in operands {
        if m.decode_into(op) {
            acc.merge(&m);
        }
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
        let mut ro = ReadOptions::default();
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
        Ok(out)
    }

    /// Every key and value of the family under `prefix`, in key order, until `f` says
    /// stop.
    pub fn metric_scan(
        &self,
        prefix: &[u8],
        mut f: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let mut ro = ReadOptions::default();
        ro.set_prefix_same_as_start(false);
        let iter = self.db.iterator_cf_opt(
            self.cf(CF_METRICS),
            ro,
            IteratorMode::From(prefix, rocksdb::Direction::Forward),
        );
        for item in iter {
            let (k, v) = item?;
            if !k.starts_with(prefix) || !f(&k, &v) {
                break;
            }
        }
        Ok(())
    }
}
