//! Tail sampling: hold each trace until it has been quiet for a decision window, then keep
//! or drop it whole by what it turned out to be.
//!
//! A trace is `error` (a span with `error=true` or status ERROR), `slow` (its root lasted
//! longer than the threshold) or `normal`, per operation of its root span. Each minute up
//! to a quota per class is kept, and at least a minimum per operation and class, so a rare
//! operation is never starved by a busy one. Quotas shrink to a half and a tenth when the
//! daemon's CPU use passes 30 % and 60 %. Held spans are bounded: when full, the oldest
//! traces are decided early. Spans of a trace that arrive after its decision follow it.
//!
//! Pure decision logic plus the holding area; the pipeline feeds it and writes what it keeps.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::model::{Span, StatusCode, TraceId};

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

/// `[sampling.tail]` in the config file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TailConfig {
    pub enabled: bool,
    /// How long a trace must be quiet before it is decided.
    pub decision_wait: String,
    /// A root span longer than this makes the trace slow.
    pub slow_threshold: String,
    pub error_per_minute: u32,
    pub slow_per_minute: u32,
    pub normal_per_minute: u32,
    pub min_error_per_operation: u32,
    pub min_slow_per_operation: u32,
    pub min_normal_per_operation: u32,
    /// Spans held undecided at most; beyond, the oldest traces are decided early.
    pub max_held_spans: usize,
    /// Shrink quotas when the daemon's CPU use is high.
    pub shrink_on_cpu: bool,
}

impl Default for TailConfig {
    fn default() -> Self {
        TailConfig {
            enabled: false,
            decision_wait: "10s".into(),
            slow_threshold: "800ms".into(),
            error_per_minute: 100,
            slow_per_minute: 100,
            normal_per_minute: 20,
            min_error_per_operation: 2,
            min_slow_per_operation: 2,
            min_normal_per_operation: 1,
            max_held_spans: 200_000,
            shrink_on_cpu: true,
        }
    }
}

/// Checked tail-sampling settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TailSettings {
    pub decision_wait: Duration,
    pub slow_threshold_us: u64,
    pub quota: [u32; 3],
    pub min_per_operation: [u32; 3],
    pub max_held_spans: usize,
    pub shrink_on_cpu: bool,
}

impl TailConfig {
    pub fn check(&self) -> Result<Option<TailSettings>, String> {
        if !self.enabled {
            return Ok(None);
        }
        let decision_wait = crate::duration::parse(&self.decision_wait)
            .map_err(|e| format!("sampling.tail.decision_wait: {e}"))?;
        let slow = crate::duration::parse(&self.slow_threshold)
            .map_err(|e| format!("sampling.tail.slow_threshold: {e}"))?;
        if self.max_held_spans == 0 {
            return Err("sampling.tail.max_held_spans: must be greater than 0".into());
        }
        Ok(Some(TailSettings {
            decision_wait,
            slow_threshold_us: slow.as_micros() as u64,
            quota: [
                self.error_per_minute,
                self.slow_per_minute,
                self.normal_per_minute,
            ],
            min_per_operation: [
                self.min_error_per_operation,
                self.min_slow_per_operation,
                self.min_normal_per_operation,
            ],
            max_held_spans: self.max_held_spans,
            shrink_on_cpu: self.shrink_on_cpu,
        }))
    }
}

/// Quota factor for a CPU use (0..1 of the machine).
pub fn cpu_factor(cpu: f64) -> f64 {
    if cpu > 0.60 {
        0.1
    } else if cpu > 0.30 {
        0.5
    } else {
        1.0
    }
}

/// What became of one trace.
#[derive(Debug)]
pub struct Decision {
    pub class: Class,
    pub keep: bool,
    pub spans: Vec<Span>,
}

struct Held {
    spans: Vec<Span>,
    last: Instant,
}

struct State {
    held: HashMap<TraceId, Held>,
    /// Traces in arrival order (may name traces already decided).
    arrival: VecDeque<TraceId>,
    held_spans: usize,
    /// Recent decisions, so late spans follow their trace.
    decided: HashMap<TraceId, bool>,
    decided_order: VecDeque<TraceId>,
    minute: u64,
    kept: [u32; 3],
    kept_per_op: HashMap<(String, usize), u32>,
    cpu: f64,
}

pub struct TailSampler {
    settings: TailSettings,
    state: Mutex<State>,
}

const DECIDED_MEMORY: usize = 100_000;

/// The root of a trace: the earliest span without a parent in the trace.
fn root(spans: &[Span]) -> Option<&Span> {
    let ids: std::collections::HashSet<_> = spans.iter().map(|s| s.span_id).collect();
    spans
        .iter()
        .filter(|s| s.parent_span_id().is_none_or(|p| !ids.contains(&p)))
        .min_by_key(|s| s.start_time)
}

