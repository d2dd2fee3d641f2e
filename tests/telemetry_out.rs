//! Telemetry events out, through the real binary: real local HTTP listeners subscribed in
//! the config in Lambda's and FunctionGraph's shapes get, for a cold and a warm
//! invocation, the platform events in order with their fields and the function's output
//! lines; a slow listener loses events (reported to it as `platform.logsDropped`), never
//! invocations; a process subscribes at run time with `PUT /2022-07-01/telemetry`.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::gateway::*;
use common::*;
use serde_json::Value as Json;

/// Every event the listener got, in order.
fn events(got: &Arc<Mutex<Vec<Json>>>) -> Vec<Json> {
    got.lock()
        .unwrap()
        .iter()
        .flat_map(|batch| batch.as_array().cloned().unwrap_or_default())
        .collect()
}

fn wait_for(got: &Arc<Mutex<Vec<Json>>>, what: &str, f: impl Fn(&Json) -> bool) -> Vec<Json> {
    eventually(what, || {
        let all = events(got);
        all.iter().any(&f).then_some(all)
    })
}

fn function_with(telemetry: &str) -> String {
    format!(
        "[[functions]]\nservice = \"tel\"\nname = \"say\"\ncommand = [\"python3\", \"{ROOT}/tests/e2e/functions/logs.py\"]\n{telemetry}"
    )
}

