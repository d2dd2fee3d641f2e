//! `fctrace bench` against the real daemon: a short run of each protocol reports what it
//! measured, in JSON, and everything it counted as acknowledged is in the store.

mod common;

use std::process::Command;

use common::*;
use serde_json::Value as Json;

fn stored(d: &Daemon) -> u64 {
    let (_, m) = d.get("/metrics");
    m.as_str()
        .unwrap()
        .lines()
        .find(|l| l.starts_with("fctrace_spans_stored_total "))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap()
}

#[test]
fn bench_reports_and_loses_nothing() {
    let d = start_server();
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
            "ack_p50_ms",
            "ack_p99_ms",
            "cpu_seconds",
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
            assert!(q["trace_by_id_p50_ms"].as_f64().unwrap() > 0.0, "{q}");
            assert!(r["decode_ceiling_spans_per_second"].as_f64().unwrap() > 0.0);
            assert!(r["store_ceiling_spans_per_second"].as_f64().unwrap() > 0.0);
        }
        assert_eq!(
            stored(&d),
            expected,
            "{protocol}: every acknowledged span is stored"
        );
    }
}
