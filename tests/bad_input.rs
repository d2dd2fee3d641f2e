//! Bad input gets a clear 4xx with a message, changes nothing and does not hurt the daemon.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn post(d: &Daemon, content_type: &str, body: Vec<u8>) -> (u16, String) {
    let r = http()
        .post(format!("{}/api/traces", d.collector))
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

fn good_batch() -> Vec<u8> {
    batch(
        "bad-input-svc",
        &[],
        &[TSpan {
            trace: 0xabc,
            id: 1,
            op: "op",
            start: now_us(),
            duration: 5,
            ..Default::default()
        }],
    )
}

#[test]
fn refused_collector_requests_change_nothing() {
    let d = start_server_with(&["--max-body-bytes", "4096"]);

    let (s, m) = post(&d, "application/json", good_batch());
    assert_eq!(s, 400);
    assert!(
        m.contains("unsupported content type") && m.contains("application/json"),
        "{m}"
    );

    let body = good_batch();
    let (s, m) = post(&d, "application/x-thrift", body[..body.len() - 7].to_vec());
    assert_eq!(s, 400);
    assert!(
        m.contains("could not decode thrift batch") && m.contains("ends early"),
        "{m}"
    );

    let (s, m) = post(
        &d,
        "application/x-thrift",
        b"\x99garbage that is not thrift at all".to_vec(),
    );
    assert_eq!(s, 400);
    assert!(m.contains("unknown thrift type"), "{m}");

    // A list length of 2^31-1 in a 30-byte body: refused at once, nothing allocated for it.
    let mut hostile = vec![
        12u8, 0, 1, 11, 0, 1, 0, 0, 0, 1, b's', 0, 15, 0, 2, 12, 0x7f, 0xff, 0xff, 0xff,
    ];
    hostile.resize(30, 0);
    let t = Instant::now();
    let (s, m) = post(&d, "application/x-thrift", hostile);
    assert_eq!(s, 400);
    assert!(m.contains("list length 2147483647"), "{m}");
    assert!(t.elapsed() < Duration::from_secs(5));

    let (s, m) = post(&d, "application/x-thrift", vec![0u8; 5000]);
    assert_eq!(s, 413);
    assert!(m.contains("4096-byte limit"), "{m}");

    // a zero trace id is refused, and the batch's valid span with it
    let zero = batch(
        "bad-input-svc",
        &[],
        &[
            TSpan {
                trace: 0x1,
                id: 1,
                op: "ok",
                start: now_us(),
                ..Default::default()
            },
            TSpan {
                trace: 0,
                id: 2,
                op: "bad",
                start: now_us(),
                ..Default::default()
            },
        ],
    );
    let (s, m) = post(&d, "application/x-thrift", zero);
    assert_eq!(s, 400);
    assert_eq!(m, "span 1 of the batch: trace id is zero");

    // nothing was stored, and the daemon still works
    let (_, v) = d.get("/api/services");
    assert_eq!(v["data"], serde_json::json!([]));
    let (s, _) = post(&d, "application/x-thrift", good_batch());
    assert_eq!(s, 202);
    let (_, v) = d.get("/api/services");
    assert_eq!(v["data"], serde_json::json!(["bad-input-svc"]));
}

#[test]
fn query_errors_are_enveloped() {
    let d = start_server();
    let (s, v) = d.get("/api/traces/0123456789abcdef");
    assert_eq!(s, 404);
    assert_eq!(
        v["errors"],
        serde_json::json!([{"code": 404, "msg": "trace not found"}])
    );
    assert!(v["data"].is_null());

    for (q, needle) in [
        ("/api/traces/nothex", "not hexadecimal"),
        ("/api/traces?service=a&limit=ten", "'limit'"),
        ("/api/traces?service=a&start=abc", "'start'"),
        ("/api/traces?service=a&minDuration=fast", "minDuration"),
        ("/api/traces?service=a&tags=notjson", "'tags'"),
        ("/api/operations", "'service' is required"),
        ("/api/operations?service=a&spanKind=sideways", "spanKind"),
        ("/api/dependencies?endTs=yesterday", "endTs"),
    ] {
        let (s, v) = d.get(q);
        assert_eq!(s, 400, "{q}: {v}");
        let msg = v["errors"][0]["msg"].as_str().unwrap_or_default();
        assert!(msg.contains(needle), "{q}: {v}");
        assert_eq!(v["errors"][0]["code"], 400);
    }
}
