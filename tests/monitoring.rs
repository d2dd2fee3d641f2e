//! Function metrics through the real binary: a known mix of calls through the gateway
//! (successes, an unhandled error, timeouts, a cold start with an initializer, a call
//! throttled by its function's instance limit, one refused by the platform-wide limit, an
//! unknown function), then every metric of the mix read back from `/api/v1/metrics`.
//! Expected values are what the test did, counted by hand, and times the client measured.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value as Json;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn invoke(d: &Daemon, function: &str, event: &str) -> (u16, Duration) {
    let (status, took, _) = invoke_id(d, function, event);
    (status, took)
}

/// Status, time the client saw, and the `x-fc-request-id` answered.
fn invoke_id(d: &Daemon, function: &str, event: &str) -> (u16, Duration, String) {
    let t = Instant::now();
    let resp = http()
        .post(format!(
            "{}/2016-08-15/services/test/functions/{function}/invocations",
            d.gateway
        ))
        .body(event.to_owned())
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    let id = resp
        .headers()
        .get("x-fc-request-id")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let _ = resp.text();
    (status, t.elapsed(), id)
}

/// The datapoints of a metric over the last hour, one period of an hour.
fn points(d: &Daemon, name: &str, dims: &str) -> Vec<Json> {
    let (status, v) = d.get(&format!("/api/v1/metrics/{name}?period=3600{dims}"));
    assert_eq!(status, 200, "{name}: {v}");
    data(&v).clone()
}

/// The one value of a metric (the test runs within one hour-long period).
fn value(d: &Daemon, name: &str, dims: &str) -> f64 {
    let p = points(d, name, dims);
    assert_eq!(p.len(), 1, "{name}{dims}: {p:?}");
    p[0]["value"].as_f64().unwrap()
}

