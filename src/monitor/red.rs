//! RED metrics of spans (requests, errors, durations), what Jaeger UI's Monitor tab shows,
//! kept at ingest in the same metrics store as the function metrics.
//!
//! Every server and consumer span counts as one call of its service and operation in the
//! minute it started: [`add_spans`] folds a batch's spans into one [`Minute`] per
//! (service, kind, operation, minute) and one per (service, kind, minute), merged in the
//! same write as the spans, so what a query reads includes every span acknowledged.
//! [`series`] reads them back for a window; the HTTP shapes are `query::red`'s.
//! [`add_edges`] writes the service-to-service calls `pipeline::edges` finds, for
//! `/api/dependencies`, the same way.
//! Operations are the clients' names, as many as the catalog holds.

use std::collections::HashMap;

use super::minute::{bucket_of, Calls, Minute};
use super::MINUTE_US;
use crate::model::{Span, SpanKind};
use crate::store::{keys, EncodedBatch, StoreError};
use keys::Tenant;

/// Series tags in the `metrics` family: per operation, and per service.
const OPERATION_SERIES: u8 = b'P';
const SERVICE_SERIES: u8 = b'Q';

/// The kinds whose spans are calls a service answered.
pub fn counted(kind: SpanKind) -> bool {
    matches!(kind, SpanKind::Server | SpanKind::Consumer)
}

fn op_series(tenant: Tenant, service: &str, kind: SpanKind, op: &str) -> Vec<u8> {
    keys::metric_series(tenant, OPERATION_SERIES, &[service, kind.as_str(), op])
}

fn service_series(tenant: Tenant, service: &str, kind: SpanKind) -> Vec<u8> {
    keys::metric_series(tenant, SERVICE_SERIES, &[service, kind.as_str()])
}

/// Fold the server and consumer spans of `spans` into `batch`'s write.
pub fn add_spans(batch: &mut EncodedBatch, tenant: Tenant, spans: &[Span]) {
    // Each span is counted straight into its operation's aggregate and its service's,
    // grouped with foldhash, in one pass over its tags: this runs for every span. The
    // aggregates are `Calls`, the few fields RED fills, not whole `Minute`s: the groups
    // stay in cache.
    // (Summing the operations' aggregates into the service's instead cost a histogram
    // merge per operation, and a batch may touch as many operations as it has spans.)
    type Groups<K> = HashMap<K, Calls, foldhash::fast::RandomState>;
    let room = spans.len().min(1024);
    let mut ops: Groups<(&str, SpanKind, &str, u64)> =
        Groups::with_capacity_and_hasher(room, Default::default());
    let mut services: Groups<(&str, SpanKind, u64)> = Groups::default();
    for s in spans {
        let (kind, failed) = s.kind_and_failed();
        if !counted(kind) {
            continue;
        }
        let minute = s.start_time / MINUTE_US;
        let bucket = bucket_of(s.duration);
        let service = s.process.service_name.as_str();
        ops.entry((service, kind, s.operation_name.as_str(), minute))
            .or_default()
            .count_in_bucket(s.duration, bucket, failed);
        services
            .entry((service, kind, minute))
            .or_default()
            .count_in_bucket(s.duration, bucket, failed);
    }
    // keys and values built in two buffers used again: a batch may have an operation a span
    let (mut key, mut bytes) = (Vec::new(), Vec::new());
    let mut add = |dims: &[&str], level: u8, minute: u64, m: &Calls| {
        key.clear();
        keys::put_metric_series(&mut key, tenant, level, dims);
        key.extend_from_slice(&minute.to_be_bytes());
        bytes.clear();
        m.encode(&mut bytes);
        batch.add_metric(&key, &bytes);
    };
    for ((service, kind, op, minute), m) in &ops {
        add(&[service, kind.as_str(), op], OPERATION_SERIES, *minute, m);
    }
    for ((service, kind, minute), m) in &services {
        add(&[service, kind.as_str()], SERVICE_SERIES, *minute, m);
    }
}

