//! Tests of opening, tuning and the format checks in `store`.

use std::sync::Arc;

use super::*;
use crate::model::{KeyValue, Process, Span, SpanId, SpanKind, TraceId, Value};
use keys::IndexPrefix;

fn span(trace: u128, id: u64, service: &str, op: &str, start: u64, duration: u64) -> Span {
    Span {
        trace_id: TraceId(trace),
        span_id: SpanId(id),
        operation_name: op.into(),
        references: vec![],
        flags: 1,
        start_time: start,
        duration,
        tags: vec![KeyValue::new("span.kind", Value::Str("server".into()))],
        logs: vec![],
        process: Arc::new(Process {
            service_name: service.into(),
            tags: vec![],
        }),
    }
}

fn open(dir: &Path) -> Store {
    let opts = StoreOptions {
        sync_writes: false,
        ..StoreOptions::default()
    };
    Store::open(dir, &opts).unwrap()
}

#[test]
fn catalog_comes_back_from_meta_without_spans() {
    let dir = tempfile::tempdir().unwrap();
    let now = crate::clock::now_us();
    {
        let store = open(dir.path());
        let b = encode(
            0,
            &[
                span(1, 1, "a", "op1", now, 5),
                span(2, 1, "b", "op2", now, 5),
            ],
        );
        store.commit(&[&b]).unwrap();
        // Remove every span and index entry: only `meta` can name the services now.
        for cf in [CF_SPANS, CF_POSTINGS] {
            store
                .db
                .delete_range_cf(store.cf(cf), [0u8].as_slice(), [0xffu8; 64].as_slice())
                .unwrap();
        }
    }
    let store = open(dir.path());
    assert_eq!(store.services(0), vec!["a".to_string(), "b".to_string()]);
    assert_eq!(
        store.operations(0, "a"),
        vec![("op1".to_string(), SpanKind::Server)]
    );
    assert!(store.trace(0, TraceId(1)).unwrap().is_empty());
}

fn scan(store: &Store, term: &IndexPrefix, d: Option<(u64, u64)>, lo: u64, hi: u64) -> Vec<u128> {
    let mut seen = Vec::new();
    store
        .scan_index(term, d, lo, hi, |_, t| {
            seen.push(t.0);
            true
        })
        .unwrap();
    seen
}

#[test]
fn index_scans_are_newest_first_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let now = crate::clock::now_us();
    let sec = keys::POSTING_BUCKET_US;
    // five traces, two seconds apart, durations 10..50
    let spans: Vec<Span> = (1..=5u64)
        .map(|i| {
            span(
                i as u128,
                1,
                "svc",
                "op",
                now - 20 * sec + i * 2 * sec,
                i * 10,
            )
        })
        .collect();
    store.commit(&[&encode(0, &spans)]).unwrap();
    let svc = IndexPrefix::service(0, "svc");
    assert_eq!(
        scan(&store, &svc, None, now - 15 * sec, now - 11 * sec),
        vec![4, 3]
    );
    assert_eq!(scan(&store, &svc, None, 0, u64::MAX), vec![5, 4, 3, 2, 1]);
    assert_eq!(
        scan(&store, &svc, Some((20, 40)), 0, u64::MAX),
        vec![4, 3, 2]
    );
    let op = IndexPrefix::operation(0, "svc", "op");
    assert_eq!(scan(&store, &op, Some((41, 1000)), 0, u64::MAX), vec![5]);
    let tag = IndexPrefix::tag(0, "svc", "span.kind", "server");
    assert_eq!(scan(&store, &tag, None, 0, u64::MAX), vec![5, 4, 3, 2, 1]);
    assert!(scan(&store, &IndexPrefix::service(0, "other"), None, 0, u64::MAX).is_empty());
    // a second group's blocks are found beside the first's, newest first in a bucket
    store
        .commit(&[&encode(
            0,
            &[span(9, 1, "svc", "op", now - 20 * sec + 10 * sec + 1, 5)],
        )])
        .unwrap();
    assert_eq!(
        scan(&store, &svc, None, now - 11 * sec, now - 9 * sec),
        vec![9, 5]
    );
}

/// Hits of `term` in an encoded batch's posting blocks (as `merge` writes them).
fn hits_in(b: &EncodedBatch, term: &IndexPrefix) -> usize {
    let h = term.term_hash();
    let mut hits = Vec::new();
    for p in b.postings.iter().filter(|p| p.shard == keys::shard_of(h)) {
        // as `merge` writes it: the base (0) in front
        let mut block = vec![0];
        block.extend_from_slice(&b.buf[p.range.0..p.range.1]);
        postings::lookup(
            &block,
            postings::Layout::Columns,
            keys::hash_bits(h),
            &mut hits,
        )
        .unwrap();
    }
    hits.len()
}

