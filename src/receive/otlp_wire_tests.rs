//! Tests of `otlp_wire`: its answers against the prost path's, on hand-made, real and
//! mutated bodies.
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue as Kv, KeyValueList,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

use super::*;
use crate::receive::otlp_cost::scan_protobuf;
use crate::receive::Limits;

/// prost's answer, as text (a NaN attribute equals itself there), or that it refused.
fn via_prost(body: &[u8]) -> Option<String> {
    let req = ExportTraceServiceRequest::decode(body).ok()?;
    let m = otlp::map_request(req);
    Some(format!("{:?} {:?}", m.spans, m.rejected))
}

fn direct(body: &[u8]) -> Option<String> {
    let m = decode(body, 0).ok()?;
    Some(format!("{:?} {:?}", m.spans, m.rejected))
}

fn kv(key: &str, v: any_value::Value) -> Kv {
    Kv {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn s(x: &str) -> any_value::Value {
    any_value::Value::StringValue(x.into())
}

/// A request using every field the mapping reads, and some it does not.
fn everything() -> ExportTraceServiceRequest {
    let attrs = vec![
        kv("str", s("v")),
        kv("bool", any_value::Value::BoolValue(true)),
        kv("int", any_value::Value::IntValue(-42)),
        kv("double", any_value::Value::DoubleValue(2.5)),
        kv("nan", any_value::Value::DoubleValue(f64::NAN)),
        kv("bytes", any_value::Value::BytesValue(vec![0, 1, 255])),
        kv(
            "array",
            any_value::Value::ArrayValue(ArrayValue {
                values: vec![
                    AnyValue {
                        value: Some(s("a")),
                    },
                    AnyValue {
                        value: Some(any_value::Value::IntValue(1)),
                    },
                    AnyValue { value: None },
                ],
            }),
        ),
        kv(
            "kvlist",
            any_value::Value::KvlistValue(KeyValueList {
                values: vec![kv("inner", s("x")), Kv::default()],
            }),
        ),
        kv("strindex", any_value::Value::StringValueStrindex(3)),
        Kv {
            key: "no value".into(),
            ..Default::default()
        },
        Kv {
            key: "empty value".into(),
            value: Some(AnyValue { value: None }),
            ..Default::default()
        },
    ];
    let good = Span {
        trace_id: vec![7; 16],
        span_id: vec![1; 8],
        parent_span_id: vec![2; 8],
        trace_state: "k=v".into(),
        name: "op".into(),
        kind: 2,
        start_time_unix_nano: 1_700_000_000_123_456_789,
        end_time_unix_nano: 1_700_000_000_223_456_789,
        flags: 0x301,
        attributes: attrs.clone(),
        dropped_attributes_count: 3,
        events: vec![span::Event {
            time_unix_nano: 1_700_000_000_150_000_000,
            name: "ev".into(),
            attributes: vec![kv("e", s("1"))],
            dropped_attributes_count: 1,
        }],
        links: vec![span::Link {
            trace_id: vec![9; 16],
            span_id: vec![8; 8],
            trace_state: "t".into(),
            attributes: vec![kv("l", s("2"))],
            dropped_attributes_count: 0,
            flags: 1,
        }],
        status: Some(Status {
            code: 2,
            message: "boom".into(),
        }),
        ..Default::default()
    };
    let spans = vec![
        good.clone(),
        Span {
            span_id: vec![3; 8],
            parent_span_id: vec![],
            kind: 99,
            flags: 0,
            status: Some(Status {
                code: 1,
                message: String::new(),
            }),
            ..good.clone()
        },
        // refused, each for its own reason
        Span {
            trace_id: vec![1; 3],
            ..good.clone()
        },
        Span {
            end_time_unix_nano: 1,
            ..good.clone()
        },
        Span {
            links: vec![span::Link {
                span_id: vec![1; 2],
                ..Default::default()
            }],
            ..good.clone()
        },
        Span {
            parent_span_id: vec![0; 8],
            status: None,
            ..good.clone()
        },
        Span::default(),
    ];
    ExportTraceServiceRequest {
        resource_spans: vec![
            ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", any_value::Value::IntValue(5)),
                        kv("host", s("h")),
                        kv("service.name", s("svc")),
                        kv("service.name", s("second")),
                    ],
                    ..Default::default()
                }),
                scope_spans: vec![
                    ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: "lib".into(),
                            version: "1.0".into(),
                            attributes: vec![kv("scope.attr", s("z"))],
                            dropped_attributes_count: 0,
                        }),
                        spans,
                        schema_url: "https://example.com/schema".into(),
                    },
                    ScopeSpans {
                        scope: None,
                        spans: vec![good.clone()],
                        ..Default::default()
                    },
                ],
                schema_url: String::new(),
            },
            ResourceSpans {
                resource: None,
                scope_spans: vec![ScopeSpans {
                    spans: vec![good],
                    ..Default::default()
                }],
                ..Default::default()
            },
        ],
    }
}

