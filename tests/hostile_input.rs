//! Hostile and unusual clients: bodies that declare far more than they carry, caps on
//! spans, tags, logs and nesting, stalled uploads, too many connections. Each is answered
//! with a clear status and message, costs bounded memory (read from `/proc`), and leaves
//! the daemon answering and everything else it stored intact.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, ArrayValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

const MIB: u64 = 1 << 20;

/// Thrift binary: a field header.
fn field(out: &mut Vec<u8>, ty: u8, id: i16) {
    out.push(ty);
    out.extend_from_slice(&id.to_be_bytes());
}

/// Thrift binary: a batch's process (service `svc`) and the header of a list of `n`
/// spans.
fn batch_header(b: &mut Vec<u8>, n: usize) {
    field(b, 12, 1);
    field(b, 11, 1);
    b.extend_from_slice(&3i32.to_be_bytes());
    b.extend_from_slice(b"svc");
    b.push(0);
    field(b, 15, 2);
    b.push(12);
    b.extend_from_slice(&(n as i32).to_be_bytes());
}

/// A batch whose process is `svc` and whose span list declares `n` empty spans, each a
/// lone STOP byte: about one byte on the wire per span.
fn empty_spans_batch(n: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(n + 64);
    batch_header(&mut b, n);
    b.resize(b.len() + n, 0);
    b.push(0);
    b
}

/// A batch of one valid span carrying `n` empty tags.
fn many_tags_batch(n: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(n + 128);
    batch_header(&mut b, 1);
    for (id, v) in [(1i16, 7i64), (2, 0), (3, 9), (8, now_us() as i64), (9, 5)] {
        field(&mut b, 10, id);
        b.extend_from_slice(&v.to_be_bytes());
    }
    field(&mut b, 11, 5);
    b.extend_from_slice(&2i32.to_be_bytes());
    b.extend_from_slice(b"op");
    field(&mut b, 15, 10);
    b.push(12);
    b.extend_from_slice(&(n as i32).to_be_bytes());
    b.resize(b.len() + n, 0);
    b.push(0); // span
    b.push(0); // batch
    b
}

fn post(d: &Daemon, path: &str, content_type: &str, body: Vec<u8>) -> (u16, String) {
    let r = http()
        .post(format!("{}{path}", d.collector))
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .expect("POST");
    (r.status().as_u16(), r.text().unwrap_or_default())
}

fn good_span(d: &Daemon, trace: u128) {
    let body = batch(
        "survivor",
        &[],
        &[TSpan {
            trace,
            id: 1,
            op: "still-here",
            start: now_us(),
            duration: 5,
            ..Default::default()
        }],
    );
    assert_eq!(d.post_thrift(body).0, 202);
}

fn has_trace(d: &Daemon, trace: u128) -> bool {
    d.get(&format!("/api/traces/{trace:x}")).0 == 200
}

#[test]
fn millions_of_declared_empty_spans_are_refused_at_once_with_bounded_memory() {
    let d = start_server();
    good_span(&d, 0x5eed);
    let hostile = empty_spans_batch(20_000_000);
    assert!(hostile.len() < 20 * MIB as usize);

    let before = d.proc_status_bytes("VmHWM");
    let (status, msg) = post(&d, "/api/traces", "application/x-thrift", hostile.clone());
    assert_eq!(status, 413, "{msg}");
    assert!(
        msg.contains("more than 100000 spans") && msg.contains("send smaller batches"),
        "{msg}"
    );
    let growth = d.proc_status_bytes("VmHWM").saturating_sub(before);
    assert!(growth < 256 * MIB, "peak RSS grew {} MiB", growth / MIB);

    // Past the span cap, the memory budget refuses it: 20M spans cannot fit in a share.
    drop(d);
    let d = start_server_with(&["--max-spans-per-request", "100000000"]);
    let before = d.proc_status_bytes("VmHWM");
    let (status, msg) = post(&d, "/api/traces", "application/x-thrift", hostile);
    assert_eq!(status, 413, "{msg}");
    assert!(msg.contains("bytes of memory to decode"), "{msg}");
    let growth = d.proc_status_bytes("VmHWM").saturating_sub(before);
    assert!(growth < 256 * MIB, "peak RSS grew {} MiB", growth / MIB);
    good_span(&d, 0x5eed);
    assert!(has_trace(&d, 0x5eed));
}

