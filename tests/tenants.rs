//! Tenants through the real binary (issue 17, first part): two tenants ingest through their
//! confidential paths with real SDKs (a Jaeger client and an OpenTelemetry exporter); each
//! token sees its own services and traces only, the other tenant's trace id is a 404 like
//! an unknown one, missing and wrong tokens are 401 with nothing stored, a tenant added to
//! the file works without a restart, and tenant ids survive a restart.

mod common;

use std::process::Command;

use common::*;
use serde_json::Value as Json;

const ACME: &str = "acme-token-0123456789";
// sha256("acme-token-0123456789"), as `printf %s acme-token-0123456789 | sha256sum` prints it
const ACME_SHA256: &str = "2e032a402ed5f8d5e361fb26c6dde881f66772bbd4ae216810ca28d5d6fd2c37";
const GLOBEX: &str = "globex-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";

fn tenants_file(extra: &str) -> String {
    format!(
        "[[tenants]]\nname = \"acme\"\ntoken_sha256 = \"{ACME_SHA256}\"\n\n\
         [[tenants]]\nname = \"globex\"\ntoken = \"{GLOBEX}\"\nspans_per_second = 5\n{extra}"
    )
}

/// GET on the query port with `token` (as a bearer token, or in `x-fctrace-token`).
fn get(d: &Daemon, path: &str, token: Option<&str>, bearer: bool) -> (u16, Json) {
    let mut r = http().get(format!("{}{path}", d.query));
    if let Some(t) = token {
        r = if bearer {
            r.bearer_auth(t)
        } else {
            r.header("x-fctrace-token", t)
        };
    }
    let resp = r.send().unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Json::String(text)),
    )
}

