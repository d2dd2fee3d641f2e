//! Asynchronous invocations through the real binary: 202 with a request id before the
//! function has run, then the record and the trace (InvokeFunction (async) → AsyncWait
//! and the attempt's platform spans); a failing function is retried and its failure
//! destination called; events queued when the daemon is `kill -9`ed run after restart.

mod common;

use std::time::Duration;

use common::gateway::*;
use common::*;
use serde_json::Value as Json;

fn enqueue(d: &Daemon, service: &str, function: &str, event: &str) -> String {
    let r = http()
        .post(format!(
            "{}/2016-08-15/services/{service}/functions/{function}/invocations",
            d.gateway
        ))
        .header("x-fc-invocation-type", "Async")
        .body(event.to_owned())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    r.headers()["x-fc-request-id"].to_str().unwrap().to_owned()
}

/// Every record of a request id (one per attempt), once there are `n`.
fn attempts(d: &Daemon, service: &str, function: &str, id: &str, n: usize) -> Vec<Json> {
    eventually(&format!("{n} attempts of {id}"), || {
        let (_, v) = d.get(&format!(
            "/api/v1/invocations?service={service}&function={function}&limit=1000"
        ));
        let mut got: Vec<Json> = data(&v)
            .iter()
            .filter(|r| r["requestId"] == id)
            .cloned()
            .collect();
        got.sort_by_key(|r| r["attempt"].as_u64());
        (got.len() >= n).then_some(got)
    })
}

fn functions(extra: &str) -> String {
    format!(
        "[[functions]]\nservice = \"as\"\nname = \"slow\"\ncommand = [\"python3\", \"{ROOT}/tests/e2e/functions/logs.py\"]\nmax_instances = 1\non_success = \"as/sink\"\n\n\
         [[functions]]\nservice = \"as\"\nname = \"sink\"\ncommand = [\"python3\", \"{ROOT}/tests/e2e/functions/behave.py\"]\n\n\
         [[functions]]\nservice = \"as\"\nname = \"bad\"\ncommand = [\"python3\", \"{ROOT}/tests/e2e/functions/behave.py\"]\nasync_retries = 2\n{extra}\n"
    )
}

#[test]
fn accepted_at_once_then_run_with_its_record_and_trace() {
    let d = start_with_functions(&functions(""), &[]);
    // 25 lines 20 ms apart: half a second of work
    let id = enqueue(&d, "as", "slow", "say:later:25");
    let (status, _) = d.get(&format!("/api/v1/invocations/{id}"));
    assert_eq!(status, 404, "answered before the function ran");
    let rec = &attempts(&d, "as", "slow", &id, 1)[0];
    assert_eq!(rec["invocationType"], "Async");
    assert_eq!(rec["attempt"], 1);
    assert_eq!(rec["asyncStatus"], "Succeeded");
    assert_eq!(rec["statusCode"], 200);
    let root = eventually("the async InvokeFunction", || {
        let t = trace_with(&d, rec, &["InvokeFunction", "AsyncWait", "Invocation"]);
        t["spans"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| tag_of(s, "fc.invocation_type") == "Async")
            .cloned()
    });
    let trace = trace_with(&d, rec, &["InvokeFunction", "AsyncWait", "Invocation"]);
    let roots: Vec<&Json> = trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["operationName"] == "InvokeFunction")
        .collect();
    assert_eq!(tag_of(&root, "fc.async_status"), "Succeeded");
    let wait = one(&trace, "AsyncWait");
    assert_eq!(parent(wait), root["spanID"].as_str());
    let attempt = roots
        .iter()
        .find(|s| s["spanID"] != root["spanID"])
        .copied()
        .unwrap_or_else(|| panic!("no attempt span in {trace}"));
    assert_eq!(parent(attempt), root["spanID"].as_str());
    assert_nested(attempt, one(&trace, "Invocation"));
    // the log lines are the request's
    let (_, v) = d.get(&format!("/api/v1/logs?requestId={id}&q=later%20line"));
    assert_eq!(data(&v).len(), 25);
    // the success destination is another function, called asynchronously with the record
    let sink = eventually("the sink's call", || {
        let (_, v) = d.get("/api/v1/invocations?service=as&function=sink&limit=10");
        data(&v).first().cloned()
    });
    assert_eq!(sink["invocationType"], "Async");
    assert_eq!(sink["asyncStatus"], "Succeeded");
    let (_, v) = d.get(&format!(
        "/api/v1/logs?requestId={id}&q=async%20destination"
    ));
    let line = data(&v)[0]["message"].as_str().unwrap().to_owned();
    assert!(line.contains("as/sink (Success) delivered"), "{line}");
    let record: Json = serde_json::from_str(line.split_once(": ").unwrap().1).unwrap();
    assert_eq!(record["requestContext"]["requestId"], id.as_str());
    assert_eq!(record["requestPayload"], "say:later:25");
    assert_eq!(record["responsePayload"]["event"], "say:later:25");
}

