//! Jaeger's gRPC collector port, fed by a real client: OpenTelemetry's Python Jaeger gRPC
//! exporter (`jaeger.api_v2.CollectorService/PostSpans`, what jaeger-agent and older
//! Collectors send). A batch with a malformed span gets INVALID_ARGUMENT and changes
//! nothing.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn client(d: &Daemon, mode: &str) -> String {
    let python = python_venv("jaeger-grpc");
    run(Command::new(python)
        .arg(Path::new(E2E).join("python/jaeger_grpc.py"))
        .env("COLLECTOR", d.port("jaeger_grpc"))
        .env("MODE", mode)
        .env("SERVICE", "py-jaeger-grpc"))
}

#[test]
fn otel_python_jaeger_grpc_exporter_spans_are_found() {
    let d = start_server();
    let trace_id = client(&d, "good");
    let (status, v) = d.get(&format!("/api/traces/{trace_id}"));
    assert_eq!(status, 200, "{v}");
    let trace = &data(&v)[0];
    let spans = trace["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 2);
    let parent = spans
        .iter()
        .find(|s| s["operationName"] == "grpc-parent")
        .unwrap();
    let child = spans
        .iter()
        .find(|s| s["operationName"] == "grpc-child")
        .unwrap();
    // the parent as CHILD_OF, the link as FOLLOWS_FROM
    let refs = child["references"].as_array().unwrap();
    assert_eq!(refs.len(), 2, "{child}");
    assert_eq!(refs[0]["refType"], "CHILD_OF");
    assert_eq!(refs[0]["spanID"], parent["spanID"]);
    assert_eq!(refs[1]["refType"], "FOLLOWS_FROM");
    assert_eq!(
        tag(&child["tags"], "db.system").unwrap()["value"],
        "postgresql"
    );
    let rows = tag(&child["tags"], "db.rows").unwrap();
    assert_eq!(
        (&rows["type"], &rows["value"]),
        (&"int64".into(), &3.into())
    );
    let fields = &child["logs"][0]["fields"];
    assert_eq!(tag(fields, "message").unwrap()["value"], "rows-read");
    let process = &trace["processes"][child["processID"].as_str().unwrap()];
    assert_eq!(process["serviceName"], "py-jaeger-grpc");
    let (_, v) = d.get("/api/traces?service=py-jaeger-grpc&tag=db.system:postgresql");
    assert_eq!(trace_ids(&v).len(), 1, "{v}");
    assert_eq!(
        d.metric("fctrace_spans_received_total{format=\"jaeger_grpc\"}"),
        2.0
    );
}

#[test]
fn a_malformed_batch_is_invalid_argument_and_stores_nothing() {
    let d = start_server();
    let out = client(&d, "bad");
    assert_eq!(
        out,
        "INVALID_ARGUMENT could not decode Jaeger protobuf: span 0: trace_id is 8 bytes; Jaeger's are 16"
    );
    let (_, v) = d.get("/api/services");
    assert_eq!(v["data"], serde_json::json!([]));
}
