//! Tail sampling: hold each trace until it has been quiet for a decision window, then keep
//! or drop it whole, by intelligent sampling's rules (`intelligent`).
//!
//! A trace's URL is its root span's service and route (`http.route`, else the path of
//! `http.target` or `url.path`, else the operation name). Its outcome (any span failed;
//! the root's duration) feeds the URL's statistics, which class the URL for the next
//! period; its URL's class this period decides which quota it draws from. Held spans are
//! bounded: when full, the oldest traces are decided early. Spans of a trace that arrive
//! after its decision follow it.
//!
//! Pure decision logic plus the holding area; the pipeline feeds it and writes what it keeps.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

pub use super::intelligent::Class;
use super::intelligent::{Cpu, Intelligent, IntelligentSettings};
use crate::model::{Span, StatusCode, TraceId, Value};

/// `[sampling.tail]` in the config file (its quotas are `[sampling.intelligent]`'s).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TailConfig {
    pub enabled: bool,
    /// How long a trace must be quiet before it is decided.
    pub decision_wait: String,
    /// Spans held undecided at most; beyond, the oldest traces are decided early.
    pub max_held_spans: usize,
}

impl Default for TailConfig {
    fn default() -> Self {
        TailConfig {
            enabled: false,
            decision_wait: "10s".into(),
            max_held_spans: 200_000,
        }
    }
}

/// Checked tail-sampling settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TailSettings {
    pub decision_wait: Duration,
    pub max_held_spans: usize,
    pub intelligent: IntelligentSettings,
}

impl TailConfig {
    pub fn check(&self, intelligent: &IntelligentSettings) -> Result<Option<TailSettings>, String> {
        if !self.enabled {
            return Ok(None);
        }
        let decision_wait = crate::duration::parse(&self.decision_wait)
            .map_err(|e| format!("sampling.tail.decision_wait: {e}"))?;
        if self.max_held_spans == 0 {
            return Err("sampling.tail.max_held_spans: must be greater than 0".into());
        }
        Ok(Some(TailSettings {
            decision_wait,
            max_held_spans: self.max_held_spans,
            intelligent: intelligent.clone(),
        }))
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
}

pub struct TailSampler {
    settings: TailSettings,
    intelligent: Intelligent,
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

/// The URL a trace counts under: its root's service and route.
pub fn url_of(root: &Span) -> String {
    let route = ["http.route", "http.target", "url.path"]
        .iter()
        .find_map(|k| match root.tag(k) {
            Some(Value::Str(v)) if !v.is_empty() => Some(v.split('?').next().unwrap_or(v)),
            _ => None,
        })
        .unwrap_or(&root.operation_name);
    format!("{} {route}", root.process.service_name)
}

impl TailSampler {
    /// Quotas shrink with this process's CPU use.
    pub fn new(settings: TailSettings) -> Self {
        Self::with_cpu(settings, Cpu::process())
    }

    pub fn with_cpu(settings: TailSettings, cpu: Cpu) -> Self {
        TailSampler {
            intelligent: Intelligent::new(settings.intelligent.clone(), cpu),
            settings,
            state: Mutex::new(State {
                held: HashMap::new(),
                arrival: VecDeque::new(),
                held_spans: 0,
                decided: HashMap::new(),
                decided_order: VecDeque::new(),
            }),
        }
    }

    pub fn settings(&self) -> &TailSettings {
        &self.settings
    }

    pub fn held_spans(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .held_spans
    }

    /// Take spans in. Returns spans to write now (late spans of kept traces), and
    /// decisions forced early because the holding area was full.
    pub fn offer(&self, spans: Vec<Span>, now: Instant, now_us: u64) -> (Vec<Span>, Vec<Decision>) {
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
                early.push(self.decide(&mut st, t, h.spans, now_us));
            }
        }
        (write_now, early)
    }

