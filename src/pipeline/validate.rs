//! What a span must have to be stored: non-zero trace and span ids, a service name, and
//! a start time a query can show — inside the retention window and not further in the
//! future than the allowed clock skew. A span that would be invisible (or expire at
//! once) is refused visibly rather than acknowledged and lost. Everything else a client
//! sends is kept as it came.

use std::fmt;

use crate::model::Span;

/// Why one span of a batch was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Position of the span in the batch as received.
    pub index: usize,
    pub reason: &'static str,
    /// The `reason` label it is counted under in `fctrace_spans_refused_total`.
    pub label: &'static str,
}

/// Start times a span may have, µs since the epoch, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub oldest: u64,
    pub newest: u64,
}

impl Window {
    /// Any start time: for tools and tests that store spans of any age.
    pub const ANY: Window = Window {
        oldest: 0,
        newest: u64::MAX,
    };
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "span {} of the batch: {}", self.index, self.reason)
    }
}

fn check(span: &Span, window: Window) -> Result<(), (&'static str, &'static str)> {
    if span.trace_id.0 == 0 {
        return Err(("trace id is zero", "invalid"));
    }
    if span.span_id.0 == 0 {
        return Err(("span id is zero", "invalid"));
    }
    if span.process.service_name.is_empty() {
        return Err(("process has no service name", "invalid"));
    }
    if span.start_time < window.oldest {
        return Err((
            "start time is older than the retention window, so no query would show it",
            "too_old",
        ));
    }
    if span.start_time > window.newest {
        return Err((
            "start time is further in the future than the allowed clock skew (--max-future-skew)",
            "too_new",
        ));
    }
    Ok(())
}

/// Split a batch into the spans to store and the reasons the others were refused.
pub fn validate(spans: Vec<Span>, window: Window) -> (Vec<Span>, Vec<Invalid>) {
    if spans.iter().all(|s| check(s, window).is_ok()) {
        return (spans, Vec::new());
    }
    let mut ok = Vec::with_capacity(spans.len());
    let mut bad = Vec::new();
    for (index, span) in spans.into_iter().enumerate() {
        match check(&span, window) {
            Ok(()) => ok.push(span),
            Err((reason, label)) => bad.push(Invalid {
                index,
                reason,
                label,
            }),
        }
    }
    (ok, bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SpanId;

    fn span(trace: u128, id: u64, service: &str) -> Span {
        Span::for_test(trace, id, service)
    }

    #[test]
    fn refuses_spans_outside_the_window() {
        let window = Window {
            oldest: 100,
            newest: 200,
        };
        let mut spans = vec![span(1, 1, "a"), span(1, 2, "a"), span(1, 3, "a")];
        spans[0].start_time = 99;
        spans[1].start_time = 150;
        spans[2].start_time = 201;
        let (ok, bad) = validate(spans, window);
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].span_id, SpanId(2));
        let labels: Vec<_> = bad.iter().map(|b| (b.index, b.label)).collect();
        assert_eq!(labels, vec![(0, "too_old"), (2, "too_new")]);
        assert!(bad[0]
            .to_string()
            .contains("older than the retention window"));
    }

    #[test]
    fn refuses_zero_ids_and_missing_service() {
        let (ok, bad) = validate(
            vec![
                span(1, 1, "a"),
                span(0, 1, "a"),
                span(1, 0, "a"),
                span(1, 1, ""),
            ],
            Window::ANY,
        );
        assert_eq!(ok.len(), 1);
        let reasons: Vec<_> = bad.iter().map(|b| (b.index, b.reason)).collect();
        assert_eq!(
            reasons,
            vec![
                (1, "trace id is zero"),
                (2, "span id is zero"),
                (3, "process has no service name")
            ]
        );
    }
}
