//! Instrumentation-scope attributes and span-link attributes (issue 16): searchable by
//! their own keys like span, log and resource attributes, shown in Jaeger's JSON, and put
//! back where OTLP has them in `/api/v3`. Sent as OTLP protobuf and as OTLP/JSON.

mod common;

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span::Link, ResourceSpans, ScopeSpans, Span};
use prost::Message;
use serde_json::json;

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

fn span(trace: u8, id: u8, name: &str, links: Vec<Link>) -> Span {
    let start = now_us() * 1000 - 5_000_000_000;
    Span {
        trace_id: vec![trace; 16],
        span_id: vec![id; 8],
        name: name.into(),
        kind: 2,
        start_time_unix_nano: start,
        end_time_unix_nano: start + 1_000_000,
        links,
        ..Default::default()
    }
}

/// Service `service`: a scope `lib` with `team=payments` whose span `pay` has a link with
/// `link.reason=retry-of`, and a scope `plain` without attributes whose span `idle` has none.
fn request(service: &str, trace: u8) -> ExportTraceServiceRequest {
    let link = Link {
        trace_id: vec![0x77; 16],
        span_id: vec![0x78; 8],
        attributes: vec![kv("link.reason", "retry-of")],
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", service), kv("host.name", "h1")],
                ..Default::default()
            }),
            scope_spans: vec![
                ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "lib".into(),
                        version: "1.0".into(),
                        attributes: vec![kv("team", "payments")],
                        ..Default::default()
                    }),
                    spans: vec![span(trace, 1, "pay", vec![link])],
                    ..Default::default()
                },
                ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "plain".into(),
                        ..Default::default()
                    }),
                    spans: vec![span(trace, 2, "idle", vec![])],
                    ..Default::default()
                },
            ],
            ..Default::default()
        }],
    }
}

/// The same request in OTLP/JSON, written out by hand.
fn request_json(service: &str, trace: u8) -> Vec<u8> {
    let req = request(service, trace);
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let span_json = |s: &Span| {
        json!({
            "traceId": hex(&s.trace_id), "spanId": hex(&s.span_id), "name": s.name, "kind": 2,
            "startTimeUnixNano": s.start_time_unix_nano.to_string(),
            "endTimeUnixNano": s.end_time_unix_nano.to_string(),
            "links": s.links.iter().map(|l| json!({
                "traceId": hex(&l.trace_id), "spanId": hex(&l.span_id),
                "attributes": [{"key": "link.reason", "value": {"stringValue": "retry-of"}}],
            })).collect::<Vec<_>>(),
        })
    };
    let ss = &req.resource_spans[0].scope_spans;
    serde_json::to_vec(&json!({"resourceSpans": [{
    "resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": service}},
        {"key": "host.name", "value": {"stringValue": "h1"}}]},
    "scopeSpans": [
        {"scope": {"name": "lib", "version": "1.0",
                   "attributes": [{"key": "team", "value": {"stringValue": "payments"}}]},
         "spans": [span_json(&ss[0].spans[0])]},
        {"scope": {"name": "plain"}, "spans": [span_json(&ss[1].spans[0])]},
    ]}]}))
    .unwrap()
}

fn check(d: &Daemon, service: &str, trace: u8) {
    let id = format!("{trace:02x}").repeat(16);
    for tag in ["team:payments", "link.reason:retry-of"] {
        let (status, v) = d.get(&format!("/api/traces?service={service}&tag={tag}"));
        assert_eq!(status, 200);
        assert_eq!(
            trace_ids(&v),
            std::slice::from_ref(&id),
            "{service} {tag}: {v}"
        );
    }
    let (_, v) = d.get("/api/traces?tag=team:payments&limit=100");
    assert!(trace_ids(&v).contains(&id), "no-service search: {v}");
    let (_, v) = d.get(&format!("/api/traces?service={service}&tag=team:billing"));
    assert_eq!(data(&v).len(), 0);

    // Jaeger's JSON: the scope's attribute on the process of its spans, the link's on the span
    let (_, v) = d.get(&format!("/api/traces/{id}"));
    let t = &data(&v)[0];
    let pay = t["spans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["operationName"] == "pay")
        .unwrap();
    let p = &t["processes"][pay["processID"].as_str().unwrap()];
    assert_eq!(
        tag(&p["tags"], "otel.scope.attributes.team").unwrap()["value"],
        "payments"
    );
    assert_eq!(
        tag(&pay["tags"], "otel.link.0.link.reason").unwrap()["value"],
        "retry-of"
    );

    // OTLP in /api/v3: back in the scope and the link
    let (status, v) = d.get(&format!("/api/v3/traces/{id}"));
    assert_eq!(status, 200);
    let mut seen_lib = false;
    for rs in v["result"]["resourceSpans"].as_array().unwrap() {
        let keys: Vec<&str> = rs["resource"]["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["key"].as_str().unwrap())
            .collect();
        assert_eq!(keys, ["service.name", "host.name"], "{rs}");
        for ss in rs["scopeSpans"].as_array().unwrap() {
            let attrs = &ss["scope"]["attributes"];
            if ss["scope"]["name"] == "lib" {
                seen_lib = true;
                assert_eq!(
                    attrs,
                    &json!([{"key": "team", "value": {"stringValue": "payments"}}])
                );
                let s = &ss["spans"][0];
                assert_eq!(
                    s["links"][0]["attributes"],
                    json!([{"key": "link.reason", "value": {"stringValue": "retry-of"}}])
                );
                assert_eq!(s["attributes"], json!([]), "{s}");
            } else {
                assert_eq!(attrs, &json!([]), "{ss}");
            }
        }
    }
    assert!(seen_lib, "{v}");
}

#[test]
fn scope_and_link_attributes_are_searched_and_kept_in_place() {
    let d = start_server();
    let r = http()
        .post(format!("{}/v1/traces", d.otlp_http))
        .header("content-type", "application/x-protobuf")
        .body(request("scoped-proto", 0x31).encode_to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http()
        .post(format!("{}/v1/traces", d.otlp_http))
        .header("content-type", "application/json")
        .body(request_json("scoped-json", 0x32))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    check(&d, "scoped-proto", 0x31);
    check(&d, "scoped-json", 0x32);
}
