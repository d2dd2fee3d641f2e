//! Tests of `codec`: chunks written exactly as prost writes them, read back whole, and
//! older formats still read.
use super::*;

#[test]
fn round_trip_keeps_everything() {
    let span = Span {
        trace_id: TraceId::from_parts(7, 8),
        span_id: SpanId(9),
        operation_name: "op".into(),
        references: vec![SpanRef {
            ref_type: RefType::FollowsFrom,
            trace_id: TraceId(3),
            span_id: SpanId(4),
        }],
        flags: 3,
        start_time: 1_700_000_000_000_000,
        duration: 1234,
        tags: vec![
            KeyValue::new("s", Value::Str("x".into())),
            KeyValue::new("b", Value::Bool(false)),
            KeyValue::new("i", Value::I64(-5)),
            KeyValue::new("f", Value::F64(0.5)),
            KeyValue::new("bin", Value::Binary(vec![0, 1, 255])),
            KeyValue::new("", Value::Str(Default::default())),
            KeyValue::new("zero", Value::I64(0)),
        ],
        logs: vec![Log {
            timestamp: 5,
            fields: vec![KeyValue::new("event", Value::Str("e".into()))],
        }],
        process: Arc::new(Process {
            service_name: "svc".into(),
            tags: vec![KeyValue::new("host", Value::Str("h".into()))],
        }),
    };
    let mut other = span.clone();
    other.span_id = SpanId(10);
    other.start_time += 1;
    let key = keys::span_key(0, span.trace_id, span.start_time, span.span_id);
    let (mut raw, mut value) = (Vec::new(), Vec::new());
    encode_chunk([&span, &other].into_iter(), &mut raw, &mut value);
    assert!(value.len() < raw.len(), "compressed");
    let reencoded = proto::StoredChunk::decode(raw.as_slice())
        .unwrap()
        .encode_to_vec();
    assert_eq!(
        reencoded, raw,
        "written exactly as prost writes a StoredChunk"
    );
    assert_eq!(decode_chunk(&key, &value).unwrap(), vec![span, other]);
    assert!(decode_chunk(&key[..10], &value).is_err());
    assert!(decode_chunk(&key, &[0xff, 0xff]).is_err());
    assert!(
        decode_chunk(&key, &[1, 0xff, 0xff, 0xff, 0xff, 0x7f]).is_err(),
        "huge claim"
    );
    assert!(decode_chunk(&key, &value[..value.len() - 3]).is_err());
}

#[test]
fn tags_at_the_edges_of_one_byte_lengths_are_written_as_prost_writes_them() {
    // A tag's body is 2 + key + 2 + value bytes for a string: 123 bytes of key and value
    // make 127 (one byte of length), 124 make 128 (two). Integers take 1 to 10 bytes.
    let mut tags = Vec::new();
    for total in [1usize, 60, 122, 123, 124, 125, 200] {
        for key_len in [1, total / 2, total.saturating_sub(1)] {
            let key_len = key_len.clamp(1, total.max(1));
            let key = "k".repeat(key_len);
            let value = "v".repeat(total - key_len.min(total));
            tags.push(KeyValue::new(
                key.as_str(),
                Value::Str(value.as_str().into()),
            ));
        }
    }
    for key_len in [1usize, 120, 121, 122, 123, 124, 130] {
        let key = "b".repeat(key_len);
        tags.push(KeyValue::new(key.as_str(), Value::Bool(true)));
        tags.push(KeyValue::new(key.as_str(), Value::Bool(false)));
        for i in [0i64, 1, 127, 128, -1, i64::MAX, i64::MIN] {
            tags.push(KeyValue::new(key.as_str(), Value::I64(i)));
        }
    }
    // no key (prost leaves the field out), and values the short path does not take
    tags.push(KeyValue::new("", Value::Str("x".into())));
    tags.push(KeyValue::new("", Value::I64(5)));
    tags.push(KeyValue::new("f", Value::F64(-0.0)));
    tags.push(KeyValue::new("bin", Value::Binary(vec![1, 2])));
    let span = Span {
        trace_id: TraceId(1),
        span_id: SpanId(2),
        operation_name: "o".into(),
        references: vec![],
        flags: 0,
        start_time: 1_700_000_000_000_000,
        duration: 1,
        tags,
        logs: vec![Log {
            timestamp: 1_700_000_000_000_001,
            fields: vec![KeyValue::new("event", Value::Str("e".into()))],
        }],
        process: Arc::new(Process {
            service_name: "s".into(),
            tags: vec![KeyValue::new("host", Value::I64(300))],
        }),
    };
    written_as_prost_and_read_back(&[&span]);
}

