//! Function logs through the real binary: a function's printed lines are captured from
//! its instance, bracketed by the platform's request markers, found by request id,
//! instance, function and substring, never mixed between concurrent requests on different
//! instances, and capped per instance without failing the invocation.

mod common;

use common::gateway::*;
use common::*;
use serde_json::Value as Json;

fn logs_fn(extra: &str) -> String {
    format!(
        "[[functions]]\nservice = \"logs\"\nname = \"say\"\ncommand = [\"python3\", \"{ROOT}/tests/e2e/functions/logs.py\"]\n{extra}\n"
    )
}

fn messages(lines: &[Json]) -> Vec<&str> {
    lines
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect()
}

/// The lines of `query` once there are at least `n` (and the end marker when `until`).
fn lines_of(d: &Daemon, query: &str, until: &str) -> Vec<Json> {
    eventually(&format!("logs {query} with {until:?}"), || {
        let (status, v) = d.get(&format!("/api/v1/logs?{query}"));
        assert_eq!(status, 200, "{v}");
        let lines = data(&v).clone();
        messages(&lines).contains(&until).then_some(lines)
    })
}

#[test]
fn lines_are_tied_to_their_request_and_instance() {
    let d = start_with_functions(&logs_fn("max_instances = 2"), &[]);
    // two requests at once: two instances, each printing while the other does
    let calls: Vec<_> = ["alpha", "beta"]
        .into_iter()
        .map(|word| {
            let gateway = d.gateway.clone();
            std::thread::spawn(move || {
                let resp = http()
                    .post(format!(
                        "{gateway}/2016-08-15/services/logs/functions/say/invocations"
                    ))
                    .body(format!("say:{word}:5"))
                    .send()
                    .unwrap();
                assert_eq!(resp.status().as_u16(), 200);
                resp.headers()["x-fc-request-id"]
                    .to_str()
                    .unwrap()
                    .to_owned()
            })
        })
        .collect();
    let ids: Vec<String> = calls.into_iter().map(|c| c.join().unwrap()).collect();
    let mut instances = Vec::new();
    for (word, id) in ["alpha", "beta"].iter().zip(&ids) {
        let rec = record(&d, "logs", "say", id);
        let end = format!("FC Invoke End RequestId: {id}");
        let lines = lines_of(&d, &format!("requestId={id}"), &end);
        let got = messages(&lines);
        let mut stdout: Vec<&str> = lines
            .iter()
            .filter(|l| l["stream"] == "stdout")
            .map(|l| l["message"].as_str().unwrap())
            .collect();
        let want: Vec<String> = (0..5).map(|i| format!("{word} line {i}")).collect();
        assert_eq!(stdout, want, "{got:?}");
        stdout.clear();
        assert_eq!(
            got.first().copied(),
            Some(format!("FC Invoke Start RequestId: {id}").as_str())
        );
        assert_eq!(got.last().copied(), Some(end.as_str()));
        assert!(got.contains(&format!("{word} warning").as_str()), "{got:?}");
        assert_eq!(got.len(), 8, "{got:?}");
        for l in &lines {
            assert_eq!(l["requestId"], id.as_str());
            assert_eq!(l["instanceID"], rec["instanceID"]);
            assert_eq!(l["serviceName"], "logs");
            assert_eq!(l["functionName"], "say");
            assert!(l["time"].as_u64().unwrap() >= rec["startTime"].as_u64().unwrap());
        }
        let warning = lines.iter().find(|l| l["stream"] == "stderr").unwrap();
        assert_eq!(warning["message"], format!("{word} warning"));
        instances.push(rec["instanceID"].as_str().unwrap().to_owned());
    }
    assert_ne!(
        instances[0], instances[1],
        "two instances ran the two requests"
    );

    // the instance's own lines: printed at start-up, outside any request
    let lines = lines_of(
        &d,
        &format!("service=logs&function=say&instanceID={}", instances[0]),
        "instance starting",
    );
    let starting = lines
        .iter()
        .find(|l| l["message"] == "instance starting")
        .unwrap();
    assert_eq!(starting["requestId"], Json::Null);
    assert!(lines
        .iter()
        .all(|l| l["instanceID"] == instances[0].as_str()));

    // a substring, across both instances
    let (_, v) = d.get("/api/v1/logs?service=logs&function=say&q=beta%20line");
    assert_eq!(
        messages(data(&v)),
        (0..5).map(|i| format!("beta line {i}")).collect::<Vec<_>>()
    );
    assert_eq!(v["total"], 5);

    // limit, and questions that cannot be answered
    let (_, v) = d.get("/api/v1/logs?service=logs&function=say&limit=3");
    assert_eq!(data(&v).len(), 3);
    for bad in [
        "/api/v1/logs",
        "/api/v1/logs?service=logs",
        "/api/v1/logs?service=logs&function=say&limit=x",
        "/api/v1/logs?service=logs&function=say&start=10&end=5",
        "/api/v1/logs?service=logs&function=say&start=yesterday",
    ] {
        let (status, v) = d.get(bad);
        assert_eq!(status, 400, "{bad}: {v}");
    }
    // a line longer than 16 KiB is cut, and says so
    let a = invoke(&d, "logs", "say", "long:100000", &[]);
    let id = a.header("x-fc-request-id").to_owned();
    let lines = lines_of(
        &d,
        &format!("requestId={id}"),
        &format!("FC Invoke End RequestId: {id}"),
    );
    let long = lines.iter().find(|l| l["stream"] == "stdout").unwrap();
    assert_eq!(long["message"].as_str().unwrap().len(), 16 << 10);
    assert_eq!(long["truncated"], true);
    // a request id nobody made: nothing
    let (status, v) = d.get("/api/v1/logs?requestId=nope");
    assert_eq!((status, data(&v).len()), (200, 0));
}

#[test]
fn an_instance_over_its_cap_drops_lines_and_says_so() {
    let d = start_with_functions(&logs_fn(""), &["--function-log-bytes", "2000"]);
    let a = invoke(&d, "logs", "say", "flood:100", &[]);
    assert_eq!(a.status, 200, "the invocation does not fail: {}", a.body);
    let id = a.header("x-fc-request-id").to_owned();
    let lines = lines_of(
        &d,
        &format!("requestId={id}"),
        &format!("FC Invoke End RequestId: {id}"),
    );
    let kept: Vec<&Json> = lines.iter().filter(|l| l["stream"] == "stdout").collect();
    let bytes: usize = kept
        .iter()
        .map(|l| l["message"].as_str().unwrap().len())
        .sum();
    // 100 lines of 100 bytes printed; within one minute at most 2000 bytes are kept (a
    // minute boundary during the flood would allow a second 2000)
    assert!(!kept.is_empty() && bytes <= 4000, "{bytes} bytes kept");
    assert!(kept.len() < 100);
    let (_, v) = d.get("/api/v1/logs?service=logs&function=say&q=%5Bfctrace%5D");
    assert!(
        messages(data(&v))
            .iter()
            .any(|m| m.contains("more than 2000 bytes this minute")),
        "{v}"
    );
    let dropped = d.metric("fctrace_function_log_lines_dropped_total{reason=\"cap\"}");
    assert!(dropped >= (100 - kept.len()) as f64, "{dropped}");
}
