//! Admission: per-tenant quotas (span rate, stored bytes), per-service span-rate limits and a global bound on spans in
//! flight. Excess is refused (429 / `RESOURCE_EXHAUSTED`) and counted by service (or
//! tenant) and reason; nothing is ever dropped after it was accepted.
//!
//! Service names come from clients, so the buckets are bounded: at [`MAX_BUCKETS`], the
//! buckets that have refilled (which behave exactly as new ones) are forgotten, and if
//! every one is still in use, further services share one overflow bucket.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::model::Span;
use crate::sampling::TokenBucket;
use crate::store::keys::Tenant;

/// A tenant's quotas as admission needs them, with what it stores now (`tenancy` and
/// the store say).
#[derive(Debug, Clone, PartialEq)]
pub struct TenantQuota {
    pub name: String,
    pub spans_per_second: Option<f64>,
    /// Refuse once `stored_bytes` reaches this.
    pub max_stored_bytes: Option<u64>,
    pub stored_bytes: u64,
}

/// A tenant's quotas, when it has any.
pub type QuotaOf = dyn Fn(Tenant) -> Option<TenantQuota> + Send + Sync;

/// Where admission learns the tenants' quotas.
#[derive(Clone)]
pub struct TenantQuotas(pub Arc<QuotaOf>);

impl std::fmt::Debug for TenantQuotas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TenantQuotas")
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdmissionOptions {
    /// Spans a second one service may send (with one second of burst); 0 turns it off.
    pub service_spans_per_second: f64,
    /// Spans accepted but not yet committed, over every client; 0 turns it off.
    pub max_in_flight_spans: usize,
}

impl Default for AdmissionOptions {
    fn default() -> Self {
        AdmissionOptions {
            service_spans_per_second: 0.0,
            max_in_flight_spans: 1_000_000,
        }
    }
}

/// Per-service buckets kept at most.
pub const MAX_BUCKETS: usize = 10_000;
/// The bucket services share once [`MAX_BUCKETS`] are in use (no service is named this:
/// validation refuses empty names and this one starts with a NUL).
const OVERFLOW: &str = "\0overflow";

/// Why a batch was not admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    TenantRate { tenant: String },
    TenantStorage { tenant: String, limit: u64 },
    ServiceRate { service: String },
    InFlight { limit: usize },
}

pub struct Admission {
    opts: AdmissionOptions,
    tenant_quotas: Option<TenantQuotas>,
    /// Per tenant, at the rate its bucket was made for (a reloaded quota starts afresh).
    tenant_buckets: Mutex<HashMap<Tenant, (u64, TokenBucket)>>,
    buckets: Mutex<Buckets>,
    in_flight: Arc<AtomicUsize>,
}

#[derive(Default)]
struct Buckets {
    map: HashMap<String, TokenBucket>,
    /// Forgetting refilled buckets walks them all: at most once a second.
    last_sweep: Option<std::time::Instant>,
}

impl Buckets {
    /// The bucket key for `service`: its own, or the overflow one when none is free.
    fn key<'a>(&mut self, service: &'a str) -> &'a str {
        if self.map.contains_key(service) || self.map.len() < MAX_BUCKETS {
            return service;
        }
        let now = std::time::Instant::now();
        if self
            .last_sweep
            .is_none_or(|t| now.duration_since(t).as_secs() >= 1)
        {
            self.last_sweep = Some(now);
            self.map.retain(|_, b| !b.is_full());
        }
        if self.map.len() < MAX_BUCKETS {
            service
        } else {
            OVERFLOW
        }
    }
}

/// Spans counted in flight until dropped.
pub struct InFlight {
    n: usize,
    counter: Arc<AtomicUsize>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.counter.fetch_sub(self.n, Ordering::SeqCst);
    }
}

/// Spans of a batch per service, in one pass.
fn per_service(spans: &[Span]) -> HashMap<&str, usize> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for s in spans {
        *counts.entry(s.process.service_name.as_str()).or_default() += 1;
    }
    counts
}