#[test]
fn tags_repeated_down_a_trace_are_entered_once_per_service_and_second() {
    let now = crate::clock::now_us();
    let sec = keys::POSTING_BUCKET_US;
    let t = now - now % sec;
    let with = |mut s: Span, tags: &[(&str, i64)]| {
        s.tags = tags
            .iter()
            .map(|(k, v)| KeyValue::new(*k, Value::I64(*v)))
            .collect();
        s
    };
    // one trace: three spans of svc in one second (the third's second tag differs and
    // its first is gone), one of another service between them, one in the next second
    let spans = vec![
        with(span(7, 1, "svc", "op", t + 1, 5), &[("k", 1), ("x", 1)]),
        with(span(7, 2, "svc", "op", t + 2, 5), &[("k", 1), ("x", 1)]),
        with(span(7, 3, "other", "op", t + 3, 5), &[("k", 1), ("x", 1)]),
        with(span(7, 4, "svc", "op", t + 4, 5), &[("x", 2), ("k", 1)]),
        with(
            span(7, 5, "svc", "op", t + sec + 1, 5),
            &[("k", 1), ("x", 1)],
        ),
    ];
    let b = encode(0, &spans);
    let tag = |service, key, value| IndexPrefix::tag(0, service, key, value);
    assert_eq!(hits_in(&b, &tag("svc", "k", "1")), 2, "one a second");
    assert_eq!(hits_in(&b, &tag("svc", "x", "1")), 2, "one a second");
    assert_eq!(hits_in(&b, &tag("svc", "x", "2")), 1);
    assert_eq!(hits_in(&b, &tag("other", "k", "1")), 1);
    assert_eq!(hits_in(&b, &tag("other", "x", "1")), 1);
    assert_eq!(hits_in(&b, &tag("svc", "k", "2")), 0);
}

#[test]
fn postings_hold_one_entry_per_trace_term_and_second() {
    let now = crate::clock::now_us();
    let sec = keys::POSTING_BUCKET_US;
    let t = now - now % sec;
    // one trace, three spans in one second and one in the next, same service and tag
    let mut spans: Vec<Span> = [t + 30, t + 10, t + 20, t + sec + 5]
        .iter()
        .enumerate()
        .map(|(i, start)| span(7, i as u64 + 1, "svc", "op", *start, 5))
        .collect();
    spans.push(span(8, 1, "svc", "op", t + 15, 5));
    let b = encode(0, &spans);
    let tables: Vec<&postings::Part> = b
        .postings
        .iter()
        .filter(|p| p.shard == keys::TABLE_SHARD)
        .collect();
    assert_eq!(tables.len(), 2, "one table per second");
    // the first second: traces 7 (earliest start t+10) and 8
    let first = &b.buf[tables[0].range.0..tables[0].range.1];
    assert_eq!(postings::table_entry(first, 0), Some((TraceId(7), t + 10)));
    assert_eq!(postings::table_entry(first, 1), Some((TraceId(8), t + 15)));
    assert_eq!(postings::table_entry(first, 2), None);
    // the service term: one hit per trace in each second
    assert_eq!(hits_in(&b, &IndexPrefix::service(0, "svc")), 3);
}

#[test]
fn formats_5_to_7_open_keep_their_term_filter_and_read_old_postings_as_fixed() {
    for format in [5u32, 6, 7] {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(dir.path());
            let meta = store.cf(CF_META);
            store
                .db
                .put_cf(meta, keys::format_version_key(), format.to_be_bytes())
                .unwrap();
            store
                .db
                .put_cf(meta, keys::terms_from_key(), 1234u64.to_be_bytes())
                .unwrap();
            // formats before 8 have no column layout
            store.db.delete_cf(meta, keys::columns_from_key()).unwrap();
        }
        let store = open(dir.path());
        assert_eq!(store.terms_from, 1234, "the filter's start is kept");
        // groups from the next one on are in columns, the ones before are not
        let next = store.seq.load(Ordering::Relaxed) + 1;
        assert_eq!(store.layout_of(next), postings::Layout::Columns);
        assert_eq!(store.layout_of(next - 1), postings::Layout::Fixed);
        drop(store);
        let store = open(dir.path());
        assert_eq!(store.layout_of(next - 1), postings::Layout::Fixed, "kept");
        let v = store
            .db
            .get_cf(store.cf(CF_META), keys::format_version_key())
            .unwrap()
            .unwrap();
        assert_eq!(v, 10u32.to_be_bytes(), "marked as the current format");
    }
}

#[test]
fn unknown_format_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        store
            .db
            .put_cf(
                store.cf(CF_META),
                keys::format_version_key(),
                99u32.to_be_bytes(),
            )
            .unwrap();
    }
    let opts = StoreOptions::default();
    let err = Store::open(dir.path(), &opts).err().unwrap().to_string();
    assert!(err.contains("format version 99"), "{err}");
}

