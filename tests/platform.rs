//! The function platform through the real binary: spawned instances, cold and warm starts,
//! platform spans, x-fc-tracing stitching with the example functions, function errors and
//! bad requests. Functions are real processes: the example functions (Python with the
//! OpenTelemetry Jaeger exporter, Node with jaeger-client) and a stdlib Python function
//! whose event says how to misbehave. An instance does not outlive a daemon killed with
//! `kill -9`.

mod common;

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use common::gateway::*;
use common::*;
use serde_json::{json, Value as Json};

#[test]
fn cold_start_warm_reuse_and_idle_reaping() {
    let d = start_with_functions(
        &behave_fn(
            "life",
            "initializer = true\nidle_timeout = \"1s\"\nmemory_mb = 256",
        ),
        &[],
    );

    let a = invoke(&d, "test", "life", "ok", &[]);
    assert_eq!(a.status, 200, "{}", a.body);
    let rid = a.header("x-fc-request-id").to_owned();
    assert!(!rid.is_empty());
    assert!(a.header("x-fc-invocation-duration").parse::<u64>().unwrap() >= 1);
    let rec = record(&d, "test", "life", &rid);
    assert_eq!(rec["isColdStart"], true);
    assert_eq!(rec["isSampled"], true);
    assert_eq!(rec["memoryMB"], 256);
    assert!(rec["initializationDurationMs"].as_f64().unwrap() > 0.0);
    let t = trace_with(
        &d,
        &rec,
        &[
            "InvokeFunction",
            "ColdStart",
            "PrepareCode",
            "RuntimeInitialization",
            "Initializer",
            "Invocation",
        ],
    );
    assert_eq!(t["spans"].as_array().unwrap().len(), 6);
    let (root, cold, init, inv) = (
        one(&t, "InvokeFunction"),
        one(&t, "ColdStart"),
        one(&t, "Initializer"),
        one(&t, "Invocation"),
    );
    assert!(parent(root).is_none());
    assert_nested(root, cold);
    assert_nested(cold, one(&t, "PrepareCode"));
    assert_nested(cold, one(&t, "RuntimeInitialization"));
    assert_nested(root, init);
    assert_nested(root, inv);
    // the steps follow each other: code, runtime, initializer, invocation
    let end = |s: &Json| s["startTime"].as_u64().unwrap() + s["duration"].as_u64().unwrap();
    assert!(
        end(one(&t, "PrepareCode"))
            <= one(&t, "RuntimeInitialization")["startTime"]
                .as_u64()
                .unwrap()
    );
    assert!(end(cold) <= init["startTime"].as_u64().unwrap());
    assert!(end(init) <= inv["startTime"].as_u64().unwrap());
    // the initializer sleeps 30 ms; its span measured it
    assert!(init["duration"].as_u64().unwrap() >= 30_000, "{init}");
    assert_eq!(tag_of(root, "faas.coldstart"), true);
    assert_eq!(tag_of(root, "faas.invocation_id"), rid.as_str());
    assert_eq!(tag_of(root, "fc.request_id"), rid.as_str());
    assert_eq!(tag_of(root, "faas.max_memory"), 256 * 1024 * 1024);
    let (_, v) = d.get(&format!("/api/traces/{}", t["traceID"].as_str().unwrap()));
    let procs = &data(&v)[0]["processes"];
    assert_eq!(
        procs[root["processID"].as_str().unwrap()]["serviceName"],
        "FC:test/life"
    );
    let instance = tag_of(root, "fc.instance_id").as_str().unwrap().to_owned();

    // warm: same instance, no cold start, no initializer
    let b = invoke(&d, "test", "life", "ok", &[]);
    assert_eq!(b.status, 200);
    let rec = record(&d, "test", "life", b.header("x-fc-request-id"));
    assert_eq!(rec["isColdStart"], false);
    assert_eq!(rec["instanceID"], instance.as_str());
    let t = trace_with(&d, &rec, &["InvokeFunction", "Invocation"]);
    assert_eq!(t["spans"].as_array().unwrap().len(), 2);
    assert_eq!(tag_of(one(&t, "InvokeFunction"), "faas.coldstart"), false);

    // idle past idle_timeout (1 s): the instance is reaped and the next call is cold
    std::thread::sleep(Duration::from_millis(1600));
    let c = invoke(&d, "test", "life", "ok", &[]);
    let rec = record(&d, "test", "life", c.header("x-fc-request-id"));
    assert_eq!(rec["isColdStart"], true);
    assert_ne!(rec["instanceID"], instance.as_str());
    trace_with(&d, &rec, &["ColdStart", "Initializer"]);
}

