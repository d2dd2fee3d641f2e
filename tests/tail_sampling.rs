//! Tail sampling through the real binary: errors and slow traces kept within their quotas,
//! normal traces about their quota with the per-operation minimum, dropped traces absent
//! from the store, and the holding area bounded under a flood.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn start_tail(extra: &str) -> Daemon {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("fctrace.toml");
    std::fs::write(
        &cfg,
        format!("[sampling.tail]\nenabled = true\nslow_threshold = \"800ms\"\nshrink_on_cpu = false\n{extra}"),
    )
    .unwrap();
    let d = Daemon::start_in(
        &tmp.path().join("data"),
        &["--config", cfg.to_str().unwrap()],
    );
    std::mem::forget(tmp);
    d
}

fn metric(d: &Daemon, line_start: &str) -> u64 {
    let (_, m) = d.get("/metrics");
    m.as_str()
        .unwrap()
        .lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn decided(d: &Daemon, class: &str, decision: &str) -> u64 {
    metric(
        d,
        &format!("fctrace_tail_sampling_traces_total{{class=\"{class}\",decision=\"{decision}\"}}"),
    )
}

/// A two-span trace: root `op` lasting `ms`, a child, the root marked error when asked.
fn two_spans(trace: u128, op: &'static str, ms: u64, error: bool, start: u64) -> Vec<TSpan> {
    let tags = if error {
        vec![("error", V::B(true))]
    } else {
        vec![]
    };
    vec![
        TSpan {
            trace,
            id: 1,
            op,
            start,
            duration: ms * 1000,
            tags,
            ..Default::default()
        },
        TSpan {
            trace,
            id: 2,
            parent: 1,
            op: "child",
            start: start + 10,
            duration: 1000,
            ..Default::default()
        },
    ]
}

#[test]
fn tail_sampling_keeps_what_matters_within_quotas() {
    let d = start_tail("decision_wait = \"1s\"\n");
    let now = now_us();
    let mut traces: Vec<(u128, &'static str, u64, bool)> = Vec::new();
    for i in 0..30 {
        traces.push((0x1000 + i, "pay", 20, true));
    }
    for i in 0..30 {
        traces.push((0x2000 + i, "report", 900, false));
    }
    for i in 0..60 {
        traces.push((0x3000 + i, "list", 20, false));
    }
    for i in 0..3 {
        traces.push((0x4000 + i, "rare", 20, false));
    }
    for chunk in traces.chunks(20) {
        let spans: Vec<TSpan> = chunk
            .iter()
            .flat_map(|(t, op, ms, e)| two_spans(*t, op, *ms, *e, now))
            .collect();
        assert_eq!(d.post_thrift(batch("shop", &[], &spans)).0, 202);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let total = || {
        ["error", "slow", "normal"]
            .iter()
            .map(|c| decided(&d, c, "kept") + decided(&d, c, "dropped"))
            .sum::<u64>()
    };
    while total() < traces.len() as u64 {
        assert!(
            Instant::now() < deadline,
            "only {} of {} decided",
            total(),
            traces.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        (
            decided(&d, "error", "kept"),
            decided(&d, "error", "dropped")
        ),
        (30, 0)
    );
    assert_eq!(
        (decided(&d, "slow", "kept"), decided(&d, "slow", "dropped")),
        (30, 0)
    );
    let normal_kept = decided(&d, "normal", "kept");
    // the quota is 20 a minute, plus the rare operation's minimum; a minute boundary
    // during the run may give one more quota's worth
    assert!(
        (21..=42).contains(&normal_kept),
        "normal kept {normal_kept}"
    );
    assert_eq!(normal_kept + decided(&d, "normal", "dropped"), 63);

    // The store holds exactly the kept traces, whole, and nothing of the dropped ones.
    let count = |op: &str| {
        let (_, v) = d.get(&format!(
            "/api/traces?service=shop&operation={op}&limit=1000"
        ));
        for t in data(&v) {
            assert_eq!(t["spans"].as_array().unwrap().len(), 2);
        }
        data(&v).len() as u64
    };
    assert_eq!(count("pay"), 30);
    assert_eq!(count("report"), 30);
    assert!(
        count("rare") >= 1,
        "the per-operation minimum keeps a rare operation"
    );
    assert_eq!(count("list") + count("rare"), normal_kept);
    let (_, v) = d.get("/api/traces?service=shop&operation=child&limit=1000");
    let stored = data(&v).len() as u64;
    assert_eq!(stored, 60 + normal_kept);
    let missing = (0x3000..0x3000 + 60u128)
        .chain(0x4000..0x4000 + 3)
        .filter(|t| d.get(&format!("/api/traces/{t:x}")).0 == 404)
        .count() as u64;
    assert_eq!(
        missing,
        60 + 3 - normal_kept,
        "dropped traces leave nothing"
    );
}

#[test]
fn undecided_memory_stays_bounded_under_a_flood() {
    let d = start_tail("decision_wait = \"60s\"\nmax_held_spans = 500\n");
    let now = now_us();
    for b in 0..30u128 {
        let spans: Vec<TSpan> = (0..50u128)
            .flat_map(|i| two_spans(0x10000 + b * 100 + i, "op", 1, false, now))
            .collect();
        assert_eq!(d.post_thrift(batch("flood", &[], &spans)).0, 202);
        assert!(metric(&d, "fctrace_tail_sampling_held_spans ") <= 500);
    }
    let early = decided(&d, "normal", "kept") + decided(&d, "normal", "dropped");
    // 1500 traces of 2 spans; at most 250 traces fit
    assert!(early >= 1250, "decided early: {early}");
    assert!(decided(&d, "normal", "kept") >= 20);
}
