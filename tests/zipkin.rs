//! The Zipkin port, fed by real Zipkin clients: npm `zipkin` with `zipkin-transport-http`
//! (JSON v2, 128-bit ids) and PyPI `py_zipkin` in each encoding it has (v1 JSON, v2 JSON,
//! v2 protobuf); then by hand: gzip, a shared client/server span id, and bad bodies.

mod common;

use std::io::Write;
use std::process::Command;

use common::*;
use serde_json::Value as Json;

fn one_trace(d: &Daemon, service: &str) -> Json {
    let (status, v) = d.get(&format!("/api/traces?service={service}"));
    assert_eq!(status, 200);
    assert_eq!(data(&v).len(), 1, "{v}");
    data(&v)[0].clone()
}

fn span<'a>(trace: &'a Json, op: &str) -> &'a Json {
    trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["operationName"] == op)
        .unwrap_or_else(|| panic!("no span {op} in {trace}"))
}

fn tag_value<'a>(span: &'a Json, key: &str) -> &'a Json {
    &tag(&span["tags"], key).unwrap_or_else(|| panic!("no tag {key} in {span}"))["value"]
}

fn process<'a>(trace: &'a Json, span: &Json) -> &'a Json {
    &trace["processes"][span["processID"].as_str().unwrap()]
}

#[test]
fn npm_zipkin_client_json_v2() {
    let dir = node_clients();
    let d = start_server();
    let trace_id = run(Command::new("node")
        .arg("zipkin_client.js")
        .current_dir(&dir)
        .env("ENDPOINT", format!("http://{}", d.port("zipkin"))));
    assert_eq!(trace_id.len(), 32, "a 128-bit trace id: {trace_id}");
    let trace = one_trace(&d, "zipkin-node");
    assert_eq!(trace["traceID"], trace_id.as_str());
    assert_eq!(trace["spans"].as_array().unwrap().len(), 3);
    // zipkin-js lowers span names
    let server = span(&trace, "get /checkout");
    let client = span(&trace, "get-inventory");
    let local = span(&trace, "render");
    assert_eq!(server["references"], serde_json::json!([]));
    assert_eq!(client["references"][0]["spanID"], server["spanID"]);
    assert_eq!(local["references"][0]["spanID"], server["spanID"]);
    assert_eq!(tag_value(server, "span.kind"), "server");
    assert_eq!(tag_value(server, "http.path"), "/checkout");
    assert_eq!(
        tag(&process(&trace, server)["tags"], "ip").unwrap()["value"],
        "127.0.0.1"
    );
    assert_eq!(tag_value(client, "span.kind"), "client");
    assert_eq!(tag_value(client, "peer.service"), "inventory");
    assert_eq!(tag_value(client, "peer.ipv4"), "10.0.0.5");
    assert_eq!(tag_value(client, "peer.port"), 9000);
    assert_eq!(tag_value(client, "error"), true);
    assert_eq!(tag_value(client, "error.message"), "upstream timeout");
    assert_eq!(client["logs"][0]["fields"][0]["key"], "event");
    assert_eq!(client["logs"][0]["fields"][0]["value"], "retrying");
    assert_eq!(process(&trace, local)["serviceName"], "zipkin-node");
    // searchable by the mapped tags
    let (_, v) = d.get("/api/traces?service=zipkin-node&tag=peer.service:inventory&tag=error:true");
    assert_eq!(trace_ids(&v), vec![trace_id]);
}

#[test]
fn py_zipkin_in_v1_json_v2_json_and_protobuf() {
    let python = python_venv("zipkin");
    let d = start_server();
    for (encoding, id_digits) in [("V1_JSON", 16), ("V2_JSON", 16), ("V2_PROTO3", 32)] {
        let service = format!("pz-{encoding}");
        let trace_id = run(Command::new(&python)
            .arg(std::path::Path::new(E2E).join("python/zipkin_client.py"))
            .env("ZIPKIN", d.port("zipkin"))
            .env("ENCODING", encoding)
            .env("SERVICE", &service));
        assert_eq!(trace_id.len(), id_digits, "{encoding}: {trace_id}");
        let trace = one_trace(&d, &service);
        assert_eq!(trace["traceID"], trace_id.as_str(), "{encoding}");
        let (root, child) = (span(&trace, "handle"), span(&trace, "call-db"));
        assert_eq!(root["references"], serde_json::json!([]), "{encoding}");
        assert_eq!(child["references"][0]["spanID"], root["spanID"]);
        assert_eq!(tag_value(root, "span.kind"), "server", "{encoding}");
        assert_eq!(tag_value(root, "http.path"), "/py", "{encoding}");
        assert_eq!(tag_value(child, "span.kind"), "client", "{encoding}");
        assert_eq!(tag_value(child, "peer.service"), "postgres", "{encoding}");
        assert_eq!(tag_value(child, "peer.ipv4"), "10.0.0.9", "{encoding}");
        assert_eq!(tag_value(child, "peer.port"), 5432, "{encoding}");
        assert_eq!(tag_value(child, "db.rows"), "3", "{encoding}");
        assert_eq!(child["logs"][0]["fields"][0]["value"], "query-sent");
        let p = process(&trace, root);
        assert_eq!(p["serviceName"], service.as_str());
        assert_eq!(tag(&p["tags"], "ip").unwrap()["value"], "10.1.1.1");
    }
}

