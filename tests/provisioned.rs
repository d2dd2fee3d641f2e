//! Provisioned instances through the real binary (issue 19): a function with
//! `provisioned_instances = 1` has its instance started before any call, so calls it can
//! take have no cold start and say `resourceMode: Provision` in their record and span; a
//! call that finds it busy spills over to an on-demand instance (a cold start); the
//! metrics API counts both under the platform's and Lambda's names.

mod common;

use std::path::Path;

use common::gateway::{
    behave_fn, eventually, invoke, one, record, spans, start_with_functions, tag_of, trace_with,
};
use common::*;
use serde_json::Value as Json;

/// The per-minute points of a metric for the function since the test began.
fn points(d: &Daemon, name: &str, since_ms: u64) -> Vec<f64> {
    let (status, v) = d.get(&format!(
        "/api/v1/metrics/{name}?service=test&function=fn&period=60&start={since_ms}&end={}",
        now_us() / 1000 + 120_000
    ));
    assert_eq!(status, 200, "{name}: {v}");
    data(&v)
        .iter()
        .map(|p| p["value"].as_f64().unwrap())
        .collect()
}

fn sum(d: &Daemon, name: &str, since_ms: u64) -> f64 {
    points(d, name, since_ms).iter().sum()
}

fn max(d: &Daemon, name: &str, since_ms: u64) -> f64 {
    points(d, name, since_ms).into_iter().fold(0.0, f64::max)
}

fn call(d: &Daemon, event: &str) -> Json {
    let a = invoke(d, "test", "fn", event, &[]);
    assert_eq!(a.status, 200, "{}", a.body);
    record(d, "test", "fn", a.header("x-fc-request-id"))
}

#[test]
fn provisioned_instances_serve_without_cold_starts_and_spill_over() {
    let since_ms = now_us() / 1000 - 60_000;
    let d = start_with_functions(
        &behave_fn("fn", "provisioned_instances = 1\nmax_instances = 3\n"),
        &[],
    );
    // started ahead of traffic, and counted
    eventually("the provisioned instance", || {
        (max(&d, "FunctionProvisionedCurrentInstance", since_ms) == 1.0).then_some(())
    });

    let first = call(&d, "ok");
    assert_eq!(
        (&first["isColdStart"], &first["resourceMode"]),
        (&Json::Bool(false), &Json::from("Provision"))
    );
    let t = trace_with(&d, &first, &["InvokeFunction", "Invocation"]);
    assert!(!spans(&t).contains_key("ColdStart"), "no cold start span");
    assert_eq!(
        tag_of(one(&t, "InvokeFunction"), "resourceMode"),
        "Provision"
    );

    // one call holds the provisioned instance; the next spills over to a cold one
    let dir = tempfile::tempdir().unwrap();
    let hold = dir.path().join("hold");
    let event = format!("hold:{}", hold.display());
    let d2 = &d;
    let held = std::thread::scope(|s| {
        let holder = s.spawn(|| call(d2, &event));
        let started = format!("{}.started", hold.display());
        eventually("the held call to start", || {
            Path::new(&started).exists().then_some(())
        });
        let spilled = call(d2, "ok");
        std::fs::write(format!("{}.release", hold.display()), "").unwrap();
        (holder.join().unwrap(), spilled)
    });
    let (holder, spilled) = held;
    assert_eq!(
        (&holder["isColdStart"], &holder["resourceMode"]),
        (&Json::Bool(false), &Json::from("Provision"))
    );
    assert_eq!(
        (&spilled["isColdStart"], &spilled["resourceMode"]),
        (&Json::Bool(true), &Json::from("OnDemand"))
    );

    // counted: 2 calls on the provisioned instance, 1 spilled over; while the held call
    // ran, its one provisioned slot was fully used
    eventually("the calls' metrics", || {
        (sum(&d, "FunctionTotalInvocations", since_ms) == 3.0).then_some(())
    });
    assert_eq!(sum(&d, "FunctionProvisionInvocations", since_ms), 2.0);
    assert_eq!(sum(&d, "ProvisionedConcurrencyInvocations", since_ms), 2.0);
    assert_eq!(
        sum(&d, "ProvisionedConcurrencySpilloverInvocations", since_ms),
        1.0
    );
    assert_eq!(sum(&d, "SpilloverInvocations", since_ms), 1.0);
    assert_eq!(max(&d, "ProvisionedConcurrentExecutions", since_ms), 1.0);
    assert_eq!(max(&d, "ProvisionedConcurrencyUtilization", since_ms), 1.0);
    assert_eq!(max(&d, "FunctionProvisionedCurrentInstance", since_ms), 1.0);
}