fn node(script: &str, endpoint: &str, service: &str) -> String {
    let out = Command::new("node")
        .arg(script)
        .current_dir(node_clients())
        .env("ENDPOINT", endpoint)
        .env("SERVICE", service)
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A series of `/metrics`, which with tenants only the admin token reads.
fn admin_metric(d: &Daemon, series: &str) -> f64 {
    d.metric_as(series, Some(ADMIN))
}

fn services(d: &Daemon, token: &str) -> Json {
    get(d, "/api/services", Some(token), true).1["data"].clone()
}

#[test]
fn tenants_see_their_own_data_only() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tenants.toml");
    std::fs::write(&file, tenants_file("")).unwrap();
    let data_dir = dir.path().join("data");
    let args = ["--tenants", file.to_str().unwrap(), "--admin-token", ADMIN];
    let mut d = Daemon::start_in(&data_dir, &args);

    // real SDKs, each through its tenant's confidential path
    let a = node(
        "jaeger_client.js",
        &format!("{}/adapt_{ACME}", d.collector),
        "acme-svc",
    );
    let g = node(
        "otlp_http.js",
        &format!("{}/adapt_{GLOBEX}", d.collector),
        "globex-svc",
    );
    let id = |t: &str| t.trim_start_matches('0').to_owned();

    assert_eq!(services(&d, ACME), serde_json::json!(["acme-svc"]));
    assert_eq!(services(&d, GLOBEX), serde_json::json!(["globex-svc"]));
    // by id: one's own, found; the other's, 404 exactly like an unknown id
    let (s, v) = get(&d, &format!("/api/traces/{a}"), Some(ACME), true);
    assert_eq!(
        (s, id(v["data"][0]["traceID"].as_str().unwrap())),
        (200, id(&a))
    );
    let other = get(&d, &format!("/api/traces/{g}"), Some(ACME), true);
    let unknown = get(
        &d,
        "/api/traces/00000000000000000000000000abcdef",
        Some(ACME),
        true,
    );
    assert_eq!((other.0, &other.1), (unknown.0, &unknown.1));
    assert_eq!(other.0, 404);
    let (s, _) = get(&d, &format!("/api/traces/{g}"), Some(GLOBEX), false);
    assert_eq!(s, 200, "x-fctrace-token works too");
    // by search, over every service: each its own
    let (_, v) = get(&d, "/api/v1/traces?preset=1h", Some(ACME), true);
    let found: Vec<String> = data(&v)
        .iter()
        .map(|t| id(t["traceID"].as_str().unwrap()))
        .collect();
    assert_eq!(found, [id(&a)]);
    let (_, v) = get(&d, "/api/traces?service=acme-svc", Some(GLOBEX), true);
    assert!(data(&v).is_empty(), "{v}");
    let (_, v) = get(&d, &format!("/api/v3/traces/{g}"), Some(GLOBEX), true);
    assert!(v["result"]["resourceSpans"].is_array(), "{v}");

    // calls between services (dependencies) are the tenant's too: acme's front calls back
    let now = now_us();
    let front = batch(
        "acme-front",
        &[],
        &[TSpan {
            trace: 0xdee,
            id: 1,
            op: "GET /",
            start: now,
            duration: 10,
            ..Default::default()
        }],
    );
    let back = batch(
        "acme-back",
        &[],
        &[TSpan {
            trace: 0xdee,
            id: 2,
            parent: 1,
            op: "load",
            start: now + 1,
            duration: 5,
            ..Default::default()
        }],
    );
    for body in [front, back] {
        let r = http()
            .post(format!("{}/adapt_{ACME}/api/traces", d.collector))
            .header("content-type", "application/x-thrift")
            .body(body)
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 202);
    }
    let links = |token: &str| {
        let (s, v) = get(&d, "/api/dependencies", Some(token), true);
        assert_eq!(s, 200, "{v}");
        data(&v)
            .iter()
            .map(|l| {
                format!(
                    "{} -> {}: {}",
                    l["parent"].as_str().unwrap(),
                    l["child"].as_str().unwrap(),
                    l["callCount"]
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(links(ACME), ["acme-front -> acme-back: 1"]);
    assert!(links(GLOBEX).is_empty());

    // the admin token reads any tenant it names, and writes nowhere
    let as_admin = |tenant: &str| {
        let r = http()
            .get(format!("{}/api/services", d.query))
            .bearer_auth(ADMIN)
            .header("x-fctrace-tenant", tenant)
            .send()
            .unwrap();
        let status = r.status().as_u16();
        (
            status,
            r.json::<Json>()
                .map(|v| v["data"].clone())
                .unwrap_or(Json::Null),
        )
    };
    let mut acme_services = as_admin("acme");
    if let Some(a) = acme_services.1.as_array_mut() {
        a.sort_by_key(|v| v.to_string());
    }
    assert_eq!(
        acme_services,
        (
            200,
            serde_json::json!(["acme-back", "acme-front", "acme-svc"])
        )
    );
    assert_eq!(as_admin("globex"), (200, serde_json::json!(["globex-svc"])));
    assert_eq!(as_admin("nobody").0, 404);
    let r = http()
        .post(format!("{}/api/traces", d.collector))
        .bearer_auth(ADMIN)
        .header("content-type", "application/x-thrift")
        .body(batch(
            "admin-svc",
            &[],
            &[TSpan {
                trace: 0xad,
                id: 1,
                op: "x",
                start: now_us(),
                duration: 1,
                ..Default::default()
            }],
        ))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);

    // no token, a wrong one: 401, and nothing stored
    assert_eq!(get(&d, "/api/services", None, true).0, 401);
    assert_eq!(
        get(&d, "/api/services", Some("wrong-token-0123456789"), true).0,
        401
    );
    let body = batch(
        "sneaky",
        &[],
        &[TSpan {
            trace: 0x5ea,
            id: 1,
            op: "x",
            start: now_us(),
            duration: 1,
            ..Default::default()
        }],
    );
    for url in [
        format!("{}/api/traces", d.collector),
        format!("{}/adapt_wrong-token-0123456789/api/traces", d.collector),
    ] {
        let r = http()
            .post(url)
            .header("content-type", "application/x-thrift")
            .body(body.clone())
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 401);
    }
    let r = http()
        .post(format!("{}/v1/traces", d.otlp_http))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    for t in [ACME, GLOBEX] {
        assert!(!services(&d, t)
            .as_array()
            .unwrap()
            .contains(&Json::from("sneaky")));
    }

    // a quota: globex may send 5 spans a second (it sent 2): 10 more are refused whole
    let ten: Vec<TSpan> = (1..=10)
        .map(|i| TSpan {
            trace: 0x10,
            id: i,
            op: "burst",
            start: now_us(),
            duration: 1,
            ..Default::default()
        })
        .collect();
    let r = http()
        .post(format!("{}/api/traces", d.collector))
        .bearer_auth(GLOBEX)
        .header("content-type", "application/x-thrift")
        .body(batch("globex-svc", &[], &ten))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(
        admin_metric(
            &d,
            "fctrace_admission_refused_spans_total{service=\"globex\",reason=\"tenant_rate\"}"
        ),
        10.0
    );
    // /metrics names every tenant's services: with tenants only the admin token reads it
    assert_eq!(get(&d, "/metrics", Some(GLOBEX), true).0, 401);
    let (_, v) = get(
        &d,
        "/api/traces?service=globex-svc&operation=burst",
        Some(GLOBEX),
        true,
    );
    assert!(
        data(&v).is_empty(),
        "nothing of the refused batch is stored"
    );

    // a tenant added to the file works without a restart
    let initech = "initech-token-0123456789";
    std::fs::write(
        &file,
        tenants_file(&format!(
            "\n[[tenants]]\nname = \"initech\"\ntoken = \"{initech}\"\n"
        )),
    )
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while get(&d, "/api/services", Some(initech), true).0 != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the new tenant was not picked up"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(services(&d, initech), serde_json::json!([]));

    // after a restart each tenant still has its own data
    d.terminate();
    let d = Daemon::start_in(&data_dir, &args);
    let mut acme = services(&d, ACME).as_array().unwrap().clone();
    acme.sort_by_key(|v| v.to_string());
    assert_eq!(
        acme,
        ["acme-back", "acme-front", "acme-svc"].map(Json::from)
    );
    assert_eq!(services(&d, GLOBEX), serde_json::json!(["globex-svc"]));
}

#[test]
fn the_web_ui_asks_for_the_token_once_and_shows_that_tenant_only() {
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "Debian's chromium is needed for the UI test (make test-deps installs it)"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tenants.toml");
    std::fs::write(&file, tenants_file("")).unwrap();
    let d = Daemon::start_in(
        &dir.path().join("data"),
        &["--tenants", file.to_str().unwrap()],
    );
    for (token, service, trace) in [(ACME, "acme-svc", 0xacu128), (GLOBEX, "globex-svc", 0x61)] {
        let span = TSpan {
            trace,
            id: 1,
            op: "op",
            start: now_us() - 1_000_000,
            duration: 1000,
            ..Default::default()
        };
        let r = http()
            .post(format!("{}/api/traces", d.collector))
            .bearer_auth(token)
            .header("content-type", "application/x-thrift")
            .body(batch(service, &[], &[span]))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 202);
    }
    let out = run(Command::new("node")
        .arg("ui_tenant.js")
        .arg(format!("{}/", d.query))
        .arg(ACME)
        .current_dir(node_clients()));
    let v: Json = serde_json::from_str(&out).unwrap();
    assert_eq!(v["errors"], serde_json::json!([]));
    assert_eq!(v["applications"], serde_json::json!(["acme-svc"]));
    assert_eq!(v["results"], serde_json::json!(["00000000000000ac"]));
    assert_eq!(v["askedAgain"], false);
}

