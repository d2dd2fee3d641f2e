use prost::Message;

use super::*;

fn unlimited() -> Reservation {
    Reservation::unlimited()
}

fn tag<'a>(s: &'a Span, key: &str) -> Option<&'a Value> {
    s.tags.iter().find(|t| t.key == key).map(|t| &t.value)
}

#[test]
fn v2_json_maps_like_jaeger() {
    let body = br#"[{"traceId":"5af7183fb1d4cf5f5af7183fb1d4cf5f","id":"352bff9a74ca9ad2",
        "parentId":"6b221d5bc9e6496c","name":"get /api","kind":"CLIENT",
        "timestamp":1556604172355737,"duration":1431,"debug":true,
        "localEndpoint":{"serviceName":"Frontend","ipv4":"192.168.99.1","port":3306},
        "remoteEndpoint":{"serviceName":"backend","ipv4":"172.19.0.2","port":9000},
        "annotations":[{"timestamp":1556604172355800,"value":"wire send"}],
        "tags":{"http.method":"GET","error":"connection reset","retries":2}}]"#;
    let z = decode_json_v2(body, &Limits::default(), &mut unlimited()).unwrap();
    let spans = to_model(z);
    assert_eq!(spans.len(), 1);
    let s = &spans[0];
    assert_eq!(s.trace_id, TraceId(0x5af7183fb1d4cf5f5af7183fb1d4cf5f));
    assert_eq!(s.span_id, SpanId(0x352bff9a74ca9ad2));
    assert_eq!(s.parent_span_id(), Some(SpanId(0x6b221d5bc9e6496c)));
    assert_eq!(s.operation_name, "get /api");
    assert_eq!(
        (s.start_time, s.duration, s.flags),
        (1556604172355737, 1431, 3)
    );
    assert_eq!(s.process.service_name, "Frontend");
    assert_eq!(
        s.process.tags,
        vec![KeyValue::new("ip", Value::Str("192.168.99.1".into()))]
    );
    assert_eq!(tag(s, "span.kind"), Some(&Value::Str("client".into())));
    assert_eq!(tag(s, "peer.service"), Some(&Value::Str("backend".into())));
    assert_eq!(tag(s, "peer.ipv4"), Some(&Value::Str("172.19.0.2".into())));
    assert_eq!(tag(s, "peer.port"), Some(&Value::I64(9000)));
    assert_eq!(tag(s, "http.method"), Some(&Value::Str("GET".into())));
    assert_eq!(tag(s, "retries"), Some(&Value::Str("2".into())));
    assert_eq!(tag(s, "error"), Some(&Value::Bool(true)));
    assert_eq!(
        tag(s, "error.message"),
        Some(&Value::Str("connection reset".into()))
    );
    assert_eq!(s.logs.len(), 1);
    assert_eq!(s.logs[0].timestamp, 1556604172355800);
    assert_eq!(
        s.logs[0].fields,
        vec![KeyValue::new("event", Value::Str("wire send".into()))]
    );
}

#[test]
fn shared_server_half_gets_its_own_id_under_the_client_half() {
    let body = br#"[
        {"traceId":"a","id":"b","parentId":"c","kind":"CLIENT","name":"call","timestamp":10,"duration":9,"localEndpoint":{"serviceName":"front"}},
        {"traceId":"a","id":"b","parentId":"c","kind":"SERVER","name":"call","timestamp":12,"duration":5,"shared":true,"localEndpoint":{"serviceName":"back"}}]"#;
    let spans = to_model(decode_json_v2(body, &Limits::default(), &mut unlimited()).unwrap());
    let (client, server) = (&spans[0], &spans[1]);
    assert_eq!(client.span_id, SpanId(0xb));
    assert_eq!(client.parent_span_id(), Some(SpanId(0xc)));
    assert_ne!(server.span_id, SpanId(0xb));
    assert_eq!(server.span_id, server_half_id(SpanId(0xb)));
    assert_eq!(server.parent_span_id(), Some(SpanId(0xb)));
    assert_eq!(server.process.service_name, "back");
    // spans without endpoints fall back to Jaeger's unknown service name
    let spans = to_model(
        decode_json_v2(
            br#"[{"traceId":"1","id":"2","timestamp":1}]"#,
            &Limits::default(),
            &mut unlimited(),
        )
        .unwrap(),
    );
    assert_eq!(spans[0].process.service_name, UNKNOWN_SERVICE);
}

