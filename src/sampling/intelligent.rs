//! Intelligent sampling, as Huawei's APM documents it: URLs are classed each period (a
//! minute by default) as `error`, `slow` or `normal` from the previous period's calls, and
//! each class keeps a quota of traces per period that shrinks as the daemon gets busy.
//!
//! - A URL is `error` when any of its calls in the previous period failed, else `slow`
//!   when their mean response time reached the slow threshold (800 ms), else `normal`.
//!   The first period, and a period after one without calls, treats every URL as normal.
//! - Per period, error and slow URLs keep 100 / 50 / 10 traces and normal ones 20 / 10 / 5
//!   while the daemon's CPU use is below 30 %, from 30 % and below 60 %, and from 60 %;
//!   each URL keeps at least 2 (error, slow) or 1 (normal) whatever its class's quota.
//!   Every number is configurable (`[sampling.intelligent]`).
//! - A trace kept counts towards its class's quota and its URL's minimum alike.
//!
//! This module owns the statistics, the classes and the counting. What a URL is belongs
//! to its callers: the gateway (the function and its HTTP path) and tail sampling (the
//! root span's service and route). At most [`MAX_URLS`] URLs are followed per period;
//! later ones are normal and get no minimum of their own, only their class's quota.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use serde::Deserialize;

/// URLs followed per period (statistics and minimums).
pub const MAX_URLS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Error,
    Slow,
    Normal,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Error => "error",
            Class::Slow => "slow",
            Class::Normal => "normal",
        }
    }

    fn index(self) -> usize {
        match self {
            Class::Error => 0,
            Class::Slow => 1,
            Class::Normal => 2,
        }
    }
}

/// `[sampling.intelligent]` in the config file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IntelligentConfig {
    /// The gateway decides fresh traces this way instead of by the strategies' rules.
    pub gateway: bool,
    /// How long a period of statistics and quotas lasts.
    pub period: String,
    /// A URL whose calls' mean response time reaches this is slow.
    pub slow_threshold: String,
    /// CPU use (percent of the machine) where each next tier starts.
    pub cpu_tiers: Vec<f64>,
    /// Traces kept per period and class, one number per CPU tier.
    pub error: Vec<u32>,
    pub slow: Vec<u32>,
    pub normal: Vec<u32>,
    /// Traces every URL keeps per period whatever the quota: error, slow, normal.
    pub min_per_url: [u32; 3],
}

impl Default for IntelligentConfig {
    fn default() -> Self {
        IntelligentConfig {
            gateway: false,
            period: "1m".into(),
            slow_threshold: "800ms".into(),
            cpu_tiers: vec![30.0, 60.0],
            error: vec![100, 50, 10],
            slow: vec![100, 50, 10],
            normal: vec![20, 10, 5],
            min_per_url: [2, 2, 1],
        }
    }
}

/// Checked settings.
#[derive(Debug, Clone, PartialEq)]
pub struct IntelligentSettings {
    pub period_us: u64,
    pub slow_threshold_us: u64,
    /// Fractions of the machine, ascending.
    pub cpu_tiers: Vec<f64>,
    /// Per class (error, slow, normal), one quota per tier.
    pub quotas: [Vec<u32>; 3],
    pub min_per_url: [u32; 3],
}

impl Default for IntelligentSettings {
    fn default() -> Self {
        // the defaults check
        IntelligentConfig::default()
            .check()
            .unwrap_or_else(|e| unreachable!("default intelligent sampling settings: {e}"))
    }
}

impl IntelligentConfig {
    pub fn check(&self) -> Result<IntelligentSettings, String> {
        let field = |name: &str, e: String| format!("sampling.intelligent.{name}: {e}");
        let period =
            crate::duration::parse(&self.period).map_err(|e| field("period", e.to_string()))?;
        if period.as_micros() < 1000 {
            return Err(field("period", "must be at least 1ms".into()));
        }
        let slow = crate::duration::parse(&self.slow_threshold)
            .map_err(|e| field("slow_threshold", e.to_string()))?;
        let tiers = &self.cpu_tiers;
        if tiers.iter().any(|t| !(0.0..=100.0).contains(t))
            || tiers.windows(2).any(|w| w[0] >= w[1])
        {
            return Err(field(
                "cpu_tiers",
                "percentages from 0 to 100, each larger than the one before".into(),
            ));
        }
        for (name, q) in [
            ("error", &self.error),
            ("slow", &self.slow),
            ("normal", &self.normal),
        ] {
            if q.len() != tiers.len() + 1 {
                return Err(field(
                    name,
                    format!(
                        "needs {} quotas (one more than cpu_tiers), got {}",
                        tiers.len() + 1,
                        q.len()
                    ),
                ));
            }
        }
        Ok(IntelligentSettings {
            period_us: period.as_micros() as u64,
            slow_threshold_us: slow.as_micros() as u64,
            cpu_tiers: tiers.iter().map(|t| t / 100.0).collect(),
            quotas: [self.error.clone(), self.slow.clone(), self.normal.clone()],
            min_per_url: self.min_per_url,
        })
    }
}

/// The daemon's CPU use, 0..1 of the machine: measured from `/proc` at most once a
/// second when asked, or fixed (tests replay loads at chosen levels).
pub enum Cpu {
    Process(Mutex<Measured>),
    Fixed(AtomicU64),
}