/// Encode `spans` as one chunk: the bytes must be exactly prost's, and decode to them.
fn written_as_prost_and_read_back(spans: &[&Span]) {
    let first = spans[0];
    let key = keys::span_key(0, first.trace_id, first.start_time, first.span_id);
    let (mut raw, mut value) = (Vec::new(), Vec::new());
    encode_chunk(spans.iter().copied(), &mut raw, &mut value);
    let reencoded = proto::StoredChunk::decode(raw.as_slice())
        .unwrap()
        .encode_to_vec();
    assert_eq!(reencoded, raw, "written exactly as prost writes it");
    let want: Vec<Span> = spans.iter().map(|&s| s.clone()).collect();
    assert_eq!(decode_chunk(&key, &value).unwrap(), want);
}

#[test]
fn lengths_of_every_size_are_written_as_prost_writes_them() {
    let process = Arc::new(Process {
        service_name: "s".into(),
        tags: vec![],
    });
    let tiny = Span {
        trace_id: TraceId(1),
        span_id: SpanId(2),
        operation_name: "o".into(),
        references: vec![],
        flags: 0,
        start_time: 1_700_000_000_000_000,
        duration: 1,
        tags: vec![],
        logs: vec![],
        process: Arc::clone(&process),
    };
    // a tag of 200 bytes (two bytes of length), a span of over 16 KiB (three), a log
    // over 127 bytes, a process of over 127 bytes
    let mut big = tiny.clone();
    big.span_id = SpanId(3);
    big.tags = vec![KeyValue::new(
        "long",
        Value::Str("x".repeat(200).as_str().into()),
    )];
    let mut huge = tiny.clone();
    huge.span_id = SpanId(4);
    huge.tags = vec![KeyValue::new("blob", Value::Binary(vec![7; 20_000]))];
    huge.logs = vec![Log {
        timestamp: huge.start_time + 1,
        fields: vec![KeyValue::new(
            "event",
            Value::Str("e".repeat(150).as_str().into()),
        )],
    }];
    huge.process = Arc::new(Process {
        service_name: "p".repeat(130).as_str().into(),
        tags: vec![],
    });
    for spans in [vec![&tiny], vec![&tiny, &big], vec![&big, &huge, &tiny]] {
        written_as_prost_and_read_back(&spans);
    }
}

fn span(trace: TraceId, id: u64, start: u64, process: &Arc<Process>) -> Span {
    Span {
        trace_id: trace,
        span_id: SpanId(id),
        operation_name: format!("op{id}"),
        references: vec![],
        flags: 1,
        start_time: start,
        duration: 10,
        tags: vec![KeyValue::new("k", Value::I64(id as i64))],
        logs: vec![],
        process: Arc::clone(process),
    }
}

