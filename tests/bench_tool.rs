//! `fctrace bench` against the real daemon: a short run of each protocol reports what it
//! measured, in JSON, and everything it counted as acknowledged is in the store.

mod common;

use std::process::Command;

use common::*;
use serde_json::Value as Json;

const SERVICES: usize = 3;
const ADMIN_TOKEN: &str = "bench-tool-test-admin-token";

/// Spans read back from the store: every trace of every bench service, each distinct
/// (trace, span) once. Not the daemon's own counter: what a query shows. A search
/// answers at most 10,000 traces, so a window that hits that is searched in halves.
fn stored(d: &Daemon, since: u64) -> u64 {
    fn collect(
        d: &Daemon,
        service: &str,
        (start, end): (u64, u64),
        seen: &mut std::collections::HashSet<(String, String)>,
    ) {
        let (status, v) = d.get(&format!(
            "/api/traces?service={service}&start={start}&end={end}&limit=10000"
        ));
        assert_eq!(status, 200, "{v}");
        let traces = data(&v);
        if traces.len() >= 10_000 {
            assert!(end - start > 1, "10,000 traces in one microsecond");
            let mid = start + (end - start) / 2;
            collect(d, service, (start, mid), seen);
            collect(d, service, (mid + 1, end), seen);
            return;
        }
        for t in traces {
            for s in t["spans"].as_array().unwrap() {
                seen.insert((
                    s["traceID"].as_str().unwrap().to_owned(),
                    s["spanID"].as_str().unwrap().to_owned(),
                ));
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    let window = (since - 60_000_000, now_us() + 60_000_000);
    for i in 0..SERVICES {
        collect(d, &format!("bench-svc-{i}"), window, &mut seen);
    }
    seen.len() as u64
}

#[test]
fn bench_reports_and_loses_nothing() {
    let mut d = start_server_with(&["--admin-token", ADMIN_TOKEN]);
    let since = now_us();
    let mut expected = 0;
    for (protocol, endpoint, extra) in [
        (
            "otlp-http",
            &d.otlp_http,
            vec!["--query", "--query-requests", "5"],
        ),
        ("jaeger-thrift", &d.collector, vec!["--no-ceilings"]),
        ("otlp-grpc", &d.otlp_grpc, vec!["--no-ceilings"]),
    ] {
        let out = run(Command::new(env!("CARGO_BIN_EXE_fctrace"))
            .args(["bench", "--protocol", protocol, "--endpoint", endpoint])
            .arg("--data-dir")
            .arg(&d.data_dir)
            .args([
                "--duration",
                "2s",
                "--batch",
                "100",
                "--concurrency",
                "2",
                "--json",
                "--services",
                &SERVICES.to_string(),
                "--admin-token",
                ADMIN_TOKEN,
            ])
            .args(extra));
        let r: Json = serde_json::from_str(out.lines().last().unwrap()).unwrap();
        assert!(
            r["spans_per_second"].as_f64().unwrap() > 0.0,
            "{protocol}: {r}"
        );
        assert_eq!(
            (r["refused"].as_u64(), r["failed"].as_u64()),
            (Some(0), Some(0)),
            "{protocol}"
        );
        for key in [
            "window_seconds",
            "first_window_spans_per_second",
            "last_window_spans_per_second",
            "first_window_ack_p99_ms",
            "last_window_ack_p99_ms",
            "ack_p50_ms",
            "ack_p99_ms",
            "cpu_seconds",
            "cpu_seconds_per_million_spans",
            "rss_peak_bytes",
            "disk_bytes_per_span",
        ] {
            assert!(
                r[key].as_f64().is_some_and(|v| v > 0.0),
                "{protocol}: {key} in {r}"
            );
        }
        expected += r["spans_sent"].as_u64().unwrap();
        if protocol == "otlp-http" {
            expected += 200; // the query benchmark's trace
            let q = &r["query"];
            for key in [
                "trace_by_id_p50_ms",
                "search_p99_ms",
                "miss_p99_ms",
                "tree_p99_ms",
            ] {
                assert!(q[key].as_f64().is_some_and(|v| v > 0.0), "{key} in {q}");
            }
            assert!(r["decode_ceiling_spans_per_second"].as_f64().unwrap() > 0.0);
            assert!(r["store_ceiling_spans_per_second"].as_f64().unwrap() > 0.0);
        }
        assert_eq!(
            stored(&d, since),
            expected,
            "{protocol}: every acknowledged span is stored"
        );
    }

    // `fctrace check` reads the same count from the store itself, once the daemon is
    // stopped; while it runs, the store is locked and check says so.
    let data_dir = d.data_dir.clone();
    let check = || {
        Command::new(env!("CARGO_BIN_EXE_fctrace"))
            .arg("check")
            .arg("--data-dir")
            .arg(&data_dir)
            .output()
            .unwrap()
    };
    let busy = check();
    assert!(!busy.status.success());
    assert!(
        String::from_utf8_lossy(&busy.stderr).contains("is the daemon stopped?"),
        "{}",
        String::from_utf8_lossy(&busy.stderr)
    );
    assert!(d.terminate().success());
    let done = check();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let census: Json = serde_json::from_slice(&done.stdout).unwrap();
    assert_eq!(census["spans"].as_u64(), Some(expected), "{census}");
}

/// `make bench`'s script, with short runs: it starts its own daemons, runs every
/// protocol, measures queries and a restart, and writes the table.
#[test]
fn bench_suite_script_writes_the_table() {
    let scratch = tempfile::tempdir().unwrap();
    let table = scratch.path().join("table.md");
    run(
        Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/bench.sh"))
            .env("BIN", env!("CARGO_BIN_EXE_fctrace"))
            .env("BENCH_OUT", &table)
            .env("BENCH_DIR", scratch.path().join("runs"))
            .env("BENCH_SECONDS", "2")
            .env("BENCH_QUERY_SECONDS", "2")
            .env("BENCH_DECAY_SECONDS", "3")
            .env("BENCH_BULK_SPANS", "20000")
            .env("BENCH_QUERY_REQUESTS", "5"),
    );
    let text = std::fs::read_to_string(&table).unwrap();
    for row in [
        "| JaegerThrift |",
        "| OtlpGrpc |",
        "| OtlpHttp |",
        "| service + tag (limit 20) |",
        "Restart on that store to ready:",
        "Decay, OTLP/HTTP flat out for",
        "A store of 20,000 spans written by `fctrace load`",
    ] {
        assert!(text.contains(row), "{row} missing from:\n{text}");
    }
}

/// `fctrace load` writes exactly the spans asked for into a store, which the daemon then
/// serves: `fctrace check` counts them, and a search finds the bench services.
#[test]
fn load_writes_a_store_the_daemon_serves() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(Command::new(env!("CARGO_BIN_EXE_fctrace"))
        .args(["load", "--spans", "12345", "--services", "3", "--json"])
        .arg("--data-dir")
        .arg(tmp.path()));
    let r: Json = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(r["spans"].as_u64(), Some(12345), "{r}");
    let check = run(Command::new(env!("CARGO_BIN_EXE_fctrace"))
        .arg("check")
        .arg("--data-dir")
        .arg(tmp.path()));
    let census: Json = serde_json::from_str(check.trim()).unwrap();
    assert_eq!(census["spans"].as_u64(), Some(12345), "{census}");
    for family in ["chunks", "postings", "terms"] {
        assert!(
            census["family_bytes"][family].as_u64() > Some(0),
            "{census}"
        );
        assert!(
            r["family_bytes_per_span"][family].as_f64() > Some(0.0),
            "{r}"
        );
    }
    let d = Daemon::start_in(tmp.path(), &[]);
    let (status, v) = d.get("/api/traces?service=bench-svc-1&limit=5&lookback=1h");
    assert_eq!(status, 200, "{v}");
    assert_eq!(data(&v).len(), 5, "{v}");
    // that search read blocks through the cache, and the daemon says so
    assert!(d.metric("fctrace_store_memory_bytes{kind=\"block_cache\"}") > 0.0);
    assert!(d.metric("fctrace_store_memory_bytes{kind=\"table_readers\"}") > 0.0);
}