/// The pids of processes whose parent is `parent` and whose environment has `entry`.
fn children_with_env(parent: u32, entry: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let ppid = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit(')')
                    .next()?
                    .split_whitespace()
                    .nth(1)?
                    .parse::<u32>()
                    .ok()
            });
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        if ppid == Some(parent) && env.split(|b| *b == 0).any(|v| v == entry.as_bytes()) {
            out.push(pid);
        }
    }
    out
}

/// Whether `pid` still runs (a zombie waiting for its reaper does not).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit(')')
                .next()?
                .split_whitespace()
                .next()
                .map(|st| st != "Z")
        })
        .unwrap_or(false)
}

#[test]
fn instances_do_not_outlive_a_daemon_killed_9() {
    let mut d = start_with_functions(&behave_fn("orphan", ""), &[]);
    let a = invoke(&d, "test", "orphan", "ok", &[]);
    assert_eq!(a.status, 200, "{}", a.body);
    let instances = children_with_env(d.pid(), "FC_FUNCTION_NAME=orphan");
    assert_eq!(instances.len(), 1, "the instance, a child of the daemon");
    let instance = instances[0];
    assert!(running(instance));
    d.kill9();
    eventually("the instance to die with its daemon", || {
        (!running(instance)).then_some(())
    });
}

#[test]
fn example_functions_spans_are_stitched_under_invocation() {
    let python = python_venv_from(
        "example",
        &Path::new(ROOT).join("examples/functions/python/requirements.txt"),
    );
    let node_dir = npm_install(&Path::new(ROOT).join("examples/functions/node"));
    let toml = format!(
        "[[functions]]\nservice = \"demo\"\nname = \"py\"\ncommand = [\"{py}\", \"{ROOT}/examples/functions/python/app.py\"]\ninitializer = true\n\n\
         [[functions]]\nservice = \"demo\"\nname = \"node\"\ncommand = [\"node\", \"app.js\"]\ncwd = \"{node}\"\ninitializer = true\n",
        py = python.display(),
        node = node_dir.display()
    );
    let d = start_with_functions(&toml, &[]);

    for (function, user_root, user_child) in [
        ("py", "python-handler", "python-query-db"),
        ("node", "node-handler", "node-render"),
    ] {
        let a = invoke(&d, "demo", function, "{\"hello\":1}", &[]);
        assert_eq!(a.status, 200, "{function}: {}", a.body);
        let body: Json = serde_json::from_str(&a.body).unwrap();
        assert_eq!(
            body["initialized"], true,
            "{function}: the initializer ran first"
        );
        let rec = record(&d, "demo", function, a.header("x-fc-request-id"));
        let t = trace_with(
            &d,
            &rec,
            &[
                "InvokeFunction",
                "ColdStart",
                "Initializer",
                "Invocation",
                user_root,
                user_child,
            ],
        );
        let inv = one(&t, "Invocation");
        let handler = one(&t, user_root);
        assert_eq!(
            parent(handler),
            inv["spanID"].as_str(),
            "{function}: user span under Invocation"
        );
        assert_eq!(parent(one(&t, user_child)), handler["spanID"].as_str());
        let (_, v) = d.get(&format!("/api/traces/{}", t["traceID"].as_str().unwrap()));
        let procs = &data(&v)[0]["processes"];
        let user_service = procs[handler["processID"].as_str().unwrap()]["serviceName"]
            .as_str()
            .unwrap();
        assert_eq!(user_service, format!("demo-{function}"));
    }

    // An upstream context with 15-digit ids and baggage: same trace, right parent, baggage delivered.
    let a = invoke(
        &d,
        "demo",
        "py",
        "x",
        &[
            (
                "x-fc-tracing-opentracing-span-context",
                "5f22f355044a957:5708f3a95a4ed10:0:1",
            ),
            (
                "x-fc-tracing-opentracing-span-context-baggage-user",
                "alice",
            ),
            ("x-fc-tracing-opentracing-span-context-baggage-tenant", "t1"),
        ],
    );
    assert_eq!(a.status, 200);
    let body: Json = serde_json::from_str(&a.body).unwrap();
    let baggage = base64::engine::general_purpose::STANDARD
        .decode(body["baggages"].as_str().unwrap())
        .unwrap();
    // the caller's baggage, and the recursion guard's count of passes (one) through py
    let mut baggage: serde_json::Map<String, Json> = serde_json::from_slice(&baggage).unwrap();
    let guard: Vec<String> = baggage
        .keys()
        .filter(|k| k.starts_with("fc.recursion."))
        .cloned()
        .collect();
    assert_eq!(guard.len(), 1, "{baggage:?}");
    assert_eq!(baggage.remove(&guard[0]), Some(json!("1")));
    assert_eq!(
        Json::Object(baggage),
        json!({"tenant": "t1", "user": "alice"})
    );
    let rec = record(&d, "demo", "py", a.header("x-fc-request-id"));
    assert!(
        rec["traceContext"]
            .as_str()
            .unwrap()
            .starts_with("05f22f355044a957:"),
        "{rec}"
    );
    let t = trace_with(
        &d,
        &rec,
        &["InvokeFunction", "Invocation", "python-handler"],
    );
    assert_eq!(t["traceID"], "05f22f355044a957");
    let root = one(&t, "InvokeFunction");
    assert_eq!(parent(root), Some("05708f3a95a4ed10"));
    assert_eq!(tag_of(root, "baggage.user"), "alice");
    assert_eq!(
        parent(one(&t, "python-handler")),
        one(&t, "Invocation")["spanID"].as_str()
    );

    // The HTTP trigger forwards the request to the function's own path.
    let r = http()
        .get(format!(
            "{}/2016-08-15/proxy/demo/node/items/7?x=1",
            d.gateway
        ))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let rid = r.headers()["x-fc-request-id"].to_str().unwrap().to_owned();
    let body: Json = r.json().unwrap();
    assert_eq!(body["path"], "/items/7?x=1");
    let rec = record(&d, "demo", "node", &rid);
    let t = trace_with(&d, &rec, &["InvokeFunction", "Invocation", "node-handler"]);
    assert_eq!(tag_of(one(&t, "InvokeFunction"), "faas.trigger"), "http");
}

