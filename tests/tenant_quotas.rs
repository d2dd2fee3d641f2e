//! Tenants through the real binary (issue 17, the rest): a tenant's own retention and
//! stored-bytes quota (refused with 429, kept across a restart, lifted by a reloaded
//! file); sampling calls need a token; a tenant's function logs, instances, instance
//! samples and async events are its own.

mod common;

use std::time::Duration;

use common::gateway::{eventually, ROOT};
use common::*;
use serde_json::Value as Json;

const ACME: &str = "acme-token-0123456789";
const GLOBEX: &str = "globex-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";
/// A tag of 100 bytes.
const PAYLOAD: &str = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";

fn tenants_file(acme_extra: &str) -> String {
    format!(
        "[[tenants]]\nname = \"acme\"\ntoken = \"{ACME}\"\n{acme_extra}\n\n\
         [[tenants]]\nname = \"globex\"\ntoken = \"{GLOBEX}\"\n"
    )
}

fn get(d: &Daemon, path: &str, token: &str) -> (u16, Json) {
    let r = http()
        .get(format!("{}{path}", d.query))
        .bearer_auth(token)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Json::String(text)),
    )
}

/// POST a thrift batch as `token`: status, Retry-After and body.
fn post(d: &Daemon, token: &str, body: Vec<u8>) -> (u16, Option<String>, String) {
    let r = http()
        .post(format!("{}/api/traces", d.collector))
        .bearer_auth(token)
        .header("content-type", "application/x-thrift")
        .body(body)
        .send()
        .unwrap();
    let after = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (r.status().as_u16(), after, r.text().unwrap())
}

fn spans(trace: u128, n: u64, start: u64) -> Vec<TSpan> {
    (1..=n)
        .map(|i| TSpan {
            trace,
            id: i,
            op: "work",
            start,
            duration: 1000,
            tags: vec![("payload", V::S(PAYLOAD))],
            ..Default::default()
        })
        .collect()
}

/// A series of `/metrics`, which with tenants only the admin token reads.
fn admin_metric(d: &Daemon, series: &str) -> f64 {
    d.metric_as(series, Some(ADMIN))
}

#[test]
fn a_tenants_retention_and_stored_bytes_quota() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tenants.toml");
    std::fs::write(
        &file,
        tenants_file("retention = \"1h\"\nmax_stored_bytes = 5000"),
    )
    .unwrap();
    let data_dir = dir.path().join("data");
    let args = ["--tenants", file.to_str().unwrap(), "--admin-token", ADMIN];
    let mut d = Daemon::start_in(&data_dir, &args);

    // acme keeps an hour: a span of two hours ago is refused for acme only (the store
    // keeps 72 hours, which globex gets)
    let two_hours_ago = now_us() - 2 * 3600 * 1_000_000;
    let (status, _, body) = post(&d, ACME, batch("old", &[], &spans(0xa1, 1, two_hours_ago)));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("older than the retention window"), "{body}");
    let (status, _, body) = post(
        &d,
        GLOBEX,
        batch("old", &[], &spans(0xa1, 1, two_hours_ago)),
    );
    assert!((200..300).contains(&status), "{body}");
    assert_eq!(
        get(&d, &format!("/api/traces/{:032x}", 0xa1), GLOBEX).0,
        200
    );
    assert_eq!(get(&d, &format!("/api/traces/{:032x}", 0xa1), ACME).0, 404);

    // acme may store 5,000 bytes: batches of 20 spans (each batch a few hundred bytes as
    // stored: alike spans compress well) are taken until that is reached, then refused
    // whole
    let mut accepted = 0;
    let refused_trace = loop {
        let trace = 0x1000 + accepted as u128;
        let (status, after, body) = post(
            &d,
            ACME,
            batch("acme-svc", &[], &spans(trace, 20, now_us())),
        );
        if status == 429 {
            assert_eq!(after.as_deref(), Some("1"));
            assert!(body.contains("stores its quota of 5000 bytes"), "{body}");
            break trace;
        }
        assert!((200..300).contains(&status), "{body}");
        accepted += 1;
        assert!(accepted < 100, "no refusal in 100 batches");
    };
    assert!(accepted >= 1, "the first batch fits the quota");
    assert_eq!(
        admin_metric(
            &d,
            "fctrace_admission_refused_spans_total{service=\"acme\",reason=\"tenant_storage\"}"
        ),
        20.0
    );
    // what was taken is all there; the refused batch is not
    for t in 0x1000..0x1000 + accepted as u128 {
        let (s, v) = get(&d, &format!("/api/traces/{t:032x}"), ACME);
        assert_eq!(s, 200);
        assert_eq!(v["data"][0]["spans"].as_array().unwrap().len(), 20);
    }
    assert_eq!(
        get(&d, &format!("/api/traces/{refused_trace:032x}"), ACME).0,
        404
    );
    // globex has no quota
    let (status, _, _) = post(
        &d,
        GLOBEX,
        batch("globex-svc", &[], &spans(0x2000, 20, now_us())),
    );
    assert!((200..300).contains(&status));

    // what acme stores is counted across a restart
    d.terminate();
    let d = Daemon::start_in(&data_dir, &args);
    let (status, _, body) = post(
        &d,
        ACME,
        batch("acme-svc", &[], &spans(0x3000, 1, now_us())),
    );
    assert_eq!(status, 429, "{body}");

    // a larger quota in the file: acme writes again, without a restart
    std::fs::write(
        &file,
        tenants_file("retention = \"1h\"\nmax_stored_bytes = 10000000"),
    )
    .unwrap();
    eventually("the raised quota", || {
        let (status, _, _) = post(
            &d,
            ACME,
            batch("acme-svc", &[], &spans(0x3001, 1, now_us())),
        );
        (status != 429).then_some(())
    });
    assert_eq!(
        get(&d, &format!("/api/traces/{:032x}", 0x3001), ACME).0,
        200
    );
}