#[test]
fn eight_concurrent_hostile_requests_keep_the_daemon_small_and_answering() {
    let d = start_server_with(&["--max-spans-per-request", "100000000"]);
    let hostile = empty_spans_batch(20_000_000);
    let collector = d.collector.clone();
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (url, body) = (format!("{collector}/api/traces"), hostile.clone());
            std::thread::spawn(move || {
                let r = http()
                    .post(url)
                    .header("Content-Type", "application/x-thrift")
                    .body(body)
                    .send()
                    .expect("POST");
                r.status().as_u16()
            })
        })
        .collect();
    // while they run, the daemon keeps answering
    for _ in 0..20 {
        assert_eq!(d.get("/healthz").0, 200);
    }
    for w in workers {
        let status = w.join().unwrap();
        assert!(status == 413 || status == 503, "status {status}");
    }
    let peak = d.proc_status_bytes("VmHWM");
    assert!(peak < 1024 * MIB, "peak RSS {} MiB", peak / MIB);
    good_span(&d, 0xa11);
    assert!(has_trace(&d, 0xa11));
}

#[test]
fn caps_on_tags_logs_and_nesting_refuse_with_a_message_and_store_nothing() {
    let d = start_server();
    // 20 million empty tags on one span
    let (status, msg) = post(
        &d,
        "/api/traces",
        "application/x-thrift",
        many_tags_batch(20_000_000),
    );
    assert_eq!(status, 400, "{msg}");
    assert!(
        msg.contains("Span.tags has 20000000 entries; at most 1024"),
        "{msg}"
    );
    assert!(!has_trace(&d, 7));

    // OTLP: a span with 2000 attributes, and one nested 20 levels deep
    let attr = |k: String| KeyValue {
        key: k,
        value: Some(AnyValue {
            value: Some(any_value::Value::BoolValue(true)),
        }),
        ..Default::default()
    };
    let req = |attributes: Vec<KeyValue>| ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource::default()),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![3; 16],
                    span_id: vec![4; 8],
                    name: "n".into(),
                    start_time_unix_nano: now_us() * 1000,
                    end_time_unix_nano: now_us() * 1000 + 1000,
                    attributes,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let many = req((0..2000).map(|i| attr(format!("k{i}"))).collect());
    let (status, msg) = post(
        &d,
        "/v1/traces",
        "application/x-protobuf",
        many.encode_to_vec(),
    );
    assert_eq!(status, 400, "{msg}");
    assert!(
        msg.contains("a span's attributes has 2000 entries"),
        "{msg}"
    );

    let mut deep = AnyValue {
        value: Some(any_value::Value::IntValue(1)),
    };
    for _ in 0..20 {
        deep = AnyValue {
            value: Some(any_value::Value::ArrayValue(ArrayValue {
                values: vec![deep],
            })),
        };
    }
    let nested = req(vec![KeyValue {
        key: "deep".into(),
        value: Some(deep),
        ..Default::default()
    }]);
    for (ct, body) in [
        ("application/x-protobuf", nested.encode_to_vec()),
        ("application/json", otlp_json(&nested)),
    ] {
        let (status, msg) = post(&d, "/v1/traces", ct, body);
        assert_eq!(status, 400, "{ct}: {msg}");
        assert!(msg.contains("nests deeper than 16 levels"), "{ct}: {msg}");
    }
    let trace = "03030303030303030303030303030303";
    assert_eq!(d.get(&format!("/api/traces/{trace}")).0, 404);
}