/// Count calls between services (found by `pipeline::edges`) in `batch`'s write: each
/// an aggregate whose invocations are the calls, merged like every metric.
pub fn add_edges<'a>(
    batch: &mut EncodedBatch,
    tenant: Tenant,
    edges: impl IntoIterator<Item = (&'a crate::pipeline::edges::Edge, &'a u64)>,
) {
    let mut bytes = Vec::new();
    for (e, &calls) in edges {
        let m = Minute {
            invocations: calls,
            ..Minute::default()
        };
        bytes.clear();
        m.encode(&mut bytes);
        batch.add_metric(
            &keys::edge_key(tenant, &e.parent, &e.child, e.minute),
            &bytes,
        );
    }
}

/// The per-minute aggregates of one service (all its operations when `operation` is
/// `None`) and kind, minutes `first..=last`, oldest first; minutes without calls absent.
pub fn series(
    store: &dyn crate::store::MetricSource,
    tenant: Tenant,
    service: &str,
    kind: SpanKind,
    operation: Option<&str>,
    first: u64,
    last: u64,
) -> Result<Vec<(u64, Minute)>, StoreError> {
    let key = match operation {
        Some(op) => op_series(tenant, service, kind, op),
        None => service_series(tenant, service, kind),
    };
    Ok(store
        .metric_values(&key, first, last)?
        .into_iter()
        .filter_map(|(minute, v)| Minute::decode(&v).map(|m| (minute, m)))
        .collect())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::{KeyValue, Process, SpanId, TraceId, Value};

    fn span(service: &str, op: &str, kind: &str, start: u64, dur: u64, error: bool) -> Span {
        let mut tags = vec![KeyValue::new("span.kind", Value::Str(kind.into()))];
        if error {
            tags.push(KeyValue::new("error", Value::Bool(true)));
        }
        Span {
            trace_id: TraceId(1),
            span_id: SpanId(start),
            operation_name: op.into(),
            references: vec![],
            flags: 1,
            start_time: start,
            duration: dur,
            tags,
            logs: vec![],
            process: Arc::new(Process {
                service_name: service.into(),
                tags: vec![],
            }),
        }
    }

    #[test]
    fn server_and_consumer_spans_count_per_operation_and_service() {
        let t0 = 100 * MINUTE_US;
        let spans = vec![
            span("a", "GET", "server", t0, 10, false),
            span("a", "GET", "server", t0 + 1, 30, true),
            span("a", "PUT", "server", t0 + 2, 20, false),
            span("a", "poll", "consumer", t0 + 3, 5, false),
            span("a", "call", "client", t0 + 4, 99, false),
            span("a", "GET", "server", t0 + MINUTE_US, 7, false),
        ];
        let dir = tempfile::tempdir().unwrap();
        let store =
            crate::store::Store::open(dir.path(), &crate::store::StoreOptions::default()).unwrap();
        let mut batch = EncodedBatch::empty(0);
        add_spans(&mut batch, 0, &spans);
        store.commit(&[&batch]).unwrap();
        let read = |kind, op| {
            series(&store, 0, "a", kind, op, 0, u64::MAX)
                .unwrap()
                .into_iter()
                .map(|(minute, m)| (minute, m.invocations, m.function_errors, m.latency_max_us))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            read(SpanKind::Server, Some("GET")),
            [(100, 2, 1, 30), (101, 1, 0, 7)]
        );
        assert_eq!(read(SpanKind::Server, Some("PUT")), [(100, 1, 0, 20)]);
        assert_eq!(
            read(SpanKind::Server, None),
            [(100, 3, 1, 30), (101, 1, 0, 7)]
        );
        assert_eq!(read(SpanKind::Consumer, None), [(100, 1, 0, 5)]);
        // client spans are not calls of their service
        assert_eq!(read(SpanKind::Client, None), []);
    }
}
