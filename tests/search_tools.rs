//! The queries today's tools make (issue 16): search without a service (`/api/traces`,
//! `/api/v3/traces`), several `traceID`s at once, `/api/v3/trace-summaries`, and a
//! trace-by-id window in milliseconds (Grafana) or microseconds (Jaeger's UI).

mod common;

use common::*;
use serde_json::json;

const MS: u64 = 1_000;

/// Two traces, 1 s apart:
/// - 0xa1 (older): `front` `GET /cart` (root, 30 ms) → `back` `load` (error=true, 10 ms),
///   plus `back` `late` whose parent 0xdead is not stored; env=prod on `load`
/// - 0xa2 (newer): `back` `sweep` (root, 5 ms), env=prod
fn fixture() -> (Daemon, u64) {
    let d = start_server();
    let base = now_us() - 30_000_000;
    let front = batch(
        "front",
        &[],
        &[TSpan {
            trace: 0xa1,
            id: 1,
            op: "GET /cart",
            start: base,
            duration: 30 * MS,
            ..Default::default()
        }],
    );
    let back = batch(
        "back",
        &[],
        &[
            TSpan {
                trace: 0xa1,
                id: 2,
                parent: 1,
                op: "load",
                start: base + 5 * MS,
                duration: 10 * MS,
                tags: vec![("error", V::B(true)), ("env", V::S("prod"))],
                ..Default::default()
            },
            TSpan {
                trace: 0xa1,
                id: 3,
                parent: 0xdead,
                op: "late",
                start: base + 40 * MS,
                duration: MS,
                ..Default::default()
            },
            TSpan {
                trace: 0xa2,
                id: 1,
                op: "sweep",
                start: base + 1_000 * MS,
                duration: 5 * MS,
                tags: vec![("env", V::S("prod"))],
                ..Default::default()
            },
        ],
    );
    for body in [front, back] {
        assert_eq!(d.post_thrift(body).0, 202);
    }
    (d, base)
}

#[test]
fn search_without_a_service_and_several_ids() {
    let (d, _) = fixture();
    // every service, newest first, the same tag semantics as with a service
    let (status, v) = d.get("/api/traces?tag=env:prod");
    assert_eq!(status, 200, "{v}");
    assert_eq!(trace_ids(&v), ["00000000000000a2", "00000000000000a1"]);
    let (_, v) = d.get("/api/traces?operation=GET%20/cart");
    assert_eq!(trace_ids(&v), ["00000000000000a1"]);
    let (_, v) = d.get("/api/traces?tag=env:prod&limit=1");
    assert_eq!(trace_ids(&v), ["00000000000000a2"]);
    let (_, v) = d.get("/api/traces?tag=env:staging");
    assert_eq!(data(&v).len(), 0);

    let (status, v) = d.get("/api/v3/traces?query.attributes=%7B%22env%22%3A%22prod%22%7D");
    assert_eq!(status, 200, "{v}");
    let spans: usize = v["result"]["resourceSpans"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["scopeSpans"].as_array().unwrap())
        .map(|s| s["spans"].as_array().unwrap().len())
        .sum();
    assert_eq!(spans, 4, "both whole traces: {v}");

    // several ids at once (other criteria are not used), unknown ones left out
    let (_, v) = d.get("/api/traces?traceID=a1&traceID=a2&traceID=ffff&service=front");
    let mut found = trace_ids(&v);
    found.sort();
    assert_eq!(found, ["00000000000000a1", "00000000000000a2"]);
}

#[test]
fn v3_trace_summaries() {
    let (d, base) = fixture();
    let (status, v) = d.get("/api/v3/trace-summaries");
    assert_eq!(status, 200, "{v}");
    let ns = |us: u64| (u128::from(us) * 1000).to_string();
    assert_eq!(
        v,
        json!({"result": {"summaries": [
            {
                "traceId": "000000000000000000000000000000a2",
                "rootServiceName": "back",
                "rootOperationName": "sweep",
                "minStartTimeUnixNano": ns(base + 1_000 * MS),
                "maxEndTimeUnixNano": ns(base + 1_005 * MS),
                "spanCount": 1,
                "errorSpanCount": 0,
                "orphanSpanCount": 0,
                "services": [{"name": "back", "spanCount": 1, "errorSpanCount": 0}],
            },
            {
                "traceId": "000000000000000000000000000000a1",
                "rootServiceName": "front",
                "rootOperationName": "GET /cart",
                "minStartTimeUnixNano": ns(base),
                "maxEndTimeUnixNano": ns(base + 41 * MS),
                "spanCount": 3,
                "errorSpanCount": 1,
                "orphanSpanCount": 1,
                "services": [
                    {"name": "back", "spanCount": 2, "errorSpanCount": 1},
                    {"name": "front", "spanCount": 1, "errorSpanCount": 0},
                ],
            },
        ]}})
    );
    // the same parameters as /api/v3/traces
    let (_, v) = d.get("/api/v3/trace-summaries?query.service_name=front");
    let list = v["result"]["summaries"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["traceId"], "000000000000000000000000000000a1");
    let (status, v) = d.get("/api/v3/trace-summaries?query.start_time_min=yesterday");
    assert_eq!(status, 400);
    assert_eq!(v["error"]["httpCode"], 400);
}

#[test]
fn trace_by_id_takes_a_window_in_ms_or_us() {
    let (d, base) = fixture();
    let (start_ms, end_ms) = (base / 1000 - 60_000, base / 1000 + 60_000);
    for q in [
        format!("?start={start_ms}&end={end_ms}"),
        format!("?start={}&end={}", start_ms * 1000, end_ms * 1000),
        String::new(),
    ] {
        let (status, v) = d.get(&format!("/api/traces/a1{q}"));
        assert_eq!(status, 200, "{q}: {v}");
        assert_eq!(data(&v)[0]["spans"].as_array().unwrap().len(), 3, "{q}");
    }
    let (status, v) = d.get("/api/traces/a1?start=soon");
    assert_eq!(status, 400);
    assert!(
        v["errors"][0]["msg"].as_str().unwrap().contains("'start'"),
        "{v}"
    );
    let (status, _) = d.get(&format!("/api/traces/a1?start={end_ms}&end={start_ms}"));
    assert_eq!(status, 400);
}
