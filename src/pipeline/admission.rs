//! Admission: per-service span-rate limits and a global bound on spans in flight. Excess is
//! refused (429 / `RESOURCE_EXHAUSTED`) and counted by service and reason; nothing is ever
//! dropped after it was accepted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::model::Span;
use crate::sampling::TokenBucket;

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

/// Why a batch was not admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    ServiceRate { service: String },
    InFlight { limit: usize },
}

pub struct Admission {
    opts: AdmissionOptions,
    buckets: Mutex<HashMap<String, TokenBucket>>,
    in_flight: Arc<AtomicUsize>,
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

impl Admission {
    pub fn new(opts: AdmissionOptions) -> Self {
        Admission {
            opts,
            buckets: Mutex::new(HashMap::new()),
            in_flight: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Admit a whole batch or none of it; `refused` learns how many spans of which service
    /// were turned away and why.
    pub fn admit(
        &self,
        spans: &[Span],
        mut refused: impl FnMut(&str, &'static str, usize),
    ) -> Result<InFlight, Refusal> {
        let n = spans.len();
        if self.opts.service_spans_per_second > 0.0 {
            let mut per_service: HashMap<&str, usize> = HashMap::new();
            for s in spans {
                *per_service
                    .entry(s.process.service_name.as_str())
                    .or_default() += 1;
            }
            let rate = self.opts.service_spans_per_second;
            let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
            let mut over = None;
            for (service, count) in &per_service {
                let b = buckets
                    .entry((*service).to_string())
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
                if let Some(b) = buckets.get_mut(*service) {
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
            for s in spans
                .iter()
                .map(|s| s.process.service_name.as_str())
                .collect::<std::collections::BTreeSet<_>>()
            {
                refused(
                    s,
                    "in_flight",
                    spans.iter().filter(|x| x.process.service_name == s).count(),
                );
            }
            return Err(Refusal::InFlight { limit });
        }
        Ok(guard)
    }
}
