//! Every trace-context format at the gateway, through the real binary: a function that
//! uses only the OpenTelemetry SDK (its default W3C propagator and OTLP exporter, Python)
//! lands under Invocation; a caller's W3C, X-Ray, B3 or Jaeger context parents
//! InvokeFunction; the caller's own context headers never reach the function.

mod common;

use common::gateway::*;
use common::*;
use serde_json::Value as Json;

fn trace_id_of(record: &Json) -> String {
    record["traceContext"]
        .as_str()
        .unwrap()
        .split(':')
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn an_opentelemetry_function_continues_the_trace_under_invocation() {
    let python = python_venv("otlp");
    let d = start_with_functions(
        &format!(
            "[[functions]]\nservice = \"ctx\"\nname = \"w3c\"\ncommand = [\"{}\", \"{ROOT}/tests/e2e/functions/w3c_otel.py\"]\n",
            python.display()
        ),
        &[],
    );
    let a = invoke(&d, "ctx", "w3c", "go", &[("baggage", "user=alice")]);
    assert_eq!(a.status, 200, "{}", a.body);
    let got: Json = serde_json::from_str(&a.body).unwrap();
    let rec = record(&d, "ctx", "w3c", a.header("x-fc-request-id"));
    let trace = trace_with(&d, &rec, &["InvokeFunction", "Invocation", "w3c-work"]);
    let invocation = one(&trace, "Invocation");
    let work = one(&trace, "w3c-work");
    assert_nested(invocation, work);
    assert_eq!(
        trace["processes"][work["processID"].as_str().unwrap()]["serviceName"],
        "w3c-function"
    );
    assert_eq!(tag_of(work, "user"), "alice", "baggage crossed to the SDK");
    // the platform's spans say where they ran, as Jaeger clients tag processes
    let platform = &trace["processes"][invocation["processID"].as_str().unwrap()];
    let ptag = |k: &str| tag(&platform["tags"], k).map(|t| t["value"].clone());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(ptag("hostname"), Some(Json::from(host.trim())));
    assert_eq!(ptag("ip"), Some(Json::from("127.0.0.1")));
    // what the function was handed: W3C and the platform's header, the same span
    let trace_id = trace_id_of(&rec);
    let span = invocation["spanID"].as_str().unwrap();
    assert_eq!(
        got["traceparent"],
        format!("00-{trace_id:0>32}-{span}-01").as_str()
    );
    assert!(got["x-fc-tracing-opentracing-span-context"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{trace_id}:{span}:")));
    // the caller's baggage, and the recursion guard's count of passes through this function
    let baggage = got["baggage"].as_str().unwrap();
    let (user, guard) = baggage.split_once(',').unwrap_or((baggage, ""));
    assert_eq!(user, "user=alice");
    let (key, count) = guard.split_once('=').unwrap_or(("", ""));
    assert!(
        key.len() == 29 && key.starts_with("fc.recursion.") && count == "1",
        "{baggage}"
    );
}

/// InvokeFunction of an HTTP-triggered call made with these headers (an HTTP trigger
/// relays the caller's headers), and the headers the function got.
fn invoke_with(d: &Daemon, headers: &[(&str, &str)]) -> (Json, Json) {
    let mut r = http()
        .post(format!("{}/2016-08-15/proxy/test/hdr/echo", d.gateway))
        .header("x-kept", "yes")
        .body("headers");
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let resp = r.send().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let request_id = resp.headers()["x-fc-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let got: Json = resp.json().unwrap();
    assert_eq!(got["x-kept"], "yes", "other headers are relayed");
    let rec = record(d, "test", "hdr", &request_id);
    let trace = trace_with(d, &rec, &["InvokeFunction", "Invocation"]);
    (one(&trace, "InvokeFunction").clone(), got)
}

/// (headers, trace id, caller span, header used)
type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str, &'a str);

#[test]
fn callers_contexts_in_every_format_parent_invoke_function() {
    let d = start_with_functions(&behave_fn("hdr", ""), &[]);
    // (headers, trace id, caller span) as each format's documentation writes them
    let cases: [Case; 5] = [
        (
            &[(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )],
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "00f067aa0ba902b7",
            "traceparent",
        ),
        (
            &[(
                "X-Amzn-Trace-Id",
                "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
            )],
            "5759e988bd862e3fe1be46a994272793",
            "53995c3f42cd8ad8",
            "x-amzn-trace-id",
        ),
        (
            &[(
                "b3",
                "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90",
            )],
            "80f198ee56343ba864fe8b2a57d3eff7",
            "e457b5a2e4d86bd1",
            "b3",
        ),
        (
            &[
                ("X-B3-TraceId", "463ac35c9f6413ad48485a3953bb6124"),
                ("X-B3-SpanId", "a2fb4a1d1a96d312"),
                ("X-B3-Sampled", "1"),
            ],
            "463ac35c9f6413ad48485a3953bb6124",
            "a2fb4a1d1a96d312",
            "x-b3-traceid",
        ),
        (
            &[("uber-trace-id", "5f22f355044a957a:2b3b4c5d6e7f8091:0:1")],
            "5f22f355044a957a",
            "2b3b4c5d6e7f8091",
            "uber-trace-id",
        ),
    ];
    for (headers, trace_id, caller, format) in cases {
        let (invoke_span, got) = invoke_with(&d, headers);
        assert_eq!(invoke_span["traceID"], trace_id, "{format}");
        assert_eq!(parent(&invoke_span), Some(caller), "{format}");
        assert_eq!(
            tag_of(&invoke_span, "fc.tracing.propagation"),
            format,
            "{format}"
        );
        // the function gets the gateway's context, not the caller's
        let tp = got["traceparent"].as_str().unwrap();
        assert!(tp.starts_with(&format!("00-{trace_id:0>32}-")), "{tp}");
        assert!(!tp.contains(caller), "{tp}");
        for h in headers {
            let name = h.0.to_ascii_lowercase();
            if name != "traceparent" {
                assert!(got.get(&name).is_none(), "{name} relayed");
            }
        }
    }
    // a malformed context: a fresh trace, with a warning on InvokeFunction
    let (invoke_span, _) = invoke_with(&d, &[("traceparent", "00-nonsense-01")]);
    assert_eq!(parent(&invoke_span), None);
    assert!(tag_of(&invoke_span, "fc.tracing.warning")
        .as_str()
        .unwrap()
        .starts_with("ignored malformed traceparent"));
}
