//! Jaeger UI's Monitor tab API (`/api/metrics/*`) against a known load: call rates, error
//! rates and latency quantiles are what was sent, per service and per operation, from
//! server and consumer spans only.

mod common;

use common::*;
use serde_json::{json, Value as Json};

const MINUTE_US: u64 = 60_000_000;

/// In one minute five minutes ago, service `shop`:
/// - `GET /a`: 10 server spans of 10, 20, … 100 ms, the first two with error=true
/// - `POST /b`: 5 server spans of 200 ms
/// - `poll`: 4 consumer spans of 1 ms
/// - `call-db`: 7 client spans (not calls of `shop`)
///
/// Returns the end of that minute in ms.
fn load(d: &Daemon) -> u64 {
    let minute = now_us() / MINUTE_US - 5;
    let at = minute * MINUTE_US + 1_000_000;
    let mut spans = Vec::new();
    let mut id = 0;
    let mut add = |op: &'static str, kind: &'static str, ms: u64, error: bool| {
        id += 1;
        let mut tags = vec![("span.kind", V::S(kind))];
        if error {
            tags.push(("error", V::B(true)));
        }
        spans.push(TSpan {
            trace: 0x1000 + u128::from(id),
            id,
            op,
            start: at + id,
            duration: ms * 1000,
            tags,
            ..Default::default()
        });
    };
    for i in 1..=10 {
        add("GET /a", "server", i * 10, i <= 2);
    }
    for _ in 0..5 {
        add("POST /b", "server", 200, false);
    }
    for _ in 0..4 {
        add("poll", "consumer", 1, false);
    }
    for _ in 0..7 {
        add("call-db", "client", 3, true);
    }
    assert_eq!(d.post_thrift(batch("shop", &[], &spans)).0, 202);
    (minute + 1) * 60_000
}

/// The single point of each metric in the answer, by its labels.
fn points(v: &Json) -> Vec<(Vec<String>, f64)> {
    v["metrics"]
        .as_array()
        .unwrap_or_else(|| panic!("no metrics in {v}"))
        .iter()
        .map(|m| {
            let labels = m["labels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| {
                    format!(
                        "{}={}",
                        l["name"].as_str().unwrap(),
                        l["value"].as_str().unwrap()
                    )
                })
                .collect();
            let pts = m["metricPoints"].as_array().unwrap();
            assert_eq!(pts.len(), 1, "{m}");
            (
                labels,
                pts[0]["gaugeValue"]["doubleValue"].as_f64().unwrap(),
            )
        })
        .collect()
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| (*x).to_owned()).collect()
}

#[test]
fn red_metrics_match_the_load() {
    let d = start_server();
    let end = load(&d);
    let window = format!("endTs={end}&lookback=0&step=60000&ratePer=600000");
    let get = |q: &str| {
        let (status, v) = d.get(q);
        assert_eq!(status, 200, "{q}: {v}");
        v
    };

    let v = get(&format!("/api/metrics/calls?service=shop&{window}"));
    assert_eq!(v["name"], "service_call_rate");
    assert_eq!(v["type"], "GAUGE");
    // 15 server calls over the 600 s rate window
    assert_eq!(points(&v), [(s(&["service_name=shop"]), 15.0 / 600.0)]);
    let ts = &v["metrics"][0]["metricPoints"][0]["timestamp"];
    assert!(ts.as_str().unwrap().ends_with('Z'), "{ts}");

    let v = get(&format!(
        "/api/metrics/calls?service=shop&groupByOperation=true&{window}"
    ));
    assert_eq!(v["name"], "service_operation_call_rate");
    assert_eq!(
        points(&v),
        [
            (s(&["operation=GET /a", "service_name=shop"]), 10.0 / 600.0),
            (s(&["operation=POST /b", "service_name=shop"]), 5.0 / 600.0),
        ]
    );
    let v = get(&format!(
        "/api/metrics/calls?service=shop&spanKind=consumer&{window}"
    ));
    assert_eq!(points(&v), [(s(&["service_name=shop"]), 4.0 / 600.0)]);
    let v = get(&format!(
        "/api/metrics/calls?service=shop&spanKind=server&spanKind=consumer&{window}"
    ));
    assert_eq!(points(&v), [(s(&["service_name=shop"]), 19.0 / 600.0)]);

    let v = get(&format!("/api/metrics/errors?service=shop&{window}"));
    assert_eq!(v["name"], "service_error_rate");
    assert_eq!(points(&v), [(s(&["service_name=shop"]), 2.0 / 15.0)]);
    let v = get(&format!(
        "/api/metrics/errors?service=shop&groupByOperation=true&{window}"
    ));
    assert_eq!(
        points(&v),
        [
            (s(&["operation=GET /a", "service_name=shop"]), 0.2),
            (s(&["operation=POST /b", "service_name=shop"]), 0.0),
        ]
    );

    let v = get(&format!(
        "/api/metrics/latencies?service=shop&groupByOperation=true&quantile=0.5&{window}"
    ));
    assert_eq!(v["name"], "service_operation_latencies");
    let p = points(&v);
    // GET /a: 10..100 ms, the median 50 ms (within the histogram's 4 % bucket); POST /b 200
    assert!((50.0..=52.0).contains(&p[0].1), "{p:?}");
    assert!((200.0 / 1.04..=200.0).contains(&p[1].1), "{p:?}");
    let v = get(&format!(
        "/api/metrics/latencies?service=shop&quantile=1&{window}"
    ));
    assert_eq!(points(&v), [(s(&["service_name=shop"]), 200.0)]);

    // a service with no calls in the window: no points for rates of nothing
    let v = get(&format!("/api/metrics/errors?service=nobody&{window}"));
    assert_eq!(v["metrics"][0]["metricPoints"], json!([]));

    let v = get("/api/metrics/minstep");
    assert_eq!(v["data"], 60000);

    for (q, needle) in [
        ("/api/metrics/calls", "'service'"),
        ("/api/metrics/latencies?service=shop", "quantile"),
        ("/api/metrics/calls?service=shop&spanKind=up", "spanKind"),
    ] {
        let (status, v) = d.get(q);
        assert_eq!(status, 400, "{q}: {v}");
        assert!(
            v["errors"][0]["msg"].as_str().unwrap().contains(needle),
            "{q}: {v}"
        );
    }
}

#[test]
fn dependencies_are_counted_at_ingest_in_either_order() {
    let d = start_server();
    let at = now_us() - 10_000_000;
    let one = |service: &'static str, id: u64, parent: u64| {
        batch(
            service,
            &[],
            &[TSpan {
                trace: 0x77,
                id,
                parent,
                op: "op",
                start: at + id,
                duration: 10,
                ..Default::default()
            }],
        )
    };
    // a child before its parent, the parent, a child after it, a same-service child
    for body in [
        one("db", 2, 1),
        one("api", 1, 0),
        one("db", 3, 1),
        one("api", 4, 1),
    ] {
        assert_eq!(d.post_thrift(body).0, 202);
    }
    let end_ms = now_us() / 1000;
    let (status, v) = d.get(&format!(
        "/api/dependencies?endTs={end_ms}&lookback=604800000"
    ));
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["data"],
        json!([{"parent": "api", "child": "db", "callCount": 2}])
    );
    // a window two days back holds nothing
    let (_, v) = d.get(&format!(
        "/api/dependencies?endTs={}&lookback=86400000",
        end_ms - 2 * 86_400_000
    ));
    assert_eq!(v["data"], json!([]));
}