#[test]
fn a_tenants_function_lands_in_that_tenant_only() {
    let python = python_venv("otlp");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tenants.toml");
    std::fs::write(&file, tenants_file("")).unwrap();
    let functions = dir.path().join("functions.toml");
    std::fs::write(
        &functions,
        format!(
            "[[functions]]\nservice = \"ctx\"\nname = \"w3c\"\ntenant = \"acme\"\ncommand = [\"{}\", \"{}/tests/e2e/functions/w3c_otel.py\"]\n",
            python.display(),
            env!("CARGO_MANIFEST_DIR")
        ),
    )
    .unwrap();
    let rules = dir.path().join("strategies.json");
    std::fs::write(
        &rules,
        r#"{"default_strategy": {"type": "probabilistic", "param": 1}}"#,
    )
    .unwrap();
    // an alarm on acme's function: calls in the current minute (so the call below is
    // made clear of a minute's end)
    let alarms = dir.path().join("alarms.json");
    std::fs::write(
        &alarms,
        r#"{"rules": [{"name": "acme-calls", "tenant": "acme", "metric": "FunctionTotalInvocations",
            "service": "ctx", "function": "w3c", "comparison": ">=", "threshold": 1, "periods": 1}]}"#,
    )
    .unwrap();
    let d = Daemon::start_in(
        &dir.path().join("data"),
        &[
            "--tenants",
            file.to_str().unwrap(),
            "--functions",
            functions.to_str().unwrap(),
            "--sampling-strategies",
            rules.to_str().unwrap(),
            "--alarms",
            alarms.to_str().unwrap(),
            "--alarm-interval",
            "200ms",
        ],
    );
    let into_minute = now_us() / 1_000_000 % 60;
    if into_minute > 45 {
        std::thread::sleep(std::time::Duration::from_secs(60 - into_minute + 1));
    }
    let r = http()
        .post(format!(
            "{}/2016-08-15/services/ctx/functions/w3c/invocations",
            d.gateway
        ))
        .body("go")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let request_id = r.headers()["x-fc-request-id"].to_str().unwrap().to_owned();

    // the record, and the trace with the platform's spans and the function's own
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let trace = loop {
        let (_, v) = get(
            &d,
            "/api/v1/invocations?service=ctx&function=w3c",
            Some(ACME),
            true,
        );
        let found = data(&v)
            .iter()
            .find(|r| r["requestId"] == request_id.as_str())
            .cloned();
        if let Some(rec) = found {
            let id = rec["traceContext"]
                .as_str()
                .unwrap()
                .split(':')
                .next()
                .unwrap()
                .to_owned();
            let (s, t) = get(&d, &format!("/api/traces/{id}"), Some(ACME), true);
            if s == 200 {
                let names: Vec<String> = t["data"][0]["spans"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s["operationName"].as_str().unwrap().to_owned())
                    .collect();
                if ["InvokeFunction", "Invocation", "w3c-work"]
                    .iter()
                    .all(|n| names.iter().any(|m| m == n))
                {
                    break id;
                }
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "acme's record and trace"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let mut acme = services(&d, ACME).as_array().unwrap().clone();
    acme.sort_by_key(|v| v.to_string());
    assert_eq!(acme, [Json::from("FC:ctx/w3c"), Json::from("w3c-function")]);
    // globex sees none of it
    assert_eq!(services(&d, GLOBEX), serde_json::json!([]));
    assert_eq!(
        get(&d, &format!("/api/traces/{trace}"), Some(GLOBEX), true).0,
        404
    );
    let (_, v) = get(
        &d,
        "/api/v1/invocations?service=ctx&function=w3c",
        Some(GLOBEX),
        true,
    );
    assert!(data(&v).is_empty(), "{v}");
    let (_, v) = get(
        &d,
        "/api/v1/metrics/FunctionTotalInvocations?service=ctx&function=w3c",
        Some(GLOBEX),
        true,
    );
    assert!(data(&v).is_empty(), "{v}");
    let (_, v) = get(
        &d,
        "/api/v1/metrics/FunctionTotalInvocations?service=ctx&function=w3c",
        Some(ACME),
        true,
    );
    assert_eq!(
        data(&v)
            .iter()
            .map(|p| p["value"].as_f64().unwrap())
            .sum::<f64>(),
        1.0
    );

    // the alarm is acme's: it fires on acme's calls, and globex does not see it
    let alarm = |token: &str| {
        let (s, v) = get(&d, "/api/v1/alarms", Some(token), true);
        assert_eq!(s, 200, "{v}");
        v["data"]["alarms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                format!(
                    "{} {}",
                    a["name"].as_str().unwrap(),
                    a["state"].as_str().unwrap()
                )
            })
            .collect::<Vec<_>>()
    };
    assert!(alarm(GLOBEX).is_empty());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while alarm(ACME) != ["acme-calls ALARM"] {
        assert!(std::time::Instant::now() < deadline, "{:?}", alarm(ACME));
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn otlp_grpc_needs_the_token_in_its_metadata() {
    let python = python_venv("otlp");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tenants.toml");
    std::fs::write(&file, tenants_file("")).unwrap();
    let d = Daemon::start_in(
        &dir.path().join("data"),
        &["--tenants", file.to_str().unwrap(), "--admin-token", ADMIN],
    );
    let script = format!(
        "{}/tests/e2e/python/otlp_export.py",
        env!("CARGO_MANIFEST_DIR")
    );
    // the SDK's own setting for headers (`authorization=Bearer …`, URL-encoded)
    let export = |service: &str, headers: Option<String>| {
        let mut cmd = Command::new(&python);
        cmd.args([&script, "grpc", &d.otlp_grpc, service]);
        if let Some(h) = headers {
            cmd.env("OTEL_EXPORTER_OTLP_HEADERS", h);
        }
        cmd.output().unwrap()
    };
    assert!(
        export("grpc-acme", Some(format!("authorization=Bearer%20{ACME}")))
            .status
            .success()
    );
    assert!(export("grpc-anon", None).status.success());
    assert!(export(
        "grpc-wrong",
        Some("authorization=Bearer%20wrong-token-0123456789".into())
    )
    .status
    .success());
    assert_eq!(services(&d, ACME), serde_json::json!(["grpc-acme"]));
    assert_eq!(services(&d, GLOBEX), serde_json::json!([]));
    assert_eq!(
        admin_metric(
            &d,
            "fctrace_requests_rejected_total{reason=\"unauthenticated\"}"
        ),
        2.0 * 2.0,
        "two spans each, exported one by one, all refused"
    );
}