fn post(d: &Daemon, path: &str, content_type: &str, gzip: bool, body: &[u8]) -> (u16, String) {
    let mut req = http()
        .post(format!("http://{}{path}", d.port("zipkin")))
        .header("content-type", content_type);
    let body = if gzip {
        req = req.header("content-encoding", "gzip");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(body).unwrap();
        enc.finish().unwrap()
    } else {
        body.to_vec()
    };
    let r = req.body(body).send().expect("POST to zipkin port");
    (r.status().as_u16(), r.text().unwrap_or_default())
}

#[test]
fn gzip_shared_ids_and_bad_bodies() {
    let d = start_server();
    let now = now_us();
    // B3's shared span: the client and the server report one id; both are kept, the
    // server's under a new id whose parent is the client's
    let body = format!(
        r#"[{{"traceId":"7a","id":"b1","parentId":"a0","name":"call","kind":"CLIENT","timestamp":{now},"duration":90,"localEndpoint":{{"serviceName":"front"}}}},
           {{"traceId":"7a","id":"b1","parentId":"a0","name":"call","kind":"SERVER","shared":true,"timestamp":{},"duration":50,"localEndpoint":{{"serviceName":"back"}}}}]"#,
        now + 10
    );
    let (status, text) = post(
        &d,
        "/api/v2/spans",
        "application/json",
        true,
        body.as_bytes(),
    );
    assert_eq!(status, 202, "{text}");
    let (_, v) = d.get("/api/traces/7a");
    let spans = data(&v)[0]["spans"].as_array().unwrap().clone();
    assert_eq!(spans.len(), 2, "{v}");
    let client = spans.iter().find(|s| s["duration"] == 90).unwrap();
    let server = spans.iter().find(|s| s["duration"] == 50).unwrap();
    assert_eq!(client["spanID"], "00000000000000b1");
    assert_eq!(client["references"][0]["spanID"], "00000000000000a0");
    assert_ne!(server["spanID"], "00000000000000b1");
    assert_eq!(server["references"][0]["spanID"], "00000000000000b1");

    // refused whole, with a message, and nothing of it stored
    let good = format!(r#"{{"traceId":"7b","id":"1","name":"ok","timestamp":{now}}}"#);
    for (path, ct, body, want_status, want) in [
        (
            "/api/v2/spans",
            "application/json",
            format!("[{good},{{\"traceId\":\"7b\",\"id\":\"zz\"}}]"),
            400,
            "span 1: id",
        ),
        (
            "/api/v2/spans",
            "application/json",
            "not json".to_owned(),
            400,
            "not a JSON list",
        ),
        (
            "/api/v2/spans",
            "application/x-protobuf",
            "\u{0a}\u{7f}".to_owned(),
            400,
            "protobuf",
        ),
        (
            "/api/v2/spans",
            "text/plain",
            format!("[{good}]"),
            415,
            "application/json",
        ),
        (
            "/api/v1/spans",
            "application/x-thrift",
            format!("[{good}]"),
            415,
            "application/json",
        ),
    ] {
        let (status, text) = post(&d, path, ct, false, body.as_bytes());
        assert_eq!(status, want_status, "{path} {ct} {body}: {text}");
        assert!(text.contains(want), "{text} should say {want}");
    }
    let (status, _) = d.get("/api/traces/7b");
    assert_eq!(status, 404);
    let (_, v) = d.get("/api/services");
    assert_eq!(v["data"], serde_json::json!(["back", "front"]));
}
