//! Reading function log lines (`logs` family): one function's lines in a time range,
//! oldest first. Values are handed out as stored (the query side decodes them); lines past
//! retention that FIFO has not dropped yet are hidden. Also the async queue (`meta`).

use std::ops::ControlFlow;

use rocksdb::{Direction, IteratorMode, ReadOptions};

use super::{keys, Store, StoreError, CF_LOGS, CF_META};
use keys::Tenant;

impl Store {
    /// Call `each(time, value)` for the lines of `service/function` from `from_us` up to
    /// and including `to_us`, oldest first, until it breaks.
    pub fn scan_logs(
        &self,
        tenant: Tenant,
        service: &str,
        function: &str,
        from_us: u64,
        to_us: u64,
        mut each: impl FnMut(u64, &[u8]) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        let from_us = from_us.max(self.cutoff_of(tenant));
        if from_us > to_us {
            return Ok(());
        }
        let start = keys::log_key(tenant, service, function, from_us, 0);
        let end = keys::log_key(tenant, service, function, to_us, u32::MAX);
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(
            [end.as_slice(), &[0]].concat(), // just past `end`
        );
        let iter = self.db.iterator_cf_opt(
            self.cf(CF_LOGS),
            ro,
            IteratorMode::From(&start, Direction::Forward),
        );
        for item in iter {
            let (k, v) = item?;
            let Some(time) = keys::log_key_time(&k) else {
                continue;
            };
            if each(time, &v).is_break() {
                break;
            }
        }
        Ok(())
    }

    /// Every queued async event of `tenant` (its value), oldest first.
    pub fn queued(&self, tenant: Tenant) -> Result<Vec<Vec<u8>>, StoreError> {
        let prefix = keys::queue_prefix(tenant);
        let mut out = Vec::new();
        let iter = self.db.iterator_cf(
            self.cf(CF_META),
            IteratorMode::From(&prefix, Direction::Forward),
        );
        for item in iter {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            out.push(v.to_vec());
        }
        Ok(out)
    }
}