impl Admission {
    pub fn new(opts: AdmissionOptions, tenant_quotas: Option<TenantQuotas>) -> Self {
        Admission {
            opts,
            tenant_quotas,
            tenant_buckets: Mutex::default(),
            buckets: Mutex::new(Buckets::default()),
            in_flight: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Admit a whole batch or none of it; `refused` learns how many spans of which service
    /// were turned away and why.
    pub fn admit(
        &self,
        tenant: Tenant,
        spans: &[Span],
        mut refused: impl FnMut(&str, &'static str, usize),
    ) -> Result<InFlight, Refusal> {
        let n = spans.len();
        if let Some(q) = self.tenant_quotas.as_ref().and_then(|q| (q.0)(tenant)) {
            if let Some(limit) = q.max_stored_bytes.filter(|l| q.stored_bytes >= *l) {
                refused(&q.name, "tenant_storage", n);
                return Err(Refusal::TenantStorage {
                    tenant: q.name,
                    limit,
                });
            }
            if let Some(rate) = q.spans_per_second {
                let mut buckets = self
                    .tenant_buckets
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                let entry = buckets
                    .entry(tenant)
                    .or_insert_with(|| (rate.to_bits(), TokenBucket::new(rate, rate)));
                if entry.0 != rate.to_bits() {
                    *entry = (rate.to_bits(), TokenBucket::new(rate, rate));
                }
                if !entry.1.try_take(n as f64) {
                    refused(&q.name, "tenant_rate", n);
                    return Err(Refusal::TenantRate { tenant: q.name });
                }
            }
        }
        if self.opts.service_spans_per_second > 0.0 {
            let per_service = per_service(spans);
            let rate = self.opts.service_spans_per_second;
            let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
            let mut over = None;
            for (service, count) in &per_service {
                let key = buckets.key(service);
                let b = buckets
                    .map
                    .entry(key.to_string())
                    .or_insert_with(|| TokenBucket::new(rate, rate));
                if b.available() < *count as f64 {
                    over = Some((*service).to_string());
                    break;
                }
            }
            if let Some(service) = over {
                for (s, count) in &per_service {
                    refused(s, "service_rate", *count);
                }
                return Err(Refusal::ServiceRate { service });
            }
            for (service, count) in &per_service {
                let key = buckets.key(service);
                if let Some(b) = buckets.map.get_mut(key) {
                    b.try_take(*count as f64);
                }
            }
        }
        let limit = self.opts.max_in_flight_spans;
        let before = self.in_flight.fetch_add(n, Ordering::SeqCst);
        let guard = InFlight {
            n,
            counter: Arc::clone(&self.in_flight),
        };
        if limit > 0 && before + n > limit && before > 0 {
            for (service, count) in per_service(spans) {
                refused(service, "in_flight", count);
            }
            return Err(Refusal::InFlight { limit });
        }
        Ok(guard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(service: &str) -> Span {
        Span::for_test(1, 1, service)
    }

    #[test]
    fn a_tenant_over_its_quota_is_refused_and_others_are_not() {
        let rates = TenantQuotas(Arc::new(|t: Tenant| {
            (t == 1).then(|| TenantQuota {
                name: "acme".to_owned(),
                spans_per_second: Some(3.0),
                max_stored_bytes: None,
                stored_bytes: 0,
            })
        }));
        let a = Admission::new(AdmissionOptions::default(), Some(rates));
        let spans = [span("a"), span("a")];
        assert!(a.admit(1, &spans, |_, _, _| {}).is_ok());
        let mut refused = Vec::new();
        let r = a.admit(1, &spans, |s, why, n| refused.push((s.to_owned(), why, n)));
        assert_eq!(
            r.err(),
            Some(Refusal::TenantRate {
                tenant: "acme".into()
            })
        );
        assert_eq!(refused, [("acme".to_owned(), "tenant_rate", 2)]);
        // another tenant, and the default one, have no quota
        assert!(a.admit(2, &spans, |_, _, _| {}).is_ok());
        assert!(a.admit(0, &spans, |_, _, _| {}).is_ok());
    }

    #[test]
    fn a_tenant_that_stores_its_limit_is_refused() {
        let stored = Arc::new(std::sync::atomic::AtomicU64::new(999));
        let seen = Arc::clone(&stored);
        let quotas = TenantQuotas(Arc::new(move |_| {
            Some(TenantQuota {
                name: "acme".to_owned(),
                spans_per_second: None,
                max_stored_bytes: Some(1000),
                stored_bytes: seen.load(Ordering::SeqCst),
            })
        }));
        let a = Admission::new(AdmissionOptions::default(), Some(quotas));
        assert!(a.admit(1, &[span("a")], |_, _, _| {}).is_ok());
        stored.store(1000, Ordering::SeqCst);
        let mut refused = Vec::new();
        let r = a.admit(1, &[span("a")], |s, why, n| {
            refused.push((s.to_owned(), why, n))
        });
        assert_eq!(
            r.err(),
            Some(Refusal::TenantStorage {
                tenant: "acme".into(),
                limit: 1000
            })
        );
        assert_eq!(refused, [("acme".to_owned(), "tenant_storage", 1)]);
    }

    #[test]
    fn spans_in_flight_are_bounded() {
        let a = Admission::new(
            AdmissionOptions {
                service_spans_per_second: 0.0,
                max_in_flight_spans: 3,
            },
            None,
        );
        let held = a.admit(0, &[span("a"), span("a")], |_, _, _| {}).unwrap();
        let mut refused = Vec::new();
        let r = a.admit(0, &[span("a"), span("b")], |s, why, n| {
            refused.push((s.to_owned(), why, n))
        });
        assert_eq!(r.err(), Some(Refusal::InFlight { limit: 3 }));
        refused.sort();
        assert_eq!(
            refused,
            vec![("a".into(), "in_flight", 1), ("b".into(), "in_flight", 1)]
        );
        // once the first batch is stored, there is room again
        drop(held);
        assert!(a.admit(0, &[span("a"), span("b")], |_, _, _| {}).is_ok());
    }

    #[test]
    fn buckets_stay_bounded_and_later_services_share_the_overflow_bucket() {
        let a = Admission::new(
            AdmissionOptions {
                service_spans_per_second: 1.0,
                max_in_flight_spans: 0,
            },
            None,
        );
        for i in 0..MAX_BUCKETS {
            assert!(a.admit(0, &[span(&format!("s{i}"))], |_, _, _| {}).is_ok());
        }
        // every bucket is in use (just emptied): new services share one bucket of one
        // span a second
        assert!(a.admit(0, &[span("new-1")], |_, _, _| {}).is_ok());
        let mut refused = Vec::new();
        let r = a.admit(0, &[span("new-2")], |s, why, n| {
            refused.push((s.to_owned(), why, n))
        });
        assert_eq!(
            r.err(),
            Some(Refusal::ServiceRate {
                service: "new-2".into()
            })
        );
        assert_eq!(refused, vec![("new-2".to_string(), "service_rate", 1)]);
        let buckets = a.buckets.lock().unwrap();
        assert_eq!(buckets.map.len(), MAX_BUCKETS + 1);
    }
}
