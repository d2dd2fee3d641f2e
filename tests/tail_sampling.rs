//! Tail sampling through the real binary: traces are decided by intelligent sampling's
//! rules (their root's URL classed by the previous period: errors and slow URLs kept up
//! to their quotas, every URL its minimum), dropped traces are absent from the store,
//! and the holding area stays bounded under a flood. Periods are shortened to seconds
//! and the quotas set without CPU tiers, so counts do not depend on this machine's load.

mod common;

use std::time::{Duration, Instant};

use common::*;

const PERIOD_MS: u64 = 6000;

fn start_tail(extra: &str) -> Daemon {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("fctrace.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sampling.tail]\nenabled = true\n{extra}\n[sampling.intelligent]\nperiod = \"6s\"\n\
             slow_threshold = \"800ms\"\ncpu_tiers = []\nerror = [10]\nslow = [10]\nnormal = [5]\n"
        ),
    )
    .unwrap();
    Daemon::start_in(
        &tmp.path().join("data"),
        &["--config", cfg.to_str().unwrap()],
    )
    .owning(tmp)
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

fn total(d: &Daemon) -> u64 {
    ["error", "slow", "normal"]
        .iter()
        .map(|c| decided(d, c, "kept") + decided(d, c, "dropped"))
        .sum()
}

/// One period's load, posted as it begins: 15 rounds of a failing `pay`, a 900 ms
/// `report` and a quick `list`, then one trace each of `rare1..3`; waits until all are
/// decided, within the period.
fn load(d: &Daemon, base: u128) {
    let before = total(d);
    let mut traces: Vec<(u128, &'static str, u64, bool)> = Vec::new();
    for i in 0..15 {
        traces.push((base + 3 * i, "pay", 20, true));
        traces.push((base + 3 * i + 1, "report", 900, false));
        traces.push((base + 3 * i + 2, "list", 20, false));
    }
    for (i, op) in ["rare1", "rare2", "rare3"].into_iter().enumerate() {
        traces.push((base + 100 + i as u128, op, 20, false));
    }
    wait_for_period_start(PERIOD_MS);
    let started = Instant::now();
    let now = now_us();
    let spans: Vec<TSpan> = traces
        .iter()
        .flat_map(|(t, op, ms, e)| two_spans(*t, op, *ms, *e, now))
        .collect();
    assert_eq!(d.post_thrift(batch("shop", &[], &spans)).0, 202);
    while total(d) < before + traces.len() as u64 {
        assert!(
            started.elapsed() < Duration::from_millis(PERIOD_MS - 100),
            "only {} of {} decided within the period",
            total(d) - before,
            traces.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn tail_sampling_keeps_what_matters_within_quotas() {
    let d = start_tail("decision_wait = \"1s\"\n");
    // first period: every URL normal; the quota of 5 goes to the first five traces
    // (pay, report, list, pay, report), then list's URL has its minimum and each rare
    // URL gets its own: 8 kept, 40 dropped
    load(&d, 0x1000);
    assert_eq!(
        (
            decided(&d, "normal", "kept"),
            decided(&d, "normal", "dropped")
        ),
        (8, 40)
    );
    // next period: pay's URL is an error URL, report's slow (10 each of 15), list's
    // normal (5 of 15), each rare URL its minimum of 1
    load(&d, 0x2000);
    assert_eq!(
        (
            decided(&d, "error", "kept"),
            decided(&d, "error", "dropped")
        ),
        (10, 5)
    );
    assert_eq!(
        (decided(&d, "slow", "kept"), decided(&d, "slow", "dropped")),
        (10, 5)
    );
    assert_eq!(
        (
            decided(&d, "normal", "kept"),
            decided(&d, "normal", "dropped")
        ),
        (16, 50)
    );

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
    assert_eq!(
        ["pay", "report", "list", "rare1", "rare2", "rare3"].map(count),
        [12, 12, 6, 2, 2, 2]
    );
    let (_, v) = d.get("/api/traces?service=shop&operation=child&limit=1000");
    assert_eq!(data(&v).len(), 36);
    let missing = (0x1000..0x1000 + 45u128)
        .chain(0x2000..0x2000 + 45)
        .filter(|t| d.get(&format!("/api/traces/{t:x}")).0 == 404)
        .count();
    assert_eq!(missing, 90 - 30, "dropped traces leave nothing");
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
    // one URL: at least its period's quota of 5 kept
    assert!(decided(&d, "normal", "kept") >= 5);
}