#[test]
fn function_errors_are_classified() {
    let toml = behave_fn("err", "timeout = \"1s\"\nmemory_mb = 128") + &behave_fn("hdr", "");
    let d = start_with_functions(&toml, &[]);

    let cases = [
        ("crash", 500, "FunctionUnhandledError"),
        ("notfound", 200, "FunctionUnhandledError"),
        ("sleep", 504, "FunctionTimeoutError"),
        ("oom", 502, "FunctionOOMError"),
    ];
    let mut instances = Vec::new();
    for (event, status, kind) in cases {
        let a = invoke(&d, "test", "err", event, &[]);
        assert_eq!(a.status, status, "{event}: {}", a.body);
        assert_eq!(a.header("x-fc-error-type"), kind, "{event}");
        assert!(a.headers.get("x-fc-status").is_none());
        let rec = record(&d, "test", "err", a.header("x-fc-request-id"));
        assert_eq!(rec["hasFunctionError"], true, "{event}");
        assert_eq!(rec["errorType"], kind, "{event}");
        assert_eq!(rec["statusCode"], status, "{event}");
        let t = trace_with(&d, &rec, &["InvokeFunction", "Invocation"]);
        for name in ["InvokeFunction", "Invocation"] {
            let s = one(&t, name);
            assert_eq!(tag_of(s, "error"), true, "{event} {name}");
            assert_eq!(tag_of(s, "fc.error_type"), kind, "{event} {name}");
        }
        instances.push((
            event,
            rec["instanceID"].as_str().unwrap().to_owned(),
            rec["isColdStart"].as_bool().unwrap(),
        ));
    }
    // A timed-out or out-of-memory instance is replaced: the call after it starts cold.
    let a = invoke(&d, "test", "err", "ok", &[]);
    assert_eq!(a.status, 200);
    let rec = record(&d, "test", "err", a.header("x-fc-request-id"));
    assert_eq!(rec["isColdStart"], true);
    assert_eq!(rec["hasFunctionError"], false);
    assert_eq!(
        instances[0].1, instances[1].1,
        "an unhandled error keeps the instance"
    );
    assert!(
        instances[3].2,
        "after the timeout the OOM call started a new instance"
    );

    // The function sees the platform's headers.
    let a = invoke(&d, "test", "hdr", "headers", &[]);
    let h: Json = serde_json::from_str(&a.body).unwrap();
    assert_eq!(h["x-fc-function-name"], "hdr");
    assert_eq!(h["x-fc-service-name"], "test");
    assert_eq!(h["x-fc-function-memory"], "128");
    assert_eq!(h["x-fc-function-timeout"], "60");
    assert_eq!(h["x-fc-request-id"], a.header("x-fc-request-id"));
    assert_eq!(
        h["x-fc-tracing-jaeger-endpoint"],
        format!("{}/api/traces", d.collector)
    );
    let ctx = h["x-fc-tracing-opentracing-span-context"].as_str().unwrap();
    assert_eq!(ctx.split(':').count(), 4);
    assert!(ctx.ends_with(":1"));
}

