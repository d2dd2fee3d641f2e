//! Intelligent sampling through the real binary (issue 19): the gateway's fresh traces
//! and tail sampling class URLs from the previous period and keep each class's quota
//! and each URL's minimum, counted per class. Periods are shortened to seconds and the
//! quotas set without CPU tiers, so the counts do not depend on this machine's load; the
//! documented tiers at three CPU levels are replayed in `sampling::intelligent`'s tests.

mod common;

use std::time::{Duration, Instant};

use common::gateway::{behave_fn, record};
use common::*;

pub const PERIOD_MS: u64 = 6000;

/// Quotas per period without tiers: error 3, slow 3, normal 2; minimums 2, 2, 1.
const INTELLIGENT: &str = r#"[sampling.intelligent]
gateway = true
period = "6s"
slow_threshold = "200ms"
cpu_tiers = []
error = [3]
slow = [3]
normal = [2]
min_per_url = [2, 2, 1]
"#;

fn daemon(config: &str, extra: &[&str]) -> Daemon {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("fctrace.toml");
    std::fs::write(&cfg, config).unwrap();
    let mut args = vec!["--config", cfg.to_str().unwrap()];
    args.extend_from_slice(extra);
    Daemon::start_in(&tmp.path().join("data"), &args).owning(tmp)
}

fn counted(d: &Daemon, family: &str, class: &str, decision: &str) -> f64 {
    d.metric(&format!(
        "fctrace_{family}_sampling_traces_total{{class=\"{class}\",decision=\"{decision}\"}}"
    ))
}

/// Call `path` of the function through the HTTP trigger; whether its record says sampled.
fn call(d: &Daemon, path: &str, event: &str) -> bool {
    let resp = http()
        .post(format!("{}/2016-08-15/proxy/test/fn/{path}", d.gateway))
        .body(event.to_owned())
        .send()
        .unwrap();
    let rid = resp
        .headers()
        .get("x-fc-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    record(d, "test", "fn", &rid)["isSampled"] == true
}

/// Five rounds of /pay (fails), /report (slow) and /list, then /rare once: how many of
/// each were sampled.
fn load(d: &Daemon) -> [u32; 4] {
    let mut kept = [0; 4];
    for _ in 0..5 {
        for (i, (path, event)) in [("pay", "crash"), ("report", "slow"), ("list", "ok")]
            .iter()
            .enumerate()
        {
            kept[i] += u32::from(call(d, path, event));
        }
    }
    kept[3] += u32::from(call(d, "rare", "ok"));
    kept
}

#[test]
fn the_gateway_classes_urls_by_the_previous_period() {
    let functions = tempfile::tempdir().unwrap();
    let path = functions.path().join("functions.toml");
    std::fs::write(&path, behave_fn("fn", "")).unwrap();
    let d = daemon(INTELLIGENT, &["--functions", path.to_str().unwrap()]);
    // the instance started before the measured periods
    call(&d, "warm", "ok");

    wait_for_period_start(PERIOD_MS);
    let started = Instant::now();
    // first period: every URL normal; the quota of 2 goes to /pay and /report, /list and
    // /rare get their minimum of 1
    assert_eq!(load(&d), [1, 1, 1, 1]);
    assert!(
        started.elapsed() < Duration::from_millis(PERIOD_MS),
        "the load outlasted its period"
    );

    wait_for_period_start(PERIOD_MS);
    let started = Instant::now();
    // next period: /pay is an error URL (3 kept), /report slow (3), /list normal (the
    // quota of 2), /rare normal with the quota gone (its minimum of 1)
    assert_eq!(load(&d), [3, 3, 2, 1]);
    assert!(
        started.elapsed() < Duration::from_millis(PERIOD_MS),
        "the load outlasted its period"
    );

    let by = |class, decision| counted(&d, "gateway", class, decision);
    assert_eq!((by("error", "kept"), by("error", "dropped")), (3.0, 2.0));
    assert_eq!((by("slow", "kept"), by("slow", "dropped")), (3.0, 2.0));
    // the warm-up call, then 4 of 16, then 3 of 6
    assert_eq!((by("normal", "kept"), by("normal", "dropped")), (8.0, 15.0));
}
