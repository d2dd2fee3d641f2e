//! A real Jaeger client (npm `jaeger-client`) sends to the running daemon; its spans are
//! then found by search and by id. npm installs the client into `tests/e2e/node` on first
//! run; a missing Node toolchain fails the test rather than skipping it.

mod common;

use std::process::Command;

use common::*;

#[test]
fn node_jaeger_client_spans_are_found() {
    let dir = node_clients();
    let d = start_server();
    let out = Command::new("node")
        .arg("jaeger_client.js")
        .current_dir(&dir)
        .env("ENDPOINT", &d.collector)
        .env("SERVICE", "node-e2e")
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "node failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trace_id = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(!trace_id.is_empty());

    // by search, with a tag from the child span and a process tag
    let (status, v) =
        d.get("/api/traces?service=node-e2e&tag=db.system:mysql&tag=deploy.region:test-region");
    assert_eq!(status, 200);
    let found = trace_ids(&v);
    assert_eq!(found.len(), 1, "{v}");
    assert_eq!(
        found[0].trim_start_matches('0'),
        trace_id.trim_start_matches('0')
    );

    // by id
    let (status, v) = d.get(&format!("/api/traces/{trace_id}"));
    assert_eq!(status, 200, "{v}");
    let trace = &data(&v)[0];
    let spans = trace["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 2);
    let root = spans
        .iter()
        .find(|s| s["operationName"] == "handle-request")
        .unwrap();
    let child = spans
        .iter()
        .find(|s| s["operationName"] == "query-db")
        .unwrap();
    assert_eq!(child["references"][0]["refType"], "CHILD_OF");
    assert_eq!(child["references"][0]["spanID"], root["spanID"]);
    assert_eq!(tag(&child["tags"], "db.system").unwrap()["value"], "mysql");
    assert_eq!(child["logs"][0]["fields"][0]["value"], "rows-read");
    let process = &trace["processes"][child["processID"].as_str().unwrap()];
    assert_eq!(process["serviceName"], "node-e2e");
    assert_eq!(
        tag(&process["tags"], "deploy.region").unwrap()["value"],
        "test-region"
    );

    let (_, v) = d.get("/api/operations?service=node-e2e&spanKind=server");
    assert_eq!(
        v["data"],
        serde_json::json!([{"name": "handle-request", "spanKind": "server"}])
    );
}
