//! Search semantics of Jaeger's `/api/traces` against the real daemon (DESIGN section 3):
//! where tags match, the time window, span durations, operations, limit and order, and the
//! catalog endpoints.

mod common;

use common::*;

const MS: u64 = 1_000;

struct Fixture {
    d: Daemon,
    base: u64,
}

/// Five traces of service `shop` (one span each unless said otherwise), 1 s apart, oldest first:
/// - t1: op `GET /a`, 10 ms, tag http.status_code=200 (int)
/// - t2: op `GET /b`, 200 ms, log field `event=cache-miss`, server kind
/// - t3: op `GET /a`, 50 ms, tags `db=mysql` on one span and `region=eu` on another
/// - t4: op `GET /a`, 5 ms, plus a second span 1 h earlier (outside any narrow window)
/// - t5: service `billing` (process tag `version=2`) child of a `shop` span
fn fixture() -> Fixture {
    let d = start_server();
    let base = now_us() - 60_000_000;
    let t = |n: u64| base + n * 1_000_000;
    let shop = |spans: &[TSpan]| batch("shop", &[("hostname", V::S("host-1"))], spans);
    let posts = vec![
        shop(&[TSpan {
            trace: 0x11,
            id: 1,
            op: "GET /a",
            start: t(1),
            duration: 10 * MS,
            tags: vec![
                ("http.status_code", V::I(200)),
                ("span.kind", V::S("server")),
            ],
            ..Default::default()
        }]),
        shop(&[TSpan {
            trace: 0x12,
            id: 1,
            op: "GET /b",
            start: t(2),
            duration: 200 * MS,
            tags: vec![("span.kind", V::S("server"))],
            logs: vec![(t(2), vec![("event", V::S("cache-miss")), ("n", V::I(3))])],
            ..Default::default()
        }]),
        shop(&[
            TSpan {
                trace: 0x13,
                id: 1,
                op: "GET /a",
                start: t(3),
                duration: 50 * MS,
                tags: vec![("db", V::S("mysql")), ("span.kind", V::S("server"))],
                ..Default::default()
            },
            TSpan {
                trace: 0x13,
                id: 2,
                parent: 1,
                op: "query",
                start: t(3) + MS,
                duration: 20 * MS,
                tags: vec![("region", V::S("eu")), ("span.kind", V::S("client"))],
                ..Default::default()
            },
        ]),
        shop(&[
            TSpan {
                trace: 0x14,
                id: 1,
                op: "GET /a",
                start: t(4),
                duration: 5 * MS,
                tags: vec![("span.kind", V::S("server"))],
                ..Default::default()
            },
            TSpan {
                trace: 0x14,
                id: 2,
                op: "warmup",
                start: t(4) - 3_600_000_000,
                duration: MS,
                ..Default::default()
            },
        ]),
        shop(&[TSpan {
            trace: 0x15,
            id: 1,
            op: "checkout",
            start: t(5),
            duration: 30 * MS,
            tags: vec![("span.kind", V::S("client"))],
            ..Default::default()
        }]),
        batch(
            "billing",
            &[("version", V::S("2"))],
            &[TSpan {
                trace: 0x15,
                id: 2,
                parent: 1,
                op: "charge",
                start: t(5) + MS,
                duration: 20 * MS,
                tags: vec![("span.kind", V::S("server"))],
                ..Default::default()
            }],
        ),
    ];
    for body in posts {
        let (status, text) = d.post_thrift(body);
        assert_eq!(status, 202, "{text}");
    }
    Fixture { d, base }
}

fn search(f: &Fixture, q: &str) -> Vec<String> {
    let (status, v) = f.d.get(&format!("/api/traces?{q}"));
    assert_eq!(status, 200, "{q}: {v}");
    assert!(v["errors"].is_null());
    assert_eq!(v["total"].as_u64().unwrap() as usize, data(&v).len());
    trace_ids(&v)
}

fn ids(list: &[u64]) -> Vec<String> {
    list.iter().map(|n| format!("{n:016x}")).collect()
}