#[test]
fn metric_aggregates_count_once_pending_folded_or_left_by_a_crash() {
    use crate::monitor::minute::Minute;
    let dir = tempfile::tempdir().unwrap();
    let series = keys::metric_series(0, b'P', &["svc", "server", "op"]);
    let other = keys::metric_series(0, b'P', &["svc", "server", "other"]);
    let prefix = keys::metric_series(0, b'P', &["svc"]);
    let commit = |store: &Store, series: &[u8], minute: u64, calls: u64| {
        let mut b = EncodedBatch::empty(0);
        let m = Minute {
            invocations: calls,
            ..Minute::default()
        };
        b.add_metric(&keys::metric_key(series, minute), &m.to_bytes());
        store.commit(&[&b]).unwrap();
    };
    let calls = |store: &Store| -> Vec<(u64, u64)> {
        let values = store.metric_values(&series, 0, 100).unwrap();
        values
            .iter()
            .map(|(m, v)| (*m, Minute::decode(v).unwrap().invocations))
            .collect()
    };
    let scanned = |store: &Store| -> Vec<(Vec<u8>, u64)> {
        let mut out = Vec::new();
        store
            .metric_scan(&prefix, |k, v| {
                out.push((k.to_vec(), Minute::decode(v).unwrap().invocations));
                true
            })
            .unwrap();
        out
    };
    let want_scan = |a5: u64| {
        // series are length-prefixed: "op" before "other"
        vec![
            (keys::metric_key(&series, 5), a5),
            (keys::metric_key(&series, 6), 1),
            (keys::metric_key(&other, 5), 4),
        ]
    };
    {
        let store = open(dir.path());
        commit(&store, &series, 5, 2);
        commit(&store, &series, 5, 3);
        commit(&store, &series, 6, 1);
        commit(&store, &other, 5, 4);
        // pending only
        assert_eq!(calls(&store), [(5, 5), (6, 1)]);
        assert_eq!(scanned(&store), want_scan(5));
        // stored only
        store.fold_metrics().unwrap();
        assert_eq!(calls(&store), [(5, 5), (6, 1)]);
        assert_eq!(scanned(&store), want_scan(5));
        // stored and pending; then a commit that folds (as a second later) in its write
        commit(&store, &series, 5, 10);
        assert_eq!(calls(&store), [(5, 15), (6, 1)]);
        store.pending.lock().unwrap().backdate();
        commit(&store, &series, 6, 100);
        assert_eq!(calls(&store), [(5, 15), (6, 101)]);
        assert_eq!(scanned(&store), {
            let mut w = want_scan(15);
            w[1].1 = 101;
            w
        });
        commit(&store, &series, 7, 1);
        // dropped without `flush`: the last two commits are only in the journal
    }
    let store = open(dir.path());
    assert_eq!(calls(&store), [(5, 15), (6, 101), (7, 1)]);
    store.flush().unwrap();
    drop(store);
    let store = open(dir.path());
    assert_eq!(calls(&store), [(5, 15), (6, 101), (7, 1)]);
}

#[test]
fn a_fold_cut_short_is_counted_once_after_a_crash() {
    use crate::monitor::minute::Minute;
    let dir = tempfile::tempdir().unwrap();
    let series = |i: u64| keys::metric_series(0, b'P', &["svc", "server", &format!("op{i}")]);
    let calls = |store: &Store| -> Vec<u64> {
        (0..4)
            .map(|i| {
                let v = store.metric_values(&series(i), 5, 5).unwrap();
                v.iter()
                    .map(|(_, v)| Minute::decode(v).unwrap().invocations)
                    .sum()
            })
            .collect()
    };
    let agg = |calls: u64| {
        Minute {
            invocations: calls,
            ..Minute::default()
        }
        .to_bytes()
    };
    {
        let store = open(dir.path());
        for i in 0..4 {
            let mut b = EncodedBatch::empty(0);
            b.add_metric(&keys::metric_key(&series(i), 5), &agg(i + 1));
            store.commit(&[&b]).unwrap();
        }
        // what a fold of all four leaves when it dies after its first write, made by
        // hand (this store's memory does not know of it: it is not read here)
        let upto = store.seq.load(Ordering::Relaxed) + 1;
        let mut wb = rocksdb::WriteBatch::default();
        for i in 0..2 {
            wb.merge_cf(
                store.cf(CF_METRICS),
                keys::metric_key(&series(i), 5),
                agg(i + 1),
            );
        }
        let last = keys::metric_key(&series(1), 5);
        wb.put_cf(
            store.cf(CF_META),
            keys::metrics_folded_key(),
            journal::mark(upto, Some(&last)),
        );
        store.db.write(wb).unwrap();
    }
    let store = open(dir.path());
    assert_eq!(calls(&store), [1, 2, 3, 4]);
    store.flush().unwrap();
    drop(store);
    let store = open(dir.path());
    assert_eq!(calls(&store), [1, 2, 3, 4]);
}