    /// Decide every trace quiet for the decision window.
    pub fn due(&self, now: Instant, now_us: u64) -> Vec<Decision> {
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
                out.push(self.decide(&mut st, t, h.spans, now_us));
            }
        }
        if st.arrival.len() > 2 * st.held.len() + 1024 {
            let State { arrival, held, .. } = &mut *st;
            arrival.retain(|t| held.contains_key(t));
        }
        out
    }

    /// Everything held, decided now (shutdown).
    pub fn drain(&self, now_us: u64) -> Vec<Decision> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let all: Vec<TraceId> = st.held.keys().copied().collect();
        all.into_iter()
            .filter_map(|t| st.held.remove(&t).map(|h| (t, h)))
            .collect::<Vec<_>>()
            .into_iter()
            .map(|(t, h)| {
                st.held_spans -= h.spans.len();
                self.decide(&mut st, t, h.spans, now_us)
            })
            .collect()
    }

    fn decide(&self, st: &mut State, trace: TraceId, spans: Vec<Span>, now_us: u64) -> Decision {
        let failed = spans.iter().any(|s| s.status_code() == StatusCode::Error);
        let (class, keep) = match root(&spans) {
            Some(r) => {
                let url = url_of(r);
                self.intelligent.observe(&url, now_us, failed, r.duration);
                self.intelligent.decide(&url, now_us)
            }
            None => self.intelligent.decide("", now_us),
        };
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::{KeyValue, Process, SpanId};

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

    fn sampler(max_held: usize, cpu: f64) -> TailSampler {
        let cfg = TailConfig {
            enabled: true,
            decision_wait: "1s".into(),
            max_held_spans: max_held,
        };
        let settings = cfg.check(&IntelligentSettings::default()).unwrap().unwrap();
        TailSampler::with_cpu(settings, Cpu::fixed(cpu))
    }

    const MINUTE: u64 = 60_000_000;

    /// Offer 30 failing traces of `pay`, 30 of `report` lasting 900 ms and 30 quick ones
    /// of `list`, decide them in `minute`, and count the kept per operation and class.
    fn replay(t: &TailSampler, minute: u64, base: u128) -> ([usize; 3], [usize; 3]) {
        let now = Instant::now();
        let at = minute * MINUTE;
        let ops = [
            ("pay", 10, true),
            ("report", 900_000, false),
            ("list", 10, false),
        ];
        for i in 0..30u128 {
            for (j, (op, d, e)) in ops.iter().enumerate() {
                t.offer(trace(base + i * 3 + j as u128, op, *d, *e), now, at);
            }
        }
        let decided = t.due(now + Duration::from_secs(2), at);
        assert_eq!(decided.len(), 90);
        let mut per_op = [0; 3];
        let mut per_class = [0; 3];
        for d in decided.iter().filter(|d| d.keep) {
            let op = &d.spans[0].operation_name;
            per_op[ops.iter().position(|o| o.0 == op).unwrap()] += 1;
            per_class[d.class as usize] += 1;
        }
        (per_op, per_class)
    }

    #[test]
    fn urls_are_classed_from_the_previous_minute() {
        let t = sampler(1_000_000, 0.1);
        // the first minute: all normal, 20 kept (pay, report, list in turn: 7, 7, 6)
        assert_eq!(replay(&t, 0, 0), ([7, 7, 6], [0, 0, 20]));
        assert!(
            t.due(Instant::now(), 0).is_empty(),
            "nothing is due before the window"
        );
        // the next: pay's URL is an error URL, report's slow, list's normal
        assert_eq!(replay(&t, 1, 1000), ([30, 30, 20], [30, 30, 20]));
        assert_eq!(t.held_spans(), 0);
    }

    #[test]
    fn holding_area_is_bounded_and_late_spans_follow() {
        let t = sampler(10, 0.1);
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
        // from 60 % CPU: 10 error and slow traces a minute, 5 normal
        let t = sampler(1_000_000, 0.9);
        replay(&t, 0, 0);
        assert_eq!(replay(&t, 1, 1000).1, [10, 10, 5]);
    }

    #[test]
    fn the_url_is_the_service_and_route() {
        let mut s = trace(1, "GET", 1, false).remove(0);
        assert_eq!(url_of(&s), "svc GET");
        s.tags
            .push(KeyValue::new("http.target", Value::Str("/a/7?x=1".into())));
        assert_eq!(url_of(&s), "svc /a/7");
        s.tags
            .push(KeyValue::new("http.route", Value::Str("/a/{id}".into())));
        assert_eq!(url_of(&s), "svc /a/{id}");
    }
}
