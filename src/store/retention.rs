//! Retention: span files go whole by FIFO's TTL, posting blocks of expired seconds and
//! the term filter's expired hours by key range, invocation records by a compaction
//! filter (which also drops posting blocks a compaction meets); `Store::expire` makes
//! each happen on an idle store too, and expires the catalog. A tenant may have a
//! shorter retention than the store's (`quota`): its cutoff applies to its keys. Reads hide what has not gone yet (see `read`).

use rocksdb::{
    compaction_filter::{CompactionFilter, Decision},
    compaction_filter_factory::{CompactionFilterContext, CompactionFilterFactory},
};

use super::{keys, Store, StoreError, CF_INVOCATIONS, CF_POSTINGS, CF_SPANS, CF_TERMS};

/// Start times before this are past retention.
pub(super) fn cutoff_us(retention_us: u64) -> u64 {
    crate::clock::now_us().saturating_sub(retention_us)
}

/// Retention in compactions: each compaction gets a filter that read the clock (and the
/// tenants' own retentions) once when it was made (a compaction sees millions of keys)
/// and drops entries whose time, as `time_of` reads it from the key, is before the
/// cutoff of the key's tenant (its first two bytes).
pub(super) struct Retention {
    pub name: &'static std::ffi::CStr,
    pub retention_us: u64,
    /// Tenants' shorter retentions, for families whose keys start with the tenant.
    pub per_tenant: Option<super::quota::TenantRetention>,
    pub time_of: fn(&[u8]) -> Option<u64>,
}

pub(super) struct RetentionFilter {
    name: &'static std::ffi::CStr,
    cutoff: u64,
    /// Tenants whose cutoff is later than `cutoff`; usually none.
    tenants: Vec<(u16, u64)>,
    time_of: fn(&[u8]) -> Option<u64>,
}

impl CompactionFilterFactory for Retention {
    type Filter = RetentionFilter;

    fn create(&mut self, _: CompactionFilterContext) -> RetentionFilter {
        let tenants = match &self.per_tenant {
            None => Vec::new(),
            Some(map) => map
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|(t, us)| (*t, cutoff_us(*us)))
                .collect(),
        };
        RetentionFilter {
            name: self.name,
            cutoff: cutoff_us(self.retention_us),
            tenants,
            time_of: self.time_of,
        }
    }

    fn name(&self) -> &std::ffi::CStr {
        self.name
    }
}

impl CompactionFilter for RetentionFilter {
    fn filter(&mut self, _level: u32, key: &[u8], _value: &[u8]) -> Decision {
        let Some(t) = (self.time_of)(key) else {
            return Decision::Keep;
        };
        let cutoff = match (self.tenants.is_empty(), key.get(..2)) {
            (false, Some(b)) => {
                let tenant = u16::from_be_bytes([b[0], b[1]]);
                self.tenants
                    .iter()
                    .find(|(id, _)| *id == tenant)
                    .map_or(self.cutoff, |(_, c)| *c)
            }
            _ => self.cutoff,
        };
        if t < cutoff {
            Decision::Remove
        } else {
            Decision::Keep
        }
    }

    fn name(&self) -> &std::ffi::CStr {
        self.name
    }
}

/// The time by which a posting block expires: the end of its bucket.
pub(super) fn posting_expiry(key: &[u8]) -> Option<u64> {
    keys::parse_posting_key(key).map(|(_, bucket, _)| {
        bucket
            .saturating_add(1)
            .saturating_mul(keys::POSTING_BUCKET_US)
            - 1
    })
}

impl Store {
    /// Retention's periodic work: span files whose newest entry is past the TTL go
    /// (the chunks family is flushed first, so what sits in its memtable can age out too),
    /// posting blocks of expired seconds go by range, invocation records by compaction,
    /// and services and operations not seen for a retention period leave the catalog.
    /// The small families are flushed as well, because a write-ahead log file is only
    /// deleted once no family's memtable still needs it. Nothing here rewrites live data.
    pub fn expire(&self) {
        for name in super::FAMILIES {
            if let Err(e) = self.db.flush_cf(self.cf(name)) {
                tracing::warn!(error = %e, family = name, "flush before retention failed");
            }
        }
        for name in [CF_SPANS, CF_INVOCATIONS] {
            self.db
                .compact_range_cf(self.cf(name), None::<&[u8]>, None::<&[u8]>);
        }
        if let Err(e) = self.expire_postings() {
            tracing::warn!(error = %e, "posting expiry failed");
        }
        if let Err(e) = self.expire_terms() {
            tracing::warn!(error = %e, "term filter expiry failed");
        }
        if let Err(e) = self.expire_usage() {
            tracing::warn!(error = %e, "usage expiry failed");
        }
        let cutoff = cutoff_us(self.retention_us);
        match self.expire_catalog(cutoff) {
            Ok(0) => {}
            Ok(n) => tracing::info!(operations = n, "catalog entries expired"),
            Err(e) => tracing::warn!(error = %e, "catalog expiry failed"),
        }
    }

