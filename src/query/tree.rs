//! Trace trees: a trace's spans nested under their parents, with what a person reading the
//! trace needs: depth, self time, a summary (start, duration, counts, critical path) and
//! warnings for what had to be repaired.
//!
//! Repairs, each reported: a span whose parent is not stored (an orphan) hangs under the
//! first root; a child that starts before its parent or ends after it and ran on another
//! host is shifted into the parent's window with its subtree (clock skew); spans sharing an
//! id are all kept; spans nested deeper than [`MAX_DEPTH`] are attached at that depth, so a
//! hostile trace cannot make the answer unbounded in depth.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;

use super::jaeger_json::{self, KeyValueView, LogView};
use crate::model::{Span, SpanId, StatusCode, Value};

pub const MAX_DEPTH: usize = 256;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tree {
    #[serde(rename = "traceID")]
    pub trace_id: String,
    pub summary: Summary,
    pub roots: Vec<Node>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub start_time: u64,
    pub duration: u64,
    pub span_count: usize,
    pub depth: usize,
    pub service_count: usize,
    pub services: Vec<String>,
    pub error_count: usize,
    /// Span ids from a root down the chain that decided when the trace ended.
    pub critical_path: Vec<String>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    pub span: NodeSpan,
    pub depth: usize,
    /// Time in this span not covered by any child, µs.
    pub self_time: u64,
    pub children: Vec<Node>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSpan {
    #[serde(rename = "spanID")]
    pub span_id: String,
    #[serde(rename = "parentSpanID")]
    pub parent_span_id: Option<String>,
    pub operation_name: String,
    pub service_name: String,
    pub host: Option<String>,
    /// Start after any skew adjustment, µs since the epoch.
    pub start_time: u64,
    pub duration: u64,
    pub kind: &'static str,
    pub error: bool,
    /// A span the function platform recorded (service `FC:…`).
    pub platform: bool,
    pub tags: Vec<KeyValueView>,
    pub logs: Vec<LogView>,
    pub process_tags: Vec<KeyValueView>,
    pub warnings: Vec<String>,
}

fn host_of(s: &Span) -> Option<String> {
    ["hostname", "host.name", "ip", "host.ip"]
        .iter()
        .find_map(|k| {
            s.process
                .tags
                .iter()
                .find(|kv| kv.key == *k)
                .map(|kv| match &kv.value {
                    Value::Str(v) => v.to_string(),
                    other => other.to_search_string(),
                })
        })
}

/// Whether two spans ran on different hosts: by host tags when both have them, else by
/// service (the platform and a function are different processes on different clocks).
fn other_host(a: &Span, b: &Span) -> bool {
    match (host_of(a), host_of(b)) {
        (Some(x), Some(y)) => x != y,
        _ => a.process.service_name != b.process.service_name,
    }
}

/// Build the tree of one trace's spans (any order).
pub fn build(spans: &[Span]) -> Tree {
    let n = spans.len();
    let mut warnings = Vec::new();
    let mut start: Vec<u64> = spans.iter().map(|s| s.start_time).collect();

    // The first span (by start) with an id is the one children attach to.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| (spans[i].start_time, i));
    let mut by_id: HashMap<SpanId, usize> = HashMap::with_capacity(n);
    let mut dup_counts: HashMap<SpanId, usize> = HashMap::new();
    for &i in &order {
        if by_id.insert(spans[i].span_id, i).is_some() {
            *dup_counts.entry(spans[i].span_id).or_insert(1) += 1;
        }
    }
    // by_id kept the last inserted; make it the first by start.
    for &i in order.iter().rev() {
        by_id.insert(spans[i].span_id, i);
    }
    for (id, count) in &dup_counts {
        warnings.push(format!("span id {id} appears {count} times; all are kept"));
    }

    let mut parent: Vec<Option<usize>> = vec![None; n];
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut roots: Vec<usize> = Vec::new();
    let mut orphans: Vec<usize> = Vec::new();
    let mut node_warnings: Vec<Vec<String>> = vec![Vec::new(); n];
    for &i in &order {
        match spans[i].parent_span_id() {
            None => roots.push(i),
            Some(p) => match by_id.get(&p) {
                Some(&pi) if pi != i => parent[i] = Some(pi),
                _ => orphans.push(i),
            },
        }
    }
    // Spans whose parent chain loops (a cycle) are orphans too. 0 unknown, 1 fine,
    // 2 in a loop, 3 on the path being walked.
    let mut state = vec![0u8; n];
    for &i in &order {
        let mut path = Vec::new();
        let mut cur = i;
        let result = loop {
            match state[cur] {
                1 | 2 => break state[cur],
                3 => break 2,
                _ => {}
            }
            state[cur] = 3;
            path.push(cur);
            match parent[cur] {
                Some(p) => cur = p,
                None => break 1,
            }
        };
        for x in path {
            state[x] = result;
        }
    }
    for &i in &order {
        if state[i] == 2 {
            parent[i] = None;
            orphans.push(i);
        }
    }
    if roots.is_empty() && !orphans.is_empty() {
        // No true root: the earliest orphan stands in for one, and says so (a trace
        // whose top span's parent was never stored is not whole).
        orphans.sort_by_key(|&i| (start[i], i));
        let o = orphans.remove(0);
        let missing = spans[o]
            .parent_span_id()
            .map(|p| p.to_string())
            .unwrap_or_default();
        let w = format!(
            "parent {missing} of span {} is not stored; shown as the root",
            spans[o].span_id
        );
        node_warnings[o].push(w.clone());
        warnings.push(w);
        roots.push(o);
    }
    for &o in &orphans {
        let missing = spans[o]
            .parent_span_id()
            .map(|p| p.to_string())
            .unwrap_or_default();
        let w = format!(
            "parent {missing} of span {} is not stored; shown under the root",
            spans[o].span_id
        );
        node_warnings[o].push(w.clone());
        warnings.push(w);
        parent[o] = roots.first().copied();
    }
    for &i in &order {
        if let Some(p) = parent[i] {
            children[p].push(i);
        }
    }

    // Depths and clock skew, top down from each root (iteratively: depth is unbounded).
    let mut depth = vec![0usize; n];
    let mut stack: Vec<usize> = roots.iter().rev().copied().collect();
    let mut visit = Vec::with_capacity(n);
    while let Some(i) = stack.pop() {
        visit.push(i);
        for &c in children[i].iter().rev() {
            depth[c] = depth[i] + 1;
            stack.push(c);
        }
    }
    for &i in &visit {
        let Some(p) = parent[i] else { continue };
        if !other_host(&spans[i], &spans[p]) {
            continue;
        }
        let (ps, pe) = (start[p], start[p] + spans[p].duration);
        let (cs, ce) = (start[i], start[i] + spans[i].duration);
        let shift: i64 = if spans[i].duration > spans[p].duration {
            (ps as i64).saturating_sub(cs as i64)
        } else if cs < ps {
            (ps - cs) as i64
        } else if ce > pe {
            -((ce - pe) as i64)
        } else {
            0
        };
        if shift != 0 {
            // Shift the whole subtree, which shares the child's clock.
            let mut sub = vec![i];
            while let Some(x) = sub.pop() {
                // Times come from clients: never overflow, never go below zero.
                start[x] = start[x].saturating_add_signed(shift);
                sub.extend(children[x].iter().copied());
            }
            let w = format!(
                "clock skew: span {} ({}) moved by {shift} µs into its parent's window",
                spans[i].span_id, spans[i].operation_name
            );
            node_warnings[i].push(w.clone());
            warnings.push(w);
        }
    }

    // Flatten nodes deeper than MAX_DEPTH onto their ancestor at that depth.
    let mut deep = 0;
    for &i in &visit {
        if depth[i] > MAX_DEPTH {
            deep += 1;
        }
    }
    if deep > 0 {
        warnings.push(format!(
            "{deep} spans nested deeper than {MAX_DEPTH} levels are shown at that depth"
        ));
        let mut anc_at_max = vec![usize::MAX; n];
        for &i in &visit {
            if depth[i] == MAX_DEPTH {
                anc_at_max[i] = i;
            } else if depth[i] > MAX_DEPTH {
                if let Some(p) = parent[i] {
                    anc_at_max[i] = anc_at_max[p];
                }
            }
        }
        for c in children.iter_mut() {
            c.retain(|&x| depth[x] <= MAX_DEPTH);
        }
        for &i in &visit {
            if depth[i] > MAX_DEPTH && anc_at_max[i] != usize::MAX {
                children[anc_at_max[i]].push(i);
            }
        }
        for d in depth.iter_mut() {
            *d = (*d).min(MAX_DEPTH + 1);
        }
    }

    let end = |i: usize| start[i] + spans[i].duration;
    let self_time = |i: usize| -> u64 {
        let (s, e) = (start[i], end(i));
        let mut iv: Vec<(u64, u64)> = children[i]
            .iter()
            .map(|&c| (start[c].clamp(s, e), end(c).clamp(s, e)))
            .filter(|(a, b)| b > a)
            .collect();
        iv.sort();
        let mut covered = 0;
        let mut cur: Option<(u64, u64)> = None;
        for (a, b) in iv {
            match cur {
                Some((cs, ce)) if a <= ce => cur = Some((cs, ce.max(b))),
                Some((cs, ce)) => {
                    covered += ce - cs;
                    cur = Some((a, b));
                }
                None => cur = Some((a, b)),
            }
        }
        if let Some((cs, ce)) = cur {
            covered += ce - cs;
        }
        spans[i].duration.saturating_sub(covered)
    };

    // Critical path: from the root that ends last, follow the child that ends last.
    let mut critical = Vec::new();
    if let Some(mut cur) = roots.iter().copied().max_by_key(|&r| end(r)) {
        loop {
            critical.push(spans[cur].span_id.to_string());
            match children[cur].iter().copied().max_by_key(|&c| end(c)) {
                Some(c) if critical.len() <= MAX_DEPTH + 1 => cur = c,
                _ => break,
            }
        }
    }

    // Nodes, built bottom-up so no recursion is needed.
    let mut built: Vec<Option<Node>> = (0..n).map(|_| None).collect();
    for &i in visit.iter().rev() {
        let kids: Vec<Node> = children[i]
            .iter()
            .filter_map(|&c| built[c].take())
            .collect();
        let s = &spans[i];
        let status = s.status();
        built[i] = Some(Node {
            span: NodeSpan {
                span_id: s.span_id.to_string(),
                parent_span_id: s.parent_span_id().map(|p| p.to_string()),
                operation_name: s.operation_name.clone(),
                service_name: s.process.service_name.clone(),
                host: host_of(s),
                start_time: start[i],
                duration: s.duration,
                kind: s.kind().as_str(),
                error: status.code == StatusCode::Error,
                platform: s.process.service_name.starts_with("FC:"),
                tags: s.tags.iter().map(jaeger_json::kv).collect(),
                logs: s
                    .logs
                    .iter()
                    .map(|l| LogView {
                        timestamp: l.timestamp,
                        fields: l.fields.iter().map(jaeger_json::kv).collect(),
                    })
                    .collect(),
                process_tags: s.process.tags.iter().map(jaeger_json::kv).collect(),
                warnings: std::mem::take(&mut node_warnings[i]),
            },
            depth: depth[i],
            self_time: self_time(i),
            children: kids,
        });
    }
    roots.sort_by_key(|&r| (start[r], r));
    let root_nodes: Vec<Node> = roots.iter().filter_map(|&r| built[r].take()).collect();

    let services: BTreeSet<&str> = spans
        .iter()
        .map(|s| s.process.service_name.as_str())
        .collect();
    let first = visit.iter().map(|&i| start[i]).min().unwrap_or(0);
    let last = visit.iter().map(|&i| end(i)).max().unwrap_or(0);
    Tree {
        trace_id: spans
            .first()
            .map(|s| s.trace_id.to_string())
            .unwrap_or_default(),
        summary: Summary {
            start_time: first,
            duration: last.saturating_sub(first),
            span_count: n,
            depth: visit.iter().map(|&i| depth[i] + 1).max().unwrap_or(0),
            service_count: services.len(),
            services: services.into_iter().map(str::to_owned).collect(),
            error_count: spans
                .iter()
                .filter(|s| s.status().code == StatusCode::Error)
                .count(),
            critical_path: critical,
            warnings,
        },
        roots: root_nodes,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::{KeyValue, Process, RefType, SpanRef, TraceId};

    fn span(id: u64, parent: Option<u64>, service: &str, start: u64, duration: u64) -> Span {
        Span {
            trace_id: TraceId(1),
            span_id: SpanId(id),
            operation_name: format!("op{id}"),
            references: parent
                .map(|p| {
                    vec![SpanRef {
                        ref_type: RefType::ChildOf,
                        trace_id: TraceId(1),
                        span_id: SpanId(p),
                    }]
                })
                .unwrap_or_default(),
            flags: 1,
            start_time: start,
            duration,
            tags: vec![],
            logs: vec![],
            process: Arc::new(Process {
                service_name: service.into(),
                tags: vec![],
            }),
        }
    }

    #[test]
    fn nesting_self_time_and_critical_path() {
        let spans = vec![
            span(3, Some(1), "fn", 150, 100),
            span(1, None, "FC:a/b", 100, 200),
            span(2, Some(1), "FC:a/b", 110, 30),
            span(4, Some(3), "fn", 160, 20),
        ];
        let t = build(&spans);
        assert_eq!(t.roots.len(), 1);
        let root = &t.roots[0];
        assert_eq!(root.span.span_id, "0000000000000001");
        assert!(root.span.platform);
        assert_eq!(root.children.len(), 2);
        assert_eq!(
            root.children[0].span.span_id, "0000000000000002",
            "children in start order"
        );
        assert_eq!(root.self_time, 200 - 30 - 100);
        assert_eq!(root.children[1].children[0].depth, 2);
        assert_eq!(t.summary.depth, 3);
        assert_eq!(t.summary.span_count, 4);
        assert_eq!(t.summary.service_count, 2);
        assert_eq!(
            t.summary.critical_path,
            vec!["0000000000000001", "0000000000000003", "0000000000000004"]
        );
        assert_eq!((t.summary.start_time, t.summary.duration), (100, 200));
        assert!(t.summary.warnings.is_empty());
    }

    #[test]
    fn a_root_whose_parent_is_not_stored_is_warned_about() {
        let spans = vec![
            span(7, Some(0x63), "fn", 100, 50),
            span(8, Some(7), "fn", 110, 10),
        ];
        let t = build(&spans);
        assert_eq!(t.roots.len(), 1);
        let w = "parent 0000000000000063 of span 0000000000000007 is not stored; shown as the root";
        assert_eq!(t.summary.warnings, vec![w.to_owned()]);
        assert_eq!(t.roots[0].span.warnings, vec![w.to_owned()]);
        assert!(t.roots[0].children[0].span.warnings.is_empty());
    }

    #[test]
    fn orphans_skew_duplicates_and_many_roots() {
        let spans = vec![
            span(1, None, "FC:a/b", 1000, 500),
            // another host, 300 µs early: shifted into the parent's window
            span(2, Some(1), "fn", 800, 100),
            span(5, Some(2), "fn", 810, 10),
            // parent not stored
            span(3, Some(99), "fn", 1200, 10),
            // the same id twice
            span(4, Some(1), "FC:a/b", 1100, 10),
            span(4, Some(1), "FC:a/b", 1300, 10),
            // a second root, later
            span(6, None, "other", 5000, 10),
        ];
        let t = build(&spans);
        assert_eq!(t.roots.len(), 2);
        assert_eq!(t.roots[1].span.span_id, "0000000000000006");
        let root = &t.roots[0];
        let ids: Vec<&str> = root
            .children
            .iter()
            .map(|c| c.span.span_id.as_str())
            .collect();
        assert_eq!(
            ids,
            vec![
                "0000000000000002",
                "0000000000000004",
                "0000000000000003",
                "0000000000000004"
            ]
        );
        let skewed = &root.children[0];
        assert_eq!(skewed.span.start_time, 1000);
        assert_eq!(
            skewed.children[0].span.start_time, 1010,
            "the subtree moves with it"
        );
        assert!(skewed.span.warnings[0].contains("clock skew"));
        let w = t.summary.warnings.join("\n");
        assert!(
            w.contains("parent 0000000000000063 of span 0000000000000003 is not stored"),
            "{w}"
        );
        assert!(
            w.contains("span id 0000000000000004 appears 2 times"),
            "{w}"
        );
        assert_eq!(t.summary.span_count, 7);
    }

    #[test]
    fn deep_and_cyclic_traces_stay_bounded() {
        let mut spans = vec![span(1, None, "s", 0, 10_000)];
        for i in 2..=2000u64 {
            spans.push(span(i, Some(i - 1), "s", i, 10));
        }
        // a cycle off to the side
        spans.push(span(5000, Some(5001), "s", 1, 1));
        spans.push(span(5001, Some(5000), "s", 1, 1));
        let t = build(&spans);
        assert_eq!(t.summary.span_count, 2002);
        assert!(t.summary.depth <= MAX_DEPTH + 2);
        assert!(t.summary.warnings.iter().any(|w| w.contains("deeper than")));
        let json = serde_json::to_string(&t).unwrap();
        assert!(
            json.contains("\"spanID\":\"0000000000001388\""),
            "cycle members are shown"
        );
        let _ = KeyValue::new("x", Value::Bool(true));
    }
}
