//! OTLP in: every OTLP fixture captured from a real SDK is accepted and reads back mapped,
//! through Jaeger's API and as OTLP/JSON through `/api/v3`; Jaeger and OTLP spans of one
//! trace read back as one trace; bad input gets OTLP's statuses and partial success.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};

use common::*;
use fctrace::receive::{decode_otlp, OtlpFormat};
use serde_json::{json, Value as Json};

const PY_FIXTURE: &str = "otlp-protobuf-python-1.45-1";
const OTLP_FIXTURES: [&str; 4] = [
    "otlp-protobuf-python-1.45-1",
    "otlp-protobuf-gzip-python-1.45-1",
    "otlp-json-node-0.223-1",
    "otlp-protobuf-node-0.223-1",
];

/// POST a fixture body with its recorded headers to `base`; chunked bodies are streamed.
fn send_fixture(base: &str, name: &str) -> (u16, Vec<u8>) {
    let body = std::fs::read(format!("{FIXTURES}/{name}.bin")).unwrap();
    let req: Json = serde_json::from_str(
        &std::fs::read_to_string(format!("{FIXTURES}/{name}.request.json")).unwrap(),
    )
    .unwrap();
    let mut r = http().post(format!("{base}{}", req["path"].as_str().unwrap()));
    let mut chunked = false;
    for (k, v) in req["headers"].as_object().unwrap() {
        let k = k.to_ascii_lowercase();
        chunked |= k == "transfer-encoding";
        if ![
            "host",
            "content-length",
            "transfer-encoding",
            "connection",
            "accept-encoding",
        ]
        .contains(&k.as_str())
        {
            r = r.header(k, v.as_str().unwrap());
        }
    }
    let r = if chunked {
        struct Chunks(std::io::Cursor<Vec<u8>>);
        impl Read for Chunks {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = buf.len().min(64);
                self.0.read(&mut buf[..n])
            }
        }
        r.body(reqwest::blocking::Body::new(Chunks(std::io::Cursor::new(
            body,
        ))))
    } else {
        r.body(body)
    };
    let resp = r.send().unwrap();
    (resp.status().as_u16(), resp.bytes().unwrap().to_vec())
}

/// The span ids a fixture holds, by decoding it with fctrace's own decoder.
fn fixture_span_ids(name: &str) -> Vec<String> {
    let mut body = std::fs::read(format!("{FIXTURES}/{name}.bin")).unwrap();
    if name.contains("gzip") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .unwrap();
        body = out;
    }
    let format = if name.contains("json") {
        OtlpFormat::Json
    } else {
        OtlpFormat::Protobuf
    };
    let mapped = decode_otlp(
        &body,
        format,
        &Default::default(),
        &mut fctrace::budget::Reservation::unlimited(),
    )
    .unwrap();
    assert!(mapped.rejected.is_empty());
    mapped.spans.iter().map(|s| s.span_id.to_string()).collect()
}

fn span_by_id<'a>(trace: &'a Json, id: &str) -> &'a Json {
    trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["spanID"] == id)
        .unwrap_or_else(|| panic!("span {id} not in trace"))
}

fn tag_value<'a>(span: &'a Json, key: &str) -> &'a Json {
    &tag(&span["tags"], key).unwrap_or_else(|| panic!("no tag {key} in {}", span["tags"]))["value"]
}

