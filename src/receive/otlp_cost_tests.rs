//! Tests of `otlp_cost`: the wire scan against the struct count, the caps, malformed
//! bytes.
use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

use super::*;

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(opentelemetry_proto::tonic::resource::v1::Resource {
                attributes: vec![kv(
                    "service.name",
                    any_value::Value::StringValue("s".into()),
                )],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn nested(depth: usize) -> AnyValue {
    let mut v = AnyValue {
        value: Some(any_value::Value::IntValue(1)),
    };
    for i in 0..depth {
        v = if i % 2 == 0 {
            AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue { values: vec![v] })),
            }
        } else {
            AnyValue {
                value: Some(any_value::Value::KvlistValue(KeyValueList {
                    values: vec![KeyValue {
                        key: "k".into(),
                        value: Some(v),
                        ..Default::default()
                    }],
                })),
            }
        };
    }
    v
}

#[test]
fn scopes_with_attributes_are_charged_their_copy_of_the_resource() {
    // a 100 KiB resource and 1,000 scopes of one attribute each: each such scope gets
    // a process of its own, so the request costs ~100 MB, whichever decoder reads it
    let mut req = request(vec![]);
    let rs = &mut req.resource_spans[0];
    if let Some(r) = rs.resource.as_mut() {
        for i in 0..100 {
            r.attributes.push(kv(
                &format!("k{i}"),
                any_value::Value::StringValue("x".repeat(1024)),
            ));
        }
    }
    rs.scope_spans = (0..1000)
        .map(|_| ScopeSpans {
            scope: Some(
                opentelemetry_proto::tonic::common::v1::InstrumentationScope {
                    attributes: vec![kv("team", any_value::Value::StringValue("a".into()))],
                    ..Default::default()
                },
            ),
            ..Default::default()
        })
        .collect();
    let limits = Limits::default();
    let wire = scan_protobuf(&req.encode_to_vec(), &limits).unwrap();
    assert!(wire.bytes() > 100_000_000, "{}", wire.bytes());
    let json = count_request(&req, &limits).unwrap();
    assert!(json.bytes() > 100_000_000, "{}", json.bytes());
}

#[test]
fn wire_scan_and_struct_count_agree() {
    let span = Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        attributes: vec![
            kv("a", any_value::Value::StringValue("x".into())),
            KeyValue {
                key: "n".into(),
                value: Some(nested(3)),
                ..Default::default()
            },
        ],
        events: vec![Default::default(), Default::default()],
        links: vec![Default::default()],
        ..Default::default()
    };
    let req = request(vec![span.clone(), span]);
    let limits = Limits::default();
    let body = req.encode_to_vec();
    let wire = scan_protobuf(&body, &limits).unwrap();
    let structs = count_request(&req, &limits).unwrap();
    assert_eq!(wire.spans, 2);
    assert_eq!((wire.events, wire.links, wire.groups), (4, 2, 1));
    // service.name + 2 × (2 attributes + 3 nested values)
    assert_eq!(wire.key_values, 1 + 2 * 5);
    assert_eq!(structs.spans, 2);
    assert_eq!(structs.key_values, wire.key_values);
    assert!(wire.bytes() >= 2 * SPAN_COST);
}

#[test]
fn caps_are_checked_on_the_wire() {
    let limits = Limits {
        max_spans: 3,
        max_tags: 2,
        max_logs: 1,
        max_depth: 4,
    };
    let many = request(vec![Span::default(); 4]).encode_to_vec();
    assert_eq!(
        scan_protobuf(&many, &limits).unwrap_err(),
        ScanError::Limit(LimitError::Spans { limit: 3 })
    );
    let tags = request(vec![Span {
        attributes: vec![kv("a", any_value::Value::BoolValue(true)); 3],
        ..Default::default()
    }])
    .encode_to_vec();
    assert!(matches!(
        scan_protobuf(&tags, &limits).unwrap_err(),
        ScanError::Limit(LimitError::Tags { n: 3, limit: 2, .. })
    ));
    let events = request(vec![Span {
        events: vec![Default::default(); 2],
        ..Default::default()
    }])
    .encode_to_vec();
    assert!(matches!(
        scan_protobuf(&events, &limits).unwrap_err(),
        ScanError::Limit(LimitError::Logs { n: 2, limit: 1 })
    ));
    let deep = request(vec![Span {
        attributes: vec![KeyValue {
            key: "d".into(),
            value: Some(nested(5)),
            ..Default::default()
        }],
        ..Default::default()
    }]);
    assert_eq!(
        scan_protobuf(&deep.encode_to_vec(), &limits).unwrap_err(),
        ScanError::Limit(LimitError::Depth { limit: 4 })
    );
    assert_eq!(
        count_request(&deep, &limits).unwrap_err(),
        LimitError::Depth { limit: 4 }
    );
}

#[test]
fn malformed_wire_is_an_error_not_a_panic() {
    let body = request(vec![Span::default(); 2]).encode_to_vec();
    for end in 0..body.len() {
        let _ = scan_protobuf(&body[..end], &Limits::default());
    }
    assert!(scan_protobuf(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f], &Limits::default()).is_err());
    assert!(scan_protobuf(&[0x0b], &Limits::default()).is_err());
}

#[test]
fn plain_attributes_are_known_without_walking_them() {
    let limits = Limits::default();
    let walk = |b: &[u8]| {
        let mut c = Counter::new(&limits);
        key_value(&mut c, b, 0, 0).map(|()| (c.key_values, c.nested_bytes))
    };
    let ten_bytes = [0xff; 9];
    let mut max_int = vec![0x0a, 1, b'k', 0x12, 11, 0x18];
    max_int.extend(ten_bytes);
    max_int.push(0x01);
    let plain: [&[u8]; 5] = [
        &[0x0a, 1, b'k', 0x12, 3, 0x0a, 1, b'v'],
        &[0x0a, 1, b'k', 0x12, 2, 0x10, 1],
        &[0x0a, 1, b'k', 0x12, 3, 0x18, 0x96, 0x01],
        &max_int,
        &[0x0a, 1, b'k', 0x12, 9, 0x21, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f],
    ];
    for b in plain {
        assert!(plain_key_value(b), "{b:?}");
        assert_eq!(walk(b), Ok((0, 0)), "{b:?}");
    }
    let mut past_64_bits = max_int.clone();
    *past_64_bits.last_mut().unwrap() = 0x02;
    let malformed: [&[u8]; 3] = [
        // a varint cut short, one past 64 bits, a string longer than its value
        &[0x0a, 1, b'k', 0x12, 2, 0x18, 0x80],
        &past_64_bits,
        &[0x0a, 1, b'k', 0x12, 3, 0x0a, 2, b'v'],
    ];
    for b in malformed {
        assert!(!plain_key_value(b), "{b:?}");
        assert!(matches!(walk(b), Err(ScanError::Malformed(_))), "{b:?}");
    }
    // a string, then an array: counted
    let both = [0x0a, 1, b'k', 0x12, 6, 0x0a, 0, 0x2a, 2, 0x0a, 0];
    assert!(!plain_key_value(&both));
    assert_eq!(walk(&both), Ok((1, 2)));
}

#[test]
fn json_values_are_counted_outside_strings() {
    assert_eq!(json_values(br#"[0,0,0]"#), 4);
    assert_eq!(json_values(br#"{"a,b:[{":1}"#), 3);
    assert_eq!(json_values(br#""\",""#), 1);
}
