//! Tests of the key layouts in `keys`.

use super::*;

#[test]
fn span_keys_round_trip_and_sort_by_time() {
    let t = TraceId::from_parts(1, 2);
    let a = span_key(DEFAULT_TENANT, t, 10, SpanId(5));
    let b = span_key(DEFAULT_TENANT, t, 11, SpanId(1));
    assert!(a < b);
    assert_eq!(parse_span_key(&a), Some((t, 10, SpanId(5))));
    let numbered = set_chunk(&a, 7);
    assert_eq!(&numbered[..SPAN_KEY_LEN_V2], &a[..SPAN_KEY_LEN_V2]);
    assert!(numbered > a && numbered < b);
    assert_eq!(parse_span_key(&numbered), Some((t, 10, SpanId(5))));
    assert_eq!(
        parse_span_key(&a[..SPAN_KEY_LEN_V2]),
        Some((t, 10, SpanId(5)))
    );
    assert_eq!(parse_span_key(&a[..SPAN_KEY_LEN_V2 - 1]), None);
    assert!(a.starts_with(&trace_prefix(DEFAULT_TENANT, t)));
}

#[test]
fn terms_do_not_collide_and_posting_keys_are_newest_first() {
    let p = IndexPrefix::tag(DEFAULT_TENANT, "svc", "ab", "c");
    let q = IndexPrefix::tag(DEFAULT_TENANT, "svc", "a", "bc");
    assert_ne!(p, q);
    assert_ne!(p.term_hash(), q.term_hash());
    assert_eq!(IndexPrefix::service(7, "svc").tenant(), 7);
    let newer = posting_key(1, 3, 200, 5);
    let older = posting_key(1, 3, 100, 9);
    let later_same_bucket = posting_key(1, 3, 200, 6);
    assert!(later_same_bucket < newer && newer < older);
    // a bucket's blocks of every shard, its table last, come before any older bucket
    let other_shard = posting_key(1, 4, 200, 1);
    let table = posting_key(1, TABLE_SHARD, 200, 5);
    assert!(newer < other_shard && other_shard < table && table < older);
    let seek = posting_seek(1, 3, 200);
    assert!(seek.as_slice() < later_same_bucket.as_slice());
    assert!(later_same_bucket.starts_with(&seek) && !other_shard.starts_with(&seek));
    assert!(older.as_slice() < posting_upper_bound(1).as_slice());
    assert!(posting_key(2, 0, u64::MAX, u64::MAX).as_slice() >= posting_upper_bound(1).as_slice());
    assert_eq!(parse_posting_key(&older), Some((3, 100, 9)));
    assert_eq!(parse_posting_key(&older[..5]), None);
    let last = posting_key(u16::MAX, u16::MAX, 0, 0);
    assert!(last.as_slice() < posting_upper_bound(u16::MAX).as_slice());
}

#[test]
fn format_3_posting_keys_move_to_the_time_first_layout() {
    // tenant 1, shard 3, bucket 100, seq 9 as format 3 wrote it
    let mut v3 = Vec::new();
    v3.extend_from_slice(&1u16.to_be_bytes());
    v3.extend_from_slice(&3u16.to_be_bytes());
    v3.extend_from_slice(&(!100u64).to_be_bytes());
    v3.extend_from_slice(&(!9u64).to_be_bytes());
    assert_eq!(posting_key_from_v3(&v3), Some(posting_key(1, 3, 100, 9)));
    assert_eq!(posting_key_from_v3(&v3[..19]), None);
}

#[test]
fn invocation_keys_give_their_time() {
    let k = invocation_key(3, "svc", "fn-a", 1_234_567, "req-1");
    assert_eq!(invocation_key_time(&k), Some(1_234_567));
    assert_eq!(invocation_key_time(&k[..6]), None);
    assert_eq!(invocation_key_time(&[]), None);
}

#[test]
fn meta_keys_round_trip() {
    let k = meta_operation_key(3, "svc:a", "GET /x", SpanKind::Server);
    assert_eq!(
        parse_meta_key(&k),
        Some(MetaEntry::Operation(
            3,
            "svc:a".into(),
            "GET /x".into(),
            SpanKind::Server
        ))
    );
    let k = meta_service_key(0, "svc");
    assert_eq!(
        parse_meta_key(&k),
        Some(MetaEntry::Service(0, "svc".into()))
    );
    assert_eq!(parse_meta_key(&[0, 0, b'o', 0, 0, 0, 9]), None);
}

#[test]
fn long_strings_are_cut_in_index_keys() {
    let long = "x".repeat(MAX_INDEXED_LEN + 10);
    let p = IndexPrefix::service(DEFAULT_TENANT, &long);
    assert_eq!(p.len(), 2 + 1 + 2 + MAX_INDEXED_LEN);
}

#[test]
fn request_id_keys_never_look_like_records_and_carry_their_time() {
    let rec = invocation_key(DEFAULT_TENANT, "svc", "fn", 42, "req-1");
    let id = request_id_key(DEFAULT_TENANT, "req-1", 42);
    assert!(id.starts_with(&request_id_prefix(DEFAULT_TENANT, "req-1")));
    assert!(!id.starts_with(&invocation_prefix(DEFAULT_TENANT, "svc", "fn")));
    assert_eq!(invocation_key_time(&rec), Some(42));
    assert_eq!(invocation_key_time(&id), Some(42));
    // a request id that is a prefix of another names only its own key
    assert!(!request_id_key(DEFAULT_TENANT, "req-10", 1)
        .starts_with(&request_id_prefix(DEFAULT_TENANT, "req-1")));
}
