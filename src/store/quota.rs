//! What the store keeps per tenant for its quotas: a retention shorter than the store's,
//! and the bytes each tenant wrote, hour by hour, so `stored_bytes` can say how much of
//! what it holds is the tenant's. Which tenant has which quota, and refusing what is
//! over one, belong to `tenancy` and the pipeline's admission.
//!
//! Stored bytes are the encoded size of the tenant's writes (span chunks, compressed by
//! `codec`, with their index inputs; records, log lines, samples) in the hours its
//! retention still covers: what the store was given to keep, a figure that does not move
//! with RocksDB's compactions, its own compression or other tenants' data. Hours are kept in `meta`
//! (`keys::usage_key`, under the system tenant), written in the same group commit as the data they count.
//!
//! A tenant's retention applies to everything retention covers (spans, their indexes,
//! records, log lines): reads hide what is past it at once, compactions and
//! `Store::expire` drop its index entries and records; span chunks and log lines are
//! removed with the whole files they share with other tenants, at the store's retention.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rocksdb::WriteBatch;

use super::{keys, EncodedBatch, Store, StoreError, CF_META};
use keys::Tenant;

/// Usage is counted per hour of write time.
pub const USAGE_HOUR_US: u64 = 3_600_000_000;

/// Tenants' retentions (µs), where shorter than the store's: shared with the compaction
/// filters, which read it when each compaction starts.
pub(super) type TenantRetention = Arc<RwLock<Arc<HashMap<Tenant, u64>>>>;

/// Bytes written per (tenant, hour).
#[derive(Debug, Default)]
pub(super) struct Usage {
    hours: BTreeMap<(Tenant, u64), u64>,
}

impl Usage {
    /// Count each batch's bytes under its tenant and the current hour, and put the new
    /// totals into `wb`.
    pub(super) fn record(
        &mut self,
        wb: &mut WriteBatch,
        meta: &rocksdb::ColumnFamily,
        batches: &[&EncodedBatch],
        now: u64,
    ) {
        let hour = now / USAGE_HOUR_US;
        let mut touched: Vec<Tenant> = Vec::new();
        for b in batches {
            *self.hours.entry((b.tenant, hour)).or_default() += b.buf.len() as u64;
            if !touched.contains(&b.tenant) {
                touched.push(b.tenant);
            }
        }
        for t in touched {
            let total = self.hours.get(&(t, hour)).copied().unwrap_or(0);
            wb.put_cf(meta, keys::usage_key(t, hour), total.to_be_bytes());
        }
    }

    /// Undo what `record` counted when the write failed.
    pub(super) fn unrecord(&mut self, batches: &[&EncodedBatch], now: u64) {
        let hour = now / USAGE_HOUR_US;
        for b in batches {
            if let Some(n) = self.hours.get_mut(&(b.tenant, hour)) {
                *n = n.saturating_sub(b.buf.len() as u64);
            }
        }
    }

    /// Bytes `tenant` wrote in the hours that end after `cutoff` (µs).
    fn since(&self, tenant: Tenant, cutoff: u64) -> u64 {
        let first = cutoff / USAGE_HOUR_US;
        self.hours
            .range((tenant, first)..=(tenant, u64::MAX))
            .map(|(_, n)| *n)
            .sum()
    }
}

impl Store {
    /// Set the tenants' own retentions; one longer than the store's is the store's.
    pub fn set_tenant_retention(&self, retention: HashMap<Tenant, Duration>) {
        let map = retention
            .into_iter()
            .map(|(t, d)| (t, (d.as_micros().min(u64::MAX as u128) as u64)))
            .filter(|(_, us)| *us < self.retention_us)
            .collect();
        *self
            .tenant_retention
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(map);
    }

    /// How long `tenant`'s data is kept.
    pub fn retention_of(&self, tenant: Tenant) -> Duration {
        Duration::from_micros(self.retention_us_of(tenant))
    }

