//! What a span must have to be stored: non-zero trace and span ids and a service name.
//! Everything else a client sends is kept as it came.

use std::fmt;

use crate::model::Span;

/// Why one span of a batch was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Position of the span in the batch as received.
    pub index: usize,
    pub reason: &'static str,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "span {} of the batch: {}", self.index, self.reason)
    }
}

fn check(span: &Span) -> Result<(), &'static str> {
    if span.trace_id.0 == 0 {
        return Err("trace id is zero");
    }
    if span.span_id.0 == 0 {
        return Err("span id is zero");
    }
    if span.process.service_name.is_empty() {
        return Err("process has no service name");
    }
    Ok(())
}

/// Split a batch into the spans to store and the reasons the others were refused.
pub fn validate(spans: Vec<Span>) -> (Vec<Span>, Vec<Invalid>) {
    if spans.iter().all(|s| check(s).is_ok()) {
        return (spans, Vec::new());
    }
    let mut ok = Vec::with_capacity(spans.len());
    let mut bad = Vec::new();
    for (index, span) in spans.into_iter().enumerate() {
        match check(&span) {
            Ok(()) => ok.push(span),
            Err(reason) => bad.push(Invalid { index, reason }),
        }
    }
    (ok, bad)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::{Process, SpanId, TraceId};

    fn span(trace: u128, id: u64, service: &str) -> Span {
        Span {
            trace_id: TraceId(trace),
            span_id: SpanId(id),
            operation_name: "op".into(),
            references: vec![],
            flags: 1,
            start_time: 1,
            duration: 1,
            tags: vec![],
            logs: vec![],
            process: Arc::new(Process {
                service_name: service.into(),
                tags: vec![],
            }),
        }
    }

    #[test]
    fn refuses_zero_ids_and_missing_service() {
        let (ok, bad) = validate(vec![
            span(1, 1, "a"),
            span(0, 1, "a"),
            span(1, 0, "a"),
            span(1, 1, ""),
        ]);
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
