//! Every Jaeger body captured from a real client (../shared/fixtures/clients) is accepted
//! as it was sent (the Node one chunked, with no Content-Length) and reads back through
//! `/api/traces/{id}` with every tag, log field, reference and process tag intact.

mod common;

use std::io::Read;

use common::*;
use fctrace::receive::jaeger_thrift::{decode_batch, ThriftProtocol};
use serde_json::{json, Value as Json};

struct Fixture {
    name: &'static str,
    body: Vec<u8>,
    headers: serde_json::Map<String, Json>,
}

fn load(name: &'static str) -> Fixture {
    let body = std::fs::read(format!("{FIXTURES}/{name}.bin")).expect("fixture body");
    let req: Json = serde_json::from_str(
        &std::fs::read_to_string(format!("{FIXTURES}/{name}.request.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(req["path"], "/api/traces");
    Fixture {
        name,
        body,
        headers: req["headers"].as_object().unwrap().clone(),
    }
}

const NAMES: [&str; 3] = [
    "jaeger-thrift-node-jaeger-client-3.19-1",
    "jaeger-thrift-python-otel-exporter-jaeger-1.12-1",
    "jaeger-thrift-python-otel-exporter-jaeger-1.12-2",
];

/// Send a fixture with its recorded headers; a chunked one is streamed without a length.
fn send(d: &Daemon, f: &Fixture) -> u16 {
    let mut req = http().post(format!("{}/api/traces", d.collector));
    for (k, v) in &f.headers {
        let k = k.to_ascii_lowercase();
        if ["host", "content-length", "transfer-encoding", "connection"].contains(&k.as_str()) {
            continue;
        }
        req = req.header(k, v.as_str().unwrap());
    }
    let chunked = f
        .headers
        .get("Transfer-Encoding")
        .is_some_and(|v| v == "chunked");
    let req = if chunked {
        // A reader of unknown length makes the client send Transfer-Encoding: chunked.
        struct Slow(std::io::Cursor<Vec<u8>>);
        impl Read for Slow {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = buf.len().min(100);
                self.0.read(&mut buf[..n])
            }
        }
        req.body(reqwest::blocking::Body::new(Slow(std::io::Cursor::new(
            f.body.clone(),
        ))))
    } else {
        req.body(f.body.clone())
    };
    let r = req.send().unwrap();
    let status = r.status().as_u16();
    assert_eq!(r.text().unwrap(), "", "{}: 202 has an empty body", f.name);
    status
}

#[test]
fn every_fixture_decodes_and_reads_back_intact() {
    // The fixtures were captured days ago: keep them past the default 72 h retention.
    let d = start_server_with(&["--retention", "87600h"]);
    for name in NAMES {
        let f = load(name);
        let spans = decode_batch(
            &f.body,
            ThriftProtocol::Binary,
            &Default::default(),
            &mut fctrace::budget::Reservation::unlimited(),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!spans.is_empty());
        assert_eq!(send(&d, &f), 202, "{name}");

        let expected = fctrace::query::jaeger_json::trace(&spans);
        let expected = serde_json::to_value(&expected).unwrap();
        for want in expected["spans"].as_array().unwrap() {
            let (status, v) = d.get(&format!(
                "/api/traces/{}",
                want["traceID"].as_str().unwrap()
            ));
            assert_eq!(status, 200);
            let trace = &data(&v)[0];
            let got = trace["spans"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["spanID"] == want["spanID"])
                .unwrap_or_else(|| panic!("{name}: span {} missing", want["spanID"]));
            for field in [
                "operationName",
                "references",
                "startTime",
                "duration",
                "tags",
                "logs",
                "flags",
            ] {
                assert_eq!(got[field], want[field], "{name}: {field}");
            }
            let want_p = &expected["processes"][want["processID"].as_str().unwrap()];
            let got_p = &trace["processes"][got["processID"].as_str().unwrap()];
            assert_eq!(got_p, want_p, "{name}: process");
        }
    }

    // What the clients sent, checked against the fixture README.
    let (_, v) = d.get("/api/traces/5f22f355044a957a");
    let t = &data(&v)[0];
    assert_eq!(t["traceID"], "5f22f355044a957a");
    let s = &t["spans"][0];
    assert_eq!(s["operationName"], "CustomSpan");
    assert_eq!(
        s["references"],
        json!([{"refType": "CHILD_OF", "traceID": "5f22f355044a957a", "spanID": "05708f3a95a4ed10"}])
    );
    let status_code = tag(&s["tags"], "http.status_code").unwrap();
    assert_eq!(status_code["value"].as_f64(), Some(200.0), "{status_code}");
    let fields = &s["logs"][0]["fields"];
    assert_eq!(tag(fields, "event").unwrap()["value"], "hello");
    assert_eq!(tag(fields, "n").unwrap()["value"].as_f64(), Some(3.0));
    let p = &t["processes"][s["processID"].as_str().unwrap()];
    assert_eq!(p["serviceName"], "e2e-test");
    assert_eq!(tag(&p["tags"], "version").unwrap()["value"], "fc-e2e-tags");

    // The two Python bodies make one trace: fc-operation (child of the platform's span) and its child.
    let (_, v) = d.get("/api/traces/124ed43254b54966");
    let t = &data(&v)[0];
    let spans = t["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 2);
    let parent = spans
        .iter()
        .find(|s| s["operationName"] == "fc-operation")
        .unwrap();
    let child = spans
        .iter()
        .find(|s| s["operationName"] == "child")
        .unwrap();
    assert_eq!(parent["references"][0]["spanID"], "1a2b3c4d5e6f7081");
    assert_eq!(child["references"][0]["refType"], "CHILD_OF");
    assert_eq!(child["references"][0]["spanID"], parent["spanID"]);
    assert_eq!(tag(&child["tags"], "db.system").unwrap()["value"], "mysql");
    let ev = &child["logs"][0]["fields"];
    // opentelemetry-exporter-jaeger writes an event's name as the field `message`
    assert_eq!(tag(ev, "message").unwrap()["value"], "query");
    assert_eq!(tag(ev, "rows").unwrap()["value"], 3);
    assert_eq!(
        t["processes"][child["processID"].as_str().unwrap()]["serviceName"],
        "my-helloworld-service"
    );

    // And search finds them by tags in each place.
    let (_, v) = d.get("/api/traces?service=e2e-test&tag=event:hello&tag=version:fc-e2e-tags");
    assert_eq!(trace_ids(&v), vec!["5f22f355044a957a"]);
    let (_, v) = d.get("/api/traces?service=my-helloworld-service&tag=db.system:mysql");
    assert_eq!(trace_ids(&v), vec!["124ed43254b54966"]);
}

#[test]
fn gzip_and_compact_bodies_are_accepted() {
    let d = start_server_with(&["--retention", "87600h"]);
    let f = load(NAMES[1]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &f.body).unwrap();
    let r = http()
        .post(format!("{}/api/traces", d.collector))
        .header("Content-Type", "application/vnd.apache.thrift.binary")
        .header("Content-Encoding", "gzip")
        .body(gz.finish().unwrap())
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let (status, _) = d.get("/api/traces/124ed43254b54966");
    assert_eq!(status, 200);

    // compact protocol: Batch{process{serviceName "c"}, spans[{1:1,2:0,3:2,4:0,5:"op",7:1,8:10,9:5, 10:[{key "b", vType BOOL, vBool true}]}]}
    let start = now_us();
    let mut compact: Vec<u8> = vec![
        0x1c, // field 1 struct
        0x18, 1, b'c', 0, // serviceName "c", stop
        0x19, 0x1c, // field 2 list of 1 struct
        0x16, 2, // traceIdLow = 1
        0x16, 0, // traceIdHigh = 0
        0x16, 4, // spanId = 2
        0x16, 0, // parentSpanId = 0
        0x18, 2, b'o', b'p', // operationName
        0x25, 2,    // flags (field 7, delta 2) = 1
        0x16, // startTime = now, below
    ];
    compact.extend(zigzag_varint(start as i64));
    compact.extend([
        0x16, 10, // duration = 5
        0x19, 0x1c, // tags: list of 1 struct
        0x18, 1, b'b', // key "b"
        0x15, 4,    // vType = 2 (BOOL)
        0x31, // vBool (field 5, delta 3) = true
        0,    // end tag
        0,    // end span
        0,    // end batch
    ]);
    let r = http()
        .post(format!("{}/api/traces", d.collector))
        .header("Content-Type", "application/vnd.apache.thrift.compact")
        .body(compact)
        .send()
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().unwrap());
    let (_, v) = d.get("/api/traces/1");
    let s = &data(&v)[0]["spans"][0];
    assert_eq!(s["spanID"], "0000000000000002");
    assert_eq!(s["operationName"], "op");
    assert_eq!(
        (s["startTime"].as_u64(), s["duration"].as_u64()),
        (Some(start), Some(5))
    );
    assert_eq!(
        s["tags"],
        json!([{"key": "b", "type": "bool", "value": true}])
    );
}

fn zigzag_varint(v: i64) -> Vec<u8> {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    let mut out = Vec::new();
    loop {
        if z < 0x80 {
            out.push(z as u8);
            return out;
        }
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
}
