//! The gateway's black-box helpers: a daemon with functions declared, invocations, and
//! reading back their records and traces.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use super::*;

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

pub fn start_with_functions(toml: &str, extra: &[&str]) -> Daemon {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("functions.toml");
    std::fs::write(&path, toml).unwrap();
    // Every invocation traced: these tests look at each one's spans.
    let rules = tmp.path().join("strategies.json");
    std::fs::write(
        &rules,
        r#"{"default_strategy": {"type": "probabilistic", "param": 1}}"#,
    )
    .unwrap();
    let mut args = vec![
        "--functions",
        path.to_str().unwrap(),
        "--sampling-strategies",
        rules.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Daemon::start_in(&tmp.path().join("data"), &args).owning(tmp)
}

pub fn behave_fn(name: &str, extra: &str) -> String {
    format!(
        "[[functions]]\nservice = \"test\"\nname = \"{name}\"\ncommand = [\"python3\", \"{ROOT}/tests/e2e/functions/behave.py\"]\n{extra}\n"
    )
}

pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }
}

pub fn invoke(
    d: &Daemon,
    service: &str,
    function: &str,
    event: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let mut r = http()
        .post(format!(
            "{}/2016-08-15/services/{service}/functions/{function}/invocations",
            d.gateway
        ))
        .body(event.to_owned());
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let resp = r.send().unwrap();
    Answer {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        body: resp.text().unwrap(),
    }
}

/// Poll until `f` gives a value or the deadline passes.
pub fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn record(d: &Daemon, service: &str, function: &str, request_id: &str) -> Json {
    eventually(&format!("invocation record {request_id}"), || {
        let (_, v) = d.get(&format!(
            "/api/v1/invocations?service={service}&function={function}&limit=1000"
        ));
        data(&v)
            .iter()
            .find(|r| r["requestId"] == request_id)
            .cloned()
    })
}

/// The trace of an invocation once it holds every span name in `names`.
pub fn trace_with(d: &Daemon, record: &Json, names: &[&str]) -> Json {
    let trace_id = record["traceContext"]
        .as_str()
        .unwrap()
        .split(':')
        .next()
        .unwrap()
        .to_owned();
    eventually(&format!("trace {trace_id} with {names:?}"), || {
        let (status, v) = d.get(&format!("/api/traces/{trace_id}"));
        if status != 200 {
            return None;
        }
        let t = data(&v)[0].clone();
        let have: Vec<&str> = t["spans"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["operationName"].as_str().unwrap())
            .collect();
        names.iter().all(|n| have.contains(n)).then_some(t)
    })
}

pub fn spans(trace: &Json) -> HashMap<&str, Vec<&Json>> {
    let mut m: HashMap<&str, Vec<&Json>> = HashMap::new();
    for s in trace["spans"].as_array().unwrap() {
        m.entry(s["operationName"].as_str().unwrap())
            .or_default()
            .push(s);
    }
    m
}

pub fn one<'a>(trace: &'a Json, name: &str) -> &'a Json {
    let all = spans(trace);
    let v = all.get(name).unwrap_or_else(|| panic!("no {name} span"));
    assert_eq!(v.len(), 1, "{name} spans");
    v[0]
}

pub fn parent(span: &Json) -> Option<&str> {
    span["references"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["refType"] == "CHILD_OF")
        .map(|r| r["spanID"].as_str().unwrap())
}

pub fn tag_of<'a>(span: &'a Json, key: &str) -> &'a Json {
    tag(&span["tags"], key)
        .map(|t| &t["value"])
        .unwrap_or(&Json::Null)
}

/// A child lies inside its parent's window.
pub fn assert_nested(outer: &Json, child: &Json) {
    let (ps, pd) = (
        outer["startTime"].as_u64().unwrap(),
        outer["duration"].as_u64().unwrap(),
    );
    let (cs, cd) = (
        child["startTime"].as_u64().unwrap(),
        child["duration"].as_u64().unwrap(),
    );
    assert!(
        cs >= ps && cs + cd <= ps + pd,
        "{} [{cs}+{cd}] not inside {} [{ps}+{pd}]",
        child["operationName"],
        outer["operationName"]
    );
    assert_eq!(
        parent(child),
        outer["spanID"].as_str(),
        "{} parent",
        child["operationName"]
    );
}