#[test]
fn sampling_calls_need_a_tenants_token() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tenants.toml");
    std::fs::write(&file, tenants_file("")).unwrap();
    let d = Daemon::start_in(
        &dir.path().join("data"),
        &["--tenants", file.to_str().unwrap()],
    );
    let sampling = format!("http://{}", d.port("sampling"));
    let call = |url: String, token: Option<&str>| {
        let mut r = http().get(url);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let r = r.send().unwrap();
        let status = r.status().as_u16();
        (status, r.text().unwrap())
    };
    for url in [
        format!("{sampling}/sampling?service=svc"),
        format!("{sampling}/?service=svc"),
        format!("{}/api/sampling?service=svc", d.collector),
    ] {
        assert_eq!(call(url.clone(), None).0, 401, "{url} without a token");
        assert_eq!(
            call(url.clone(), Some("wrong-token-0123456789")).0,
            401,
            "{url} with a wrong token"
        );
        let (status, body) = call(url.clone(), Some(ACME));
        assert_eq!(status, 200, "{url}: {body}");
        // Jaeger's answer with the platform's default: one trace a second
        let v: Json = serde_json::from_str(&body).unwrap();
        assert_eq!(v["strategyType"], "RATE_LIMITING", "{body}");
        assert_eq!(v["rateLimitingSampling"]["maxTracesPerSecond"], 1, "{body}");
    }
    // the confidential forms, for clients that cannot set a header
    for url in [
        format!("{sampling}/adapt_{GLOBEX}/sampling?service=svc"),
        format!("{}/adapt_{GLOBEX}/api/sampling?service=svc", d.collector),
    ] {
        assert_eq!(call(url.clone(), None).0, 200, "{url}");
    }
    assert_eq!(
        call(
            format!("{sampling}/adapt_wrong-token-0123456789/sampling?service=svc"),
            None
        )
        .0,
        401
    );
}

