//! Tests of `monitor::minute`: merging, quantiles, the bytes of every version.

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
    let claim = [VERSION, 0, 0xe8, 0x07, 1, 1];
    assert_eq!(Minute::decode(&claim), None);
    // a field the mask names and the bytes do not hold, and a mask beyond the fields
    assert_eq!(Minute::decode(&[VERSION, 0b11, 4, 0]), None);
    assert_eq!(
        Minute::decode(&[VERSION, 0x80, 0x80, 0x80, 0x80, 0x08, 0]),
        None
    );
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

#[test]
fn version_5_holds_the_fields_that_are_not_zero() {
    let calls = Calls {
        invocations: 3,
        errors: 1,
        latency_sum_us: 60,
        latency_max_us: 40,
        latency: smallvec::smallvec![(5, 2), (7, 1)],
    };
    let mut b = Vec::new();
    calls.encode(&mut b);
    // mask: fields 0 (invocations), 1 (function errors), 7 (latency sum) and 20
    // (latency max) = 0x100083 as a varint; then those values; then 2 buckets as deltas
    assert_eq!(b, [5, 0x83, 0x81, 0x40, 3, 1, 60, 40, 2, 5, 2, 2, 1]);
    let want = Minute {
        invocations: 3,
        function_errors: 1,
        latency_sum_us: 60,
        latency_max_us: 40,
        latency: smallvec::smallvec![(5, 2), (7, 1)],
        ..Minute::default()
    };
    assert_eq!(Minute::decode(&b), Some(want.clone()));
    // a whole aggregate writes the same bytes for the same fields
    assert_eq!(want.to_bytes(), b);
    assert_eq!(Minute::default().to_bytes(), [5, 0, 0]);
}

#[test]
fn version_4_aggregates_are_still_read() {
    // version 4: all 20 sums, all 11 maxima, then buckets
    let mut v4 = vec![4u8, 2];
    v4.extend([0u8; 19]);
    v4.extend([0u8, 0, 0, 100, 0, 0, 0, 0, 0, 0, 7]);
    v4.extend([1, 9, 2]);
    let m = Minute::decode(&v4).unwrap();
    assert_eq!(
        (
            m.invocations,
            m.memory_limit_mb,
            m.max_provision_utilization_permille
        ),
        (2, 100, 7)
    );
    assert_eq!(m.latency.as_slice(), [(9, 2)]);
}

#[test]
fn merging_bytes_is_merging_what_they_decode_to() {
    let mut base = Minute::of(&call(12, Outcome::ServerError));
    base.merge(&Minute::of(&call(700, Outcome::Ok)));
    let others = [
        Minute::of(&call(3, Outcome::FunctionError)),
        Minute::of_async(AsyncStep::Dequeued {
            wait_us: 9,
            backlog: 4,
        }),
        base.clone(),
        Minute::default(),
    ];
    for other in &others {
        let mut want = base.clone();
        want.merge(other);
        let mut got = base.clone();
        assert!(got.merge_encoded(&other.to_bytes()));
        assert_eq!(got, want);
    }
    // bytes that are not an aggregate change nothing
    let mut got = base.clone();
    let b = others[0].to_bytes();
    assert!(!got.merge_encoded(&b[..b.len() - 1]));
    assert!(!got.merge_encoded(&[9, 0, 0]));
    assert_eq!(got, base);
}