#[test]
fn bad_requests_are_answered_and_the_gateway_stays_healthy() {
    let toml = behave_fn("ok", "") + &behave_fn("busy", "max_instances = 1\ntimeout = \"2s\"")
        + "[[functions]]\nservice = \"test\"\nname = \"broken\"\ncommand = [\"/nonexistent/fn\"]\n\n"
        + "[[functions]]\nservice = \"test\"\nname = \"quits\"\ncommand = [\"python3\", \"-c\", \"raise SystemExit(3)\"]\n";
    let d = start_with_functions(&toml, &["--max-event-bytes", "1000"]);

    let a = invoke(&d, "test", "nope", "x", &[]);
    assert_eq!(a.status, 404);
    let v: Json = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["errorCode"], "FunctionNotFound");
    assert!(v["errorMessage"].as_str().unwrap().contains("test/nope"));

    let a = invoke(&d, "test", "ok", &"x".repeat(2000), &[]);
    assert_eq!(a.status, 413);
    assert!(a.body.contains("1000-byte limit"), "{}", a.body);

    // A malformed context: a fresh trace, with a warning on the root span.
    let a = invoke(
        &d,
        "test",
        "ok",
        "ok",
        &[("x-fc-tracing-opentracing-span-context", "not-a-context")],
    );
    assert_eq!(a.status, 200);
    let rec = record(&d, "test", "ok", a.header("x-fc-request-id"));
    let t = trace_with(&d, &rec, &["InvokeFunction"]);
    let root = one(&t, "InvokeFunction");
    assert!(parent(root).is_none());
    assert!(
        tag_of(root, "fc.tracing.warning")
            .as_str()
            .unwrap()
            .contains("malformed"),
        "{root}"
    );

    // Programs that cannot start: 503, an error on the ColdStart span, no Invocation.
    for (name, step) in [
        ("broken", "PrepareCode"),
        ("quits", "RuntimeInitialization"),
    ] {
        let a = invoke(&d, "test", name, "x", &[]);
        assert_eq!(a.status, 503, "{name}: {}", a.body);
        assert_eq!(a.header("x-fc-error-type"), "FunctionStartError");
        assert!(a.body.contains(step), "{name}: {}", a.body);
        let rec = record(&d, "test", name, a.header("x-fc-request-id"));
        assert_eq!(rec["errorType"], "FunctionStartError");
        let t = trace_with(&d, &rec, &["InvokeFunction", "ColdStart", step]);
        assert_eq!(tag_of(one(&t, "ColdStart"), "error"), true);
        assert_eq!(tag_of(one(&t, step), "error"), true);
        assert!(!spans(&t).contains_key("Invocation"));
    }

    // Every instance busy and none may start: of two calls at once, one is throttled.
    let calls: Vec<_> = (0..2)
        .map(|_| {
            let gateway = d.gateway.clone();
            std::thread::spawn(move || {
                let r = http()
                    .post(format!(
                        "{gateway}/2016-08-15/services/test/functions/busy/invocations"
                    ))
                    .body("sleep")
                    .send()
                    .unwrap();
                let retry = r
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_owned());
                (r.status().as_u16(), retry, r.text().unwrap())
            })
        })
        .collect();
    let mut answers: Vec<_> = calls.into_iter().map(|c| c.join().unwrap()).collect();
    answers.sort();
    assert_eq!(answers[0].0, 429, "{answers:?}");
    assert_eq!(answers[0].1.as_deref(), Some("1"));
    assert!(answers[0].2.contains("ResourceThrottled"));
    assert_eq!(answers[1].0, 504, "the other ran into its timeout");
    let (_, metrics) = d.get("/metrics");
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("fctrace_throttles_total{function=\"FC:test/busy\"}"),
        "throttle counted"
    );

    // and the gateway still serves
    assert_eq!(invoke(&d, "test", "ok", "ok", &[]).status, 200);
    let (status, _) = d.get("/healthz");
    assert_eq!(status, 200);
}