#[test]
fn relative_chunks_give_back_processes_times_and_references_exactly() {
    let trace = TraceId::from_parts(0, 0xabc);
    let a = Arc::new(Process {
        service_name: "a".into(),
        tags: vec![KeyValue::new("host", Value::Str("h1".into()))],
    });
    // equal to `a` but not the same allocation, as two batches of one trace give
    let a2 = Arc::new((*a).clone());
    let b = Arc::new(Process {
        service_name: "b".into(),
        tags: vec![],
    });
    let t0 = 1_700_000_000_000_000;
    let mut spans = vec![
        span(trace, 1, t0, &a),
        span(trace, 2, t0 + 5, &a2),
        span(trace, 3, t0 + 5, &b),
        span(trace, 4, t0 + 900_000, &a),
    ];
    spans[1].references = vec![
        SpanRef {
            ref_type: RefType::ChildOf,
            trace_id: trace,
            span_id: SpanId(1),
        },
        // a reference to trace id 0 and to another trace stay what they were
        SpanRef {
            ref_type: RefType::FollowsFrom,
            trace_id: TraceId(0),
            span_id: SpanId(77),
        },
        SpanRef {
            ref_type: RefType::FollowsFrom,
            trace_id: TraceId::from_parts(5, 6),
            span_id: SpanId(78),
        },
    ];
    // logs before, at and after the span's start
    spans[2].logs = [t0 - 3_000_000, t0 + 5, t0 + 60_000_000, 0]
        .into_iter()
        .map(|timestamp| Log {
            timestamp,
            fields: vec![KeyValue::new("event", Value::Str("e".into()))],
        })
        .collect();
    let key = keys::span_key(0, trace, t0, SpanId(1));
    let (mut raw, mut value) = (Vec::new(), Vec::new());
    encode_chunk(spans.iter(), &mut raw, &mut value);
    assert_eq!(value[0], FORMAT_ZSTD_CHUNK_RELATIVE);
    let back = decode_chunk(&key, &value).unwrap();
    assert_eq!(back, spans);
    // the processes a chunk leaves out come back shared
    assert!(Arc::ptr_eq(&back[0].process, &back[1].process));
    assert!(!Arc::ptr_eq(&back[1].process, &back[3].process));

    // what was left out: the second span's process, its own trace in a reference
    let stored = proto::StoredChunk::decode(raw.as_slice()).unwrap();
    let present: Vec<bool> = stored.spans.iter().map(|s| s.process.is_some()).collect();
    assert_eq!(present, [true, false, true, true]);
    let r = &stored.spans[1].references[0];
    assert_eq!((r.trace_id_high, r.trace_id_low), (0, 0));
    assert_eq!(stored.spans[0].start_time, 0);
    assert_eq!(stored.spans[3].start_time, 900_000);
}

#[test]
fn chunks_of_format_one_are_still_read() {
    // a format-1 value as earlier builds wrote it: every field absolute
    let trace = TraceId::from_parts(1, 2);
    let stored = proto::StoredChunk {
        spans: vec![proto::StoredSpan {
            span_id: 9,
            start_time: 1_700_000_000_000_123,
            operation_name: "op".into(),
            references: vec![proto::SpanRef {
                ref_type: 0,
                trace_id_high: 1,
                trace_id_low: 2,
                span_id: 8,
            }],
            flags: 1,
            duration: 5,
            tags: vec![],
            logs: vec![proto::Log {
                timestamp: 1_700_000_000_000_200,
                fields: vec![],
            }],
            process: Some(proto::Process {
                service_name: "svc".into(),
                tags: vec![],
            }),
        }],
    };
    let raw = stored.encode_to_vec();
    let mut value = vec![FORMAT_ZSTD_CHUNK];
    prost::encoding::encode_varint(raw.len() as u64, &mut value);
    value.extend_from_slice(&zstd::bulk::compress(&raw, 1).unwrap());
    let key = keys::span_key(0, trace, 1_700_000_000_000_123, SpanId(9));
    let spans = decode_chunk(&key, &value).unwrap();
    assert_eq!(spans.len(), 1);
    let s = &spans[0];
    assert_eq!(s.start_time, 1_700_000_000_000_123);
    assert_eq!(s.logs[0].timestamp, 1_700_000_000_000_200);
    assert_eq!(s.references[0].trace_id, trace);
    assert_eq!(s.process.service_name, "svc");
}
