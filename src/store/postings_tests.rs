//! Tests of the posting builder and merge (`postings`).

use super::*;

#[test]
fn entries_sort_as_a_plain_sort_would() {
    let mut rng = fastrand::Rng::with_seed(7);
    for (n, tables) in [
        (0, 1),
        (100, 1),
        (600, 1),
        (5000, 3),
        (12000, 16),
        (12000, 4),
        (12000, 5),
        (3000, 40),
    ] {
        let keys: Vec<u128> = (0..n)
            .map(|_| {
                // few hashes and traces, so ties and duplicates are common
                let hash = rng.u64(..) & 0xfff0_0000_0000_000f;
                entry_key(rng.u32(..tables), hash, rng.u16(..8))
            })
            .collect();
        let mut want = keys.clone();
        want.sort();
        let mut got = keys.clone();
        sort_bucketed(&mut got, ENTRY_HASH_TOP, |&k| k);
        assert_eq!(got, want, "{n} keys in {tables} tables");
        let mut timed: Vec<(u128, u32)> = keys.iter().map(|&k| (k, rng.u32(..))).collect();
        sort_bucketed(&mut timed, ENTRY_HASH_TOP, |e| e.0);
        assert!(timed.windows(2).all(|w| w[0].0 <= w[1].0));
        let mut firsts: Vec<u128> = timed.iter().map(|e| e.0).collect();
        firsts.sort();
        assert_eq!(firsts, want, "the same entries");
    }
}

#[test]
fn terms_sort_as_a_plain_sort_would() {
    let mut rng = fastrand::Rng::with_seed(9);
    for (n, minutes) in [(100, 2), (5000, 1), (5000, 3), (5000, 16), (5000, 17)] {
        let base = 29_000_000 + rng.u64(..1000);
        let terms: Vec<(u64, u64)> = (0..n)
            .map(|_| {
                (
                    base + rng.u64(..minutes),
                    rng.u64(..) & 0xfff0_0000_0000_0fff,
                )
            })
            .collect();
        let mut want = terms.clone();
        want.sort();
        let mut got = terms;
        sort_bucketed(&mut got, TERM_HASH_TOP, term_key);
        assert_eq!(got, want, "{n} terms over {minutes} minutes");
    }
}

fn term(s: &str) -> IndexPrefix {
    IndexPrefix::service(0, s)
}

/// (trace, start, service, duration) of a span
type TestSpan<'a> = (u128, u64, &'a str, u64);
/// (trace, time, durations) of a hit
type Found = (u128, u64, Option<(u32, u32)>);

#[test]
fn merged_blocks_come_in_key_order() {
    let mut b = Builder::default();
    for i in 0..500u64 {
        let slot = b.slot(
            TraceId(i as u128 + 1),
            i * 7_919 % 500 * keys::POSTING_BUCKET_US,
        );
        b.plain(slot, &IndexPrefix::tag(0, "s", "k", &i.to_string()));
    }
    let mut buf = Vec::new();
    let (parts, _) = b.finish(&mut buf);
    let merged = merged([(0, buf.as_slice(), parts.as_slice())].into_iter(), 1);
    assert!(merged.len() > 500);
    assert!(merged.windows(2).all(|w| w[0].0 < w[1].0));
}

/// Build the batches, merge them as a group and look `t` up in its shard's block.
fn find(batches: &[Vec<TestSpan>], t: &IndexPrefix) -> Vec<Found> {
    let mut built = Vec::new();
    for spans in batches {
        let mut b = Builder::default();
        for &(trace, start, svc, dur) in spans {
            let slot = b.slot(TraceId(trace), start);
            b.timed(slot, &term(svc), dur);
            b.plain(slot, &IndexPrefix::tag(0, svc, "k", "v"));
        }
        let mut buf = Vec::new();
        let (parts, _) = b.finish(&mut buf);
        built.push((buf, parts));
    }
    let merged = merged(
        built.iter().map(|(b, p)| (0, b.as_slice(), p.as_slice())),
        7,
    );
    let h = t.term_hash();
    let mut out = Vec::new();
    for (k, v) in &merged {
        let Some((shard, bucket, seq)) = keys::parse_posting_key(k) else {
            panic!()
        };
        assert_eq!(seq, 7);
        if shard != keys::shard_of(h) {
            continue;
        }
        let table = &merged
            .iter()
            .find(|(k, _)| k[..] == keys::posting_key(0, keys::TABLE_SHARD, bucket, 7))
            .unwrap()
            .1;
        let mut hits = Vec::new();
        lookup(v, Layout::Columns, keys::hash_bits(h), &mut hits).unwrap();
        for hit in hits {
            let (trace, time) = table_entry(table, hit.trace).unwrap();
            out.push((trace.0, time, hit.durations));
        }
    }
    out.sort();
    out
}

