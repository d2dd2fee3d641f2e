//! The catalog of services and operations (with span kind), per tenant: kept in the
//! `meta` family and in memory, so start-up never scans spans.
//!
//! Each entry's value is when it was last seen (µs), written again when a batch uses an
//! entry last written more than [`Catalog::refresh_us`] ago, so the catalog expires with
//! retention like the spans it names: a service or operation not seen for a retention
//! period is removed (see `retention`). Entries of format 2, which have no time, count
//! as seen when the store was opened.

use std::collections::BTreeMap;
use std::hash::BuildHasher;

use rocksdb::{IteratorMode, WriteBatch};

use super::{keys, Store, StoreError, CF_META};
use crate::model::SpanKind;
use keys::Tenant;

#[derive(Debug, Default)]
pub(super) struct Service {
    last_seen: u64,
    /// operation → span kind → last seen
    ops: BTreeMap<String, BTreeMap<SpanKind, u64>>,
}

/// Services and their operations (with span kind), per tenant, for listing; and when
/// each was last written, by a hash of the four, for the writer's check.
#[derive(Debug, Default)]
pub(super) struct Catalog {
    services: BTreeMap<Tenant, BTreeMap<String, Service>>,
    /// hash of (tenant, service, operation, kind) → last seen. The writer looks every
    /// operation of every batch up: one probe here, where the nested maps cost ten string
    /// comparisons down four levels of nodes (2 % of the daemon's CPU under the bench).
    /// The hash is seeded per process, so two operations share one only by chance (about
    /// once in 10^10 catalogs of 25,000): the one would then be refreshed with the other.
    seen: foldhash::HashMap<u64, u64>,
    ids: foldhash::quality::RandomState,
    refresh_us: u64,
}

fn time_of(value: &[u8], default: u64) -> u64 {
    <[u8; 8]>::try_from(value)
        .map(u64::from_be_bytes)
        .unwrap_or(default)
}

impl Catalog {
    pub(super) fn new(retention_us: u64) -> Self {
        Catalog {
            services: BTreeMap::new(),
            seen: Default::default(),
            ids: Default::default(),
            // often enough that nothing in use expires, rarely enough to cost nothing
            refresh_us: (retention_us / 4).min(3600 * 1_000_000),
        }
    }

    /// Whether an operation must be written to `meta` now: unknown, or last written
    /// longer ago than the refresh interval.
    pub(super) fn stale(
        &self,
        tenant: Tenant,
        service: &str,
        op: &str,
        kind: SpanKind,
        now: u64,
    ) -> bool {
        self.seen
            .get(&self.id(tenant, service, op, kind))
            .is_none_or(|&seen| now.saturating_sub(seen) > self.refresh_us)
    }

    fn id(&self, tenant: Tenant, service: &str, op: &str, kind: SpanKind) -> u64 {
        self.ids.hash_one((tenant, service, op, kind))
    }

    /// Put the operation (and its service) into `wb` as seen at `now`.
    pub(super) fn write(
        wb: &mut WriteBatch,
        meta: &rocksdb::ColumnFamily,
        entry: (Tenant, &str, &str, SpanKind),
        now: u64,
    ) {
        let (tenant, service, op, kind) = entry;
        wb.put_cf(
            meta,
            keys::meta_service_key(tenant, service),
            now.to_be_bytes(),
        );
        wb.put_cf(
            meta,
            keys::meta_operation_key(tenant, service, op, kind),
            now.to_be_bytes(),
        );
    }

    pub(super) fn record(
        &mut self,
        tenant: Tenant,
        service: &str,
        op: &str,
        kind: SpanKind,
        now: u64,
    ) {
        let id = self.id(tenant, service, op, kind);
        self.seen.insert(id, now);
        let s = self.service_entry(tenant, service);
        s.last_seen = s.last_seen.max(now);
        s.ops.entry(op.to_owned()).or_default().insert(kind, now);
    }

    fn service_entry(&mut self, tenant: Tenant, service: &str) -> &mut Service {
        // only for operations new or due a refresh, and at open
        self.services
            .entry(tenant)
            .or_default()
            .entry(service.to_owned())
            .or_default()
    }

    /// Remove every entry last seen before `cutoff`, putting their deletion into `wb`;
    /// returns how many operations went.
    pub(super) fn expire(
        &mut self,
        cutoff: u64,
        wb: &mut WriteBatch,
        meta: &rocksdb::ColumnFamily,
    ) -> usize {
        let mut removed = 0;
        let (ids, by_id) = (&self.ids, &mut self.seen);
        self.services.retain(|tenant, services| {
            services.retain(|service, s| {
                s.ops.retain(|op, kinds| {
                    kinds.retain(|kind, seen| {
                        let keep = *seen >= cutoff;
                        if !keep {
                            wb.delete_cf(
                                meta,
                                keys::meta_operation_key(*tenant, service, op, *kind),
                            );
                            by_id.remove(&ids.hash_one((
                                *tenant,
                                service.as_str(),
                                op.as_str(),
                                *kind,
                            )));
                            removed += 1;
                        }
                        keep
                    });
                    !kinds.is_empty()
                });
                let keep = !s.ops.is_empty() || s.last_seen >= cutoff;
                if !keep {
                    wb.delete_cf(meta, keys::meta_service_key(*tenant, service));
                }
                keep
            });
            !services.is_empty()
        });
        removed
    }
}

impl Store {
    pub(super) fn load_catalog(&self) -> Result<(), StoreError> {
        let opened = crate::clock::now_us();
        let mut catalog = Catalog::new(self.retention_us);
        for item in self.db.iterator_cf(self.cf(CF_META), IteratorMode::Start) {
            let (k, v) = item?;
            let seen = time_of(&v, opened);
            match keys::parse_meta_key(&k) {
                Some(keys::MetaEntry::Service(t, s)) => {
                    let e = catalog.service_entry(t, &s);
                    e.last_seen = e.last_seen.max(seen);
                }
                Some(keys::MetaEntry::Operation(t, s, op, kind)) => {
                    catalog.record(t, &s, &op, kind, seen);
                }
                None => {}
            }
        }
        *self.catalog.write().unwrap_or_else(|e| e.into_inner()) = catalog;
        Ok(())
    }

    pub fn services(&self, tenant: Tenant) -> Vec<String> {
        let catalog = self.catalog.read().unwrap_or_else(|e| e.into_inner());
        catalog
            .services
            .get(&tenant)
            .map(|services| services.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Operations of a service with their span kinds, sorted by name then kind.
    pub fn operations(&self, tenant: Tenant, service: &str) -> Vec<(String, SpanKind)> {
        let catalog = self.catalog.read().unwrap_or_else(|e| e.into_inner());
        catalog
            .services
            .get(&tenant)
            .and_then(|services| services.get(service))
            .map(|s| {
                s.ops
                    .iter()
                    .flat_map(|(op, kinds)| kinds.keys().map(|k| (op.clone(), *k)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Forget services and operations not seen for a retention period.
    pub(super) fn expire_catalog(&self, cutoff: u64) -> Result<usize, StoreError> {
        let mut wb = WriteBatch::default();
        let mut catalog = self.catalog.write().unwrap_or_else(|e| e.into_inner());
        let removed = catalog.expire(cutoff, &mut wb, self.cf(CF_META));
        if !wb.is_empty() {
            self.db
                .write_opt(wb, &self.write_opts)
                .map_err(StoreError::from_write)?;
        }
        Ok(removed)
    }
}