#[test]
fn search_semantics() {
    let f = fixture();
    let window = format!("start={}&end={}", f.base, f.base + 10_000_000);

    // service alone: every trace touching the service, newest first
    assert_eq!(
        search(&f, "service=shop"),
        ids(&[0x15, 0x14, 0x13, 0x12, 0x11])
    );
    assert_eq!(search(&f, "service=billing"), ids(&[0x15]));
    assert_eq!(search(&f, "service=nobody"), Vec::<String>::new());

    // limit counts traces and keeps the newest
    assert_eq!(search(&f, "service=shop&limit=2"), ids(&[0x15, 0x14]));

    // operation filter
    assert_eq!(
        search(&f, "service=shop&operation=GET%20%2Fa"),
        ids(&[0x14, 0x13, 0x11])
    );

    // a tag matches in span tags (by its string form), in log fields, in process tags
    assert_eq!(
        search(&f, "service=shop&tag=http.status_code:200"),
        ids(&[0x11])
    );
    assert_eq!(
        search(&f, "service=shop&tag=event:cache-miss"),
        ids(&[0x12])
    );
    assert_eq!(
        search(
            &f,
            "service=shop&tags=%7B%22event%22%3A%22cache-miss%22%2C%22n%22%3A%223%22%7D"
        ),
        ids(&[0x12])
    );
    assert_eq!(search(&f, "service=billing&tag=version:2"), ids(&[0x15]));
    assert_eq!(
        search(&f, "service=shop&tag=version:2"),
        Vec::<String>::new()
    );
    assert_eq!(
        search(&f, "service=shop&tag=hostname:host-1&limit=1"),
        ids(&[0x15])
    );
    // all pairs must be on one span of the service
    assert_eq!(search(&f, "service=shop&tag=db:mysql"), ids(&[0x13]));
    assert_eq!(
        search(&f, "service=shop&tag=db:mysql&tag=region:eu"),
        Vec::<String>::new()
    );

    // durations apply to individual spans of the service (and operation)
    assert_eq!(search(&f, "service=shop&minDuration=100ms"), ids(&[0x12]));
    assert_eq!(search(&f, "service=shop&maxDuration=6ms"), ids(&[0x14]));
    assert_eq!(
        search(&f, "service=shop&minDuration=15ms&maxDuration=25ms"),
        ids(&[0x13])
    );
    assert_eq!(
        search(
            &f,
            "service=shop&operation=GET%20%2Fa&minDuration=15ms&maxDuration=25ms"
        ),
        Vec::<String>::new()
    );

    // the window selects by span start; the whole trace comes back
    assert_eq!(
        search(&f, &format!("service=shop&operation=GET%20%2Fa&{window}")),
        ids(&[0x14, 0x13, 0x11])
    );
    let (_, v) = f.d.get(&format!(
        "/api/traces?service=shop&start={}&end={}",
        f.base + 3_500_000,
        f.base + 4_500_000
    ));
    assert_eq!(trace_ids(&v), ids(&[0x14]));
    assert_eq!(
        data(&v)[0]["spans"].as_array().unwrap().len(),
        2,
        "span outside the window is included"
    );
    let narrow = format!("start={}&end={}", f.base + 4_500_000, f.base + 10_000_000);
    assert_eq!(
        search(&f, &format!("service=shop&operation=warmup&{narrow}")),
        Vec::<String>::new()
    );
    assert_eq!(search(&f, "service=shop&operation=warmup"), ids(&[0x14]));
    // lookback counts back from end
    assert_eq!(
        search(
            &f,
            &format!("service=shop&end={}&lookback=1500ms", f.base + 5_100_000)
        ),
        ids(&[0x15, 0x14])
    );
    // traceID fetches directly
    assert_eq!(
        search(&f, "traceID=11&traceID=0000000000000013"),
        ids(&[0x11, 0x13])
    );
}

#[test]
fn catalog_and_dependencies() {
    let f = fixture();
    let (_, v) = f.d.get("/api/services");
    assert_eq!(v["data"], serde_json::json!(["billing", "shop"]));
    assert_eq!(v["total"], 2);

    let (_, v) = f.d.get("/api/services/shop/operations");
    assert_eq!(
        v["data"],
        serde_json::json!(["GET /a", "GET /b", "checkout", "query", "warmup"])
    );

    let (_, v) = f.d.get("/api/operations?service=shop");
    let ops = data(&v);
    assert!(
        ops.contains(&serde_json::json!({"name": "GET /a", "spanKind": "server"})),
        "{v}"
    );
    assert!(
        ops.contains(&serde_json::json!({"name": "warmup", "spanKind": ""})),
        "{v}"
    );
    let (_, v) = f.d.get("/api/operations?service=shop&spanKind=client");
    assert_eq!(
        v["data"],
        serde_json::json!([{"name": "checkout", "spanKind": "client"}, {"name": "query", "spanKind": "client"}])
    );

    let end_ms = (f.base + 10_000_000) / 1000;
    let (status, v) =
        f.d.get(&format!("/api/dependencies?endTs={end_ms}&lookback=60000"));
    assert_eq!(status, 200);
    assert_eq!(
        v["data"],
        serde_json::json!([{"parent": "shop", "child": "billing", "callCount": 1}])
    );
}