#[test]
fn otlp_fixtures_read_back_mapped_in_both_apis() {
    // The fixtures were captured days ago: keep them past the default 72 h retention.
    let d = start_server_with(&["--retention", "87600h"]);
    for name in OTLP_FIXTURES {
        // The Python body goes to the collector port, which serves /v1/traces too.
        let base = if name == PY_FIXTURE {
            &d.collector
        } else {
            &d.otlp_http
        };
        let (status, body) = send_fixture(base, name);
        assert_eq!(status, 200, "{name}: {}", String::from_utf8_lossy(&body));
        if name.contains("json") {
            assert_eq!(serde_json::from_slice::<Json>(&body).unwrap(), json!({}));
        } else {
            assert!(
                body.is_empty(),
                "{name}: an empty ExportTraceServiceResponse"
            );
        }
    }
    // The Python Jaeger-exporter bodies belong to the same trace (64-bit ids there, 128-bit here).
    for n in 1..=2 {
        let body = std::fs::read(format!(
            "{FIXTURES}/jaeger-thrift-python-otel-exporter-jaeger-1.12-{n}.bin"
        ))
        .unwrap();
        assert_eq!(d.post_thrift(body).0, 202);
    }

    let (status, v) = d.get("/api/traces/0000000000000000124ed43254b54966");
    assert_eq!(status, 200);
    assert_eq!(data(&v).len(), 1);
    let trace = &data(&v)[0];
    assert_eq!(trace["traceID"], "124ed43254b54966");
    let mut expected = 2; // the two Jaeger spans
    for name in OTLP_FIXTURES {
        for id in fixture_span_ids(name) {
            span_by_id(trace, &id);
            expected += 1;
        }
    }
    assert_eq!(trace["spans"].as_array().unwrap().len(), expected);
    let ops: Vec<&str> = trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["operationName"].as_str().unwrap())
        .collect();
    assert!(
        ops.contains(&"fc-operation") && ops.contains(&"child") && ops.contains(&"query-rds"),
        "{ops:?}"
    );

    // Python protobuf: kind, status, scope, resource, attribute types, event.
    let py = span_by_id(trace, &fixture_span_ids(PY_FIXTURE)[0]);
    assert_eq!(py["operationName"], "query-rds");
    assert_eq!(
        py["references"],
        json!([{"refType": "CHILD_OF", "traceID": "124ed43254b54966", "spanID": "1a2b3c4d5e6f7081"}])
    );
    assert_eq!(tag_value(py, "span.kind"), "client");
    assert_eq!(tag_value(py, "otel.status_code"), "ERROR");
    assert_eq!(tag_value(py, "error"), true);
    assert_eq!(
        tag_value(py, "otel.status_description"),
        "timeout talking to rds"
    );
    assert_eq!(tag_value(py, "otel.scope.name"), "fixture.scope");
    assert_eq!(tag_value(py, "otel.scope.version"), "1.2.3");
    assert_eq!(tag_value(py, "db.system"), "mysql");
    assert_eq!(
        tag(&py["tags"], "db.rows").unwrap(),
        &json!({"key": "db.rows", "type": "int64", "value": 3})
    );
    assert_eq!(
        tag(&py["tags"], "ratio").unwrap(),
        &json!({"key": "ratio", "type": "float64", "value": 0.5})
    );
    assert_eq!(
        tag(&py["tags"], "cached").unwrap(),
        &json!({"key": "cached", "type": "bool", "value": false})
    );
    assert_eq!(
        py["logs"][0]["fields"],
        json!([{"key": "event", "type": "string", "value": "retry"}, {"key": "attempt", "type": "int64", "value": 2}])
    );
    let p = &trace["processes"][py["processID"].as_str().unwrap()];
    assert_eq!(p["serviceName"], "otlp-python-fn");
    assert_eq!(tag(&p["tags"], "faas.name").unwrap()["value"], "hello");
    assert_eq!(
        tag(&p["tags"], "cloud.platform").unwrap()["value"],
        "alibaba_cloud_fc"
    );
    assert!(tag(&p["tags"], "service.name").is_none());

    // Node JSON: int attribute, array attribute, event attributes, internal kind.
    let node = span_by_id(trace, &fixture_span_ids("otlp-json-node-0.223-1")[0]);
    assert_eq!(node["operationName"], "CustomSpan");
    assert_eq!(node["references"][0]["spanID"], "1a2b3c4d5e6f7081");
    assert_eq!(
        tag(&node["tags"], "app.items").unwrap(),
        &json!({"key": "app.items", "type": "int64", "value": 7})
    );
    assert_eq!(tag_value(node, "app.tags"), "[\"a\",\"b\"]");
    assert_eq!(tag_value(node, "span.kind"), "internal");
    assert_eq!(tag_value(node, "otel.scope.name"), "fixture-node");
    assert!(tag(&node["tags"], "otel.status_code").is_none());
    assert_eq!(
        node["logs"][0]["fields"],
        json!([{"key": "event", "type": "string", "value": "cache-miss"}, {"key": "key", "type": "string", "value": "user:42"}])
    );
    assert_eq!(
        trace["processes"][node["processID"].as_str().unwrap()]["serviceName"],
        "otlp-node-fn"
    );

    // Search finds OTLP spans by mapped tags.
    let (_, v) = d.get("/api/traces?service=otlp-python-fn&tag=error:true&tag=faas.name:hello");
    assert_eq!(trace_ids(&v), vec!["124ed43254b54966"]);
    let (_, v) = d.get("/api/operations?service=otlp-python-fn");
    assert_eq!(
        v["data"],
        json!([{"name": "query-rds", "spanKind": "client"}])
    );

    // /api/v3: OTLP/JSON that protobuf's own JSON parser takes into opentelemetry-proto's TracesData.
    let python = python_venv("otlp");
    let (status, v3) = d.get("/api/v3/traces/124ed43254b54966");
    assert_eq!(status, 200);
    let mut child = Command::new(&python)
        .arg(format!("{E2E}/python/otlp_json_check.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), v3.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "OTLP/JSON refused: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let spans: Vec<Json> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(spans.len(), expected);
    let py_id = &fixture_span_ids(PY_FIXTURE)[0];
    let py3 = spans.iter().find(|s| &s["spanId"] == py_id).unwrap();
    assert_eq!(py3["traceId"], "0000000000000000124ed43254b54966");
    assert_eq!(py3["parentSpanId"], "1a2b3c4d5e6f7081");
    assert_eq!(py3["service"], "otlp-python-fn");
    assert_eq!(py3["scope"], "fixture.scope");
    assert_eq!(
        (py3["kind"].as_i64(), py3["status"].as_i64()),
        (Some(3), Some(2))
    );
    assert_eq!(py3["statusMessage"], "timeout talking to rds");
    assert_eq!(py3["attributes"]["db.rows"], json!({"intValue": "3"}));
    assert!(
        py3["attributes"].get("span.kind").is_none() && py3["attributes"].get("error").is_none()
    );
    assert_eq!(py3["events"], json!(["retry"]));
    let jaeger_child = spans.iter().find(|s| s["name"] == "child").unwrap();
    assert_eq!(jaeger_child["service"], "my-helloworld-service");

    // v3 catalog and search
    let (_, v) = d.get("/api/v3/services");
    assert!(v["services"]
        .as_array()
        .unwrap()
        .contains(&json!("otlp-python-fn")));
    let (_, v) = d.get("/api/v3/operations?service=otlp-python-fn&span_kind=client");
    assert_eq!(
        v,
        json!({"operations": [{"name": "query-rds", "spanKind": "client"}]})
    );
    let (status, v) = d.get(
        "/api/v3/traces?query.service_name=otlp-node-fn&query.start_time_min=2020-01-01T00:00:00Z&query.start_time_max=2100-01-01T00:00:00Z&query.attributes=%7B%22app.items%22%3A%227%22%7D",
    );
    assert_eq!(status, 200, "{v}");
    let names: Vec<&Json> = v["result"]["resourceSpans"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|rs| rs["scopeSpans"].as_array().unwrap())
        .flat_map(|ss| ss["spans"].as_array().unwrap())
        .map(|s| &s["name"])
        .collect();
    assert_eq!(names.len(), expected, "the whole trace comes back");
    let (status, v) = d.get("/api/v3/traces/00000000000000000000000000000abc");
    assert_eq!(status, 404);
    assert_eq!(
        v,
        json!({"error": {"httpCode": 404, "message": "trace not found"}})
    );
    let (status, v) = d.get("/api/v3/traces?query.service_name=x&query.start_time_min=yesterday");
    assert_eq!(status, 400);
    assert!(v["error"]["message"].as_str().unwrap().contains("RFC 3339"));
}

#[test]
fn jaeger_and_otlp_halves_of_one_trace_are_one_trace() {
    let d = start_server();
    let now = now_us();
    let jaeger = batch(
        "mixed-jaeger",
        &[],
        &[TSpan {
            trace: 0xfeed,
            id: 1,
            op: "root",
            start: now,
            duration: 1000,
            ..Default::default()
        }],
    );
    assert_eq!(d.post_thrift(jaeger).0, 202);
    let otlp = json!({"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "mixed-otlp"}}]},
        "scopeSpans": [{"spans": [{"traceId": "0000000000000000000000000000feed", "spanId": "0000000000000002",
        "parentSpanId": "0000000000000001", "name": "leaf", "kind": 2,
        "startTimeUnixNano": ((now + 10) * 1000).to_string(), "endTimeUnixNano": ((now + 500) * 1000).to_string()}]}]}]});
    let r = http()
        .post(format!("{}/v1/traces", d.otlp_http))
        .header("Content-Type", "application/json")
        .body(otlp.to_string())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, v) = d.get("/api/traces/feed");
    let t = &data(&v)[0];
    assert_eq!(t["traceID"], "000000000000feed");
    let spans = t["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 2);
    assert_eq!(spans[1]["references"][0]["spanID"], spans[0]["spanID"]);
    assert_eq!(t["processes"].as_object().unwrap().len(), 2);
}

