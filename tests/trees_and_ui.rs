//! Trace trees, the people's search API and the web UI, against the real binary. The UI is
//! driven in Debian's Chromium by npm `playwright-core`.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value as Json;

const MS: u64 = 1000;

/// A platform-shaped trace: the platform's spans on one host, the function's on another,
/// plus a function span that started before Invocation (clock skew) and one whose parent
/// was never stored (orphan).
fn post_platform_trace(d: &Daemon, trace: u128, base: u64) {
    let platform = batch(
        "FC:demo/hello",
        &[("hostname", V::S("gateway-1"))],
        &[
            TSpan {
                trace,
                id: 1,
                op: "InvokeFunction",
                start: base,
                duration: 500 * MS,
                tags: vec![("span.kind", V::S("server"))],
                ..Default::default()
            },
            TSpan {
                trace,
                id: 2,
                parent: 1,
                op: "ColdStart",
                start: base + MS,
                duration: 200 * MS,
                ..Default::default()
            },
            TSpan {
                trace,
                id: 3,
                parent: 2,
                op: "PrepareCode",
                start: base + MS,
                duration: 50 * MS,
                ..Default::default()
            },
            TSpan {
                trace,
                id: 4,
                parent: 2,
                op: "RuntimeInitialization",
                start: base + 51 * MS,
                duration: 150 * MS,
                ..Default::default()
            },
            TSpan {
                trace,
                id: 5,
                parent: 1,
                op: "Initializer",
                start: base + 201 * MS,
                duration: 40 * MS,
                ..Default::default()
            },
            TSpan {
                trace,
                id: 6,
                parent: 1,
                op: "Invocation",
                start: base + 250 * MS,
                duration: 240 * MS,
                ..Default::default()
            },
        ],
    );
    let function = batch(
        "hello-fn",
        &[("hostname", V::S("fn-host-7"))],
        &[
            // starts 30 ms before its parent: another host's clock
            TSpan {
                trace,
                id: 7,
                parent: 6,
                op: "handler",
                start: base + 220 * MS,
                duration: 200 * MS,
                ..Default::default()
            },
            TSpan {
                trace,
                id: 8,
                parent: 7,
                op: "query-db",
                start: base + 260 * MS,
                duration: 150 * MS,
                tags: vec![("error", V::B(true)), ("http.status_code", V::I(500))],
                ..Default::default()
            },
            TSpan {
                trace,
                id: 9,
                parent: 0x99,
                op: "lost-child",
                start: base + 300 * MS,
                duration: 5 * MS,
                ..Default::default()
            },
        ],
    );
    assert_eq!(d.post_thrift(platform).0, 202);
    assert_eq!(d.post_thrift(function).0, 202);
}

fn find<'a>(node: &'a Json, name: &str) -> Option<&'a Json> {
    if node["span"]["operationName"] == name {
        return Some(node);
    }
    node["children"]
        .as_array()?
        .iter()
        .find_map(|c| find(c, name))
}