#[test]
fn listeners_in_both_shapes_get_every_event_in_order() {
    let (lambda_url, lambda) = receiver();
    let (fg_url, fg) = receiver();
    let d = start_with_functions(
        &function_with(&format!(
            "[[functions.telemetry]]\nurl = \"{lambda_url}\"\ntypes = [\"platform\", \"function\"]\nformat = \"lambda\"\ntimeout_ms = 25\n\
             [[functions.telemetry]]\nurl = \"{fg_url}\"\ntypes = [\"platform\", \"function\"]\nformat = \"functiongraph\"\ntimeout_ms = 25\n"
        )),
        &[],
    );
    let ids: Vec<String> = ["one", "two"]
        .iter()
        .map(|w| {
            let a = invoke(&d, "tel", "say", &format!("say:{w}:2"), &[]);
            assert_eq!(a.status, 200, "{}", a.body);
            a.header("x-fc-request-id").to_owned()
        })
        .collect();
    let rec = record(&d, "tel", "say", &ids[0]);
    let trace = trace_with(&d, &rec, &["Invocation"]);
    let invocation = one(&trace, "Invocation")["spanID"]
        .as_str()
        .unwrap()
        .to_owned();
    let trace_hex = format!("{:0>32}", trace["traceID"].as_str().unwrap());

    // Lambda: {time, type, record}
    let all = wait_for(&lambda, "lambda report of the warm call", |e| {
        e["type"] == "platform.report" && e["record"]["requestId"] == ids[1].as_str()
    });
    let platform: Vec<&Json> = all
        .iter()
        .filter(|e| e["type"].as_str().unwrap().starts_with("platform."))
        .collect();
    let types: Vec<&str> = platform
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "platform.initStart",
            "platform.initRuntimeDone",
            "platform.initReport",
            "platform.start",
            "platform.runtimeDone",
            "platform.report",
            "platform.start",
            "platform.runtimeDone",
            "platform.report",
        ]
    );
    for e in &all {
        let t = e["time"].as_str().unwrap();
        assert!(
            t.len() == 24 && t.ends_with('Z') && t.as_bytes()[10] == b'T',
            "{t}"
        );
    }
    assert_eq!(platform[0]["record"]["functionName"], "say");
    assert_eq!(platform[0]["record"]["instanceMaxMemory"], 128);
    assert_eq!(platform[1]["record"]["status"], "success");
    assert!(
        platform[2]["record"]["metrics"]["durationMs"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    let start = platform[3]["record"].clone();
    assert_eq!(start["requestId"], ids[0].as_str());
    assert_eq!(start["tracing"]["type"], "X-Amzn-Trace-Id");
    assert_eq!(
        start["tracing"]["value"],
        format!(
            "Root=1-{}-{};Parent={invocation};Sampled=1",
            &trace_hex[..8],
            &trace_hex[8..]
        )
        .as_str()
    );
    assert_eq!(platform[4]["record"]["status"], "success");
    assert!(
        platform[4]["record"]["metrics"]["producedBytes"]
            .as_u64()
            .unwrap()
            > 0
    );
    let (cold, warm) = (&platform[5]["record"], &platform[8]["record"]);
    assert_eq!(cold["requestId"], ids[0].as_str());
    assert_eq!(warm["requestId"], ids[1].as_str());
    for r in [cold, warm] {
        let m = &r["metrics"];
        let duration = m["durationMs"].as_f64().unwrap();
        assert!(duration >= 40.0, "two lines 20 ms apart: {duration}");
        assert_eq!(m["billedDurationMs"].as_f64().unwrap(), duration.ceil());
        assert_eq!(m["memorySizeMB"], 128);
        assert!(m["maxMemoryUsedMB"].as_u64().unwrap() >= 1);
        assert_eq!(r["status"], "success");
    }
    assert!(cold["metrics"]["initDurationMs"].as_f64().unwrap() > 0.0);
    assert!(warm["metrics"].get("initDurationMs").is_none());
    // the function's lines, between its start and its runtimeDone
    let at = |pred: &dyn Fn(&Json) -> bool| all.iter().position(pred).unwrap();
    let start_1 = at(&|e| e["type"] == "platform.start");
    let done_1 = at(&|e| e["type"] == "platform.runtimeDone");
    for line in ["one line 0", "one line 1", "one warning"] {
        let i = at(&|e| e["type"] == "function" && e["record"] == line);
        assert!(
            start_1 < i && i < done_1,
            "{line} at {i}, not in {start_1}..{done_1}"
        );
    }

    // FunctionGraph: {name, startTime, traceId, status, endTime, metrics}
    let all = wait_for(&fg, "functiongraph report of the warm call", |e| {
        e["name"] == "platform.report" && e["traceId"] == ids[1].as_str()
    });
    let platform: Vec<&Json> = all
        .iter()
        .filter(|e| e["name"].as_str().unwrap().starts_with("platform."))
        .collect();
    let names: Vec<&str> = platform
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "platform.initStart",
            "platform.initRuntimeDone",
            "platform.initReport",
            "platform.start",
            "platform.RuntimeDone",
            "platform.report",
            "platform.start",
            "platform.RuntimeDone",
            "platform.report",
        ]
    );
    for (i, e) in platform.iter().enumerate() {
        assert_eq!(e["traceId"], ids[i / 6].as_str(), "{e}");
        assert!(e["startTime"].as_str().unwrap().ends_with('Z'));
    }
    let report = platform[5];
    assert_eq!(report["status"], "success");
    assert!(report["endTime"].as_str().unwrap() >= report["startTime"].as_str().unwrap());
    let m = &report["metrics"];
    assert!(m["durationMs"].as_f64().unwrap() >= 40.0);
    assert!(m["billingDurationMS"].as_f64().unwrap() >= m["durationMs"].as_f64().unwrap());
    assert!(m["memoryUsed"].as_f64().unwrap() > 0.0);
    assert_eq!(m["memorySize"], 128);
    assert_eq!(m["podName"], rec["instanceID"]);
    assert!(report["traceContext"]
        .as_str()
        .unwrap()
        .contains(&format!(":{invocation}:")));
    let lines: Vec<&str> = all
        .iter()
        .filter(|e| e["name"] == "function")
        .map(|e| e["logs"].as_str().unwrap())
        .collect();
    for line in [
        "one line 0",
        "one line 1",
        "one warning",
        "two line 0",
        "two line 1",
    ] {
        assert!(lines.contains(&line), "{line} in {lines:?}");
    }
}