#[test]
fn bad_function_config_is_refused_at_start_naming_entry_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("functions.toml");
    std::fs::write(&path, "[[functions]]\nservice = \"s\"\nname = \"a\"\nurl = \"http://127.0.0.1:1\"\n\n[[functions]]\nservice = \"s\"\nname = \"b\"\ncommand = [\"x\"]\ntimeout = \"later\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fctrace"))
        .args(["serve", "--data-dir"])
        .arg(tmp.path())
        .arg("--functions")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("functions[1] (s/b): timeout: invalid duration \"later\""),
        "{err}"
    );
}

#[test]
fn function_spans_are_stitched_whatever_their_trace_or_arrival_order() {
    let d = start_with_functions(&behave_fn("st", ""), &[]);
    let a = invoke(&d, "test", "st", "ok", &[]);
    let rid: &'static str = Box::leak(a.header("x-fc-request-id").to_owned().into_boxed_str());
    let rec = record(&d, "test", "st", rid);
    let t = trace_with(&d, &rec, &["InvokeFunction", "Invocation"]);
    let trace_hex = t["traceID"].as_str().unwrap().to_owned();
    let trace = u128::from_str_radix(&trace_hex, 16).unwrap();
    let inv = u64::from_str_radix(one(&t, "Invocation")["spanID"].as_str().unwrap(), 16).unwrap();
    let now = now_us();
    let span =
        |trace: u128, id: u64, parent: u64, op: &'static str, tags: Vec<(&'static str, V)>| TSpan {
            trace,
            id,
            parent,
            op,
            start: now,
            duration: 10,
            tags,
            ..Default::default()
        };
    // A grandchild first, naming a parent that is not stored yet; then that parent, under Invocation.
    assert_eq!(
        d.post_thrift(batch(
            "user-fn",
            &[],
            &[span(trace, 0xb2, 0xb1, "late-grandchild", vec![])]
        ))
        .0,
        202
    );
    assert_eq!(
        d.post_thrift(batch(
            "user-fn",
            &[],
            &[span(trace, 0xb1, inv, "named-parent", vec![])]
        ))
        .0,
        202
    );
    // A fresh trace whose root carries faas.invocation_id, and its child in a later batch.
    let fresh = 0x5151_u128;
    let tagged = vec![("faas.invocation_id", V::S(rid))];
    assert_eq!(
        d.post_thrift(batch(
            "user-fn",
            &[],
            &[span(fresh, 0xc1, 0, "fresh-root", tagged)]
        ))
        .0,
        202
    );
    assert_eq!(
        d.post_thrift(batch(
            "user-fn",
            &[],
            &[span(fresh, 0xc2, 0xc1, "fresh-child", vec![])]
        ))
        .0,
        202
    );
    // A fresh trace posted to the invocation-scoped endpoint, no tag needed.
    let r = http()
        .post(format!("{}/api/invocations/{rid}/traces", d.collector))
        .header("Content-Type", "application/x-thrift")
        .body(batch(
            "user-fn",
            &[],
            &[span(0x6161, 0xd1, 0, "scoped-root", vec![])],
        ))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);

    let t = trace_with(
        &d,
        &rec,
        &[
            "named-parent",
            "late-grandchild",
            "fresh-root",
            "fresh-child",
            "scoped-root",
        ],
    );
    let inv_hex = format!("{inv:016x}");
    assert_eq!(parent(one(&t, "named-parent")), Some(inv_hex.as_str()));
    assert_eq!(parent(one(&t, "late-grandchild")), Some("00000000000000b1"));
    assert_eq!(parent(one(&t, "fresh-root")), Some(inv_hex.as_str()));
    assert_eq!(parent(one(&t, "fresh-child")), Some("00000000000000c1"));
    assert_eq!(parent(one(&t, "scoped-root")), Some(inv_hex.as_str()));
    let (status, _) = d.get("/api/traces/5151");
    assert_eq!(status, 404, "nothing is left in the fresh trace");
}
