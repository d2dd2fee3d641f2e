//! One period's aggregate of invocations ([`Minute`]): counts, sums, maxima and a
//! latency histogram, mergeable in any order, so the store keeps one value per
//! dimension and minute and RocksDB's merge operator folds each call into it.
//!
//! This module owns the aggregate and its bytes; which calls count to what is decided
//! by [`Call`]'s maker (the platform), and metric names live in `catalog`.

use crate::varint;
use prost::encoding::decode_varint;
use smallvec::SmallVec;

/// A latency histogram: (bucket, calls), sorted by bucket, no zero counts. Most
/// aggregates made at ingest hold a call or two, so two buckets live inline: RED metrics
/// make one aggregate per operation a batch touches, and a heap allocation each was
/// ~1 % of the daemon's CPU (BENCHMARKS.md).
pub type Histogram = SmallVec<[(u16, u64); 2]>;

/// Histogram buckets grow by this factor: a percentile is within ~4 % of a real value.
const GROWTH: f64 = 1.04;
/// The first byte of an encoded aggregate. 5: a bit mask of the fields that are not zero,
/// then those fields. The older versions wrote every field and are still read: 4 (with
/// provisioned instances), 3 (without them), 2 (without recursive calls dropped), 1
/// (without the asynchronous-call counts either).
const VERSION: u8 = 5;
/// Every field, in the dense version 4.
const V4: u8 = 4;
/// Fields of an aggregate: [`SUMS`] counts (added when merged), then maxima (the larger
/// kept), in the order [`Minute::fields`] lists them.
const FIELDS: usize = 31;
const SUMS: usize = 20;
/// Field numbers of what RED metrics count (`Calls`).
const INVOCATIONS: u32 = 0;
const FUNCTION_ERRORS: u32 = 1;
const LATENCY_SUM: u32 = 7;
const LATENCY_MAX: u32 = 20;
/// Counts and maxima an aggregate of version 3 has.
const V3_SUMS: usize = 18;
const V3_MAXIMA: usize = 8;
/// Counts and maxima an aggregate of version 2 has.
const V2_SUMS: usize = 17;
const V2_MAXIMA: usize = 8;
/// Counts and maxima an aggregate of version 1 has.
const V1_SUMS: usize = 11;
const V1_MAXIMA: usize = 6;
/// Buckets an encoded histogram may claim; more is corruption (durations in µs up to
/// u64::MAX need ~1,130).
const MAX_BUCKETS: u64 = 2048;

/// What one call adds to its minute.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Call {
    /// End to end, platform time included.
    pub latency_us: u64,
    pub outcome: Outcome,
    pub cold_start: bool,
    /// The initializer's time on a cold start (0 when none ran).
    pub init_us: u64,
    pub memory_usage_kb: u64,
    pub memory_limit_mb: u64,
    /// Calls running on the function (or platform-wide, for the region) when it started,
    /// itself included.
    pub concurrent: u64,
    /// The function's instances when it started.
    pub instances: u64,
    /// Billed time: the function's run rounded up to the millisecond (0 when it never
    /// ran).
    pub billed_ms: u64,
    /// It ran on a provisioned instance.
    pub provisioned: bool,
    /// It ran on an on-demand instance of a function that has provisioning.
    pub spillover: bool,
    /// The function's provisioned instances, and the calls running on them, when it
    /// started (itself included when it is one of them).
    pub provisioned_instances: u64,
    pub provisioned_running: u64,
    /// Those calls over the provisioned slots, in thousandths.
    pub provision_utilization_permille: u64,
}

/// What one step of an asynchronous call adds to its minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsyncStep {
    /// Queued; `backlog` events of the function are queued now, this one included.
    Enqueued { backlog: u64 },
    /// Taken from the queue to run after waiting `wait_us`.
    Dequeued { wait_us: u64, backlog: u64 },
    /// Dropped: older than the function's `max_event_age`.
    Expired,
    /// Its outcome sent to a destination, or not.
    Destination { delivered: bool },
}