#[test]
fn bad_json_spans_say_which_and_why() {
    for (body, want) in [
        (&br#"[{"traceId":"xyz","id":"1"}]"#[..], "span 0: traceId"),
        (br#"[{"traceId":"1","id":"0"}]"#, "span 0: id is zero"),
        (
            br#"[{"traceId":"1","id":"1"},{"traceId":"1","id":"1","kind":"LEFT"}]"#,
            "span 1: kind",
        ),
        (br#"{"traceId":"1"}"#, "not a JSON list"),
        (
            br#"[{"traceId":"1","id":"1","localEndpoint":{"ipv4":"1.2.3"}}]"#,
            "ipv4",
        ),
    ] {
        let e = decode_json_v2(body, &Limits::default(), &mut unlimited()).unwrap_err();
        assert!(e.to_string().contains(want), "{e} should say {want}");
    }
}

fn proto_span() -> pb::Span {
    pb::Span {
        trace_id: vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x2a],
        parent_id: vec![0, 0, 0, 0, 0, 0, 0, 7],
        id: vec![0, 0, 0, 0, 0, 0, 0, 9],
        kind: pb::span::Kind::Server as i32,
        name: "handle".into(),
        timestamp: 1_000_000,
        duration: 250,
        local_endpoint: Some(pb::Endpoint {
            service_name: "Proto-Svc".into(),
            ipv4: vec![10, 1, 2, 3],
            ipv6: vec![],
            port: 80,
        }),
        remote_endpoint: None,
        annotations: vec![pb::Annotation {
            timestamp: 1_000_100,
            value: "done".into(),
        }],
        tags: [
            ("b".to_owned(), "2".to_owned()),
            ("a".to_owned(), "1".to_owned()),
        ]
        .into_iter()
        .collect(),
        debug: false,
        shared: false,
    }
}

#[test]
fn protobuf_maps_like_json() {
    let body = pb::ListOfSpans {
        spans: vec![proto_span()],
    }
    .encode_to_vec();
    let spans = to_model(decode_proto(&body, &Limits::default(), &mut unlimited()).unwrap());
    let s = &spans[0];
    assert_eq!(s.trace_id, TraceId(0x2a));
    assert_eq!(
        (s.span_id, s.parent_span_id()),
        (SpanId(9), Some(SpanId(7)))
    );
    assert_eq!(s.process.service_name, "Proto-Svc");
    assert_eq!(
        s.process.tags,
        vec![KeyValue::new("ip", Value::Str("10.1.2.3".into()))]
    );
    assert_eq!(tag(s, "span.kind"), Some(&Value::Str("server".into())));
    // tags in key order, whatever order the map had
    let keys: Vec<&str> = s.tags.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(keys, ["span.kind", "a", "b"]);
    assert_eq!(s.logs[0].fields[0].value, Value::Str("done".into()));
}

#[test]
fn protobuf_is_counted_and_capped_before_it_is_decoded() {
    // 100,000 empty spans: two bytes each on the wire
    let body: Vec<u8> = [0x0a, 0x00].repeat(100_000);
    let limits = Limits {
        max_spans: 1000,
        ..Limits::default()
    };
    let e = decode_proto(&body, &limits, &mut unlimited()).unwrap_err();
    assert!(matches!(e, ZipkinError::Limit(_)), "{e}");
    // every truncation is an error, never a panic
    let good = pb::ListOfSpans {
        spans: vec![proto_span()],
    }
    .encode_to_vec();
    for end in 1..good.len() {
        assert!(decode_proto(&good[..end], &Limits::default(), &mut unlimited()).is_err());
    }
    // ids of the wrong width are refused
    let mut bad = proto_span();
    bad.id = vec![1, 2, 3];
    let body = pb::ListOfSpans { spans: vec![bad] }.encode_to_vec();
    let e = decode_proto(&body, &Limits::default(), &mut unlimited()).unwrap_err();
    assert!(e.to_string().contains("id is 3 bytes"), "{e}");
}
