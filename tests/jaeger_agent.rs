//! The Jaeger agent's UDP ports, fed by real clients: npm `jaeger-client` with its default
//! UDP sender (thrift binary, the 6832 port) and OpenTelemetry's Python Jaeger exporter
//! with its default agent transport (thrift compact, 6831). Hostile datagrams are counted
//! by reason and change nothing.

mod common;

use std::net::UdpSocket;
use std::path::Path;
use std::process::Command;

use common::gateway::eventually;
use common::*;
use serde_json::Value as Json;

fn trace_by_id(d: &Daemon, id: &str, spans: usize) -> Json {
    eventually(&format!("trace {id} with {spans} spans"), || {
        let (status, v) = d.get(&format!("/api/traces/{id}"));
        (status == 200 && v["data"][0]["spans"].as_array().map(Vec::len) == Some(spans))
            .then(|| v["data"][0].clone())
    })
}

fn span<'a>(trace: &'a Json, op: &str) -> &'a Json {
    trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["operationName"] == op)
        .unwrap_or_else(|| panic!("no span {op} in {trace}"))
}

#[test]
fn node_jaeger_client_over_udp_binary() {
    let dir = node_clients();
    let d = start_server();
    let trace_id = run(Command::new("node")
        .arg("jaeger_client.js")
        .current_dir(&dir)
        .env("AGENT", d.port("agent_binary"))
        .env("SERVICE", "node-udp"));
    let trace = trace_by_id(&d, &trace_id, 2);
    let (root, child) = (span(&trace, "handle-request"), span(&trace, "query-db"));
    assert_eq!(child["references"][0]["spanID"], root["spanID"]);
    assert_eq!(tag(&child["tags"], "db.system").unwrap()["value"], "mysql");
    assert_eq!(child["logs"][0]["fields"][0]["value"], "rows-read");
    let process = &trace["processes"][child["processID"].as_str().unwrap()];
    assert_eq!(process["serviceName"], "node-udp");
    assert_eq!(
        tag(&process["tags"], "deploy.region").unwrap()["value"],
        "test-region"
    );
    assert_eq!(
        d.metric("fctrace_agent_datagrams_total{protocol=\"binary\",result=\"stored\"}"),
        1.0
    );
}

#[test]
fn python_otel_jaeger_exporter_over_udp_compact() {
    let python = python_venv_from(
        "example",
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/functions/python/requirements.txt"),
    );
    let d = start_server();
    let trace_id = run(Command::new(&python)
        .arg(Path::new(E2E).join("python/jaeger_agent.py"))
        .env("AGENT", d.port("agent_compact"))
        .env("SERVICE", "py-udp"));
    let trace = trace_by_id(&d, &trace_id, 2);
    let (parent, child) = (span(&trace, "py-parent"), span(&trace, "py-child"));
    assert_eq!(child["references"][0]["spanID"], parent["spanID"]);
    assert_eq!(tag(&child["tags"], "db.system").unwrap()["value"], "redis");
    // the exporter names the event in a `message` field
    let fields = &child["logs"][0]["fields"];
    assert_eq!(tag(fields, "message").unwrap()["value"], "cache-hit");
    assert_eq!(tag(fields, "keys").unwrap()["value"], 2);
    let (_, v) = d.get("/api/traces?service=py-udp&tag=db.system:redis");
    assert_eq!(trace_ids(&v).len(), 1, "{v}");
    // the exporter sends one datagram per span here (a simple span processor)
    assert_eq!(
        d.metric("fctrace_agent_datagrams_total{protocol=\"compact\",result=\"stored\"}"),
        2.0
    );
}

/// A strict thrift-binary `emitBatch` call around `batch`.
fn emit_batch(batch: &[u8]) -> Vec<u8> {
    let mut m = vec![0x80, 0x01, 0x00, 0x04, 0, 0, 0, 9];
    m.extend_from_slice(b"emitBatch");
    m.extend_from_slice(&1i32.to_be_bytes());
    m.extend_from_slice(&[12, 0, 1]);
    m.extend_from_slice(batch);
    m.push(0);
    m
}

#[test]
fn hostile_datagrams_are_counted_and_change_nothing() {
    let d = start_server();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let binary = d.port("agent_binary");
    let compact = d.port("agent_compact");
    let good = emit_batch(&batch(
        "udp-hostile",
        &[],
        &[TSpan {
            trace: 0xabc,
            id: 1,
            op: "kept",
            start: now_us(),
            duration: 10,
            ..Default::default()
        }],
    ));
    // garbage, each truncation of a good datagram, a bare batch (no message), a datagram
    // over the 65,000-byte cap, and a list length far beyond the datagram
    sock.send_to(b"\xff\xfe garbage", &binary).unwrap();
    sock.send_to(b"\xff\xfe garbage", &compact).unwrap();
    let mut sent_malformed = 1;
    for end in (0..good.len()).step_by(7) {
        sock.send_to(&good[..end], &binary).unwrap();
        sent_malformed += 1;
    }
    // Batch { 1: Process { 1: "x" }, 2: list of 2^31-1 structs } in a 40-byte datagram
    let huge_list = emit_batch(&[
        12, 0, 1, 11, 0, 1, 0, 0, 0, 1, b'x', 0, 15, 0, 2, 12, 0x7f, 0xff, 0xff, 0xff,
    ]);
    sock.send_to(&huge_list, &binary).unwrap();
    sent_malformed += 1;
    sock.send_to(&vec![0u8; 65_100], &binary).unwrap();
    // then one good datagram: it is stored, and the daemon is unharmed
    sock.send_to(&good, &binary).unwrap();
    let counted = |result: &str| {
        d.metric(&format!(
            "fctrace_agent_datagrams_total{{protocol=\"binary\",result=\"{result}\"}}"
        ))
    };
    eventually("the good datagram", || {
        (counted("stored") == 1.0).then_some(())
    });
    assert_eq!(counted("malformed"), sent_malformed as f64);
    assert_eq!(counted("oversized"), 1.0);
    eventually("the compact port's garbage counted", || {
        let n =
            d.metric("fctrace_agent_datagrams_total{protocol=\"compact\",result=\"malformed\"}");
        (n == 1.0).then_some(())
    });
    let (status, v) = d.get("/api/traces/abc");
    assert_eq!(status, 200);
    assert_eq!(data(&v)[0]["spans"].as_array().unwrap().len(), 1);
    let (_, v) = d.get("/api/services");
    assert_eq!(v["data"], serde_json::json!(["udp-hostile"]));
}
