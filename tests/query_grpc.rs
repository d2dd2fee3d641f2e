//! Jaeger's gRPC query API (`jaeger.api_v3.QueryService`) on the OTLP/gRPC port, read by
//! a real gRPC client (grpcio, with TracesData from opentelemetry-proto): services,
//! operations, a search by attribute with and without a service, a trace by id, and the
//! errors.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::{json, Value as Json};

#[test]
fn grpc_query_api_answers_like_the_http_one() {
    let d = start_server();
    let at = now_us() - 10_000_000;
    let spans = [
        TSpan {
            trace: 0xc1,
            id: 1,
            op: "GET /orders",
            start: at,
            duration: 1_000,
            tags: vec![("span.kind", V::S("server")), ("env", V::S("prod"))],
            ..Default::default()
        },
        TSpan {
            trace: 0xc1,
            id: 2,
            parent: 1,
            op: "load",
            start: at + 10,
            duration: 100,
            ..Default::default()
        },
        TSpan {
            trace: 0xc2,
            id: 1,
            op: "GET /health",
            start: at + 20,
            duration: 10,
            tags: vec![("span.kind", V::S("server")), ("env", V::S("dev"))],
            ..Default::default()
        },
    ];
    assert_eq!(d.post_thrift(batch("orders", &[], &spans)).0, 202);
    let other = TSpan {
        trace: 0xc3,
        id: 1,
        op: "tick",
        start: at,
        duration: 5,
        tags: vec![("env", V::S("prod"))],
        ..Default::default()
    };
    assert_eq!(d.post_thrift(batch("cron", &[], &[other])).0, 202);

    let python = python_venv("otlp");
    let out = run(Command::new(python)
        .arg(Path::new(E2E).join("python/jaeger_query_grpc.py"))
        .env("ADDR", d.otlp_grpc.trim_start_matches("http://"))
        .env("SERVICE", "orders")
        .env("TRACE", "c1"));
    let v: Json = serde_json::from_str(&out).unwrap();
    assert_eq!(v["services"], json!(["cron", "orders"]));
    assert_eq!(
        v["operations"],
        json!([{"name": "GET /health", "span_kind": "server"}, {"name": "GET /orders", "span_kind": "server"}])
    );
    // env=prod in orders: trace c1, whole
    let found: Vec<(&str, &str)> = v["found"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["trace"].as_str().unwrap(), s["name"].as_str().unwrap()))
        .collect();
    let c1 = "000000000000000000000000000000c1";
    assert_eq!(found, [(c1, "GET /orders"), (c1, "load")]);
    let any: std::collections::BTreeSet<&str> = v["found_any"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["service"].as_str().unwrap())
        .collect();
    assert_eq!(any, ["cron", "orders"].into());
    assert_eq!(v["trace"].as_array().unwrap().len(), 2);
    assert_eq!(v["trace"][0]["attributes"]["env"], "prod");
    assert_eq!(v["bad_id"], "INVALID_ARGUMENT");
    assert_eq!(v["missing"], "NOT_FOUND");
    assert_eq!(v["filter"], "INVALID_ARGUMENT");
}
