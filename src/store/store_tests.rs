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
    let h = IndexPrefix::service(0, "svc").term_hash();
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
    assert_eq!(hits.len(), 3);
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
        assert_eq!(v, 8u32.to_be_bytes(), "marked as the current format");
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
