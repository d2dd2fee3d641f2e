//! Retention: compaction filters that drop span, index and invocation entries whose time
//! is past the retention age, the compaction that makes sure it happens on an idle
//! store, and the catalog's expiry. Reads hide what compaction has not reached yet
//! (see `read`).

use rocksdb::{
    compaction_filter::{CompactionFilter, Decision},
    compaction_filter_factory::{CompactionFilterContext, CompactionFilterFactory},
};

use super::{keys, Store, CF_POSTINGS, CF_INVOCATIONS, CF_META, CF_SPANS};

/// Start times before this are past retention.
pub(super) fn cutoff_us(retention_us: u64) -> u64 {
    crate::clock::now_us().saturating_sub(retention_us)
}

/// Retention in compactions: each compaction gets a filter that read the clock once
/// when it was made (a compaction sees millions of keys) and drops entries whose time,
/// as `time_of` reads it from the key, is before the cutoff.
pub(super) struct Retention {
    pub name: &'static std::ffi::CStr,
    pub retention_us: u64,
    pub time_of: fn(&[u8]) -> Option<u64>,
}

pub(super) struct RetentionFilter {
    name: &'static std::ffi::CStr,
    cutoff: u64,
    time_of: fn(&[u8]) -> Option<u64>,
}

impl CompactionFilterFactory for Retention {
    type Filter = RetentionFilter;

    fn create(&mut self, _: CompactionFilterContext) -> RetentionFilter {
        RetentionFilter {
            name: self.name,
            cutoff: cutoff_us(self.retention_us),
            time_of: self.time_of,
        }
    }

    fn name(&self) -> &std::ffi::CStr {
        self.name
    }
}

impl CompactionFilter for RetentionFilter {
    fn filter(&mut self, _level: u32, key: &[u8], _value: &[u8]) -> Decision {
        match (self.time_of)(key) {
            Some(t) if t < self.cutoff => Decision::Remove,
            _ => Decision::Keep,
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
    /// Compact the span, index and invocation families now: expired entries go and their
    /// disk space comes back; services and operations not seen for a retention period
    /// leave the catalog. The small families are flushed first, because a write-ahead log file
    /// is only deleted once no family's memtable still needs it.
    pub fn compact(&self) {
        for name in [CF_META, CF_INVOCATIONS] {
            if let Err(e) = self.db.flush_cf(self.cf(name)) {
                tracing::warn!(error = %e, family = name, "flush before retention compaction failed");
            }
        }
        for name in [CF_SPANS, CF_POSTINGS, CF_INVOCATIONS] {
            self.db
                .compact_range_cf(self.cf(name), None::<&[u8]>, None::<&[u8]>);
        }
        match self.expire_catalog(cutoff_us(self.retention_us)) {
            Ok(0) => {}
            Ok(n) => tracing::info!(operations = n, "catalog entries expired"),
            Err(e) => tracing::warn!(error = %e, "catalog expiry failed"),
        }
    }
}