#[test]
fn a_tenants_logs_instances_and_async_events_are_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tenants.toml");
    std::fs::write(&file, tenants_file("")).unwrap();
    let functions = dir.path().join("functions.toml");
    std::fs::write(
        &functions,
        format!(
            "[[functions]]\nservice = \"acme-fns\"\nname = \"say\"\ntenant = \"acme\"\n\
             command = [\"python3\", \"{ROOT}/tests/e2e/functions/logs.py\"]\nmax_instances = 1\n"
        ),
    )
    .unwrap();
    let data_dir = dir.path().join("data");
    let args = [
        "--tenants",
        file.to_str().unwrap(),
        "--functions",
        functions.to_str().unwrap(),
        "--instance-metrics-interval",
        "200ms",
    ];
    let mut d = Daemon::start_in(&data_dir, &args);
    let invoke = |d: &Daemon, event: &str, asynchronous: bool| {
        let mut r = http()
            .post(format!(
                "{}/2016-08-15/services/acme-fns/functions/say/invocations",
                d.gateway
            ))
            .body(event.to_owned());
        if asynchronous {
            r = r.header("x-fc-invocation-type", "Async");
        }
        let r = r.send().unwrap();
        assert_eq!(r.status().as_u16(), if asynchronous { 202 } else { 200 });
        r.headers()["x-fc-request-id"].to_str().unwrap().to_owned()
    };
    let id = invoke(&d, "say:hello:3", false);

    // the function's log lines are acme's
    let lines = eventually("acme's log lines", || {
        let (s, v) = get(&d, &format!("/api/v1/logs?requestId={id}"), ACME);
        assert_eq!(s, 200, "{v}");
        let messages: Vec<String> = data(&v)
            .iter()
            .map(|l| l["message"].as_str().unwrap().to_owned())
            .collect();
        messages
            .iter()
            .any(|m| m == "hello line 2")
            .then_some(messages)
    });
    assert!(lines.contains(&"hello line 0".to_owned()), "{lines:?}");
    let (_, v) = get(&d, &format!("/api/v1/logs?requestId={id}"), GLOBEX);
    assert!(data(&v).is_empty(), "{v}");
    let (_, v) = get(&d, "/api/v1/logs?service=acme-fns&function=say", GLOBEX);
    assert!(data(&v).is_empty(), "{v}");

    // its declaration, live instance and samples are acme's
    let (_, v) = get(&d, "/api/v1/functions", ACME);
    assert_eq!(data(&v).len(), 1, "{v}");
    assert_eq!(data(&v)[0]["functionName"], "say");
    let (_, v) = get(&d, "/api/v1/functions", GLOBEX);
    assert!(data(&v).is_empty(), "{v}");
    let instance = eventually("acme's live instance", || {
        let (_, v) = get(&d, "/api/v1/instances", ACME);
        data(&v)
            .first()
            .map(|i| i["instanceID"].as_str().unwrap().to_owned())
    });
    let (_, v) = get(&d, "/api/v1/instances", GLOBEX);
    assert!(data(&v).is_empty(), "{v}");
    eventually("acme's instance samples", || {
        let (_, v) = get(&d, &format!("/api/v1/instances/{instance}/metrics"), ACME);
        (!data(&v).is_empty()).then_some(())
    });
    let (_, v) = get(&d, &format!("/api/v1/instances/{instance}/metrics"), GLOBEX);
    assert!(data(&v).is_empty(), "{v}");
    let (_, v) = get(
        &d,
        "/api/v1/instances/metrics?service=acme-fns&function=say",
        GLOBEX,
    );
    assert!(data(&v).is_empty(), "{v}");
    assert!(get(&d, "/api/v1/instances", "wrong-token-0123456789").0 == 401);

    // async events queue under acme: one instance, half a second each, so most are
    // still queued when the daemon is killed; they run after the restart, as acme's
    let ids: Vec<String> = (0..3)
        .map(|i| invoke(&d, &format!("say:k{i}:25"), true))
        .collect();
    d.kill9();
    std::thread::sleep(Duration::from_millis(200));
    let d = Daemon::start_in(&data_dir, &args);
    for id in &ids {
        let rec = eventually(&format!("acme's record of {id}"), || {
            let (_, v) = get(&d, &format!("/api/v1/invocations/{id}"), ACME);
            (v["data"]["asyncStatus"] == "Succeeded").then(|| v["data"].clone())
        });
        assert_eq!(rec["invocationType"], "Async");
        assert_eq!(get(&d, &format!("/api/v1/invocations/{id}"), GLOBEX).0, 404);
    }
}