/// How a call ended, as the platform's metrics classify it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Outcome {
    #[default]
    Ok,
    /// The function failed: unhandled error, timeout, out of memory.
    FunctionError,
    /// The platform failed: an instance could not start.
    ServerError,
    /// The caller's fault: bad request, unknown function, event too large, caller gone.
    ClientError,
    /// 429: every instance of the function is busy.
    ConcurrencyThrottle,
    /// 503: the platform-wide concurrency limit.
    ResourceThrottle,
    /// Stopped: the call chain passed through the function too many times (a loop).
    RecursionDropped,
}

/// The aggregate of a period's calls. In C layout with what RED metrics fill first
/// (`Calls`): the journal adds one to a pending aggregate per operation a batch touches,
/// and then touches one or two of its cache lines instead of five.
#[derive(Debug, Clone, Default, PartialEq)]
#[repr(C)]
pub struct Minute {
    pub invocations: u64,
    pub function_errors: u64,
    pub latency_sum_us: u64,
    pub latency_max_us: u64,
    /// (bucket, calls), sorted by bucket, no zero counts.
    pub latency: Histogram,
    pub server_errors: u64,
    pub client_errors: u64,
    pub concurrency_throttles: u64,
    pub resource_throttles: u64,
    pub cold_starts: u64,
    /// Cold starts whose initializer ran.
    pub init_count: u64,
    pub init_sum_us: u64,
    pub init_max_us: u64,
    pub max_memory_kb: u64,
    pub memory_limit_mb: u64,
    pub max_concurrent: u64,
    pub max_instances: u64,
    pub cost_mb_ms: u64,
    /// Asynchronous calls: queued, taken to run (and how long they waited), expired,
    /// destinations reached and not.
    pub enqueued: u64,
    pub dequeued: u64,
    pub async_wait_sum_us: u64,
    pub async_wait_max_us: u64,
    pub async_backlog_max: u64,
    pub async_expired: u64,
    pub destinations_ok: u64,
    pub destination_errors: u64,
    /// Calls stopped as part of a recursive loop (they never ran: not invocations).
    pub recursion_dropped: u64,
    /// Calls that ran on provisioned instances, and on on-demand ones of a function with
    /// provisioning (spillover).
    pub provision_invocations: u64,
    pub spillover_invocations: u64,
    /// Provisioned instances, calls running on them, and those calls over their slots
    /// (thousandths): the largest seen.
    pub max_provisioned_instances: u64,
    pub max_provisioned_concurrent: u64,
    pub max_provision_utilization_permille: u64,
}

/// The histogram bucket of a duration in µs.
pub fn bucket_of(us: u64) -> u16 {
    if us == 0 {
        return 0;
    }
    // bucket b holds (GROWTH^(b-1), GROWTH^b]
    ((us as f64).ln() / GROWTH.ln()).ceil().max(0.0) as u16 + 1
}

/// The largest duration (µs) bucket `b` holds.
pub fn bucket_upper(b: u16) -> f64 {
    if b == 0 {
        0.0
    } else {
        GROWTH.powi(b as i32 - 1)
    }
}

/// Add the histogram `src` into `dst`, both sorted by bucket, in place: merged from the
/// back into `dst`'s grown tail, so nothing is allocated once `dst` has the room.
fn add_buckets(dst: &mut Histogram, src: &[(u16, u64)]) {
    if src.len() <= 2 {
        // the common case at ingest: a call or two added to a longer histogram
        for &(b, n) in src {
            match dst.binary_search_by_key(&b, |e| e.0) {
                Ok(i) => dst[i].1 = dst[i].1.saturating_add(n),
                Err(i) => dst.insert(i, (b, n)),
            }
        }
        return;
    }
    let old = dst.len();
    dst.extend_from_slice(src);
    // `w` is where the next largest entry goes; `i` and `j` count what is left of each
    let (mut i, mut j, mut w) = (old, src.len(), dst.len());
    while j > 0 {
        let s = src[j - 1];
        let entry = match i.checked_sub(1).map(|k| dst[k]) {
            Some(d) if d.0 > s.0 => {
                i -= 1;
                d
            }
            Some(d) if d.0 == s.0 => {
                i -= 1;
                j -= 1;
                (s.0, d.1.saturating_add(s.1))
            }
            _ => {
                j -= 1;
                s
            }
        };
        w -= 1;
        dst[w] = entry;
    }
    // buckets both had left a gap between what stayed in place and what was merged
    if w > i {
        let len = dst.len();
        dst.copy_within(w..len, i);
        dst.truncate(len - (w - i));
    }
}