#[test]
fn every_field_maps_as_the_prost_path_maps_it() {
    let body = everything().encode_to_vec();
    let d = direct(&body).expect("decodes");
    assert_eq!(Some(&d), via_prost(&body).as_ref());
    let m = decode(&body, 3).unwrap();
    assert_eq!(m.spans.len(), 5);
    assert_eq!(m.rejected.len(), 4, "{:?}", m.rejected);
    assert_eq!(m.spans[0].process.service_name, "svc");
    assert_eq!(m.spans[4].process.service_name, otlp::UNKNOWN_SERVICE);
}

#[test]
fn a_resource_after_its_spans_and_repeated_fields_merge_as_prost_does() {
    let req = everything();
    let rs = &req.resource_spans[0];
    // scope_spans first, then the resource in two halves
    let mut body = Vec::new();
    let mut inner = Vec::new();
    for ss in &rs.scope_spans {
        prost::encoding::message::encode(2, ss, &mut inner);
    }
    let res = rs.resource.clone().unwrap();
    let (a, b) = res.attributes.split_at(2);
    for half in [a, b] {
        let r = Resource {
            attributes: half.to_vec(),
            ..Default::default()
        };
        prost::encoding::message::encode(1, &r, &mut inner);
    }
    prost::encoding::encode_key(1, prost::encoding::WireType::LengthDelimited, &mut body);
    prost::encoding::encode_varint(inner.len() as u64, &mut body);
    body.extend_from_slice(&inner);
    let d = direct(&body).expect("decodes");
    assert_eq!(Some(&d), via_prost(&body).as_ref());
    assert!(d.contains("service_name: \"svc\""), "{d}");
}

/// Found by the fuzzer (crash-6d2b…): a group in an unknown field of `Status`, a
/// message the scan does not walk. prost skips it; so must the direct decoder.
#[test]
fn groups_in_unknown_fields_are_skipped_as_prost_skips_them() {
    let status = [
        0x12, 0x01, b'x', 0x2b, 0x08, 0x01, 0x33, 0x34, 0x2c, 0x18, 0x02,
    ];
    let mut span = Span {
        trace_id: vec![7; 16],
        span_id: vec![1; 8],
        ..Default::default()
    }
    .encode_to_vec();
    prost::encoding::encode_key(15, prost::encoding::WireType::LengthDelimited, &mut span);
    prost::encoding::encode_varint(status.len() as u64, &mut span);
    span.extend_from_slice(&status);
    let body = wrap(&[(1, wrap(&[(2, wrap(&[(2, span)]))]))]);
    let d = direct(&body).expect("decodes");
    assert_eq!(Some(&d), via_prost(&body).as_ref());
    assert!(d.contains("otel.status_code"), "{d}");
    // a group left open, or closed with another number, is refused by both
    for bad in [&status[..6], &[0x2b, 0x08, 0x01, 0x3c][..]] {
        let mut span = Span::default().encode_to_vec();
        prost::encoding::encode_key(15, prost::encoding::WireType::LengthDelimited, &mut span);
        prost::encoding::encode_varint(bad.len() as u64, &mut span);
        span.extend_from_slice(bad);
        let body = wrap(&[(1, wrap(&[(2, wrap(&[(2, span)]))]))]);
        assert_eq!(
            (direct(&body), via_prost(&body)),
            (None, None),
            "{bad:02x?}"
        );
    }
}

