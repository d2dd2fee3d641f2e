//! One period's aggregate of invocations ([`Minute`]): counts, sums, maxima and a
//! latency histogram, mergeable in any order, so the store keeps one value per
//! dimension and minute and RocksDB's merge operator folds each call into it.
//!
//! This module owns the aggregate and its bytes; which calls count to what is decided
//! by [`Call`]'s maker (the platform), and metric names live in `catalog`.

use prost::encoding::{decode_varint, encode_varint};
use smallvec::SmallVec;

/// A latency histogram: (bucket, calls), sorted by bucket, no zero counts. Most
/// aggregates made at ingest hold a call or two, so two buckets live inline: RED metrics
/// make one aggregate per operation a batch touches, and a heap allocation each was
/// ~1 % of the daemon's CPU (BENCHMARKS.md).
pub type Histogram = SmallVec<[(u16, u64); 2]>;

/// Histogram buckets grow by this factor: a percentile is within ~4 % of a real value.
const GROWTH: f64 = 1.04;
/// The first byte of an encoded aggregate (4: provisioned instances; 3, without them, 2,
/// without recursive calls dropped, and 1, without the asynchronous-call counts either,
/// are still read).
const VERSION: u8 = 4;
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

/// The aggregate of a period's calls.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Minute {
    pub invocations: u64,
    pub function_errors: u64,
    pub server_errors: u64,
    pub client_errors: u64,
    pub concurrency_throttles: u64,
    pub resource_throttles: u64,
    pub cold_starts: u64,
    pub latency_sum_us: u64,
    pub latency_max_us: u64,
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
    /// (bucket, calls), sorted by bucket, no zero counts.
    pub latency: Histogram,
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

    /// Count one span (a call of its service) in place: what the RED metrics of spans
    /// (`monitor::red`) aggregate, without a `Minute` per span.
    pub fn count_span(&mut self, latency_us: u64, failed: bool) {
        self.count_in_bucket(latency_us, bucket_of(latency_us), failed);
    }

    /// [`Minute::count_span`] with the duration's bucket already known (one `ln` for a
    /// span counted in two aggregates).
    pub fn count_in_bucket(&mut self, latency_us: u64, b: u16, failed: bool) {
        self.invocations += 1;
        self.function_errors += u64::from(failed);
        self.latency_sum_us = self.latency_sum_us.saturating_add(latency_us);
        self.latency_max_us = self.latency_max_us.max(latency_us);
        match self.latency.binary_search_by_key(&b, |e| e.0) {
            Ok(i) => self.latency[i].1 += 1,
            Err(i) => self.latency.insert(i, (b, 1)),
        }
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
        for (a, b) in self.sums_mut().into_iter().zip(other.sums()) {
            *a = a.saturating_add(b);
        }
        for (a, b) in self.maxima_mut().into_iter().zip(other.maxima()) {
            *a = (*a).max(b);
        }
        add_buckets(&mut self.latency, &other.latency);
    }

    fn sums(&self) -> [u64; 20] {
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
        ]
    }

    fn sums_mut(&mut self) -> [&mut u64; 20] {
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
        ]
    }

    fn maxima(&self) -> [u64; 11] {
        [
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

    fn maxima_mut(&mut self) -> [&mut u64; 11] {
        [
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
        out.push(VERSION);
        for v in self.sums().into_iter().chain(self.maxima()) {
            encode_varint(v, out);
        }
        encode_varint(self.latency.len() as u64, out);
        let mut last = 0u16;
        for &(b, n) in &self.latency {
            encode_varint(u64::from(b - last), out);
            encode_varint(n, out);
            last = b;
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(48 + self.latency.len() * 3);
        self.encode(&mut v);
        v
    }

    /// An aggregate from its bytes; `None` when they are not one.
    pub fn decode(b: &[u8]) -> Option<Minute> {
        let mut m = Minute::default();
        m.decode_into(b).then_some(m)
    }

    /// [`Minute::decode`] into `self`, whatever it held, keeping its histogram's room
    /// (the merge operator decodes every operand); false, and `self` unspecified, when
    /// `b` is not an aggregate.
    pub fn decode_into(&mut self, b: &[u8]) -> bool {
        self.decode_reusing(b).is_some()
    }

    fn decode_reusing(&mut self, mut b: &[u8]) -> Option<()> {
        let mut latency = std::mem::take(&mut self.latency);
        latency.clear();
        *self = Minute::default();
        let m = self;
        let (&version, rest) = b.split_first()?;
        let (sums, maxima) = match version {
            1 => (V1_SUMS, V1_MAXIMA),
            2 => (V2_SUMS, V2_MAXIMA),
            3 => (V3_SUMS, V3_MAXIMA),
            VERSION => (usize::MAX, usize::MAX),
            _ => return None,
        };
        b = rest;
        for v in m.sums_mut().into_iter().take(sums) {
            *v = decode_varint(&mut b).ok()?;
        }
        for v in m.maxima_mut().into_iter().take(maxima) {
            *v = decode_varint(&mut b).ok()?;
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
            latency.push((last as u16, count));
        }
        m.latency = latency;
        b.is_empty().then_some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(latency_ms: u64, outcome: Outcome) -> Call {
        Call {
            latency_us: latency_ms * 1000,
            outcome,
            memory_limit_mb: 128,
            billed_ms: latency_ms,
            concurrent: 1,
            instances: 1,
            ..Call::default()
        }
    }

    #[test]
    fn merging_counts_sums_and_keeps_maxima() {
        let mut m = Minute::of(&call(10, Outcome::Ok));
        m.merge(&Minute::of(&call(30, Outcome::FunctionError)));
        let mut cold = call(5, Outcome::ConcurrencyThrottle);
        cold.cold_start = true;
        cold.init_us = 2000;
        cold.concurrent = 3;
        cold.memory_usage_kb = 40 * 1024;
        m.merge(&Minute::of(&cold));
        assert_eq!(m.invocations, 3);
        assert_eq!(m.function_errors, 1);
        assert_eq!(m.concurrency_throttles, 1);
        assert_eq!(m.cold_starts, 1);
        assert_eq!(
            (m.init_count, m.init_sum_us, m.init_max_us),
            (1, 2000, 2000)
        );
        assert_eq!(m.latency_sum_us, 45_000);
        assert_eq!(m.latency_max_us, 30_000);
        assert_eq!(m.max_concurrent, 3);
        assert_eq!(m.max_memory_kb, 40 * 1024);
        assert_eq!(m.cost_mb_ms, 128 * 45);
        assert_eq!(m.latency.iter().map(|e| e.1).sum::<u64>(), 3);
    }

    #[test]
    fn histograms_add_bucket_by_bucket() {
        let h = |v: &[(u16, u64)]| Histogram::from_slice(v);
        type Buckets<'a> = &'a [(u16, u64)];
        let cases: [(Buckets, Buckets, Buckets); 6] = [
            (&[], &[(4, 1)], &[(4, 1)]),
            (&[(4, 1)], &[], &[(4, 1)]),
            (&[(2, 1), (9, 2)], &[(5, 3)], &[(2, 1), (5, 3), (9, 2)]),
            (
                &[(1, 1), (3, 2), (5, 1)],
                &[(2, 1), (3, 1), (6, 4)],
                &[(1, 1), (2, 1), (3, 3), (5, 1), (6, 4)],
            ),
            (
                &[(1, 1), (2, 2), (3, 3)],
                &[(1, 1), (2, 1), (3, 1)],
                &[(1, 2), (2, 3), (3, 4)],
            ),
            (
                &[(7, 1), (8, 1)],
                &[(1, 5), (2, 5), (3, 5), (9, 5)],
                &[(1, 5), (2, 5), (3, 5), (7, 1), (8, 1), (9, 5)],
            ),
        ];
        for (a, b, want) in cases {
            let mut got = h(a);
            add_buckets(&mut got, b);
            assert_eq!(got.as_slice(), want, "{a:?} + {b:?}");
        }
        let mut full = h(&[(1, u64::MAX)]);
        add_buckets(&mut full, &[(1, 1), (2, 1), (3, 1)]);
        assert_eq!(full.as_slice(), [(1, u64::MAX), (2, 1), (3, 1)]);
    }

    #[test]
    fn decoding_into_a_used_aggregate_leaves_nothing_of_it() {
        let mut used = Minute::of(&call(30, Outcome::FunctionError));
        used.merge(&Minute::of(&call(7, Outcome::Ok)));
        let fresh = Minute::of(&call(12, Outcome::ServerError));
        assert!(used.decode_into(&fresh.to_bytes()));
        assert_eq!(used, fresh);
        assert!(!used.decode_into(&[9]));
    }

    #[test]
    fn merge_is_order_free() {
        let calls: Vec<Minute> = (1..40)
            .map(|i| Minute::of(&call(i * 7 % 23 + 1, Outcome::Ok)))
            .collect();
        let mut forward = Minute::default();
        calls.iter().for_each(|c| forward.merge(c));
        let mut backward = Minute::default();
        calls.iter().rev().for_each(|c| backward.merge(c));
        assert_eq!(forward, backward);
    }

    #[test]
    fn quantiles_are_within_a_bucket_of_the_real_values() {
        let mut m = Minute::default();
        // 100 calls of 1..=100 ms: p50 is 50 ms, p90 90 ms, p99 99 ms
        for ms in 1..=100 {
            m.merge(&Minute::of(&call(ms, Outcome::Ok)));
        }
        for (q, want) in [(0.5, 50_000.0), (0.9, 90_000.0), (0.99, 99_000.0)] {
            let got = m.latency_quantile(q).unwrap();
            assert!(
                got >= want && got <= want * GROWTH,
                "q {q}: {got} not within a bucket above {want}"
            );
        }
        assert_eq!(m.latency_quantile(1.0), Some(100_000.0));
        assert_eq!(Minute::default().latency_quantile(0.5), None);
    }

    #[test]
    fn version_2_aggregates_are_still_read() {
        // version 2: 17 sums (no recursion count), 8 maxima, no buckets
        let mut v2 = vec![2u8, 5];
        v2.extend([0u8; 16]);
        v2.extend([0u8, 0, 0, 100, 0, 0, 0, 0]);
        v2.push(0);
        let m = Minute::decode(&v2).unwrap();
        assert_eq!(
            (m.invocations, m.memory_limit_mb, m.recursion_dropped),
            (5, 100, 0)
        );
        // and today's writes the recursion count after the other sums
        let mut now = Vec::new();
        Minute {
            recursion_dropped: 2,
            ..Minute::default()
        }
        .encode(&mut now);
        assert_eq!(Minute::decode(&now).unwrap().recursion_dropped, 2);
    }

    #[test]
    fn version_3_aggregates_are_still_read() {
        // version 3: 18 sums (recursion count last), 8 maxima (backlog last), 1 bucket
        let mut v3 = vec![3u8, 4];
        v3.extend([0u8; 16]);
        v3.push(9);
        v3.extend([0u8, 0, 0, 0, 0, 0, 0, 6]);
        v3.extend([1, 10, 4]);
        let m = Minute::decode(&v3).unwrap();
        assert_eq!(
            (m.invocations, m.recursion_dropped, m.async_backlog_max),
            (4, 9, 6)
        );
        assert_eq!(
            (m.provision_invocations, m.max_provisioned_instances),
            (0, 0)
        );
        assert_eq!(m.latency.as_slice(), [(10, 4)]);
        // today's writes provisioning after the other sums and maxima
        let call = Call {
            provisioned: true,
            provisioned_instances: 2,
            provisioned_running: 1,
            provision_utilization_permille: 500,
            ..Call::default()
        };
        let back = Minute::decode(&Minute::of(&call).to_bytes()).unwrap();
        assert_eq!(
            (
                back.provision_invocations,
                back.spillover_invocations,
                back.max_provisioned_instances,
                back.max_provisioned_concurrent,
                back.max_provision_utilization_permille
            ),
            (1, 0, 2, 1, 500)
        );
    }

    #[test]
    fn version_1_aggregates_are_still_read() {
        // version 1: 11 sums (invocations first, cost last), 6 maxima, then buckets
        let mut v1 = vec![1u8, 3, 1, 0, 0, 0, 0, 1, 60, 0, 0, 7];
        v1.extend([40, 0, 0, 128, 1, 2, 1]);
        v1.extend([1, 5, 3]);
        let m = Minute::decode(&v1).unwrap();
        assert_eq!((m.invocations, m.function_errors, m.cold_starts), (3, 1, 1));
        assert_eq!(
            (m.latency_sum_us, m.cost_mb_ms, m.latency_max_us),
            (60, 7, 40)
        );
        assert_eq!(
            (m.memory_limit_mb, m.max_concurrent, m.max_instances),
            (128, 2, 1)
        );
        assert_eq!(m.latency.as_slice(), [(5, 3)]);
        assert_eq!((m.enqueued, m.async_backlog_max), (0, 0));
    }

    #[test]
    fn asynchronous_steps_count_without_invocations() {
        let mut m = Minute::of_async(AsyncStep::Enqueued { backlog: 3 });
        m.merge(&Minute::of_async(AsyncStep::Dequeued {
            wait_us: 500,
            backlog: 2,
        }));
        m.merge(&Minute::of_async(AsyncStep::Dequeued {
            wait_us: 1500,
            backlog: 1,
        }));
        m.merge(&Minute::of_async(AsyncStep::Expired));
        m.merge(&Minute::of_async(AsyncStep::Destination {
            delivered: false,
        }));
        assert_eq!((m.invocations, m.enqueued, m.dequeued), (0, 1, 2));
        assert_eq!((m.async_wait_sum_us, m.async_wait_max_us), (2000, 1500));
        assert_eq!((m.async_backlog_max, m.async_expired), (3, 1));
        assert_eq!((m.destinations_ok, m.destination_errors), (0, 1));
        assert_eq!(Minute::decode(&m.to_bytes()), Some(m));
    }

    #[test]
    fn bytes_round_trip_and_garbage_is_refused() {
        let mut m = Minute::of(&call(12, Outcome::ServerError));
        m.merge(&Minute::of(&call(0, Outcome::ClientError)));
        m.merge(&Minute::of(&call(u64::MAX / 1000, Outcome::Ok)));
        let b = m.to_bytes();
        assert_eq!(Minute::decode(&b), Some(m));
        assert_eq!(Minute::decode(&[]), None);
        assert_eq!(Minute::decode(&[9]), None);
        assert_eq!(Minute::decode(&b[..b.len() - 1]), None);
        let mut longer = b.clone();
        longer.push(0);
        assert_eq!(Minute::decode(&longer), None);
        // a histogram claiming more buckets than bytes
        let mut claim = vec![VERSION];
        claim.extend(std::iter::repeat_n(0u8, 25));
        claim.extend([0xff, 0xff, 0x03]);
        assert_eq!(Minute::decode(&claim), None);
    }

    #[test]
    fn buckets_hold_their_values() {
        for us in [1u64, 2, 3, 999, 1000, 1001, 123_456, 10_000_000, u64::MAX] {
            let b = bucket_of(us);
            assert!(
                bucket_upper(b) * 1.000_001 >= us as f64,
                "{us} above bucket {b}"
            );
            assert!(
                bucket_upper(b - 1) < us as f64,
                "{us} fits the bucket below {b}"
            );
        }
        assert_eq!(bucket_of(0), 0);
    }
}