    /// `expire`, then a full compaction of the posting and term families
    /// (`/api/admin/compact`, run by the benchmark before it measures disk use).
    pub fn compact(&self) {
        self.expire();
        for name in [CF_POSTINGS, CF_TERMS] {
            self.db
                .compact_range_cf(self.cf(name), None::<&[u8]>, None::<&[u8]>);
        }
    }

    /// Delete every posting block whose whole second is before its tenant's cutoff. Keys
    /// are time first, so that is one key range per tenant, at the end of its keys.
    fn expire_postings(&self) -> Result<(), StoreError> {
        self.expire_ranges(CF_POSTINGS, |tenant| {
            let cutoff = self.cutoff_of(tenant);
            let Some(last_expired) = (cutoff / keys::POSTING_BUCKET_US).checked_sub(1) else {
                return Vec::new();
            };
            vec![(
                keys::posting_key(tenant, 0, last_expired, u64::MAX).to_vec(),
                keys::posting_upper_bound(tenant),
            )]
        })
    }

    /// Delete the term filter's expired hours and overflow minutes, by range as well.
    fn expire_terms(&self) -> Result<(), StoreError> {
        self.expire_ranges(CF_TERMS, |tenant| {
            keys::expired_terms(tenant, self.cutoff_of(tenant))
        })
    }

    /// Delete the key ranges `ranges` names for each tenant present in family `name`:
    /// whole files in a range are dropped at once, the rest is covered by a range
    /// tombstone and compacted away; only the files holding the range are compacted.
    fn expire_ranges(
        &self,
        name: &str,
        ranges: impl Fn(keys::Tenant) -> Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        let cf = self.cf(name);
        let mut it = self.db.raw_iterator_cf(cf);
        it.seek_to_first();
        while let Some(k) = it.key() {
            let Some(tenant) = k
                .get(..2)
                .and_then(|b| b.try_into().ok())
                .map(u16::from_be_bytes)
            else {
                break;
            };
            for (from, to) in ranges(tenant) {
                self.db
                    .delete_file_in_range_cf(cf, from.as_slice(), to.as_slice())?;
                self.db
                    .delete_range_cf(cf, from.as_slice(), to.as_slice())?;
                self.db
                    .compact_range_cf(cf, Some(from.as_slice()), Some(to.as_slice()));
            }
            match tenant.checked_add(1) {
                Some(next) => it.seek(next.to_be_bytes()),
                None => break,
            }
        }
        it.status()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::{encode, StoreOptions};
    use super::*;
    use crate::model::Span;

    fn open_with_an_hour(dir: &std::path::Path) -> Store {
        let opts = StoreOptions {
            retention: Duration::from_secs(3600),
            sync_writes: false,
            ..StoreOptions::default()
        };
        Store::open(dir, &opts).unwrap()
    }

    #[test]
    fn expire_drops_the_posting_blocks_of_expired_seconds_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_with_an_hour(dir.path());
        let now = crate::clock::now_us();
        let hour = 3_600_000_000;
        let at = |trace: u128, tenant: u16, start: u64| {
            let span = Span {
                start_time: start,
                ..Span::for_test(trace, 1, "svc")
            };
            encode(tenant, &[span])
        };
        // two hours old and just now, in two tenants
        let batches = [
            at(1, 0, now - 2 * hour),
            at(2, 0, now),
            at(3, 7, now - 2 * hour),
            at(4, 7, now - 10_000_000),
        ];
        store.commit(&batches.iter().collect::<Vec<_>>()).unwrap();
        let buckets = || {
            let mut out = Vec::new();
            for item in store
                .db
                .iterator_cf(store.cf(CF_POSTINGS), rocksdb::IteratorMode::Start)
            {
                let (k, _) = item.unwrap();
                let tenant = u16::from_be_bytes([k[0], k[1]]);
                let (_, bucket, _) = keys::parse_posting_key(&k).unwrap();
                out.push((tenant, bucket));
            }
            out.sort();
            out.dedup();
            out
        };
        let second = |t: u64| t / keys::POSTING_BUCKET_US;
        assert_eq!(
            buckets(),
            vec![
                (0, second(now - 2 * hour)),
                (0, second(now)),
                (7, second(now - 2 * hour)),
                (7, second(now - 10_000_000)),
            ]
        );
        store.expire();
        assert_eq!(
            buckets(),
            vec![(0, second(now)), (7, second(now - 10_000_000))]
        );
    }

    #[test]
    fn expire_drops_the_term_filters_expired_hours_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_with_an_hour(dir.path());
        let now = crate::clock::now_us();
        let hour = 3_600_000_000;
        let span = |trace: u128, start: u64| Span {
            start_time: start,
            ..Span::for_test(trace, 1, "svc")
        };
        store
            .commit(&[&encode(0, &[span(1, now - 3 * hour), span(2, now)])])
            .unwrap();
        let hours = || {
            let mut out: Vec<u64> = store
                .db
                .iterator_cf(store.cf(CF_TERMS), rocksdb::IteratorMode::Start)
                .filter_map(|item| keys::term_key_hour(0, &item.unwrap().0))
                .collect();
            out.dedup();
            out
        };
        let h = |t: u64| t / hour;
        assert_eq!(hours(), vec![h(now), h(now - 3 * hour)]);
        store.expire();
        assert_eq!(hours(), vec![h(now)]);
    }
}