/// A message of length-delimited fields.
fn wrap(fields: &[(u32, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (tag, b) in fields {
        prost::encoding::encode_key(*tag, prost::encoding::WireType::LengthDelimited, &mut out);
        prost::encoding::encode_varint(b.len() as u64, &mut out);
        out.extend_from_slice(b);
    }
    out
}

#[test]
fn real_sdk_bodies_map_as_the_prost_path_maps_them() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/clients");
    let mut seen = 0;
    for e in std::fs::read_dir(dir).expect("the captured client bodies") {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.starts_with("otlp-protobuf") && name.ends_with(".bin")) {
            continue;
        }
        let raw = std::fs::read(&path).unwrap();
        let body = if name.contains("gzip") {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&raw[..]), &mut out)
                .unwrap();
            out
        } else {
            raw
        };
        let d = direct(&body).unwrap_or_else(|| panic!("{name} decodes"));
        assert_eq!(Some(&d), via_prost(&body).as_ref(), "{name}");
        seen += 1;
    }
    assert!(seen >= 3, "{seen} OTLP protobuf fixtures");
}

/// Mutated bodies (bytes flipped, cut, spliced, repeated): wherever the scan lets one
/// through, the direct decoder refuses what prost refuses and maps what it maps alike.
#[test]
fn mutated_bodies_get_the_prost_paths_answer() {
    let base = everything().encode_to_vec();
    let limits = Limits::default();
    let mut rng = fastrand::Rng::with_seed(12);
    let (mut compared, mut refused) = (0, 0);
    for _ in 0..20_000 {
        let mut b = base.clone();
        for _ in 0..rng.usize(1..4) {
            match rng.u8(0..4) {
                0 => {
                    let i = rng.usize(..b.len());
                    b[i] = rng.u8(..);
                }
                1 => b.truncate(rng.usize(..b.len())),
                2 => {
                    let i = rng.usize(..b.len());
                    let j = rng.usize(i..b.len().min(i + 40));
                    let piece = b[i..j].to_vec();
                    let at = rng.usize(..b.len());
                    b.splice(at..at, piece);
                }
                _ => {
                    let i = rng.usize(..b.len());
                    b.insert(i, rng.u8(..));
                }
            }
            if b.is_empty() {
                b.push(0);
            }
        }
        if scan_protobuf(&b, &limits).is_err() {
            continue;
        }
        let (d, p) = (direct(&b), via_prost(&b));
        assert_eq!(d, p, "body {b:02x?}");
        compared += 1;
        refused += usize::from(d.is_none());
    }
    assert!(
        compared > 1000 && refused > 100,
        "{compared} compared, {refused} refused"
    );
}

#[test]
fn usual_attributes_take_the_short_path_and_decode_as_written() {
    let mk = |k: &str, v: Value| KeyValue {
        key: k.into(),
        value: v,
    };
    let long_key = "k".repeat(127);
    let long_value = "v".repeat(120);
    // (attribute, what it decodes to, string value, short path)
    let cases = [
        (
            kv("http.method", s("GET")),
            mk("http.method", Value::Str("GET".into())),
            true,
            true,
        ),
        (
            kv("n", any_value::Value::IntValue(-5)),
            mk("n", Value::I64(-5)),
            false,
            true,
        ),
        (
            kv("ok", any_value::Value::BoolValue(true)),
            mk("ok", Value::Bool(true)),
            false,
            true,
        ),
        (
            kv("d", any_value::Value::DoubleValue(1.5)),
            mk("d", Value::F64(1.5)),
            false,
            true,
        ),
        (kv("e", s("")), mk("e", Value::Str("".into())), true, true),
        (
            kv(&long_key, s(&long_value)),
            mk(&long_key, Value::Str(long_value.as_str().into())),
            true,
            true,
        ),
        // a two-byte length, an empty key (prost leaves the field out): the general path
        (
            kv(&"k".repeat(128), s("x")),
            mk(&"k".repeat(128), Value::Str("x".into())),
            true,
            false,
        ),
        (
            kv("k", s(&"v".repeat(200))),
            mk("k", Value::Str("v".repeat(200).as_str().into())),
            true,
            false,
        ),
        (kv("", s("x")), mk("", Value::Str("x".into())), true, false),
    ];
    for (attr, want, is_string, short) in cases {
        let body = attr.encode_to_vec();
        assert_eq!(simple_key_value(&body, None).is_some(), short, "{attr:?}");
        assert_eq!(key_value(&body, 1).unwrap(), (want, is_string), "{attr:?}");
    }
}

