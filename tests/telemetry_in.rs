//! Telemetry events in, through the real binary: FunctionGraph-shaped and Lambda-shaped
//! event arrays, posted out of order over several posts as an extension on another
//! platform would, become the platform spans and an invocation record; the function's
//! own spans, sent separately, land under Invocation (by request id, or by the X-Ray
//! context in Lambda's events).

mod common;

use common::gateway::*;
use common::*;
use serde_json::{json, Value as Json};

fn post(d: &Daemon, path: &str, body: &Json) -> (u16, String) {
    let r = http()
        .post(format!("{}{path}", d.collector))
        .json(body)
        .send()
        .unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

fn rfc3339(us: u64) -> String {
    let secs = us / 1_000_000;
    let (h, m, s) = (secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let days = secs / 86400;
    // civil date from days since the epoch (Howard Hinnant's algorithm)
    let z = days as i64 + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}.{:03}Z",
        us / 1000 % 1000
    )
}

/// A span the function sent itself, by OTLP/JSON.
fn function_span(
    d: &Daemon,
    name: &str,
    trace: &str,
    parent: Option<&str>,
    request_id: &str,
    at: u64,
) {
    let mut span = json!({
        "traceId": trace, "spanId": "00000000000a11ce", "name": name, "kind": 1,
        "startTimeUnixNano": (at * 1000).to_string(), "endTimeUnixNano": ((at + 5000) * 1000).to_string(),
        "attributes": [{"key": "faas.invocation_id", "value": {"stringValue": request_id}}],
    });
    if let Some(p) = parent {
        span["parentSpanId"] = json!(p);
    }
    let body = json!({"resourceSpans": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "remote-fn"}}]},
        "scopeSpans": [{"spans": [span]}]}]});
    let r = http()
        .post(format!("{}/v1/traces", d.otlp_http))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().unwrap());
}

fn invocation_record(d: &Daemon, id: &str) -> Json {
    eventually(&format!("record {id}"), || {
        let (status, v) = d.get(&format!("/api/v1/invocations/{id}"));
        (status == 200).then(|| v["data"].clone())
    })
}

#[test]
fn functiongraph_events_out_of_order_build_spans_and_a_record() {
    let d = start_server();
    // whole milliseconds: event times carry no more
    let t0 = (now_us() - 10_000_000) / 1000 * 1000;
    let id = "69be64a7-0233-11e8-82e4-e5d37911193e";
    let at = |ms: u64| rfc3339(t0 + ms * 1000);
    let path = "/api/telemetry/remote/fg-fn";
    // the end first
    let (status, body) = post(
        &d,
        path,
        &json!([
            {"name": "platform.report", "startTime": at(300), "traceId": id, "endTime": at(420),
             "status": "success", "metrics": {"durationMs": 120.0, "billingDurationMS": 120,
                "memoryUsed": 23.4, "memorySize": 256, "podName": "pool22-300-128-fusion-4g77v"}},
            {"name": "platform.RuntimeDone", "startTime": at(300), "traceId": id, "endTime": at(420), "status": "success"},
            {"name": "function", "startTime": at(310), "logs": "[Function]this is a simple log."},
        ]),
    );
    assert_eq!(status, 200, "{body}");
    let taken: Json = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (taken["used"].as_u64(), taken["ignored"].as_u64()),
        (Some(2), Some(1))
    );
    // then the start and the cold start
    let (status, _) = post(
        &d,
        path,
        &json!([
            {"name": "platform.start", "startTime": at(300), "traceId": id},
            {"name": "platform.initReport", "startTime": at(0), "traceId": id, "endTime": at(290),
             "status": "success", "metrics": {"durationMs": 290.0}},
            {"name": "platform.initStart", "startTime": at(0), "traceId": id},
            {"name": "platform.initRuntimeDone", "startTime": at(290), "traceId": id, "status": "success"},
        ]),
    );
    assert_eq!(status, 200);
    // the function's own span, in a trace of its own, tagged with the request id
    function_span(
        &d,
        "fg-work",
        "0000000000000000000000000000f00d",
        None,
        id,
        t0 + 320_000,
    );

    let rec = invocation_record(&d, id);
    assert_eq!(rec["serviceName"], "remote");
    assert_eq!(rec["functionName"], "fg-fn");
    assert_eq!(rec["isColdStart"], true);
    assert_eq!(rec["memoryMB"], 256);
    assert_eq!(rec["instanceID"], "pool22-300-128-fusion-4g77v");
    assert_eq!(rec["startTime"], t0);
    assert!((rec["durationMs"].as_f64().unwrap() - 420.0).abs() < 0.001);
    assert!((rec["memoryUsageMB"].as_f64().unwrap() - 23.4).abs() < 0.01);
    assert_eq!(rec["hasFunctionError"], false);
    let trace = trace_with(
        &d,
        &rec,
        &["InvokeFunction", "ColdStart", "Invocation", "fg-work"],
    );
    let invoke = one(&trace, "InvokeFunction");
    let cold = one(&trace, "ColdStart");
    let invocation = one(&trace, "Invocation");
    assert_eq!(
        (invoke["startTime"].as_u64(), invoke["duration"].as_u64()),
        (Some(t0), Some(420_000))
    );
    assert_eq!(
        (cold["startTime"].as_u64(), cold["duration"].as_u64()),
        (Some(t0), Some(290_000))
    );
    assert_eq!(
        (
            invocation["startTime"].as_u64(),
            invocation["duration"].as_u64()
        ),
        (Some(t0 + 300_000), Some(120_000))
    );
    assert_nested(invoke, invocation);
    assert_nested(invocation, one(&trace, "fg-work"));
    assert_eq!(tag_of(invocation, "faas.invocation_id"), id);
}