/// OTLP/JSON of a request, as the spec spells it (hex ids).
fn otlp_json(req: &ExportTraceServiceRequest) -> Vec<u8> {
    fn any(v: &AnyValue) -> serde_json::Value {
        match &v.value {
            Some(any_value::Value::ArrayValue(a)) => {
                serde_json::json!({"arrayValue": {"values": a.values.iter().map(any).collect::<Vec<_>>()}})
            }
            Some(any_value::Value::IntValue(i)) => serde_json::json!({"intValue": i.to_string()}),
            _ => serde_json::json!({"boolValue": true}),
        }
    }
    let s = &req.resource_spans[0].scope_spans[0].spans[0];
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    serde_json::json!({"resourceSpans": [{"resource": {}, "scopeSpans": [{"spans": [{
        "traceId": hex(&s.trace_id), "spanId": hex(&s.span_id), "name": s.name,
        "startTimeUnixNano": s.start_time_unix_nano.to_string(),
        "endTimeUnixNano": s.end_time_unix_nano.to_string(),
        "attributes": s.attributes.iter().map(|kv| serde_json::json!({
            "key": kv.key, "value": any(kv.value.as_ref().unwrap())})).collect::<Vec<_>>(),
    }]}]}]})
    .to_string()
    .into_bytes()
}

#[test]
fn a_dense_json_body_is_refused_before_it_is_parsed() {
    let d = start_server();
    // ten million tiny values in 20 MB: far more than a request's share once parsed
    let mut body = b"{\"resourceSpans\":[".to_vec();
    body.extend(std::iter::repeat_n(b"0,".as_slice(), 9_000_000).flatten());
    body.extend_from_slice(b"0]}");
    let before = d.proc_status_bytes("VmHWM");
    let (status, msg) = post(&d, "/v1/traces", "application/json", body);
    assert_eq!(status, 413, "{msg}");
    assert!(msg.contains("bytes of memory to decode"), "{msg}");
    let growth = d.proc_status_bytes("VmHWM").saturating_sub(before);
    assert!(growth < 256 * MIB, "peak RSS grew {} MiB", growth / MIB);
}

#[test]
fn a_stalled_upload_is_cut_off_and_others_are_served_meanwhile() {
    let d = start_server_with(&["--body-timeout", "1s"]);
    let addr = d.collector.trim_start_matches("http://").to_owned();
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "POST /api/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-thrift\r\nContent-Length: 100000\r\n\r\npartial"
    )
    .unwrap();
    // served while that upload hangs
    good_span(&d, 0x57a1);
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("not received within 1s"), "{answer}");
    assert!(has_trace(&d, 0x57a1));
}

#[test]
fn connections_beyond_the_limit_wait_until_one_closes() {
    let d = start_server_with(&["--max-connections", "2"]);
    let addr = d.collector.trim_start_matches("http://").to_owned();
    let idle: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    // both permits are held by idle connections: a third is not served
    let mut third = TcpStream::connect(&addr).unwrap();
    third
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    write!(
        third,
        "GET /api/sampling?service=x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = [0u8; 64];
    let err = third.read(&mut buf).unwrap_err();
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{err}"
    );
    drop(idle);
    third
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut answer = String::new();
    third.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn grpc_refusals_carry_their_codes_to_a_real_grpc_client() {
    let python = python_venv("otlp");
    let d = start_server_with(&["--service-spans-per-second", "50"]);
    let script = format!("{E2E}/python/grpc_limits.py");
    let endpoint = d.otlp_grpc.trim_start_matches("http://");
    let out = run(std::process::Command::new(&python).args([&script, endpoint]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["small"]["code"], "OK", "{v}");
    assert_eq!(v["over_rate"]["code"], "RESOURCE_EXHAUSTED", "{v}");
    assert!(
        v["over_rate"]["details"]
            .as_str()
            .unwrap()
            .contains("\"grpc-limits\" is over its span rate limit"),
        "{v}"
    );
    assert_eq!(v["too_many_spans"]["code"], "RESOURCE_EXHAUSTED", "{v}");
    assert!(
        v["too_many_spans"]["details"]
            .as_str()
            .unwrap()
            .contains("more than 100000 spans"),
        "{v}"
    );
    assert_eq!(v["too_many_attributes"]["code"], "INVALID_ARGUMENT", "{v}");
    assert_eq!(
        d.metric("fctrace_admission_refused_spans_total{service=\"grpc-limits\",reason=\"service_rate\"}"),
        60.0
    );
}
