//! The Functions view and a function's page in Debian's Chromium (npm `playwright-core`):
//! the table of functions, the metric charts (drawn by the page itself, nothing fetched
//! from elsewhere), the live instances, the requests, and a request's record and trace.
//! Screenshots are kept in tests/e2e/screenshots/.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value as Json;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const E2E: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e");

#[test]
fn functions_view_and_function_page_show_metrics_instances_and_requests() {
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "Debian's chromium is needed for the UI test (make test-deps installs it)"
    );
    let dir = node_clients();
    let tmp = tempfile::tempdir().unwrap();
    let functions = tmp.path().join("functions.toml");
    std::fs::write(
        &functions,
        format!(
            "[[functions]]\nservice = \"shop\"\nname = \"cart\"\ncommand = [\"python3\", \"{ROOT}/tests/e2e/functions/behave.py\"]\n\
             memory_mb = 256\nidle_timeout = \"60s\"\n"
        ),
    )
    .unwrap();
    let rules = tmp.path().join("strategies.json");
    std::fs::write(
        &rules,
        r#"{"default_strategy": {"type": "probabilistic", "param": 1}}"#,
    )
    .unwrap();
    let d = Daemon::start_in(
        &tmp.path().join("data"),
        &[
            "--functions",
            functions.to_str().unwrap(),
            "--sampling-strategies",
            rules.to_str().unwrap(),
            "--instance-metrics-interval",
            "200ms",
        ],
    );
    for event in ["ok", "ok", "crash"] {
        http()
            .post(format!(
                "{}/2016-08-15/services/shop/functions/cart/invocations",
                d.gateway
            ))
            .body(event)
            .send()
            .unwrap();
    }
    // metrics, records and an instance sample are written after the answers
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, m) = d.get("/api/v1/metrics/RegionTotalInvocations");
        let (_, r) = d.get("/api/v1/invocations?service=shop&function=cart");
        let (_, i) = d.get("/api/v1/instances?service=shop&function=cart");
        // the calls may fall on both sides of a minute: count them over every point
        let calls: f64 = data(&m).iter().filter_map(|p| p["value"].as_f64()).sum();
        if calls == 3.0 && data(&r).len() == 3 && !data(&i).is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the calls' facts did not arrive");
        std::thread::sleep(Duration::from_millis(100));
    }

    let shots = Path::new(E2E).join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    for f in ["functions.png", "function.png"] {
        let _ = std::fs::remove_file(shots.join(f));
    }
    let out = run(Command::new("node")
        .arg("ui_functions.js")
        .arg(format!("{}/", d.query))
        .arg("shop/cart")
        .arg(&shots)
        .current_dir(&dir));
    let v: Json = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["errors"],
        serde_json::json!([]),
        "no script errors in the page"
    );
    assert_eq!(
        v["offsite"],
        serde_json::json!([]),
        "nothing fetched from elsewhere"
    );

    // the table: one function, its 3 calls, 1 error, its memory
    let rows = v["functions"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    let row: Vec<&str> = rows[0]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(row[0], "shop/cart");
    assert_eq!(row[1], "3");
    assert_eq!(row[2], "1");
    assert!(
        row[3].ends_with("ms") || row[3].ends_with(" s"),
        "p99 {}",
        row[3]
    );
    assert_eq!(row[4], "33.3 %", "one cold start in three calls");
    assert_eq!(row[5], "256 MB");

    // the charts, each with its series drawn
    let charts = v["charts"].as_array().unwrap();
    let titles: Vec<&str> = charts
        .iter()
        .map(|c| c["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        titles,
        [
            "Invocations",
            "Errors",
            "Throttles",
            "Latency",
            "Cold starts",
            "Memory"
        ]
    );
    let points = |t: &str| -> Vec<u64> {
        charts.iter().find(|c| c["title"] == t).unwrap()["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_u64().unwrap())
            .collect()
    };
    assert!(points("Invocations")[0] >= 1, "the calls are drawn");
    assert!(
        points("Latency").iter().all(|&n| n >= 1),
        "p50, p99 and avg drawn"
    );
    assert!(points("Memory").iter().all(|&n| n >= 1));

    // the live instance, the requests, and a request's record and trace
    assert_eq!(v["instances"].as_array().unwrap().len(), 1);
    assert!(v["instances"][0][0]
        .as_str()
        .unwrap()
        .starts_with("shop-cart-"));
    let requests = v["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 3);
    let statuses: Vec<&str> = requests.iter().map(|r| r[3].as_str().unwrap()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == "500").count(), 1);
    let first_id = requests[0][0].as_str().unwrap();
    let record = v["record"].as_str().unwrap();
    assert!(
        record.contains(first_id) && record.contains("functionName"),
        "{record}"
    );
    assert!(v["traceLink"].as_str().unwrap().starts_with("#/trace/"));
    assert!(
        v["waterfall"].as_u64().unwrap() >= 2,
        "the request's trace opens"
    );
    // the request's log lines, from its record and from its trace: at least the
    // platform's markers around the call
    for shown in ["recordLogs", "traceLogs"] {
        let text = v[shown].as_str().unwrap();
        for marker in ["FC Invoke Start RequestId: ", "FC Invoke End RequestId: "] {
            assert!(
                text.contains(&format!("{marker}{first_id}")),
                "{shown}: {text}"
            );
        }
    }
    for f in ["functions.png", "function.png"] {
        let len = std::fs::metadata(shots.join(f))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(len > 10_000, "screenshot {f}: {len} bytes");
    }
}