#[test]
fn lambda_events_join_the_xray_trace_and_bad_posts_change_nothing() {
    let d = start_server();
    // whole milliseconds: event times carry no more
    let t0 = (now_us() - 10_000_000) / 1000 * 1000;
    let at = |ms: u64| rfc3339(t0 + ms * 1000);
    let id = "6d68ca91-49c9-448d-89b8-7ca3e6dc66aa";
    let tracing = json!({"spanId": "0efbd19962d95b05", "type": "X-Amzn-Trace-Id",
        "value": "Root=1-62e900b2-710d76f009d6e7785905449a;Parent=0efbd19962d95b05;Sampled=1"});
    let path = "/api/telemetry/aws/lambda-fn";
    // a bad event anywhere refuses the whole post
    let (status, body) = post(
        &d,
        path,
        &json!([
            {"time": at(500), "type": "platform.report", "record": {"requestId": id, "status": "success",
                "metrics": {"durationMs": 200.0}}},
            {"type": "platform.start"},
        ]),
    );
    assert_eq!(status, 400);
    assert!(body.contains("event 1"), "{body}");
    assert_eq!(post(&d, path, &json!({"events": []})).0, 400);
    assert_eq!(post(&d, path, &json!("nope")).0, 400);

    // the report (cold: it says initDurationMs), then the init events, which carry no
    // request id, then the start
    let posts = [
        json!([
            {"time": at(500), "type": "platform.report", "record": {"requestId": id, "status": "error",
                "metrics": {"durationMs": 200.0, "billedDurationMs": 200, "memorySizeMB": 128,
                    "maxMemoryUsedMB": 64, "initDurationMs": 250.0}, "tracing": tracing}},
            {"time": at(500), "type": "platform.runtimeDone", "record": {"requestId": id,
                "status": "error", "errorType": "Runtime.ExitError",
                "metrics": {"durationMs": 200.0, "producedBytes": 0}, "tracing": tracing}},
        ]),
        json!([
            {"time": at(0), "type": "platform.initStart", "record": {"initializationType": "on-demand",
                "phase": "init", "functionName": "lambda-fn"}},
            {"time": at(250), "type": "platform.initRuntimeDone", "record": {"initializationType": "on-demand",
                "phase": "init", "status": "success"}},
            {"time": at(250), "type": "platform.initReport", "record": {"initializationType": "on-demand",
                "phase": "init", "status": "success", "metrics": {"durationMs": 250.0}}},
        ]),
        json!([
            {"time": at(300), "type": "platform.start", "record": {"requestId": id, "version": "$LATEST",
                "tracing": tracing}},
        ]),
    ];
    for p in &posts {
        assert_eq!(post(&d, path, p).0, 200);
    }
    // the function's span, a child of the span the X-Ray context named
    function_span(
        &d,
        "lambda-work",
        "62e900b2710d76f009d6e7785905449a",
        Some("0efbd19962d95b05"),
        id,
        t0 + 310_000,
    );
    let rec = invocation_record(&d, id);
    assert_eq!(rec["isColdStart"], true);
    assert_eq!(rec["hasFunctionError"], true);
    assert_eq!(rec["errorType"], "FunctionUnhandledError");
    assert_eq!(rec["memoryMB"], 128);
    assert_eq!(
        rec["traceContext"].as_str().unwrap().split(':').next(),
        Some("62e900b2710d76f009d6e7785905449a")
    );
    let trace = trace_with(
        &d,
        &rec,
        &["InvokeFunction", "ColdStart", "Invocation", "lambda-work"],
    );
    assert_eq!(trace["traceID"], "62e900b2710d76f009d6e7785905449a");
    let invocation = one(&trace, "Invocation");
    assert_eq!(invocation["spanID"], "0efbd19962d95b05");
    assert_eq!(
        (
            invocation["startTime"].as_u64(),
            invocation["duration"].as_u64()
        ),
        (Some(t0 + 300_000), Some(200_000))
    );
    let cold = one(&trace, "ColdStart");
    assert_eq!(
        (cold["startTime"].as_u64(), cold["duration"].as_u64()),
        (Some(t0), Some(250_000))
    );
    assert_eq!(tag_of(invocation, "error"), true);
    assert_nested(one(&trace, "InvokeFunction"), invocation);
    assert_nested(invocation, one(&trace, "lambda-work"));
}
