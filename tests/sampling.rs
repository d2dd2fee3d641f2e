//! Sampling: the remote sampling API and its hot-reloaded rules, real remote-sampling
//! clients following them, head sampling in the gateway, and admission control.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value as Json};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn sampling_port(d: &Daemon) -> String {
    let ports: Json =
        serde_json::from_str(&std::fs::read_to_string(d.data_dir.join("ports.json")).unwrap())
            .unwrap();
    ports["sampling"].as_str().unwrap().to_owned()
}

fn get_json(url: &str) -> (u16, Json) {
    let r = http().get(url).send().unwrap();
    let status = r.status().as_u16();
    let text = r.text().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Json::String(text)),
    )
}

/// Write `text` so the daemon never reads a half-written file.
fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct WithRules {
    d: Daemon,
    rules: PathBuf,
    _dir: tempfile::TempDir,
}

fn start_with_rules(rules: &str, functions: &str, extra: &[&str]) -> WithRules {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("strategies.json");
    std::fs::write(&path, rules).unwrap();
    let fpath = dir.path().join("functions.toml");
    std::fs::write(&fpath, functions).unwrap();
    let mut args = vec![
        "--sampling-strategies",
        path.to_str().unwrap(),
        "--functions",
        fpath.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let d = Daemon::start_in(&dir.path().join("data"), &args);
    WithRules {
        d,
        rules: path,
        _dir: dir,
    }
}

#[test]
fn remote_sampling_api_serves_rules_and_follows_the_file() {
    // No file: the platform's default, one trace per second, on all three paths.
    let d = start_server();
    let sampling = sampling_port(&d);
    // an integer, as Jaeger's IDL (i16) and Go clients' strict decoding want it
    let default =
        json!({"strategyType": "RATE_LIMITING", "rateLimitingSampling": {"maxTracesPerSecond": 1}});
    for url in [
        format!("http://{sampling}/sampling?service=fc-tracing"),
        format!("http://{sampling}/?service=anything"),
        format!("{}/api/sampling?service=x", d.collector),
    ] {
        let (status, got) = get_json(&url);
        assert_eq!((status, &got), (200, &default), "{url}");
        assert!(
            got["rateLimitingSampling"]["maxTracesPerSecond"].is_u64(),
            "{got}"
        );
    }
    for bad in [
        "sampling",
        "sampling?service=a&service=b",
        "sampling?service=",
    ] {
        let (status, body) = get_json(&format!("http://{sampling}/{bad}"));
        assert_eq!(status, 400, "{bad}");
        assert!(
            body.as_str().unwrap().contains("'service' parameter"),
            "{bad}: {body}"
        );
    }
    drop(d);

    let w = start_with_rules(
        r#"{"default_strategy": {"type": "probabilistic", "param": 0.5},
            "service_strategies": [{"service": "checkout", "type": "probabilistic", "param": 0.25,
              "operation_strategies": [{"operation": "/health", "type": "probabilistic", "param": 0}]}]}"#,
        "",
        &[],
    );
    let sampling = sampling_port(&w.d);
    let url = |svc: &str| format!("http://{sampling}/sampling?service={svc}");
    assert_eq!(
        get_json(&url("checkout")).1,
        json!({"strategyType": "PROBABILISTIC", "probabilisticSampling": {"samplingRate": 0.25},
               "operationSampling": {"defaultSamplingProbability": 0.25, "defaultLowerBoundTracesPerSecond": 0.0,
                 "perOperationStrategies": [{"operation": "/health", "probabilisticSampling": {"samplingRate": 0.0}}],
                 "defaultUpperBoundTracesPerSecond": 0.0}})
    );
    assert_eq!(
        get_json(&url("other")).1,
        json!({"strategyType": "PROBABILISTIC", "probabilisticSampling": {"samplingRate": 0.5}})
    );

    // A change is served without a restart.
    write_atomic(
        &w.rules,
        r#"{"default_strategy": {"type": "ratelimiting", "param": 7}}"#,
    );
    wait_for("the new rules", || {
        get_json(&url("other")).1["rateLimitingSampling"]["maxTracesPerSecond"] == 7
    });

    // Bad files are refused: the last good rules stay, and /metrics says so.
    for bad in [
        "{not json",
        r#"{"default_strategy": {"type": "sometimes", "param": 1}}"#,
        r#"{"default_strategy": {"type": "ratelimiting", "param": -5}}"#,
    ] {
        write_atomic(&w.rules, bad);
        wait_for("the reload error to be counted", || {
            let (_, m) = w.d.get("/metrics");
            m.as_str()
                .unwrap()
                .lines()
                .any(|l| l == "fctrace_sampling_strategies_ok 0")
        });
        assert_eq!(
            get_json(&url("other")).1["rateLimitingSampling"]["maxTracesPerSecond"],
            7,
            "{bad}"
        );
        write_atomic(
            &w.rules,
            r#"{"default_strategy": {"type": "ratelimiting", "param": 7}}"#,
        );
        wait_for("the good file again", || {
            let (_, m) = w.d.get("/metrics");
            m.as_str()
                .unwrap()
                .lines()
                .any(|l| l == "fctrace_sampling_strategies_ok 1")
        });
    }
    let (_, m) = w.d.get("/metrics");
    assert!(
        m.as_str()
            .unwrap()
            .contains("fctrace_sampling_strategy_reloads_total{outcome=\"error\"} 3"),
        "{m}"
    );

    // A bad file at start is refused with the reason.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.json");
    std::fs::write(
        &path,
        r#"{"default_strategy": {"type": "probabilistic", "param": 2}}"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fctrace"))
        .args(["serve", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--sampling-strategies")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("probabilistic param 2 is outside 0..=1"));
}

#[test]
fn real_remote_sampling_clients_follow_the_served_rules() {
    let dir = node_clients();
    let w = start_with_rules(
        r#"{"service_strategies": [{"service": "remote-fn", "type": "probabilistic", "param": 0}],
            "default_strategy": {"type": "probabilistic", "param": 1}}"#,
        "",
        &[],
    );
    let port = sampling_port(&w.d).rsplit(':').next().unwrap().to_owned();
    let run_clients = |expected: &str| -> Json {
        let out = run(Command::new("node")
            .args(["remote_sampling.js", expected])
            .current_dir(&dir)
            .env("SERVICE", "remote-fn")
            .env("SAMPLING_PORT", &port)
            .env("ENDPOINT", &w.d.collector));
        serde_json::from_str(&out).unwrap()
    };
    assert_eq!(
        run_clients("none"),
        json!({"jaeger": 0, "otel": 0, "of": 50})
    );
    write_atomic(
        &w.rules,
        r#"{"service_strategies": [{"service": "remote-fn", "type": "probabilistic", "param": 1}]}"#,
    );
    assert_eq!(
        run_clients("all"),
        json!({"jaeger": 50, "otel": 50, "of": 50})
    );
}

fn behave(name: &str) -> String {
    format!(
        "[[functions]]\nservice = \"test\"\nname = \"{name}\"\ncommand = [\"python3\", \"{ROOT}/tests/e2e/functions/behave.py\"]\ninstance_concurrency = 20\n"
    )
}

fn invoke(d: &Daemon, function: &str, event: &str, context: Option<&str>) -> (String, Json) {
    let mut r = http()
        .post(format!(
            "{}/2016-08-15/services/test/functions/{function}/invocations",
            d.gateway
        ))
        .body(event.to_owned());
    if let Some(c) = context {
        r = r.header("x-fc-tracing-opentracing-span-context", c);
    }
    let resp = r.send().unwrap();
    assert_eq!(resp.status(), 200);
    let rid = resp.headers()["x-fc-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    (
        rid,
        serde_json::from_str(&resp.text().unwrap()).unwrap_or(Json::Null),
    )
}

/// The record of one invocation, once it is written.
fn record_of(d: &Daemon, function: &str, request_id: &str) -> Json {
    let mut found = None;
    wait_for(&format!("the record of {request_id}"), || {
        found = records(d, function, 0)
            .into_iter()
            .find(|r| r["requestId"] == request_id);
        found.is_some()
    });
    found.unwrap()
}

fn records(d: &Daemon, function: &str, n: usize) -> Vec<Json> {
    let mut out = Vec::new();
    wait_for(&format!("{n} records"), || {
        let (_, v) = d.get(&format!(
            "/api/v1/invocations?service=test&function={function}&limit=1000"
        ));
        out = data(&v).clone();
        out.len() >= n
    });
    out
}

#[test]
fn gateway_head_sampling_keeps_about_one_trace_per_second() {
    let w = start_with_rules(
        r#"{"default_strategy": {"type": "ratelimiting", "param": 1}}"#,
        &behave("burst"),
        &[],
    );
    let d = &w.d;
    invoke(d, "burst", "ok", None); // the cold start, out of the count
    let started = Instant::now();
    let n = 40;
    for _ in 0..n {
        invoke(d, "burst", "ok", None);
    }
    let secs = started.elapsed().as_secs_f64();
    let recs = records(d, "burst", n + 1);
    let sampled = recs.iter().filter(|r| r["isSampled"] == true).count();
    // the bucket starts full (1), refills at 1/s; the cold call may have taken the first token
    let most = 2 + secs.ceil() as usize;
    assert!(
        (1..=most).contains(&sampled),
        "{sampled} of {} sampled in {secs:.1}s",
        n + 1
    );
    // unsampled invocations leave records but no spans, and tell the function flags 0
    let unsampled = recs.iter().find(|r| r["isSampled"] == false).unwrap();
    let ctx = unsampled["traceContext"].as_str().unwrap();
    assert!(ctx.ends_with(":0"), "{ctx}");
    let (status, _) = d.get(&format!("/api/traces/{}", ctx.split(':').next().unwrap()));
    assert_eq!(status, 404);
    // once the second's token is spent, the function is told flags 0 (a few tries: on a
    // busy machine a second may pass, and a token come back, between two calls)
    let told_unsampled = (0..20).any(|_| {
        let (_, echoed) = invoke(d, "burst", "headers", None);
        echoed["x-fc-tracing-opentracing-span-context"]
            .as_str()
            .unwrap()
            .ends_with(":0")
    });
    assert!(told_unsampled, "budget spent: flags 0");

    // An inbound sampled flag wins either way.
    let (rid, echoed) = invoke(d, "burst", "headers", Some("abc123:def456:0:1"));
    assert!(echoed["x-fc-tracing-opentracing-span-context"]
        .as_str()
        .unwrap()
        .ends_with(":1"));
    let rec = record_of(d, "burst", &rid);
    assert_eq!(rec["isSampled"], true);
    wait_for("the forced trace", || d.get("/api/traces/abc123").0 == 200);
    let (rid, echoed) = invoke(d, "burst", "headers", Some("abc124:def456:0:0"));
    assert!(echoed["x-fc-tracing-opentracing-span-context"]
        .as_str()
        .unwrap()
        .ends_with(":0"));
    let rec = record_of(d, "burst", &rid);
    assert_eq!(rec["isSampled"], false);

    // A probabilistic rule for the function, once the file says so.
    write_atomic(
        &w.rules,
        r#"{"default_strategy": {"type": "ratelimiting", "param": 1},
            "service_strategies": [{"service": "FC:test/burst", "type": "probabilistic", "param": 1}]}"#,
    );
    let sampling = sampling_port(d);
    wait_for("the probabilistic rule", || {
        get_json(&format!("http://{sampling}/sampling?service=FC:test/burst")).1["strategyType"]
            == "PROBABILISTIC"
    });
    let before = records(d, "burst", n + 4).len();
    for _ in 0..10 {
        invoke(d, "burst", "ok", None);
    }
    let recs = records(d, "burst", before + 10);
    assert!(
        recs[..10].iter().all(|r| r["isSampled"] == true),
        "probability 1 samples every invocation"
    );
}

#[test]
fn admission_refuses_a_flood_with_429_and_stores_the_rest() {
    let d = start_server_with(&["--service-spans-per-second", "100"]);
    let now = now_us();
    let mut accepted = Vec::new();
    let mut refused = 0;
    for t in 1..=20u128 {
        let spans: Vec<TSpan> = (1..=50)
            .map(|i| TSpan {
                trace: t,
                id: i,
                op: "op",
                start: now,
                duration: 1,
                ..Default::default()
            })
            .collect();
        let r = http()
            .post(format!("{}/api/traces", d.collector))
            .header("Content-Type", "application/x-thrift")
            .body(batch("flood", &[], &spans))
            .send()
            .unwrap();
        match r.status().as_u16() {
            202 => accepted.push(t),
            429 => {
                assert_eq!(r.headers()["retry-after"], "1");
                assert!(r.text().unwrap().contains("over its span rate limit"));
                refused += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        accepted.len() >= 2 && refused >= 5,
        "accepted {} refused {refused}",
        accepted.len()
    );
    for t in &accepted {
        let (_, v) = d.get(&format!("/api/traces/{t:x}"));
        assert_eq!(
            data(&v)[0]["spans"].as_array().unwrap().len(),
            50,
            "trace {t}"
        );
    }
    let (_, v) = d.get("/api/traces?service=flood&limit=100");
    assert_eq!(data(&v).len(), accepted.len());
    let (_, m) = d.get("/metrics");
    let line = format!(
        "fctrace_admission_refused_spans_total{{service=\"flood\",reason=\"service_rate\"}} {}",
        refused * 50
    );
    assert!(m.as_str().unwrap().contains(&line), "{line} in {m}");

    // OTLP over gRPC gets RESOURCE_EXHAUSTED for the same reason; OTLP/HTTP gets 429.
    let (t0, t1) = ((now * 1000).to_string(), (now * 1000 + 1000).to_string());
    let req = json!({"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "flood"}}]},
        "scopeSpans": [{"spans": (0..200).map(|i| json!({"traceId": "000000000000000000000000000000ff", "spanId": format!("{:016x}", i + 1),
            "name": "x", "startTimeUnixNano": t0, "endTimeUnixNano": t1})).collect::<Vec<_>>()}]}]});
    let r = http()
        .post(format!("{}/v1/traces", d.otlp_http))
        .header("Content-Type", "application/json")
        .body(req.to_string())
        .send()
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
}