fn child_names(node: &Json) -> Vec<&str> {
    node["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["span"]["operationName"].as_str().unwrap())
        .collect()
}

#[test]
fn tree_api_nests_counts_and_repairs() {
    let d = start_server();
    let base = now_us() - 10_000_000;
    post_platform_trace(&d, 0x77, base);
    let (status, v) = d.get("/api/v1/traces/77/tree");
    assert_eq!(status, 200, "{v}");
    let tree = &v["data"];
    let roots = tree["roots"].as_array().unwrap();
    assert_eq!(roots.len(), 1);
    let root = &roots[0];
    assert_eq!(root["span"]["operationName"], "InvokeFunction");
    assert_eq!(root["span"]["platform"], true);
    assert_eq!(
        child_names(root),
        vec!["ColdStart", "Initializer", "Invocation", "lost-child"]
    );
    let cold = find(root, "ColdStart").unwrap();
    assert_eq!(
        child_names(cold),
        vec!["PrepareCode", "RuntimeInitialization"]
    );
    assert_eq!(find(root, "RuntimeInitialization").unwrap()["depth"], 2);
    let handler = find(root, "handler").unwrap();
    assert_eq!(handler["depth"], 2);
    assert_eq!(handler["span"]["platform"], false);
    assert_eq!(handler["span"]["host"], "fn-host-7");
    // skew: moved 30 ms later into Invocation's window, with its child
    assert_eq!(handler["span"]["startTime"], base + 250 * MS);
    assert_eq!(
        find(root, "query-db").unwrap()["span"]["startTime"],
        base + 290 * MS
    );
    assert!(handler["span"]["warnings"][0]
        .as_str()
        .unwrap()
        .contains("clock skew"));
    // self time: InvokeFunction 500 ms minus its children's union (1..241 ms, 250..490 ms; the orphan inside)
    assert_eq!(root["selfTime"], (500 - 240 - 240) * MS);
    assert_eq!(find(root, "Invocation").unwrap()["selfTime"], 40 * MS);

    let s = &tree["summary"];
    assert_eq!(s["spanCount"], 9);
    assert_eq!(s["depth"], 4);
    assert_eq!(s["serviceCount"], 2);
    assert_eq!(s["errorCount"], 1);
    assert_eq!(
        (s["startTime"].as_u64(), s["duration"].as_u64()),
        (Some(base), Some(500 * MS))
    );
    assert_eq!(
        s["criticalPath"],
        serde_json::json!([
            "0000000000000001",
            "0000000000000006",
            "0000000000000007",
            "0000000000000008"
        ])
    );
    let warnings: Vec<&str> = s["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("parent 0000000000000099 of span 0000000000000009 is not stored")),
        "{warnings:?}"
    );
    assert!(
        warnings.iter().any(|w| w.contains("clock skew")),
        "{warnings:?}"
    );

    let (status, v) = d.get("/api/v1/traces/1234/tree");
    assert_eq!(status, 404);
    assert_eq!(v["errors"][0]["msg"], "trace not found");
}

#[test]
fn a_ten_thousand_span_trace_is_served() {
    let d = start_server();
    let base = now_us() - 5_000_000;
    let trace = 0xb16_u128;
    // root, 99 children, each with 100 grandchildren (minus one): 10,000 spans
    let mut spans = vec![TSpan {
        trace,
        id: 1,
        op: "root",
        start: base,
        duration: 1_000_000,
        ..Default::default()
    }];
    for c in 0..99u64 {
        let cid = 2 + c * 101;
        spans.push(TSpan {
            trace,
            id: cid,
            parent: 1,
            op: "child",
            start: base + c,
            duration: 1000,
            ..Default::default()
        });
        for g in 0..100u64 {
            if spans.len() == 10_000 {
                break;
            }
            spans.push(TSpan {
                trace,
                id: cid + 1 + g,
                parent: cid,
                op: "grandchild",
                start: base + c + g,
                duration: 10,
                ..Default::default()
            });
        }
    }
    while spans.len() < 10_000 {
        let id = 100_000 + spans.len() as u64;
        spans.push(TSpan {
            trace,
            id,
            parent: 1,
            op: "extra",
            start: base,
            duration: 1,
            ..Default::default()
        });
    }
    for chunk in spans.chunks(1000) {
        assert_eq!(d.post_thrift(batch("big", &[], chunk)).0, 202);
    }
    let (status, v) = d.get(&format!("/api/v1/traces/{trace:x}/tree"));
    assert_eq!(status, 200);
    assert_eq!(v["data"]["summary"]["spanCount"], 10_000);
    assert_eq!(v["data"]["summary"]["depth"], 3);
    assert!(v["data"]["summary"]["warnings"]
        .as_array()
        .unwrap()
        .is_empty());
}

fn summaries(d: &Daemon, q: &str) -> Vec<Json> {
    let (status, v) = d.get(&format!("/api/v1/traces?{q}"));
    assert_eq!(status, 200, "{q}: {v}");
    data(&v).clone()
}

fn ids(list: &[Json]) -> Vec<&str> {
    list.iter()
        .map(|t| t["traceID"].as_str().unwrap())
        .collect()
}

#[test]
fn people_search_filters_and_sorts_whole_traces() {
    let d = start_server();
    let base = now_us() - 60_000_000;
    let http = |method: &'static str, url: &'static str, status: i64| {
        vec![
            ("http.method", V::S(method)),
            ("http.url", V::S(url)),
            ("http.status_code", V::I(status)),
        ]
    };
    // a: 100 ms GET /a 200; b: 2 s POST /b 500 with an error; c: 700 ms GET /c 200, newest
    let traces = [
        (0xa_u128, 1, 100 * MS, http("GET", "/a", 200), false),
        (0xb, 2, 2000 * MS, http("POST", "/b", 500), true),
        (0xc, 3, 700 * MS, http("GET", "/c?x=1", 200), false),
    ];
    for (t, i, dur, tags, err) in traces {
        let mut child_tags = vec![];
        if err {
            child_tags.push(("error", V::B(true)));
        }
        let spans = [
            TSpan {
                trace: t,
                id: 1,
                op: "GET",
                start: base + i * 1_000_000,
                duration: dur,
                tags,
                ..Default::default()
            },
            TSpan {
                trace: t,
                id: 2,
                parent: 1,
                op: "db",
                start: base + i * 1_000_000 + 10,
                duration: 50 * MS,
                tags: child_tags,
                ..Default::default()
            },
        ];
        assert_eq!(d.post_thrift(batch("web", &[], &spans)).0, 202);
    }
    assert_eq!(
        d.post_thrift(batch(
            "other",
            &[],
            &[TSpan {
                trace: 0xd,
                id: 1,
                op: "x",
                start: base,
                duration: 1,
                ..Default::default()
            }]
        ))
        .0,
        202
    );

    let all = summaries(&d, "service=web");
    assert_eq!(
        ids(&all),
        vec!["000000000000000c", "000000000000000b", "000000000000000a"]
    );
    let b = &all[1];
    assert_eq!(b["rootService"], "web");
    assert_eq!(b["rootOperation"], "GET");
    assert_eq!(b["duration"], 2000 * MS);
    assert_eq!(b["spanCount"], 2);
    assert_eq!(b["services"], serde_json::json!(["web"]));
    assert_eq!(
        (b["error"].as_bool(), b["errorCount"].as_u64()),
        (Some(true), Some(1))
    );
    assert_eq!(
        (
            b["httpMethod"].as_str(),
            b["httpUrl"].as_str(),
            b["httpStatus"].as_str()
        ),
        (Some("POST"), Some("/b"), Some("500"))
    );

    assert_eq!(
        ids(&summaries(&d, "service=web&sort=duration")),
        vec!["000000000000000b", "000000000000000c", "000000000000000a"]
    );
    assert_eq!(
        ids(&summaries(&d, "service=web&trace_duration_min=500ms")),
        vec!["000000000000000c", "000000000000000b"]
    );
    assert_eq!(
        ids(&summaries(
            &d,
            "service=web&trace_duration_max=1s&sort=duration"
        )),
        vec!["000000000000000c", "000000000000000a"]
    );
    assert_eq!(
        ids(&summaries(&d, "service=web&errors_only=true")),
        vec!["000000000000000b"]
    );
    assert_eq!(
        ids(&summaries(&d, "service=web&http_status=200")),
        vec!["000000000000000c", "000000000000000a"]
    );
    assert_eq!(
        ids(&summaries(&d, "service=web&http_method=post")),
        vec!["000000000000000b"]
    );
    assert_eq!(
        ids(&summaries(&d, "service=web&url=%2Fc")),
        vec!["000000000000000c"]
    );
    assert_eq!(
        ids(&summaries(
            &d,
            "service=web&tags=%7B%22http.url%22%3A%22%2Fa%22%7D"
        )),
        vec!["000000000000000a"]
    );
    assert_eq!(
        ids(&summaries(&d, "service=web&limit=1&sort=duration")),
        vec!["000000000000000b"]
    );
    // without a service: every application
    assert_eq!(summaries(&d, "").len(), 4);
    let (status, v) = d.get("/api/v1/traces?service=web&sort=sideways");
    assert_eq!(status, 400);
    assert!(v["errors"][0]["msg"].as_str().unwrap().contains("'sort'"));
}

#[test]
fn web_ui_in_chromium_searches_and_shows_the_waterfall() {
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "Debian's chromium is needed for the UI test (make deps installs it)"
    );
    let dir = node_clients();
    let d = start_server();
    let base = now_us() - 10_000_000;
    post_platform_trace(&d, 0x77, base);
    let shots = Path::new(E2E).join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join("trace.png");
    let _ = std::fs::remove_file(&shot);
    let out = run(Command::new("node")
        .arg("ui_browser.js")
        .arg(format!("{}/", d.query))
        .arg("FC:demo/hello")
        .arg(&shot)
        .current_dir(&dir));
    let v: Json = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["errors"],
        serde_json::json!([]),
        "no script errors in the page"
    );
    assert_eq!(
        v["failed"],
        serde_json::json!([]),
        "no request of the page failed"
    );
    // the page names an icon, and it is served
    let icon = v["icon"].as_str().unwrap();
    let r = http().get(icon).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "image/svg+xml");
    assert!(r.text().unwrap().starts_with("<svg"));
    assert_eq!(v["results"], serde_json::json!(["0000000000000077"]));
    let rows = v["rows"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        vec![
            "InvokeFunction",
            "ColdStart",
            "PrepareCode",
            "RuntimeInitialization",
            "Initializer",
            "Invocation",
            "handler",
            "query-db",
            "lost-child"
        ],
        "waterfall rows in tree order"
    );
    let indents: Vec<&str> = rows.iter().map(|r| r["indent"].as_str().unwrap()).collect();
    assert_eq!(indents[0], "0px");
    assert_eq!(indents[2], "32px");
    assert_eq!(indents[7], "48px");
    assert_eq!(rows[0]["platform"], true);
    assert_eq!(
        rows[6]["platform"], false,
        "user spans look different from platform spans"
    );
    assert_eq!(rows[6]["application"], "hello-fn");
    assert_eq!(rows[7]["status"], "Error");
    let summary = v["summary"].as_str().unwrap();
    assert!(
        summary.contains("Spans 9")
            && summary.contains("Depth 4")
            && summary.contains("Applications 2"),
        "{summary}"
    );
    assert!(v["details"].as_str().unwrap().contains("lost-child"));
    // the topology: the platform's application calls the function's
    assert_eq!(
        v["topology"],
        serde_json::json!(["FC:demo/hello", "hello-fn"])
    );
    assert_eq!(
        v["edges"],
        serde_json::json!(["FC:demo/hello -> hello-fn: 1 call"])
    );
    // the sequence: Invocation (240 ms, the platform's side) calls handler (200 ms)
    assert_eq!(
        v["calls"],
        serde_json::json!([{"from": "FC:demo/hello", "to": "hello-fn", "client": 240_000,
            "server": 200_000, "label": "client 240ms · server 200ms"}])
    );
    assert_eq!(
        (
            v["downloadName"].as_str(),
            v["downloadedTrace"].as_str(),
            v["downloadedSpans"].as_u64()
        ),
        (
            Some("trace-0000000000000077.json"),
            Some("0000000000000077"),
            Some(9)
        )
    );
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "screenshot saved at {}",
        shot.display()
    );
}
