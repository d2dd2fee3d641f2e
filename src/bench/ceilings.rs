//! The ceilings every bench figure is reported beside, measured in the bench process on
//! one core: decoding the same bodies alone, and committing the same encoded spans to a
//! fresh store alone (no HTTP, no decode).

use std::time::{Duration, Instant};

use super::gen::{self, Format, Template};
use super::BenchArgs;

/// Decode the bodies in this process as fast as one core can: the receive ceiling.
pub(super) fn decode_ceiling(format: Format, templates: &[Template]) -> f64 {
    let started = Instant::now();
    let mut spans = 0usize;
    let mut i = 0;
    let limits = crate::receive::Limits::default();
    while started.elapsed() < Duration::from_secs(3) {
        let t = &templates[i % templates.len()];
        i += 1;
        spans += match format {
            Format::JaegerThrift => crate::receive::jaeger_thrift::decode_batch(
                &t.body,
                crate::receive::jaeger_thrift::ThriftProtocol::Binary,
                &limits,
                &mut crate::budget::Reservation::unlimited(),
            )
            .map(|s| s.len())
            .unwrap_or(0),
            Format::OtlpProtobuf => crate::receive::decode_otlp(
                &t.body,
                crate::receive::OtlpFormat::Protobuf,
                &limits,
                &mut crate::budget::Reservation::unlimited(),
            )
            .map(|m| m.spans.len())
            .unwrap_or(0),
        };
    }
    spans as f64 / started.elapsed().as_secs_f64()
}

/// Write the same spans to a fresh store (fsync on, groups of four requests) as fast as
/// it goes: the storage ceiling.
pub(super) fn store_ceiling(args: &BenchArgs) -> Result<f64, String> {
    let dir = std::env::temp_dir().join(format!("fctrace-bench-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = crate::store::Store::open(&dir, &crate::store::StoreOptions::default())
        .map_err(|e| e.to_string())?;
    let shape = &args.shape;
    let now = crate::clock::now_us();
    let batches: Vec<_> = (0..64)
        .map(|t| crate::store::encode(0, &gen::spans(shape, t, now)))
        .collect();
    let started = Instant::now();
    let mut spans = 0usize;
    let mut i = 0;
    while started.elapsed() < Duration::from_secs(3) {
        let group: Vec<&crate::store::EncodedBatch> =
            (0..4).map(|k| &batches[(i + k) % batches.len()]).collect();
        i += 4;
        store.commit(&group).map_err(|e| e.to_string())?;
        spans += group.iter().map(|b| b.span_count()).sum::<usize>();
    }
    let rate = spans as f64 / started.elapsed().as_secs_f64();
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(rate)
}