    pub(super) fn retention_us_of(&self, tenant: Tenant) -> u64 {
        self.tenant_retention
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&tenant)
            .copied()
            .unwrap_or(self.retention_us)
    }

    /// Start times before this are past `tenant`'s retention.
    pub(super) fn cutoff_of(&self, tenant: Tenant) -> u64 {
        super::retention::cutoff_us(self.retention_us_of(tenant))
    }

    /// The bytes `tenant` wrote that its retention still covers (see the module docs).
    pub fn stored_bytes(&self, tenant: Tenant) -> u64 {
        let cutoff = self.cutoff_of(tenant);
        self.usage
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .since(tenant, cutoff)
    }

    /// Read the counted hours back at open.
    pub(super) fn load_usage(&self) -> Result<(), StoreError> {
        let mut usage = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        let prefix = keys::usage_prefix();
        let mut it = self.db.raw_iterator_cf(self.cf(CF_META));
        it.seek(&prefix);
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            if !k.starts_with(&prefix) {
                break;
            }
            if let (Some(at), Ok(n)) = (keys::parse_usage_key(k), <[u8; 8]>::try_from(v)) {
                usage.hours.insert(at, u64::from_be_bytes(n));
            }
            it.next();
        }
        it.status()?;
        Ok(())
    }

    /// Forget hours past the store's retention (memory and `meta`).
    pub(super) fn expire_usage(&self) -> Result<(), StoreError> {
        let first = super::retention::cutoff_us(self.retention_us) / USAGE_HOUR_US;
        let mut usage = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        let old: Vec<(Tenant, u64)> = usage
            .hours
            .keys()
            .filter(|(_, h)| *h < first)
            .copied()
            .collect();
        if old.is_empty() {
            return Ok(());
        }
        let mut wb = WriteBatch::default();
        for (t, h) in &old {
            wb.delete_cf(self.cf(CF_META), keys::usage_key(*t, *h));
        }
        self.db
            .write_opt(wb, &self.write_opts)
            .map_err(StoreError::from_write)?;
        for k in old {
            usage.hours.remove(&k);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{encode, StoreOptions};
    use super::*;
    use crate::model::{Span, TraceId};

    fn open(dir: &std::path::Path) -> Store {
        let opts = StoreOptions {
            sync_writes: false,
            ..StoreOptions::default()
        };
        Store::open(dir, &opts).unwrap()
    }

    fn at(trace: u128, start: u64) -> Span {
        Span {
            start_time: start,
            ..Span::for_test(trace, 1, "svc")
        }
    }

    #[test]
    fn each_tenant_counts_what_it_wrote_and_the_count_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let now = crate::clock::now_us();
        let (a, b) = (
            encode(3, &[at(1, now), at(2, now)]),
            encode(4, &[at(3, now)]),
        );
        {
            let store = open(dir.path());
            store.commit(&[&a, &b]).unwrap();
            store.commit(&[&a]).unwrap();
            assert_eq!(store.stored_bytes(3), 2 * a.buf.len() as u64);
            assert_eq!(store.stored_bytes(4), b.buf.len() as u64);
            assert_eq!(store.stored_bytes(5), 0);
        }
        let store = open(dir.path());
        assert_eq!(store.stored_bytes(3), 2 * a.buf.len() as u64);
        assert_eq!(store.stored_bytes(4), b.buf.len() as u64);
    }

    #[test]
    fn a_tenants_shorter_retention_hides_and_expires_its_data_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let hour = 3_600_000_000;
        let two_hours_ago = crate::clock::now_us() - 2 * hour;
        store
            .commit(&[
                &encode(3, &[at(1, two_hours_ago)]),
                &encode(4, &[at(1, two_hours_ago)]),
            ])
            .unwrap();
        store.set_tenant_retention(HashMap::from([
            (3, Duration::from_secs(3600)),
            // longer than the store's 72 hours: the store's applies
            (4, Duration::from_secs(100 * 3600)),
        ]));
        assert_eq!(store.retention_of(3), Duration::from_secs(3600));
        assert_eq!(store.retention_of(4), Duration::from_secs(72 * 3600));
        assert!(store.trace(3, TraceId(1)).unwrap().is_empty());
        assert_eq!(store.trace(4, TraceId(1)).unwrap().len(), 1);

        let postings = |tenant: Tenant| {
            let mut n = 0;
            let term = keys::IndexPrefix::service(tenant, "svc");
            let scan = |found: &mut usize| {
                store
                    .scan_index(&term, None, 0, u64::MAX, |_, _| {
                        *found += 1;
                        true
                    })
                    .unwrap()
            };
            scan(&mut n);
            n
        };
        assert_eq!(postings(3), 0, "hidden at once");
        assert_eq!(postings(4), 1);
        // and gone from disk for tenant 3 only
        store.expire();
        let blocks = |tenant: Tenant| {
            store
                .db
                .iterator_cf(
                    store.cf(super::super::CF_POSTINGS),
                    rocksdb::IteratorMode::Start,
                )
                .filter(|item| item.as_ref().unwrap().0.starts_with(&tenant.to_be_bytes()))
                .count()
        };
        assert_eq!(blocks(3), 0);
        assert!(blocks(4) > 0);
    }
}