#[test]
fn entries_are_found_with_their_trace_time_and_durations() {
    let s = 1_000_000_000u64;
    let got = find(
        &[
            vec![
                (1, s + 30, "a", 5),
                (1, s + 10, "a", 9),
                (2, s + 20, "b", 4),
            ],
            vec![(3, s + 40, "a", 7), (1, s + 50, "a", 2)],
        ],
        &term("a"),
    );
    // trace 1 appears once per batch: each batch's table has its own slot
    assert_eq!(
        got,
        vec![
            (1, s + 10, Some((5, 9))),
            (1, s + 50, Some((2, 2))),
            (3, s + 40, Some((7, 7))),
        ]
    );
    let tag = find(
        &[vec![(1, s, "a", 1), (2, s, "b", 1)]],
        &IndexPrefix::tag(0, "b", "k", "v"),
    );
    assert_eq!(tag, vec![(2, s, None)]);
    assert!(find(&[vec![(1, s, "a", 1)]], &term("zzz")).is_empty());
}

#[test]
fn spans_in_different_seconds_go_to_different_buckets() {
    let s = 1_000_000_000u64;
    let got = find(
        &[vec![
            (1, s, "a", 1),
            (1, s + keys::POSTING_BUCKET_US, "a", 1),
        ]],
        &term("a"),
    );
    assert_eq!(got.len(), 2);
}

#[test]
fn more_traces_in_a_second_than_a_table_holds() {
    let s = 1_000_000_000u64;
    let spans: Vec<TestSpan> = (1..=70_000u128).map(|t| (t, s, "a", 1)).collect();
    let got = find(&[spans], &term("a"));
    assert_eq!(got.len(), 70_000);
    assert_eq!(got[0], (1, s, Some((1, 1))));
    assert_eq!(got[69_999], (70_000, s, Some((1, 1))));
}

#[test]
fn a_sub_block_is_columns_with_the_base_in_front() {
    // one batch: trace 1 with service "a" at durations 5 and 9, trace 2 at 4
    let s = 1_000_000_000u64;
    let mut b = Builder::default();
    for (trace, dur) in [(1u128, 5u64), (1, 9), (2, 4)] {
        let slot = b.slot(TraceId(trace), s);
        b.timed(slot, &term("a"), dur);
    }
    let mut buf = Vec::new();
    let (parts, _) = b.finish(&mut buf);
    let merged = merged([(0, buf.as_slice(), parts.as_slice())].into_iter(), 1);
    let h = keys::hash_bits(term("a").term_hash());
    let block = &merged
        .iter()
        .find(|(k, _)| keys::parse_posting_key(k).unwrap().0 != keys::TABLE_SHARD)
        .unwrap()
        .1;
    let mut want = vec![0, 2, 0, 1]; // base, n_timed, n_plain, spreads_len
    want.extend_from_slice(&h.to_le_bytes());
    want.extend_from_slice(&h.to_le_bytes());
    want.extend_from_slice(&[0, 0, 1, 0]); // slots 0 and 1
    want.extend_from_slice(&5u32.to_le_bytes());
    want.extend_from_slice(&4u32.to_le_bytes());
    want.push(4); // 9 - 5; trace 2's spread of 0 is the one byte counted
    want.push(0);
    want[3] = 2;
    assert_eq!(block, &want);
}