#[test]
fn failures_are_retried_then_sent_to_the_failure_destination() {
    let (url, got) = receiver();
    let d = start_with_functions(&functions(&format!("on_failure = \"{url}\"")), &[]);
    let id = enqueue(&d, "as", "bad", "crash");
    let recs = attempts(&d, "as", "bad", &id, 3);
    let statuses: Vec<&str> = recs
        .iter()
        .map(|r| r["asyncStatus"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["Retrying", "Retrying", "Failed"]);
    let numbers: Vec<u64> = recs
        .iter()
        .map(|r| r["attempt"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [1, 2, 3]);
    assert!(recs
        .iter()
        .all(|r| r["errorType"] == "FunctionUnhandledError"));
    let sent = eventually("the failure destination", || {
        got.lock().unwrap().first().cloned()
    });
    assert_eq!(sent["requestContext"]["requestId"], id.as_str());
    assert_eq!(sent["requestContext"]["condition"], "RetriesExhausted");
    assert_eq!(sent["requestContext"]["approximateInvokeCount"], 3);
    assert_eq!(sent["requestPayload"], "crash");
    assert_eq!(sent["responseContext"]["statusCode"], 500);
    assert_eq!(
        sent["responseContext"]["functionError"],
        "FunctionUnhandledError"
    );
    assert_eq!(sent["responsePayload"]["error"], "boom");
    assert_eq!(
        d.metric(
            "fctrace_async_events_total{function=\"FC:as/bad\",event=\"destination_succeeded\"}"
        ),
        1.0
    );
    // what was sent is recorded with the request's log lines
    let (_, v) = d.get(&format!(
        "/api/v1/logs?requestId={id}&q=async%20destination"
    ));
    let line = data(&v)[0]["message"].as_str().unwrap().to_owned();
    assert!(
        line.contains(&format!("{url} (RetriesExhausted) delivered")),
        "{line}"
    );
    let sent_json: Json = serde_json::from_str(line.split_once(": ").unwrap().1).unwrap();
    assert_eq!(sent_json, sent);
    // the per-minute metrics of asynchronous calls
    let sum = |name: &str| -> f64 {
        let (status, v) = d.get(&format!(
            "/api/v1/metrics/{name}?service=as&function=bad&period=60"
        ));
        assert_eq!(status, 200, "{name}: {v}");
        data(&v).iter().map(|p| p["value"].as_f64().unwrap()).sum()
    };
    eventually("async metrics", || {
        (sum("FunctionDestinationSucceed") == 1.0).then_some(())
    });
    assert_eq!(sum("FunctionEnqueueCount"), 1.0);
    assert_eq!(sum("FunctionDequeueCount"), 1.0);
    assert_eq!(sum("FunctionDestinationErrors"), 0.0);
    assert_eq!(sum("FunctionAsyncEventExpiredDropped"), 0.0);
    assert!(sum("FunctionAsyncMessagesInQueue") >= 1.0);
    assert!(sum("FunctionAsyncMessageLatencyMax") >= 0.0);
    assert_eq!(
        sum("FunctionTotalInvocations"),
        3.0,
        "each attempt is a call"
    );
    // an unknown function is refused at once
    let r = http()
        .post(format!(
            "{}/2016-08-15/services/as/functions/nope/invocations",
            d.gateway
        ))
        .header("x-fc-invocation-type", "Event")
        .body("x")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
}

#[test]
fn queued_events_survive_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let toml = tmp.path().join("functions.toml");
    std::fs::write(&toml, functions("")).unwrap();
    let args = ["--functions", toml.to_str().unwrap()];
    let mut d = Daemon::start_in(&dir, &args);
    // one instance, half a second each: most are still queued when the daemon dies
    let ids: Vec<String> = (0..4)
        .map(|i| enqueue(&d, "as", "slow", &format!("say:k{i}:25")))
        .collect();
    d.kill9();
    std::thread::sleep(Duration::from_millis(200));
    let d = Daemon::start_in(&dir, &args);
    // the new daemon took nothing from callers: what it runs came from the store
    let series = |event: &str| {
        format!("fctrace_async_events_total{{function=\"FC:as/slow\",event=\"{event}\"}}")
    };
    eventually("events run from the store", || {
        (d.metric(&series("dequeued")) >= 3.0).then_some(())
    });
    assert_eq!(d.metric(&series("enqueued")), 0.0);
    for id in &ids {
        let recs = attempts(&d, "as", "slow", id, 1);
        assert!(
            recs.iter().any(|r| r["asyncStatus"] == "Succeeded"),
            "{id}: {recs:?}"
        );
    }
}
