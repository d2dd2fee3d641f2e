//! Stitching function spans into their invocation's trace.
//!
//! Spans that name the Invocation span as parent need nothing: they are in its trace. This
//! handles the others: an SDK that started a fresh trace but tags its spans with
//! `faas.invocation_id` (span or process tag), or spans posted to an invocation-scoped
//! endpoint. Their trace is rewritten to the invocation's, and the fresh trace's roots
//! become children of the Invocation span. The platform registers each sampled invocation
//! before it calls the function, so spans that arrive before the platform's own are
//! stitched too. Memory is bounded: the most recent invocations and remapped traces are
//! kept, oldest forgotten first. A fresh-trace span that arrived before any span of its
//! trace carried the invocation id is not moved afterwards.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use crate::model::{KeyValue, RefType, Span, SpanId, SpanRef, TraceId, Value};

pub const INVOCATION_ID_TAG: &str = "faas.invocation_id";
/// Invocations (and remapped traces) remembered at most.
const CAPACITY: usize = 100_000;

/// Where an invocation's function spans belong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub trace_id: TraceId,
    pub invocation_span: SpanId,
}

/// A map that forgets its oldest entries past a capacity.
struct Bounded<K, V> {
    map: HashMap<K, V>,
    order: VecDeque<K>,
}

impl<K: std::hash::Hash + Eq + Clone, V> Bounded<K, V> {
    fn new() -> Self {
        Bounded {
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }
    fn insert(&mut self, k: K, v: V) {
        if self.map.insert(k.clone(), v).is_none() {
            self.order.push_back(k);
            while self.order.len() > CAPACITY {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
        }
    }
    fn get<Q>(&self, k: &Q) -> Option<&V>
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        self.map.get(k)
    }
}

pub struct Stitcher {
    inner: Mutex<Inner>,
}

struct Inner {
    invocations: Bounded<String, Target>,
    /// Fresh traces already found to belong to an invocation.
    traces: Bounded<TraceId, Target>,
}

impl Default for Stitcher {
    fn default() -> Self {
        Stitcher {
            inner: Mutex::new(Inner {
                invocations: Bounded::new(),
                traces: Bounded::new(),
            }),
        }
    }
}

fn invocation_id(span: &Span) -> Option<&str> {
    tagged(&span.tags).or_else(|| tagged(&span.process.tags))
}

/// The invocation id among `tags`, if they hold one.
fn tagged(tags: &[KeyValue]) -> Option<&str> {
    // Every tag of every span is looked at: the length (held inline in the key) rules
    // nearly all out before any bytes are compared.
    tags.iter()
        .find(|kv| kv.key.len() == INVOCATION_ID_TAG.len() && kv.key == INVOCATION_ID_TAG)
        .and_then(|kv| match &kv.value {
            Value::Str(s) => Some(s.as_str()),
            _ => None,
        })
}

/// Whether any span of `spans` carries an invocation id; a process shared by
/// consecutive spans is looked at once.
fn any_tagged(spans: &[Span]) -> bool {
    let mut last: *const crate::model::Process = std::ptr::null();
    spans.iter().any(|s| {
        let process = std::sync::Arc::as_ptr(&s.process);
        let fresh = std::mem::replace(&mut last, process) != process;
        tagged(&s.tags).is_some() || (fresh && tagged(&s.process.tags).is_some())
    })
}

impl Stitcher {
    pub fn register(&self, invocation_id: &str, target: Target) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.invocations.insert(invocation_id.to_owned(), target);
    }
}

