//! Adaptive sampling against a synthetic load: two operations of one service start 500 and
//! 50 traces a second; a simulated client keeps each with the probability the sampling API
//! serves for its operation and sends the kept root spans. Within a few recalculations the
//! kept rate of each is near the target, and the probabilities survive a restart.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value as Json;

const TARGET: f64 = 5.0;
const INITIAL: f64 = 0.01;

fn served(d: &Daemon) -> HashMap<String, f64> {
    let url = format!("http://{}/sampling?service=sim", d.port("sampling"));
    let v: Json = http().get(url).send().unwrap().json().unwrap();
    let mut out = HashMap::new();
    if let Some(ops) = v["operationSampling"]["perOperationStrategies"].as_array() {
        for o in ops {
            out.insert(
                o["operation"].as_str().unwrap().to_owned(),
                o["probabilisticSampling"]["samplingRate"].as_f64().unwrap(),
            );
        }
    }
    out
}

#[test]
fn served_probabilities_bring_the_kept_rate_to_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--sampling-adaptive",
        "--sampling-target-tps",
        "5",
        "--sampling-initial-probability",
        "0.01",
        "--sampling-adaptive-interval",
        "2s",
    ];
    let mut d = Daemon::start_in(dir.path(), &args);
    let rates = [("fast", 500.0), ("slow", 50.0)];
    let mut rng = fastrand::Rng::with_seed(7);
    let mut kept: Vec<(Instant, &str)> = Vec::new();
    let started = Instant::now();
    let mut trace: u128 = 1;
    let tick = Duration::from_millis(100);
    while started.elapsed() < Duration::from_secs(16) {
        let t0 = Instant::now();
        let p = served(&d);
        let mut spans = Vec::new();
        for (op, rate) in rates {
            let prob = p.get(op).copied().unwrap_or(INITIAL);
            for _ in 0..(rate * tick.as_secs_f64()) as usize {
                trace += 1;
                if rng.f64() < prob {
                    kept.push((Instant::now(), op));
                    spans.push(TSpan {
                        trace,
                        id: 1,
                        op,
                        start: now_us(),
                        duration: 100,
                        ..Default::default()
                    });
                }
            }
        }
        if !spans.is_empty() {
            assert_eq!(d.post_thrift(batch("sim", &[], &spans)).0, 202);
        }
        std::thread::sleep(tick.saturating_sub(t0.elapsed()));
    }
    // the last 6 s, after five recalculations
    let since = Instant::now() - Duration::from_secs(6);
    for (op, rate) in rates {
        let n = kept.iter().filter(|(t, o)| *t >= since && *o == op).count() as f64;
        let tps = n / 6.0;
        let p = served(&d)[op];
        assert!(
            (TARGET * 0.5..=TARGET * 1.6).contains(&tps),
            "{op}: kept {tps:.2} traces/s at probability {p} (arrival {rate}/s)"
        );
    }
    let before = served(&d);
    assert!(
        before["fast"] < before["slow"],
        "the busier operation is sampled less: {before:?}"
    );

    // kept in RocksDB: a restart serves them again, not the initial probability
    d.terminate();
    let d = Daemon::start_in(dir.path(), &args);
    let after = served(&d);
    for op in ["fast", "slow"] {
        let (b, a) = (before[op], after[op]);
        // at most one recalculation may have come between the last read and the stop
        assert!(a >= b / 4.0 && a <= b * 4.0, "{op}: {b} before, {a} after");
    }
    assert!(after["slow"] > 2.0 * INITIAL, "{after:?}");
}