pub struct Measured {
    at: Instant,
    cpu_seconds: f64,
    last: f64,
}

impl Cpu {
    pub fn process() -> Cpu {
        Cpu::Process(Mutex::new(Measured {
            at: Instant::now(),
            cpu_seconds: process_cpu_seconds().unwrap_or(0.0),
            last: 0.0,
        }))
    }

    pub fn fixed(use_: f64) -> Cpu {
        Cpu::Fixed(AtomicU64::new(use_.to_bits()))
    }

    /// Set a fixed source's value (a measured one ignores it).
    pub fn set(&self, use_: f64) {
        if let Cpu::Fixed(v) = self {
            v.store(use_.to_bits(), Ordering::Relaxed);
        }
    }

    pub fn get(&self) -> f64 {
        match self {
            Cpu::Fixed(v) => f64::from_bits(v.load(Ordering::Relaxed)),
            Cpu::Process(m) => {
                let mut m = m.lock().unwrap_or_else(|e| e.into_inner());
                let wall = m.at.elapsed().as_secs_f64();
                if wall >= 1.0 {
                    if let Some(now) = process_cpu_seconds() {
                        let cores = std::thread::available_parallelism()
                            .map(|n| n.get())
                            .unwrap_or(1) as f64;
                        m.last = ((now - m.cpu_seconds) / wall / cores).max(0.0);
                        m.cpu_seconds = now;
                    }
                    m.at = Instant::now();
                }
                m.last
            }
        }
    }
}

/// CPU seconds this process has used, from /proc.
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may contain spaces) start past the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

#[derive(Default, Clone, Copy)]
struct Stats {
    calls: u64,
    errors: u64,
    latency_sum_us: u64,
}

struct State {
    period: u64,
    /// Error and slow URLs of this period (from the previous one's statistics).
    classes: HashMap<String, Class>,
    stats: HashMap<String, Stats>,
    kept: [u32; 3],
    kept_per_url: HashMap<String, u32>,
}

pub struct Intelligent {
    settings: IntelligentSettings,
    cpu: Cpu,
    state: Mutex<State>,
}

impl Intelligent {
    pub fn new(settings: IntelligentSettings, cpu: Cpu) -> Self {
        Intelligent {
            settings,
            cpu,
            state: Mutex::new(State {
                period: u64::MAX,
                classes: HashMap::new(),
                stats: HashMap::new(),
                kept: [0; 3],
                kept_per_url: HashMap::new(),
            }),
        }
    }

    pub fn settings(&self) -> &IntelligentSettings {
        &self.settings
    }

    pub fn cpu(&self) -> &Cpu {
        &self.cpu
    }

    /// Count a call of `url` that ended at `now_us`, for the next period's classes.
    pub fn observe(&self, url: &str, now_us: u64, failed: bool, latency_us: u64) {
        let mut st = self.lock(now_us);
        let add = |s: &mut Stats| {
            s.calls += 1;
            s.errors += u64::from(failed);
            s.latency_sum_us = s.latency_sum_us.saturating_add(latency_us);
        };
        if let Some(s) = st.stats.get_mut(url) {
            add(s);
        } else if st.stats.len() < MAX_URLS {
            add(st.stats.entry(url.to_owned()).or_default());
        }
    }

    /// Keep a trace of `url` at `now_us`? Returns the URL's class too.
    pub fn decide(&self, url: &str, now_us: u64) -> (Class, bool) {
        let cpu = self.cpu.get();
        let tier = self
            .settings
            .cpu_tiers
            .iter()
            .filter(|&&t| cpu >= t)
            .count();
        let mut st = self.lock(now_us);
        let class = st.classes.get(url).copied().unwrap_or(Class::Normal);
        let i = class.index();
        let quota = self.settings.quotas[i].get(tier).copied().unwrap_or(0);
        let kept_of_url = st.kept_per_url.get(url).copied();
        let room_for_url = kept_of_url.is_some() || st.kept_per_url.len() < MAX_URLS;
        let keep = (room_for_url && kept_of_url.unwrap_or(0) < self.settings.min_per_url[i])
            || st.kept[i] < quota;
        if keep {
            st.kept[i] += 1;
            if room_for_url {
                *st.kept_per_url.entry(url.to_owned()).or_default() += 1;
            }
        }
        (class, keep)
    }

    /// The state, rolled over to the period of `now_us` first.
    fn lock(&self, now_us: u64) -> std::sync::MutexGuard<'_, State> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let period = now_us / self.settings.period_us;
        if st.period != period {
            let previous = std::mem::take(&mut st.stats);
            st.classes = if st.period.checked_add(1) == Some(period) {
                self.classes_of(previous)
            } else {
                HashMap::new()
            };
            st.period = period;
            st.kept = [0; 3];
            st.kept_per_url.clear();
        }
        st
    }

    fn classes_of(&self, stats: HashMap<String, Stats>) -> HashMap<String, Class> {
        stats
            .into_iter()
            .filter_map(|(url, s)| {
                if s.errors > 0 {
                    Some((url, Class::Error))
                } else if s.calls > 0
                    && s.latency_sum_us / s.calls >= self.settings.slow_threshold_us
                {
                    Some((url, Class::Slow))
                } else {
                    None
                }
            })
            .collect()
    }
}

#[cfg(test)]
#[path = "intelligent_tests.rs"]
mod tests;