impl Minute {
    /// The aggregate of one call.
    pub fn of(call: &Call) -> Minute {
        if call.outcome == Outcome::RecursionDropped {
            return Minute {
                recursion_dropped: 1,
                ..Minute::default()
            };
        }
        let mut m = Minute {
            invocations: 1,
            latency_sum_us: call.latency_us,
            latency_max_us: call.latency_us,
            latency: smallvec::smallvec![(bucket_of(call.latency_us), 1)],
            max_memory_kb: call.memory_usage_kb,
            memory_limit_mb: call.memory_limit_mb,
            max_concurrent: call.concurrent,
            max_instances: call.instances,
            cost_mb_ms: call.memory_limit_mb.saturating_mul(call.billed_ms),
            provision_invocations: u64::from(call.provisioned),
            spillover_invocations: u64::from(call.spillover),
            max_provisioned_instances: call.provisioned_instances,
            max_provisioned_concurrent: call.provisioned_running,
            max_provision_utilization_permille: call.provision_utilization_permille,
            ..Minute::default()
        };
        match call.outcome {
            Outcome::Ok => {}
            Outcome::FunctionError => m.function_errors = 1,
            Outcome::ServerError => m.server_errors = 1,
            Outcome::ClientError => m.client_errors = 1,
            Outcome::ConcurrencyThrottle => m.concurrency_throttles = 1,
            Outcome::ResourceThrottle => m.resource_throttles = 1,
            Outcome::RecursionDropped => {}
        }
        if call.cold_start {
            m.cold_starts = 1;
            if call.init_us > 0 {
                m.init_count = 1;
                m.init_sum_us = call.init_us;
                m.init_max_us = call.init_us;
            }
        }
        m
    }

    /// The aggregate of one step of an asynchronous call (no invocation: each attempt
    /// counts as a call of its own).
    pub fn of_async(step: AsyncStep) -> Minute {
        let mut m = Minute::default();
        match step {
            AsyncStep::Enqueued { backlog } => {
                m.enqueued = 1;
                m.async_backlog_max = backlog;
            }
            AsyncStep::Dequeued { wait_us, backlog } => {
                m.dequeued = 1;
                m.async_wait_sum_us = wait_us;
                m.async_wait_max_us = wait_us;
                m.async_backlog_max = backlog;
            }
            AsyncStep::Expired => m.async_expired = 1,
            AsyncStep::Destination { delivered: true } => m.destinations_ok = 1,
            AsyncStep::Destination { delivered: false } => m.destination_errors = 1,
        }
        m
    }

    /// Fold `other` in: sums add, maxima take the larger, histograms add.
    pub fn merge(&mut self, other: &Minute) {
        for (i, (a, b)) in self
            .fields_mut()
            .into_iter()
            .zip(other.fields())
            .enumerate()
        {
            *a = if i < SUMS {
                a.saturating_add(b)
            } else {
                (*a).max(b)
            };
        }
        add_buckets(&mut self.latency, &other.latency);
    }

    /// Every field but the histogram: the sums, then the maxima (the encoded order).
    fn fields(&self) -> [u64; FIELDS] {
        [
            self.invocations,
            self.function_errors,
            self.server_errors,
            self.client_errors,
            self.concurrency_throttles,
            self.resource_throttles,
            self.cold_starts,
            self.latency_sum_us,
            self.init_count,
            self.init_sum_us,
            self.cost_mb_ms,
            self.enqueued,
            self.dequeued,
            self.async_wait_sum_us,
            self.async_expired,
            self.destinations_ok,
            self.destination_errors,
            self.recursion_dropped,
            self.provision_invocations,
            self.spillover_invocations,
            self.latency_max_us,
            self.init_max_us,
            self.max_memory_kb,
            self.memory_limit_mb,
            self.max_concurrent,
            self.max_instances,
            self.async_wait_max_us,
            self.async_backlog_max,
            self.max_provisioned_instances,
            self.max_provisioned_concurrent,
            self.max_provision_utilization_permille,
        ]
    }

