//! A replayed minute-by-minute load against the documented tiers: every expected count
//! below is worked out by hand from Huawei APM's rules (see the module docs).

use super::*;

const MIN: u64 = 60_000_000;

fn sampler(cpu: f64) -> Intelligent {
    Intelligent::new(IntelligentSettings::default(), Cpu::fixed(cpu))
}

/// One minute: `calls` rounds of one call each to `/pay` (fails), `/report` (900 ms) and
/// `/list` (20 ms), then one call each to three rare URLs; observed and decided. Returns
/// the kept traces per URL, in the order above, and per class.
fn replay(s: &Intelligent, minute: u64, calls: usize) -> ([u32; 6], [u32; 3]) {
    let t = minute * MIN + 1_000;
    let mut per_url = [0; 6];
    let mut per_class = [0; 3];
    let mut call = |i: usize, url: &str, failed: bool, ms: u64| {
        s.observe(url, t, failed, ms * 1000);
        let (class, keep) = s.decide(url, t);
        if keep {
            per_url[i] += 1;
            per_class[class.index()] += 1;
        }
    };
    for _ in 0..calls {
        call(0, "/pay", true, 20);
        call(1, "/report", false, 900);
        call(2, "/list", false, 20);
    }
    for (i, url) in ["/rare1", "/rare2", "/rare3"].iter().enumerate() {
        call(3 + i, url, false, 20);
    }
    (per_url, per_class)
}

#[test]
fn first_minute_is_all_normal_then_urls_follow_their_class() {
    let s = sampler(0.10);
    // minute 0: no statistics yet, all normal: the first 20 calls fill the normal quota
    // (pay, report, list in turn: 7, 7, 6), then each rare URL gets its minimum of 1
    assert_eq!(replay(&s, 0, 150), ([7, 7, 6, 1, 1, 1], [0, 0, 23]));
    // minute 1: /pay had errors (error), /report a mean of 900 ms (slow), the rest normal
    assert_eq!(
        replay(&s, 1, 150),
        ([100, 100, 20, 1, 1, 1], [100, 100, 23])
    );
}

#[test]
fn quotas_follow_the_cpu_tiers() {
    // (CPU use, kept per URL in the second minute): 100/50/10 and 20/10/5, the
    // boundaries belonging to the tier they start
    for (cpu, expected) in [
        (0.10, [100, 100, 20, 1, 1, 1]),
        (0.2999, [100, 100, 20, 1, 1, 1]),
        (0.30, [50, 50, 10, 1, 1, 1]),
        (0.45, [50, 50, 10, 1, 1, 1]),
        (0.60, [10, 10, 5, 1, 1, 1]),
        (0.95, [10, 10, 5, 1, 1, 1]),
    ] {
        let s = sampler(cpu);
        replay(&s, 7, 150);
        assert_eq!(replay(&s, 8, 150).0, expected, "cpu {cpu}");
    }
}

#[test]
fn every_url_keeps_its_minimum_beyond_the_quota() {
    let s = sampler(0.9);
    let urls: Vec<String> = (0..8).map(|i| format!("/e{i}")).collect();
    let run = |minute: u64| {
        let t = minute * MIN;
        let mut kept = vec![0; urls.len()];
        for _ in 0..5 {
            for (i, u) in urls.iter().enumerate() {
                s.observe(u, t, true, 1000);
                kept[i] += u32::from(s.decide(u, t).1);
            }
        }
        kept
    };
    run(0);
    // error quota at 90 % CPU is 10: rounds one and two give 8 + 2, then the other six
    // URLs still get their second trace: 16 in all, 2 each
    assert_eq!(run(1), vec![2; 8]);
}

#[test]
fn slow_is_the_mean_reaching_the_threshold_and_a_gap_forgets() {
    let s = sampler(0.0);
    let at = |minute: u64| minute * MIN;
    // minute 0: /a averages exactly 800 ms (slow); /b 799 ms (normal)
    for ms in [700, 900] {
        s.observe("/a", at(0), false, ms * 1000);
    }
    s.observe("/b", at(0), false, 799_000);
    assert_eq!(s.decide("/a", at(1)).0, Class::Slow);
    assert_eq!(s.decide("/b", at(1)).0, Class::Normal);
    // minute 3 follows a minute without calls: everything is normal again
    s.observe("/a", at(1), true, 1);
    assert_eq!(s.decide("/a", at(3)).0, Class::Normal);
}

#[test]
fn config_checks_tiers_and_quotas() {
    let ok = IntelligentConfig::default().check().unwrap();
    assert_eq!(
        ok.quotas,
        [vec![100, 50, 10], vec![100, 50, 10], vec![20, 10, 5]]
    );
    assert_eq!(
        (ok.cpu_tiers.clone(), ok.min_per_url),
        (vec![0.3, 0.6], [2, 2, 1])
    );
    let bad = IntelligentConfig {
        normal: vec![20, 10],
        ..IntelligentConfig::default()
    };
    assert!(bad
        .check()
        .unwrap_err()
        .contains("sampling.intelligent.normal"));
    let bad = IntelligentConfig {
        cpu_tiers: vec![60.0, 30.0],
        ..IntelligentConfig::default()
    };
    assert!(bad.check().unwrap_err().contains("cpu_tiers"));
}