#[test]
fn the_short_path_leaves_bad_bytes_to_the_general_one() {
    // {1: "\xff", 2: {1: "A"}} and {1: "k", 2: {1: "\xff"}}: not UTF-8
    for body in [
        &[0x0a, 0x01, 0xff, 0x12, 0x03, 0x0a, 0x01, b'A'][..],
        &[0x0a, 0x01, b'k', 0x12, 0x03, 0x0a, 0x01, 0xff][..],
    ] {
        assert!(simple_key_value(body, None).is_none());
        assert!(key_value(body, 1).is_err());
    }
    // an int value with a byte after its varint, a length past the end
    assert!(simple_key_value(&[0x0a, 0x01, b'k', 0x12, 0x03, 0x18, 0x01, 0x01], None).is_none());
    assert!(simple_key_value(&[0x0a, 0x05, b'k'], None).is_none());
    assert!(key_value(&[0x0a, 0x05, b'k'], 1).is_err());
}

#[test]
fn attributes_at_the_same_place_in_the_span_before_decode_as_written() {
    let long = "a value longer than an inline string holds";
    let span = |attributes: Vec<Kv>| Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        name: "op".into(),
        attributes,
        ..Default::default()
    };
    let request = |spans: Vec<Span>| ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let first = vec![
        kv("same", s("GET")),
        kv("value changes", s("a")),
        kv("key changes", s("x")),
        kv("long", s(long)),
        kv("type changes", s("1")),
    ];
    let second = vec![
        kv("same", s("GET")),
        kv("value changes", s("b")),
        kv("other key", s("x")),
        kv("long", s(long)),
        kv("type changes", any_value::Value::IntValue(1)),
        kv("one more", s("GET")),
    ];
    let body = request(vec![span(first), span(second.clone()), span(second)]).encode_to_vec();
    let m = decode(&body, 3).unwrap();
    let text = |v: &str| Value::Str(v.into());
    let want = |first: bool| -> Vec<(&str, Value)> {
        if first {
            vec![
                ("same", text("GET")),
                ("value changes", text("a")),
                ("key changes", text("x")),
                ("long", text(long)),
                ("type changes", text("1")),
            ]
        } else {
            vec![
                ("same", text("GET")),
                ("value changes", text("b")),
                ("other key", text("x")),
                ("long", text(long)),
                ("type changes", Value::I64(1)),
                ("one more", text("GET")),
            ]
        }
    };
    assert_eq!(m.spans.len(), 3);
    for (i, got) in m.spans.iter().enumerate() {
        let got: Vec<(&str, Value)> = got
            .tags
            .iter()
            .filter(|kv| kv.key != "span.kind" && !kv.key.starts_with("otel."))
            .map(|kv| (kv.key.as_str(), kv.value.clone()))
            .collect();
        assert_eq!(got, want(i == 0), "span {i}");
    }
    // bytes that are not UTF-8 where the span before had good ones are still refused
    let bad = request(vec![
        span(vec![kv("k", s("v"))]),
        span(vec![Kv {
            key: "k".into(),
            value: Some(AnyValue {
                value: Some(s("v")),
            }),
            ..Default::default()
        }]),
    ]);
    let mut body = bad.encode_to_vec();
    let last_v = body.iter().rposition(|&b| b == b'v').unwrap();
    body[last_v] = 0xff;
    assert!(decode(&body, 0).is_err());
}