    fn fields_mut(&mut self) -> [&mut u64; FIELDS] {
        [
            &mut self.invocations,
            &mut self.function_errors,
            &mut self.server_errors,
            &mut self.client_errors,
            &mut self.concurrency_throttles,
            &mut self.resource_throttles,
            &mut self.cold_starts,
            &mut self.latency_sum_us,
            &mut self.init_count,
            &mut self.init_sum_us,
            &mut self.cost_mb_ms,
            &mut self.enqueued,
            &mut self.dequeued,
            &mut self.async_wait_sum_us,
            &mut self.async_expired,
            &mut self.destinations_ok,
            &mut self.destination_errors,
            &mut self.recursion_dropped,
            &mut self.provision_invocations,
            &mut self.spillover_invocations,
            &mut self.latency_max_us,
            &mut self.init_max_us,
            &mut self.max_memory_kb,
            &mut self.memory_limit_mb,
            &mut self.max_concurrent,
            &mut self.max_instances,
            &mut self.async_wait_max_us,
            &mut self.async_backlog_max,
            &mut self.max_provisioned_instances,
            &mut self.max_provisioned_concurrent,
            &mut self.max_provision_utilization_permille,
        ]
    }

    /// The latency (µs) below which a fraction `q` of the calls fall, from the histogram:
    /// the upper edge of the bucket holding that rank, never above the largest seen.
    pub fn latency_quantile(&self, q: f64) -> Option<f64> {
        let total: u64 = self.latency.iter().map(|e| e.1).sum();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for &(b, n) in &self.latency {
            seen += n;
            if seen >= rank {
                return Some(bucket_upper(b).min(self.latency_max_us as f64));
            }
        }
        Some(self.latency_max_us as f64)
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        let fields = self.fields();
        let mask = fields
            .iter()
            .enumerate()
            .fold(0u32, |m, (i, &v)| m | (u32::from(v != 0) << i));
        write(
            out,
            mask,
            fields.into_iter().filter(|&v| v != 0),
            &self.latency,
        );
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(16 + self.latency.len() * 4);
        self.encode(&mut v);
        v
    }

    /// An aggregate from its bytes; `None` when they are not one.
    pub fn decode(b: &[u8]) -> Option<Minute> {
        let mut m = Minute::default();
        m.decode_into(b).then_some(m)
    }

    /// [`Minute::decode`] into `self`, whatever it held; false, and `self` unspecified,
    /// when `b` is not an aggregate.
    pub fn decode_into(&mut self, b: &[u8]) -> bool {
        *self = Minute::default();
        self.merge_encoded(b)
    }

    /// Add the aggregate encoded in `b`, as merging its decoding would, without making a
    /// whole `Minute` of it: false, and `self` unchanged, when `b` is not an aggregate.
    /// The journal and the merge operator add every aggregate written this way, and most
    /// hold a handful of fields.
    pub fn merge_encoded(&mut self, b: &[u8]) -> bool {
        let Some(sparse) = Sparse::parse(b) else {
            return false;
        };
        let fields = self.fields_mut();
        let (mut mask, mut values) = (sparse.mask, sparse.values.iter());
        while mask != 0 {
            let i = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            let (a, v) = (&mut *fields[i], values.next().copied().unwrap_or(0));
            *a = if i < SUMS {
                a.saturating_add(v)
            } else {
                (*a).max(v)
            };
        }
        add_buckets(&mut self.latency, &sparse.latency);
        true
    }
}

/// What RED metrics count of a service's spans (`monitor::red`): the fields of a
/// [`Minute`] they fill, in a fifth of its size (a batch makes one per operation it
/// touches), encoded as the same aggregate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Calls {
    pub invocations: u64,
    pub errors: u64,
    pub latency_sum_us: u64,
    pub latency_max_us: u64,
    pub latency: Histogram,
}