impl TailSampler {
    pub fn new(settings: TailSettings) -> Self {
        TailSampler {
            settings,
            state: Mutex::new(State {
                held: HashMap::new(),
                arrival: VecDeque::new(),
                held_spans: 0,
                decided: HashMap::new(),
                decided_order: VecDeque::new(),
                minute: 0,
                kept: [0; 3],
                kept_per_op: HashMap::new(),
                cpu: 0.0,
            }),
        }
    }

    pub fn settings(&self) -> &TailSettings {
        &self.settings
    }

    pub fn set_cpu(&self, cpu: f64) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).cpu = cpu;
    }

    pub fn held_spans(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .held_spans
    }

    pub fn classify(&self, spans: &[Span]) -> (Class, String) {
        let op = root(spans)
            .map(|r| format!("{}\u{1f}{}", r.process.service_name, r.operation_name))
            .unwrap_or_default();
        if spans
            .iter()
            .any(|s| s.is_error() || s.status().code == StatusCode::Error)
        {
            return (Class::Error, op);
        }
        let slow = root(spans).is_some_and(|r| r.duration > self.settings.slow_threshold_us);
        (if slow { Class::Slow } else { Class::Normal }, op)
    }

    /// Take spans in. Returns spans to write now (late spans of kept traces), and
    /// decisions forced early because the holding area was full.
    pub fn offer(&self, spans: Vec<Span>, now: Instant, minute: u64) -> (Vec<Span>, Vec<Decision>) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut write_now = Vec::new();
        for s in spans {
            match st.decided.get(&s.trace_id) {
                Some(true) => write_now.push(s),
                Some(false) => {}
                None => {
                    let t = s.trace_id;
                    st.held_spans += 1;
                    match st.held.get_mut(&t) {
                        Some(h) => {
                            h.spans.push(s);
                            h.last = now;
                        }
                        None => {
                            st.held.insert(
                                t,
                                Held {
                                    spans: vec![s],
                                    last: now,
                                },
                            );
                            st.arrival.push_back(t);
                        }
                    }
                }
            }
        }
        let mut early = Vec::new();
        while st.held_spans > self.settings.max_held_spans {
            let Some(t) = st.arrival.pop_front() else {
                break;
            };
            if let Some(h) = st.held.remove(&t) {
                st.held_spans -= h.spans.len();
                early.push(self.decide(&mut st, t, h.spans, minute));
            }
        }
        (write_now, early)
    }

    /// Decide every trace quiet for the decision window.
    pub fn due(&self, now: Instant, minute: u64) -> Vec<Decision> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let wait = self.settings.decision_wait;
        // Oldest first, so quotas go to traces in the order they came.
        let ready: Vec<TraceId> = st
            .arrival
            .iter()
            .filter(|t| {
                st.held
                    .get(t)
                    .is_some_and(|h| now.duration_since(h.last) >= wait)
            })
            .copied()
            .collect();
        let mut out = Vec::with_capacity(ready.len());
        for t in ready {
            if let Some(h) = st.held.remove(&t) {
                st.held_spans -= h.spans.len();
                out.push(self.decide(&mut st, t, h.spans, minute));
            }
        }
        if st.arrival.len() > 2 * st.held.len() + 1024 {
            let State { arrival, held, .. } = &mut *st;
            arrival.retain(|t| held.contains_key(t));
        }
        out
    }

    /// Everything held, decided now (shutdown).
    pub fn drain(&self, minute: u64) -> Vec<Decision> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let all: Vec<TraceId> = st.held.keys().copied().collect();
        all.into_iter()
            .filter_map(|t| st.held.remove(&t).map(|h| (t, h)))
            .collect::<Vec<_>>()
            .into_iter()
            .map(|(t, h)| {
                st.held_spans -= h.spans.len();
                self.decide(&mut st, t, h.spans, minute)
            })
            .collect()
    }

    fn decide(&self, st: &mut State, trace: TraceId, spans: Vec<Span>, minute: u64) -> Decision {
        if st.minute != minute {
            st.minute = minute;
            st.kept = [0; 3];
            st.kept_per_op.clear();
        }
        let (class, op) = self.classify(&spans);
        let i = class.index();
        let factor = if self.settings.shrink_on_cpu {
            cpu_factor(st.cpu)
        } else {
            1.0
        };
        let quota = (self.settings.quota[i] as f64 * factor).floor() as u32;
        let per_op = st.kept_per_op.get(&(op.clone(), i)).copied().unwrap_or(0);
        let keep = per_op < self.settings.min_per_operation[i] || st.kept[i] < quota;
        if keep {
            st.kept[i] += 1;
            *st.kept_per_op.entry((op, i)).or_default() += 1;
        }
        st.decided.insert(trace, keep);
        st.decided_order.push_back(trace);
        while st.decided_order.len() > DECIDED_MEMORY {
            if let Some(old) = st.decided_order.pop_front() {
                st.decided.remove(&old);
            }
        }
        Decision { class, keep, spans }
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::{KeyValue, Process, SpanId, Value};

    fn trace(id: u128, op: &str, duration: u64, error: bool) -> Vec<Span> {
        vec![Span {
            trace_id: TraceId(id),
            span_id: SpanId(1),
            operation_name: op.into(),
            references: vec![],
            flags: 1,
            start_time: 1,
            duration,
            tags: if error {
                vec![KeyValue::new("error", Value::Bool(true))]
            } else {
                vec![]
            },
            logs: vec![],
            process: Arc::new(Process {
                service_name: "svc".into(),
                tags: vec![],
            }),
        }]
    }

    fn sampler(max_held: usize) -> TailSampler {
        let cfg = TailConfig {
            enabled: true,
            decision_wait: "1s".into(),
            max_held_spans: max_held,
            shrink_on_cpu: false,
            ..TailConfig::default()
        };
        TailSampler::new(cfg.check().unwrap().unwrap())
    }

    #[test]
    fn quotas_and_per_operation_minimum() {
        let t = sampler(1_000_000);
        let now = Instant::now();
        let mut id = 0;
        let mut offer = |op: &str, d: u64, e: bool| {
            id += 1;
            t.offer(trace(id, op, d, e), now, 0);
        };
        for _ in 0..150 {
            offer("busy", 10, true);
        }
        for _ in 0..50 {
            offer("busy", 10, false);
        }
        for _ in 0..3 {
            offer("rare", 10, false);
        }
        offer("slowop", 900_000, false);
        assert!(t.due(now, 0).is_empty(), "nothing is due before the window");
        let decided = t.due(now + Duration::from_secs(2), 0);
        let kept = |c: Class| decided.iter().filter(|d| d.class == c && d.keep).count();
        assert_eq!(kept(Class::Error), 100);
        assert_eq!(kept(Class::Slow), 1);
        // 20 of the busy operation fill the quota; the rare one still gets its minimum of 1
        assert_eq!(kept(Class::Normal), 21);
        assert_eq!(t.held_spans(), 0);
        // a new minute resets the quotas
        t.offer(trace(9999, "busy", 10, false), now, 1);
        assert!(t.due(now + Duration::from_secs(2), 1)[0].keep);
    }

    #[test]
    fn holding_area_is_bounded_and_late_spans_follow() {
        let t = sampler(10);
        let now = Instant::now();
        let mut early = Vec::new();
        for id in 0..25 {
            early.extend(t.offer(trace(id, "op", 1, false), now, 0).1);
            assert!(t.held_spans() <= 10);
        }
        assert_eq!(early.len(), 15, "the oldest were decided early");
        let kept_trace = early.iter().find(|d| d.keep).unwrap().spans[0].trace_id;
        let (write_now, _) = t.offer(trace(kept_trace.0, "op", 1, false), now, 0);
        assert_eq!(
            write_now.len(),
            1,
            "a late span of a kept trace is written at once"
        );
    }

    #[test]
    fn a_busy_daemon_keeps_fewer_traces() {
        // quotas follow the CPU load the pipeline measures and reports with `set_cpu`
        let kept_at = |cpu: f64| {
            let cfg = TailConfig {
                enabled: true,
                decision_wait: "1s".into(),
                shrink_on_cpu: true,
                ..TailConfig::default()
            };
            let t = TailSampler::new(cfg.check().unwrap().unwrap());
            t.set_cpu(cpu);
            let now = Instant::now();
            for id in 1..=300 {
                t.offer(trace(id, "busy", 10, id % 2 == 0), now, 0);
            }
            let decided = t.due(now + Duration::from_secs(2), 0);
            let kept = |c: Class| decided.iter().filter(|d| d.class == c && d.keep).count();
            (kept(Class::Error), kept(Class::Normal))
        };
        // defaults: 100 errors and 20 normal a minute
        assert_eq!(kept_at(0.1), (100, 20));
        assert_eq!(kept_at(0.45), (50, 10));
        assert_eq!(kept_at(0.9), (10, 2));
    }

    #[test]
    fn cpu_shrinks_quotas() {
        assert_eq!(cpu_factor(0.1), 1.0);
        assert_eq!(cpu_factor(0.45), 0.5);
        assert_eq!(cpu_factor(0.9), 0.1);
    }
}