fn post(
    d: &Daemon,
    content_type: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> (u16, Option<String>, Vec<u8>) {
    let mut r = http()
        .post(format!("{}/v1/traces", d.otlp_http))
        .header("Content-Type", content_type);
    if let Some(e) = encoding {
        r = r.header("Content-Encoding", e);
    }
    let resp = r.body(body).send().unwrap();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    (resp.status().as_u16(), ct, resp.bytes().unwrap().to_vec())
}

/// `google.rpc.Status` as the tests read it.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

#[test]
fn bad_otlp_input_gets_otlp_statuses_and_partial_success() {
    let d = start_server();
    let now = now_us() * 1000;

    let (s, ct, body) = post(
        &d,
        "application/x-protobuf",
        None,
        vec![0xff, 0xff, 0xff, 0x07],
    );
    assert_eq!((s, ct.as_deref()), (400, Some("application/x-protobuf")));
    let status: RpcStatus = prost::Message::decode(&body[..]).unwrap();
    assert_eq!(status.code, 3, "INVALID_ARGUMENT");
    assert!(
        status.message.contains("could not decode OTLP protobuf"),
        "{}",
        status.message
    );

    let (s, _, body) = post(
        &d,
        "application/json",
        None,
        b"{\"resourceSpans\": [".to_vec(),
    );
    assert_eq!(s, 400);
    let v: Json = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["code"], 3);
    assert!(
        v["message"].as_str().unwrap().contains("invalid JSON"),
        "{v}"
    );

    let (s, _, body) = post(&d, "text/plain", None, b"hello".to_vec());
    assert_eq!(s, 415);
    assert!(String::from_utf8_lossy(&body).contains("application/x-protobuf or application/json"));

    // empty requests are valid and store nothing
    let (s, _, body) = post(&d, "application/x-protobuf", None, Vec::new());
    assert_eq!((s, body.len()), (200, 0));
    let (s, _, body) = post(&d, "application/json", None, b"{}".to_vec());
    assert_eq!((s, &body[..]), (200, &b"{}"[..]));

    // one good span, one with an 8-byte trace id, one that ends before it starts
    let span = |trace: &str, id: &str, start: u64, end: u64| json!({"traceId": trace, "spanId": id, "name": id, "startTimeUnixNano": start.to_string(), "endTimeUnixNano": end.to_string()});
    let req = json!({"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "partial"}}]},
    "scopeSpans": [{"spans": [
        span("000000000000000000000000000000aa", "00000000000000a1", now, now + 1000),
        span("00000000000000aa", "00000000000000a2", now, now + 1000),
        span("000000000000000000000000000000aa", "00000000000000a3", now + 1000, now),
    ]}]}]});
    let gz = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut e, req.to_string().as_bytes()).unwrap();
        e.finish().unwrap()
    };
    let (s, _, body) = post(&d, "application/json", Some("gzip"), gz);
    assert_eq!(s, 200);
    let v: Json = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["partialSuccess"]["rejectedSpans"], "2");
    let msg = v["partialSuccess"]["errorMessage"].as_str().unwrap();
    assert!(
        msg.contains("span 1: trace id has 8 bytes, expected 16"),
        "{msg}"
    );
    assert!(msg.contains("span 2: end time"), "{msg}");
    let (_, v) = d.get("/api/traces/aa");
    let spans = data(&v)[0]["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0]["operationName"], "00000000000000a1");

    // zstd-compressed protobuf is accepted
    let (status, _) = send_fixture(&d.otlp_http, "otlp-protobuf-node-0.223-1");
    assert_eq!(status, 200);
    let raw = std::fs::read(format!("{FIXTURES}/otlp-protobuf-python-1.45-1.bin")).unwrap();
    let (s, _, _) = post(
        &d,
        "application/x-protobuf",
        Some("zstd"),
        zstd::encode_all(&raw[..], 3).unwrap(),
    );
    assert_eq!(s, 200);
}