impl Calls {
    /// Count one call, whose latency's bucket is `b` (one `ln` for a span counted in two
    /// aggregates).
    pub fn count_in_bucket(&mut self, latency_us: u64, b: u16, failed: bool) {
        self.invocations += 1;
        self.errors += u64::from(failed);
        self.latency_sum_us = self.latency_sum_us.saturating_add(latency_us);
        self.latency_max_us = self.latency_max_us.max(latency_us);
        match self.latency.binary_search_by_key(&b, |e| e.0) {
            Ok(i) => self.latency[i].1 += 1,
            Err(i) => self.latency.insert(i, (b, 1)),
        }
    }

    /// The bytes of the `Minute` these are the fields of.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let parts = [
            (INVOCATIONS, self.invocations),
            (FUNCTION_ERRORS, self.errors),
            (LATENCY_SUM, self.latency_sum_us),
            (LATENCY_MAX, self.latency_max_us),
        ];
        let mask = parts
            .iter()
            .fold(0u32, |m, &(i, v)| m | (u32::from(v != 0) << i));
        let values = parts.into_iter().map(|p| p.1).filter(|&v| v != 0);
        write(out, mask, values, &self.latency);
    }
}

/// Write an aggregate: the version, the mask of fields not zero, their `values` in field
/// order, and the histogram as bucket deltas and counts.
fn write(out: &mut Vec<u8>, mask: u32, values: impl Iterator<Item = u64>, latency: &[(u16, u64)]) {
    out.push(VERSION);
    varint::push(u64::from(mask), out);
    for v in values {
        varint::push(v, out);
    }
    varint::push(latency.len() as u64, out);
    let mut last = 0u16;
    for &(b, n) in latency {
        varint::push(u64::from(b - last), out);
        varint::push(n, out);
        last = b;
    }
}

/// An encoded aggregate read: which fields it holds, their values in field order, and
/// its histogram. Older versions come as every field they have.
struct Sparse {
    mask: u32,
    values: [u64; FIELDS],
    latency: Histogram,
}

impl Sparse {
    fn parse(mut b: &[u8]) -> Option<Sparse> {
        let (&version, rest) = b.split_first()?;
        b = rest;
        let mut s = Sparse {
            mask: 0,
            values: [0; FIELDS],
            latency: Histogram::new(),
        };
        if version == VERSION {
            let mask = decode_varint(&mut b).ok()?;
            s.mask = u32::try_from(mask).ok().filter(|m| m >> FIELDS == 0)?;
            for v in s.values.iter_mut().take(s.mask.count_ones() as usize) {
                *v = decode_varint(&mut b).ok()?;
            }
        } else {
            let (sums, maxima) = match version {
                1 => (V1_SUMS, V1_MAXIMA),
                2 => (V2_SUMS, V2_MAXIMA),
                3 => (V3_SUMS, V3_MAXIMA),
                V4 => (SUMS, FIELDS - SUMS),
                _ => return None,
            };
            // a dense version's fields are the first of the sums and of the maxima
            let held = (0..sums).chain(SUMS..SUMS + maxima);
            for (i, v) in held.zip(s.values.iter_mut()) {
                *v = decode_varint(&mut b).ok()?;
                s.mask |= 1 << i;
            }
        }
        let n = decode_varint(&mut b).ok()?;
        if n > MAX_BUCKETS || n > b.len() as u64 {
            return None;
        }
        let mut last = 0u64;
        for i in 0..n {
            let delta = decode_varint(&mut b).ok()?;
            if i > 0 && delta == 0 {
                return None;
            }
            last = last.checked_add(delta).filter(|&v| v <= u16::MAX as u64)?;
            let count = decode_varint(&mut b).ok()?;
            s.latency.push((last as u16, count));
        }
        b.is_empty().then_some(s)
    }
}

#[cfg(test)]
#[path = "minute_tests.rs"]
mod tests;