#[test]
fn every_metric_of_a_known_mix_of_calls_is_what_was_done() {
    // The calls must fall in one hour-long period: start clear of the hour's end.
    let into_hour = now_us() / 1_000_000 % 3600;
    if into_hour > 3540 {
        std::thread::sleep(Duration::from_secs(3600 - into_hour + 1));
    }
    let functions = format!(
        "[[functions]]\nservice = \"test\"\nname = \"mon\"\ncommand = [\"python3\", \"{ROOT}/tests/e2e/functions/behave.py\"]\n\
         initializer = true\ntimeout = \"1s\"\nmemory_mb = 128\n\n\
         [[functions]]\nservice = \"test\"\nname = \"busy\"\ncommand = [\"python3\", \"{ROOT}/tests/e2e/functions/behave.py\"]\n\
         max_instances = 1\ntimeout = \"3s\"\nmemory_mb = 256\n"
    );
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("functions.toml");
    std::fs::write(&path, functions).unwrap();
    let d = Daemon::start_in(
        &tmp.path().join("data"),
        &[
            "--functions",
            path.to_str().unwrap(),
            "--max-concurrent-invocations",
            "2",
        ],
    );

    // mon: three successes (the first a cold start with its initializer), one crash
    let mut slowest = Duration::ZERO;
    let mut ids = Vec::new();
    for event in ["ok", "ok", "crash", "ok"] {
        let (status, took, id) = invoke_id(&d, "mon", event);
        assert_eq!(status, if event == "crash" { 500 } else { 200 });
        slowest = slowest.max(took);
        ids.push(id);
    }
    assert_eq!(invoke(&d, "nosuch", "ok").0, 404);

    std::thread::scope(|s| {
        // busy: a call that runs into its 3 s timeout, holding the only instance
        let a = s.spawn(|| invoke(&d, "busy", "sleep"));
        std::thread::sleep(Duration::from_millis(500));
        // mon: a call that runs into its 1 s timeout
        let b = s.spawn(|| invoke(&d, "mon", "sleep"));
        std::thread::sleep(Duration::from_millis(400));
        // two calls run: the platform-wide limit of 2 refuses a third
        let (status, _, id) = invoke_id(&d, "mon", "ok");
        assert_eq!(status, 503);
        ids.push(id);
        let (status, took) = b.join().unwrap();
        assert_eq!(status, 504, "mon's call ran into its timeout");
        slowest = slowest.max(took);
        // busy's one instance is still taken: its function throttles
        assert_eq!(invoke(&d, "busy", "ok").0, 429);
        assert_eq!(a.join().unwrap().0, 504);
    });

    let mon = "&service=test&function=mon";
    let busy = "&service=test&function=busy";
    // Records and metrics are written after each answer: wait for the last of them.
    let deadline = Instant::now() + Duration::from_secs(20);
    while value_or_zero(&d, "RegionTotalInvocations", "") < 9.0 {
        assert!(
            Instant::now() < deadline,
            "the calls' metrics did not arrive"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let expect = [
        // mon: ok x3, crash, timeout, refused by the platform limit
        ("FunctionTotalInvocations", mon, 6.0),
        ("FunctionFunctionErrors", mon, 2.0),
        ("FunctionServerErrors", mon, 0.0),
        ("FunctionClientErrors", mon, 0.0),
        ("FunctionConcurrencyThrottles", mon, 0.0),
        ("FunctionResourceThrottles", mon, 1.0),
        ("FunctionColdStarts", mon, 1.0),
        ("FunctionMemoryLimitMB", mon, 128.0),
        ("FunctionFunctionErrorsRate", mon, 100.0 * 2.0 / 6.0),
        ("FunctionThrottlesRate", mon, 100.0 / 6.0),
        // busy: its timeout (a cold start) and the call it throttled
        ("FunctionTotalInvocations", busy, 2.0),
        ("FunctionFunctionErrors", busy, 1.0),
        ("FunctionConcurrencyThrottles", busy, 1.0),
        ("FunctionColdStarts", busy, 1.0),
        ("FunctionMemoryLimitMB", busy, 256.0),
        ("ServiceTotalInvocations", "&service=test", 8.0),
        ("ServiceThrottles", "&service=test", 2.0),
        // the region also counts the call for a function that does not exist
        ("RegionTotalInvocations", "", 9.0),
        ("RegionClientErrors", "", 1.0),
        ("RegionFunctionErrors", "", 3.0),
        ("RegionConcurrentCount", "", 2.0),
    ];
    for (name, dims, want) in expect {
        let got = value(&d, name, dims);
        assert!(
            (got - want).abs() < 1e-9,
            "{name}{dims}: {got}, expected {want}"
        );
    }

    // Lambda's names, from the same data: Invocations leave out throttled and refused
    // calls; the rest equal their platform counterparts
    for (name, dims, want) in [
        ("Invocations", mon, 5.0),
        ("Invocations", busy, 1.0),
        ("Invocations", "", 6.0),
        ("Errors", mon, 2.0),
        ("Throttles", mon, 1.0),
        ("Throttles", busy, 1.0),
        ("Throttles", "&service=test", 2.0),
        ("DeadLetterErrors", mon, 0.0),
        ("RecursiveInvocationsDropped", mon, 0.0),
    ] {
        let got = value(&d, name, dims);
        assert!(
            (got - want).abs() < 1e-9,
            "{name}{dims}: {got}, expected {want}"
        );
    }
    for (lambda, platform, dims) in [
        ("Errors", "FunctionFunctionErrors", mon),
        ("Duration", "FunctionLatencyAvg", mon),
        ("Duration&statistic=Maximum", "FunctionLatencyMax", mon),
        ("Duration&statistic=p99", "FunctionLatencyP99", mon),
        ("ConcurrentExecutions", "FunctionConcurrentRequests", mon),
        ("ConcurrentExecutions", "RegionConcurrentRequests", ""),
        (
            "UnreservedConcurrentExecutions",
            "RegionConcurrentCount",
            mon,
        ),
        ("AsyncEventsReceived", "FunctionEnqueueCount", mon),
    ] {
        let (name, stat) = lambda.split_once('&').unwrap_or((lambda, ""));
        let stat = if stat.is_empty() {
            String::new()
        } else {
            format!("&{stat}")
        };
        assert_eq!(
            value(&d, name, &format!("{stat}{dims}")),
            value(&d, platform, dims),
            "{lambda}{dims} against {platform}"
        );
    }
    let (status, v) = d.get(&format!(
        "/api/v1/metrics/Duration?period=3600&statistic=median{mon}"
    ));
    assert_eq!(status, 400);
    assert!(
        v["errors"][0]["msg"].as_str().unwrap().contains("Average"),
        "{v}"
    );

    // Latencies: mon's slowest call is its timeout, 1 s of function time plus the
    // platform's, no longer than the client saw it.
    let max = value(&d, "FunctionLatencyMax", mon);
    assert!(
        max >= 1000.0 && max <= slowest.as_secs_f64() * 1000.0,
        "LatencyMax {max} ms, the client saw {slowest:?}"
    );
    // 6 calls: the 99th percentile is the slowest; the median one of the fast ones
    assert_eq!(value(&d, "FunctionLatencyP99", mon), max);
    let p50 = value(&d, "FunctionLatencyP50", mon);
    assert!(p50 < 500.0, "p50 {p50}");
    let avg = value(&d, "FunctionLatencyAvg", mon);
    assert!(avg > max / 6.0 && avg < max, "avg {avg}");
    // the initializer sleeps 30 ms
    let init = value(&d, "FunctionInitDurationAvg", mon);
    assert!((30.0..1000.0).contains(&init), "init {init}");
    assert_eq!(value(&d, "FunctionInitDurationMax", mon), init);
    // billed: 128 MB for at least the 1 s the timed-out run took
    let cost = value(&d, "FunctionCost", mon);
    assert!(cost >= 128.0 * 1000.0, "cost {cost}");
    let mem = value(&d, "FunctionMaxMemoryUsage", mon);
    assert!(mem > 1.0 && mem < 128.0, "memory {mem} MB");

    // A datapoint names its period and dimensions.
    let p = &points(&d, "FunctionTotalInvocations", mon)[0];
    assert_eq!(p["serviceName"], "test");
    assert_eq!(p["functionName"], "mon");
    assert_eq!(p["qualifier"], "LATEST");
    let ts = p["timestamp"].as_u64().unwrap();
    assert_eq!(ts % 3_600_000, 0);
    assert!(ts <= now_us() / 1000 && now_us() / 1000 - ts < 3_600_000 + 60_000);
    // per minute, the same calls: their counts add up to the hour's
    let (_, v) = d.get(&format!(
        "/api/v1/metrics/FunctionTotalInvocations?period=60{mon}"
    ));
    let per_minute: f64 = data(&v).iter().map(|p| p["value"].as_f64().unwrap()).sum();
    assert_eq!(per_minute, 6.0);
    // The same facts as Prometheus series, named as OpenTelemetry's FaaS conventions.
    let labels = |f: &str| format!("{{service=\"test\",function=\"{f}\"}}");
    for (series, want) in [
        (format!("faas_invocations_total{}", labels("mon")), 6.0),
        (format!("faas_invocations_total{}", labels("busy")), 2.0),
        (
            "faas_invocations_total{service=\"__unknown__\",function=\"__unknown__\"}".into(),
            1.0,
        ),
        (
            "faas_errors_total{service=\"test\",function=\"mon\",kind=\"function\"}".into(),
            2.0,
        ),
        (
            "faas_errors_total{service=\"test\",function=\"mon\",kind=\"resource_throttle\"}"
                .into(),
            1.0,
        ),
        (
            "faas_errors_total{service=\"test\",function=\"busy\",kind=\"concurrency_throttle\"}"
                .into(),
            1.0,
        ),
        (format!("faas_coldstarts_total{}", labels("mon")), 1.0),
        (
            format!("faas_invoke_duration_seconds_count{}", labels("mon")),
            6.0,
        ),
        (
            format!("faas_init_duration_seconds_count{}", labels("mon")),
            1.0,
        ),
    ] {
        assert_eq!(d.metric(&series), want, "{series}");
    }
    assert!(d.metric(&format!("faas_mem_usage_bytes_count{}", labels("mon"))) >= 4.0);

    call_analysis(&d, &ids);
}

/// Records of the mix: by request id, filtered, and grouped. `ids`: mon's cold call,
/// two warm ones, its crash, and the call the platform limit refused.
fn call_analysis(d: &Daemon, ids: &[String]) {
    let record = |id: &str| {
        let (status, v) = d.get(&format!("/api/v1/invocations/{id}"));
        assert_eq!(status, 200, "{id}: {v}");
        v["data"].clone()
    };
    let cold = record(&ids[0]);
    assert_eq!(cold["serviceName"], "test");
    assert_eq!(cold["functionName"], "mon");
    assert_eq!(cold["qualifier"], "LATEST");
    assert_eq!(cold["requestId"], ids[0].as_str());
    assert_eq!(cold["operation"], "InvokeFunction");
    assert_eq!(cold["invocationType"], "Sync");
    assert_eq!(cold["isColdStart"], true);
    assert_eq!(cold["instanceEvent"], "Created");
    assert_eq!(cold["memoryMB"], 128);
    assert_eq!(cold["ipAddress"], "127.0.0.1");
    assert_eq!(cold["activeInstances"], 1);
    assert!(cold["instanceID"].as_str().is_some_and(|s| !s.is_empty()));
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(cold["hostname"], host.trim());
    // the initializer (30 ms) ran before the function: the schedule latency holds it
    let init = cold["initializationDurationMs"].as_f64().unwrap();
    assert!(init >= 30.0, "{cold}");
    assert!(
        cold["scheduleLatencyMs"].as_f64().unwrap() >= init,
        "{cold}"
    );
    let warm = record(&ids[1]);
    assert_eq!(warm["instanceEvent"], "Reused");
    assert_eq!(warm["isColdStart"], false);
    assert_eq!(warm["instanceID"], cold["instanceID"]);
    let refused = record(&ids[4]);
    assert_eq!(refused["errorType"], "ResourceThrottled");
    assert_eq!(refused["statusCode"], 503);
    assert_eq!(refused["hasFunctionError"], false);
    assert_eq!(refused["instanceEvent"], "");
    let (status, _) = d.get("/api/v1/invocations/0000000000000000ffffffffffffffff");
    assert_eq!(status, 404);

    let list = |q: &str| -> Vec<Json> {
        let (status, v) = d.get(&format!("/api/v1/invocations?service=test&{q}"));
        assert_eq!(status, 200, "{q}: {v}");
        data(&v).clone()
    };
    let errors = list("function=mon&hasFunctionError=true");
    let mut kinds: Vec<&str> = errors
        .iter()
        .map(|r| r["errorType"].as_str().unwrap())
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["FunctionTimeoutError", "FunctionUnhandledError"]);
    assert_eq!(list("function=mon&isColdStart=true").len(), 1);
    assert_eq!(list("function=mon&statusCode=503").len(), 1);
    assert_eq!(list("function=mon&errorType=FunctionTimeoutError").len(), 1);
    let slow = list("function=mon&minDurationMs=900");
    assert_eq!(slow.len(), 1, "only the timeout took 900 ms or more");
    assert_eq!(slow[0]["errorType"], "FunctionTimeoutError");
    assert_eq!(list("function=mon&maxDurationMs=900").len(), 5);

    // grouped by function and status over the whole service: what the test did
    let (status, v) = d.get(
        "/api/v1/invocations/aggregate?service=test&groupBy=functionName,statusCode&field=durationMs&stats=count,max",
    );
    assert_eq!(status, 200, "{v}");
    let mut rows: Vec<(String, u64, f64)> = data(&v)
        .iter()
        .map(|r| {
            (
                r["group"]["functionName"].as_str().unwrap().to_owned(),
                r["group"]["statusCode"].as_u64().unwrap(),
                r["count"].as_f64().unwrap(),
            )
        })
        .collect();
    rows.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    let want: Vec<(String, u64, f64)> = [
        ("busy", 429, 1.0),
        ("busy", 504, 1.0),
        ("mon", 200, 3.0),
        ("mon", 500, 1.0),
        ("mon", 503, 1.0),
        ("mon", 504, 1.0),
    ]
    .into_iter()
    .map(|(f, s, n)| (f.to_owned(), s, n))
    .collect();
    assert_eq!(rows, want);
    // the timeout group's max is that call's duration
    let timeout = data(&v)
        .iter()
        .find(|r| r["group"]["functionName"] == "mon" && r["group"]["statusCode"] == 504)
        .unwrap();
    assert_eq!(timeout["max"], slow[0]["durationMs"]);
    // one function's durations: p99 of 6 records is the largest
    let (_, v) = d.get(
        "/api/v1/invocations/aggregate?service=test&function=mon&stats=count,p99,min,avg&period=3600",
    );
    let row = &data(&v)[0];
    assert_eq!(row["count"], 6.0);
    assert_eq!(row["p99"], slow[0]["durationMs"]);
    assert_eq!(row["timestamp"].as_u64().unwrap() % 3_600_000, 0);
    for bad in [
        "groupBy=nosuch",
        "stats=median",
        "groupBy=serviceName,functionName,qualifier,operation,statusCode,errorType,isColdStart,hostname,ipAddress",
        "minDurationMs=5&maxDurationMs=1",
        "hasFunctionError=maybe",
    ] {
        let (status, v) = d.get(&format!("/api/v1/invocations/aggregate?service=test&{bad}"));
        assert_eq!(status, 400, "{bad}: {v}");
    }
}

fn value_or_zero(d: &Daemon, name: &str, dims: &str) -> f64 {
    points(d, name, dims)
        .first()
        .and_then(|p| p["value"].as_f64())
        .unwrap_or(0.0)
}

#[test]
fn the_metric_api_lists_its_metrics_and_refuses_bad_questions() {
    let d = start_server();
    let (status, v) = d.get("/api/v1/metrics");
    assert_eq!(status, 200);
    let list = data(&v);
    let total = list
        .iter()
        .find(|m| m["name"] == "FunctionTotalInvocations")
        .expect("FunctionTotalInvocations listed");
    assert_eq!(total["unit"], "count");
    assert_eq!(
        total["dimensions"],
        serde_json::json!(["service", "function", "qualifier"])
    );
    for name in [
        "FunctionLatencyP99",
        "ServiceTotalInvocations",
        "RegionTotalInvocations",
        "RegionConcurrentCount",
        "FunctionCost",
        "FunctionOndemandActiveInstance",
    ] {
        assert!(list.iter().any(|m| m["name"] == name), "{name} listed");
    }

    let (status, v) = d.get("/api/v1/metrics/FunctionNoSuchThing?service=a&function=b");
    assert_eq!(status, 404, "{v}");
    for bad in [
        "/api/v1/metrics/FunctionTotalInvocations?service=a",
        "/api/v1/metrics/ServiceTotalInvocations",
        "/api/v1/metrics/RegionTotalInvocations?period=120",
        "/api/v1/metrics/RegionTotalInvocations?start=yesterday",
        "/api/v1/metrics/RegionTotalInvocations?start=2000&end=1000",
    ] {
        let (status, v) = d.get(bad);
        assert_eq!(status, 400, "{bad}: {v}");
        assert!(v["errors"][0]["msg"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    // a range as RFC 3339 with no calls in it: no datapoints
    let (status, v) = d.get(
        "/api/v1/metrics/RegionTotalInvocations?start=2026-01-01T00:00:00Z&end=2026-01-01T01:00:00Z",
    );
    assert_eq!(status, 200, "{v}");
    assert!(data(&v).is_empty());
}

/// The resident memory of a process in MB, from `/proc`.
fn rss_mb(pid: u64) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap();
    kb / 1024.0
}

#[test]
fn live_instances_are_sampled_with_what_proc_says() {
    let functions = format!(
        "[[functions]]\nservice = \"test\"\nname = \"inst\"\ncommand = [\"python3\", \"{ROOT}/tests/e2e/functions/behave.py\"]\n\
         memory_mb = 128\nidle_timeout = \"60s\"\n"
    );
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("functions.toml");
    std::fs::write(&path, functions).unwrap();
    let d = Daemon::start_in(
        &tmp.path().join("data"),
        &[
            "--functions",
            path.to_str().unwrap(),
            "--instance-metrics-interval",
            "200ms",
        ],
    );
    let resp = http()
        .post(format!(
            "{}/2016-08-15/services/test/functions/inst/invocations",
            d.gateway
        ))
        .body("ok")
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let answer = resp.text().unwrap();
    let pid = serde_json::from_str::<Json>(&answer).unwrap()["pid"]
        .as_u64()
        .unwrap();

    // the instance's samples: at least two ticks after the call
    let deadline = Instant::now() + Duration::from_secs(20);
    let (id, samples) = loop {
        let (_, v) = d.get("/api/v1/instances?service=test&function=inst");
        if let Some(live) = data(&v).first() {
            let id = live["instanceID"].as_str().unwrap().to_owned();
            let (_, s) = d.get(&format!("/api/v1/instances/{id}/metrics"));
            if data(&s).len() >= 2 {
                break (id, data(&s).clone());
            }
        }
        assert!(Instant::now() < deadline, "no samples of the live instance");
        std::thread::sleep(Duration::from_millis(100));
    };
    let last = samples.last().unwrap();
    assert_eq!(last["serviceName"], "test");
    assert_eq!(last["functionName"], "inst");
    assert_eq!(last["qualifier"], "LATEST");
    assert_eq!(last["ipAddress"], "127.0.0.1");
    assert_eq!(last["memoryLimitMB"], 128);
    assert_eq!(last["concurrentRequests"], 0);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(last["hostname"], host.trim());
    // memory: what /proc says of the function's process, within 10 %
    let mem = last["memoryUsageMB"].as_f64().unwrap();
    let proc_mem = rss_mb(pid);
    assert!(
        (mem - proc_mem).abs() <= proc_mem * 0.1,
        "sampled {mem} MB, /proc says {proc_mem} MB"
    );
    let pct = last["memoryUsagePercent"].as_f64().unwrap();
    assert!((pct - 100.0 * mem / 128.0).abs() < 1e-6, "{pct}");
    let cpu = last["cpuPercent"].as_f64().unwrap();
    assert!((0.0..=200.0).contains(&cpu), "cpu {cpu}");
    // traffic as the gateway saw it: the 2-byte event in, the answer out
    assert_eq!(last["rxTotalBytes"], 2);
    assert_eq!(last["txTotalBytes"], answer.len() as u64);
    let rx_in_periods: u64 = samples.iter().map(|s| s["rxBytes"].as_u64().unwrap()).sum();
    assert_eq!(rx_in_periods, 2, "the event counted in one period only");

    // the record of the call names the same instance
    let (_, v) = d.get("/api/v1/invocations?service=test&function=inst");
    assert_eq!(data(&v)[0]["instanceID"], id.as_str());
    // the function's view: one instance, so its values
    let (status, v) = d.get("/api/v1/instances/metrics?service=test&function=inst");
    assert_eq!(status, 200);
    let f = data(&v);
    assert!(!f.is_empty());
    assert_eq!(f[0]["memoryLimitMB"], 128);
    let (status, _) = d.get("/api/v1/instances/metrics?service=test");
    assert_eq!(status, 400);
}
