//! APM-style trace search through the real binary (issue 19): time presets, where a trace
//! ran (region, environment, component, instance from resource attributes), REST or real
//! URL with exact matching, method, status, response time, errors or successes only,
//! custom `key=value` parameters, a trace id that overrides the rest, both sorts in both
//! orders, and the rows' fields. Expected ids are written out by hand from the traces
//! posted below.

mod common;

use common::*;
use serde_json::Value as Json;

const MS: u64 = 1000;
const HOUR: u64 = 3_600_000_000;

struct T {
    id: u128,
    start: u64,
    ms: u64,
    process: Vec<(&'static str, V)>,
    tags: Vec<(&'static str, V)>,
}

fn post(d: &Daemon, t: T) {
    let span = TSpan {
        trace: t.id,
        id: 1,
        op: "request",
        start: t.start,
        duration: t.ms * MS,
        tags: t.tags,
        ..Default::default()
    };
    assert_eq!(d.post_thrift(batch("shop", &t.process, &[span])).0, 202);
}

fn ids(d: &Daemon, q: &str) -> Vec<String> {
    let (status, v) = d.get(&format!("/api/v1/traces?{q}"));
    assert_eq!(status, 200, "{q}: {v}");
    data(&v)
        .iter()
        .map(|t| {
            t["traceID"]
                .as_str()
                .unwrap()
                .trim_start_matches('0')
                .to_owned()
        })
        .collect()
}

fn place(
    region: &'static str,
    env: &'static str,
    instance: &'static str,
    host: &'static str,
    ip: &'static str,
) -> Vec<(&'static str, V)> {
    vec![
        ("cloud.region", V::S(region)),
        ("deployment.environment", V::S(env)),
        ("service.instance.id", V::S(instance)),
        ("hostname", V::S(host)),
        ("ip", V::S(ip)),
    ]
}

fn http(
    method: &'static str,
    route: &'static str,
    url: &'static str,
    status: i64,
    component: &'static str,
) -> Vec<(&'static str, V)> {
    vec![
        ("http.method", V::S(method)),
        ("http.route", V::S(route)),
        ("http.url", V::S(url)),
        ("http.status_code", V::I(status)),
        ("component", V::S(component)),
    ]
}

#[test]
fn apm_criteria_presets_and_sorts_select_what_they_should() {
    let d = start_server();
    let now = now_us();
    let base = now - 60_000_000;
    post(
        &d,
        T {
            id: 0xa1,
            start: base + 1_000_000,
            ms: 100,
            process: place("eu", "prod", "i-1", "h1", "10.0.0.1"),
            tags: http("GET", "/items/{id}", "/items/7", 200, "net/http"),
        },
    );
    let mut failed = http("POST", "/orders", "/orders", 500, "grpc");
    failed.extend([("error", V::B(true)), ("fc.request_id", V::S("req2"))]);
    post(
        &d,
        T {
            id: 0xa2,
            start: base + 2_000_000,
            ms: 2000,
            process: place("us", "prod", "i-2", "h2", "10.0.0.2"),
            tags: failed,
        },
    );
    let mut custom = http("GET", "/items/{id}", "/items/42", 200, "net/http");
    custom.push(("user", V::S("alice")));
    post(
        &d,
        T {
            id: 0xa3,
            start: base + 3_000_000,
            ms: 700,
            process: place("eu", "test", "i-3", "h3", "10.0.0.3"),
            tags: custom,
        },
    );
    // two hours ago, and yesterday at noon UTC
    post(
        &d,
        T {
            id: 0xa4,
            start: now - 2 * HOUR,
            ms: 10,
            process: place("eu", "prod", "i-1", "h1", "10.0.0.1"),
            tags: http("GET", "/", "/", 200, "net/http"),
        },
    );
    let midnight = now - now % (24 * HOUR);
    let yesterday_noon = midnight - 12 * HOUR;
    post(
        &d,
        T {
            id: 0xa5,
            start: yesterday_noon,
            ms: 10,
            process: place("eu", "prod", "i-1", "h1", "10.0.0.1"),
            tags: http("GET", "/", "/", 200, "net/http"),
        },
    );

    // the default window is the last 20 minutes, newest first
    assert_eq!(ids(&d, "application=shop"), ["a3", "a2", "a1"]);
    // where it ran
    assert_eq!(ids(&d, "region=eu"), ["a3", "a1"]);
    assert_eq!(ids(&d, "environment=prod"), ["a2", "a1"]);
    assert_eq!(ids(&d, "component=grpc"), ["a2"]);
    assert_eq!(ids(&d, "instance=i-3"), ["a3"]);
    assert_eq!(ids(&d, "instance=10.0.0.1"), ["a1"]);
    // REST template or real URL, exact or not
    assert_eq!(
        ids(&d, "url=%2Fitems%2F%7Bid%7D&url_exact=true"),
        ["a3", "a1"]
    );
    assert_eq!(ids(&d, "url=%2Fitems%2F7&url_exact=true"), ["a1"]);
    assert_eq!(
        ids(&d, "url=%2Fitems%2F4&url_exact=true"),
        Vec::<String>::new()
    );
    assert_eq!(ids(&d, "url=%2Fitems%2F4"), ["a3"]);
    // method, status, response time, outcome
    assert_eq!(ids(&d, "http_method=POST"), ["a2"]);
    assert_eq!(ids(&d, "http_status=200"), ["a3", "a1"]);
    assert_eq!(
        ids(&d, "trace_duration_min=500ms&trace_duration_max=1s"),
        ["a3"]
    );
    assert_eq!(ids(&d, "errors_only=true"), ["a2"]);
    assert_eq!(ids(&d, "successes_only=true"), ["a3", "a1"]);
    // custom parameters
    assert_eq!(ids(&d, "param=user%3Dalice"), ["a3"]);
    // a trace id overrides every other criterion
    assert_eq!(ids(&d, "traceID=a4&region=us&preset=20m"), ["a4"]);
    // sorts, both ways
    assert_eq!(ids(&d, "sort=duration"), ["a2", "a3", "a1"]);
    assert_eq!(ids(&d, "sort=duration&order=asc"), ["a1", "a3", "a2"]);
    assert_eq!(ids(&d, "sort=start&order=asc"), ["a1", "a2", "a3"]);
    // presets
    assert_eq!(ids(&d, "preset=1h"), ["a3", "a2", "a1"]);
    assert_eq!(ids(&d, "preset=3h"), ["a3", "a2", "a1", "a4"]);
    let mut day: Vec<(u64, &str)> = vec![
        (base + 3_000_000, "a3"),
        (base + 2_000_000, "a2"),
        (base + 1_000_000, "a1"),
        (now - 2 * HOUR, "a4"),
        (yesterday_noon, "a5"),
    ];
    day.sort_by_key(|e| std::cmp::Reverse(e.0));
    let within = |from: u64, to: u64| -> Vec<String> {
        day.iter()
            .filter(|e| (from..=to).contains(&e.0))
            .map(|e| e.1.to_owned())
            .collect()
    };
    assert_eq!(ids(&d, "preset=today"), within(midnight, now + 60_000_000));
    assert_eq!(
        ids(&d, "preset=yesterday"),
        within(midnight - 24 * HOUR, midnight - 1)
    );
    assert!(ids(&d, "preset=yesterday").contains(&"a5".to_owned()));
    // a custom range
    assert_eq!(
        ids(
            &d,
            &format!("start={}&end={}", base + 1_500_000, base + 2_500_000)
        ),
        ["a2"]
    );

    // a row says what an APM's result list shows
    let (_, v) = d.get("/api/v1/traces?traceID=a1");
    let row = &data(&v)[0];
    let field = |k: &str| row[k].clone();
    assert_eq!(
        [
            "httpMethod",
            "restUrl",
            "httpUrl",
            "httpStatus",
            "component",
            "environment",
            "region",
            "instanceId",
            "instanceHost",
            "instanceIp"
        ]
        .map(field),
        [
            "GET",
            "/items/{id}",
            "/items/7",
            "200",
            "net/http",
            "prod",
            "eu",
            "i-1",
            "h1",
            "10.0.0.1"
        ]
        .map(Json::from)
    );
    assert_eq!(
        (row["duration"].as_u64(), row["startTime"].as_u64()),
        (Some(100 * MS), Some(base + 1_000_000))
    );
    assert_eq!(row["logsUrl"], Json::Null);
    let (_, v) = d.get("/api/v1/traces?traceID=a2");
    assert_eq!(data(&v)[0]["logsUrl"], "/api/v1/logs?requestId=req2");

    // contradictions are refused
    for q in [
        "errors_only=true&successes_only=true",
        "preset=2w",
        "preset=1h&lookback=1h",
        "order=up",
    ] {
        assert_eq!(d.get(&format!("/api/v1/traces?{q}")).0, 400, "{q}");
    }
}
