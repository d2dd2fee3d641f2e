//! What fctrace acknowledged survives: a clean restart, `kill -9`, and retention gives
//! disk space back.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn spans_for(trace: u128, n: u64, start: u64) -> Vec<TSpan> {
    (1..=n)
        .map(|i| TSpan {
            trace,
            id: i,
            parent: if i == 1 { 0 } else { 1 },
            op: "work",
            start: start + i,
            duration: 100,
            // the root is a call its service answered: counted in the RED metrics
            tags: vec![
                (
                    "span.kind",
                    V::S(if i == 1 { "server" } else { "internal" }),
                ),
                ("i", V::I(i as i64)),
                (
                    "payload",
                    V::S("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
                ),
            ],
            ..Default::default()
        })
        .collect()
}

fn span_count(d: &Daemon, trace: u128) -> usize {
    let (status, v) = d.get(&format!("/api/traces/{trace:x}"));
    if status == 404 {
        return 0;
    }
    assert_eq!(status, 200, "{v}");
    data(&v)[0]["spans"].as_array().unwrap().len()
}

#[test]
fn restart_keeps_everything_and_sigterm_drains() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = Daemon::start_in(tmp.path(), &[]);
    let start = now_us() - 1_000_000;
    for t in 1..=5u128 {
        let (status, _) = d.post_thrift(batch("restart-svc", &[], &spans_for(t, 20, start)));
        assert_eq!(status, 202);
    }
    let status = d.terminate();
    assert!(status.success(), "SIGTERM exit: {status}");

    let d = Daemon::start_in(tmp.path(), &[]);
    // the catalog is there straight away (it is loaded from its own column family)
    let (_, v) = d.get("/api/services");
    assert_eq!(v["data"], serde_json::json!(["restart-svc"]));
    let (_, v) = d.get("/api/services/restart-svc/operations");
    assert_eq!(v["data"], serde_json::json!(["work"]));
    for t in 1..=5u128 {
        assert_eq!(span_count(&d, t), 20);
    }
    let (_, v) = d.get("/api/traces?service=restart-svc");
    assert_eq!(data(&v).len(), 5);
}

#[test]
fn kill_9_loses_nothing_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = Daemon::start_in(tmp.path(), &[]);
    let start = now_us() - 1_000_000;
    // concurrent writers, so acknowledgements come from group commits
    let collector = d.collector.clone();
    let handles: Vec<_> = (0..4u128)
        .map(|w| {
            let collector = collector.clone();
            std::thread::spawn(move || {
                let client = http();
                let mut acked = Vec::new();
                for i in 0..25u128 {
                    let trace = 0x1000 + w * 100 + i;
                    let r = client
                        .post(format!("{collector}/api/traces"))
                        .header("Content-Type", "application/x-thrift")
                        .body(batch("crash-svc", &[], &spans_for(trace, 10, start)))
                        .send()
                        .unwrap();
                    if r.status() == 202 {
                        acked.push(trace);
                    }
                }
                acked
            })
        })
        .collect();
    let acked: Vec<u128> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(acked.len(), 100);
    d.kill9();

    let d = Daemon::start_in(tmp.path(), &[]);
    for t in &acked {
        assert_eq!(span_count(&d, *t), 10, "trace {t:x} after kill -9");
    }
    // and each root span counted once in the service's calls (the metric aggregates of
    // the last second are journaled, not yet folded, when the daemon dies)
    assert_eq!(
        calls_in_last_10_minutes(&d, "crash-svc"),
        acked.len() as f64
    );
}

/// Server calls of `service` in the last ten minutes, from Jaeger's Monitor API.
fn calls_in_last_10_minutes(d: &Daemon, service: &str) -> f64 {
    let end = now_us() / 1000 + 60_000;
    let (status, v) = d.get(&format!(
        "/api/metrics/calls?service={service}&endTs={end}&lookback=0&step=60000&ratePer=600000"
    ));
    assert_eq!(status, 200, "{v}");
    let points = v["metrics"][0]["metricPoints"]
        .as_array()
        .unwrap_or_else(|| panic!("no points in {v}"));
    assert_eq!(points.len(), 1, "{v}");
    (points[0]["gaugeValue"]["doubleValue"].as_f64().unwrap() * 600.0).round()
}

/// Bytes of the store's data: RocksDB's info logs (`LOG`, `LOG.old.*`, rolled at 1 MiB
/// and at most three kept) are not data, and a retention pass every second writes to them.
fn dir_size(p: &std::path::Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(p).unwrap().flatten() {
        if e.file_name().to_string_lossy().starts_with("LOG") {
            continue;
        }
        let m = e.metadata().unwrap();
        total += if m.is_dir() {
            dir_size(&e.path())
        } else {
            m.len()
        };
    }
    total
}

#[test]
fn retention_hides_expired_spans_and_gives_disk_space_back() {
    // Span files are kept for retention plus the future skew a span may have (so none
    // goes before reads stop showing it): a short skew lets the disk space come back soon.
    let d = start_server_with(&["--retention", "3s", "--max-future-skew", "1s"]);
    let start = now_us();
    for t in 1..=40u128 {
        let mut spans = spans_for(t, 250, start);
        // span values are compressed: give each span bytes that do not compress
        for s in &mut spans {
            let noise: String = (0..8)
                .map(|_| format!("{:016x}", fastrand::u64(..)))
                .collect();
            s.tags
                .push(("noise", V::S(Box::leak(noise.into_boxed_str()))));
        }
        let (status, _) = d.post_thrift(batch("ret-svc", &[], &spans));
        assert_eq!(status, 202);
    }
    assert_eq!(span_count(&d, 1), 250);
    let db = d.data_dir.join("db");
    let full = dir_size(&db);
    assert!(full > 1_000_000, "10,000 spans take {full} bytes");

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let gone = span_count(&d, 1) == 0;
        let size = dir_size(&db);
        if gone && size < full / 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after retention: trace gone {gone}, {size} of {full} bytes left: {:?}",
            std::fs::read_dir(&db)
                .unwrap()
                .flatten()
                .map(|e| (e.file_name(), e.metadata().unwrap().len()))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, v) = d.get("/api/traces?service=ret-svc");
    assert_eq!(data(&v).len(), 0);
}