#[test]
fn slow_listeners_lose_events_not_invocations_and_processes_subscribe_at_run_time() {
    let (slow_url, slow) = receiver_slow(Duration::from_millis(1500));
    let d = start_with_functions(
        &function_with(&format!(
            "[[functions.telemetry]]\nurl = \"{slow_url}\"\ntypes = [\"function\"]\nmax_items = 1000\ntimeout_ms = 25\n"
        )),
        &[],
    );
    // 3,000 lines at once while the listener takes 1.5 s a batch of at most 1,000
    let a = invoke(&d, "tel", "say", "flood:3000", &[]);
    assert_eq!(a.status, 200, "{}", a.body);
    let all = wait_for(&slow, "platform.logsDropped", |e| {
        e["type"] == "platform.logsDropped"
    });
    let dropped = all
        .iter()
        .find(|e| e["type"] == "platform.logsDropped")
        .unwrap();
    let n = dropped["record"]["droppedRecords"].as_u64().unwrap();
    assert!(n >= 1, "{dropped}");
    assert!(dropped["record"]["droppedBytes"].as_u64().unwrap() > n * 100);
    assert!(d.metric("fctrace_telemetry_events_total{reason=\"dropped\"}") >= n as f64);
    // no event is delivered twice, none out of order
    let lines: Vec<&str> = all
        .iter()
        .filter(|e| e["type"] == "function")
        .map(|e| e["record"].as_str().unwrap())
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    let mut sorted = lines.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), lines.len());
    assert!(lines.windows(2).all(|w| w[0] < w[1]), "in order");

    // a run-time subscription, Lambda-style
    let (url, got) = receiver();
    let put = |headers: &[(&str, &str)], body: Json| {
        let mut r = http()
            .put(format!("{}/2022-07-01/telemetry", d.gateway))
            .json(&body);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.send().unwrap().status().as_u16()
    };
    let named = [("x-fc-service-name", "tel"), ("x-fc-function-name", "say")];
    let body = |url: &str, max_items: u32| {
        serde_json::json!({
            "schemaVersion": "2022-12-13",
            "destination": {"protocol": "HTTP", "URI": url},
            "types": ["platform"],
            "buffering": {"maxItems": max_items, "maxBytes": 262144, "timeoutMs": 25},
        })
    };
    assert_eq!(put(&named, body(&url, 1000)), 200);
    assert_eq!(put(&named, body(&url, 5)), 400, "maxItems below 1000");
    assert_eq!(put(&named, body("ftp://x", 1000)), 400);
    assert_eq!(put(&[], body(&url, 1000)), 400, "no function named");
    assert_eq!(
        put(
            &[("x-fc-service-name", "tel"), ("x-fc-function-name", "nope")],
            body(&url, 1000)
        ),
        404
    );
    assert_eq!(put(&named, serde_json::json!({"types": "platform"})), 400);
    // one more listener is fine (the slow one and this one make 2); past 10, refused
    for i in 0..8 {
        assert_eq!(put(&named, body(&format!("{url}/{i}"), 1000)), 200);
    }
    assert_eq!(put(&named, body(&format!("{url}/9"), 1000)), 400, "an 11th");
    assert_eq!(put(&named, body(&url, 1000)), 200, "replacing one is fine");
    let a = invoke(&d, "tel", "say", "say:late:1", &[]);
    assert_eq!(a.status, 200);
    let id = a.header("x-fc-request-id").to_owned();
    let all = wait_for(&got, "the run-time listener's report", |e| {
        e["type"] == "platform.report" && e["record"]["requestId"] == id.as_str()
    });
    assert!(all.iter().all(|e| e["type"] != "function"), "platform only");
    assert!(all
        .iter()
        .any(|e| e["type"] == "platform.start" && e["record"]["requestId"] == id.as_str()));
}
