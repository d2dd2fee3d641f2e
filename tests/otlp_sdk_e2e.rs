//! Real OpenTelemetry SDKs against the running daemon: Python's OTLP/HTTP protobuf and
//! OTLP/gRPC exporters, and the JS SDK's OTLP/HTTP JSON exporter. Their spans are found by
//! search. The clients are installed on first run (pip into a virtualenv, npm into a
//! folder); a missing Python or Node fails the test rather than skipping it.

mod common;

use std::process::Command;

use common::*;
use serde_json::json;

fn found(d: &Daemon, service: &str, tag: &str, trace_id: &str) -> serde_json::Value {
    let (status, v) = d.get(&format!("/api/traces?service={service}&tag={tag}"));
    assert_eq!(status, 200);
    let ids = trace_ids(&v);
    assert_eq!(ids.len(), 1, "{service}: {v}");
    assert_eq!(
        ids[0].trim_start_matches('0'),
        trace_id.trim_start_matches('0')
    );
    data(&v)[0].clone()
}

#[test]
fn python_otlp_http_and_grpc_exporters() {
    let python = python_venv("otlp");
    let d = start_server();
    let script = format!("{E2E}/python/otlp_export.py");
    for (protocol, endpoint) in [("http", &d.otlp_http), ("grpc", &d.otlp_grpc)] {
        let service = format!("py-otlp-{protocol}");
        let trace_id = run(Command::new(&python).args([&script, protocol, endpoint, &service]));
        let t = found(&d, &service, "db.system:postgresql", &trace_id);
        let spans = t["spans"].as_array().unwrap();
        assert_eq!(spans.len(), 2, "{protocol}");
        let child = spans
            .iter()
            .find(|s| s["operationName"] == "query-db")
            .unwrap();
        assert_eq!(tag(&child["tags"], "span.kind").unwrap()["value"], "client");
        assert_eq!(
            tag(&child["tags"], "otel.scope.name").unwrap()["value"],
            "e2e.python"
        );
        assert_eq!(
            child["logs"][0]["fields"][0],
            json!({"key": "event", "type": "string", "value": "rows"})
        );
        let (_, v) = d.get(&format!(
            "/api/operations?service={service}&spanKind=server"
        ));
        assert_eq!(
            v["data"],
            json!([{"name": "handle", "spanKind": "server"}]),
            "{protocol}"
        );
    }
}

#[test]
fn node_otlp_http_json_exporter() {
    let dir = node_clients();
    let d = start_server();
    let trace_id = run(Command::new("node")
        .arg("otlp_http.js")
        .current_dir(&dir)
        .env("ENDPOINT", &d.otlp_http)
        .env("SERVICE", "node-otlp-e2e"));
    let t = found(&d, "node-otlp-e2e", "error:true", &trace_id);
    let spans = t["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 2);
    let child = spans
        .iter()
        .find(|s| s["operationName"] == "load-items")
        .unwrap();
    assert_eq!(
        tag(&child["tags"], "otel.status_description").unwrap()["value"],
        "cache down"
    );
    assert_eq!(tag(&child["tags"], "app.items").unwrap()["type"], "int64");
    let p = &t["processes"][child["processID"].as_str().unwrap()];
    assert_eq!(
        tag(&p["tags"], "deployment.environment").unwrap()["value"],
        "e2e"
    );
}