impl crate::pipeline::Stitch for Stitcher {
    /// Move spans of fresh traces into their invocation's trace. `scoped` names the
    /// invocation every span of the batch belongs to (invocation-scoped endpoint).
    fn apply(&self, spans: &mut [Span], scoped: Option<&str>) {
        let tagged = scoped.is_some() || any_tagged(spans);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if !tagged && inner.traces.map.is_empty() {
            return;
        }
        // First: which traces of this batch belong to which invocation.
        let mut batch: HashMap<TraceId, Target> = HashMap::new();
        for s in spans.iter() {
            let id = scoped.or_else(|| invocation_id(s));
            if let Some(target) = id.and_then(|id| inner.invocations.get(id).copied()) {
                if s.trace_id != target.trace_id {
                    batch.insert(s.trace_id, target);
                }
            }
        }
        for (t, target) in &batch {
            inner.traces.insert(*t, *target);
        }
        // Then: rewrite every span of those traces.
        for s in spans.iter_mut() {
            let Some(target) = batch
                .get(&s.trace_id)
                .or_else(|| inner.traces.get(&s.trace_id))
                .copied()
            else {
                continue;
            };
            let old = s.trace_id;
            s.trace_id = target.trace_id;
            for r in s.references.iter_mut() {
                if r.trace_id == old {
                    r.trace_id = target.trace_id;
                }
            }
            if s.parent_span_id().is_none() {
                s.references.insert(
                    0,
                    SpanRef {
                        ref_type: RefType::ChildOf,
                        trace_id: target.trace_id,
                        span_id: target.invocation_span,
                    },
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::{KeyValue, Process};
    use crate::pipeline::Stitch;

    fn span(trace: u128, id: u64, parent: Option<u64>, tags: Vec<KeyValue>) -> Span {
        Span {
            trace_id: TraceId(trace),
            span_id: SpanId(id),
            operation_name: "op".into(),
            references: parent
                .map(|p| {
                    vec![SpanRef {
                        ref_type: RefType::ChildOf,
                        trace_id: TraceId(trace),
                        span_id: SpanId(p),
                    }]
                })
                .unwrap_or_default(),
            flags: 1,
            start_time: 1,
            duration: 1,
            tags,
            logs: vec![],
            process: Arc::new(Process::default()),
        }
    }

    #[test]
    fn fresh_trace_with_invocation_id_moves_under_invocation() {
        let st = Stitcher::default();
        let target = Target {
            trace_id: TraceId(100),
            invocation_span: SpanId(7),
        };
        st.register("req-1", target);
        let tag = vec![KeyValue::new(INVOCATION_ID_TAG, Value::Str("req-1".into()))];
        let mut batch = vec![
            span(5, 1, None, tag),
            span(5, 2, Some(1), vec![]),
            span(6, 3, None, vec![]),
        ];
        st.apply(&mut batch, None);
        assert_eq!(batch[0].trace_id, TraceId(100));
        assert_eq!(batch[0].parent_span_id(), Some(SpanId(7)));
        assert_eq!(batch[1].trace_id, TraceId(100));
        assert_eq!(batch[1].parent_span_id(), Some(SpanId(1)));
        assert_eq!(batch[2].trace_id, TraceId(6), "unrelated trace untouched");
        // a later span of the same fresh trace follows
        let mut later = vec![span(5, 4, Some(2), vec![])];
        st.apply(&mut later, None);
        assert_eq!(later[0].trace_id, TraceId(100));
        // a scoped batch needs no tag
        st.register(
            "req-2",
            Target {
                trace_id: TraceId(200),
                invocation_span: SpanId(9),
            },
        );
        let mut scoped = vec![span(8, 1, None, vec![])];
        st.apply(&mut scoped, Some("req-2"));
        assert_eq!(
            (scoped[0].trace_id, scoped[0].parent_span_id()),
            (TraceId(200), Some(SpanId(9)))
        );
        // unknown invocation: nothing moves
        let mut unknown = vec![span(
            9,
            1,
            None,
            vec![KeyValue::new(INVOCATION_ID_TAG, Value::Str("nope".into()))],
        )];
        st.apply(&mut unknown, None);
        assert_eq!(unknown[0].trace_id, TraceId(9));
    }

    #[test]
    fn an_invocation_id_in_a_later_process_is_found() {
        let st = Stitcher::default();
        st.register(
            "req-3",
            Target {
                trace_id: TraceId(300),
                invocation_span: SpanId(3),
            },
        );
        // two spans of one untagged process, then one of a process tagged with the id
        let plain = Arc::new(Process::default());
        let tagged = Arc::new(Process {
            service_name: "fn".into(),
            tags: vec![
                KeyValue::new("faas.invocation_i", Value::Str("req-3".into())),
                KeyValue::new(INVOCATION_ID_TAG, Value::Str("req-3".into())),
            ],
        });
        let mut batch = vec![span(1, 1, None, vec![]), span(1, 2, Some(1), vec![])];
        batch.push(span(4, 5, None, vec![]));
        batch[0].process = plain.clone();
        batch[1].process = plain;
        batch[2].process = tagged;
        st.apply(&mut batch, None);
        assert_eq!(batch[0].trace_id, TraceId(1));
        assert_eq!(
            (batch[2].trace_id, batch[2].parent_span_id()),
            (TraceId(300), Some(SpanId(3)))
        );
    }
}
